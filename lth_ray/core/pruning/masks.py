"""Masks and pruning strategies as pure functions on {layer name: tensor} dicts.

A mask is a bool tensor shaped like its layer's weight (True = alive). Each strategy maps the current
weights and masks to new masks; nothing here touches a model. Ties between equal scores are broken by the
flat index (stable sort), so pruning is deterministic.
"""

from __future__ import annotations

import math

import numpy as np
import torch

Masks = dict[str, torch.Tensor]


def layer_rates(kinds: dict[str, str], rate_conv: float, rate_fc: float) -> dict[str, float]:
    """Per-layer rate: conv layers at the conv rate, hidden fc at the fc rate, output at half the fc rate."""
    by_kind = {"conv": rate_conv, "fc": rate_fc, "out": rate_fc / 2}
    return {name: by_kind[kind] for name, kind in kinds.items()}


def removal_count(alive: int, rate: float) -> int:
    """How many of `alive` weights one round at `rate` removes (round half up, never more than alive)."""
    return min(alive, int(math.floor(rate * alive + 0.5)))


def alive_after(total: int, rate: float, rounds: int) -> int:
    """Weights left in a layer of `total` weights after `rounds` rounds at `rate` (the sparsity ladder)."""
    alive = total
    for _ in range(rounds):
        alive -= removal_count(alive, rate)
    return alive


def dense_masks(weights: dict[str, torch.Tensor]) -> Masks:
    return {name: torch.ones_like(w, dtype=torch.bool) for name, w in weights.items()}


def _remove_lowest(scores: torch.Tensor, mask: torch.Tensor, count: int) -> torch.Tensor:
    """New mask with the `count` alive entries of lowest score removed (ties: lower flat index first), sorted
    on the scores' device (a GPU's stable sort keeps the CPU's tie order), then put where the mask lives."""
    if count <= 0:
        return mask.clone()
    # + 0.0 turns -0.0 into 0.0: a GPU's radix sort puts -0.0 before 0.0, a CPU's sort finds them equal
    flat = scores.detach().flatten().to(torch.float64) + 0.0
    alive = mask.flatten().to(flat.device)
    flat = torch.where(alive, flat, math.inf)
    order = torch.sort(flat, stable=True).indices[:count]
    new = alive.clone()
    new[order] = False
    return new.view_as(mask).to(mask.device)


def _magnitude(w: torch.Tensor, invert: bool) -> torch.Tensor:
    """|w| as a score to keep by; inverted (the ablation's "keep the lowest"), -|w|."""
    return -w.detach().abs() if invert else w.detach().abs()


def score_prune(scores: dict[str, torch.Tensor], masks: Masks, rates: dict[str, float]) -> Masks:
    """Layer-wise pruning by signed scores (a mask criterion's): each layer loses `rate` of its alive weights,
    lowest score first."""
    return {
        name: _remove_lowest(scores[name], m, removal_count(int(m.sum()), rates[name])) for name, m in masks.items()
    }


def score_prune_to(scores: dict[str, torch.Tensor], masks: Masks, targets: dict[str, int]) -> Masks:
    """Keep the `targets[name]` highest-scoring alive weights of each layer (one-shot by a mask criterion)."""
    return {name: _remove_lowest(scores[name], m, int(m.sum()) - targets[name]) for name, m in masks.items()}


def magnitude_prune(
    weights: dict[str, torch.Tensor], masks: Masks, rates: dict[str, float], invert: bool = False
) -> Masks:
    """Layer-wise magnitude pruning: each layer loses `rate` of its alive weights, lowest |w| first
    (`invert`: highest |w| first)."""
    return score_prune({n: _magnitude(w, invert) for n, w in weights.items() if n in masks}, masks, rates)


def global_magnitude_prune(
    weights: dict[str, torch.Tensor],
    masks: Masks,
    rate: float | None = None,
    count: int | None = None,
    invert: bool = False,
) -> Masks:
    """Global magnitude pruning: `rate` of all alive weights (or `count` of them), lowest |w| across layers
    (`invert`: highest |w|)."""
    return global_score_prune({n: _magnitude(w, invert) for n, w in weights.items() if n in masks}, masks, rate, count)


