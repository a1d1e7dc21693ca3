"""`lth-ray trajectory`: one trajectory or one cohort, without Ray.

One JSON line per member and round on stdout; a bad option is one `error:` line and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from lth_ray.core.data.loading import DataError, load_split
from lth_ray.core.engine import numerics
from lth_ray.core.engine.cohort import Cohort
from lth_ray.core.engine.trajectory import cohort_members, resolve_device, summary
from lth_ray.core.methods.member import retrains_trained
from lth_ray.core.options.option import SETTINGS, Option, OptionParser
from lth_ray.core.options.parsing import add_options, check_choices, option, recipe_settings, value_of
from lth_ray.core.options.recipe import RECIPE
from lth_ray.core.options.resolve import from_preset
from lth_ray.core.spec.config import ConfigError, TrajectoryConfig
from lth_ray.core.spec.memory import MIN_EVAL_MEMORY_MB
from lth_ray.core.store.resume import load_state, member_states, save_state
from lth_ray.core.store.rounds import RoundStore

SCOPE = "trajectory"
FILES = "running and files"
# What only a trajectory run has: the recipe's options come from lth_ray.core.options.recipe.
RUN: tuple[Option, ...] = (
    Option("--threads", "torch CPU threads", FILES, type=int, metavar="T", shown="torch's"),
    Option(
        "--rounds-dir",
        "write every finished round's files here (folder or URI; see lth_ray.core.store.rounds); a cohort "
        "of several members writes one subfolder per member key",
        FILES,
        metavar="DIR",
    ),
    Option("--save-state", "write the cohort's state here after every round", FILES, metavar="FILE"),
    Option("--resume", "continue from a state file written by --save-state", FILES, metavar="FILE"),
)
OPTIONS = RECIPE + RUN


def build_parser() -> argparse.ArgumentParser:
    p = OptionParser(
        prog="lth-ray trajectory",
        description="Run an IMP trajectory (or a cohort: several seeds, with baselines) without Ray; "
        "one JSON line per member and round. The options are the sweep's "
        "(python -m sweeps.<name>), one value each.",
    )
    add_options(p, OPTIONS, SCOPE)
    return p


def config_from_args(a: argparse.Namespace) -> TrajectoryConfig:
    """The ticket's recipe (or the one trajectory's): the preset with every option given, validated. (The
    cohort's lists, --baselines and --ablations, are checked where members are made: `cohort_members`.)"""
    check_choices(a, tuple(o for o in RECIPE if o.dest in SETTINGS), SCOPE)
    settings = recipe_settings(a, SCOPE)
    return from_preset(settings.pop("arch"), **settings)


def members_from_args(a: argparse.Namespace) -> list[TrajectoryConfig]:
    """The members to train: the one trajectory, or with --seeds, --baselines or --ablations a cohort."""
    config = config_from_args(a)
    if config.method == "reinit":
        raise ConfigError("method='reinit' rides with its ticket: use --method imp --baselines reinit")
    if config.retrain != "weight-rewind" and not retrains_trained(config):
        raise ConfigError(
            f"--retrain {config.retrain} retrains a ticket (imp, one-shot); method={config.label!r} alone would "
            "train as under weight-rewind: use --method imp (its baselines ride along) or drop --retrain"
        )
    seeds = value_of(a, option("seeds"), SCOPE)
    baselines = value_of(a, option("baselines"), SCOPE)
    ablations = value_of(a, option("ablations"), SCOPE)
    if not (seeds or baselines or ablations):
        return [config]
    return cohort_members(config, seeds or [config.seed], baselines, ablations)


def _progress_bar(config: TrajectoryConfig):
    """A tqdm bar per round on an interactive stderr (the JSON lines on stdout stay clean)."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    bars: dict[int, tqdm] = {}

    def update(round_: int, iteration: int) -> None:
        if round_ not in bars:  # one bar per round (not one per call, as setdefault's argument would make)
            bars[round_] = tqdm(
                total=config.iterations, desc=f"round {round_}", unit="it", file=sys.stderr, leave=False
            )
        bar = bars[round_]
        bar.update(iteration - bar.n)
        if iteration >= config.iterations:
            bar.close()

    return update


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        members = members_from_args(a)
        config = members[0]
        if a.threads:
            torch.set_num_threads(a.threads)
        if a.eval_memory is not None and a.eval_memory < MIN_EVAL_MEMORY_MB:
            raise ConfigError(f"--eval-memory={a.eval_memory} is too small; allowed: >= {MIN_EVAL_MEMORY_MB} (MiB)")
        numerics.configure(config.precision, config.deterministic)  # before any CUDA work (cuBLAS workspace)
        device = resolve_device(config.device)
        split = load_split(config.dataset, config.data_root, device, download=a.download)
        states = member_states(load_state(a.resume), len(members)) if a.resume else None
        cohort = Cohort(members, split, states, progress=_progress_bar(config), eval_memory_mb=a.eval_memory)
    except (ConfigError, DataError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    stores = None
    if a.rounds_dir:
        stores = [
            RoundStore.at(a.rounds_dir if len(members) == 1 else f"{a.rounds_dir.rstrip('/')}/{m.key}") for m in members
        ]
    while not cohort.done:
        results = cohort.run_round()
        for i, result in results.items():
            if stores is not None:
                stores[i].write_round(result)
        if a.save_state:
            save_state(cohort.state, a.save_state)
        for i, result in results.items():
            print(json.dumps(summary(result.record, members[i].seed)), flush=True)
    for c, s in zip(members, cohort.states):
        if s["diverged_round"] is not None:
            print(
                f"note: {c.key}: round {s['diverged_round']} diverged (a loss went NaN or infinite); the "
                "trajectory stops there: later rounds would prune non-finite weights",
                file=sys.stderr,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
