"""The thesis' result format (docs/design/thesis-format.md): file names, specs keys, and its loader.

Users of the original thesis code have notebooks that call these functions by these names, so the loader keeps
them; unlike the original it takes explicit paths (never the cwd), loads with `weights_only=True`, and
returns plain objects with the attributes the notebooks use. `lth-ray export` writes the files, for the
thesis' plan nets only (Lenet, Conv-2/4/6, custom plans); other registered nets (CIFAR ResNets, VGGs) are in the
Parquet tables alone, which `load_parquet` reads.
"""

from __future__ import annotations

import glob
import json
import math
import os
from dataclasses import dataclass, fields
from typing import NamedTuple

import numpy as np
import pyarrow.parquet as pq
import torch
from torch import nn

from lth_ray.core.data.registry import VALIDATION_SIZE, in_shape_of
from lth_ray.core.models.registry import build_model
from lth_ray.core.spec.config import plan_config

TIME_FORMAT = "%Y_%m_%d-%H_%M_%S"
NET_NAMES = ("Lenet", "Conv")
DATASET_NAMES = {"mnist": "MNIST", "cifar10": "CIFAR-10", "fashion-mnist": "Fashion-MNIST"}
EXPERIMENT_NAMES = {"imp": "imp", "one-shot": "osp"}
PRUNE_METHODS = {"layerwise": "IMP-per-layer", "global": "IMP-global"}
TRAINING_EXAMPLES = {
    "mnist": 60_000 - VALIDATION_SIZE,
    "fashion-mnist": 60_000 - VALIDATION_SIZE,
    "cifar10": 50_000 - VALIDATION_SIZE,
}
HISTORY_KEYS = ("train_loss", "val_loss", "val_acc", "test_acc", "sparsity")
# What the thesis rebuilt when it knew nothing else (old files have no sidecar).
THESIS_ACTIVATION = {"Lenet": "tanh", "Conv": "relu"}


@dataclass
class ThesisSpecs:
    """The 18 keys of `-specs.json`, in file order (the thesis' ExperimentSettings)."""

    net: str
    plan_conv: list
    plan_fc: list
    net_count: int
    dataset: str
    epoch_count: int
    learning_rate: float
    plot_step: int
    verbosity: int
    prune_method: str
    prune_count: int
    prune_rate_conv: float
    prune_rate_fc: float
    duration: str = "not finished"
    device: str = "cpu"
    device_name: str = "cpu"
    save_early_stop: bool = False
    experiment_name: str = "imp"


SPEC_KEYS = tuple(f.name for f in fields(ThesisSpecs))


class ExperimentHistories(NamedTuple):
    """`-histories.npz` arrays; unpacks as the tuple (train_loss, val_loss, val_acc, test_acc, sparsity)."""

    train_loss: np.ndarray
    val_loss: np.ndarray
    val_acc: np.ndarray
    test_acc: np.ndarray
    sparsity: np.ndarray


@dataclass
class EarlyStopHistory:
    """Per level: the state_dict at minimum validation loss (None where unset) and its 0-based iteration (-1)."""

    state_dicts: list
    indices: np.ndarray


# ------------------------------------------------------------------ names and formats


def specs_path(prefix: str) -> str:
    return f"{prefix}-specs.json"


def sidecar_path(prefix: str) -> str:
    return f"{prefix}-lth_ray.json"


def histories_path(prefix: str) -> str:
    return f"{prefix}-histories.npz"


def net_path(prefix: str, n: int) -> str:
    return f"{prefix}-net{n}.pth"


def early_stop_path(prefix: str, n: int) -> str:
    return f"{prefix}-early-stop{n}.pth"


def random_histories_path(prefix: str, n: int) -> str:
    return f"{prefix}-random-histories{n}.npz"


def random_prune_histories_path(prefix: str, n: int) -> str:
    """lth_ray's own file (the thesis had no random-pruning baseline); same layout as -random-histories."""
    return f"{prefix}-random-prune-histories{n}.npz"


def extract_experiment_path_prefix(specs_file: str) -> str:
    if not str(specs_file).endswith("-specs.json"):
        raise ValueError(f"{specs_file} is not a -specs.json file")
    return str(specs_file)[: -len("-specs.json")]


def format_duration(seconds: float) -> str:
    """The thesis' duration string: '5.5863sec' under a minute, else minutes:seconds as '2:18min'."""
    if seconds < 60:
        return f"{seconds:.4f}sec"
    minutes, rest = divmod(round(seconds), 60)  # round first: never '1:60min'
    return f"{minutes}:{rest:02d}min"


