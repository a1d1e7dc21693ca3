"""A finished round's record: the numbers the results keep of it (histories, sparsity, early stop, timing).

The record is plain data (lists, floats, strings): it is what Tune reports, the round files store and the
exporter reads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from lth_ray.core.engine.evaluation import diverged, early_stop_index
from lth_ray.core.methods.member import eval_iterations, round_start
from lth_ray.core.pruning.masks import Masks, density, layer_density
from lth_ray.core.spec.config import TrajectoryConfig

METRICS = ("train_loss", "val_loss", "val_acc", "test_loss", "test_acc")


@dataclass
class RoundResult:
    """What one finished round leaves behind (the trajectory keeps none of it)."""

    record: dict
    masks: dict  # bit-packed (pruning.pack_masks)
    trained: dict  # compact (pruning.compact)
    early_stop: dict | None  # compact, or None when not kept or when no evaluation was finite
    rewind: dict | None = None  # the rewind point, when this round produced it (late rewinding)


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def round_record(
    config: TrajectoryConfig,
    r: int,
    masks: Masks,
    history: np.ndarray,
    seconds: float,
    steps: int,
    device: torch.device,
) -> dict:
    """Round r's record from its (evaluations, METRICS) history."""
    values = {name: history[:, k].tolist() for k, name in enumerate(METRICS)}
    iterations = eval_iterations(config, r)
    assert len(iterations) == len(history)
    es = early_stop_index(values["val_loss"])
    return {
        "round": r,
        "method": config.label,
        "sparsity": density(masks),
        "layer_sparsity": layer_density(masks),
        "iterations": iterations,
        **values,
        "early_stop_index": es,
        "early_stop_iteration": None if es is None else iterations[es],
        **{f"{m}_at_early_stop": math.nan if es is None else values[m][es] for m in METRICS},
        **{f"final_{m}": values[m][-1] for m in METRICS},
        "diverged": diverged(values),
        "start_iteration": round_start(config, r),
        "steps": steps,
        "seconds": seconds,
        "device": str(device),
        "device_name": device_name(device),
    }
