"""`lth-ray branch <experiment> <kind>`: new members beside a finished (or partial) sweep's tickets, on Ray Tune.

A branch (OpenLTH's "lottery branch") trains, for each chosen ticket (seed) of the trunk and at the chosen
rounds, the members its kind adds (`lth_ray.core.branches`), from the trunk's round files: the ticket's mask of
each round and its rewind point. It is a Tune experiment of its own inside the trunk's folder,
`<experiment>/branches/<kind>[-of-<method>]-r<rounds>[-s<seeds>]/`, named by its settings: running the same branch
again trains nothing new, and `--resume` continues an interrupted one. The trunk's files are only read. Its
members are cohorts like a sweep's, one Tune trial each, placed by the sweep's placement plan for the GPUs the
branch may use (`lth_ray.distributed.branch_plan`); export and report read them beside the trunk's
(`lth_ray.results.experiment.branch_trials`).

Every check runs before Ray starts, and a refusal is one `error:` line that touches nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field, fields, replace

from pyarrow import fs as pafs

from lth_ray.core.branches import BRANCHES, branch_members, branch_of
from lth_ray.core.branches.run import parse_rounds, rounds_label, rounds_to_run
from lth_ray.core.methods.member import is_ticket, start_of
from lth_ray.core.spec.config import ConfigError, TrajectoryConfig
from lth_ray.distributed.branch_plan import add_resource_options, describe, plan, sweep_of
from lth_ray.distributed.grid import Placement
from lth_ray.distributed.running import running_sweep
from lth_ray.distributed.sweep_spec import SweepSpec
from lth_ray.results.experiment import (
    BRANCHES_DIR,
    ExperimentError,
    TrialResult,
    branch_trials,
    experiment_format,
    filesystem_and_path,
    load_trials,
)


@dataclass(frozen=True)
class BranchSpec:
    """A checked branch: its folder, its members as the sweep the planner places (`branch_plan.sweep_of`), and
    what each member takes from its ticket."""

    experiment: str  # the trunk's folder or URI
    name: str  # the branch's folder name, from its settings
    rounds: tuple[int, ...]
    sweep: SweepSpec  # the members and the resources, as a sweep's: <experiment>/branches/<name>
    tickets: dict = field(default_factory=dict)  # member key -> {"rounds": ticket's round folder, "ref", "dataset"}
    planned: dict = field(default_factory=dict)  # member key -> the rounds it trains
    reinit_output: bool = False  # retrain: the output layer drawn fresh

    @property
    def folder(self) -> str:
        return f"{self.experiment}/{BRANCHES_DIR}/{self.name}"

    @property
    def members(self) -> tuple[TrajectoryConfig, ...]:
        return self.sweep.trajectories

    @property
    def resume(self) -> bool:
        return self.sweep.resume


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lth-ray branch",
        description="Train new members beside a finished (or partial) sweep's tickets, from its round files: a "
        "baseline or ablation added after the sweep, at chosen rounds, as new Tune trials inside the experiment.",
    )
    p.add_argument("experiment", help="the sweep's folder or URI, <storage>/<name>")
    p.add_argument("kind", help=f"the branch kind: {', '.join(BRANCHES)}")
    p.add_argument(
        "--rounds",
        metavar="R",
        help="rounds to branch at, e.g. 1,3-5 (default: every round >= 1 that the chosen tickets finished)",
    )
    p.add_argument("--seeds", metavar="S", help="the trunk's ticket seeds to branch from, e.g. 0,2 (default: all)")
    p.add_argument("--of", metavar="METHOD", help="ablation kinds: the baseline method to ablate (default: the ticket)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="retrain: a recipe setting of the retrained ticket, e.g. dataset=mnist or learning_rate=0.01 (repeat it)",
    )
    p.add_argument(
        "--reinit-output",
        action="store_true",
        help="retrain: draw the output layer fresh (always, when the data set has another class count)",
    )
    p.add_argument("--max-failures", type=int, default=3, metavar="N", help="retries per trial after a crash")
    p.add_argument("--resume", action="store_true", help="continue this branch after an interruption")
    p.add_argument(
        "--dry-run", action="store_true", help="print the branch's placement plan, trials and members, run nothing"
    )
    p.add_argument("--no-export", action="store_true", help="skip the export of the experiment at the end")
    add_resource_options(p)
    return p


def _ints(option: str, text: str) -> list[int]:
    try:
        return sorted({int(x) for x in text.split(",")})
    except ValueError:
        raise ConfigError(f"{option} {text!r} is not allowed; give whole numbers separated by commas") from None


def parse_settings(pairs: list[str]) -> dict:
    """`--set KEY=VALUE` pairs as TrajectoryConfig settings, each value read as its setting's type."""
    defaults = {f.name for f in fields(TrajectoryConfig)}  # (to_dict leaves settings at their default out)
    out: dict = {}
    for pair in pairs:
        key, eq, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or key not in defaults:
            raise ConfigError(
                f"--set {pair!r} is not allowed; give KEY=VALUE with KEY a recipe setting, e.g. dataset=mnist"
            )
        default = getattr(TrajectoryConfig(), key)
        try:
            if isinstance(default, bool):
                if text.lower() not in ("true", "false", "1", "0"):
                    raise ValueError
                out[key] = text.lower() in ("true", "1")
            elif isinstance(default, tuple):
                out[key] = tuple(int(x) for x in text.split(",") if x.strip())
            elif isinstance(default, (int, float)):
                out[key] = type(default)(text)
            elif key == "data_root" and "://" not in text:  # the user's folder: trials run in other working folders
                out[key] = os.path.abspath(os.path.expanduser(text))
            else:
                out[key] = text
        except ValueError:
            raise ConfigError(f"--set {pair!r}: {text!r} is not a value of type {type(default).__name__}") from None
    return out


