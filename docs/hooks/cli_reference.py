"""The options reference, generated from the commands' own parsers, so the docs cannot drift from them.

Used twice: as a mkdocs hook (`hooks:` in mkdocs.yml), it replaces the marker line in docs/reference/cli.md
with the tables when the site is built; tests/docs/test_docs.py renders the same page and checks it against
the parsers both ways. `python docs/hooks/cli_reference.py` prints the tables.

Every parser is caught as `lth-ray <command>` builds it (`lth_ray.cli.main`), so the reference follows the
console script's commands and sweeps without a list of its own. argparse's `-h/--help` is left out.
"""

from __future__ import annotations

import argparse
import importlib
import re
from functools import cache
from pathlib import Path
from unittest import mock

MARKER = "<!-- cli-reference: generated from the parsers -->"
PAGE = Path(__file__).resolve().parents[1] / "reference" / "cli.md"
HELP = {"-h", "--help"}
DEFAULT = re.compile(r"\s*\(default: (.*)\)$", re.S)
AXIS = "; a comma list (an axis of the grid)"
PLACEHOLDER = re.compile(r"([^\s`(]*<[^>\s]+>[^\s`;,)]*)")  # <storage>/<name>: code, or Markdown takes it for HTML


class _Built(Exception):
    """Raised by the patched `parse_args` to hand back the parser a command built."""


def parser_of(argv: list[str]) -> argparse.ArgumentParser:
    """The parser `lth-ray <argv>` builds, caught before it parses anything."""
    from lth_ray import cli

    def grab(self, *args, **kwargs):
        raise _Built(self)

    with mock.patch.object(argparse.ArgumentParser, "parse_args", grab):
        try:
            cli.main(argv)
        except _Built as built:
            return built.args[0]
    raise AssertionError(f"lth-ray {' '.join(argv)} returned without building a parser")


def sweep_names() -> dict[str, str]:
    """Every sweep a user can name, `lenet-mnist` -> `sweeps.lenet_mnist`."""
    from lth_ray.cli import sweep_names as names

    return names()


@cache
def parsers() -> dict[str, argparse.ArgumentParser]:
    """Every command line of the project, by the command that runs it (`lth-ray ...`)."""
    from lth_ray.cli import COMMANDS

    found = {f"lth-ray {c}": parser_of([c]) for c in COMMANDS if c != "sweep"}
    found.update({f"lth-ray sweep {name}": parser_of(["sweep", name]) for name in sweep_names()})
    return found


def flags(parser: argparse.ArgumentParser) -> set[str]:
    """A parser's option strings, hidden aliases included, argparse's help left out."""
    return {s for action in parser._actions for s in action.option_strings} - HELP


def _cell(text: str) -> str:
    return PLACEHOLDER.sub(r"`\1`", text).replace("|", "\\|")


def _row(action: argparse.Action, grid: bool = False) -> str:
    """`| --flag VALUE | what it does | default |` from an action's help, its default split off; *grid* marks a
    sweep's grid axis."""
    text = " ".join(action.help.split())
    match = DEFAULT.search(text)
    shown = match.group(1) if match else ("off" if action.nargs == 0 else str(action.default))
    what = _cell(DEFAULT.sub("", text).replace(AXIS, ""))
    value = "" if action.nargs == 0 or action.metavar is None else f" {action.metavar}"
    mark = " *grid*" if grid else ""
    option = f"{action.option_strings[0]}{value}".replace("|", "\\|")
    return f"| `{option}`{mark} | {what} | {_cell(shown)} |"


def _table(groups: list[tuple[str | None, list[argparse.Action]]], grid: frozenset = frozenset()) -> list[str]:
    lines = ["| option | what it does | default |", "|---|---|---|"]
    for title, actions in groups:
        if actions and title:
            lines.append(f"| **{title}** | | |")
        lines += [_row(a, a.option_strings[0] in grid) for a in actions]
    return lines


def _shown(action: argparse.Action) -> bool:
    return action.help != argparse.SUPPRESS and bool(action.option_strings) and not set(action.option_strings) & HELP


def _visible(parser: argparse.ArgumentParser, keep) -> list[tuple[str, list[argparse.Action]]]:
    return [(g.title, [a for a in g._group_actions if _shown(a) and keep(a)]) for g in parser._action_groups]


