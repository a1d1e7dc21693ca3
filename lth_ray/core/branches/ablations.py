"""The sanity-check ablations (Frankle et al. 2021) as branch kinds: `shuffle` (the mask shuffled within each
layer), `invert` (the highest scores pruned instead) and `reinit` (the mask on a fresh initialization: of the
ticket, that is its re-init baseline). They ablate the ticket, or with `--of METHOD` a baseline method."""

from __future__ import annotations

from lth_ray.core.branches.registry import BranchKind
from lth_ray.core.engine.trajectory import ablated
from lth_ray.core.methods import method_of
from lth_ray.core.spec.config import TrajectoryConfig


class Ablation(BranchKind):
    takes_of = True

    def __init__(self, ablation: str, summary: str):
        self.name, self.summary = ablation, summary

    def members(self, ticket: TrajectoryConfig, of: str | None = None) -> list[TrajectoryConfig]:
        """The ablation of `of` (default: the ticket's method) as the sweep's `--ablations` makes it."""
        method = of or ticket.method
        if of is not None and method_of(of).is_ticket and of != ticket.method:
            return []  # another kind of ticket is not in this trunk
        return [ticket.replace(method=m, ablation=a) for m, a in ablated(method, [self.name])]
