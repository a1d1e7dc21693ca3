"""The docs name the options that exist, and the options reference lists every one of them.

The reference page (docs/reference/cli.md) is generated from the commands' parsers when the site is built
(docs/hooks/cli_reference.py, a mkdocs hook); these tests render it the same way and check it against the
parsers both ways. The other pages and the README may name only options some command has (or one of the
few other tools' options listed below). The README stays a short entry point whose links all resolve.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
ROW = re.compile(r"^\| `(--[a-z][a-z0-9-]*)", re.M)  # an option's own line: a table row that starts with it
ALIAS = re.compile(r"`(--[a-z][a-z0-9-]*)` = `--")  # a hidden alias, listed once: `--preset` = `--arch`
# Options of other tools that the pages show in commands: ray, aws, pytest, the benchmark scripts.
OTHER_TOOLS = {
    "--working-dir",  # ray job submit
    "--tmux",  # ray exec
    "--dashboard-host",  # ray start (cluster.yaml)
    "--generate",  # ray get-auth-token
    "--region",  # aws
    "--query",  # aws
    "--output",  # aws
    "--collect-only",  # pytest
    "--members",  # benchmarks/bench_cohort.py, bench_deep.py
    "--batch",  # benchmarks/bench_deep.py
    "--quick",  # benchmarks/gpu_check.py
}


def _hook(name: str):
    """A module of docs/hooks, loaded by path as mkdocs loads it."""
    path = DOCS / "hooks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"docs_hooks_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


reference = _hook("cli_reference")


def test_the_reference_page_has_the_marker_the_hook_replaces():
    page = reference.PAGE.read_text()
    assert reference.MARKER in page
    assert reference.MARKER not in reference.rendered_page()


def test_every_option_of_every_command_is_in_the_reference():
    page = reference.rendered_page()
    listed = set(ROW.findall(page)) | set(ALIAS.findall(page))
    missing = {
        command: sorted(reference.flags(p) - listed)
        for command, p in reference.parsers().items()
        if reference.flags(p) - listed
    }
    assert not missing, f"options missing from docs/reference/cli.md: {missing}"


def test_every_option_named_in_the_reference_exists():
    known = set().union(*(reference.flags(p) for p in reference.parsers().values())) | reference.HELP
    unknown = sorted(set(OPTION.findall(reference.rendered_page())) - known)
    assert not unknown, f"docs/reference/cli.md names options no parser has: {unknown}"


def test_every_console_command_and_sweep_is_in_the_reference():
    from lth_ray.cli import COMMANDS, sweep_names

    page = reference.rendered_page()
    missing = [f"lth-ray {c}" for c in COMMANDS if f"lth-ray {c}" not in page]
    missing += [f"sweep {s} ({m})" for s, m in sweep_names().items() if s not in page or m not in page]
    assert not missing, f"missing from docs/reference/cli.md: {missing}"


def test_every_option_the_pages_and_the_readme_name_exists():
    known = set().union(*(reference.flags(p) for p in reference.parsers().values())) | reference.HELP | OTHER_TOOLS
    pages = [*DOCS.rglob("*.md"), README]
    unknown = {
        str(page.relative_to(ROOT)): sorted(set(OPTION.findall(page.read_text())) - known)
        for page in pages
        if set(OPTION.findall(page.read_text())) - known
    }
    assert not unknown, f"options no command has: {unknown}"


def test_the_readme_is_short_and_its_links_resolve():
    text = README.read_text()
    assert len(text.splitlines()) <= 150
    assert "make demo" in text and "make test" in text
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)\s]*)?\)", text)
    local = [t for t in targets if not re.match(r"[a-z]+://", t)]
    assert local, "the README links into the docs"
    broken = [t for t in local if not (ROOT / t).exists()]
    assert not broken, f"README links to files that do not exist: {broken}"


def test_the_readme_names_the_command_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci and "make test" in README.read_text()


def test_the_offline_check_finds_fetched_scripts_and_fonts_only(tmp_path):
    offline = _hook("offline")
    (tmp_path / "page.html").write_text(
        '<a href="https://example.org/paper">a link is fine</a>'
        '<script src="https://unpkg.com/x.js"></script>'
        '<link rel="stylesheet" href="https://fonts.googleapis.com/css?family=Roboto">'
    )
    (tmp_path / "style.css").write_text("body { background: url(//cdn.example.org/a.png) }")
    hits = offline.remote_fetches(tmp_path)
    assert len([h for h in hits if "unpkg.com" in h]) == 1
    assert any("fonts.googleapis.com" in h for h in hits)
    assert any(h.startswith("style.css") for h in hits)
    assert not any("example.org/paper" in h for h in hits)
