"""How big a member's net is, for the placement planner's cost model: forward multiply-adds, parameters and the
activations kept for the backward pass, per example. A thesis plan net is counted from its plan; a registered model
(such as OpenLTH's ResNets and VGGs) from one forward pass on 'meta' (shapes only: no memory, no values)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from lth_ray.core.spec.config import TrajectoryConfig, parse_plan_token
from lth_ray.core.spec.presets import PLAN_NETS


@dataclass(frozen=True)
class NetShape:
    """One member's net, counted from its plan: forward multiply-adds, parameters and the activations kept for
    the backward pass, per example."""

    macs: int
    params: int
    activations: int


def net_shape(
    plan_conv: Sequence, plan_fc: Sequence[int], in_shape: tuple[int, int, int], classes: int = 10
) -> NetShape:
    """3x3 convolutions (padding 1, with bias; `<n>B` adds BatchNorm), 2x2 pools, fc layers, a 10-way output."""
    channels, side = in_shape[0], in_shape[1]
    macs = params = 0
    activations = math.prod(in_shape)
    for raw in plan_conv:
        token = parse_plan_token(raw)
        if token in ("M", "A"):
            side //= 2
            activations += channels * side * side
            continue
        batchnorm = isinstance(token, str)  # `<n>B`: the conv is followed by BatchNorm
        width = int(token[:-1]) if isinstance(token, str) else token
        macs += width * channels * 9 * side * side
        params += width * channels * 9 + width + (2 * width if batchnorm else 0)
        activations += (3 if batchnorm else 2) * width * side * side  # conv output, (BN output,) activation
        channels = width
    width = channels * side * side if plan_conv else math.prod(in_shape)
    for h in list(plan_fc) + [classes]:
        macs += width * h
        params += width * h + h
        activations += 2 * h
        width = h
    return NetShape(macs, params, activations)


def model_shape(config: TrajectoryConfig, in_shape: tuple[int, int, int], classes: int = 10) -> NetShape:
    """A registered model counted from one forward pass on 'meta' (shapes only): the multiply-adds of its Conv2d
    and Linear layers, its parameters, and the outputs of its leaf modules as the activations kept for the
    backward pass (functional ReLUs and residual sums are not modules: an estimate, as the plan's is)."""
    import torch  # only for nets beyond the thesis' plans: the planner imports no torch
    from torch import nn

    from lth_ray.core.models.registry import model_entry, model_of

    counts = {"macs": 0, "activations": math.prod(in_shape)}

    def count(module: nn.Module, inputs, output) -> None:
        per_example = output[0].numel()
        if isinstance(module, nn.Conv2d):
            counts["macs"] += per_example * module.in_channels // module.groups * math.prod(module.kernel_size)
        elif isinstance(module, nn.Linear):
            counts["macs"] += module.in_features * module.out_features
        counts["activations"] += per_example

    with torch.device("meta"):
        model = model_entry(model_of(config)).build(config, in_shape, classes).eval()
        leaves = [m for m in model.modules() if not list(m.children()) and not isinstance(m, nn.Sequential)]
        hooks = [m.register_forward_hook(count) for m in leaves]
        with torch.no_grad():
            model(torch.zeros(1, *in_shape))
    for hook in hooks:
        hook.remove()
    return NetShape(counts["macs"], sum(p.numel() for p in model.parameters()), counts["activations"])


def shape_of(config: TrajectoryConfig, in_shape: tuple[int, int, int], classes: int = 10) -> NetShape:
    """The net of `config`: a thesis preset or custom plan from its plan, a registered model from its module."""
    if config.arch not in PLAN_NETS:
        from lth_ray.core.models.registry import model_of  # (torch: only for nets beyond the thesis' presets)

        if model_of(config) != "plan":
            return model_shape(config, in_shape, classes)
    return net_shape(config.plan_conv, config.plan_fc, in_shape, classes)
