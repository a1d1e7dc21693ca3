"""`imp`: the lottery ticket by iterative magnitude pruning (Frankle & Carbin 2019).

Each round prunes the previous round's trained net by its mask criterion (the final magnitude |w_f| by default;
`methods.criterion`), per layer at its rate or globally, then rewinds the survivors to the init (or W_k).
`invert` keeps the lowest-scoring instead.
"""

from __future__ import annotations

from lth_ray.core.methods.criterion import kept_scores
from lth_ray.core.methods.registry import MemberMethod, MemberView
from lth_ray.core.pruning.masks import Masks, dense_masks, expand, global_score_prune, score_prune, unpack_masks


class IterativeMagnitude(MemberMethod):
    name = "imp"
    is_ticket = True

    def masks(self, member: MemberView, r: int, invert: bool) -> Masks:
        cfg, s = member.config, member.state
        assert s.trained is not None and (r == 1 or s.masks is not None), "round r >= 1 follows a trained round"
        previous = dense_masks(member.layer_weights()) if r == 1 or s.masks is None else unpack_masks(s.masks)
        trained = member.on_device(member.layer_weights(expand(s.trained, previous)))
        scores = kept_scores(member, trained, previous, r, invert)
        if cfg.pruning == "global":
            return global_score_prune(scores, previous, rate=cfg.prune_rate_fc)
        return score_prune(scores, previous, member.rates)