def settings_label(settings: dict) -> list[str]:
    """A branch folder's part for its settings (where the data lives is not a setting of the question)."""
    return [
        f"{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}"
        for k, v in sorted(settings.items())
        if k != "data_root"
    ]


def trunk_tickets(experiment: str) -> list[TrialResult]:
    """The trunk's tickets, or one line saying why the folder cannot be branched (not an experiment, a sweep
    still writing it, a format this version does not continue, no ticket)."""
    try:
        trials = load_trials(experiment, weights=False)
    except ExperimentError as err:
        raise ConfigError(f"{err}; give a sweep's folder, <storage>/<name>") from None
    writer = running_sweep(experiment)
    if writer:
        raise ConfigError(f"{experiment} is still being written by {writer}; branch it when the sweep has ended")
    trunk = [t for t in trials if not t.branch]
    if experiment_format(trunk) == 1:
        raise ConfigError(f"{experiment} was written by lth_ray 0.1.0 (state format 1); branches need round files")
    tickets = [t for t in trunk if is_ticket(t.config)]
    if not tickets:
        raise ConfigError(f"{experiment} has no ticket (imp or one-shot) to branch from")
    return tickets


def check_rounds(tickets: list[TrialResult], text: str | None) -> tuple[int, ...]:
    """The chosen rounds, each finished (complete round files) by every chosen ticket."""
    if text is None:
        common = set.intersection(*(set(t.rounds_done) for t in tickets)) - {0}
        if not common:
            raise ConfigError("the trunk's tickets have finished no round past the dense one (round 0) yet")
        return tuple(sorted(common))
    chosen = parse_rounds(text)
    for t in tickets:
        done = t.rounds_done
        for r in chosen:
            if r in done:
                continue
            torn = next((p for p in t.problems if p.startswith(f"round {r}:")), None)
            who = f"the trunk's ticket {t.config.key} (trial {t.trial_id})"
            if torn:
                raise ConfigError(f"--rounds {text}: {who} has a torn or missing round file ({torn}); resume its sweep")
            raise ConfigError(
                f"--rounds {text}: round {r} is not finished by {who}; available: {rounds_label(done) or 'none'}"
            )
    return chosen


