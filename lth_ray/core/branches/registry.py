"""Branch kinds by name: the new members a branch trains beside each of a finished trunk's tickets.

A branch (OpenLTH's "lottery branch") asks a new question of tickets that already exist: which members to add
for a ticket is its kind's one decision (`members`), made from the ticket's config alone, so a member added later
is the very member the sweep would have trained beside the ticket (same config, same named random streams).
Adding a kind is one file plus one `register_branch` call, as for methods and models.
"""

from __future__ import annotations

from lth_ray.core.methods.member import check_trajectory
from lth_ray.core.spec.config import ConfigError, TrajectoryConfig
from lth_ray.core.spec.errors import refuse_taken


class BranchKind:
    """One kind of branch: its name, one line saying what it asks, and the members it adds for a ticket.
    `of`: the method an ablation kind ablates (None: the ticket itself); kinds that take no `of` refuse one."""

    name: str = ""
    summary: str = ""
    takes_of: bool = False  # an ablation of a baseline may be asked for with --of METHOD
    measures_instability: bool = False  # its members measure instability at the branch's rounds
    takes_settings: tuple[str, ...] = ()  # recipe settings its members may change (--set KEY=VALUE)

    def members(self, ticket: TrajectoryConfig, of: str | None = None) -> list[TrajectoryConfig]:
        raise NotImplementedError

    def check(self, ticket: TrajectoryConfig, member: TrajectoryConfig) -> None:
        """Refuse (ConfigError) a member the ticket's files cannot start; by default every member fits."""


BRANCHES: dict[str, BranchKind] = {}


def register_branch(kind: BranchKind) -> BranchKind:
    if not kind.name:
        raise ConfigError(f"a branch kind needs a name; {type(kind).__name__} has none")
    refuse_taken(BRANCHES, kind.name, "branch kind")
    BRANCHES[kind.name] = kind
    return kind


def branch_of(name: str) -> BranchKind:
    if name not in BRANCHES:
        raise ConfigError(f"branch kind {name!r} is unknown; allowed: {', '.join(BRANCHES)}")
    return BRANCHES[name]


def branch_members(
    kind: BranchKind,
    ticket: TrajectoryConfig,
    of: str | None = None,
    rounds: tuple[int, ...] = (),
    settings: dict | None = None,
) -> list[TrajectoryConfig]:
    """The kind's members for one ticket, checked: an `of` the kind does not take, or members that come out
    empty (an ablation that does not apply to `of`), is one line naming what is allowed. They measure no
    instability, unless the kind does: then at the branch's `rounds`."""
    if of is not None and not kind.takes_of:
        raise ConfigError(f"--of {of}: branch kind {kind.name!r} ablates nothing; --of is for the ablation kinds")
    members = kind.members(ticket, of)
    for key in settings or {}:
        if key not in kind.takes_settings:
            allowed = ", ".join(kind.takes_settings) or f"none (branch kind {kind.name!r} changes no setting)"
            raise ConfigError(f"--set {key}: not a setting a {kind.name} branch changes; allowed: {allowed}")
    members = [check_trajectory(m.replace(**(settings or {}))) for m in members]
    for m in members:
        kind.check(ticket, m)
    if not members:
        raise ConfigError(f"branch kind {kind.name!r} adds no member to a {of or ticket.method} ticket")
    if kind.measures_instability:
        return [m.replace(instability=True, instability_rounds=tuple(rounds)) for m in members]
    return [m.replace(instability=False, instability_rounds=()) for m in members]
