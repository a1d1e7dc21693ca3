"""`synflow` (Tanaka et al. 2020): data-free and iterative: |dR/dw * w| with R the output sum of the net with
absolute weights on an all-ones input, re-scored after each of 100 prunings on an exponential schedule."""

from __future__ import annotations

import copy

import torch
from torch import nn

from lth_ray.core.pruning.masks import Masks
from lth_ray.core.pruning.scoring.base import Scorer, _grad, _weights, keep_top

SYNFLOW_ITERATIONS = 100


def synflow_masks(
    model: nn.Module, layers, in_shape, keep: int, iterations: int = SYNFLOW_ITERATIONS, invert: bool = False
) -> Masks:
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
    alive = total
    for k in range(1, iterations + 1):
        with torch.no_grad():
            for n, w in weights.items():
                w.copy_(base[n] * masks[n])
        model.zero_grad(set_to_none=True)
        model(ones).sum().backward()
        scores = {n: (_grad(w) * w).detach().abs() for n, w in weights.items()}
        target = max(keep, round(total * (keep / total) ** (k / iterations)))
        masks = keep_top(scores, masks, target, invert, alive)
        alive = target  # known on the host: no count read back from the device at each of the prunings
    return masks


SCORER = Scorer("synflow", masks=synflow_masks)
