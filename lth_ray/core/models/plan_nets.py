"""The thesis' plan nets as registered models: Lenet and Conv-2/4/6 (Frankle & Carbin 2019, Figure 2), and
'plan', any custom plan (`--plan-fc` / `--plan-conv`, labelled by its layers, e.g. `fc500-300`).

Each is built from the config's plan (`PlanNet`), initialised with Glorot normal weights from the member's
generator, stacked for a cohort by the hand-written `StackedNet`, and prunes its conv, fc and output layers.
"""

from __future__ import annotations

from torch import nn

from lth_ray.core.models.plan import PlanNet, init_weights, prunable_layers
from lth_ray.core.models.registry import ModelEntry, register_model
from lth_ray.core.models.stacked import StackedNet
from lth_ray.core.spec.config import TrajectoryConfig
from lth_ray.core.spec.presets import PLAN_NETS


def build_plan_net(config: TrajectoryConfig, in_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    return PlanNet(config.plan_conv, config.plan_fc, in_shape, num_classes, activation=config.activation)


PLAN_MODELS = ("plan", *PLAN_NETS)  # the models built from a plan: the thesis' nets and custom plans

for _name in PLAN_MODELS:
    register_model(ModelEntry(_name, build_plan_net, init_weights, StackedNet, prunable_layers))
