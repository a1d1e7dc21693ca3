"""`random-prune`: weights removed at random, round by round, to the ticket's count (per layer, or in total
under global pruning); each round's draw its own stream. Trained from the ticket's rewind point."""

from __future__ import annotations

from lth_ray.core.methods.member import first_round
from lth_ray.core.methods.registry import MemberMethod, MemberView
from lth_ray.core.pruning.masks import Masks, dense_masks, global_random_prune, random_prune, unpack_masks
from lth_ray.core.spec.streams import STREAM_RANDOM_PRUNE, generator


class RandomPrune(MemberMethod):
    name = "random-prune"
    ablations = ("shuffle", "reinit")  # no scores to invert

    def masks(self, member: MemberView, r: int, invert: bool) -> Masks:
        """The random-prune member continues from its latest mask (round r - 1's); its ablations redo the
        (cheap) chain from the dense mask."""
        cfg = member.config
        own = cfg.ablation == "" and r > first_round(cfg)
        latest = member.state.masks
        assert not own or latest is not None, "a random-prune member past its first round has its masks"
        masks = unpack_masks(latest) if own and latest is not None else dense_masks(member.layer_weights())
        for q in range(r if own else 1, r + 1):
            draw = generator(cfg.seed, STREAM_RANDOM_PRUNE, q)
            masks = (
                global_random_prune(masks, cfg.prune_rate_fc, draw)
                if cfg.pruning == "global"
                else random_prune(masks, member.rates, draw)
            )
        return masks
