"""`lth-ray <command> [options]`: one console script for the project's command-line tools.

Each command is a module a newcomer could also run with `python -m` (that keeps working): this only picks
the module by name and hands it the rest of the command line, so options, output and exit codes are the
module's own (its usage line names the module). Sweeps are the modules of the `sweeps` package, by name with
dashes: `lth-ray sweep lenet-mnist` is `python -m sweeps.lenet_mnist`.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

# command -> (module whose main(argv) it runs, what it does); "sweep" picks its module from the sweeps package
COMMANDS = {
    "sweep": ("sweeps.<name>", "run a sweep on Ray Tune: lth-ray sweep <name> [options] (see lth-ray sweep --help)"),
    "trajectory": ("lth_ray.cli.trajectory", "one IMP trajectory (or one cohort) without Ray, a JSON line per round"),
    "branch": (
        "lth_ray.distributed.branch",
        "new members beside a finished sweep's tickets (baselines, ablations), from its round files",
    ),
    "export": ("lth_ray.results.export", "a Tune experiment -> Parquet and the thesis' files"),
    "report": (
        "lth_ray.results.report",
        "an experiment or export -> figures (PNG, PDF, SVG), summary.md, tables (CSV, TeX)",
    ),
    "check-cluster": ("lth_ray.distributed.cluster_config", "check a Ray cluster-launcher YAML (cluster.yaml) offline"),
}


def sweep_names() -> dict[str, str]:
    """The sweeps a user can name: `lenet-mnist` -> `sweeps.lenet_mnist`, one per module of `sweeps`."""
    import sweeps

    return {
        m.name.replace("_", "-"): f"sweeps.{m.name}"
        for m in pkgutil.iter_modules(sweeps.__path__)
        if not m.name.startswith("_")
    }


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [
        "usage: lth-ray <command> [options]   (lth-ray <command> --help for its options)",
        "",
        "Iterative Magnitude Pruning (Lottery Ticket) sweeps on Ray Tune.",
        "",
        "commands:",
    ]
    lines += [f"  {name:<{width}}  {what}" for name, (_, what) in COMMANDS.items()]
    lines += ["", f"sweeps: {', '.join(sweep_names())}"]
    return "\n".join(lines)


def sweep_usage() -> str:
    lines = ["usage: lth-ray sweep <name> [options]   (lth-ray sweep <name> --help for its options)", "", "sweeps:"]
    for name, module in sweep_names().items():
        doc = (importlib.import_module(module).__doc__ or "").strip().splitlines()
        lines.append(f"  {name:<14} {doc[0].split(':')[0] if doc else module}")
    return "\n".join(lines)


def error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def run_sweep(argv: list[str]) -> int:
    """`lth-ray sweep <name> ...`: the named sweep module's DEFAULTS through lth_ray.sweep's main."""
    known = sweep_names()
    if argv[:1] in (["-h"], ["--help"]):
        print(sweep_usage())
        return 0
    if not argv or argv[0].startswith("-"):
        return error(f"lth-ray sweep needs a sweep name first; known: {', '.join(known)}")
    name = argv[0].replace("_", "-")
    if name not in known:
        return error(f"unknown sweep {argv[0]!r}; known: {', '.join(known)}")
    from lth_ray.distributed.sweep import main as sweep_main

    return sweep_main(importlib.import_module(known[name]).DEFAULTS, argv[1:])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] in (["-h"], ["--help"]):
        print(usage())
        return 0
    if not argv:
        return error(f"no command given; known: {', '.join(COMMANDS)} (lth-ray --help)")
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        return error(f"unknown command {command!r}; known: {', '.join(COMMANDS)} (lth-ray --help)")
    if command == "sweep":
        return run_sweep(rest)
    return importlib.import_module(COMMANDS[command][0]).main(rest)


if __name__ == "__main__":
    sys.exit(main())
