"""OpenLTH's CIFAR VGGs with BatchNorm, `cifar_vgg_11`, `_13`, `_16` and `_19`.

The layer list and module names are OpenLTH's (models/cifar_vgg.py): the plan's 3x3 convs (padding 1, with
bias) each followed by BatchNorm and ReLU (`layers.<i>.conv`, `layers.<i>.bn`), 2x2 max-pools at `M`, then
average pooling to 1x1 and one linear output layer `fc` (no hidden fc layers). OpenLTH pools the last 2x2 map of
a 32x32 input with AvgPool2d(2); global average pooling is the same there and lets a 28x28 input through too
(its last map is 1x1). The first conv takes the data set's channels (OpenLTH fixes 3).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lth_ray.core.models.functional import FunctionalStacked
from lth_ray.core.models.openlth import init_openlth, prunable_openlth
from lth_ray.core.models.registry import ModelEntry, register_model
from lth_ray.core.spec.config import ConfigError

PLANS = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512),
    13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512),
}


class ConvModule(nn.Module):
    """conv 3x3 -> BatchNorm -> ReLU."""

    def __init__(self, f_in: int, f_out: int):
        super().__init__()
        self.conv = nn.Conv2d(f_in, f_out, kernel_size=3, padding=1)
        self.bn = nn.BatchNorm2d(f_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class CifarVGG(nn.Module):
    """The plan's conv modules and max-pools, average pooling to 1x1, and `fc`."""

    def __init__(self, plan, in_shape: tuple[int, int, int], num_classes: int):
        super().__init__()
        layers: list[nn.Module] = []
        filters, side = in_shape[0], min(in_shape[1:])
        for spec in plan:
            if spec == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                side //= 2
            else:
                layers.append(ConvModule(filters, spec))
                filters = spec
        if side < 1:
            raise ConfigError(
                f"a VGG with {plan.count('M')} max-pools needs inputs of at least "
                f"{2 ** plan.count('M')}px; got {in_shape[1]}x{in_shape[2]}"
            )
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(filters, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.layers(x), 1).flatten(1)
        return self.fc(x)


def vgg_entry(name: str, plan) -> ModelEntry:
    """The registry entry of a VGG of `plan` (conv widths and 'M'); `cifar_vgg_D` are OpenLTH's plans."""
    plan = tuple(plan)

    def build(config, in_shape, num_classes) -> CifarVGG:
        return CifarVGG(plan, in_shape, num_classes)

    return ModelEntry(name, build, init_openlth, FunctionalStacked, prunable_openlth)


for _depth, _plan in PLANS.items():
    register_model(vgg_entry(f"cifar_vgg_{_depth}", _plan))
