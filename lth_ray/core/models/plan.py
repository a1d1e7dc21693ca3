"""Plans -> networks with the thesis' module names (`conv.<i>`, `fc.<i>`, `out`); seeded Glorot init.

Module names match the thesis' state_dict layout so the exporter writes `-net<n>.pth` without renaming.
Initialisation draws only from a private `torch.Generator`, never from torch's global RNG.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lth_ray.core.spec.config import parse_plan_token

ACTIVATION_MODULES = {"relu": nn.ReLU, "tanh": nn.Tanh}


class PlanNet(nn.Module):
    """Conv part from `plan_conv`, fc part from `plan_fc`, then a 10-way output layer `out`."""

    def __init__(self, plan_conv, plan_fc, in_shape=(1, 28, 28), num_classes=10, activation="relu"):
        super().__init__()
        act = ACTIVATION_MODULES[activation]
        channels, side = in_shape[0], in_shape[1]
        conv: list[nn.Module] = []
        for raw in plan_conv:
            token = parse_plan_token(raw)
            if token == "M":
                conv.append(nn.MaxPool2d(2))
                side //= 2
            elif token == "A":
                conv.append(nn.AvgPool2d(2))
                side //= 2
            elif isinstance(token, str):  # "<n>B": conv + BatchNorm
                width = int(token[:-1])
                conv += [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), act()]
                channels = width
            else:
                conv += [nn.Conv2d(channels, token, 3, padding=1), act()]
                channels = token
        if side < 1:
            raise ValueError(f"plan_conv {list(plan_conv)!r} pools a {in_shape[1]}px input below 1px")
        self.conv = nn.Sequential(*conv)
        width = channels * side * side if plan_conv else math.prod(in_shape)
        fc: list[nn.Module] = []
        for h in plan_fc:
            fc += [nn.Linear(width, h), act()]
            width = h
        self.fc = nn.Sequential(*fc)
        self.out = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return self.out(self.fc(x.flatten(1)))


def prunable_layers(model: nn.Module) -> dict[str, str]:
    """Name -> kind ('conv', 'fc' or 'out') of every layer whose weight is pruned (biases, BN never)."""
    kinds = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            kinds[name] = "conv"
        elif isinstance(module, nn.Linear):
            kinds[name] = "out" if name == "out" else "fc"
    return kinds


@torch.no_grad()
def init_weights(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Gaussian Glorot weights, PyTorch-default uniform biases, BN at identity; all from `generator`."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_normal_(module.weight, generator=generator)
            if module.bias is not None:
                fan_in = module.weight[0].numel()
                bound = 1 / math.sqrt(fan_in)
                module.bias.uniform_(-bound, bound, generator=generator)
        elif isinstance(module, nn.BatchNorm2d):
            module.reset_parameters()
    return model


def weight_count(model: nn.Module) -> int:
    """Number of prunable weights (what the paper's weight counts mean)."""
    modules = dict(model.named_modules())
    return sum(modules[n].weight.numel() for n in prunable_layers(model))
