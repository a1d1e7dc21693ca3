"""`grasp` (Wang et al. 2020): S = -w * (H g), H the Hessian and g the gradient of the training loss at init
(the logits divided by a temperature of 200, as the authors' code); GraSP removes the highest S, so the
weights kept are the top of -S = w * (H g)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from lth_ray.core.pruning.scoring.base import Scorer, _weights

GRASP_TEMPERATURE = 200.0  # Wang et al.'s code divides the logits by T = 200 for the gradients it scores with


def grasp_scores(
    model: nn.Module,
    layers,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    temperature: float = GRASP_TEMPERATURE,
) -> dict[str, torch.Tensor]:
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
        z = cast(torch.Tensor, sum((d * c).sum() for d, c in zip(grads, g)))  # left to right, as always
        for acc, d in zip(hg, torch.autograd.grad(z, params)):
            acc.add_(d)
    model.zero_grad(set_to_none=True)
    return {n: (w.detach() * h).detach() for (n, w), h in zip(weights.items(), hg)}


SCORER = Scorer("grasp", grasp_scores, needs_data=True)
