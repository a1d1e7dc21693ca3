"""Pruning at initialization: methods that score the weights of the untrained net (Frankle et al. 2021's
baselines). Each scorer is small, like ShrinkBench's strategies: it maps a net at init to one score per
prunable weight; keeping the top weights to a count (globally) is shared code (`pruning`). Plain PyTorch.

- `magnitude-init`: |w| at initialization.
- `snip` (Lee et al. 2019): |g * w|, g the gradient of the training loss at init over `score_batches` batches.
- `grasp` (Wang et al. 2020): S = -w * (H g), H the Hessian and g the gradient of the training loss at init
  (the logits divided by a temperature of 200, as the authors' code); GraSP removes the highest S, so the
  weights kept are the top of -S = w * (H g).
- `synflow` (Tanaka et al. 2020): data-free and iterative: |dR/dw * w| with R the output sum of the net with
  absolute weights on an all-ones input, re-scored after each of 100 prunings on an exponential schedule.
"""
from __future__ import annotations

import copy
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from lth_ray.core.spec.config import AT_INIT
from lth_ray.core.pruning.masks import Masks, global_score_prune

SYNFLOW_ITERATIONS = 100
GRASP_TEMPERATURE = 200.0  # Wang et al.'s code divides the logits by T = 200 for the gradients it scores with


def keep_top(scores: dict[str, torch.Tensor], masks: Masks, keep: int, invert: bool = False) -> Masks:
    """Masks keeping the `keep` highest-scoring alive weights over all layers (ties: the lower flat index is
    removed first); `invert` keeps the `keep` lowest-scoring ones instead (the sanity check's inversion)."""
    alive = sum(int(m.sum()) for m in masks.values())
    if invert:
        scores = {n: -v for n, v in scores.items()}
    return global_score_prune(scores, masks, count=alive - keep)


def _weights(model: nn.Module, layers: Iterable[str]) -> dict[str, torch.Tensor]:
    modules = dict(model.named_modules())
    return {n: modules[n].weight for n in layers}


def magnitude_scores(model: nn.Module, layers) -> dict[str, torch.Tensor]:
    return {n: w.detach().abs() for n, w in _weights(model, layers).items()}


def snip_scores(model: nn.Module, layers,
                batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """|g * w| with g the mean gradient of the cross-entropy over the given batches (the model in train mode,
    as it would train)."""
    weights = _weights(model, layers)
    model.zero_grad(set_to_none=True)
    model.train()
    batches = list(batches)
    total = sum(len(y) for _, y in batches)  # the mean over every example (pieces of a batch sum the same)
    for x, y in batches:
        (F.cross_entropy(model(x), y, reduction="sum") / total).backward()
    scores = {n: (w.grad * w).detach().abs() for n, w in weights.items()}
    model.zero_grad(set_to_none=True)
    return scores


def grasp_scores(model: nn.Module, layers, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                 temperature: float = GRASP_TEMPERATURE) -> dict[str, torch.Tensor]:
    """w * (H g): the weights to keep are the top of it (GraSP's score S = -w * (H g), lowest S kept).

    g is the mean gradient of the cross-entropy of logits / T over the batches (a constant), H g the gradient
    of g . grad L (the Hessian-gradient product, by double backward); both over the prunable weights only,
    as Wang et al. (biases and BatchNorm stay out of g and H)."""
    weights = _weights(model, layers)
    params = list(weights.values())
    model.zero_grad(set_to_none=True)
    model.train()
    batches = list(batches)
    total = sum(len(y) for _, y in batches)

    def loss(x, y):
        return F.cross_entropy(model(x) / temperature, y, reduction="sum") / total

    g = [torch.zeros_like(p) for p in params]
    for x, y in batches:
        for acc, d in zip(g, torch.autograd.grad(loss(x, y), params)):
            acc.add_(d)
    hg = [torch.zeros_like(p) for p in params]
    for x, y in batches:
        grads = torch.autograd.grad(loss(x, y), params, create_graph=True)
        z = sum((d * c).sum() for d, c in zip(grads, g))
        for acc, d in zip(hg, torch.autograd.grad(z, params)):
            acc.add_(d)
    model.zero_grad(set_to_none=True)
    return {n: (w.detach() * h).detach() for (n, w), h in zip(weights.items(), hg)}


def synflow_masks(model: nn.Module, layers, in_shape, keep: int,
                  iterations: int = SYNFLOW_ITERATIONS, invert: bool = False) -> Masks:
    """SynFlow's masks for `keep` weights: `iterations` rounds of scoring and pruning, the kept fraction
    following the exponential schedule (keep/total)^(k/iterations); the model is used in float64, eval mode
    (BatchNorm with its running statistics), with |w| and an all-ones input, on a copy of the model.
    `invert` keeps the lowest scores at every iteration (the inversion ablation)."""
    model = copy.deepcopy(model).double().eval()
    weights = _weights(model, layers)
    with torch.no_grad():
        for w in model.state_dict().values():
            if w.is_floating_point():
                w.abs_()
    masks = {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}
    total = sum(m.numel() for m in masks.values())
    ones = torch.ones((1, *in_shape), dtype=torch.float64, device=next(model.parameters()).device)
    base = {n: w.detach().clone() for n, w in weights.items()}
    for k in range(1, iterations + 1):
        with torch.no_grad():
            for n, w in weights.items():
                w.copy_(base[n] * masks[n])
        model.zero_grad(set_to_none=True)
        model(ones).sum().backward()
        scores = {n: (w.grad * w).detach().abs() for n, w in weights.items()}
        target = max(keep, round(total * (keep / total) ** (k / iterations)))
        masks = keep_top(scores, masks, target, invert)
    return masks