def ticket_folder(experiment: str, ticket: TrialResult) -> str:
    """The ticket's round folder, relative to the experiment folder."""
    _, root = filesystem_and_path(experiment)
    store = getattr(ticket.rounds, "store", None)
    assert store is not None, "a ticket with finished rounds has round files"
    return store.root[len(root.rstrip("/")) + 1 :]


def spec_from_args(a: argparse.Namespace) -> BranchSpec:
    """Every check of the command line against the trunk, before anything starts."""
    experiment = (
        a.experiment.rstrip("/") if "://" in a.experiment else os.path.abspath(os.path.expanduser(a.experiment))
    )
    kind = branch_of(a.kind)
    tickets = trunk_tickets(experiment)
    if a.seeds is not None:
        available = sorted({t.config.seed for t in tickets})
        unknown = [s for s in _ints("--seeds", a.seeds) if s not in available]
        if unknown:
            raise ConfigError(
                f"--seeds {a.seeds}: the trunk has no ticket of seed {unknown[0]}; available: "
                f"{', '.join(map(str, available))}"
            )
        tickets = [t for t in tickets if t.config.seed in _ints("--seeds", a.seeds)]
    rounds = check_rounds(tickets, a.rounds)
    settings = parse_settings(a.set)
    if a.reinit_output and kind.name != "retrain":
        raise ConfigError(f"--reinit-output is for the retrain kind, not {kind.name!r}")
    members, refs, planned = [], {}, {}
    for t in tickets:
        for m in branch_members(kind, t.config, a.of, rounds, settings):
            plan = rounds_to_run(m, rounds)
            if not plan:
                raise ConfigError(
                    f"--rounds {rounds_label(rounds)}: {m.label} starts at round 1 (no dense round of its own); "
                    f"allowed: 1..{t.config.rounds}"
                )
            late = m.rewind_iteration and start_of(m) == "rewind"
            if late and t.rounds is not None and t.rounds.rewind() is None:
                raise ConfigError(f"the trunk's ticket {t.config.key} has no rewind point (rewind.pt) to branch from")
            members.append(m)
            refs[m.key] = {"rounds": ticket_folder(experiment, t), "ref": t.ticket_ref, "dataset": t.config.dataset}
            planned[m.key] = plan
    name = "-".join(
        [kind.name, *([f"of-{a.of}"] if a.of else []), *settings_label(settings)]
        + (["reinit-output"] if a.reinit_output else [])
        + [f"r{rounds_label(rounds)}"]
        + ([f"s{'_'.join(map(str, _ints('--seeds', a.seeds)))}"] if a.seeds else [])
    ).replace(",", "_")
    spec = BranchSpec(experiment, name, rounds, sweep_of(a, experiment, name, members), refs, planned, a.reinit_output)
    check_folder(spec)
    check_data(members)
    return spec


def check_folder(spec: BranchSpec) -> None:
    """A new branch, or with --resume one to continue; the same branch finished is left alone (`run`)."""
    fs, path = filesystem_and_path(spec.folder)
    exists = fs.get_file_info(path).type != pafs.FileType.NotFound
    if spec.resume and not exists:
        raise ConfigError(f"--resume: branch {spec.name} was never started in {spec.experiment}")
    writer = running_sweep(spec.folder)
    if exists and writer:
        raise ConfigError(f"branch {spec.name} is still being written by {writer.replace('a sweep', 'a branch')}")
    if exists and not spec.resume and not finished(spec):
        raise ConfigError(f"branch {spec.name} was started before and is unfinished; pass --resume to continue it")


def finished(spec: BranchSpec) -> bool:
    members = [t for t in branch_trials(spec.experiment) if t.branch == spec.name]
    return bool(members) and all(t.finished for t in members)


def check_data(members: list[TrajectoryConfig]) -> None:
    from lth_ray.core.data.loading import DataError, require

    for dataset, root in dict.fromkeys((m.dataset, m.data_root) for m in members):
        try:
            require(dataset, root)
        except DataError as err:
            raise ConfigError(str(err)) from None


