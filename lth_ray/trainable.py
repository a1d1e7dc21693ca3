"""One IMP trajectory as one Ray Tune trial: resume from the newest round checkpoint, run rounds, report.

The trainable only drives `Trajectory` and saves its state; all the science lives in the core. The round
number travels inside the checkpoint. On a restart the trial continues from whichever of its checkpoints
holds the most finished rounds, even one Tune did not register before its driver died, so a finished round
is never recomputed nor reported twice.
"""
from __future__ import annotations

import functools
import json
import os
import tempfile
from pathlib import Path

import ray
import torch
from ray import tune

from .config import TrajectoryConfig
from .data import load_split
from .experiment import ROUND_FILE, STATE_FILE, read_newest_state
from .trajectory import Trajectory, load_state, resolve_device, save_state, summary


def _resume_state() -> dict | None:
    """The newest state in this trial's storage folder (Tune's own checkpoint lives there too).

    Tune's `get_checkpoint()` is read only where the trial has no storage context or its folder has no
    readable state, so the usual restart reads one state file, once.
    """
    try:
        storage = tune.get_context().get_storage()
        stored, _ = read_newest_state(storage.storage_filesystem, storage.trial_fs_path)
    except (AttributeError, OSError):  # no storage context (e.g. a local test harness): Tune's word only
        stored = None
    if stored is not None:
        return stored
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        return load_state(Path(folder) / STATE_FILE)


@functools.lru_cache(maxsize=1)
def _cached_split(dataset: str, data_root: str | None, device: str, download: bool):
    """With reuse_actors a worker runs trial after trial on the same data: load it once per process.

    The split's tensors are only ever read (batches are gathered by index), so sharing them is safe.
    """
    return load_split(dataset, data_root, device, download=download)


def run_trial(config: dict) -> None:
    """Tune function trainable. `config` = {"trajectory": TrajectoryConfig dict, "threads": int, "download"}."""
    cfg = TrajectoryConfig.from_dict(config["trajectory"])
    torch.set_num_threads(int(config.get("threads", 1)))
    device = resolve_device(cfg.device)  # Ray sets CUDA_VISIBLE_DEVICES; no usable GPU -> CPU fallback
    state = _resume_state()
    split = _cached_split(cfg.dataset, cfg.data_root, str(device), bool(config.get("download", False)))
    trajectory = Trajectory(cfg, split, state)
    context = ray.get_runtime_context()
    where = {"device": str(device), "pid": os.getpid(), "node_id": context.get_node_id(),
             "gpus": context.get_assigned_resources().get("GPU", 0.0),
             "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", "")}
    while not trajectory.done:
        record = trajectory.run_round()
        metrics = {**summary(record), "rounds_done": trajectory.next_round - cfg.first_round,
                   "rounds_total": cfg.rounds + 1 - cfg.first_round, **where}
        with tempfile.TemporaryDirectory(prefix="lth_ray-ckpt-") as folder:
            save_state(trajectory.state, Path(folder) / STATE_FILE)
            (Path(folder) / ROUND_FILE).write_text(json.dumps({"next_round": trajectory.next_round}))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
