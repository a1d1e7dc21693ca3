"""`instability`: linear mode connectivity (Frankle et al. 2020) measured afterwards, at chosen rounds of a trunk
that ran without `--instability`. The member is the ticket itself: each chosen round starts from the trunk's files
of the round before (its mask, trained weights and rewind point), retrains the ticket's round beside a copy with
another data order, and records the error barrier on the path between the two, as `--instability` would have."""

from __future__ import annotations

from lth_ray.core.branches.registry import BranchKind
from lth_ray.core.spec.config import TrajectoryConfig


class Instability(BranchKind):
    name = "instability"
    summary = "the ticket's round retrained beside a copy with another data order: the error barrier between them"
    measures_instability = True

    def members(self, ticket: TrajectoryConfig, of: str | None = None) -> list[TrajectoryConfig]:
        return [ticket]


INSTABILITY = Instability()
