"""Every preset in one table: the thesis' plan nets and the deeper nets' recipes.

A preset names a registered model (`config.arch`) and the recipe it trains with; a setting it does not give is
`TrajectoryConfig`'s default. The plan nets (lenet, conv2, conv4, conv6: Frankle & Carbin 2019, Figure 2) train
with Adam at a constant rate and carry their plan, which `--plan-fc` / `--plan-conv` may replace. The deeper nets
take OpenLTH's defaults for its CIFAR ResNets and VGGs, or Frankle & Carbin's section 5 variants.

Lengths may be epochs ('160ep'): they become iterations only once the data set and batch size are final, so
`--batch-size 64` or `--dataset fashion-mnist` keeps 160 epochs, as OpenLTH's `training_steps='160ep'` does. An
epoch is the data set's training examples left after the validation split // the batch size (CIFAR-10 at batch
128: 45,000 // 128 = 351 iterations; OpenLTH trains on all 50,000 and counts 391). The recorded config holds
iterations.

Any registered `cifar_resnet_*` or `cifar_vgg_*` named as --arch gets its family's OpenLTH defaults (OpenLTH's
`--default_hparams cifar_resnet_56` works the same way); another registered model gets `TrajectoryConfig`'s
defaults.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from lth_ray.core.spec.training import parse_length

THESIS = "Frankle & Carbin 2019, Figure 2"
LTH = "Frankle & Carbin 2019, section 5 and Figure 2"
OPENLTH = "OpenLTH's default_hparams"


@dataclass(frozen=True)
class Preset:
    """One network's recipe. Lengths are iterations (an int, or text such as '30000') or epochs ('160ep')."""

    name: str
    model: str  # the registered model it trains: the config's arch
    dataset: str
    iterations: int | str
    learning_rate: float
    batch_size: int
    prune_rate_fc: float = 0.2  # under global pruning the one rate (OpenLTH's pruning_fraction)
    prune_rate_conv: float = 0.0
    pruning: str = "layerwise"
    plan_conv: tuple = ()  # a plan net's layers (its model builds them from the config's plan)
    plan_fc: tuple = ()
    optimizer: str = "adam"
    momentum: float = 0.0
    weight_decay: float = 0.0
    milestones: tuple = ()
    gamma: float = 0.1
    warmup: int | str = 0
    augment: str = "none"
    prune_ignore: tuple = ()  # layers left dense (OpenLTH's pruning_layers_to_ignore)
    source: str = THESIS


def plan_net(name: str, plan_conv: tuple, plan_fc: tuple, dataset: str, iterations: int, lr: float, conv: float):
    """A thesis preset: Adam at a constant rate, batch 60, the fc layers pruned at 20% per round."""
    return Preset(name, name, dataset, iterations, lr, 60, 0.2, conv, plan_conv=plan_conv, plan_fc=plan_fc)


def openlth(name: str, model: str, iterations="160ep", learning_rate=0.1, batch_size=128, **changes) -> Preset:
    """OpenLTH's defaults for `cifar_resnet_20` (models/cifar_resnet.py's default_hparams), with `changes`: SGD
    0.1, momentum 0.9, weight decay 1e-4, batch 128, x0.1 at 80 and 120 epochs of 160, flips and pad-crops,
    global magnitude pruning of 20% of the remaining weights per round."""
    recipe: dict[str, Any] = dict(
        prune_rate_conv=0.2,  # (used by --pruning layerwise)
        optimizer="sgd",
        momentum=0.9,
        weight_decay=1e-4,
        milestones=("80ep", "120ep"),
        warmup="0",
        augment="flip-crop",
        pruning="global",
        source=OPENLTH,
    )
    return Preset(name, model, "cifar10", iterations, learning_rate, batch_size, **(recipe | changes))


