"""Placement of a sweep on GPUs: how many seeds each trial's cohort holds, what fraction of a GPU it asks for,
and what the sweep will cost. A pure function of the grid and the GPUs; no Ray, no torch.

Why: with GPUs every seed of a configuration used to share one cohort, so the trials were the configurations
(3 for Conv-2/4/6), and the longest one set the wall time while the other GPUs idled. The planner counts each
configuration's work from its nets' layer shapes and splits long configurations by seeds until the trials
fill the GPUs from the start and finish close together. A ticket's re-init (and any member taking its masks or
its rewind point) stays in its seed's cohort, so a configuration is split by seeds; members that need nothing
of the ticket (random pruning from the init, pruning at init) come as configurations of their own (the sweep's
`ticket_parts`).

The cost model (estimates, not measurements):

- Work is FLOPs: a training step of a member is 3 x its forward pass (forward + backward), 2 FLOPs per
  multiply-add of its fc and conv layers, times the batch (a plan net's counted from its plan; a registered model,
  such as OpenLTH's ResNets and VGGs, from a forward pass on 'meta': `net_shapes`); each evaluation is one
  forward pass over the validation and test sets; an instability copy trains like a member and its path is
  evaluated at every point.
- A GPU does `GPUModel.flops` per second (for the sweep's precision); a trial's steps fill at most the share
  `n_step_flops / saturating_step_flops` of it, where `saturating_step_flops` = flops x the launch floor (the
  shortest step time): a smaller step is host-bound (Python and kernel launches), and a cohort of n seeds runs
  about as fast as one seed, so more seeds in one cohort are nearly free. Both numbers come from a calibration
  table that benchmarks/gpu_check.py measures on a GPU (`lth_ray.distributed.calibration`), or are the assumed
  A10G numbers. Only the GPU-hours depend on the absolute rate; the plan depends on the ratios and the floor.
- Trials sharing a GPU: without MPS (`GPUModel.mps` False, the default) processes take turns on a GPU
  (time-slicing), they do not run side by side, so a trial holding a fraction f gets f of the GPU's time and,
  in its turns, what its steps fill: f x min(1, fill). Several fractional trials of a host-bound configuration
  then finish no sooner than one whole-GPU cohort of all their seeds, which launches each step's ~30 kernels once
  for every seed: the plan gives such a configuration one bigger cohort per GPU (ties go to whole GPUs). With
  MPS the kernels of the processes sharing a GPU run side by side, and a trial gets min(f, fill): small cohorts
  of different configurations share a GPU at once.
- Trials are launched longest first, each as soon as a slot (1/f per GPU) is free: Tune's FIFO order with
  `max_concurrent_trials` = the slots. The schedule is simulated that way.
- Memory per member: its parameters 8 times (weights, gradients, Adam's two moments, mask, initialization,
  rewind point, early-stop copy) plus twice the activations kept for the backward pass at the batch size;
  per trial the data set on the device, the evaluation budget and a CUDA context. Trials sharing a GPU must
  fit in their fraction of its memory.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from lth_ray.core.data.registry import dataset_entry
from lth_ray.core.spec.config import ConfigError, TrajectoryConfig
from lth_ray.distributed.net_shapes import shape_of

GIB = 1 << 30
MIB = 1 << 20
FRACTIONS = (1.0, 0.5, 0.25, 0.125)  # dyadic shares of one GPU: any mix of them packs onto whole GPUs
PARAM_COPIES = 8
EVAL_RESERVE_MB = (
    512  # a GPU trial's evaluation budget in the plan unless --eval-memory says (trials sharing a GPU get it)
)


@dataclass(frozen=True)
class GPUModel:
    """One GPU as the cost model sees it. Defaults: `calibration.ASSUMED`, an NVIDIA A10G (cluster.yaml's GPUs),
    24 GiB; fp32 peak 31 TFLOP/s, of which small convolutions get about a third, and a 1 ms launch floor (assumed:
    not measured, no GPU was lent). `calibration.gpu_model` builds one from a measured table entry."""

    flops: float = 10e12
    saturating_step_flops: float = 10e9  # a step that keeps the GPU busy for the launch floor (1 ms) at `flops`
    memory_bytes: int = 24 * GIB
    context_bytes: int = GIB // 2  # CUDA context and allocator slack of one trial process
    mps: bool = False  # trials sharing a GPU run side by side (NVIDIA MPS) instead of taking turns (time-slicing)

    def busy(self, share: float, step_flops: float) -> float:
        """The part of the GPU a trial holding `share` of it keeps busy with steps of `step_flops`."""
        fill = min(1.0, step_flops / self.saturating_step_flops)
        return min(share, fill) if self.mps else min(share, 1.0) * fill


@dataclass(frozen=True)
class Configuration:
    """One cohort recipe and its seeds, costed per seed (a seed's ticket with the members that need it: never split)."""

    name: str  # the cohort name without seeds, e.g. conv6-cifar10-imp-layerwise-fc0.2-conv0.15
    seeds: tuple[int, ...]
    members_per_seed: int
    seed_flops: float  # one seed's members over the whole trajectory
    seed_step_flops: float  # one training step of one seed's members together
    seed_bytes: int  # GPU memory of one seed's members
    trial_bytes: int  # GPU memory of a trial besides its members: data set, evaluation, CUDA context


def configuration(
    name: str,
    members: Sequence[TrajectoryConfig],
    gpu: GPUModel = GPUModel(),
    eval_memory_mb: int | None = None,
    rounds: Mapping[str, Sequence[int]] | None = None,
) -> Configuration:
    """The cost of one configuration's members (tickets, baselines and ablations of every seed); `rounds`, by
    member key, the rounds each trains (a branch's chosen rounds), else every round of its trajectory."""
    from lth_ray.core.methods.member import eval_iterations, first_round, round_start  # loads torch: only to cost

    seeds = tuple(dict.fromkeys(m.seed for m in members))
    recipe = members[0]
    data = dataset_entry(recipe.dataset)
    in_shape = data.in_shape
    shape = shape_of(recipe, in_shape, data.num_classes)
    element = 8 if recipe.precision == "fp64" else 4
    step = 3 * 2 * shape.macs * recipe.batch_size
    evaluation = 2 * shape.macs * (data.validation_size + data.test_size)
    flops = 0.0
    for m in members:
        for r in rounds[m.key] if rounds is not None else range(first_round(m), m.rounds + 1):
            points = len(eval_iterations(m, r))
            copies = 2 if m.measures_instability(r) else 1
            flops += copies * (step * (m.iterations - round_start(m, r)) + evaluation * points)
            if copies == 2:
                flops += evaluation * m.instability_points
    copies_per_seed = sum(2 if m.instability else 1 for m in members) / len(seeds)
    member_bytes = element * (PARAM_COPIES * shape.params + 2 * shape.activations * recipe.batch_size)
    examples = data.train_size + data.test_size  # the training files (validation split included) and the test set
    data_bytes = examples * (math.prod(in_shape) * element + 8)
    eval_bytes = (eval_memory_mb if eval_memory_mb is not None else EVAL_RESERVE_MB) * MIB
    return Configuration(
        name=name,
        seeds=seeds,
        members_per_seed=len(members) // len(seeds),
        seed_flops=flops / len(seeds),
        seed_step_flops=step * copies_per_seed,
        seed_bytes=int(member_bytes * copies_per_seed),
        trial_bytes=int(data_bytes + eval_bytes + gpu.context_bytes),
    )


@dataclass(frozen=True)
class PlannedTrial:
    """One trial of the plan: a configuration's seeds as one cohort, where and when it runs in the simulation."""

    configuration: str
    seeds: tuple[int, ...]
    members: int
    gpu: float
    cpu: float
    flops: float
    memory_bytes: int
    seconds: float  # estimated run time in its slot
    busy: float = 0.0  # the part of a GPU its steps keep busy (<= gpu)
    start: float = 0.0  # simulated start and end (seconds from the sweep's start), and its slot
    end: float = 0.0
    slot: int = 0


@dataclass(frozen=True)
class Alternative:
    """The same grid planned on fewer GPUs."""

    gpus: int
    seconds: float
    utilisation: float


@dataclass(frozen=True)
class Plan:
    """Trials in launch order and the simulated schedule's numbers. `gpus` 0 is a CPU plan (no estimates)."""

    gpus: float
    gpu_per_trial: float
    cpu_per_trial: float
    trials: tuple[PlannedTrial, ...]
    slots: int = 0  # trials that run at once (max_concurrent_trials); 0: no limit (CPU)
    seconds: float = 0.0  # the simulated sweep's wall time
    busy_seconds: float = 0.0  # GPU-seconds of work
    gpu_memory_bytes: int = 0
    idle_timeout_s: float = 600.0
    alternatives: tuple[Alternative, ...] = ()

    @property
    def gpus_at_start(self) -> float:
        """GPUs the trials launched at once keep busy (what they hold, unless their steps are too small)."""
        return sum(t.busy for t in self.trials if t.start == 0.0)

    @property
    def held_at_start(self) -> float:
        """GPUs the trials launched at once hold (Ray's count)."""
        return sum(t.gpu for t in self.trials if t.start == 0.0)

    @property
    def utilisation(self) -> float:
        """The GPUs' work over (GPUs x wall time)."""
        return self.busy_seconds / (self.gpus * self.seconds) if self.gpus and self.seconds else 0.0

    @property
    def gpu_hours(self) -> float:
        """GPUs held for the whole wall time (one node, or nodes kept until the end)."""
        return self.gpus * self.seconds / 3600

    @property
    def elastic_gpu_hours(self) -> float:
        """On 1-GPU nodes an autoscaler removes when idle: each GPU until its last trial ends, plus the idle
        timeout."""
        if not self.gpu_per_trial:
            return 0.0
        per_gpu = max(1, round(1 / self.gpu_per_trial))
        last: dict[int, float] = {}
        for t in self.trials:
            last[t.slot // per_gpu] = max(last.get(t.slot // per_gpu, 0.0), t.end)
        return sum(end + self.idle_timeout_s for end in last.values()) / 3600

    @property
    def elastic_utilisation(self) -> float:
        hours = self.elastic_gpu_hours
        return self.busy_seconds / 3600 / hours if hours else 0.0

    @property
    def memory_per_gpu(self) -> int:
        """The most one GPU holds at once: its slots filled with the biggest trials."""
        per_gpu = max(1, round(1 / self.gpu_per_trial)) if self.gpu_per_trial else 0
        biggest = sorted((t.memory_bytes for t in self.trials), reverse=True)[:per_gpu]
        return sum(biggest)

    @property
    def longest(self) -> PlannedTrial | None:
        return max(self.trials, key=lambda t: t.seconds) if self.trials else None


def plan_sweep(
    configurations: Sequence[Configuration],
    gpus: float,
    gpu: GPUModel = GPUModel(),
    seeds_per_trial: int | None = None,
    gpu_per_trial: float | None = None,
    cpu_per_trial: float = 1.0,
    alternatives: bool = True,
) -> Plan:
    """The plan with the shortest simulated wall time (ties: fewer trials, then bigger GPU shares).

    `gpus` 0 plans CPU trials (one seed each unless `seeds_per_trial`). `seeds_per_trial` and `gpu_per_trial`,
    when given, are kept (the user's choice) and only checked against the GPU's memory."""
    if not configurations:
        raise ConfigError("the sweep has no trajectories")
    if gpus <= 0:
        trials = [
            PlannedTrial(
                c.name, group, len(group) * c.members_per_seed, 0.0, cpu_per_trial, c.seed_flops * len(group), 0, 0.0
            )
            for c in configurations
            for group in split_seeds(c.seeds, seeds_per_trial or 1)
        ]
        return Plan(0.0, 0.0, cpu_per_trial, tuple(trials))
    shares = [gpu_per_trial] if gpu_per_trial else [f for f in FRACTIONS if f <= gpus] or [gpus]
    best, refusal = None, None
    for share in shares:
        try:
            plan = _best_for_share(configurations, gpus, gpu, share, seeds_per_trial, cpu_per_trial)
        except ConfigError as err:
            refusal = refusal or err
            continue
        if best is None or better(plan, best, gpu):
            best = plan
    if best is None:
        assert refusal is not None  # every share (there is at least one) was refused
        raise refusal
    if alternatives and gpus == int(gpus) and gpus <= 64:
        others = []
        for n in range(1, int(gpus)):
            fewer = plan_sweep(
                configurations,
                n,
                gpu,
                seeds_per_trial,
                gpu_per_trial if gpu_per_trial and gpu_per_trial <= n else None,
                cpu_per_trial,
                alternatives=False,
            )
            others.append(Alternative(n, fewer.seconds, fewer.utilisation))
        best = replace(best, alternatives=tuple(others))
    return best


def split_seeds(seeds: Sequence[int], per_trial: int) -> list[tuple[int, ...]]:
    """The seeds in ceil(S / per_trial) contiguous groups whose sizes differ by at most one."""
    groups = math.ceil(len(seeds) / per_trial)
    size, extra = divmod(len(seeds), groups)
    out, start = [], 0
    for g in range(groups):
        n = size + (g < extra)
        out.append(tuple(seeds[start : start + n]))
        start += n
    return out


def _best_for_share(
    configurations: Sequence[Configuration],
    gpus: float,
    gpu: GPUModel,
    share: float,
    seeds_per_trial: int | None,
    cpu_per_trial: float,
) -> Plan:
    slots = max(1, math.floor(gpus / share + 1e-9))
    most: dict[str, int] = {}  # per configuration: the most seeds one trial may hold within its share of a GPU's memory
    for c in configurations:
        room = share * gpu.memory_bytes - c.trial_bytes
        fits = int(room // c.seed_bytes) if room > 0 else 0
        if fits < 1:
            need = (c.trial_bytes + c.seed_bytes) / GIB
            raise ConfigError(
                f"one seed of {c.name} ({c.members_per_seed} member{'s' * (c.members_per_seed != 1)}) needs "
                f"{need:.1f} GiB, more than "
                f"{share:g} of a {gpu.memory_bytes / GIB:g} GiB GPU; give a trial a bigger share (--gpus-per-trial "
                f"{_share_for(need * GIB, gpu)}) or a GPU with more memory (--gpu-memory)"
            )
        if seeds_per_trial is not None and seeds_per_trial > fits and seeds_per_trial > 1:
            need = (c.trial_bytes + seeds_per_trial * c.seed_bytes) / GIB
            per = min(fits, len(c.seeds))
            raise ConfigError(
                f"--seeds-per-trial={seeds_per_trial}: a cohort of {c.name} with {seeds_per_trial} seeds needs "
                f"{need:.1f} GiB, more than {share:g} of a {gpu.memory_bytes / GIB:g} GiB GPU; at most {per} "
                f"seed(s) per trial fit"
            )
        most[c.name] = min(fits, len(c.seeds)) if seeds_per_trial is None else min(seeds_per_trial, len(c.seeds))

    def trial(c: Configuration, group: tuple[int, ...]) -> PlannedTrial:
        n = len(group)
        busy = gpu.busy(share, n * c.seed_step_flops)
        return PlannedTrial(
            c.name,
            group,
            n * c.members_per_seed,
            share,
            cpu_per_trial,
            n * c.seed_flops,
            c.trial_bytes + n * c.seed_bytes,
            n * c.seed_flops / (gpu.flops * busy),
            busy,
        )

    def trials_with(per: dict[str, int]) -> list[PlannedTrial]:
        return [trial(c, g) for c in configurations for g in split_seeds(c.seeds, per[c.name])]

    if seeds_per_trial is not None:
        return _schedule(trials_with(most), gpus, share, slots, cpu_per_trial, gpu)
    # Candidate finish times: every trial length some grouping of some configuration gives. For each, every
    # configuration takes the biggest cohorts that still finish by then.
    lengths = {
        c.name: {s: trial(c, split_seeds(c.seeds, s)[0]).seconds for s in range(1, most[c.name] + 1)}
        for c in configurations
    }
    best: Plan | None = None
    for target in sorted({t for seconds in lengths.values() for t in seconds.values()}):
        grouping = {  # seeds per trial, by configuration
            name: max([s for s, t in options.items() if t <= target * (1 + 1e-9)], default=1)
            for name, options in lengths.items()
        }
        plan = _schedule(trials_with(grouping), gpus, share, slots, cpu_per_trial, gpu)
        if best is None or better(plan, best, gpu):
            best = plan
    assert best is not None  # there is a configuration, so at least one candidate length
    return best


def _schedule(
    trials: list[PlannedTrial], gpus: float, share: float, slots: int, cpu_per_trial: float, gpu: GPUModel
) -> Plan:
    """Longest first onto `slots` slots, each trial as soon as one is free (list scheduling, as Tune does)."""
    order = sorted(trials, key=lambda t: (-t.seconds, t.configuration, t.seeds))
    free = [(0.0, i) for i in range(slots)]
    heapq.heapify(free)
    placed = []
    for t in order:
        start, slot = heapq.heappop(free)
        end = start + t.seconds
        placed.append(replace(t, start=start, end=end, slot=slot))
        heapq.heappush(free, (end, slot))
    seconds = max(t.end for t in placed)
    busy = sum(t.flops for t in placed) / gpu.flops
    return Plan(float(gpus), share, cpu_per_trial, tuple(placed), slots, seconds, busy, gpu.memory_bytes)


def better(a: Plan, b: Plan, gpu: GPUModel) -> bool:
    """Whether plan `a` beats `b`: a shorter wall time, then more GPUs busy from the start, then fewer trials."""
    if not math.isclose(a.seconds, b.seconds, rel_tol=1e-3):
        return a.seconds < b.seconds
    if not math.isclose(a.gpus_at_start, b.gpus_at_start):
        return a.gpus_at_start > b.gpus_at_start  # the GPUs busy from the start
    if len(a.trials) != len(b.trials):
        return len(a.trials) < len(b.trials)  # bigger cohorts
    # with MPS hold less; taking turns, a GPU of its own spares the context switches and keeps all its memory
    return a.gpu_per_trial < b.gpu_per_trial if gpu.mps else a.gpu_per_trial > b.gpu_per_trial


def _share_for(need_bytes: float, gpu: GPUModel) -> str:
    fits = [f for f in sorted(FRACTIONS) if f * gpu.memory_bytes >= need_bytes]
    return f"{fits[0]:g}" if fits else "1"


def shared_eval_memory_mb(plan: Plan, reserve_mb: int = EVAL_RESERVE_MB) -> int | None:
    """For trials sharing a GPU, the evaluation budget (MiB) that keeps the biggest within its share: the
    engine's GPU default (half the free memory) assumes a GPU of its own. None: whole GPUs, or CPU trials."""
    if not plan.gpus or plan.gpu_per_trial >= 1 or not plan.trials:
        return None
    biggest = max(t.memory_bytes for t in plan.trials)
    room = plan.gpu_per_trial * plan.gpu_memory_bytes - biggest + reserve_mb * MIB
    return max(reserve_mb, int(room // MIB))
