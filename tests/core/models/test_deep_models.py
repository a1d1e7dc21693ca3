"""OpenLTH's CIFAR ResNets and VGGs: their layer lists and weight counts, their initialization, and cohorts of them.

The counts are reconstructed by hand from OpenLTH's layer lists (models/cifar_resnet.py, models/cifar_vgg.py) and
set against the papers' figures: ResNet-20 272K parameters (Frankle et al. 2020, Table 1) of which 271K are
prunable weights ("Resnet-18" in Frankle & Carbin 2019, Figure 2), VGG-16 14.7M and VGG-19 20.0M weights. A
small ResNet and a small VGG, registered here only, train as a real `Cohort` in float64: each member equals its
lone run within 1e-9.
"""

import pytest
import torch
from cohort_helpers import assert_close, lone_runs, run
from torch import nn

import lth_ray.core.models.registry as model_registry
from lth_ray.core.engine.cohort import Cohort
from lth_ray.core.engine.trajectory import cohort_members
from lth_ray.core.models.cifar_resnet import resnet_entry, resnet_name, resnet_plan
from lth_ray.core.models.cifar_vgg import PLANS, vgg_entry
from lth_ray.core.models.functional import FunctionalStacked
from lth_ray.core.models.openlth import weight_counts
from lth_ray.core.models.registry import MODELS, build_model, model_entry, register_model
from lth_ray.core.pruning.masks import unpack_masks
from lth_ray.core.spec.config import ConfigError, TrajectoryConfig

CIFAR = (3, 32, 32)


def config(arch: str, **changes) -> TrajectoryConfig:
    settings = {"arch": arch, "plan_conv": (), "plan_fc": (), "dataset": "cifar10", **changes}
    return TrajectoryConfig(**settings).validate()


def net(arch: str, in_shape=CIFAR, seed: int = 0) -> nn.Module:
    return build_model(config(arch), in_shape, 10, torch.Generator().manual_seed(seed))


def resnet_counts(depth: int, width: int, channels: int = 3, classes: int = 10) -> tuple[int, int]:
    """(parameters, prunable weights) from OpenLTH's layer list, by hand: the stem, n blocks of two 3x3 convs per
    stage, a 1x1 shortcut at stages 2 and 3, BatchNorm (2 per channel) after each conv, fc with bias."""
    n = (depth - 2) // 6
    conv, bn = 9 * channels * width, 2 * width
    f_in = width
    for stage in range(3):
        w = width * 2**stage
        for _block in range(n):
            conv += 9 * f_in * w + 9 * w * w
            bn += 2 * 2 * w
            if f_in != w:
                conv += f_in * w
                bn += 2 * w
            f_in = w
    fc = 4 * width * classes
    return conv + fc + bn + classes, conv + fc


def vgg_counts(plan, channels: int = 3, classes: int = 10) -> tuple[int, int]:
    """(parameters, prunable weights): 3x3 convs with bias and BatchNorm, fc from the last width (512)."""
    conv, other, f_in = 0, 0, channels
    for spec in plan:
        if spec != "M":
            conv += 9 * f_in * spec
            other += spec + 2 * spec
            f_in = spec
    return conv + other + f_in * classes + classes, conv + f_in * classes


# ------------------------------------------------------------------ layer lists and weight counts
def test_resnet_20_has_openlths_layers_and_the_papers_weight_count():
    model = net("cifar_resnet_20")
    kinds = model_entry("cifar_resnet_20").prunable(model)
    assert list(kinds)[:3] == ["conv", "blocks.0.conv1", "blocks.0.conv2"]
    assert [n for n in kinds if "shortcut" in n] == ["blocks.3.shortcut.0", "blocks.6.shortcut.0"]
    assert kinds["fc"] == "out" and sum(k == "conv" for k in kinds.values()) == 21 and len(kinds) == 22
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))
    assert model.fc.bias is not None and tuple(model.fc.weight.shape) == (10, 64)
    assert weight_counts(model) == resnet_counts(20, 16) == (272_474, 270_896)  # papers: 272K, 271K


