"""`shuffle`: the ticket's mask of each round shuffled within each layer (same per-layer counts); with
`--of METHOD` that method's mask shuffled."""

from __future__ import annotations

from lth_ray.core.branches.ablations import Ablation

SHUFFLE = Ablation("shuffle", "the mask shuffled within each layer (the ticket's, or with --of that method's)")
