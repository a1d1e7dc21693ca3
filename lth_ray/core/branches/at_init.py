"""Pruning at initialization at the ticket's density: one kind per registered scorer (SNIP, GraSP, SynFlow,
magnitude at init), each member the init pruned to the ticket's count of the round (Frankle et al. 2021)."""

from __future__ import annotations

from lth_ray.core.branches.baselines import Baseline
from lth_ray.core.pruning.scoring import SCORERS


def at_init_kinds() -> list[Baseline]:
    return [Baseline(name, f"pruning at init by {name} to the ticket's count") for name in SCORERS]
