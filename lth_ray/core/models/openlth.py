"""What OpenLTH's CIFAR nets share: their initialization and which of their layers prune.

OpenLTH's defaults for `cifar_resnet_*` and `cifar_vgg_*` are `model_init='kaiming_normal'` (every Conv2d and
Linear weight, fan-in, gain sqrt(2); biases keep PyTorch's default uniform) and `batchnorm_init='uniform'`
(BatchNorm weight ~ U[0, 1), bias 0). Its `prunable_layer_names` is every Conv2d and Linear weight, the
ResNets' 1x1 shortcut convs and the output layer included; layers to leave dense are the recipe's
(`pruning_layers_to_ignore`), not the model's. Here every draw comes from the member's generator, never from
torch's global RNG, so the same seed gives the same net bitwise (OpenLTH's own draws are not reproduced).
"""

from __future__ import annotations

import math

import torch
from torch import nn

OUTPUT_LAYER = "fc"  # OpenLTH's `output_layer_names`: fc.weight, fc.bias


@torch.no_grad()
def init_openlth(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Kaiming-normal weights, PyTorch-default biases, BatchNorm weight U[0, 1) and bias 0, fresh running
    statistics; modules in `model.modules()` order, each weight before its bias, all from `generator`."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, generator=generator)
            if module.bias is not None:
                bound = 1 / math.sqrt(module.weight[0].numel())
                module.bias.uniform_(-bound, bound, generator=generator)
        elif isinstance(module, nn.BatchNorm2d):
            module.weight.uniform_(0.0, 1.0, generator=generator)
            module.bias.zero_()
            module.reset_running_stats()
    return model


def prunable_openlth(model: nn.Module) -> dict[str, str]:
    """Every Conv2d ('conv') and Linear layer ('out' for the output layer `fc`, else 'fc'), in module order,
    as OpenLTH's `prunable_layer_names`; biases and BatchNorm are never pruned."""
    kinds = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            kinds[name] = "conv"
        elif isinstance(module, nn.Linear):
            kinds[name] = "out" if name == OUTPUT_LAYER else "fc"
    return kinds


def weight_counts(model: nn.Module) -> tuple[int, int]:
    """(parameters, prunable weights) of `model`: what papers' weight counts mean is the second."""
    modules = dict(model.named_modules())
    params = sum(p.numel() for p in model.parameters())
    return params, sum(modules[n].weight.numel() for n in prunable_openlth(model))