def global_score_prune(
    scores: dict[str, torch.Tensor], masks: Masks, rate: float | None = None, count: int | None = None
) -> Masks:
    """Remove `rate` of all alive weights (or `count` of them), lowest signed score first across layers."""
    names = list(masks)
    flat_scores = torch.cat([scores[n].detach().flatten().double() for n in names])  # on the scores' device
    alive = torch.cat([masks[n].flatten().to(flat_scores.device) for n in names])
    if count is None:
        if rate is None:
            raise ValueError("global_score_prune needs a rate or a count")
        count = removal_count(int(alive.sum()), rate)
    flat = _remove_lowest(flat_scores, alive, count)
    out, start = {}, 0
    for n in names:
        size = masks[n].numel()
        out[n] = flat[start : start + size].view_as(masks[n]).to(masks[n].device)
        start += size
    return out


def random_scores(masks: Masks, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Uniform random scores for every weight, drawn layer by layer in mask order."""
    return {name: torch.rand(m.shape, generator=generator, dtype=torch.float64) for name, m in masks.items()}


def random_prune(masks: Masks, rates: dict[str, float], generator: torch.Generator) -> Masks:
    """Layer-wise random pruning: the same per-layer counts as magnitude pruning, weights chosen at random."""
    return score_prune(random_scores(masks, generator), masks, rates)


def global_random_prune(masks: Masks, rate: float, generator: torch.Generator) -> Masks:
    """Global random pruning (OpenLTH's): global magnitude pruning's total count, uniformly over all alive
    prunable weights, so the overall density equals the global ticket's at every round."""
    return global_score_prune(random_scores(masks, generator), masks, rate=rate)


def shuffle_within_layers(masks: Masks, generator: torch.Generator) -> Masks:
    """Each layer's alive weights moved to uniformly random positions of that layer (the same per-layer
    counts): Frankle et al. 2021's shuffle ablation, which keeps the layer-wise densities and nothing else."""
    out = {}
    for name, m in masks.items():
        flat = torch.zeros(m.numel(), dtype=torch.bool)
        flat[torch.randperm(m.numel(), generator=generator)[: int(m.sum())]] = True
        out[name] = flat.view(m.shape).to(m.device)
    return out


def density(masks: Masks) -> float:
    """Fraction of prunable weights remaining (the thesis calls this 'sparsity')."""
    alive = sum(int(m.sum()) for m in masks.values())
    return alive / sum(m.numel() for m in masks.values())


def layer_density(masks: Masks) -> dict[str, float]:
    return {name: int(m.sum()) / m.numel() for name, m in masks.items()}


def pack_masks(masks: Masks) -> dict[str, dict]:
    """Bit-packed masks (1 bit per weight) as plain containers that `torch.load(weights_only=True)` reads."""
    return {
        name: {"shape": list(m.shape), "bits": torch.from_numpy(np.packbits(m.detach().cpu().numpy().ravel()))}
        for name, m in masks.items()
    }


def unpack_masks(packed: dict[str, dict], device: str | torch.device = "cpu") -> Masks:
    out = {}
    for name, entry in packed.items():
        shape = tuple(entry["shape"])
        count = int(np.prod(shape)) if shape else 1
        bits = np.unpackbits(entry["bits"].numpy(), count=count).astype(bool)
        out[name] = torch.from_numpy(bits).view(shape).to(device)
    return out


def compact(weights: dict[str, torch.Tensor], masks: Masks) -> dict[str, torch.Tensor]:
    """A state dict with each masked layer's weight stored as its alive values only (in flat order).

    Pruned weights are exactly zero, so nothing is lost; a round's files and a checkpoint then shrink with
    the density instead of holding dense tensors of zeros. `expand` is the inverse.
    """
    out = {}
    for key, value in weights.items():
        layer, _, leaf = key.rpartition(".")
        out[key] = value.flatten()[masks[layer].flatten()].clone() if leaf == "weight" and layer in masks else value
    return out


def expand(weights: dict[str, torch.Tensor], masks: Masks) -> dict[str, torch.Tensor]:
    """The dense state dict of `compact(weights, masks)`: alive values in place, zeros elsewhere."""
    out = {}
    for key, value in weights.items():
        layer, _, leaf = key.rpartition(".")
        if leaf == "weight" and layer in masks:
            m = masks[layer].to("cpu")
            dense = torch.zeros(m.numel(), dtype=value.dtype)
            dense[m.flatten()] = value
            value = dense.view(m.shape)
        out[key] = value
    return out
