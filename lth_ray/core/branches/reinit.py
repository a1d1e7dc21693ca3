"""`reinit`: the ticket's mask of each round on a fresh initialization (the paper's random re-init baseline, the
ticket's re-init ablation); with `--of METHOD` that method's re-init ablation. Its masks come from the ticket's
round files."""

from __future__ import annotations

from lth_ray.core.branches.ablations import Ablation

REINIT = Ablation("reinit", "the ticket's masks on a fresh init each round (with --of: that method's masks)")
