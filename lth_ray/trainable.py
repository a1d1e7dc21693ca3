"""One IMP trajectory as one Ray Tune trial: resume, run rounds, write each round's files, checkpoint, report.

The trainable only drives `Trajectory`; all the science lives in the core. Each finished round is written
once to the trial's storage folder (`<trial>/rounds/`, through Tune's own pyarrow filesystem, so a local
folder and a bucket behave alike), then a small checkpoint (what continuing needs: its size does not grow with
the round) is handed to Tune. On a restart the trial continues after the longest run of complete round files;
a round whose files are missing or torn is recomputed, never silently dropped.
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
from .experiment import ROUND_FILE, ROUNDS_DIR, STATE_FILE, read_newest_state
from .rounds import RoundStore
from .trajectory import Trajectory, resolve_device, resume_state, save_state, summary



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
    storage = tune.get_context().get_storage()
    fs, trial_path = storage.storage_filesystem, storage.trial_fs_path
    store = RoundStore(fs, f"{trial_path}/{ROUNDS_DIR}")
    checkpoint, _ = read_newest_state(fs, trial_path)
    state = resume_state(cfg, store, checkpoint)
    split = _cached_split(cfg.dataset, cfg.data_root, str(device), bool(config.get("download", False)))
    trajectory = Trajectory(cfg, split, state)
    context = ray.get_runtime_context()
    where = {"device": str(device), "pid": os.getpid(), "node_id": context.get_node_id(),
             "gpus": context.get_assigned_resources().get("GPU", 0.0),
             "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", "")}
    while not trajectory.done:
        result = trajectory.run_round()
        store.write_round(result)  # before the checkpoint: a registered round always has its files
        metrics = {**summary(result.record), "rounds_done": trajectory.next_round - cfg.first_round,
                   "rounds_total": cfg.rounds + 1 - cfg.first_round, **where}
        with tempfile.TemporaryDirectory(prefix="lth_ray-ckpt-") as folder:
            save_state(trajectory.state, Path(folder) / STATE_FILE)
            (Path(folder) / ROUND_FILE).write_text(json.dumps({"next_round": trajectory.next_round,
                                                               "rounds": ROUNDS_DIR}))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
