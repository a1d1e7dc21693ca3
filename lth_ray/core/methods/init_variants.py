"""Init variants (Zhou et al. 2019, "Deconstructing Lottery Tickets", `train_lottery.py --exp`): the ticket's
mask of the round on other values than the ticket's start weights. Each rides with its ticket like the re-init
baseline; only the prunable layers' weights change (biases and BatchNorm keep the start's values).

- `signed-constant` (their `signed_constant`): every weight sign(w) x the layer's standard deviation (numpy's,
  ddof 0) at the start.
- `reshuffle` (`random_reshuffle`): the kept weights' start values permuted among the kept positions of the layer.
- `signed-reshuffle` (`signed_reshuffle`): the kept weights' magnitudes permuted, each position keeping its sign.
- `signed-reinit` (`signed_reinit`): the whole layer's start magnitudes permuted over the layer (a new draw from
  the layer's own distribution), each position keeping its sign.

w is the rewind point (the init, or W_k under late rewinding); each permutation is the member's own draw of
the round (`STREAM_INIT_VARIANT`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from lth_ray.core.methods.registry import MemberMethod, MemberView
from lth_ray.core.pruning.masks import Masks
from lth_ray.core.spec.streams import STREAM_INIT_VARIANT, generator

Variant = Callable[[torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]


def signed_constant(w: torch.Tensor, mask: torch.Tensor, draw: torch.Generator) -> torch.Tensor:
    return torch.sign(w) * w.std(correction=0)


def reshuffle(w: torch.Tensor, mask: torch.Tensor, draw: torch.Generator) -> torch.Tensor:
    kept = mask.flatten().nonzero().flatten()
    out = w.flatten().clone()
    out[kept] = out[kept][torch.randperm(kept.numel(), generator=draw)]
    return out.view_as(w)


def signed_reshuffle(w: torch.Tensor, mask: torch.Tensor, draw: torch.Generator) -> torch.Tensor:
    return reshuffle(w, mask, draw).abs() * torch.sign(w)


def signed_reinit(w: torch.Tensor, mask: torch.Tensor, draw: torch.Generator) -> torch.Tensor:
    flat = w.flatten()
    return flat[torch.randperm(flat.numel(), generator=draw)].abs().view_as(w) * torch.sign(w)


VARIANTS: dict[str, Variant] = {
    "signed-constant": signed_constant,
    "reshuffle": reshuffle,
    "signed-reshuffle": signed_reshuffle,
    "signed-reinit": signed_reinit,
}


class InitVariant(MemberMethod):
    """The ticket's mask of each round on a variant of the ticket's start weights."""

    start = "rewind"
    takes_ticket_masks = True
    transforms_start = True
    ablations = ()

    def __init__(self, name: str, salt: int):
        self.name, self.variant, self.salt = name, VARIANTS[name], salt

    def start_weights(
        self, member: MemberView, r: int, start: dict[str, torch.Tensor], masks: Masks
    ) -> dict[str, torch.Tensor]:
        draw = generator(member.config.seed, STREAM_INIT_VARIANT, r, self.salt)
        out = dict(start)
        for n in member.kinds:  # in layer order: each layer's permutation follows the previous one's in the stream
            key = f"{n}.weight"
            out[key] = self.variant(start[key].cpu(), masks[n].cpu(), draw).to(start[key].dtype)
        return out


def init_variants() -> list[InitVariant]:
    """One method per variant, in a fixed order (their numbers in the variant stream)."""
    return [InitVariant(name, k) for k, name in enumerate(VARIANTS)]