def _placed(parser: argparse.ArgumentParser) -> set[tuple[str, str]]:
    """(option, its group's title) of every option `--help` shows."""
    return {(a.option_strings[0], g.title) for g in parser._action_groups for a in g._group_actions if _shown(a)}


def _sweep_defaults() -> list[str]:
    lines = [
        "| sweep | `--arch` allowed (default: all of them, unless under other defaults) | "
        "`--dataset` allowed (default: the first) | `--seeds` | `--baselines` | other defaults |",
        "|---|---|---|---|---|---|",
    ]
    for name, module in sweep_names().items():
        d = importlib.import_module(module).DEFAULTS
        other = ", ".join(f"`--{k.replace('_', '-')}`" + ("" if v is True else f" {v}") for k, v in d.recipe)
        lines.append(
            f"| `lth-ray sweep {name}` | {', '.join(d.archs)} | {', '.join(d.datasets)} | {d.seeds} | "
            f"{d.baselines} | {other} |"
        )
    return lines


def reference_markdown() -> str:
    """The reference tables, generated from the parsers (what replaces the marker in docs/reference/cli.md)."""
    from lth_ray.cli import COMMANDS

    every = parsers()
    trajectory = every["lth-ray trajectory"]
    sweep = every[f"lth-ray sweep {next(iter(sweep_names()))}"]
    # the recipe: the options both commands have, under the same heading (`--resume` is another thing in each)
    recipe = {flag for flag, _ in _placed(trajectory) & _placed(sweep)}
    grid = frozenset(a.option_strings[0] for a in sweep._actions if str(a.metavar).endswith("[,...]"))
    out = [
        "## Recipe options: `lth-ray trajectory` and every sweep",
        "",
        "The defaults are the trajectory command's; a sweep's own are in the table after the next. Options "
        "marked *grid* take a comma list in a sweep, and each list is an axis of its grid.",
        "",
    ]
    out += _table(_visible(trajectory, lambda a: a.option_strings[0] in recipe), grid)
    out += ["", "## Only `lth-ray trajectory`", ""]
    out += _table(_visible(trajectory, lambda a: a.option_strings[0] not in recipe))
    out += ["", "## Only the sweeps (`lth-ray sweep <name>`, `python -m sweeps.<name>`)", ""]
    out += _table(_visible(sweep, lambda a: a.option_strings[0] not in recipe))
    out += [
        "",
        "Each sweep narrows `--arch` and `--dataset` to its own, `--method` to the tickets (imp, one-shot), and "
        "sets these defaults:",
        "",
    ]
    out += _sweep_defaults()
    hidden = [a for a in sweep._actions if a.help == argparse.SUPPRESS and a.option_strings]
    shown = {a.dest: a.option_strings[0] for a in sweep._actions if a.help != argparse.SUPPRESS}
    out += [
        "",
        "Hidden aliases (0.2's spellings, not in `--help`): "
        + "; ".join(
            f"`{a.option_strings[0]}` = `{shown[a.dest]}" + (f" {a.const}`" if a.const else "`") for a in hidden
        )
        + ".",
    ]
    for command in (f"lth-ray {c}" for c in COMMANDS if c not in ("sweep", "trajectory")):
        p = every[command]
        args = " ".join(a.dest for a in p._actions if not a.option_strings)
        out += ["", f"## `{command} {args}`", ""]
        out += [f"`{a.dest}`: {a.help}." for a in p._actions if not a.option_strings]
        visible = [a for _, actions in _visible(p, lambda a: True) for a in actions]
        if visible:
            out += [""] + _table([(None, visible)])
    out += ["", "## `lth-ray <command>`: the commands", "", "| command | what it does |", "|---|---|"]
    out += [f"| `lth-ray {c}` | {_cell(what)} |" for c, (_, what) in COMMANDS.items()]
    out += [
        "",
        "Sweeps: " + ", ".join(f"`lth-ray sweep {s}` (`python -m {m}`)" for s, m in sweep_names().items()) + ".",
    ]
    return "\n".join(out) + "\n"


def render(markdown: str) -> str:
    """A page with the marker line replaced by the generated reference."""
    return markdown.replace(MARKER, reference_markdown()) if MARKER in markdown else markdown


def rendered_page() -> str:
    """docs/reference/cli.md as the site shows it."""
    return render(PAGE.read_text())


def on_page_markdown(markdown, page, config, files):  # mkdocs hook
    return render(markdown)


if __name__ == "__main__":
    print(reference_markdown(), end="")
