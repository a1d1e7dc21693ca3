"""One IMP trajectory as one Ray Tune trial: resume from the last round's checkpoint, run rounds, report.

The trainable only drives `Trajectory` and saves its state; all the science lives in the core. The round
number travels inside the checkpoint, so a trial restarted after a crash continues with the next unfinished
round and never reports a round twice from its own state.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from ray import tune

from .config import TrajectoryConfig
from .data import load_split
from .trajectory import Trajectory, load_state, resolve_device, save_state, summary

STATE_FILE = "state.pt"


def run_trial(config: dict) -> None:
    """Tune function trainable. `config` = {"trajectory": TrajectoryConfig dict, "threads": int}."""
    cfg = TrajectoryConfig.from_dict(config["trajectory"])
    torch.set_num_threads(int(config.get("threads", 1)))
    device = resolve_device(cfg.device)  # Ray sets CUDA_VISIBLE_DEVICES; no GPU -> CPU fallback
    state = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            state = load_state(Path(folder) / STATE_FILE)
    split = load_split(cfg.dataset, cfg.data_root, device, download=bool(config.get("download", False)))
    trajectory = Trajectory(cfg, split, state)
    while not trajectory.done:
        record = trajectory.run_round()
        metrics = {**summary(record), "rounds_done": trajectory.next_round - cfg.first_round,
                   "rounds_total": cfg.rounds + 1 - cfg.first_round, "device": str(device), "pid": os.getpid()}
        with tempfile.TemporaryDirectory(prefix="lth_ray-ckpt-") as folder:
            save_state(trajectory.state, Path(folder) / STATE_FILE)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
