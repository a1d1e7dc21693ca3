"""A branch's trials and their placement: the sweep's placement plan (`lth_ray.distributed.grid.place`) for the
branch's members, costed for the rounds each trains. No Ray here: a dry run prints all of it.

A branch is sized like a sweep: seeds per trial and the share of a GPU each trial asks for come from the plan for
the GPUs it may use (`--num-gpus`, else this machine's CUDA devices), unless `--seeds-per-trial` or
`--gpus-per-trial` say; its members are grouped into configurations and cohorts as a sweep's are.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence

from lth_ray.core.options.parsing import add_options
from lth_ray.core.spec.config import TrajectoryConfig
from lth_ray.distributed.grid import Placement
from lth_ray.distributed.sweep_spec import RUN, SCOPE, SweepSpec, check_resources, resources

RESOURCE_OPTIONS = (  # the sweep's options (`sweep_spec.RUN`) that size a branch too
    "num_gpus",
    "gpus_per_trial",
    "gpu_memory",
    "gpu_calibration",
    "gpu_model",
    "gpu_sharing",
    "cluster_config",
    "cpus_per_trial",
    "seeds_per_trial",
    "address",
)


def add_resource_options(parser: argparse.ArgumentParser) -> None:
    """The sweep's resource options, with the sweep's help and defaults."""
    add_options(parser, tuple(o for o in RUN if o.dest in RESOURCE_OPTIONS), SCOPE)


def sweep_of(a: argparse.Namespace, experiment: str, name: str, members: Sequence[TrajectoryConfig]) -> SweepSpec:
    """The branch's members as the sweep the planner places: its folder `<experiment>/branches/<name>`, its
    resource options checked as a sweep's."""
    from lth_ray.results.experiment import BRANCHES_DIR

    check_resources(argparse.Namespace(**{**vars(a), "eval_memory": None, "keep_checkpoints": 1}))
    return SweepSpec(name=name, storage=f"{experiment}/{BRANCHES_DIR}", trajectories=tuple(members), **resources(a))


def plan(sweep: SweepSpec, planned: Mapping[str, Sequence[int]], cluster_gpus: float | None = None) -> Placement:
    """The branch's placement plan, as a sweep's (`sweep.plan_here`), costed for the rounds each member trains."""
    from lth_ray.distributed.sweep import plan_here

    return plan_here(sweep, cluster_gpus, planned)


def describe(sweep: SweepSpec, placement: Placement, planned: Mapping[str, Sequence[int]]) -> str:
    """The branch's folder and chosen rounds, then its plan as a sweep's dry run prints one."""
    from lth_ray.core.branches.run import rounds_label
    from lth_ray.distributed.dry_run import describe as describe_plan

    chosen = sorted({r for rounds in planned.values() for r in rounds})
    lines = [f"branch: {sweep.experiment}", f"rounds: {rounds_label(chosen)}; {len(placement.trials)} trials"]
    text = {key: rounds_label(rounds) for key, rounds in planned.items()}
    return "\n".join(lines + describe_plan(sweep, placement, text).splitlines()[1:])
