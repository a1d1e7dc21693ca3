"""A cohort's networks as one vectorized model: every tensor stacked on a leading member axis.

P members of the same plan train in lockstep as one model: fully connected layers are batched matrix
products (`baddbmm`), convolutions on a GPU are grouped convolutions (member p's channels form group p; on a
CPU, where grouped kernels are slow, one convolution per member), BatchNorm normalizes each member's channels
with that member's own statistics. Nothing mixes members: member p's outputs, gradients and updates depend
only on member p's weights and batch, so a member that diverges (NaN) leaves the others' numbers as they are.
Plain PyTorch, no Ray.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn


class StackedNet:
    """The forward pass of P stacked copies of a `models.PlanNet`, from its layer list (the template holds no
    weights that are used: the weights are the stacked tensors passed to `forward`)."""

    def __init__(self, template: nn.Module, channels_last: bool = False):
        self.channels_last = channels_last  # grouped convolutions in NHWC: tensor-core kernels under tf32 / bf16
        self.conv = [(name, m) for name, m in cast(nn.Module, template.conv).named_children()]
        self.fc = [(name, m) for name, m in cast(nn.Module, template.fc).named_children()]
        self.has_conv = bool(self.conv)
        self.bn_keys = [f"conv.{name}" for name, m in self.conv if isinstance(m, nn.BatchNorm2d)]

    def forward(
        self,
        tensors: dict[str, torch.Tensor],
        x: torch.Tensor,
        members: int,
        shared: bool,
        training: bool,
        grouped: bool | None = None,
    ) -> torch.Tensor:
        """Logits (P, N, classes). `x` is (P, N, ...) (a batch per member) or, when `shared`, (N, ...) seen
        by every member (evaluation). `grouped`: grouped convolutions (default: on CUDA only)."""
        if grouped is None:
            grouped = x.is_cuda
        if self.has_conv and not grouped:
            # CPU: grouped convolutions are slow there, so the conv part runs member by member (each on its
            # own contiguous batch, with the fast ungrouped kernels); the fc part is batched below
            inputs = [x] * members if shared else list(x.unbind(0))
            h = torch.stack([self._conv_member(tensors, p, h, training) for p, h in enumerate(inputs)])
            if training:
                for key in self.bn_keys:
                    tensors[f"{key}.num_batches_tracked"].add_(1)
            h = h.transpose(1, 2)  # (P, C*H*W, N)
        elif self.has_conv:
            if shared:
                h = x.repeat(1, members, 1, 1)  # (N, P*C, H, W): member p's input is channel group p
            else:
                p, n = x.shape[:2]
                h = x.transpose(0, 1).reshape(n, p * x.shape[2], *x.shape[3:])
            if self.channels_last:  # the convolutions' outputs keep the layout; the flatten below reads NCHW order
                h = h.contiguous(memory_format=torch.channels_last)
            for name, module in self.conv:
                key = f"conv.{name}"
                if isinstance(module, nn.Conv2d):
                    w, b = tensors[f"{key}.weight"], tensors[f"{key}.bias"]
                    h = F.conv2d(
                        h,
                        w.reshape(-1, *w.shape[2:]),
                        b.reshape(-1),
                        stride=module.stride,
                        padding=module.padding,
                        groups=members,
                    )
                elif isinstance(module, nn.BatchNorm2d):
                    h = F.batch_norm(
                        h,
                        tensors[f"{key}.running_mean"].view(-1),
                        tensors[f"{key}.running_var"].view(-1),
                        tensors[f"{key}.weight"].view(-1),
                        tensors[f"{key}.bias"].view(-1),
                        training,
                        cast(float, module.momentum),  # None (a cumulative average) is never built
                        module.eps,
                    )
                    if training:
                        tensors[f"{key}.num_batches_tracked"].add_(1)
                else:  # activations and pooling act on each channel alone
                    h = module(h)
            h = h.reshape(h.shape[0], members, -1).permute(1, 2, 0)  # (P, C*H*W, N), PlanNet's flatten order
        else:
            h = x.flatten(1).t() if shared else x.flatten(2).transpose(1, 2)  # (F, N) shared by all, or (P, F, N)
        # Activations run features-first, (P, features, N): each layer is W @ h, so the gradient of a weight
        # comes out in the weight's own layout (no copy when autograd hands it to the leaf).
        for name, module in self.fc:
            h = self._linear(tensors, f"fc.{name}", h) if isinstance(module, nn.Linear) else module(h)
        return self._linear(tensors, "out", h).transpose(1, 2)  # (P, N, classes)

    def _conv_member(self, tensors, p: int, h: torch.Tensor, training: bool) -> torch.Tensor:
        """Member p's conv part on its batch (N, C, H, W) -> (N, C*H*W); BatchNorm statistics updated in place."""
        for name, module in self.conv:
            key = f"conv.{name}"
            if isinstance(module, nn.Conv2d):
                h = F.conv2d(
                    h,
                    tensors[f"{key}.weight"][p],
                    tensors[f"{key}.bias"][p],
                    stride=module.stride,
                    padding=module.padding,
                )
            elif isinstance(module, nn.BatchNorm2d):
                h = F.batch_norm(
                    h,
                    tensors[f"{key}.running_mean"][p],
                    tensors[f"{key}.running_var"][p],
                    tensors[f"{key}.weight"][p],
                    tensors[f"{key}.bias"][p],
                    training,
                    cast(float, module.momentum),
                    module.eps,
                )
            else:
                h = module(h)
        return h.flatten(1)

    @staticmethod
    def _linear(tensors, key: str, h: torch.Tensor) -> torch.Tensor:
        w, b = tensors[f"{key}.weight"], tensors[f"{key}.bias"]
        if h.dim() == 2:  # an input shared by every member
            return torch.matmul(w, h) + b.unsqueeze(2)
        return torch.baddbmm(b.unsqueeze(2), w, h)
