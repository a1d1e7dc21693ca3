"""Baseline kinds: a method trained beside each ticket as the sweep's `--baselines <method>` would have, at the
ticket's density (its count of the round): random pruning, and one kind per pruning-at-init scorer."""

from __future__ import annotations

from lth_ray.core.branches.registry import BranchKind
from lth_ray.core.engine.trajectory import cohort_members
from lth_ray.core.spec.config import TrajectoryConfig


class Baseline(BranchKind):
    def __init__(self, method: str, summary: str):
        self.name, self.summary = method, summary

    def members(self, ticket: TrajectoryConfig, of: str | None = None) -> list[TrajectoryConfig]:
        return cohort_members(ticket, [ticket.seed], [self.name])[1:]
