"""The cost of a forward pass (`lth_ray.core.models.cost`) against hand computations, and against ShrinkBench.

Every number is one example's multiply-accumulates through the Conv2d and Linear layers, counted by hand from
the layer's shapes: in x out for a Linear layer, in x out x kh x kw x output positions for a conv. Wrong
definitions (input positions for output ones, in_channels forgotten, ShrinkBench's `ceil(input / stride)`
output size on an unpadded conv) give other numbers on the same nets, so the hand values discriminate.
`shrinkbench_flops` transcribes JJGO/shrinkbench `metrics/flops.py` with `metrics/abstract_flops.py`; the
registered models' counts equal it (one of each family is checked).
"""

import copy
import json
import math

import pytest
import torch
from torch import nn

from lth_ray.core.data.registry import in_shape_of
from lth_ray.core.models.cost import LayerCost, layer_costs, param_count, round_cost
from lth_ray.core.models.registry import MODELS, build_model, model_entry
from lth_ray.core.spec.config import TrajectoryConfig
from lth_ray.core.spec.presets import PLAN_NETS, PRESETS

CIFAR = (3, 32, 32)


def shrinkbench_flops(model: nn.Module, in_shape) -> dict[str, int]:
    """ShrinkBench's dense FLOPs per layer: `_linear_flops` (in x out) and `_conv2d_flops`, whose output size is
    `conv2d_flops`' padding='zeros' (= 'same') branch, ceil(input / stride), whatever the conv's padding."""
    model = copy.deepcopy(model).to("meta").eval()
    inputs: dict[str, tuple] = {}
    layers = {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    hooks = [m.register_forward_pre_hook(lambda m, a, n=n: inputs.update({n: a[0].shape})) for n, m in layers.items()]
    with torch.no_grad():
        model(torch.zeros((1, *in_shape), device="meta"))
    for h in hooks:
        h.remove()
    flops = {}
    for name, m in layers.items():
        if isinstance(m, nn.Linear):
            flops[name] = m.in_features * m.out_features
        else:
            assert m.padding_mode == "zeros"
            out = [math.ceil(i / s) for i, s in zip(inputs[name][2:], m.stride, strict=True)]
            flops[name] = m.in_channels * m.out_channels * math.prod(m.kernel_size) * math.prod(out)
    return flops


def dense(costs: dict[str, LayerCost]) -> dict[str, int]:
    return {name: c.dense_flops for name, c in costs.items()}


def tiny_conv() -> nn.Sequential:
    """2x11x11 -> conv 3x3 stride 2 pad 1 (4 x 6x6) -> max-pool 2 (3x3) -> conv 2x2 no pad (5 x 2x2) -> fc 20 -> 3."""
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, stride=2, padding=1), nn.MaxPool2d(2), nn.Conv2d(4, 5, 2), nn.Flatten(), nn.Linear(20, 3)
    )


TINY_CONV_IN = (2, 11, 11)
# Per layer: in x out x kernel x output positions. Output sides: (11 + 2 - 3) // 2 + 1 = 6; 6 // 2 = 3; 3 - 2 + 1 = 2.
TINY_CONV_HAND = {"0": 2 * 4 * 9 * 6 * 6, "2": 4 * 5 * 4 * 2 * 2, "4": 20 * 3}


def test_a_linear_net_costs_in_times_out_per_layer():
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    costs = layer_costs(net, (1, 1, 4))
    assert costs == {"0": LayerCost(weights=12, dense_flops=4 * 3), "2": LayerCost(weights=6, dense_flops=3 * 2)}
    assert param_count(net) == 12 + 3 + 6 + 2


def test_a_conv_net_costs_its_true_output_positions():
    costs = layer_costs(tiny_conv(), TINY_CONV_IN)
    assert dense(costs) == TINY_CONV_HAND == {"0": 2592, "2": 320, "4": 60}
    assert [c.weights for c in costs.values()] == [4 * 2 * 9, 5 * 4 * 4, 20 * 3]


WRONG = {  # (in_channels, out_channels, kernel, input side, output side, stride) -> MACs
    "input positions": lambda i, o, k, side_in, side_out, s: i * o * k * k * side_in**2,
    "in_channels forgotten": lambda i, o, k, side_in, side_out, s: o * k * k * side_out**2,
    "ShrinkBench's ceil(input / stride)": lambda i, o, k, side_in, side_out, s: (
        i * o * k * k * math.ceil(side_in / s) ** 2
    ),
}


