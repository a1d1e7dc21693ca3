"""Lockstep training: the participants of a round train together as one vectorized model. Plain PyTorch.

Participants (members' subnetworks and instability copies) are grouped by the iteration their round starts at;
each group's parameters are stacked leaf tensors under one fused optimizer (the thesis' Adam, or SGD with
momentum and weight decay): Adam's step count is per group, hence per member (the protocol's optimizer,
exactly), and a group that has not started yet simply has no gradient, so the optimizer leaves its weights,
moments and step count as they are. The learning rate follows the recipe's schedule on the absolute iteration
axis, so a round rewound to k takes up the schedule at k. Nothing mixes members: member p's updates depend only
on member p's weights, batch and augmentation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from lth_ray.core.data.loading import Split
from lth_ray.core.engine import numerics
from lth_ray.core.engine.streams import STREAM_AUGMENT, generator
from lth_ray.core.spec.config import TrajectoryConfig
from lth_ray.core.spec.training import learning_rate_at

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
    out: dict = field(default_factory=dict)  # what training produced: history, trained, early_stop, rewind


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
        perms = perms.view(len(gens), per_epoch, batch).to(device, non_blocking=True)
        for j in range(it % per_epoch, per_epoch):
            yield it, perms[:, j]
            it += 1


def augment_draws(split: Split, batch: int, gens: list[torch.Generator], first: int, device):
    """Per iteration it = first, first + 1, ...: each participant's (flip (P, batch) bool, crop offsets
    (P, batch, 2)) from its own augmentation stream, drawn epoch by epoch like its data order (an epoch's draws
    come whole), so a round rewound to k sees exactly what iterations k+1.. of that stream hold."""
    per_epoch = len(split.x_train) // batch
    size = per_epoch * batch

    def epoch():
        flips = torch.stack([torch.rand(size, generator=g) < 0.5 for g in gens])
        offsets = torch.stack([torch.randint(0, 2 * PAD + 1, (size, 2), generator=g) for g in gens])
        return (
            flips.view(len(gens), per_epoch, batch).to(device, non_blocking=True),
            offsets.view(len(gens), per_epoch, batch, 2).to(device, non_blocking=True),
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


def optimizer_for(leaves: list[dict[str, torch.Tensor]], recipe: TrajectoryConfig, device: torch.device):
    """The recipe's optimizer over every group's leaves, fused where PyTorch has the kernel: Adam (the
    thesis' protocol; weight decay as L2, as torch and OpenLTH) or SGD with momentum, Nesterov, weight decay."""
    params = [t for group in leaves for t in group.values()]
    fused = device.type in ("cuda", "cpu", "mps")
    if recipe.optimizer == "sgd":  # a parameter group per start: fused SGD makes momentum buffers group-wise
        return torch.optim.SGD(
            [{"params": list(group.values())} for group in leaves],
            lr=recipe.learning_rate,
            momentum=recipe.momentum,
            nesterov=recipe.nesterov,
            weight_decay=recipe.weight_decay,
            fused=fused,
        )
    if recipe.weight_decay:
        return torch.optim.Adam(params, lr=recipe.learning_rate, weight_decay=recipe.weight_decay, fused=fused)
    return torch.optim.Adam(params, lr=recipe.learning_rate, fused=fused)


@dataclass
class Lockstep:
    """Trains a round's participants of one cohort from their starts over iterations start+1..T on the
    absolute iteration axis, evaluating each at the multiples of `eval_every` after its start."""

    net: object  # the stacked forward (`models.registry` Stacked)
    split: Split  # in the cohort's dtype, on its device
    recipe: TrajectoryConfig
    dtype: torch.dtype
    param_keys: list[str]
    state_keys: list[str]
    layers: list[str]  # prunable layers: their weights are masked
    evaluate: Callable  # (stacked tensors, x, y, members) -> ((P,) loss, (P,) accuracy)
    progress: Callable[[int, int], None] | None = None
    fill: torch.Tensor | None = None  # each channel's padding value (augment flip-crop)

    def train(self, r: int, parts: list[Participant]) -> None:
        cfg, split = self.recipe, self.split
        dev = split.x_train.device
        parts.sort(key=lambda p: p.start_iteration)  # groups of equal start are contiguous (stable: order kept)
        P = len(parts)
        group_starts = sorted({p.start_iteration for p in parts})
        groups = [[p for p in parts if p.start_iteration == s] for s in group_starts]
        leaves = [
            {k: torch.stack([p.start[k] for p in g]).to(dev).requires_grad_(True) for k in self.param_keys}
            for g in groups
        ]
        buffers = {
            k: torch.stack([p.start[k] for p in parts]).to(dev) for k in self.state_keys if k not in self.param_keys
        }  # BatchNorm statistics, updated in place by the forward pass
        weights = [leaves[g][f"{n}.weight"] for g in range(len(groups)) for n in self.layers]
        masks = [torch.stack([p.masks[n] for p in group]).to(dev, self.dtype) for group in groups for n in self.layers]
        sparse = any(not bool(p.masks[n].all()) for p in parts for n in self.layers)
        if sparse:
            with torch.no_grad():
                torch._foreach_mul_(weights, masks)
        optimizer = optimizer_for(leaves, cfg, dev)
        scheduled = bool(cfg.milestones or cfg.warmup)

        def stacked() -> dict[str, torch.Tensor]:
            if len(leaves) == 1:
                return {**leaves[0], **buffers}
            return {**{k: torch.cat([group[k] for group in leaves]) for k in self.param_keys}, **buffers}

        starts = [p.start_iteration for p in parts]
        first, stop, batch = min(starts), cfg.iterations, cfg.batch_size
        gens = [generator(p.seed, p.stream, r) for p in parts]
        evaluating = any(p.evaluating for p in parts)
        keep_es = torch.tensor([p.keep_es for p in parts], device=dev)
        any_es = bool(keep_es.any())
        running = torch.zeros(P, device=dev, dtype=self.dtype)
        points: list[torch.Tensor] = []
        point_iters: list[int] = []
        best_loss = torch.full((P,), float("inf"), device=dev, dtype=self.dtype)
        best = {k: t.detach().clone() for k, t in stacked().items()} if any_es else None
        captures = {p.capture_at for p in parts if p.capture_at is not None}
        captured: dict[int, dict] = {}
        masks_by_flags: dict[tuple, torch.Tensor] = {}
        augmenting = cfg.augment == "flip-crop"
        draws = (
            augment_draws(split, batch, [generator(p.seed, STREAM_AUGMENT, r, p.stream) for p in parts], first, dev)
            if augmenting
            else None
        )
        for it, idx in batch_indices(split, batch, gens, first, dev):
            if it == stop:
                break
            x = split.x_train[idx]
            if augmenting:
                x = flip_crop(x, *next(draws), self.fill)
            if scheduled:
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate_at(cfg, it)
            waiting = [q for q, s in enumerate(starts) if s > it]  # participants whose round starts later
            if waiting:
                flags = tuple(s <= it for s in starts)  # changes only where a group starts: made once each
                started = masks_by_flags.get(flags)
                if started is None:
                    started = masks_by_flags[flags] = torch.tensor(flags, device=dev)
                kept = {k: b.clone() for k, b in buffers.items()}
            optimizer.zero_grad(set_to_none=True)
            with numerics.autocast(cfg.precision, dev):
                logits = self.net.forward(stacked(), x, P, shared=False, training=True)
            losses = (
                F.cross_entropy(logits.to(self.dtype).flatten(0, 1), split.y_train[idx].flatten(), reduction="none")
                .view(P, batch)
                .mean(1)
            )
            losses.sum().backward()  # member q's gradient depends on member q's loss only
            for g, start in enumerate(group_starts):
                if start > it:
                    for t in leaves[g].values():
                        t.grad = None  # not started: no update, no moment, no step
            optimizer.step()
            with torch.no_grad():
                if waiting:
                    for k, old in kept.items():  # BatchNorm statistics of members not yet started stay put
                        buffers[k].copy_(torch.where(started.view((-1,) + (1,) * (old.dim() - 1)), buffers[k], old))
                if sparse:
                    torch._foreach_mul_(weights, masks)  # pruned weights stay exactly zero
                running += torch.where(started, losses.detach(), 0.0) if waiting else losses.detach()
            done = it + 1
            if done in captures:
                captured[done] = {k: t.detach().to("cpu", copy=True) for k, t in stacked().items()}
            if done % cfg.eval_every == 0 and evaluating:
                with torch.no_grad():
                    now = stacked()
                val_loss, val_acc = self.evaluate(now, split.x_val, split.y_val, P)
                test_loss, test_acc = self.evaluate(now, split.x_test, split.y_test, P)
                points.append(torch.stack([running / cfg.eval_every, val_loss, val_acc, test_loss, test_acc], 1))
                point_iters.append(done)
                running = torch.zeros(P, device=dev, dtype=self.dtype)
                if any_es:  # keep each member's weights at its lowest finite validation loss, without a host sync
                    mine = torch.tensor([s < done for s in starts], device=dev) & keep_es
                    better = mine & torch.isfinite(val_loss) & (val_loss < best_loss)
                    best_loss = torch.where(better, val_loss, best_loss)
                    with torch.no_grad():
                        for k, b in best.items():
                            b.copy_(torch.where(better.view((-1,) + (1,) * (b.dim() - 1)), now[k], b))
                if self.progress:
                    self.progress(r, done)
        history = torch.stack(points).to("cpu", torch.float64).numpy() if points else None
        with torch.no_grad():
            last = stacked()
        self._hand_out(
            parts, leaves, group_starts, optimizer, last, history, point_iters, best_loss, best, any_es, captured
        )

    def _hand_out(
        self, parts, leaves, group_starts, optimizer, last, history, point_iters, best_loss, best, any_es, captured
    ) -> None:
        """Each participant's share of what the round produced, into its `out`."""
        final = {k: t.detach().to("cpu") for k, t in last.items()}
        found = torch.isfinite(best_loss).cpu().tolist()
        best_cpu = {k: b.to("cpu") for k, b in best.items()} if any_es else None
        for q, p in enumerate(parts):
            group = leaves[group_starts.index(p.start_iteration)]
            step = optimizer.state.get(group[self.param_keys[0]], {}).get("step")  # Adam counts its updates
            if step is None and self.recipe.optimizer == "sgd":  # SGD does not: every iteration from the start
                step = self.recipe.iterations - p.start_iteration if p.start_iteration < self.recipe.iterations else 0
            p.out["steps"] = 0 if step is None else int(step)  # the optimizer updates really taken
            p.out["trained"] = {k: final[k][q].clone() for k in self.state_keys}
            p.out["device_weights"] = {k: last[k][q].detach() for k in self.state_keys}
            if p.evaluating:
                rows = [e for e, it in enumerate(point_iters) if it > p.start_iteration]
                p.out["history"] = history[rows, q, :]
            if p.keep_es and found[q]:
                p.out["early_stop"] = {k: best_cpu[k][q].clone() for k in self.state_keys}
            if p.capture_at is not None:
                p.out["rewind"] = {k: captured[p.capture_at][k][q].clone() for k in self.state_keys}
