"""A ticket's scores of the round under its mask criterion (`pruning.criteria`, Zhou et al. 2019).

w_i is the member's rewind point (its init, or W_k under late rewinding), w_f the trained weights its round prunes;
the random criterion (and a sign filter's random tie-break) draws from the member's own criterion stream of the
round. `invert` (the sanity check's inversion) keeps the lowest scores instead.
"""

from __future__ import annotations

import torch

from lth_ray.core.methods.registry import MemberView
from lth_ray.core.pruning.criteria import criterion_of, criterion_scores
from lth_ray.core.pruning.masks import Masks
from lth_ray.core.spec.streams import STREAM_CRITERION, generator


def kept_scores(
    member: MemberView, finals: dict[str, torch.Tensor], masks: Masks, r: int, invert: bool
) -> dict[str, torch.Tensor]:
    """The round-r scores of the member's prunable weights (higher: kept; `invert`: negated)."""
    cfg = member.config
    criterion = criterion_of(cfg.criterion)
    inits = member.on_device(member.layer_weights(member.rewind_weights())) if criterion.needs_init else {}
    draw = generator(cfg.seed, STREAM_CRITERION, r) if criterion.random or criterion.random_ties else None
    scope = "global" if cfg.pruning == "global" else "layer"
    scores = criterion_scores(cfg.criterion, inits, finals, masks, scope, draw)
    return {n: -s for n, s in scores.items()} if invert else scores
