"""A `SweepSpec` -> configurations, trials and their placement on GPUs.

With `--seeds`, the grid's comma lists are its axes: every point is a ticket, and each requested baseline and
ablation rides with it. A configuration is one recipe and ticket kind, every seed and member of it
(`configurations`); a trial is a cohort: some seeds of one configuration with the members that ride with them
(`cohort_of`); the placement plan (`lth_ray.distributed.planner`) decides how many seeds go into each trial and
what share of a GPU each asks for, for the GPUs the sweep may use (`place`). No Ray here: a dry run prints all
of it.
"""

from __future__ import annotations

from dataclasses import dataclass

from lth_ray.core.methods.member import is_ticket
from lth_ray.core.spec.config import ConfigError, TrajectoryConfig
from lth_ray.distributed.planner import GIB, GPUModel, Plan, configuration, plan_sweep
from lth_ray.distributed.sweep_spec import SweepSpec


def configurations(spec: SweepSpec) -> list[list[TrajectoryConfig]]:
    """The sweep's configurations (one recipe and ticket kind each), every member of every seed, in grid order."""
    from lth_ray.core.engine.state import recipe_of

    groups: dict[str, list[TrajectoryConfig]] = {}
    for t in spec.trajectories:
        groups.setdefault(repr(sorted(recipe_of(t).items())), []).append(t)
    return list(groups.values())


def ticket_parts(members: list[TrajectoryConfig]) -> list[list[TrajectoryConfig]]:
    """A configuration's members in the parts the planner may place apart: the tickets with the members that
    must share their cohort (`cohort.needs_ticket`), and the members that need nothing of them. On GPUs one seed
    of the longest configuration (Conv-6: ticket, re-init, random pruning) bounded the card's sweep at 65% of 8
    GPUs; random pruning in trials of its own brings the estimate to 96%."""
    from lth_ray.core.methods.member import needs_ticket

    bound = [t for t in members if is_ticket(t) or needs_ticket(t)]
    free = [t for t in members if not (is_ticket(t) or needs_ticket(t))]
    return [part for part in (bound, free) if part]


def cohort_of(members: list[TrajectoryConfig], seeds) -> tuple[TrajectoryConfig, ...]:
    """One trial's members: those of `seeds`, tickets first, then by label, in the seeds' order."""
    order = list(seeds)
    mine = [t for t in members if t.seed in order]
    return tuple(sorted(mine, key=lambda t: (not is_ticket(t), t.label, order.index(t.seed))))


def cohorts(spec: SweepSpec, per_trial: int) -> list[tuple[TrajectoryConfig, ...]]:
    """Per configuration, its seeds in groups of `per_trial`, each with the baselines of those seeds."""
    out = []
    for members in configurations(spec):
        seeds = list(dict.fromkeys(t.seed for t in members))
        out += [cohort_of(members, seeds[i : i + per_trial]) for i in range(0, len(seeds), per_trial)]
    return out


@dataclass(frozen=True)
class Placement:
    """The plan for the GPUs the sweep may use, its trials' members in launch order, and where the GPU count
    came from (for the printout)."""

    plan: Plan
    trials: tuple[tuple[TrajectoryConfig, ...], ...]
    gpus_from: str
    gpu: GPUModel


def place(spec: SweepSpec, gpus: float, gpus_from: str, gpu: GPUModel) -> Placement:
    """The placement plan (lth_ray.distributed.planner) of the sweep's configurations on `gpus` GPUs."""
    share = spec.gpus_per_trial
    groups = configurations(spec)
    if gpus > 0 and share != 0:  # GPU trials: members that need nothing of the ticket may be placed apart
        groups = [part for members in groups for part in ticket_parts(members)]
    names = [_configuration_name(m[0]) for m in groups]
    if len(set(names)) != len(names):
        names = [f"{n}#{i}" for i, n in enumerate(names)]
    costs = [configuration(n, m, gpu, spec.eval_memory_mb) for n, m in zip(names, groups)]
    if share and share > gpus:
        raise ConfigError(
            f"--gpus-per-trial={share:g} exceeds the sweep's {gpus:g} GPUs ({gpus_from}); give "
            "--num-gpus, or --gpus-per-trial 0 for CPU trials"
        )
    plan = plan_sweep(costs, 0.0 if share == 0 else gpus, gpu, spec.seeds_per_trial, share or None, spec.cpus_per_trial)
    by_name = dict(zip(names, groups))
    return Placement(plan, tuple(cohort_of(by_name[t.configuration], t.seeds) for t in plan.trials), gpus_from, gpu)


def _configuration_name(ticket: TrajectoryConfig) -> str:
    return ticket.key[: ticket.key.rindex("-s")]


def sweep_gpus(
    spec: SweepSpec, cluster_gpus: float | None = None, local_devices: int | None = None
) -> tuple[float, str]:
    """The GPUs the sweep may use and where that number comes from: `--num-gpus` (on a cluster what it may
    scale to, up or not); else this machine's CUDA devices, or with `--address` the cluster's GPUs up now
    (`cluster_gpus`; None: not asked, a dry run). An autoscaling cluster with no GPU node up cannot say: that
    is an error naming --num-gpus."""
    if spec.num_gpus is not None:
        return spec.num_gpus, f"--num-gpus {spec.num_gpus:g}"
    if not spec.address:
        n = local_devices or 0
        return float(n), f"this machine's {n} CUDA device{'s' * (n != 1)} (--num-gpus not given)"
    if cluster_gpus is None:
        raise ConfigError(
            f"--address {spec.address} without --num-gpus: a dry run does not ask the cluster; "
            "give --num-gpus N, the GPUs the sweep may scale to (0 for CPU trials)"
        )
    if cluster_gpus <= 0:
        raise ConfigError(
            f"--address {spec.address}: the cluster shows no GPUs now (an autoscaler starts GPU "
            "nodes only for work that asks for them); give --num-gpus N, the GPUs the sweep may "
            "scale to, or --num-gpus 0 for CPU trials"
        )
    return cluster_gpus, f"the cluster's {cluster_gpus:g} GPUs up now (--num-gpus not given)"


def gpu_model(spec: SweepSpec, local_memory: int | None) -> GPUModel:
    """`--gpu-memory`, else this machine's GPU when the plan is for it, else the planner's default (A10G)."""
    if spec.gpu_memory_gib:
        return GPUModel(memory_bytes=int(spec.gpu_memory_gib * GIB))
    if local_memory and not spec.address:
        return GPUModel(memory_bytes=local_memory)
    return GPUModel()


def cohort_name(members) -> str:
    """The trial's name: its configuration (the first ticket's key without the seed) and its seeds."""
    key = members[0].key
    seeds = sorted({m.seed for m in members})
    if len(seeds) > 1 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        label = f"{seeds[0]}-{seeds[-1]}"
    else:
        label = "_".join(str(s) for s in seeds)
    return f"{key[: key.rindex('-s')]}-s{label}"
