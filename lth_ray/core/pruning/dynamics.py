"""How a ticket's mask and signs move from round to round: plain functions on masks and weights.

- The normalised Hamming distance between consecutive rounds' masks (You et al. 2020, "Drawing Early-Bird
  Tickets", whose early stop watches it): the share of a layer's weights (or of all prunable weights) whose
  kept/pruned state differs between the two masks.
- The Jaccard overlap |A and B| / |A or B| of two masks' kept weights (two seeds' tickets at the same round).
- The sign-flip share (Gadhikar & Burkholz 2024, "Masks, Signs, and Learning Rate Rewinding"): of the weights a
  round's mask keeps, the share whose sign after training differs from the round's start (torch.sign: an exact
  zero is a sign of its own).
Overall values pool every prunable weight; a layer with nothing to count gives None.
"""

from __future__ import annotations

import torch

from lth_ray.core.pruning.masks import Masks


def _share(count: int, total: int) -> float | None:
    return count / total if total else None


def mask_distance(previous: Masks, current: Masks) -> tuple[float | None, dict[str, float | None]]:
    """(overall, per layer) normalised Hamming distance between two masks of the same layers; a layer whose shape
    changed (a retrain branch's output layer for another class count) is left out."""
    same = [n for n in current if n in previous and previous[n].shape == current[n].shape]
    differ = {n: int((previous[n].cpu() != current[n].cpu()).sum()) for n in same}
    sizes = {n: current[n].numel() for n in same}
    layers = {n: _share(differ[n], sizes[n]) if n in differ else None for n in current}
    return _share(sum(differ.values()), sum(sizes.values())), layers


def jaccard(a: Masks, b: Masks) -> tuple[float | None, dict[str, float | None]]:
    """(overall, per layer) Jaccard overlap of two masks' kept weights."""
    both = {n: int((a[n].cpu() & b[n].cpu()).sum()) for n in a}
    either = {n: int((a[n].cpu() | b[n].cpu()).sum()) for n in a}
    return _share(sum(both.values()), sum(either.values())), {n: _share(both[n], either[n]) for n in a}


def sign_flips(
    start: dict[str, torch.Tensor], trained: dict[str, torch.Tensor], masks: Masks
) -> tuple[float | None, dict[str, float | None]]:
    """(overall, per layer) share of the kept weights whose sign differs between `start` and `trained` (state
    dicts: a layer's weight is `<layer>.weight`)."""
    flipped, kept = {}, {}
    for n, m in masks.items():
        m = m.cpu()
        before, after = start[f"{n}.weight"].cpu(), trained[f"{n}.weight"].cpu()
        flipped[n] = int(((torch.sign(before) != torch.sign(after)) & m).sum())
        kept[n] = int(m.sum())
    return _share(sum(flipped.values()), sum(kept.values())), {n: _share(flipped[n], kept[n]) for n in masks}
