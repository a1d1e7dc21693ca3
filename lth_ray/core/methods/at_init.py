"""Pruning at initialization (Frankle et al. 2021): the init pruned by a scorer's scores to the ticket's count
of the round, trained from iteration 0. One method per registered scorer (`pruning.scoring`).

Scores at init do not depend on the round: they are computed once per seed (and SNIP's/GraSP's batches) and
shared by the method's ablations. An iterative scorer (SynFlow) ends its schedule at the round's count, so it
is re-run every round.
"""

from __future__ import annotations

from lth_ray.core.methods.registry import MemberMethod, MemberView
from lth_ray.core.pruning.masks import Masks, dense_masks
from lth_ray.core.pruning.scoring import keep_top, scorer


class PruneAtInit(MemberMethod):
    start = "init"

    def __init__(self, scorer_name: str):
        self.name = scorer_name

    @property
    def scores_from_data(self) -> bool:
        return scorer(self.name).needs_data

    def masks(self, member: MemberView, r: int, invert: bool) -> Masks:
        cfg, how = member.config, scorer(self.name)
        ones = dense_masks(member.layer_weights())
        keep, cache = member.ladder_count(r), member.cache
        key: tuple
        if how.masks is not None:  # an iterative scorer (`how.iterative`)
            key = (self.name, cfg.seed, r, invert)
            if key not in cache:
                for old in [k for k in cache if k[0] == self.name and k[2] != r]:
                    del cache[old]  # an earlier round's masks are not needed again
                masks = how.masks(member.scoring_model(), member.kinds, member.in_shape, keep, invert=invert)
                cache[key] = {n: m.cpu() for n, m in masks.items()}
            return cache[key]
        key = (self.name, cfg.seed, cfg.score_batches)
        if key not in cache:
            batches = member.scoring_batches() if how.needs_data else []
            assert how.score is not None  # a scorer gives exactly one of score and masks (register_scorer)
            scores = how.score(member.scoring_model(), member.kinds, batches)
            cache[key] = {n: v.detach() for n, v in scores.items()}  # on the device: every round sorts them there
        return keep_top(cache[key], ones, keep, invert)
