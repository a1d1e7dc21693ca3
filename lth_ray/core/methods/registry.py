"""Member methods by name: where a member's mask comes from and where its training starts.

A cohort member is (seed, method, ablation, data order, start point). The engine never compares method
names: it asks the member's method. A method is one small class (ShrinkBench-like): a few facts and
`masks`, its round-r mask chosen on the host. Adding one is one file plus one `register_method` call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from lth_ray.core.pruning.masks import Masks
from lth_ray.core.spec.config import ABLATIONS, ConfigError, TrajectoryConfig
from lth_ray.core.spec.errors import refuse_taken
from lth_ray.core.spec.state import MemberState


@dataclass
class MemberView:
    """What a method sees of its member when it chooses the member's mask of a round."""

    config: TrajectoryConfig
    state: MemberState
    init: dict[str, torch.Tensor]  # the member's weights at initialization (its seed's)
    kinds: dict[str, str]  # prunable layer -> 'conv' | 'fc' | 'out'
    rates: dict[str, float]  # each prunable layer's rate per round (layer-wise pruning)
    ladder_count: Callable[[int], int]  # weights the ticket keeps in round r (every method keeps as many)
    scoring_model: Callable[[], nn.Module]  # the member's net at init, on the cohort's device
    scoring_batches: Callable[[], list]  # the training batches a data-driven scorer uses
    in_shape: tuple
    cache: dict  # the cohort's scores, shared by the members of one seed and method
    device: torch.device = torch.device("cpu")  # the cohort's: masks are chosen (sorted) there

    def on_device(self, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """`weights` on the cohort's device, where a GPU sorts their magnitudes far faster than the host."""
        return {n: w.to(self.device) for n, w in weights.items()}

    def rewind_weights(self) -> dict[str, torch.Tensor]:
        """The weights rounds >= 1 rewind to: the init, or under late rewinding the weights at k (w_i of the mask
        criteria)."""
        if self.config.rewind_iteration and self.state.rewind is not None:
            return self.state.rewind
        return self.init

    def layer_weights(self, state: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The prunable layers' weights of a state dict (default: the init)."""
        state = self.init if state is None else state
        return {n: state[f"{n}.weight"] for n in self.kinds}


class MemberMethod:
    """One method's policy. Facts (class attributes) say where rounds >= 1 start and what the method is;
    `masks` chooses its round-r mask (r >= 1; round 0 is dense) before any shuffle ablation."""

    name: str = ""
    is_ticket: bool = False  # imp, one-shot: the members of its seed take masks and W_k from it
    start: str = "rewind"  # where rounds >= 1 start: 'rewind' (init or W_k), 'init', 'fresh'
    takes_ticket_masks: bool = False  # re-init: its mask is the ticket's of the round
    keeps_dense_trained: bool = False  # one-shot: prunes the dense round's trained weights every round
    transforms_start: bool = False  # an init variant: `start_weights` makes its start from the round's mask
    ablations: tuple[str, ...] = ABLATIONS  # the sanity checks that apply to it

    @property
    def scores_from_data(self) -> bool:
        """SNIP, GraSP: its scores need `score_batches` training batches."""
        return False

    def masks(self, member: MemberView, r: int, invert: bool) -> Masks:
        raise NotImplementedError(f"method {self.name!r} takes its ticket's masks")

    def start_weights(
        self, member: MemberView, r: int, start: dict[str, torch.Tensor], masks: Masks
    ) -> dict[str, torch.Tensor]:
        """The weights round r trains from, given the start its `start` kind chose and the round's mask (called
        when `transforms_start`: an init variant, `init_variants`)."""
        return start


METHODS: dict[str, MemberMethod] = {}


def register_method(method: MemberMethod) -> MemberMethod:
    if not method.name:
        raise ConfigError(f"a method needs a name; {type(method).__name__} has none")
    refuse_taken(METHODS, method.name, "method")
    if method.start not in ("rewind", "init", "fresh"):
        raise ConfigError(f"method {method.name!r}: start={method.start!r}; allowed: rewind, init, fresh")
    METHODS[method.name] = method
    return method


def method_of(name: str) -> MemberMethod:
    if name not in METHODS:
        raise ConfigError(f"method={name!r} is unknown; allowed: {', '.join(METHODS)}")
    return METHODS[name]


def tickets() -> tuple[str, ...]:
    """The registered methods that find tickets (imp, one-shot, ...): a sweep's --method."""
    return tuple(name for name, m in METHODS.items() if m.is_ticket)


def baselines() -> tuple[str, ...]:
    """The registered methods that ride with a ticket in a cohort: every method but the tickets (its re-init,
    random pruning, the pruning-at-init methods)."""
    return tuple(name for name, m in METHODS.items() if not m.is_ticket)


def method_salt(name: str) -> int:
    """A method's number in the random streams (its shuffle's draw): its place in the registry, built-ins
    first in a fixed order, so the numbers never change."""
    return list(METHODS).index(name)
