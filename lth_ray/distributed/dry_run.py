"""A sweep's dry run in words: what will run, where, for how long, and which GPU numbers the estimate used.

`lth_ray.distributed.sweep` prints it before a sweep starts (and alone with `--dry-run`). No Ray, no torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from lth_ray.core.methods.member import first_round
from lth_ray.distributed.grid import Placement, cohort_name, configurations
from lth_ray.distributed.planner import GIB, Plan
from lth_ray.distributed.sweep_spec import SweepSpec


def describe(spec: SweepSpec, placement: Placement | None = None, rounds: Mapping[str, str] | None = None) -> str:
    """What will run, in numbers: the trials with their members, CPUs and GPU share, the GPUs busy at start,
    the estimated wall time, GPU-hours and utilisation, memory per GPU (--resume: only where it goes, the
    restored experiment keeps its own grid). `rounds`: by member key the rounds it trains, as text (a branch's)."""
    where = f"ray: {spec.address or 'local (embedded)'}"
    if spec.resume or placement is None:
        return (
            f"experiment: {spec.experiment} (resume: errored and unfinished trials continue from their "
            f"newest round checkpoint); {where}"
        )
    plan = placement.plan
    labels = ", ".join(sorted({t.label for t in spec.trajectories}))
    seeds = sorted({t.seed for t in spec.trajectories})
    lines = [
        f"experiment: {spec.experiment}",
        f"grid: {len(spec.trajectories)} trajectories: {len(configurations(spec))} configurations x "
        f"{len(seeds)} seed(s) x ({labels})",
    ]
    if plan.gpus:
        lines.append(
            f"plan: {len(plan.trials)} trials for {_gpus(plan.gpus)} ({placement.gpus_from}): per trial "
            f"{plan.cpu_per_trial:g} CPU and {plan.gpu_per_trial:g} GPU, {plan.slots} at once; {where}"
        )
    else:
        lines.append(
            f"plan: {len(plan.trials)} trials on CPUs ({placement.gpus_from}): per trial "
            f"{plan.cpu_per_trial:g} CPU; {where}"
        )
    for members, t in zip(placement.trials, plan.trials):
        m = members[0]
        head = f"  {cohort_name(members)}: {len(members)} members ({', '.join(sorted({x.label for x in members}))})"
        if plan.gpus:
            head += (
                f", {t.cpu:g} CPU, {t.gpu:g} GPU, {t.memory_bytes / GIB:.1f} GiB, est. {_duration(t.seconds)}"
                f" from {_duration(t.start)}"
            )
        trains = rounds[m.key] if rounds is not None else f"{first_round(m)}..{m.rounds}"
        lines.append(f"{head}; rounds {trains}, {m.iterations} iterations/round, eval every {m.eval_every}")
    if not plan.gpus:
        lines.append("GPUs: none")
        return "\n".join(lines)
    lines += [
        f"GPUs: {plan.gpus_at_start:.3g} of {plan.gpus:g} busy at start",
        f"estimate: {_duration(plan.seconds)} wall time; {plan.gpu_hours:.1f} GPU-hours held, "
        f"{plan.busy_seconds / 3600:.1f} busy: {plan.utilisation:.0%} utilisation over the sweep "
        f"({plan.elastic_gpu_hours:.1f} GPU-hours, {plan.elastic_utilisation:.0%}, on 1-GPU nodes released "
        f"{plan.idle_timeout_s / 60:g} min after their last trial)",
        f"memory per GPU: up to {plan.memory_per_gpu / GIB:.1f} GiB of {placement.gpu.memory_bytes / GIB:g} GiB "
        f"({max(1, round(1 / plan.gpu_per_trial))} trial(s) per GPU)",
    ]
    if plan.utilisation < 0.9:
        lines.append(f"note: {_why_idle(plan)}")
    if placement.mps_seconds is not None:
        lines.append(
            f"note: trials sharing a GPU take turns on it (--gpu-sharing {spec.gpu_sharing}); with NVIDIA MPS "
            f"running on the GPU nodes, --gpu-sharing mps would plan small cohorts side by side: "
            f"{_duration(placement.mps_seconds)} wall time"
        )
    lines.append(gpu_numbers(spec, placement))
    return "\n".join(lines)


def gpu_numbers(spec: SweepSpec, placement: Placement) -> str:
    """The dry run's line naming the GPU numbers the plan used and where they come from."""
    gpu, c = placement.gpu, placement.calibration
    memory = f"{gpu.memory_bytes / GIB:g} GiB"
    if gpu.memory_bytes != c.memory_bytes:
        memory += " (--gpu-memory)" if spec.gpu_memory_gib else " (this machine's GPU)"
    source = f"{c.describe()}, {spec.gpu_calibration}" if c.measured else f"{c.describe()}: see --gpu-calibration"
    return (
        f"cost model: {c.name}, {gpu.flops / 1e12:.3g} TFLOP/s ({spec.trajectories[0].precision}), step floor "
        f"{gpu.saturating_step_flops / gpu.flops * 1e3:.3g} ms (a step under {gpu.saturating_step_flops / 1e9:.3g} "
        f"GFLOP is host-bound), {memory}; trials sharing a GPU: {spec.gpu_sharing} ({source})"
    )


def _why_idle(plan: Plan) -> str:
    """Why the GPUs are not all busy until the end, and what fewer GPUs would do."""
    longest = plan.longest
    assert longest is not None  # a plan for GPUs has trials
    if plan.gpus_at_start < 0.9 * plan.held_at_start:
        why = "the trials' steps are too small to keep their GPU shares busy (launch-bound)"
    elif math.isclose(longest.seconds, plan.seconds, rel_tol=1e-3):
        seeds = "one seed" if len(longest.seeds) == 1 else f"{len(longest.seeds)} seeds"
        why = (
            f"the longest trial, {seeds} of {longest.configuration}, takes the whole wall time on "
            f"{_gpus(longest.gpu)} (a seed's ticket and the members taking its masks are never split)"
        )
    else:
        why = f"{len(plan.trials)} trials do not divide evenly onto {plan.slots} slots"
    same = [a for a in plan.alternatives if math.isclose(a.seconds, plan.seconds, rel_tol=1e-3)]
    busy = [a for a in plan.alternatives if a.utilisation >= 0.9]
    if same:
        why += f"; {_gpus(same[0].gpus)} finish as soon ({same[0].utilisation:.0%} busy)"
    if busy:
        b = busy[-1]
        why += (
            f"; {_gpus(b.gpus)} {'reaches' if b.gpus == 1 else 'reach'} {b.utilisation:.0%} in {_duration(b.seconds)}"
        )
    return why


def _gpus(n: float) -> str:
    return f"{n:g} GPU{'s' * (n != 1)}"


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"