VGG_OUTPUT = ("fc",)  # OpenLTH's VGG ignores fc.weight (cifar_vgg's default_hparams)
# Frankle & Carbin's ResNet-20 leaves its output layer and its two 1x1 downsampling shortcuts dense.
RESNET20_LTH_DENSE = ("fc", "blocks.3.shortcut.0", "blocks.6.shortcut.0")
RESNET20_LTH = dict(iterations="30000", milestones=("20000", "25000"), prune_ignore=RESNET20_LTH_DENSE, source=LTH)
CONV2 = (64, 64, "M")
CONV4 = (*CONV2, 128, 128, "M")
CONV6 = (*CONV4, 256, 256, "M")

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        plan_net("lenet", (), (300, 100), "mnist", 50_000, 1.2e-3, 0.0),
        plan_net("conv2", CONV2, (256, 256), "cifar10", 20_000, 2e-4, 0.1),
        plan_net("conv4", CONV4, (256, 256), "cifar10", 25_000, 3e-4, 0.1),
        plan_net("conv6", CONV6, (256, 256), "cifar10", 30_000, 3e-4, 0.15),
        openlth("resnet20", "cifar_resnet_20"),
        openlth("resnet20-lth", "cifar_resnet_20", **RESNET20_LTH),
        openlth("resnet20-lth-warmup", "cifar_resnet_20", **RESNET20_LTH, learning_rate=0.03, warmup="20000"),
        openlth("vgg16", "cifar_vgg_16", prune_ignore=VGG_OUTPUT),
        openlth("vgg19", "cifar_vgg_19", prune_ignore=VGG_OUTPUT),
        openlth("vgg19-lth", "cifar_vgg_19", batch_size=64, prune_ignore=VGG_OUTPUT, source=LTH),
        openlth("vgg19-lth-warmup", "cifar_vgg_19", batch_size=64, warmup="10000", prune_ignore=VGG_OUTPUT, source=LTH),
    )
}
PLAN_NETS = tuple(name for name, p in PRESETS.items() if p.plan_fc)  # the thesis' nets, built from their plan
# OpenLTH's defaults per model family, for any registered model of that family named as --arch.
FAMILIES: tuple[tuple[str, Preset], ...] = (
    ("cifar_resnet_", openlth("cifar_resnet", "cifar_resnet_20")),
    ("cifar_vgg_", openlth("cifar_vgg", "cifar_vgg_16", prune_ignore=VGG_OUTPUT)),
)


LENGTHS = ("iterations", "rewind_iteration", "warmup", "retrain_iterations")  # lengths, besides milestones


@dataclass(frozen=True)
class Epochs:
    """A length in epochs ('80ep', from the command line or a preset), iterations once the data set and batch
    size are known (`options.resolve.in_iterations`). `what` names it in an error."""

    text: str
    what: str = "length"

    def iterations(self, per_epoch: int) -> int:
        return parse_length(self.text, per_epoch, self.what)


def length(text, what: str) -> int | Epochs:
    """'2000' or '2000it' (iterations) now, '80ep' (epochs) once the data set is known; its form is checked
    now, with one line naming it."""
    value = str(text).strip()
    count = parse_length(value, 1, what)
    return Epochs(value, what) if value.endswith("ep") else count


def lengths(text, what: str) -> tuple:
    """A comma list of lengths ('80ep,120ep' or '20000,25000'); `none` is the empty list."""
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    return () if items in ([], ["none"]) else tuple(length(t, what) for t in items)


def preset_of(arch: str) -> Preset | None:
    """The named preset, or the family's for a registered OpenLTH model, or None (another registered model)."""
    if arch in PRESETS:
        return PRESETS[arch]
    for prefix, family in FAMILIES:
        if arch.startswith(prefix):
            return dataclasses.replace(family, name=arch, model=arch)
    return None


def plan_preset(arch: str) -> Preset | None:
    """The thesis preset `arch` names (a plan net), or None."""
    return PRESETS[arch] if arch in PLAN_NETS else None


def preset_settings(p: Preset) -> dict:
    """The preset's settings as `TrajectoryConfig` fields, lengths still as given (`length`)."""
    return dict(
        arch=p.model,
        plan_conv=p.plan_conv,
        plan_fc=p.plan_fc,
        dataset=p.dataset,
        iterations=length(p.iterations, "iterations"),
        batch_size=p.batch_size,
        learning_rate=p.learning_rate,
        optimizer=p.optimizer,
        momentum=p.momentum,
        weight_decay=p.weight_decay,
        milestones=tuple(length(m, "milestones") for m in p.milestones),
        gamma=p.gamma,
        warmup=length(p.warmup, "warmup"),
        augment=p.augment,
        pruning=p.pruning,
        prune_rate_fc=p.prune_rate_fc,
        prune_rate_conv=p.prune_rate_conv,
        prune_ignore=p.prune_ignore,
    )