@pytest.mark.parametrize("wrong", WRONG)
def test_a_wrong_definition_misses_the_hand_values(wrong):
    convs = [(2, 4, 3, 11, 6, 2), (4, 5, 2, 3, 2, 1)]  # the tiny conv net's two convs
    right = sum(i * o * k * k * side_out**2 for i, o, k, _, side_out, _ in convs)
    assert right == TINY_CONV_HAND["0"] + TINY_CONV_HAND["2"]
    assert sum(WRONG[wrong](*c) for c in convs) != right


def test_shrinkbench_overcounts_an_unpadded_conv_and_a_grouped_one():
    net = tiny_conv()
    assert shrinkbench_flops(net, TINY_CONV_IN) == {**TINY_CONV_HAND, "2": 4 * 5 * 4 * 3 * 3}  # 3x3, not 2x2
    depthwise = nn.Conv2d(4, 4, 3, padding=1, groups=4)  # 4 filters of 1 x 3 x 3 at 5x5
    assert layer_costs(nn.Sequential(depthwise), (4, 5, 5)) == {"0": LayerCost(4 * 9, 4 * 9 * 25)}
    assert shrinkbench_flops(nn.Sequential(depthwise), (4, 5, 5)) == {"0": 4 * 4 * 9 * 25}


def test_lenet_300_100_costs_its_weights():
    net = build_model(TrajectoryConfig(), (1, 28, 28), 10, device="meta")
    costs = layer_costs(net, (1, 28, 28))
    assert dense(costs) == {"fc.0": 784 * 300, "fc.2": 300 * 100, "out": 100 * 10}
    assert sum(dense(costs).values()) == 266_200
    assert param_count(net) == 266_200 + 300 + 100 + 10


def test_conv2_on_cifar_counts_its_padded_convs_at_32px_and_the_pooled_fc_input():
    p = PRESETS["conv2"]
    config = TrajectoryConfig(arch="conv2", plan_conv=p.plan_conv, plan_fc=p.plan_fc, dataset="cifar10")
    assert (p.plan_conv, p.plan_fc) == ((64, 64, "M"), (256, 256))
    costs = layer_costs(build_model(config, CIFAR, 10, device="meta"), CIFAR)
    hand = {
        "conv.0": 3 * 64 * 9 * 32 * 32,  # padding 1: 32x32 out
        "conv.2": 64 * 64 * 9 * 32 * 32,
        "fc.0": 64 * 16 * 16 * 256,  # after the 2x2 max-pool
        "fc.2": 256 * 256,
        "out": 256 * 10,
    }
    assert dense(costs) == hand and sum(hand.values()) == 43_780_608


def test_resnet20_block_strided_conv_and_shortcut():
    net = build_model(config_of("cifar_resnet_20"), CIFAR, 10, device="meta")
    costs = dense(layer_costs(net, CIFAR))
    block = {k[len("blocks.3.") :]: v for k, v in costs.items() if k.startswith("blocks.3.")}  # stage 2's first
    assert block == {
        "conv1": 16 * 32 * 9 * 16 * 16,  # 3x3 stride 2 pad 1: 32px -> 16px
        "conv2": 32 * 32 * 9 * 16 * 16,
        "shortcut.0": 16 * 32 * 1 * 16 * 16,  # 1x1 stride 2, no padding: (32 - 1) // 2 + 1 = 16
    }
    stage = [(16, 32), (32, 16), (64, 8)]  # (width, side)
    hand = 3 * 16 * 9 * 32**2 + 64 * 10  # stem and fc
    for s, (w, side) in enumerate(stage):
        f_in = stage[s - 1][0] if s else w
        hand += f_in * w * 9 * side**2 + w * w * 9 * side**2 + (f_in * w * side**2 if s else 0)  # first block
        hand += 2 * 2 * w * w * 9 * side**2  # two more blocks
    assert sum(costs.values()) == hand == 40_813_184


