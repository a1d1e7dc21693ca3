"""The small interface every scorer of pruning at initialization implements, and the shared choice of weights.

Like ShrinkBench's strategies, a scorer only scores: it maps a net at its initialization to one score per
prunable weight. Keeping the top weights to a count (over all layers) and inverting (keeping the lowest) are
shared code, applied to any scores. An iterative scorer (SynFlow) re-scores between prunings and so chooses
its masks itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from lth_ray.core.pruning.masks import Masks, global_score_prune

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class Scorer:
    """A pruning-at-init method's scores. `score(model, layers, batches)` -> {layer: scores like its weight};
    `batches` is empty unless `needs_data`. An iterative scorer gives `masks(model, layers, in_shape, keep,
    invert)` instead, and is then re-run for every round's count."""

    name: str
    score: Callable[[nn.Module, dict[str, str], list], dict] | None = None
    needs_data: bool = False
    masks: Callable | None = None

    @property
    def iterative(self) -> bool:
        return self.masks is not None


def keep_top(
    scores: dict[str, torch.Tensor], masks: Masks, keep: int, invert: bool = False, alive: int | None = None
) -> Masks:
    """Masks keeping the `keep` highest-scoring alive weights over all layers (ties: the lower flat index is
    removed first); `invert` keeps the `keep` lowest-scoring ones instead (the sanity check's inversion).
    `alive`: the masks' count of alive weights, when the caller knows it (counting reads device masks back)."""
    if alive is None:
        alive = sum(int(m.sum()) for m in masks.values())
    if invert:
        scores = {n: -v for n, v in scores.items()}
    return global_score_prune(scores, masks, count=alive - keep)


def _grad(weight: torch.Tensor) -> torch.Tensor:
    """The gradient a backward pass left on `weight` (every scored weight takes part in the loss)."""
    if weight.grad is None:
        raise RuntimeError("a scored weight has no gradient: it took no part in the loss")
    return weight.grad


def _weights(model: nn.Module, layers: Iterable[str]) -> dict[str, torch.Tensor]:
    modules = dict(model.named_modules())
    return {n: modules[n].weight for n in layers}
