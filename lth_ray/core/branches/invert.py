"""`invert`: the highest scores pruned instead of the lowest. The ticket's inversion is an IMP trajectory of its
own (each round prunes its own trained weights), so it runs every round from 0 to the last one asked for; with
`--of METHOD` a pruning-at-init method's inverted scores, at the chosen rounds only."""

from __future__ import annotations

from lth_ray.core.branches.ablations import Ablation

INVERT = Ablation("invert", "the highest scores pruned instead (the ticket's, or with --of that method's)")
