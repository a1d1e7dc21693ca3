"""`magnitude-init`: |w| at initialization (Frankle et al. 2021's simplest baseline)."""

from __future__ import annotations

import torch
from torch import nn

from lth_ray.core.pruning.scoring.base import Scorer, _weights


def magnitude_scores(model: nn.Module, layers, batches=()) -> dict[str, torch.Tensor]:
    return {n: w.detach().abs() for n, w in _weights(model, layers).items()}


SCORER = Scorer("magnitude-init", magnitude_scores)
