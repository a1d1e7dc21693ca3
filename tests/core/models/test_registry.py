"""Extending lth_ray from outside the package: a toy model and a toy data set, each one registry entry.

The toy model (a 2-layer MLP with its own init) is stacked by the generic `FunctionalStacked`; the toy data set
is IDX files in torchvision's layout, read by the ordinary loader. A cohort of P=2 members trains a few steps
with them (`train_cohort` below, written in the engine's terms: stacked leaves, per-member data order, one Adam),
and each member equals its lone run. Unknown names are one line listing the known ones; duplicates are refused.
"""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from toy_extension import TINY, TOY_DIGITS, make_toy_digits

import lth_ray.core.data.registry as data_registry
import lth_ray.core.models.registry as model_registry
from lth_ray.core.data.loading import DataError, epoch_batches, load_raw, load_split
from lth_ray.core.data.registry import dataset_entry, in_shape_of, register_dataset
from lth_ray.core.models.registry import ModelEntry, build_model, model_entry, model_of, register_model
from lth_ray.core.spec.config import ConfigError, TrajectoryConfig


def train_cohort(configs: list[TrajectoryConfig], split, steps: int) -> tuple[dict, list[list[float]]]:
    """P members of one registered model in lockstep: stacked tensors, one Adam, each member's own data order.
    (The engine's `Cohort` does this for real; this helper keeps its shape so the test can switch to it.)"""
    entry = model_entry(model_of(configs[0]))
    nets = [
        build_model(
            c, split.in_shape, dataset_entry(c.dataset).num_classes, torch.Generator().manual_seed(c.seed)
        ).double()
        for c in configs
    ]
    template = build_model(configs[0], split.in_shape, device="meta")
    params = {k for k, _ in template.named_parameters()}
    tensors = {k: torch.stack([n.state_dict()[k] for n in nets]) for k in template.state_dict()}
    for k in params:
        tensors[k].requires_grad_(True)
    stacked = entry.stacked(template)
    optimizer = torch.optim.Adam([tensors[k] for k in params], lr=configs[0].learning_rate, foreach=False)
    orders = [
        epoch_batches(len(split.x_train), c.batch_size, torch.Generator().manual_seed(c.seed), "cpu") for c in configs
    ]
    losses = []
    for it in range(steps):
        idx = torch.stack([order[it] for order in orders])  # (P, batch)
        logits = stacked.forward(tensors, split.x_train[idx], len(configs), shared=False, training=True)
        member = F.cross_entropy(logits.flatten(0, 1), split.y_train[idx].flatten(), reduction="none")
        member = member.view(len(configs), -1).mean(1)
        optimizer.zero_grad(set_to_none=True)
        member.sum().backward()
        optimizer.step()
        losses.append(member.tolist())
    return {k: t.detach() for k, t in tensors.items()}, losses


def train_alone(config: TrajectoryConfig, split, steps: int) -> nn.Module:
    net = build_model(config, split.in_shape, 4, torch.Generator().manual_seed(config.seed)).double()
    optimizer = torch.optim.Adam(net.parameters(), lr=config.learning_rate, foreach=False)
    order = epoch_batches(len(split.x_train), config.batch_size, torch.Generator().manual_seed(config.seed), "cpu")
    for it in range(steps):
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(net(split.x_train[order[it]]), split.y_train[order[it]]).backward()
        optimizer.step()
    return net


def test_a_toy_model_and_data_set_from_outside_train_as_a_cohort(registries, tmp_path):
    split = load_split("toy-digits", str(make_toy_digits(tmp_path)))
    assert split.in_shape == TOY_DIGITS.in_shape == in_shape_of("toy-digits")
    assert (len(split.x_train), len(split.x_val), len(split.x_test)) == (200, 40, 40)
    assert abs(split.x_train.mean().item()) < 1e-5  # normalisation computed from the training images
    split = dataclasses.replace(split, x_train=split.x_train.double())  # float64: members vs lone runs to 1e-9
    configs = [
        TrajectoryConfig(arch="tiny-mlp", dataset="toy-digits", batch_size=20, learning_rate=1e-2, seed=s)
        for s in (0, 1)
    ]
    tensors, losses = train_cohort(configs, split, steps=10)
    assert all(math.isfinite(v) for row in losses for v in row)
    assert all(losses[-1][p] < losses[0][p] for p in range(2))  # both members learn
    assert list(TINY.prunable(build_model(configs[0], split.in_shape))) == ["hidden", "head"]
    for p, config in enumerate(configs):
        lone = train_alone(config, split, steps=10)
        for k, t in lone.state_dict().items():
            assert (tensors[k][p] - t).abs().max().item() <= 1e-9


def test_unknown_names_are_one_line_listing_the_known_ones(registries):
    with pytest.raises(ConfigError) as err:
        model_entry("resnet-7")
    assert str(err.value) == f"model 'resnet-7' is unknown; known: {', '.join(model_registry.MODELS)}"
    assert str(err.value).endswith(", tiny-mlp")  # the registered toy is listed last
    with pytest.raises(ConfigError) as err:
        dataset_entry("svhn")
    assert str(err.value) == "dataset 'svhn' is unknown; known: mnist, fashion-mnist, cifar10, toy-digits"
    with pytest.raises(DataError, match="^dataset 'svhn' is unknown; known: mnist, .*toy-digits$"):
        load_raw("svhn")
    with pytest.raises(
        ConfigError,
        match="arch='resnet-7' is unknown; known: .*plan, lenet, conv2, conv4, conv6, tiny-mlp or a plan's label",
    ):
        model_of(TrajectoryConfig(arch="resnet-7"))
    with pytest.raises(ConfigError, match="'svhn' is unknown"):
        in_shape_of("svhn")


def test_duplicates_are_refused(registries):
    with pytest.raises(ConfigError, match="model 'tiny-mlp' is already registered"):
        register_model(TINY)
    with pytest.raises(ConfigError, match="model 'plan' is already registered"):
        register_model(ModelEntry("plan", TINY.build, TINY.init, TINY.stacked, TINY.prunable))
    with pytest.raises(ConfigError, match="dataset 'mnist' is already registered"):
        register_dataset(dataset_entry("mnist"))


DATASETS = ("mnist", "fashion-mnist", "cifar10")


def test_the_builtin_data_sets_are_the_configs_and_their_entries_are_todays_numbers():
    assert tuple(data_registry.DATASETS) == DATASETS  # the built-in ones, in order
    assert [in_shape_of(d) for d in DATASETS] == [(1, 28, 28), (1, 28, 28), (3, 32, 32)]
    assert [
        (e.train_size - e.validation_size, e.validation_size, e.test_size, e.num_classes)
        for e in map(dataset_entry, DATASETS)
    ] == [(55_000, 5_000, 10_000, 10)] * 2 + [(45_000, 5_000, 10_000, 10)]
    assert dataset_entry("mnist").mean == (0.1307,) and dataset_entry("fashion-mnist").std == (0.3530,)
    assert dataset_entry("cifar10").mean is None  # computed from the 45,000 training images


def test_the_plan_nets_are_registered_models_and_a_custom_plan_is_plan():
    lenet = TrajectoryConfig()
    assert model_of(lenet) == "lenet" and model_of(lenet.replace(arch="custom")) == "plan"
    assert model_of(lenet.replace(arch="fc300-100")) == "plan"