@pytest.mark.parametrize("depth,width", [(20, 16), (32, 16), (44, 16), (56, 16), (110, 16), (20, 64), (56, 64)])
def test_resnet_weight_counts_match_the_layer_list(depth, width):
    assert weight_counts(net(resnet_name(depth, width))) == resnet_counts(depth, width)


@pytest.mark.parametrize(
    "depth,counts",
    [
        (11, (9_231_114, 9_222_848)),
        (13, (9_416_010, 9_407_168)),
        (16, (14_728_266, 14_715_584)),
        (19, (20_040_522, 20_024_000)),
    ],
)
def test_vgg_weight_counts_match_the_layer_list_and_the_papers(depth, counts):
    model = net(f"cifar_vgg_{depth}")
    assert weight_counts(model) == vgg_counts(PLANS[depth]) == counts  # papers: VGG-16 14.7M, VGG-19 20.0M
    kinds = model_entry(f"cifar_vgg_{depth}").prunable(model)
    assert list(kinds)[-1] == "fc" and kinds["fc"] == "out" and len(kinds) == sum(s != "M" for s in PLANS[depth]) + 1
    assert all(m.bias is not None for m in model.modules() if isinstance(m, nn.Conv2d))


def test_the_registered_names_are_openlths():
    names = [n for n in MODELS if n.startswith("cifar_")]
    assert names == [f"cifar_resnet_{d}" for d in (20, 32, 44, 56, 110)] + [
        f"cifar_resnet_{d}_64" for d in (20, 32, 44, 56, 110)
    ] + [f"cifar_vgg_{d}" for d in (11, 13, 16, 19)]


def test_bad_depths_and_widths_are_one_line_errors():
    with pytest.raises(ConfigError, match=r"ResNet depth 21 is not allowed; allowed: 6n \+ 2"):
        resnet_plan(21)
    with pytest.raises(ConfigError, match="ResNet width 0 is not allowed"):
        resnet_entry(20, 0)
    with pytest.raises(ConfigError, match="needs inputs of at least 16px; got 8x8"):
        build_model(config("cifar_vgg_11"), (3, 8, 8))


# ------------------------------------------------------------------ initialization and input shapes
def test_openlth_init_from_the_seed_alone():
    state = torch.get_rng_state()
    a, b, c = net("cifar_resnet_20", seed=3), net("cifar_resnet_20", seed=3), net("cifar_resnet_20", seed=4)
    assert torch.equal(torch.get_rng_state(), state)  # torch's global RNG untouched
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.conv.weight, c.conv.weight)
    w = net("cifar_resnet_20_64").blocks[8].conv2.weight  # kaiming normal: std sqrt(2 / fan_in)
    assert abs(w.std().item() / (2 / (9 * 256)) ** 0.5 - 1) < 0.01 and abs(w.mean().item()) < 1e-3
    bns = [m for m in a.modules() if isinstance(m, nn.BatchNorm2d)]  # OpenLTH's 'uniform' BatchNorm init
    weights = torch.cat([m.weight for m in bns])
    assert weights.min() >= 0 and weights.max() < 1 and 0.45 < weights.mean() < 0.55
    assert all(
        (m.bias == 0).all()
        and (m.running_mean == 0).all()
        and (m.running_var == 1).all()
        and m.num_batches_tracked == 0
        for m in bns
    )
    bound = 1 / 64**0.5  # fc's bias: PyTorch's default uniform
    assert a.fc.bias.abs().max() <= bound and a.fc.bias.std() > 0


@pytest.mark.parametrize("arch", ["cifar_resnet_20", "cifar_vgg_11"])
def test_fashion_mnist_shapes_build_and_run_forward(arch):
    model = build_model(config(arch, dataset="fashion-mnist"), (1, 28, 28), 10)
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first.in_channels == 1
    out = model.train()(torch.randn(4, 1, 28, 28))
    assert out.shape == (4, 10) and torch.isfinite(out).all()


