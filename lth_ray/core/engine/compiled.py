"""The training step's two programs, eager or compiled (`compile_step`): forward and loss, then update and masks.

Compiled, each is traced by torch.compile once per cohort shape, and on a GPU captured in CUDA graphs
("reduce-overhead"): a host-bound step then costs a graph launch instead of dozens of kernel launches and their
Python. What stays outside: which groups have started (Python control flow), the evaluations and early stop.
Plain PyTorch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch


def compile_step_part(fn: Callable, device: torch.device) -> Callable:
    """`fn` compiled by torch.compile, with CUDA graphs on a GPU. Shapes are static: another size is traced anew."""
    mode = "reduce-overhead" if device.type == "cuda" else None
    return torch.compile(fn, mode=mode, dynamic=False)


def masked_update(
    optimizer: torch.optim.Optimizer,
    weights: list[torch.Tensor],
    masks: list[torch.Tensor] | None,
    frozen: list[torch.Tensor] | None = None,
):
    """The optimizer's step, then the masks: pruned weights stay exactly zero, or with `frozen` (each weight's
    start value where pruned, zero where kept: `--pruned-weights frozen-init`) exactly their start values."""
    optimizer.step()
    if masks is not None:
        with torch.no_grad():
            torch._foreach_mul_(weights, masks)
            if frozen is not None:
                torch._foreach_add_(weights, frozen)


@dataclass
class StepPrograms:
    """A cohort's step programs: `compiled` (the recipe's `compile_step`) or eager."""

    compiled: bool
    programs: dict[str, Callable] = field(default_factory=dict)

    def losses(self, forward: Callable, tensors: dict[str, torch.Tensor], x, y, members: int) -> torch.Tensor:
        """`forward(tensors, x, y, members)`: each participant's mean training loss, (P,)."""
        if not self.compiled:
            return forward(tensors, x, y, members)
        if "losses" not in self.programs:
            self.programs["losses"] = compile_step_part(forward, x.device)
        return self.programs["losses"](tensors, x, y, members)

    def update(
        self,
        optimizer,
        weights: list[torch.Tensor],
        masks: list[torch.Tensor] | None,
        frozen: list[torch.Tensor] | None = None,
    ) -> None:
        """The optimizer's step and the masks (None: a dense round), pruned weights frozen at `frozen`'s values."""
        if not self.compiled:
            masked_update(optimizer, weights, masks, frozen)
            return
        if "update" not in self.programs:
            self.programs["update"] = compile_step_part(masked_update, weights[0].device)
        self.programs["update"](optimizer, weights, masks, frozen)
