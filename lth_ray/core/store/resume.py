"""Where a trajectory or cohort continues: its checkpoint, or the round files written after it. No Ray.

A finished round's files are written once and never recomputed; a checkpoint holds only what the next round
needs (`spec.state.MemberState` per member). State files are written atomically (write, then rename).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from lth_ray.core.engine.state import check_state, finished, initial_state
from lth_ray.core.methods import method_of
from lth_ray.core.methods.member import first_round, is_ticket, mask_source, start_of
from lth_ray.core.spec.config import TrajectoryConfig
from lth_ray.core.spec.state import COHORT_FORMAT
from lth_ray.core.store.rounds import RoundStore


def state_from_rounds(config: TrajectoryConfig, store: RoundStore, last: int) -> dict | None:
    """The state after round `last`, rebuilt from complete round files (None: they cannot rebuild it)."""
    rewind = store.rewind() if config.rewind_iteration else None
    if config.rewind_iteration and rewind is None and start_of(config) == "rewind":
        return None  # the rewind point is lost: start over rather than guess
    state = initial_state(config)
    state.update(
        next_round=last + 1,
        diverged_round=last if store.record(last).get("diverged") else None,
        rewind=rewind,
        masks=store.packed_masks(last),
        trained=store.compact_trained(last),
        dense_trained=store.compact_trained(0)
        if method_of(config.method).keeps_dense_trained and first_round(config) == 0
        else None,
    )
    return state


def resume_state(config: TrajectoryConfig, store: RoundStore, checkpoint: dict | None) -> dict | None:
    """Where a trajectory continues: right after the longest run of complete round files.

    The checkpoint is used as it is when it ends exactly there. Otherwise the round files decide: rounds
    finished after the last checkpoint Tune registered are kept (never recomputed), and a round whose files
    are missing or torn is recomputed, with every round after it (they depend on it). None: start afresh.
    """
    if checkpoint is not None:
        check_state(checkpoint, config)
    done = store.complete_prefix(first_round(config))
    if not done:
        return None
    if checkpoint is not None and checkpoint["next_round"] == done[-1] + 1:
        return checkpoint
    return state_from_rounds(config, store, done[-1])


def resume_cohort(
    configs: Sequence[TrajectoryConfig], stores: Sequence[RoundStore], checkpoint: dict | None
) -> list[dict | None]:
    """Every member's state to continue from (`resume_state`, member by member: a crash between two members'
    round files leaves them a round apart, and each continues where its own files end). A re-init member left
    more than a round behind its ticket gets the ticket's masks of the rounds in between from the ticket's
    round files (the ticket's state holds only its latest); so does the ticket's shuffle ablation."""
    members = member_states(checkpoint, len(configs))
    states = [resume_state(c, s, m) for c, s, m in zip(configs, stores, members)]
    for i, c in enumerate(configs):
        if mask_source(c) != "ticket":
            continue
        t = next(j for j, d in enumerate(configs) if d.seed == c.seed and is_ticket(d))
        own, ticket = states[i], states[t]
        mine = own["next_round"] if own else first_round(c)
        theirs = ticket["next_round"] if ticket else first_round(configs[t])
        if theirs > mine + 1 and not finished(states[i], c):
            state = states[i] or initial_state(c)
            state["ticket_masks"] = {r: stores[t].packed_masks(r) for r in range(mine, theirs - 1)}
            states[i] = state
    return states


def member_states(checkpoint: dict | None, members: int) -> list[dict | None]:
    """The member states of a checkpoint: a cohort's (format 3), or one trajectory's (format 2)."""
    if checkpoint is None:
        return [None] * members
    if checkpoint.get("format") == COHORT_FORMAT:
        states = list(checkpoint["members"])
        if len(states) != members:
            raise ValueError(f"checkpoint holds {len(states)} members, the cohort has {members}")
        return states
    if members != 1:
        raise ValueError(f"a single trajectory's checkpoint cannot continue a cohort of {members}")
    return [checkpoint]


# ------------------------------------------------------------------ state files


def save_state(state: dict, path: str | os.PathLike) -> None:
    """Atomic torch.save: a crash mid-write never leaves a half-written state file behind."""
    tmp = f"{path}.tmp-{os.getpid()}"
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_state(path: str | os.PathLike) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)
