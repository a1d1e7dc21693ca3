"""Weights a member starts from: its initialization (rebuilt from its seed, never stored) or a fresh one."""

from __future__ import annotations

import torch

from lth_ray.core.data.registry import dataset_entry, in_shape_of
from lth_ray.core.models import registry as models
from lth_ray.core.spec.config import TrajectoryConfig
from lth_ray.core.spec.streams import STREAM_INIT, STREAM_REINIT, generator


def cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def build_net(
    config: TrajectoryConfig, in_shape, generator: torch.Generator | None = None, device: str | torch.device = "cpu"
) -> torch.nn.Module:
    """The member's net (the registry's model for its arch), initialised from `generator` (seed 0's draw
    when None), with as many outputs as its data set has classes."""
    return models.build_model(config, in_shape, dataset_entry(config.dataset).num_classes, generator, device)


def initial_weights(config: TrajectoryConfig, in_shape=None) -> dict[str, torch.Tensor]:
    """The trajectory's initialisation, rebuilt from its seed (never stored: it is the seed's to give)."""
    return cpu_state(build_net(config, in_shape or in_shape_of(config.dataset), generator(config.seed, STREAM_INIT)))


def fresh_weights(config: TrajectoryConfig, in_shape, r: int) -> dict[str, torch.Tensor]:
    """A new initialization of the member's own for round r (re-init and the re-init ablations)."""
    return cpu_state(build_net(config, in_shape, generator(config.seed, STREAM_REINIT, r)))
