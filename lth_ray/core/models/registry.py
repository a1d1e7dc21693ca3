"""Networks by name: how each is built, initialised from a seed, stacked for a cohort, and which layers prune.

An entry is four functions. `build(config, in_shape, num_classes)` makes the module (its tensors may be
uninitialised: `build_model` builds it on 'meta', so construction never draws from torch's global RNG);
`init(module, generator)` fills every tensor from that generator alone; `stacked(template)` gives the
forward pass of P stacked copies (`Stacked`); `prunable(module)` names the layers whose weights IMP prunes
and their kind ('conv', 'fc' or 'out'; biases and BatchNorm are never pruned). Any module works with
`FunctionalStacked`; a hand-written stacked forward is kept only where a benchmark shows it pays (the plan nets'
`StackedNet`, benchmarks/bench_stacked.py).

Adding a model is one file plus one `register_model` call; an unknown name is an error listing the known ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from lth_ray.core.spec.config import ConfigError, TrajectoryConfig, plan_label
from lth_ray.core.spec.errors import refuse_taken, registered


class Stacked(Protocol):
    """The forward pass of a cohort's P members, every tensor stacked on a leading member axis."""

    def forward(
        self, tensors: dict[str, torch.Tensor], x: torch.Tensor, members: int, shared: bool, training: bool
    ) -> torch.Tensor:
        """Logits (P, N, classes). `x` is (P, N, ...), a batch per member, or (N, ...) seen by every member when
        `shared`. In training mode BatchNorm's running statistics are updated in place in `tensors`."""
        ...


@dataclass(frozen=True)
class ModelEntry:
    name: str
    build: Callable[[TrajectoryConfig, tuple[int, int, int], int], nn.Module]
    init: Callable[[nn.Module, torch.Generator], nn.Module]
    stacked: Callable[[nn.Module], Stacked]
    prunable: Callable[[nn.Module], dict[str, str]]


MODELS: dict[str, ModelEntry] = {}


def register_model(entry: ModelEntry) -> ModelEntry:
    """Add a model under `entry.name`; a name already taken is refused (never silently replaced)."""
    refuse_taken(MODELS, entry.name, "model")
    MODELS[entry.name] = entry
    return entry


def model_entry(name: str) -> ModelEntry:
    """The entry of `name`, or one line naming the known models."""
    return registered(MODELS, name, "model")


def model_of(config: TrajectoryConfig) -> str:
    """The registry name of the net `config` trains: `config.arch` when registered (the thesis' plan nets lenet,
    conv2, conv4 and conv6 among them), else 'plan' for a custom plan (named by its label or 'custom')."""
    if config.arch in MODELS:
        return config.arch
    if config.arch in ("custom", plan_label(config.plan_conv, config.plan_fc)):
        return "plan"
    raise ConfigError(f"arch={config.arch!r} is unknown; known: {', '.join(MODELS)} or a plan's label")


def build_model(
    config: TrajectoryConfig,
    in_shape: tuple[int, int, int],
    num_classes: int = 10,
    generator: torch.Generator | None = None,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """The net `config` trains, initialised from `generator` (default: seed 0) on the CPU, then moved to
    `device` ('meta' for a template without values). Built on 'meta' first: torch's global RNG is not touched."""
    entry = model_entry(model_of(config))
    with torch.device("meta"):
        model = entry.build(config, (in_shape[0], in_shape[1], in_shape[2]), num_classes)
    model = model.to_empty(device="cpu")
    entry.init(model, generator if generator is not None else torch.Generator().manual_seed(0))
    return model.to(device)
