"""One cohort as one Ray Tune trial: resume, run rounds, write each member's round files, checkpoint, report.

The trainable only drives `cohort.Cohort`; all the science lives in the core. Each finished round of each
member is written once to the trial's storage folder (`<trial>/rounds/<member key>/`, through Tune's own
pyarrow filesystem, so a local folder and a bucket behave alike), then one small checkpoint for the whole
cohort (what continuing needs: its size does not grow with the round) is handed to Tune. On a restart every
member continues after the longest run of its complete round files; a round whose files are missing or torn
is recomputed, never silently dropped. A trial of one trajectory written before cohorts (config key
"trajectory", files under `<trial>/rounds/`) continues as a cohort of one.
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

from lth_ray.core.data.loading import load_split
from lth_ray.core.engine.cohort import Cohort
from lth_ray.core.engine.trajectory import resolve_device, summary
from lth_ray.core.faults import FaultHook
from lth_ray.core.methods.member import first_round
from lth_ray.core.spec.config import TrajectoryConfig
from lth_ray.core.store.resume import resume_cohort, save_state
from lth_ray.core.store.rounds import RoundStore
from lth_ray.distributed.capacity import require_usable_gpu
from lth_ray.results.experiment import (
    ROUND_FILE,
    ROUNDS_DIR,
    STATE_FILE,
    member_rounds_path,
    progress,
    read_newest_state,
)


@functools.lru_cache(maxsize=1)
def _cached_split(dataset: str, data_root: str | None, device: str, download: bool):
    """With reuse_actors a worker runs trial after trial on the same data: load it once per process.

    The split's tensors are only ever read (batches are gathered by index), so sharing them is safe.
    """
    return load_split(dataset, data_root, device, download=download)


def _require_usable_gpu(requested: str, device: torch.device) -> None:
    context = ray.get_runtime_context()
    node = f"{context.get_node_id()} ({ray.util.get_node_ip_address()})"
    require_usable_gpu(
        requested,
        context.get_assigned_resources().get("GPU", 0.0),
        device.type,
        node,
        os.environ.get("CUDA_VISIBLE_DEVICES", ""),
    )


def trial_members(config: dict) -> tuple[list[TrajectoryConfig], bool]:
    """(the trial's members, whether it is a single trajectory of the pre-cohort layout)."""
    if "cohort" in config:
        return [TrajectoryConfig.from_dict(d) for d in config["cohort"]], False
    return [TrajectoryConfig.from_dict(config["trajectory"])], True


def run_trial(config: dict) -> None:
    """Tune function trainable. `config` = {"cohort": [TrajectoryConfig dicts], "threads": int, "download"}."""
    members, single = trial_members(config)
    torch.set_num_threads(int(config.get("threads", 1)))
    device = resolve_device(members[0].device)  # Ray sets CUDA_VISIBLE_DEVICES; no usable GPU -> CPU fallback
    _require_usable_gpu(members[0].device, device)  # ... unless Ray assigned a GPU: then never the CPU unnoticed
    storage = tune.get_context().get_storage()
    fs, trial_path = storage.storage_filesystem, storage.trial_fs_path
    stores = [
        RoundStore(fs, f"{trial_path}/{ROUNDS_DIR}" if single else member_rounds_path(trial_path, m.key))
        for m in members
    ]
    checkpoint, _ = read_newest_state(fs, trial_path)
    states = resume_cohort(members, stores, checkpoint)
    split = _cached_split(members[0].dataset, members[0].data_root, str(device), bool(config.get("download", False)))
    context = ray.get_runtime_context()
    where = {
        "device": str(device),
        "pid": os.getpid(),
        "node_id": context.get_node_id(),
        "gpus": context.get_assigned_resources().get("GPU", 0.0),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
    }
    # test-only: kill or block at a fixed (round, iteration), once per trial (lth_ray.core.faults)
    fault = FaultHook(config.get("fault"), tune.get_context().get_trial_name(), where)
    cohort = Cohort(
        members, split, states, progress=fault if fault else None, eval_memory_mb=config.get("eval_memory_mb")
    )
    total = sum(m.rounds + 1 - first_round(m) for m in members)
    while not cohort.done:
        results = cohort.run_round()
        for i, result in results.items():  # before the checkpoint: a registered round always has its files
            stores[i].write_round(result)
        state = cohort.states[0] if single else cohort.state
        lead = results[min(results)].record  # the first member that ran (a ticket when one ran)
        done = sum(s["next_round"] - first_round(m) for s, m in zip(cohort.states, members))
        metrics = {
            **summary(lead, members[min(results)].seed),
            "members": len(members),
            "members_in_round": len(results),
            "diverged_members": sum(s["diverged_round"] is not None for s in cohort.states),
            "rounds_done": done,
            "rounds_total": total,
            **where,
        }
        with tempfile.TemporaryDirectory(prefix="lth_ray-ckpt-") as folder:
            save_state(state, Path(folder) / STATE_FILE)
            (Path(folder) / ROUND_FILE).write_text(json.dumps({"next_round": progress(state), "rounds": ROUNDS_DIR}))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
    del cohort
    if device.type == "cuda":  # a reused worker's next trial starts with the GPU memory this one cached given back
        torch.cuda.empty_cache()
