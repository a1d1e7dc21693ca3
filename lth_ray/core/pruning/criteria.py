"""Mask criteria: which weights a ticket keeps, scored from its start weights w_i and trained weights w_f.

Zhou, Lan, Liu & Yosinski 2019, "Deconstructing Lottery Tickets" (uber-research/deconstructing-lottery-tickets,
`get_weight_init.py`): a criterion is a score per weight, and the lowest-scoring alive weights are pruned, per
layer under layer-wise pruning and over all prunable weights under global pruning. w_i is the member's rewind
point (the init, or W_k under late rewinding) and w_f the trained weights the round prunes (IMP: the previous
round's; one-shot: the dense round's). `large_final` (|w_f|) is IMP's own criterion and lth_ray's default.

Scores are float64. The sign filters zero the score of the weights whose sign changed (`same_sign`) or did not
(`diff_sign`), as the authors' code does (np.sign; 0 is a sign of its own); those zeros tie in the thousands, and
the authors break ties at random (`np.lexsort` with a random key), so these criteria do too, from the member's
criterion stream (`break_ties`): a tie broken by the flat index would keep the first rows of a layer.

The two joint criteria keep the weights in both top-q sets (by |w_i| and by |w_f|, among the alive ones), for the q
that keeps the round's count: the authors find q by bisection (`bsearch_quadrant_threshold`); here the weights enter
the intersection in order of max(rank by |w_i|, rank by |w_f|), which is the same family of sets with the count met
exactly (ties: the lower flat index kept first). Adding a criterion is one `register_criterion` call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from lth_ray.core.spec.errors import ConfigError, refuse_taken, registered

Tensors = dict[str, torch.Tensor]
DEFAULT_CRITERION = "large_final"


@dataclass(frozen=True)
class Criterion:
    """A criterion's score of each weight (higher: kept) from (w_i, w_f), elementwise; `joint`: 'large' or
    'small' for the two criteria ranked over a whole scope (a layer, or all layers under global pruning);
    `random`: scores drawn from the member's criterion stream."""

    name: str
    summary: str
    score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    joint: str = ""
    random: bool = False
    reads_init: bool = True  # whether its scores read w_i (large_final and small_final do not)
    random_ties: bool = False  # many exact ties (a sign filter's zeros): broken at random, as the authors' lexsort

    @property
    def needs_init(self) -> bool:
        return self.reads_init and not self.random


CRITERIA: dict[str, Criterion] = {}


def register_criterion(criterion: Criterion) -> Criterion:
    refuse_taken(CRITERIA, criterion.name, "criterion")
    if (criterion.score is None) == (not criterion.joint and not criterion.random):
        raise ConfigError(f"criterion {criterion.name!r} needs exactly one of score, joint or random")
    CRITERIA[criterion.name] = criterion
    return criterion


def criterion_of(name: str) -> Criterion:
    return registered(CRITERIA, name, "criterion")


def _same_sign(wi: torch.Tensor, wf: torch.Tensor) -> torch.Tensor:
    return torch.sign(wi) == torch.sign(wf)


def _ranks(values: torch.Tensor, alive: torch.Tensor, largest: bool) -> torch.Tensor:
    """Each entry's rank among the alive ones (0: the largest |value|, or the smallest when not `largest`; ties:
    the lower flat index first); pruned entries rank after every alive one."""
    key = values.abs() if largest else -values.abs()
    key = torch.where(alive, key, -torch.inf)
    order = torch.sort(-key, stable=True).indices
    ranks = torch.empty_like(order)
    ranks[order] = torch.arange(order.numel(), device=order.device)
    return ranks


def joint_scores(wi: torch.Tensor, wf: torch.Tensor, alive: torch.Tensor, largest: bool) -> torch.Tensor:
    """-max(rank by |w_i|, rank by |w_f|) over flat tensors: keeping the top n of it keeps the weights in both
    top-q sets for the smallest q whose intersection holds n of them."""
    worst = torch.maximum(_ranks(wi, alive, largest), _ranks(wf, alive, largest))
    return -worst.to(torch.float64)


def break_ties(scores: Tensors, scope: str, generator: torch.Generator) -> Tensors:
    """The scores' ranks (float64) after sorting by (score, a uniform random key), as the authors'
    `np.lexsort((np.random.random(n), score))`: the same order, equal scores in random order; within each layer
    (layer order, one stream) or over all layers at once (`scope` 'global')."""
    groups = [[n] for n in scores] if scope == "layer" else [list(scores)]
    out = {}
    for names in groups:
        flat = torch.cat([scores[n].flatten() for n in names])
        perm = torch.randperm(flat.numel(), generator=generator).to(flat.device)
        order = perm[torch.sort(flat[perm], stable=True).indices]
        ranks = torch.empty_like(flat)
        ranks[order] = torch.arange(flat.numel(), device=flat.device, dtype=flat.dtype)
        start = 0
        for n in names:
            out[n] = ranks[start : start + scores[n].numel()].view_as(scores[n])
            start += scores[n].numel()
    return out