def epoch_count(dataset: str, iterations: int, batch_size: int) -> int:
    """Whole epochs the iterations span (the last one possibly partial), as the thesis counted them."""
    return math.ceil(iterations / (TRAINING_EXAMPLES[dataset] // batch_size))


# ------------------------------------------------------------------ the loader (thesis names)


def get_relative_spec_file_paths(folder: str) -> list[str]:
    """Every `*-specs.json` in `folder`, sorted (oldest first: names start with the time)."""
    return sorted(glob.glob(os.path.join(glob.escape(str(folder)), "*-specs.json")))


def get_specs_from_file(path: str, as_dict: bool = False):
    with open(path) as f:
        raw = json.load(f)
    if as_dict:
        return raw
    unknown = sorted(set(raw) - set(SPEC_KEYS))
    if unknown:
        raise ValueError(f"{path}: keys {unknown} are not thesis specs keys")
    return ThesisSpecs(**raw)


def _histories(path: str) -> ExperimentHistories:
    with np.load(path, allow_pickle=False) as f:
        return ExperimentHistories(*(f[k] for k in HISTORY_KEYS))


def get_experiment_histories_from_file(prefix: str) -> ExperimentHistories:
    return _histories(histories_path(prefix))


def get_random_experiment_histories_from_file(prefix: str, n: int) -> ExperimentHistories:
    return _histories(random_histories_path(prefix, n))


def get_random_prune_histories_from_file(prefix: str, n: int) -> ExperimentHistories:
    return _histories(random_prune_histories_path(prefix, n))


def _check_net(specs: ThesisSpecs, n: int) -> None:
    if not 0 <= n < specs.net_count:
        raise ValueError(f"net number {n} is out of range; this experiment has nets 0..{specs.net_count - 1}")


def get_early_stop_history_from_file(prefix: str, specs: ThesisSpecs, n: int) -> EarlyStopHistory:
    if not specs.save_early_stop:
        raise ValueError(f"{prefix}: specs say save_early_stop=False, so there are no early-stop files")
    _check_net(specs, n)
    raw = torch.load(early_stop_path(prefix, n), map_location="cpu", weights_only=True)
    return EarlyStopHistory(list(raw["state_dicts"]), np.asarray(raw["indices"], dtype=np.int64))


def read_sidecar(prefix: str) -> dict | None:
    """lth_ray's `-lth_ray.json` next to the thesis files, or None for files written by the thesis itself."""
    try:
        with open(sidecar_path(prefix)) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def dataset_key(thesis_name: str) -> str:
    for key, name in DATASET_NAMES.items():
        if name == thesis_name:
            return key
    raise ValueError(f"dataset {thesis_name!r} is unknown; known: {', '.join(DATASET_NAMES.values())}")


def effective_state(saved: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torch.nn.utils.prune's layout -> a plain state_dict: weight = weight_orig * weight_mask."""
    plain = {}
    for key, value in saved.items():
        if key.endswith((".weight_init", ".weight_mask")):
            continue
        if key.endswith(".weight_orig"):
            module = key[: -len(".weight_orig")]
            plain[f"{module}.weight"] = value * saved[f"{module}.weight_mask"]
        else:
            plain[key] = value
    return plain


def get_models_from_files(prefix: str, specs: ThesisSpecs) -> list[nn.Module]:
    """Net n of the last level, rebuilt with lth_ray's models (activation and data set from the sidecar)."""
    if specs.net not in NET_NAMES:
        raise ValueError(f"{specs_path(prefix)}: net {specs.net!r} is unknown; known: {', '.join(NET_NAMES)}")
    sidecar = read_sidecar(prefix) or {}
    activation = sidecar.get("activation", THESIS_ACTIVATION[specs.net])
    dataset = sidecar.get("dataset") or dataset_key(specs.dataset)
    nets: list[nn.Module] = []
    for n in range(specs.net_count):
        model = build_model(plan_config(specs.plan_conv, specs.plan_fc, activation), in_shape_of(dataset))
        saved = torch.load(net_path(prefix, n), map_location="cpu", weights_only=True)
        model.load_state_dict(effective_state(saved))
        nets.append(model.eval())
    return nets


def load_parquet(export_dir: str):
    """(histories, rounds) of an export as pandas DataFrames."""
    return (
        pq.read_table(os.path.join(export_dir, "histories.parquet")).to_pandas(),
        pq.read_table(os.path.join(export_dir, "rounds.parquet")).to_pandas(),
    )
