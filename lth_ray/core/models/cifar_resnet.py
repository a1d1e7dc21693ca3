"""OpenLTH's CIFAR ResNets, `cifar_resnet_D` and `cifar_resnet_D_W`: depth D = 6n + 2, width W (default 16).

The layer list and module names are OpenLTH's (models/cifar_resnet.py): a 3x3 conv stem (`conv`, `bn`) of W
filters; three stages (`blocks.<i>`) of n basic blocks of W, 2W and 4W filters, each block two 3x3 convs with
BatchNorm after each and ReLU, the first block of stages 2 and 3 downsampling with stride 2 and a 1x1 conv +
BatchNorm shortcut (`shortcut.0`, `shortcut.1`); global average pooling; a linear output layer `fc`. Convs have
no bias, `fc` has one. The stem takes the data set's channels (OpenLTH fixes 3), so ResNet-20 also trains on
Fashion-MNIST (1x28x28: 28 -> 14 -> 7 pixels, then pooled).

Frankle & Carbin (2019, section 5) call ResNet-20 "Resnet-18"; here it is `cifar_resnet_20`, as in OpenLTH.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lth_ray.core.models.functional import FunctionalStacked
from lth_ray.core.models.openlth import init_openlth, prunable_openlth
from lth_ray.core.models.registry import ModelEntry, register_model
from lth_ray.core.spec.config import ConfigError

DEPTHS = (20, 32, 44, 56, 110)  # registered at width 16 (`cifar_resnet_D`) and 64 (`cifar_resnet_D_64`)
WIDTHS = (16, 64)
DEFAULT_WIDTH = 16


class Block(nn.Module):
    """A basic block: conv-BN-ReLU-conv-BN, plus the input (through a 1x1 conv + BN where the shape changes)."""

    def __init__(self, f_in: int, f_out: int, downsample: bool):
        super().__init__()
        stride = 2 if downsample else 1
        self.conv1 = nn.Conv2d(f_in, f_out, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(f_out)
        self.conv2 = nn.Conv2d(f_out, f_out, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(f_out)
        if downsample or f_in != f_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(f_in, f_out, kernel_size=1, stride=2, bias=False), nn.BatchNorm2d(f_out)
            )
        else:
            self.shortcut = nn.Sequential()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """The stem, the stages of `plan` [(filters, blocks), ...], global average pooling and `fc`."""

    def __init__(self, plan: list[tuple[int, int]], in_shape: tuple[int, int, int], num_classes: int):
        super().__init__()
        filters = plan[0][0]
        self.conv = nn.Conv2d(in_shape[0], filters, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(filters)
        blocks = []
        for stage, (width, count) in enumerate(plan):
            for index in range(count):
                blocks.append(Block(filters, width, downsample=stage > 0 and index == 0))
                filters = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(plan[-1][0], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks(F.relu(self.bn(self.conv(x))))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)  # OpenLTH: avg_pool2d over the whole (square) map
        return self.fc(out)


def resnet_name(depth: int, width: int = DEFAULT_WIDTH) -> str:
    """OpenLTH's name: `cifar_resnet_D` at the default width, else `cifar_resnet_D_W`."""
    return f"cifar_resnet_{depth}" if width == DEFAULT_WIDTH else f"cifar_resnet_{depth}_{width}"


def resnet_plan(depth: int, width: int = DEFAULT_WIDTH) -> list[tuple[int, int]]:
    """[(W, n), (2W, n), (4W, n)] for depth 6n + 2; another depth or width is one `error:` line."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ConfigError(f"ResNet depth {depth!r} is not allowed; allowed: 6n + 2 for n >= 1 (8, 14, 20, 32, ...)")
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ConfigError(f"ResNet width {width!r} is not allowed; it must be a positive integer")
    n = (depth - 2) // 6
    return [(width, n), (2 * width, n), (4 * width, n)]


def resnet_entry(depth: int, width: int = DEFAULT_WIDTH) -> ModelEntry:
    """The registry entry of `cifar_resnet_<depth>[_<width>]` (register another depth or width with
    `register_model(resnet_entry(D, W))`)."""
    plan = resnet_plan(depth, width)

    def build(config, in_shape, num_classes) -> CifarResNet:
        return CifarResNet(plan, in_shape, num_classes)

    return ModelEntry(resnet_name(depth, width), build, init_openlth, FunctionalStacked, prunable_openlth)


for _width in WIDTHS:
    for _depth in DEPTHS:
        register_model(resnet_entry(_depth, _width))
