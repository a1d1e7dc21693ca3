"""A `SweepSpec` -> configurations, trials and their placement on GPUs.

With `--seeds`, the grid's comma lists are its axes: every point is a ticket, and each requested baseline and
ablation rides with it. A configuration is one recipe and ticket kind, every seed and member of it
(`configurations`); a trial is a cohort: some seeds of one configuration with the members that ride with them
(`cohort_of`); the placement plan (`lth_ray.distributed.planner`) decides how many seeds go into each trial and
what share of a GPU each asks for, for the GPUs the sweep may use (`place`). No Ray here: a dry run prints all
of it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from lth_ray.core.methods.member import is_ticket
from lth_ray.core.spec.config import ConfigError, TrajectoryConfig
from lth_ray.distributed.calibration import ASSUMED, Calibration, choose
from lth_ray.distributed.calibration import gpu_model as calibrated_gpu
from lth_ray.distributed.planner import GIB, GPUModel, Plan, better, configuration, plan_sweep
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
    and the GPU's numbers came from (for the printout). `mps_seconds`: the wall time the same sweep would take
    with MPS, when the plan has trials taking turns on GPUs and MPS would be faster (else None)."""

    plan: Plan
    trials: tuple[tuple[TrajectoryConfig, ...], ...]
    gpus_from: str
    gpu: GPUModel
    calibration: Calibration = ASSUMED
    mps_seconds: float | None = None


def place(
    spec: SweepSpec,
    gpus: float,
    gpus_from: str,
    gpu: GPUModel,
    calibration: Calibration = ASSUMED,
    rounds: Mapping[str, Sequence[int]] | None = None,
) -> Placement:
    """The placement plan (lth_ray.distributed.planner) of the sweep's configurations on `gpus` GPUs (`rounds`:
    by member key the rounds each trains, for a branch; else all).

    On GPUs the members that need nothing of the ticket may be placed apart (`ticket_parts`), or stay in their
    ticket's cohort: the better plan wins (ties: fewer trials). Apart, one seed of the longest net does not bound
    the sweep; together, a host-bound cohort trains them nearly for free on a GPU it does not share."""
    share = spec.gpus_per_trial
    if share and share > gpus:
        raise ConfigError(
            f"--gpus-per-trial={share:g} exceeds the sweep's {gpus:g} GPUs ({gpus_from}); give "
            "--num-gpus, or --gpus-per-trial 0 for CPU trials"
        )
    whole = configurations(spec)
    groupings = [whole]
    if gpus > 0 and share != 0:
        apart = [part for members in whole for part in ticket_parts(members)]
        groupings = [apart, whole] if len(apart) != len(whole) else [apart]
    plan, groups = _best_plan(spec, groupings, 0.0 if share == 0 else gpus, gpu, rounds=rounds)
    mps_seconds = None
    if plan.gpus and not gpu.mps and plan.gpus_at_start < 0.9 * plan.held_at_start:  # launch-bound, taking turns
        with_mps, _ = _best_plan(spec, groupings, plan.gpus, replace(gpu, mps=True), False, rounds)
        if with_mps.seconds < plan.seconds and not math.isclose(with_mps.seconds, plan.seconds, rel_tol=0.05):
            mps_seconds = with_mps.seconds
    trials = tuple(cohort_of(groups[t.configuration], t.seeds) for t in plan.trials)
    return Placement(plan, trials, gpus_from, gpu, calibration, mps_seconds)


def _best_plan(
    spec: SweepSpec,
    groupings: list[list[list[TrajectoryConfig]]],
    gpus: float,
    gpu: GPUModel,
    alternatives: bool = True,
    rounds: Mapping[str, Sequence[int]] | None = None,
) -> tuple[Plan, dict[str, list[TrajectoryConfig]]]:
    """The best plan over the ways of grouping the members into configurations, and its groups by name (the
    first grouping's refusal when none fits)."""
    best: tuple[Plan, dict[str, list[TrajectoryConfig]]] | None = None
    refusal: ConfigError | None = None
    for groups in groupings:
        names = [_configuration_name(m[0]) for m in groups]
        if len(set(names)) != len(names):
            names = [f"{n}#{i}" for i, n in enumerate(names)]
        costs = [configuration(n, m, gpu, spec.eval_memory_mb, rounds) for n, m in zip(names, groups)]
        try:
            plan = plan_sweep(
                costs, gpus, gpu, spec.seeds_per_trial, spec.gpus_per_trial or None, spec.cpus_per_trial, alternatives
            )
        except ConfigError as err:
            refusal = refusal or err
            continue
        if best is None or better(plan, best[0], gpu):
            best = (plan, dict(zip(names, groups)))
    if best is None:
        assert refusal is not None  # there is at least one grouping
        raise refusal
    return best


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


def gpu_calibration(spec: SweepSpec) -> Calibration:
    """The GPU numbers the plan uses: `--gpu-model` in `--gpu-calibration`, else the assumed A10G's."""
    return choose(spec.gpu_calibration, spec.gpu_name)


def gpu_model(spec: SweepSpec, local_memory: int | None, calibration: Calibration | None = None) -> GPUModel:
    """The calibration's GPU at the sweep's precision, shared as `--gpu-sharing` says; its memory `--gpu-memory`,
    else this machine's GPU when the plan is for it, else the calibration's."""
    model = calibrated_gpu(calibration or gpu_calibration(spec), spec.trajectories[0].precision)
    model = replace(model, mps=spec.gpu_sharing == "mps")
    if spec.gpu_memory_gib:
        return replace(model, memory_bytes=int(spec.gpu_memory_gib * GIB))
    if local_memory and not spec.address:
        return replace(model, memory_bytes=local_memory)
    return model


def cohort_name(members) -> str:
    """The trial's name: its configuration (the first ticket's key without the seed) and its seeds."""
    key = members[0].key
    seeds = sorted({m.seed for m in members})
    if len(seeds) > 1 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        label = f"{seeds[0]}-{seeds[-1]}"
    else:
        label = "_".join(str(s) for s in seeds)
    return f"{key[: key.rindex('-s')]}-s{label}"
