"""The deeper nets' recipes: OpenLTH's defaults for its CIFAR ResNets and VGGs, and Frankle & Carbin's §5 variants.

A recipe preset names a registered model (`config.arch`) and the recipe it trains with. Its lengths may be epochs
('160ep'): they become iterations only once the data set and batch size are final, so `--batch-size 64` or
`--dataset fashion-mnist` keeps 160 epochs, as OpenLTH's `training_steps='160ep'` does. An epoch is the data
set's training examples left after the validation split // the batch size (CIFAR-10 at batch 128: 45,000 // 128
= 351 iterations; OpenLTH trains on all 50,000 and counts 391). The recorded config holds iterations.

Any registered `cifar_resnet_*` or `cifar_vgg_*` named as --arch gets its family's OpenLTH defaults (OpenLTH's
`--default_hparams cifar_resnet_56` works the same way); another registered model gets `TrajectoryConfig`'s
defaults. The thesis' presets (lenet, conv2, conv4, conv6) stay `config.PRESETS`, unchanged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from lth_ray.core.spec.config import PRESETS, ConfigError, TrajectoryConfig
from lth_ray.core.spec.training import parse_length

LENGTHS = ("iterations", "rewind_iteration", "warmup")  # the settings that take a length, besides milestones


@dataclass(frozen=True)
class Epochs:
    """A length in epochs ('80ep', from the command line or a preset), iterations once the data set and batch
    size are known (`in_iterations`). `what` names it in an error."""

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


def iterations_per_epoch(dataset: str, batch_size) -> int:
    """The data set's training examples after its validation split, in whole batches (its registry entry)."""
    from lth_ray.core.data.registry import dataset_entry  # (the data registry imports this layer's types)

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ConfigError(f"batch_size={batch_size!r} is not allowed; it must be a positive integer")
    entry = dataset_entry(dataset)
    return (entry.train_size - entry.validation_size) // batch_size


def in_iterations(settings: dict) -> dict:
    """`settings` with every length given in epochs as iterations of their data set and batch size."""
    epochs = [settings.get(name) for name in LENGTHS] + list(settings.get("milestones") or ())
    if not any(isinstance(v, Epochs) for v in epochs):
        return settings
    per_epoch = iterations_per_epoch(settings["dataset"], settings["batch_size"])
    out = dict(settings)
    for name in LENGTHS:
        if isinstance(out.get(name), Epochs):
            out[name] = out[name].iterations(per_epoch)
    if out.get("milestones"):
        out["milestones"] = tuple(m.iterations(per_epoch) if isinstance(m, Epochs) else m for m in out["milestones"])
    return out


@dataclass(frozen=True)
class RecipePreset:
    """One deeper net's recipe; the defaults are OpenLTH's for `cifar_resnet_20` (models/cifar_resnet.py's
    default_hparams): SGD 0.1, momentum 0.9, weight decay 1e-4, batch 128, x0.1 at 80 and 120 epochs of 160,
    flips and pad-crops, global magnitude pruning of 20% of the remaining weights per round."""

    name: str
    model: str  # the registered model it trains: the config's arch
    dataset: str = "cifar10"
    iterations: str = "160ep"  # lengths as text: iterations, or epochs of the final data set and batch
    batch_size: int = 128
    learning_rate: float = 0.1
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    milestones: tuple = ("80ep", "120ep")
    gamma: float = 0.1
    warmup: str = "0"
    augment: str = "flip-crop"
    pruning: str = "global"
    prune_rate_fc: float = 0.2  # under global pruning the one rate (OpenLTH's pruning_fraction)
    prune_rate_conv: float = 0.2  # (used by --pruning layerwise)
    prune_ignore: tuple = ()  # layers left dense (OpenLTH's pruning_layers_to_ignore)
    source: str = "OpenLTH's default_hparams"


VGG_OUTPUT = ("fc",)  # OpenLTH's VGG ignores fc.weight (cifar_vgg's default_hparams)
# Frankle & Carbin's ResNet-20 leaves its output layer and its two 1x1 downsampling shortcuts dense.
RESNET20_LTH_DENSE = ("fc", "blocks.3.shortcut.0", "blocks.6.shortcut.0")
LTH = "Frankle & Carbin 2019, section 5 and Figure 2"