def test_a_masked_round_scales_each_layer_by_its_density():
    net = build_model(TrajectoryConfig(), (1, 28, 28), 10, device="meta")
    costs, params = layer_costs(net, (1, 28, 28)), param_count(net)
    half = torch.ones(300, 784, dtype=torch.bool)
    half[:150] = False
    record = round_cost(costs, {"fc.0": half, "out": torch.ones(10, 100, dtype=torch.bool)}, params)
    assert record == {
        "params": params,
        "nonzero_params": params - 117_600,
        "dense_flops": 266_200,
        "flops": 266_200 - 117_600,
        "layers": {
            "fc.0": {"weights": 235_200, "nonzero_weights": 117_600, "dense_flops": 235_200, "flops": 117_600},
            "fc.2": {"weights": 30_000, "nonzero_weights": 30_000, "dense_flops": 30_000, "flops": 30_000},
            "out": {"weights": 1_000, "nonzero_weights": 1_000, "dense_flops": 1_000, "flops": 1_000},
        },
    }
    assert json.loads(json.dumps(record)) == record


def test_a_conv_masks_flops_are_exact_integers():
    costs = layer_costs(tiny_conv(), TINY_CONV_IN)
    mask = torch.zeros(4, 2, 3, 3, dtype=torch.bool)
    mask.view(-1)[:7] = True  # 7 of 72 weights kept: 2592 x 7 / 72 = 7 x 36 positions
    layer = round_cost(costs, {"0": mask}, 0)["layers"]["0"]
    assert layer == {"weights": 72, "nonzero_weights": 7, "dense_flops": 2592, "flops": 252}
    assert type(layer["flops"]) is int


def test_bad_masks_and_costs_are_refused():
    costs = {"fc": LayerCost(6, 6)}
    with pytest.raises(ValueError, match=r"masks of unknown layers \['head'\]"):
        round_cost(costs, {"head": torch.ones(6, dtype=torch.bool)}, 6)
    with pytest.raises(ValueError, match="mask of 'fc' has 4 entries; the layer has 6 weights"):
        round_cost(costs, {"fc": torch.ones(4, dtype=torch.bool)}, 6)
    with pytest.raises(ValueError, match="dense_flops=7 is not weights=6 x output positions"):
        LayerCost(6, 7)


def test_a_cpu_module_keeps_its_state_and_a_shared_layer_costs_each_call():
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(27, 4)).double()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert dense(layer_costs(net, (2, 3, 3))) == {"0": 2 * 3 * 9 * 9, "3": 27 * 4}
    assert net.training and all(torch.equal(before[k], v) for k, v in net.state_dict().items())

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.unused = nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(self.fc(x.flatten(1)))

    costs = layer_costs(Twice(), (1, 2, 2))
    assert costs == {"fc": LayerCost(16, 2 * 16), "unused": LayerCost(8, 0)}
    assert round_cost(costs, {"unused": torch.zeros(2, 4, dtype=torch.bool)}, 30)["flops"] == 32


def config_of(name: str) -> TrajectoryConfig:
    """A config of registered model `name`: a thesis plan net's preset, a custom plan, or an OpenLTH net."""
    if name in PLAN_NETS:
        p = PRESETS[name]
        return TrajectoryConfig(arch=name, plan_conv=p.plan_conv, plan_fc=p.plan_fc, dataset=p.dataset)
    if name == "plan":
        return TrajectoryConfig(arch="custom", plan_conv=(8, "M", "16B", "A"), plan_fc=(32,), dataset="cifar10")
    return TrajectoryConfig(arch=name, plan_conv=(), plan_fc=(), dataset="cifar10")


@pytest.mark.parametrize("name", list(MODELS))
def test_every_registered_model_costs_its_prunable_layers(name):
    config = config_of(name)
    entry, in_shape = model_entry(name), in_shape_of(config.dataset)
    assert in_shape == ((1, 28, 28) if name == "lenet" else CIFAR)
    with torch.device("meta"):
        net = entry.build(config, in_shape, 10)
    costs = layer_costs(net, in_shape)
    assert list(costs) == list(entry.prunable(net))  # masks are keyed by these names
    modules = dict(net.named_modules())
    assert all(c.weights == modules[n].weight.numel() and c.dense_flops > 0 for n, c in costs.items())


@pytest.mark.parametrize("name", ["lenet", "conv6", "plan", "cifar_resnet_20", "cifar_resnet_20_64", "cifar_vgg_19"])
def test_a_registered_models_counts_are_shrinkbenchs(name):
    """One model of each family (deeper ResNets repeat ResNet-20's blocks): padded or 1x1 convs only, so
    ShrinkBench's output sizes are the true ones."""
    config = config_of(name)
    in_shape = in_shape_of(config.dataset)
    with torch.device("meta"):
        net = model_entry(name).build(config, in_shape, 10)
    assert dense(layer_costs(net, in_shape)) == shrinkbench_flops(net, in_shape)