def placement_of(spec: BranchSpec, cluster_gpus: float | None = None) -> Placement:
    """The branch's placement plan (`branch_plan.plan`) for the GPUs it may use."""
    return plan(spec.sweep, spec.planned, cluster_gpus)


# ------------------------------------------------------------------ running


def make_tuner(spec: BranchSpec, placement: Placement, eval_memory_mb: int | None = None):
    """The branch's Tuner: its cohorts, as the plan places them, as trials of a Tune experiment inside the
    trunk's folder, each asking for the plan's CPUs and share of a GPU."""
    from ray import tune

    from lth_ray.distributed.branch_trial import run_branch_trial
    from lth_ray.distributed.progress import ProgressCallback
    from lth_ray.distributed.sweep import _trial_dirname, _trial_name, max_concurrent

    p = placement.plan
    trainable = tune.with_resources(run_branch_trial, {"cpu": p.cpu_per_trial, "gpu": p.gpu_per_trial})
    if spec.resume:
        return tune.Tuner.restore(spec.folder, trainable=trainable, resume_errored=True, resume_unfinished=True)
    branch = {
        "experiment": spec.experiment,
        "rounds": list(spec.rounds),
        "tickets": spec.tickets,
        "planned": {k: list(v) for k, v in spec.planned.items()},
        "reinit_output": spec.reinit_output,
    }
    param_space = {
        "cohort": tune.grid_search([[m.to_dict() for m in c] for c in placement.trials]),
        "branch": branch,
        "threads": max(1, int(p.cpu_per_trial)),
    }
    if eval_memory_mb is not None:
        param_space["eval_memory_mb"] = eval_memory_mb
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            max_concurrent_trials=max_concurrent(replace(spec.sweep, num_gpus=p.gpus), p.gpu_per_trial),
            trial_name_creator=_trial_name,
            trial_dirname_creator=_trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=spec.name,
            storage_path=f"{spec.experiment}/{BRANCHES_DIR}",
            verbose=1,
            callbacks=[ProgressCallback()],
            failure_config=tune.FailureConfig(max_failures=spec.sweep.max_failures),
        ),
    )


def run(spec: BranchSpec) -> int:
    """Train the branch (nothing when it has finished before); 0 when every member finished. Placed as a sweep
    is (`sweep.run`): planned before Ray starts, or on a cluster for the GPUs it shows or may scale to."""
    if finished(spec) and not spec.resume:
        print(f"branch {spec.name}: every member finished before; nothing new to train ({spec.folder})")
        return 0
    import ray

    from lth_ray.distributed.planner import shared_eval_memory_mb
    from lth_ray.distributed.running import Running
    from lth_ray.distributed.sweep import check_cuda_here, start_ray

    sweep = spec.sweep
    placement = None if sweep.address else placement_of(spec)
    if placement:
        check_cuda_here(sweep, placement.plan)
    start_ray(replace(sweep, num_gpus=placement.plan.gpus) if placement else sweep)
    running = Running(spec.folder)
    try:
        if placement is None:
            placement = placement_of(spec, ray.cluster_resources().get("GPU", 0.0))
        print(describe(sweep, placement, spec.planned), flush=True)
        make_tuner(spec, placement, shared_eval_memory_mb(placement.plan)).fit()
    finally:
        running.clear()
        ray.shutdown()
    members = [t for t in branch_trials(spec.experiment) if t.branch == spec.name]
    unfinished = [t.trial_id for t in members if not t.finished]
    print(
        f"branch {spec.name}: {sum(t.complete for t in members)}/{len(members)} members complete"
        + (f"; unfinished: {', '.join(unfinished)} (continue with --resume)" if unfinished else "")
    )
    if sweep.export:
        from lth_ray.distributed.sweep import export_at_end

        if not export_at_end(spec.experiment):
            return 1
    return 0 if not unfinished else 1


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    args = build_parser().parse_args(argv)
    try:
        spec = spec_from_args(args)
        if args.dry_run:
            print(describe(spec.sweep, placement_of(spec), spec.planned))
            return 0
        return run(spec)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
