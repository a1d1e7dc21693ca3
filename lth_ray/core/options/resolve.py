"""A preset resolved into a checked `TrajectoryConfig`: the presets' table (`spec.presets`) read against the
registries, lengths in epochs turned into iterations of the final data set and batch size."""

from __future__ import annotations

from lth_ray.core.data.registry import dataset_entry
from lth_ray.core.methods.member import check_trajectory
from lth_ray.core.models import registry as model_registry
from lth_ray.core.spec.config import ConfigError, TrajectoryConfig, parse_plan_token, plan_label
from lth_ray.core.spec.presets import LENGTHS, PLAN_NETS, PRESETS, Epochs, preset_of, preset_settings


def iterations_per_epoch(dataset: str, batch_size) -> int:
    """The data set's training examples after its validation split, in whole batches (its registry entry)."""
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


def registered_models() -> tuple[str, ...]:
    """The model registry's names but 'plan' (a custom plan, named by its label instead)."""
    return tuple(m for m in model_registry.MODELS if m != "plan")


def arch_names() -> tuple[str, ...]:
    """What --arch accepts, read from the registries when asked: the presets (the thesis' plan nets, then the
    deeper nets'), then every other registered model."""
    return (*PRESETS, *(m for m in registered_models() if m not in PRESETS))


def from_preset(arch: str, **overrides) -> TrajectoryConfig:
    """The preset `arch` (or a registered model's defaults) with any setting overridden; checked. A plan net's
    plan may be replaced (the net is then labelled by its plan, e.g. `fc500-300`); a deeper net has its own
    layers. Switching a preset to Adam drops its SGD momentum unless --momentum says otherwise. Lengths in epochs
    (`presets.Epochs`) become iterations of the final data set and batch size."""
    if arch not in arch_names():
        raise ConfigError(f"preset {arch!r} is unknown; allowed: {', '.join(arch_names())}")
    given = {k: v for k, v in overrides.items() if v is not None}
    preset = preset_of(arch)
    planned = preset is not None and bool(preset.plan_fc)
    for name in ("plan_conv", "plan_fc"):
        if given.get(name) and not planned:
            raise ConfigError(
                f"{name}={list(given[name])!r} is not allowed with arch={arch!r}: a plan sets the "
                f"thesis' plan nets' layers ({', '.join(PLAN_NETS)}); {arch} has its own"
            )
    base = preset_settings(preset) if preset else dict(arch=arch, plan_conv=(), plan_fc=())
    if preset and given.get("optimizer") == "adam" and "momentum" not in given:
        base.update(momentum=0.0, nesterov=False)  # momentum is SGD's; Adam keeps its own moments
    base.update(given)
    if preset is not None and planned:
        base["plan_conv"] = tuple(parse_plan_token(t) for t in base["plan_conv"])
        base["plan_fc"] = tuple(base["plan_fc"])
        if (base["plan_conv"], base["plan_fc"]) != (preset.plan_conv, preset.plan_fc):
            base["arch"] = plan_label(base["plan_conv"], base["plan_fc"])  # a custom plan gets its own label
    base.setdefault("dataset", TrajectoryConfig.dataset)
    base.setdefault("batch_size", TrajectoryConfig.batch_size)
    return check_trajectory(TrajectoryConfig(**in_iterations(base)))
