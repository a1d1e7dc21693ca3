"""Evaluating nets over a whole split, and the early-stopping point of a round. Plain PyTorch.

Results stay on the device (no host sync in the training loop); the caller moves them once per round.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from lth_ray.core.engine import numerics


def early_stop_index(val_loss) -> int | None:
    """The thesis' early-stopping point: the first evaluation with minimum validation loss.

    Non-finite losses (a diverged run) are never the early-stop point; None when no evaluation is finite.
    """
    values = np.asarray(val_loss, dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return None
    return int(np.argmin(np.where(finite, values, np.inf)))


def diverged(record_or_values: dict) -> bool:
    """A round diverged when any of its losses went NaN or infinite."""
    return not all(np.isfinite(record_or_values[m]).all() for m in ("train_loss", "val_loss", "test_loss"))


@torch.inference_mode()
def evaluate(
    model, x: torch.Tensor, y: torch.Tensor, chunk: int = 5000, precision: str = "fp32"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss and accuracy of one (unstacked) model over a whole split, as device scalars (no host sync)."""
    loss = torch.zeros((), device=x.device, dtype=x.dtype)
    correct = torch.zeros((), device=x.device, dtype=x.dtype)
    for start in range(0, len(x), chunk):
        with numerics.autocast(precision, x.device):
            logits = model(x[start : start + chunk])
        target = y[start : start + chunk]
        loss += F.cross_entropy(logits.to(x.dtype), target, reduction="sum")
        correct += (logits.argmax(1) == target).sum()
    return loss / len(x), correct / len(x)


@torch.inference_mode()
def evaluate_stacked(
    net,
    tensors: dict[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    members: int,
    chunk: int,
    precision: str,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss and accuracy of every stacked member over a whole split, as (P,) device tensors (no host sync);
    `chunk` examples at a time (the memory budget's choice)."""
    loss = torch.zeros(members, device=x.device, dtype=dtype)
    correct = torch.zeros(members, device=x.device, dtype=dtype)
    for start in range(0, len(x), chunk):
        xs, target = x[start : start + chunk], y[start : start + chunk]
        with numerics.autocast(precision, x.device):
            logits = net.forward(tensors, xs, members, shared=True, training=False)
        loss += (
            F.cross_entropy(logits.to(dtype).flatten(0, 1), target.repeat(members), reduction="none")
            .view(members, -1)
            .sum(1)
        )
        correct += (logits.argmax(2) == target).sum(1)
    return loss / len(x), correct / len(x)
