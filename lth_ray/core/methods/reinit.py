"""`reinit`: the ticket's mask on a fresh initialization each round (the paper's random re-init baseline).

It rides with its ticket: its mask is the ticket's of the round, from memory. It is itself the ticket's re-init
ablation, so it takes no ablation of its own.
"""

from __future__ import annotations

from lth_ray.core.methods.registry import MemberMethod


class Reinit(MemberMethod):
    name = "reinit"
    start = "fresh"
    takes_ticket_masks = True
    ablations = ()
