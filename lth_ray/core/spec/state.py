"""What a member keeps between rounds: one small typed state, plain data.

A member's state is what its next round needs and nothing more: the round counter, the rewind point (under
late rewinding; otherwise the init, rebuilt from the seed), the current mask (bit-packed) and trained weights
(alive values only), and one-shot's dense trained weights. Checkpoints store it as a plain dict (`to_dict`).
"""

from __future__ import annotations

from dataclasses import dataclass

COHORT_FORMAT = 3  # a list of member states (each of trajectory state format 2)
STATE_FORMAT = 2  # one member's state; format 1 held every round's weights in one growing state
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
