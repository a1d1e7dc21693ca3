"""README.md's reference section lists every command-line option, and names no option that does not exist.

The parsers are built in-process, as the commands build them: the trajectory's, each sweep module's (from its
`DEFAULTS`), the export's, the report's and the cluster check's; the `lth-ray` console script's commands and
sweeps are read from `lth_ray.cli`. argparse's own `-h/--help` is left out. `python tests/test_readme.py` prints
the reference tables, generated from the same parsers, to paste into the README's reference section. An
option is listed when a table row starts with it (hidden aliases: once, as `--alias` = `--option`).
"""

from __future__ import annotations

import argparse
import importlib
import re
from pathlib import Path
from unittest import mock

README = Path(__file__).resolve().parents[1] / "README.md"
REFERENCE = "## Reference: every option"
HELP = {"-h", "--help"}
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
ROW = re.compile(r"^\| `(--[a-z][a-z0-9-]*)", re.M)  # an option's own line: a table row that starts with it
ALIAS = re.compile(r"`(--[a-z][a-z0-9-]*)` = `--")  # a hidden alias, listed once: `--preset` = `--arch`


class _Built(Exception):
    """Raised by the patched `parse_args` to hand back the parser a command built."""


def parser_of(main) -> argparse.ArgumentParser:
    """The parser a command's `main(argv)` builds, caught before it parses (for mains with no build function)."""

    def grab(self, *args, **kwargs):
        raise _Built(self)

    with mock.patch.object(argparse.ArgumentParser, "parse_args", grab):
        try:
            main([])
        except _Built as built:
            return built.args[0]
    raise AssertionError(f"{main.__module__}.main returned without building a parser")


def sweep_modules() -> dict[str, object]:
    """Every runnable sweep module, by its `python -m` name."""
    from lth_ray.cli import sweep_names

    return {module: importlib.import_module(module) for module in sweep_names().values()}


def parsers() -> dict[str, argparse.ArgumentParser]:
    """Every command line of the project, by the command that runs it."""
    from lth_ray.cli.trajectory import build_parser as trajectory_parser
    from lth_ray.distributed import cluster_config
    from lth_ray.distributed.sweep import build_parser as sweep_parser
    from lth_ray.results import report
    from lth_ray.results.export.command import build_parser as export_parser

    found = {"python -m lth_ray.trajectory": trajectory_parser()}
    found.update({f"python -m {name}": sweep_parser(module.DEFAULTS) for name, module in sweep_modules().items()})
    found["python -m lth_ray.export"] = export_parser()
    found["python -m lth_ray.report"] = parser_of(report.main)
    found["python -m lth_ray.cluster_config"] = parser_of(cluster_config.main)
    return found


def flags(parser: argparse.ArgumentParser) -> set[str]:
    """A parser's option strings, hidden aliases included, argparse's help left out."""
    return {s for action in parser._actions for s in action.option_strings} - HELP


def reference_section() -> str:
    """The README's reference section: from its heading to the next heading of the same level."""
    text = README.read_text()
    assert REFERENCE in text, f"README.md has no section {REFERENCE!r}"
    start = text.index(REFERENCE)
    end = text.find("\n## ", start + len(REFERENCE))
    return text[start:] if end < 0 else text[start:end]


def test_every_option_of_every_command_is_in_the_reference():
    section = reference_section()
    listed = set(ROW.findall(section)) | set(ALIAS.findall(section))
    missing = {command: sorted(flags(p) - listed) for command, p in parsers().items() if flags(p) - listed}
    assert not missing, f"options missing from README's reference: {missing}"


def test_every_option_named_in_the_reference_exists():
    known = set().union(*(flags(p) for p in parsers().values())) | HELP
    unknown = sorted(set(OPTION.findall(reference_section())) - known)
    assert not unknown, f"README's reference names options no parser has: {unknown}"


def test_every_console_command_and_sweep_is_in_the_reference():
    from lth_ray.cli import COMMANDS, sweep_names

    section = reference_section()
    missing = [f"lth-ray {c}" for c in COMMANDS if f"lth-ray {c}" not in section]
    missing += [f"sweep {s} ({m})" for s, m in sweep_names().items() if s not in section or m not in section]
    assert not missing, f"missing from README's reference: {missing}"


