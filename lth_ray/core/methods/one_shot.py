"""`one-shot`: the ticket pruned in one step from the dense round's trained weights, to each round's count, by
its mask criterion (`methods.criterion`)."""

from __future__ import annotations

from lth_ray.core.methods.criterion import kept_scores
from lth_ray.core.methods.registry import MemberMethod, MemberView
from lth_ray.core.pruning.masks import Masks, alive_after, dense_masks, expand, global_score_prune, score_prune_to


class OneShot(MemberMethod):
    name = "one-shot"
    is_ticket = True
    keeps_dense_trained = True

    def masks(self, member: MemberView, r: int, invert: bool) -> Masks:
        cfg, dense_trained = member.config, member.state.dense_trained
        assert dense_trained is not None, "one-shot keeps its dense round's trained weights"
        dense = member.on_device(member.layer_weights(expand(dense_trained, dense_masks(member.layer_weights()))))
        ones = dense_masks(dense)
        scores = kept_scores(member, dense, ones, r, invert)
        if cfg.pruning == "global":
            total = sum(m.numel() for m in ones.values())
            return global_score_prune(scores, ones, count=total - alive_after(total, cfg.prune_rate_fc, r))
        targets = {n: alive_after(m.numel(), member.rates[n], r) for n, m in ones.items()}
        return score_prune_to(scores, ones, targets)
