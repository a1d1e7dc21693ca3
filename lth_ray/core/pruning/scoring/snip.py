"""`snip` (Lee et al. 2019): |g * w|, g the gradient of the training loss at init over `score_batches` batches."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from lth_ray.core.pruning.scoring.base import Scorer, _grad, _weights


def snip_scores(
    model: nn.Module, layers, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]
) -> dict[str, torch.Tensor]:
    """|g * w| with g the mean gradient of the cross-entropy over the given batches (the model in train mode,
    as it would train)."""
    weights = _weights(model, layers)
    model.zero_grad(set_to_none=True)
    model.train()
    batches = list(batches)
    total = sum(len(y) for _, y in batches)  # the mean over every example (pieces of a batch sum the same)
    for x, y in batches:
        (F.cross_entropy(model(x), y, reduction="sum") / total).backward()
    scores = {n: (_grad(w) * w).detach().abs() for n, w in weights.items()}
    model.zero_grad(set_to_none=True)
    return scores


SCORER = Scorer("snip", snip_scores, needs_data=True)
