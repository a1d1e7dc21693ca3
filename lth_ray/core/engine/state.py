"""What a cohort keeps between rounds: one small typed state per member, and the checks made on resuming.

A member's state is what its next round needs and nothing more: the round counter, the rewind point (under
late rewinding; otherwise the init, rebuilt from the seed), the current mask (bit-packed) and trained weights
(alive values only), and one-shot's dense trained weights. Checkpoints store it as a plain dict (format 2;
`to_dict`), which is also what lth_ray 0.2 wrote.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lth_ray.core.spec.config import ConfigError, TrajectoryConfig

COHORT_FORMAT = 3  # a list of member states (each of trajectory state format 2)
STATE_FORMAT = 2  # one member's state; 1 was lth_ray 0.1.0 (every round's weights in one growing state)
# Settings a member may have of its own; every other setting is the cohort's recipe, shared by all.
MEMBER_FIELDS = (
    "seed",
    "method",
    "ablation",
    "save_early_stop",
    "instability",
    "instability_rounds",
    "instability_points",
    "score_batches",
)


@dataclass
class MemberState:
    """One member between rounds (tensors on the CPU; masks packed, trained weights compact)."""

    config: dict
    next_round: int
    diverged_round: int | None = None
    rewind: dict | None = None
    masks: dict | None = None
    trained: dict | None = None
    dense_trained: dict | None = None
    ticket_masks: dict | None = None  # its ticket's packed masks by round, handed over by a resume

    def to_dict(self) -> dict:
        d = {
            "format": STATE_FORMAT,
            "config": self.config,
            "next_round": self.next_round,
            "diverged_round": self.diverged_round,
            "rewind": self.rewind,
            "masks": self.masks,
            "trained": self.trained,
            "dense_trained": self.dense_trained,
        }
        if self.ticket_masks:
            d["ticket_masks"] = self.ticket_masks
        return d

    @classmethod
    def from_dict(cls, d: dict) -> MemberState:
        return cls(
            d["config"],
            d["next_round"],
            d.get("diverged_round"),
            d.get("rewind"),
            d.get("masks"),
            d.get("trained"),
            d.get("dense_trained"),
            dict(d["ticket_masks"]) if d.get("ticket_masks") else None,
        )


def initial_state(config: TrajectoryConfig) -> dict:
    """The state of a trajectory before its first round."""
    return MemberState(config.to_dict(), config.first_round).to_dict()


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


def needs_ticket(config: TrajectoryConfig) -> bool:
    """Whether a member must share its ticket's cohort: it takes the ticket's masks (re-init, the ticket's
    shuffle) or, being a rider without a dense round under late rewinding, the ticket's rewind point. Every other
    member (random pruning from the init, pruning at init and its ablations, the ticket's inversion) can train
    in a cohort of its own."""
    return config.mask_source == "ticket" or (
        config.start == "rewind" and config.first_round == 1 and config.rewind_iteration > 0
    )


def ticket_kind(config: TrajectoryConfig) -> bool:
    """Whether the member's method finds tickets (imp, one-shot), ablated or not."""
    from lth_ray.core.methods import method_of  # the methods' registry imports this module

    return method_of(config.method).is_ticket


def check_cohort(members: Sequence[TrajectoryConfig]) -> tuple[TrajectoryConfig, ...]:
    """The members, validated: one recipe, distinct members, and every baseline's ticket present when the
    baseline needs it (re-init and the ticket's shuffle take the ticket's masks; a member starting from the
    rewind point without a dense round of its own, under late rewinding, the ticket's rewind point)."""
    members = tuple(m.validate() for m in members)
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
    tickets = {m.seed for m in members if m.is_ticket}
    kinds = {m.method for m in members if ticket_kind(m)}
    if len(kinds) > 1:
        raise ConfigError("a cohort holds one kind of ticket (imp or one-shot), not both")
    for m in members:
        if needs_ticket(m) and m.seed not in tickets:
            why = "its masks" if m.mask_source == "ticket" else "its rewind point"
            kind = m.method if ticket_kind(m) else "imp"
            raise ConfigError(
                f"baseline {m.key} needs its ticket (seed {m.seed}, {kind}) in the same "
                f"cohort for {why}; add it, e.g. --method {kind} --baselines {m.label}"
            )
    return members