def criterion_scores(
    name: str,
    inits: Tensors,
    finals: Tensors,
    masks: Tensors,
    scope: str,
    generator: torch.Generator | None = None,
) -> Tensors:
    """Each layer's scores under criterion `name` (higher: kept), float64, on the weights' device. `scope`:
    'layer' (layer-wise pruning: joint ranks within each layer) or 'global' (ranks over all layers). `generator`:
    the member's criterion stream of the round (the random criterion's scores, a sign filter's random ties)."""
    c = criterion_of(name)
    names = list(masks)
    wf = {n: finals[n].detach().to(torch.float64) for n in names}
    if (c.random or c.random_ties) and generator is None:
        raise ValueError(f"criterion {name!r} draws from the member's criterion stream")
    if c.random:
        assert generator is not None
        return {n: torch.rand(masks[n].shape, generator=generator, dtype=torch.float64).to(wf[n].device) for n in names}
    wi = {n: inits[n].detach().to(torch.float64).to(wf[n].device) for n in names} if c.needs_init else wf
    if c.score is not None:
        scores = {n: c.score(wi[n], wf[n]) for n in names}
        return break_ties(scores, scope, generator) if c.random_ties and generator is not None else scores
    largest = c.joint == "large"
    alive = {n: masks[n].to(wf[n].device) for n in names}
    if scope == "layer":
        return {
            n: joint_scores(wi[n].flatten(), wf[n].flatten(), alive[n].flatten(), largest).view_as(wf[n]) for n in names
        }
    flat = joint_scores(
        torch.cat([wi[n].flatten() for n in names]),
        torch.cat([wf[n].flatten() for n in names]),
        torch.cat([alive[n].flatten() for n in names]),
        largest,
    )
    out, start = {}, 0
    for n in names:
        size = wf[n].numel()
        out[n] = flat[start : start + size].view_as(wf[n])
        start += size
    return out


def _filtered(score: Callable, same: bool) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """`score` where the sign stayed (same) or changed (not same); 0 elsewhere (the authors' code)."""

    def filtered(wi: torch.Tensor, wf: torch.Tensor) -> torch.Tensor:
        keep = _same_sign(wi, wf) if same else ~_same_sign(wi, wf)
        return torch.where(keep, score(wi, wf), 0.0)

    return filtered


def _large_final(wi: torch.Tensor, wf: torch.Tensor) -> torch.Tensor:
    return wf.abs()


def _magnitude_increase(wi: torch.Tensor, wf: torch.Tensor) -> torch.Tensor:
    return wf.abs() - wi.abs()


for _criterion in (
    Criterion("large_final", "|w_f|: IMP's own (the default)", _large_final, reads_init=False),
    Criterion("small_final", "-|w_f|", lambda wi, wf: -wf.abs(), reads_init=False),
    Criterion("large_init", "|w_i|", lambda wi, wf: wi.abs()),
    Criterion("small_init", "-|w_i|", lambda wi, wf: -wi.abs()),
    Criterion("large_init_large_final", "large |w_i| and large |w_f| (both top-q sets)", joint="large"),
    Criterion("small_init_small_final", "small |w_i| and small |w_f| (both bottom-q sets)", joint="small"),
    Criterion("magnitude_increase", "|w_f| - |w_i|", _magnitude_increase),
    Criterion("movement", "|w_f - w_i|", lambda wi, wf: (wf - wi).abs()),
    Criterion("random", "uniform random scores (the member's criterion stream)", random=True),
    Criterion(
        "large_final_same_sign", "|w_f|, 0 where the sign changed", _filtered(_large_final, True), random_ties=True
    ),
    Criterion(
        "large_final_diff_sign", "|w_f|, 0 where the sign stayed", _filtered(_large_final, False), random_ties=True
    ),
    Criterion(
        "magnitude_increase_same_sign",
        "|w_f| - |w_i|, 0 where the sign changed",
        _filtered(_magnitude_increase, True),
        random_ties=True,
    ),
    Criterion(
        "magnitude_increase_diff_sign",
        "|w_f| - |w_i|, 0 where the sign stayed",
        _filtered(_magnitude_increase, False),
        random_ties=True,
    ),
):
    register_criterion(_criterion)