RECIPES: dict[str, RecipePreset] = {
    p.name: p
    for p in (
        RecipePreset("resnet20", "cifar_resnet_20"),
        RecipePreset(
            "resnet20-lth",
            "cifar_resnet_20",
            iterations="30000",
            milestones=("20000", "25000"),
            prune_ignore=RESNET20_LTH_DENSE,
            source=LTH,
        ),
        RecipePreset(
            "resnet20-lth-warmup",
            "cifar_resnet_20",
            iterations="30000",
            milestones=("20000", "25000"),
            learning_rate=0.03,
            warmup="20000",
            prune_ignore=RESNET20_LTH_DENSE,
            source=LTH,
        ),
        RecipePreset("vgg16", "cifar_vgg_16", prune_ignore=VGG_OUTPUT),
        RecipePreset("vgg19", "cifar_vgg_19", prune_ignore=VGG_OUTPUT),
        RecipePreset("vgg19-lth", "cifar_vgg_19", batch_size=64, prune_ignore=VGG_OUTPUT, source=LTH),
        RecipePreset(
            "vgg19-lth-warmup", "cifar_vgg_19", batch_size=64, warmup="10000", prune_ignore=VGG_OUTPUT, source=LTH
        ),
    )
}
# OpenLTH's defaults per model family, for any registered model of that family named as --arch.
FAMILIES: tuple[tuple[str, RecipePreset], ...] = (
    ("cifar_resnet_", RecipePreset("cifar_resnet", "cifar_resnet_20")),
    ("cifar_vgg_", RecipePreset("cifar_vgg", "cifar_vgg_16", prune_ignore=VGG_OUTPUT)),
)


def recipe_preset(arch: str) -> RecipePreset | None:
    """The named recipe, or the family's for a registered OpenLTH model, or None (another registered model)."""
    if arch in RECIPES:
        return RECIPES[arch]
    for prefix, family in FAMILIES:
        if arch.startswith(prefix):
            return dataclasses.replace(family, name=arch, model=arch)
    return None


def registered_models() -> tuple[str, ...]:
    """The model registry's names but the thesis' plan nets ('plan': the presets and custom plans)."""
    from lth_ray.core.models.registry import MODELS  # (the model registry imports this layer's types)

    return tuple(m for m in MODELS if m != "plan")


def arch_names() -> tuple[str, ...]:
    """What --arch accepts, read from the registries when asked: the thesis' presets, the deeper nets' presets,
    then every registered model."""
    return (*PRESETS, *RECIPES, *(m for m in registered_models() if m not in RECIPES and m not in PRESETS))


def preset_settings(p: RecipePreset) -> dict:
    """The recipe's settings as `TrajectoryConfig` fields, lengths still as given (`length`)."""
    return dict(
        arch=p.model,
        plan_conv=(),
        plan_fc=(),
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


def from_recipe(arch: str, **overrides) -> TrajectoryConfig:
    """A deeper net's recipe (or a registered model's) with any setting overridden, lengths in iterations;
    validated. Switching a preset to Adam drops its SGD momentum unless --momentum says otherwise."""
    if arch not in arch_names():
        raise ConfigError(f"preset {arch!r} is unknown; allowed: {', '.join(arch_names())}")
    given = {k: v for k, v in overrides.items() if v is not None}
    for name in ("plan_conv", "plan_fc"):
        if given.get(name):
            raise ConfigError(
                f"{name}={list(given[name])!r} is not allowed with arch={arch!r}: a plan sets the "
                f"thesis' plan nets' layers (lenet, conv2, conv4, conv6); {arch} has its own"
            )
    preset = recipe_preset(arch)
    base = preset_settings(preset) if preset else dict(arch=arch, plan_conv=(), plan_fc=())
    if preset and given.get("optimizer") == "adam" and "momentum" not in given:
        base.update(momentum=0.0, nesterov=False)  # momentum is SGD's; Adam keeps its own moments
    base.update(given)
    base.setdefault("dataset", TrajectoryConfig.dataset)
    base.setdefault("batch_size", TrajectoryConfig.batch_size)
    return TrajectoryConfig(**in_iterations(base)).validate()
