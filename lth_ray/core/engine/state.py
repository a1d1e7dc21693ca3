"""The checks a cohort's states pass on resuming, and what its checkpoint holds (`spec.state.MemberState` per
member). Checkpoints store member states as plain dicts (format 2).
"""

from __future__ import annotations

from collections.abc import Sequence

from lth_ray.core.methods.member import check_trajectory, first_round, is_ticket, mask_source, needs_ticket, ticket_kind
from lth_ray.core.spec.config import ConfigError, TrajectoryConfig
from lth_ray.core.spec.state import COHORT_FORMAT, MEMBER_FIELDS, STATE_FORMAT, MemberState


def initial_state(config: TrajectoryConfig) -> dict:
    """The state of a trajectory before its first round."""
    return MemberState(config.to_dict(), first_round(config)).to_dict()


def check_state(state: dict, config: TrajectoryConfig) -> None:
    """Refuse a state of another format (naming the version that wrote it) or of another config."""
    if state.get("format") != STATE_FORMAT:
        raise ValueError(
            f"trajectory state format {state.get('format')} (lth_ray 0.1.0) cannot be continued by "
            f"this version (format {STATE_FORMAT}); finish it with lth_ray 0.1.0, or export and "
            "analyse it as it is (both read the old format)"
        )
    if state.get("config") != config.to_dict():
        raise ValueError("trajectory state belongs to another config; refusing to resume from it")


def finished(state: dict | MemberState | None, config: TrajectoryConfig) -> bool:
    """A trajectory is finished when every round ran or a round diverged (it stops there, by design)."""
    if not state:
        return False
    if isinstance(state, dict):
        state = MemberState.from_dict(state)
    return state.next_round > config.rounds or state.diverged_round is not None


def cohort_state(states: Sequence[dict]) -> dict:
    """What a cohort checkpoint holds: its member states, and a progress count that only grows (the number
    of rounds its members have finished), by which the newest of several checkpoints is chosen."""
    return {"format": COHORT_FORMAT, "progress": sum(s["next_round"] for s in states), "members": list(states)}


def recipe_of(config: TrajectoryConfig) -> dict:
    """The settings every member of a cohort shares."""
    return {k: v for k, v in config.to_dict().items() if k not in MEMBER_FIELDS}


def check_cohort(members: Sequence[TrajectoryConfig], tickets_elsewhere: bool = False) -> tuple[TrajectoryConfig, ...]:
    """The members, validated: one recipe, distinct members, and every baseline's ticket present when the
    baseline needs it (re-init and the ticket's shuffle take the ticket's masks; a member starting from the
    rewind point without a dense round of its own, under late rewinding, the ticket's rewind point), unless the
    tickets are elsewhere (a branch's: its member states carry what they take from them)."""
    members = tuple(check_trajectory(m) for m in members)
    if not members:
        raise ConfigError("a cohort needs at least one member")
    recipe = recipe_of(members[0])
    for m in members[1:]:
        if recipe_of(m) != recipe:
            diff = sorted(k for k, v in recipe_of(m).items() if recipe[k] != v)
            raise ConfigError(f"cohort members must share one recipe; {m.key} differs in {', '.join(diff)}")
    keys = [m.key for m in members]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"a cohort lists the same member twice: {sorted(k for k in keys if keys.count(k) > 1)[0]}")
    tickets = {m.seed for m in members if is_ticket(m)}
    kinds = {m.method for m in members if ticket_kind(m)}
    if len(kinds) > 1:
        raise ConfigError("a cohort holds one kind of ticket (imp or one-shot), not both")
    for m in members:
        if needs_ticket(m) and m.seed not in tickets and not tickets_elsewhere:
            why = "its masks" if mask_source(m) == "ticket" else "its rewind point"
            kind = m.method if ticket_kind(m) else "imp"
            raise ConfigError(
                f"baseline {m.key} needs its ticket (seed {m.seed}, {kind}) in the same "
                f"cohort for {why}; add it, e.g. --method {kind} --baselines {m.label}"
            )
    return members
