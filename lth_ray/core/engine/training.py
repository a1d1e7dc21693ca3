"""Lockstep training: the participants of a round train together as one vectorized model. Plain PyTorch.

Participants (members' subnetworks and instability copies) are grouped by the iteration their round starts at;
each group's parameters are stacked leaf tensors under one fused optimizer (the thesis' Adam, or SGD with
momentum and weight decay): Adam's step count is per group, hence per member (the protocol's optimizer,
exactly), and a group that has not started yet simply has no gradient, so the optimizer leaves its weights,
moments and step count as they are. The learning rate follows the recipe's schedule on the absolute iteration
axis, so a round rewound to k takes up the schedule at k; a fine-tuned ticket's group trains at the schedule's
final rate instead (participants are grouped by start and rate). Nothing mixes members: member p's updates depend only
on member p's weights, batch and augmentation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from lth_ray.core.data.loading import Split
from lth_ray.core.engine import numerics
from lth_ray.core.engine.compiled import StepPrograms
from lth_ray.core.models.registry import Stacked
from lth_ray.core.spec.config import TrajectoryConfig
from lth_ray.core.spec.streams import STREAM_AUGMENT, generator
from lth_ray.core.spec.training import final_learning_rate, learning_rate_at

PAD = 4  # pixels of pad-and-crop (OpenLTH's and the papers' CIFAR augmentation)


@dataclass
class Participant:
    """One model trained in a round: a member's subnetwork, or an instability copy of it."""

    member: int
    seed: int
    masks: dict[str, torch.Tensor]
    start: dict[str, torch.Tensor] | None  # the weights training starts from (CPU); None: not known yet
    start_iteration: int
    stream: int  # the data order's stream (the member's, or its copy's)
    evaluating: bool  # evaluated every `eval_every` (a history); copies only train
    keep_es: bool  # keeps its weights at the lowest validation loss (early stop)
    capture_at: int | None = None  # keeps its weights at this iteration (the rewind point W_k)
    replay: bool = False  # trained only so that the cohort's company (and float rounding) is the original's
    final_rate: bool = False  # trains at the schedule's final rate, not at the schedule (fine-tuning)
    out: dict = field(default_factory=dict)  # what training produced: history, trained, early_stop, rewind


def _start(p: Participant) -> dict[str, torch.Tensor]:
    """The weights participant p trains from (set before it trains: the dense pair's copy gets W_k late)."""
    assert p.start is not None, f"member {p.member}'s participant has no start weights"
    return p.start


