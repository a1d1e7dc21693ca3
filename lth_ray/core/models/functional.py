"""A cohort of any `nn.Module`: P stacked copies run through `torch.func`, no stacked forward written by hand.

The module is only a template: its forward runs with each member's tensors swapped in (`functional_call`),
either vectorized over the member axis (`vmap`, in_dims 0 for the tensors, 0 or None for the input) or member
by member. BatchNorm's running statistics are stacked buffers like the weights; in training mode the
forward updates member p's statistics in place, in `tensors` (under `vmap` the in-place update of a batched
buffer writes each member's own slice). Nothing mixes members: member p's logits, gradients and statistics
depend only on member p's tensors and batch, as in its lone run.

Random layers (Dropout) are refused: their draws would come from torch's global RNG, not from the member's
seeded streams. BatchNorm with momentum=None (a cumulative average) is not supported under `vmap`. Under
`vmap`, torch 2.14's autocast does not reach every op (a vmapped conv2d on the CPU stays float32); the
member-by-member path autocasts as a lone run does.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, vmap

from lth_ray.core.spec.config import ConfigError

RANDOM_LAYERS = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
    nn.RReLU,
)


class FunctionalStacked:
    """The forward pass of P stacked copies of `template` (the template's own tensors are never used; it may
    live on the 'meta' device). `vectorize`: one `vmap`ped call (default: on CUDA only; on a CPU, where the
    vmapped convolutions become slow grouped ones, the members run one after another: benchmarks/bench_stacked.py
    measured Conv-2's step at 1.7-1.9x StackedNet's CPU time vmapped, 1.2x member by member). A single member
    never runs under `vmap`: its batch rules only add operators (BatchNorm's 1 becomes 8)."""

    def __init__(self, template: nn.Module, vectorize: bool | None = None):
        random = sorted({type(m).__name__ for m in template.modules() if isinstance(m, RANDOM_LAYERS)})
        if random:
            raise ConfigError(
                f"model {type(template).__name__} has random layers ({', '.join(random)}); a cohort "
                "draws only from its members' seeded streams, so remove them"
            )
        self.template = template
        self.vectorize = vectorize

    def forward(
        self, tensors: dict[str, torch.Tensor], x: torch.Tensor, members: int, shared: bool, training: bool
    ) -> torch.Tensor:
        """Logits (P, N, classes). `x` is (P, N, ...) (a batch per member) or, when `shared`, (N, ...) seen
        by every member (evaluation). `tensors`: every parameter and buffer, stacked on a leading member axis."""
        self.template.train(training)
        vectorize = x.is_cuda if self.vectorize is None else self.vectorize
        if vectorize and members > 1:
            return vmap(self._member, in_dims=(0, None if shared else 0))(tensors, x)
        return torch.stack(
            [self._member({k: t[p] for k, t in tensors.items()}, x if shared else x[p]) for p in range(members)]
        )

    def _member(self, tensors: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """One member's forward with its tensors (views into the stacked ones: BatchNorm updates them in place)."""
        return functional_call(self.template, tensors, (x,), strict=True)
