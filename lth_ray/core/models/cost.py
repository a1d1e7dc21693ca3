"""The cost of one forward pass of a masked net, per layer and in total, as ShrinkBench's `metrics/` counts it.

ShrinkBench (Blalock et al. 2020; JJGO/shrinkbench, `metrics/flops.py` `flops`, `metrics/abstract_flops.py`
`conv2d_flops` and `dense_flops`, `metrics/size.py` `model_size`) counts the multiply-accumulates (MACs) of one
example through every Conv2d and Linear layer, nothing else (no bias, BatchNorm, activation, pooling or residual
add): a Linear layer costs in x out, a Conv2d in x out x kh x kw per output position. A pruned layer's FLOPs are
its dense FLOPs times its density (`flops`: "simple rule of three"). Its size is every parameter, biases and
BatchNorm included. Here every layer costs weights x output positions, the same numbers for the registered
models, with three differences, each so the count is the true one of the net that runs:

- the output positions are those of the forward pass (ShrinkBench takes `ceil(input / stride)` whenever
  `padding_mode` is 'zeros', i.e. always, so it overcounts an unpadded 5x5 conv on 28px by 28^2 / 24^2);
- a grouped conv costs in / groups per output (its weight count), where ShrinkBench multiplies in x out;
- the density is the mask's (a weight the mask keeps counts even if it is exactly 0.0; ShrinkBench counts the
  weight tensor's nonzeros, so also a kept zero or an untrained BatchNorm bias at 0 as pruned).

The rescaled FLOPs stay exact integers: dense = weights x positions, so dense x kept / weights = kept x positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

COUNTED = (nn.Conv2d, nn.Linear)  # ShrinkBench's FLOP_fn (exact classes there; subclasses count here too)


@dataclass(frozen=True)
class LayerCost:
    """One layer's weight count and one example's forward MACs through it (`dense_flops`, a multiple of
    `weights`: weights x output positions, so a mask's rescaling is exact)."""

    weights: int
    dense_flops: int

    def __post_init__(self):
        if self.weights < 0 or self.dense_flops < 0 or (self.weights and self.dense_flops % self.weights):
            raise ValueError(f"dense_flops={self.dense_flops} is not weights={self.weights} x output positions")


def layer_costs(model: nn.Module, in_shape: tuple[int, int, int]) -> dict[str, LayerCost]:
    """Every Conv2d and Linear of `model` by qualified name, in module order, from one forward pass of a single
    example of `in_shape` (C, H, W). The pass runs on 'meta' copies of the tensors whatever `model`'s device:
    no compute, and the model's own state (BatchNorm statistics, train/eval mode) ends as it began. A layer
    called twice costs both calls; one the forward never reaches costs 0 FLOPs."""
    layers = {name: m for name, m in model.named_modules() if isinstance(m, COUNTED)}
    positions = dict.fromkeys(layers, 0)

    def count(name: str):
        def hook(module, args, output):
            positions[name] += output.numel() // module.weight.shape[0]  # / out channels or features

        return hook

    tensors = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    meta = {name: torch.empty_like(t, device="meta") for name, t in tensors.items()}
    dtype = next((t.dtype for t in tensors.values() if t.is_floating_point()), torch.get_default_dtype())
    x = torch.zeros((1, *in_shape), dtype=dtype, device="meta")
    modes = {m: m.training for m in model.modules()}
    hooks = [m.register_forward_hook(count(name)) for name, m in layers.items()]
    try:
        model.eval()  # one example: BatchNorm in training mode may refuse a batch of one
        with torch.no_grad():
            functional_call(model, meta, (x,))
    finally:
        for h in hooks:
            h.remove()
        for m, training in modes.items():
            m.training = training
    return {
        name: LayerCost(weights=m.weight.numel(), dense_flops=m.weight.numel() * positions[name])
        for name, m in layers.items()
    }


def param_count(model: nn.Module) -> int:
    """All parameters of `model` (weights, biases, BatchNorm), each shared tensor once: ShrinkBench's size."""
    return sum(p.numel() for p in model.parameters())


def round_cost(costs: dict[str, LayerCost], masks: dict[str, torch.Tensor], params: int) -> dict:
    """A round's cost as plain data (ints only): `params` (all parameters), `nonzero_params` (less the weights
    the masks prune), `dense_flops` and `flops` (masked) in total, and per layer in `layers` {name: {weights,
    nonzero_weights, dense_flops, flops}}. A masked layer's flops are dense_flops x kept / weights, exactly
    (kept x output positions); a layer without a mask is dense. A mask is a bool tensor shaped like its layer's
    weight (True = kept) on any device."""
    unknown = sorted(set(masks) - set(costs))
    if unknown:
        raise ValueError(f"masks of unknown layers {unknown}; the costed layers are {list(costs)}")
    layers = {}
    for name, cost in costs.items():
        kept = cost.weights
        if name in masks:
            mask = masks[name]
            if mask.numel() != cost.weights:
                raise ValueError(f"mask of {name!r} has {mask.numel()} entries; the layer has {cost.weights} weights")
            kept = int(mask.sum())
        flops = cost.dense_flops * kept // cost.weights if cost.weights else 0
        layers[name] = {
            "weights": cost.weights,
            "nonzero_weights": kept,
            "dense_flops": cost.dense_flops,
            "flops": flops,
        }
    return {
        "params": params,
        "nonzero_params": params - sum(c["weights"] - c["nonzero_weights"] for c in layers.values()),
        "dense_flops": sum(c["dense_flops"] for c in layers.values()),
        "flops": sum(c["flops"] for c in layers.values()),
        "layers": layers,
    }