def test_the_readme_names_the_command_ci_runs():
    ci = (README.parent / ".ci" / "run").read_text()
    assert "make test" in ci and "make test" in README.read_text()


# ------------------------------------------------------------------ generating the reference tables

DEFAULT = re.compile(r"\s*\(default: (.*)\)$", re.S)
AXIS = "; a comma list (an axis of the grid)"
PLACEHOLDER = re.compile(r"([^\s`(]*<[^>\s]+>[^\s`;,)]*)")  # <storage>/<name>: code, or Markdown takes it for HTML


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


def _visible(parser: argparse.ArgumentParser, keep) -> list[tuple[str, list[argparse.Action]]]:
    return [
        (
            g.title,
            [
                a
                for a in g._group_actions
                if a.help != argparse.SUPPRESS and a.option_strings and not set(a.option_strings) & HELP and keep(a)
            ],
        )
        for g in parser._action_groups
    ]


def reference_markdown() -> str:
    """The reference tables, generated from the parsers (what `python tests/test_readme.py` prints)."""
    from lth_ray.core.options.recipe import RECIPE

    every = parsers()
    trajectory = every["python -m lth_ray.trajectory"]
    sweep = every["python -m sweeps.lenet_mnist"]
    recipe = {o.flag for o in RECIPE if "sweep" in o.scopes}
    grid = frozenset(a.option_strings[0] for a in sweep._actions if str(a.metavar).endswith("[,...]"))
    out = [
        "### Recipe options: `python -m lth_ray.trajectory` and every `python -m sweeps.<name>`",
        "",
        "The defaults are the trajectory command's; a sweep module's own are in the next table. Options "
        "marked *grid* take a comma list in a sweep, and each list is an axis of its grid.",
        "",
    ]
    out += _table(_visible(trajectory, lambda a: a.option_strings[0] in recipe), grid)
    out += ["", "### Only `python -m lth_ray.trajectory`", ""]
    out += _table(_visible(trajectory, lambda a: a.option_strings[0] not in recipe))
    out += ["", "### Only the sweeps (`python -m sweeps.<name>`, `lth-ray sweep <name>`)", ""]
    out += _table(_visible(sweep, lambda a: a.option_strings[0] not in recipe))
    out += [
        "",
        "Each sweep module narrows `--arch` and `--dataset` to its own, `--method` to the tickets "
        "(imp, one-shot), and sets these defaults:",
        "",
        "| sweep module | `--arch` allowed (default: all of them, unless under other defaults) | "
        "`--dataset` allowed (default: the first) | `--seeds` | `--baselines` | other defaults |",
        "|---|---|---|---|---|---|",
    ]
    for name, module in sweep_modules().items():
        d = module.DEFAULTS
        other = ", ".join(f"`--{k.replace('_', '-')}`" + ("" if v is True else f" {v}") for k, v in d.recipe)
        out.append(
            f"| `{name}` | {', '.join(d.archs)} | {', '.join(d.datasets)} | {d.seeds} | {d.baselines} | {other} |"
        )
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
    for command in ("python -m lth_ray.export", "python -m lth_ray.report", "python -m lth_ray.cluster_config"):
        p = every[command]
        args = " ".join(a.dest for a in p._actions if not a.option_strings)
        out += ["", f"### `{command} {args}`", ""]
        out += [f"`{a.dest}`: {a.help}." for a in p._actions if not a.option_strings]
        visible = _visible(p, lambda a: True)
        if any(actions for _, actions in visible):
            out += [""] + _table([(None, [a for _, actions in visible for a in actions])])
    from lth_ray.cli import COMMANDS, sweep_names

    out += ["", "### `lth-ray <command>` (the console script)", "", "| command | what it does |", "|---|---|"]
    out += [f"| `lth-ray {c}` | {_cell(what)} |" for c, (_, what) in COMMANDS.items()]
    out += [
        "",
        "Sweeps: " + ", ".join(f"`lth-ray sweep {s}` (`python -m {m}`)" for s, m in sweep_names().items()) + ".",
    ]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(reference_markdown(), end="")