def batch_indices(split: Split, batch: int, gens: list[torch.Generator], first: int, device):
    """(it, the (P, batch) indices of iteration it + 1) for it = first, first + 1, ...: batch i of each
    participant's data order (its generator's epochs of shuffled indices, partial batch dropped) is used
    at iteration i, so a round rewound to k sees exactly what iterations k+1.. of that order hold."""
    n = len(split.x_train)
    per_epoch = n // batch
    for _ in range(first // per_epoch):  # advance every order to the epoch holding iteration first + 1
        for g in gens:
            torch.randperm(n, generator=g)
    it = first
    while True:
        perms = torch.stack([torch.randperm(n, generator=g)[: per_epoch * batch] for g in gens])
        perms = to_device(perms.view(len(gens), per_epoch, batch), device)
        for j in range(it % per_epoch, per_epoch):
            yield it, perms[:, j]
            it += 1


def to_device(t: torch.Tensor, device) -> torch.Tensor:
    """An epoch's host-drawn indices or draws on the device without stalling the host: a copy from pageable
    memory waits for the GPU's queue; from pinned (page-locked) memory it is queued like a kernel."""
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        t = t.pin_memory()
    return t.to(device, non_blocking=True)


def augment_draws(
    split: Split, batch: int, gens: list[torch.Generator], first: int, device
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Per iteration it = first, first + 1, ...: each participant's (flip (P, batch) bool, crop offsets
    (P, batch, 2)) from its own augmentation stream, drawn epoch by epoch like its data order (an epoch's draws
    come whole), so a round rewound to k sees exactly what iterations k+1.. of that stream hold."""
    per_epoch = len(split.x_train) // batch
    size = per_epoch * batch

    def epoch():
        flips = torch.stack([torch.rand(size, generator=g) < 0.5 for g in gens])
        offsets = torch.stack([torch.randint(0, 2 * PAD + 1, (size, 2), generator=g) for g in gens])
        return (
            to_device(flips.view(len(gens), per_epoch, batch), device),
            to_device(offsets.view(len(gens), per_epoch, batch, 2), device),
        )

    for _ in range(first // per_epoch):
        epoch()
    it = first
    while True:
        flips, offsets = epoch()
        for j in range(it % per_epoch, per_epoch):
            yield flips[:, j], offsets[:, j]
            it += 1


def flip_crop(x: torch.Tensor, flips: torch.Tensor, offsets: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """Random horizontal flips and 4-pixel pad-and-crops of (P, N, C, H, W) images, as batched tensor ops; the
    padding takes each channel's `fill` (raw black, as torchvision pads before normalising)."""
    P, N, C, H, W = x.shape
    x = torch.where(flips.view(P, N, 1, 1, 1), x.flip(-1), x)
    padded = fill.view(1, 1, C, 1, 1).expand(P, N, C, H + 2 * PAD, W + 2 * PAD).clone()
    padded[..., PAD : PAD + H, PAD : PAD + W] = x
    rows = (offsets[..., 0, None] + torch.arange(H, device=x.device)).view(P, N, 1, H, 1)
    cols = (offsets[..., 1, None] + torch.arange(W, device=x.device)).view(P, N, 1, 1, W)
    padded = padded.gather(3, rows.expand(P, N, C, H, W + 2 * PAD))
    return padded.gather(4, cols.expand(P, N, C, H, W))


def optimizer_for(
    leaves: list[dict[str, torch.Tensor]],
    recipe: TrajectoryConfig,
    device: torch.device,
    compiled: bool = False,
    grouped: bool = False,
):
    """The recipe's optimizer over every group's leaves, fused where PyTorch has the kernel: Adam (the
    thesis' protocol; weight decay as L2, as torch and OpenLTH) or SGD with momentum, Nesterov, weight decay.

    `compiled`: for a step that torch.compile traces: the multi-tensor (foreach) kernels, which it fuses itself
    (the fused SGD kernel cannot be traced), and the learning rate as a tensor, so a schedule changes a value
    rather than the traced program. `grouped`: Adam too takes a parameter group per group of leaves (groups at
    different rates: fine-tuned tickets beside members on the schedule)."""
    optimizer = _optimizer(leaves, recipe, device, compiled, grouped)
    if compiled:  # torch shares the default rate's tensor between groups: each needs its own (fine-tuning's)
        for group in optimizer.param_groups:
            group["lr"] = group["lr"].clone()
    return optimizer


def _optimizer(leaves: list[dict[str, torch.Tensor]], recipe, device: torch.device, compiled: bool, grouped: bool):
    params = [t for group in leaves for t in group.values()]
    fused = device.type in ("cuda", "cpu", "mps") and not compiled
    kinds: dict = {"foreach": True} if compiled else {"fused": fused}
    lr = torch.tensor(recipe.learning_rate, device=device) if compiled else recipe.learning_rate
    if recipe.optimizer == "sgd":  # a parameter group per start: fused SGD makes momentum buffers group-wise
        return torch.optim.SGD(
            [{"params": list(group.values())} for group in leaves],
            lr=lr,
            momentum=recipe.momentum,
            nesterov=recipe.nesterov,
            weight_decay=recipe.weight_decay,
            **kinds,
        )
    if compiled:
        kinds["capturable"] = True  # Adam takes a tensor rate only so
    groups: list = [{"params": list(group.values())} for group in leaves] if grouped else params
    if recipe.weight_decay:
        return torch.optim.Adam(groups, lr=lr, weight_decay=recipe.weight_decay, **kinds)
    return torch.optim.Adam(groups, lr=lr, **kinds)


def split_metrics(evaluate: Callable, split: Split, tensors: dict[str, torch.Tensor], P: int) -> torch.Tensor:
    """(P, 4): each participant's validation loss and accuracy and test loss and accuracy, on the device."""
    val_loss, val_acc = evaluate(tensors, split.x_val, split.y_val, P)
    test_loss, test_acc = evaluate(tensors, split.x_test, split.y_test, P)
    return torch.stack([val_loss, val_acc, test_loss, test_acc], 1)


@dataclass
class RoundTensors:
    """One `Lockstep.train` call's stacked tensors and running records, shared by its helpers.

    Participants of equal start form a group; each group's parameters are stacked leaves of their own (the
    optimizer skips a group until it starts), while BatchNorm statistics are stacked once for all."""

    parts: list[Participant]
    param_keys: list[str]
    group_starts: list[int]
    group_final: list[bool]  # whether each group trains at the final rate (fine-tuning), in group order
    leaves: list[dict[str, torch.Tensor]]  # each group's parameters, stacked on the member axis
    # with several groups: every participant's parameters as one leaf per key, whose rows the groups' leaves
    # share (views), so the forward pass takes them without concatenating at every step; None with one group
    full: dict[str, torch.Tensor] | None
    rows: list[tuple[int, int]]  # each group's rows of the member axis
    buffers: dict[str, torch.Tensor]  # BatchNorm statistics, updated in place by the forward pass
    weights: list[torch.Tensor]  # the prunable layers' weights of every group
    masks: list[torch.Tensor]  # and their masks, in the same order
    sparse: bool
    optimizer: torch.optim.Optimizer
    keep_es: torch.Tensor  # (P,) whether each participant keeps its early-stop weights
    start_iterations: torch.Tensor  # (P,) each participant's start, on the device (no copy per evaluation)
    running: torch.Tensor  # (P,) training loss summed since the last evaluation
    best_loss: torch.Tensor  # (P,) lowest finite validation loss so far
    best: dict[str, torch.Tensor] | None  # the stacked weights at it (None: nobody keeps them)
    points: list[torch.Tensor] = field(default_factory=list)  # each evaluation's (P, 5) metrics
    point_iters: list[int] = field(default_factory=list)
    captured: dict[int, dict] = field(default_factory=dict)  # stacked weights at the capture iterations
    started_masks: dict[tuple, torch.Tensor] = field(default_factory=dict)  # by which participants have started
    optimizer_final: list[bool] = field(default_factory=list)  # per optimizer parameter group: the final rate
    frozen: list[torch.Tensor] | None = None  # pruned weights' start values, zero where kept (frozen-init)
    start_metrics: torch.Tensor | None = None  # (P, 4) val loss, val acc, test loss, test acc at the start

    @property
    def starts(self) -> list[int]:
        return [p.start_iteration for p in self.parts]

    def group_of(self, p: Participant) -> int:
        return list(zip(self.group_starts, self.group_final)).index((p.start_iteration, p.final_rate))

    def stacked(self) -> dict[str, torch.Tensor]:
        """Every participant's tensors, stacked in participant order."""
        return {**(self.leaves[0] if self.full is None else self.full), **self.buffers}


@dataclass
class Lockstep:
    """Trains a round's participants of one cohort from their starts over iterations start+1..T on the
    absolute iteration axis, evaluating each at the multiples of `eval_every` after its start."""

    net: Stacked  # the stacked forward of the cohort's model
    split: Split  # in the cohort's dtype, on its device
    recipe: TrajectoryConfig
    dtype: torch.dtype
    param_keys: list[str]
    state_keys: list[str]
    layers: list[str]  # prunable layers: their weights are masked
    evaluate: Callable  # (stacked tensors, x, y, members) -> ((P,) loss, (P,) accuracy)
    progress: Callable[[int, int], None] | None = None
    fill: torch.Tensor | None = None  # each channel's padding value (augment flip-crop)
    programs: StepPrograms = field(init=False)  # the step's forward and update, eager or compiled

    def __post_init__(self) -> None:
        self.programs = StepPrograms(self.recipe.compile_step)

    def train(self, r: int, parts: list[Participant]) -> None:
        """Round r of every participant: stack them, step them together, evaluate, hand each its share."""
        cfg, split = self.recipe, self.split
        dev = split.x_train.device
        parts.sort(key=lambda p: (p.start_iteration, p.final_rate))  # groups are contiguous (stable: order kept)
        rt, evaluating = self._stack(parts), any(p.evaluating for p in parts)
        if evaluating:  # each participant at its start weights with its mask (Zhou et al.'s supermask accuracy)
            rt.start_metrics = split_metrics(self.evaluate, split, rt.stacked(), len(parts))
        first, batch = min(rt.starts), cfg.batch_size
        gens = [generator(p.seed, p.stream, r) for p in parts]
        captures = {p.capture_at for p in parts if p.capture_at is not None}
        augmenting = cfg.augment == "flip-crop"
        draws = (
            augment_draws(split, batch, [generator(p.seed, STREAM_AUGMENT, r, p.stream) for p in parts], first, dev)
            if augmenting
            else None
        )
        for it, idx in batch_indices(split, batch, gens, first, dev):
            if it == cfg.iterations:
                break
            x = split.x_train[idx]
            if draws is not None:
                assert self.fill is not None, "flip-crop pads with each channel's fill"
                x = flip_crop(x, *next(draws), self.fill)
            self._step(rt, it, x, split.y_train[idx])
            done = it + 1
            if done in captures:
                rt.captured[done] = {k: t.detach().to("cpu", copy=True) for k, t in rt.stacked().items()}
            if done % cfg.eval_every == 0 and evaluating:
                self._evaluate_and_early_stop(rt, done)
                if self.progress:
                    self.progress(r, done)
        self._hand_out(rt)

    def _stack(self, parts: list[Participant]) -> RoundTensors:
        """The participants' starting tensors stacked on the member axis, pruned weights zeroed, an optimizer."""
        dev = self.split.x_train.device
        keys = sorted({(p.start_iteration, p.final_rate) for p in parts})  # a group: one start, one rate
        group_starts, group_final = [s for s, _ in keys], [f for _, f in keys]
        sizes = [sum((p.start_iteration, p.final_rate) == key for p in parts) for key in keys]
        rows = [(sum(sizes[:g]), sum(sizes[: g + 1])) for g in range(len(sizes))]
        params = {k: torch.stack([_start(p)[k] for p in parts]).to(dev).requires_grad_(True) for k in self.param_keys}
        full = params if len(rows) > 1 else None
        leaves = (
            [params]
            if full is None
            else [{k: t.detach()[a:b].requires_grad_(True) for k, t in params.items()} for a, b in rows]
        )
        buffers = {
            k: torch.stack([_start(p)[k] for p in parts]).to(dev) for k in self.state_keys if k not in self.param_keys
        }
        weights = [params[f"{n}.weight"] for n in self.layers]
        masks = [torch.stack([p.masks[n] for p in parts]).to(dev, self.dtype) for n in self.layers]
        sparse = any(not bool(p.masks[n].all()) for p in parts for n in self.layers)
        frozen = None
        if sparse and self.recipe.pruned_weights == "frozen-init":  # pruned weights keep their start values
            with torch.no_grad():
                frozen = [w.detach() * (1 - m) for w, m in zip(weights, masks)]
        if sparse:
            with torch.no_grad():
                torch._foreach_mul_(weights, masks)
                if frozen is not None:
                    torch._foreach_add_(weights, frozen)
        mixed = len(set(group_final)) > 1  # rates differ between groups: Adam needs a parameter group each
        optimizer = optimizer_for(leaves, self.recipe, dev, compiled=self.recipe.compile_step, grouped=mixed)
        rates = group_final if mixed or self.recipe.optimizer == "sgd" else group_final[:1]
        keep_es = torch.tensor([p.keep_es for p in parts], device=dev)
        P = len(parts)
        rt = RoundTensors(
            parts,
            self.param_keys,
            group_starts,
            group_final,
            leaves,
            full,
            rows,
            buffers,
            weights,
            masks,
            sparse,
            optimizer,
            keep_es,
            torch.tensor([p.start_iteration for p in parts], device=dev),
            running=torch.zeros(P, device=dev, dtype=self.dtype),
            best_loss=torch.full((P,), float("inf"), device=dev, dtype=self.dtype),
            best=None,
            optimizer_final=rates,
            frozen=frozen,
        )
        if any(p.keep_es for p in parts):  # known on the host: no read back from the device
            rt.best = {k: t.detach().clone() for k, t in rt.stacked().items()}
        return rt

    def _step(self, rt: RoundTensors, it: int, x: torch.Tensor, y: torch.Tensor) -> None:
        """One update of every started participant on its batch `x` (P, N, ...) after `it` iterations."""
        cfg, P = self.recipe, len(rt.parts)
        starts = rt.starts
        if cfg.milestones or cfg.warmup:
            for group, final in zip(rt.optimizer.param_groups, rt.optimizer_final):
                rate = final_learning_rate(cfg) if final else learning_rate_at(cfg, it)
                if isinstance(group["lr"], torch.Tensor):  # the compiled step's: a value, not a new program
                    group["lr"].fill_(rate)
                else:
                    group["lr"] = rate
        started: torch.Tensor | None = None  # which participants train now, while some start later
        kept: dict[str, torch.Tensor] = {}
        if any(s > it for s in starts):
            flags = tuple(s <= it for s in starts)  # changes only where a group starts: made once each
            started = rt.started_masks.get(flags)
            if started is None:
                started = rt.started_masks[flags] = rt.start_iterations <= it  # on the device: no copy to it
            kept = {k: b.clone() for k, b in rt.buffers.items()}
        rt.optimizer.zero_grad(set_to_none=True)
        losses = self.programs.losses(self._forward_losses, rt.stacked(), x, y, P)
        losses.sum().backward()  # member q's gradient depends on member q's loss only
        if rt.full is not None:  # each group's rows of the gradient; a group not started has none
            for (a, b), start, group in zip(rt.rows, rt.group_starts, rt.leaves):
                for k, t in group.items():
                    grad = rt.full[k].grad
                    t.grad = None if start > it or grad is None else grad[a:b]  # not started: no update or step
            for t in rt.full.values():
                t.grad = None
        self.programs.update(rt.optimizer, rt.weights, rt.masks if rt.sparse else None, rt.frozen)
        with torch.no_grad():
            if started is not None:
                for k, old in kept.items():  # BatchNorm statistics of members not yet started stay put
                    rt.buffers[k].copy_(torch.where(started.view((-1,) + (1,) * (old.dim() - 1)), rt.buffers[k], old))
            rt.running += torch.where(started, losses.detach(), 0.0) if started is not None else losses.detach()

    def _forward_losses(self, tensors, x: torch.Tensor, y: torch.Tensor, P: int) -> torch.Tensor:
        with numerics.autocast(self.recipe.precision, x.device):
            logits = self.net.forward(tensors, x, P, shared=False, training=True)
        return (
            F.cross_entropy(logits.to(self.dtype).flatten(0, 1), y.flatten(), reduction="none")
            .view(P, self.recipe.batch_size)
            .mean(1)
        )

    def _evaluate_and_early_stop(self, rt: RoundTensors, done: int) -> None:
        """Every participant's metrics after `done` iterations, and its early-stop weights where they improve."""
        cfg, dev, P = self.recipe, self.split.x_train.device, len(rt.parts)
        with torch.no_grad():
            now = rt.stacked()
        val_loss, val_acc, test_loss, test_acc = split_metrics(self.evaluate, self.split, now, P).unbind(1)
        rt.points.append(torch.stack([rt.running / cfg.eval_every, val_loss, val_acc, test_loss, test_acc], 1))
        rt.point_iters.append(done)
        rt.running = torch.zeros(P, device=dev, dtype=self.dtype)
        if rt.best is not None:  # keep each member's weights at its lowest finite validation loss, without a host sync
            mine = (rt.start_iterations < done) & rt.keep_es
            better = mine & torch.isfinite(val_loss) & (val_loss < rt.best_loss)
            rt.best_loss = torch.where(better, val_loss, rt.best_loss)
            with torch.no_grad():
                for k, b in rt.best.items():
                    b.copy_(torch.where(better.view((-1,) + (1,) * (b.dim() - 1)), now[k], b))

    def _hand_out(self, rt: RoundTensors) -> None:
        """Each participant's share of what the round produced, into its `out`."""
        history = torch.stack(rt.points).to("cpu", torch.float64).numpy() if rt.points else None
        with torch.no_grad():
            last = rt.stacked()
        final = {k: t.detach().to("cpu") for k, t in last.items()}
        found = torch.isfinite(rt.best_loss).cpu().tolist()
        at_start = rt.start_metrics.to("cpu", torch.float64).tolist() if rt.start_metrics is not None else None
        best_cpu = {k: b.to("cpu") for k, b in rt.best.items()} if rt.best is not None else None
        for q, p in enumerate(rt.parts):
            p.out["steps"] = steps_taken(rt, p, self.recipe)
            p.out["trained"] = {k: final[k][q].clone() for k in self.state_keys}
            p.out["device_weights"] = {k: last[k][q].detach() for k in self.state_keys}
            if p.evaluating:
                assert history is not None and at_start is not None, "an evaluating participant has evaluations"
                p.out["start_metrics"] = at_start[q]
                rows = [e for e, it in enumerate(rt.point_iters) if it > p.start_iteration]
                p.out["history"] = history[rows, q, :]
            if p.keep_es and found[q]:
                assert best_cpu is not None
                p.out["early_stop"] = {k: best_cpu[k][q].clone() for k in self.state_keys}
            if p.capture_at is not None:
                p.out["rewind"] = {k: rt.captured[p.capture_at][k][q].clone() for k in self.state_keys}


def steps_taken(rt: RoundTensors, p: Participant, recipe: TrajectoryConfig) -> int:
    """The optimizer updates participant p really took: Adam counts them; SGD does not, so every iteration from
    its start."""
    step = rt.optimizer.state.get(rt.leaves[rt.group_of(p)][rt.param_keys[0]], {}).get("step")
    if step is None and recipe.optimizer == "sgd":
        step = recipe.iterations - p.start_iteration if p.start_iteration < recipe.iterations else 0
    return 0 if step is None else int(step)