def test_the_stacked_forward_vectorized_equals_member_by_member():
    template = build_model(config("cifar_resnet_20"), CIFAR, 10, device="meta")
    nets = [net("cifar_resnet_20", seed=s).double() for s in range(2)]
    x = torch.randn(2, 3, *CIFAR, dtype=torch.float64)
    outs = []
    for vectorize in (True, False):
        tensors = {k: torch.stack([n.state_dict()[k] for n in nets]).clone() for k in nets[0].state_dict()}
        outs.append(FunctionalStacked(template, vectorize).forward(tensors, x, 2, shared=False, training=True))
        outs.append(tensors["blocks.8.bn2.running_var"])
    assert (outs[0] - outs[2]).abs().max() < 1e-9 and (outs[1] - outs[3]).abs().max() < 1e-9
    lone = nets[1].train()(x[1])
    assert (outs[2][1] - lone).abs().max() < 1e-9


# ------------------------------------------------------------------ cohorts of a small ResNet and a small VGG
TINY_VGG = tuple(s if s == "M" else s // 16 for s in PLANS[11])  # VGG-11's list at 1/16 of its widths
SMALL = ["cifar_resnet_8_4", "tiny_vgg_11"]


@pytest.fixture
def small_nets(monkeypatch):
    """A ResNet-8 of width 4 and a narrowed VGG-11, registered for this test only."""
    monkeypatch.setattr(model_registry, "MODELS", dict(model_registry.MODELS))
    register_model(resnet_entry(8, 4))
    register_model(vgg_entry("tiny_vgg_11", TINY_VGG))


def recipe(arch: str, **changes) -> TrajectoryConfig:
    """OpenLTH's recipe in miniature: SGD with momentum and weight decay, warmup, a milestone, flips and crops,
    global pruning of 20% per round; 2 rounds of 4 iterations in float64."""
    return config(
        arch,
        **{
            "iterations": 4,
            "eval_every": 2,
            "batch_size": 20,
            "rounds": 2,
            "optimizer": "sgd",
            "learning_rate": 0.05,
            "momentum": 0.9,
            "weight_decay": 1e-4,
            "warmup": 2,
            "milestones": (3,),
            "augment": "flip-crop",
            "pruning": "global",
            "prune_rate_fc": 0.2,
            "precision": "fp64",
            **changes,
        },
    )


@pytest.mark.e2e
@pytest.mark.parametrize("rewind", [0, 2])
@pytest.mark.parametrize("arch", SMALL)
def test_float64_members_equal_their_lone_runs(small_nets, cifar_split, arch, rewind):
    """A ticket, its re-init and random pruning for 2 seeds, rewound to 0 or (late rewinding) to iteration 2:
    every member within 1e-9 of its lone run (a re-init with its ticket beside it), masks identical, every
    member at the ticket's count of weights."""
    members = cohort_members(recipe(arch, rewind_iteration=rewind), [0, 1], ["reinit", "random-prune"])
    together = run(members, cifar_split)
    alone = lone_runs(members, cifar_split)
    for m in members:
        assert_close(together[m.key], alone[m.key], 1e-9)
    cohort = Cohort(members[:1], cifar_split)
    for m in members:
        for r in (1, 2):
            kept = sum(int(k.sum()) for k in unpack_masks(together[m.key][r].masks).values())
            assert kept == cohort.ladder_count(r), (m.label, r)
    assert together[members[0].key][0].record["val_loss"] != together[members[1].key][0].record["val_loss"]


@pytest.mark.e2e
@pytest.mark.parametrize("arch", SMALL)
def test_synflow_with_batchnorm_keeps_the_ladder_count(small_nets, cifar_split, arch):
    members = cohort_members(recipe(arch), [0], ["synflow"])
    cohort = Cohort(members, cifar_split)
    rounds = list(cohort.run_results())
    for r in (1, 2):
        masks = unpack_masks(rounds[r][1].masks)
        assert sum(int(m.sum()) for m in masks.values()) == cohort.ladder_count(r)
        assert all(m.any() for m in masks.values())  # SynFlow empties no layer
