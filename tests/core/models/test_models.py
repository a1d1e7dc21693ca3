"""Models: the paper's weight counts, the thesis' module names, seeded Glorot init."""

import pytest
import torch
from torch import nn

from lth_ray.core.data.registry import in_shape_of
from lth_ray.core.models.plan import prunable_layers, weight_count
from lth_ray.core.models.registry import build_model
from lth_ray.core.spec.config import ConfigError, plan_config
from lth_ray.core.spec.presets import PRESETS

WEIGHTS = {"lenet": 266_200, "conv2": 4_300_992, "conv4": 2_425_024, "conv6": 2_261_184}
NAMES = {
    "lenet": ["fc.0", "fc.2", "out"],
    "conv2": ["conv.0", "conv.2", "fc.0", "fc.2", "out"],
    "conv4": ["conv.0", "conv.2", "conv.5", "conv.7", "fc.0", "fc.2", "out"],
    "conv6": ["conv.0", "conv.2", "conv.5", "conv.7", "conv.10", "conv.12", "fc.0", "fc.2", "out"],
}


def preset_model(arch, seed=0, **kw):
    p = PRESETS[arch]
    config = plan_config(p.plan_conv, p.plan_fc, kw.pop("activation", "relu"))
    return build_model(config, in_shape_of(p.dataset), generator=torch.Generator().manual_seed(seed), **kw)


@pytest.mark.parametrize("arch", sorted(WEIGHTS))
def test_weight_counts_and_thesis_module_names(arch):
    model = preset_model(arch)
    assert weight_count(model) == WEIGHTS[arch]
    assert list(prunable_layers(model)) == NAMES[arch]
    x = torch.zeros(2, *in_shape_of(PRESETS[arch].dataset))
    assert model(x).shape == (2, 10)


def test_lenet_layer_shapes_match_the_thesis():
    sd = preset_model("lenet").state_dict()
    assert sd["fc.0.weight"].shape == (300, 784) and sd["fc.2.weight"].shape == (100, 300)
    assert sd["out.weight"].shape == (10, 100)


def test_same_seed_same_init_other_seed_other_init_global_rng_untouched():
    state = torch.random.get_rng_state()
    a, b, c = preset_model("lenet", 3), preset_model("lenet", 3), preset_model("lenet", 4)
    assert torch.equal(torch.random.get_rng_state(), state)
    for k in a.state_dict():
        assert torch.equal(a.state_dict()[k], b.state_dict()[k])
    assert not torch.equal(a.state_dict()["fc.0.weight"], c.state_dict()["fc.0.weight"])


def test_glorot_normal_scale():
    w = preset_model("lenet").state_dict()["fc.0.weight"]
    expected = (2 / (784 + 300)) ** 0.5
    assert abs(w.std().item() - expected) / expected < 0.02
    assert abs(w.mean().item()) < 0.002


def test_plan_tokens_batchnorm_avgpool_and_activation():
    model = build_model(plan_config([16, "32B", "A"], [20], "tanh"), (3, 32, 32))
    assert isinstance(model.conv[2], nn.Conv2d) and isinstance(model.conv[3], nn.BatchNorm2d)
    assert isinstance(model.conv[5], nn.AvgPool2d) and isinstance(model.fc[1], nn.Tanh)
    assert list(prunable_layers(model)) == ["conv.0", "conv.2", "fc.0", "out"]
    assert model.fc[0].in_features == 32 * 16 * 16


def test_bad_plan_token_is_a_clear_error():
    with pytest.raises(ConfigError, match="'X'"):
        build_model(plan_config([64, "X"], [10]), (3, 32, 32))


@pytest.mark.parametrize("arch", sorted(WEIGHTS))
def test_a_plan_net_is_a_registered_model_built_as_its_plan(arch):
    """`lenet` (a registered model) and the same plan as a custom plan ('plan') build the same net bitwise."""
    from lth_ray.core.models.registry import model_entry, model_of
    from lth_ray.core.options.resolve import from_preset

    config = from_preset(arch)
    assert model_of(config) == arch
    ours = build_model(config, in_shape_of(config.dataset), generator=torch.Generator().manual_seed(7))
    custom = preset_model(arch, seed=7)
    assert ours.state_dict().keys() == custom.state_dict().keys()
    assert all(torch.equal(t, custom.state_dict()[k]) for k, t in ours.state_dict().items())
    assert model_entry(arch).prunable(ours) == model_entry("plan").prunable(custom) == prunable_layers(custom)
