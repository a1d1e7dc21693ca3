"""gpu_check's tiny sweep: a real `sweeps.lenet_mnist` run on an embedded local Ray, two trials sharing one GPU
(0.5 each), on a tiny MNIST look-alike written for it (a GPU machine may have no data sets and no network).

It shows that the fractional-GPU path runs end to end on this machine, and whether trials sharing a GPU run
side by side or take turns (processes sharing a GPU without MPS time-slice it): each trial's round time in
the sweep against the same round run alone in this process. On a CPU device the GPUs are Ray's logical ones
(`--device cpu`: a trial assigned a share trains on the CPU, as the suite rehearses it) and each trial gets
half a CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lth_ray.core.data.loading import load_split
from lth_ray.core.engine.cohort import Cohort

ROOT = Path(__file__).resolve().parents[1]
TRIALS, SHARE, ITERATIONS, EVAL_EVERY = 2, 0.5, 100, 50
MIN_SECONDS = 30  # below this much of the budget the sweep is skipped (Ray alone takes ~15 s to start and stop)


def write_tiny_mnist(root: Path, n_train: int = 5600, n_test: int = 500) -> Path:
    """MNIST's raw IDX files (5,000 of the training images become the validation split), class c as a band."""
    rng = np.random.default_rng(0)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        y = rng.integers(0, 10, n)
        x = rng.integers(0, 200, (n, 28, 28))
        for i, c in enumerate(y):
            x[i, 2 * c + 4 : 2 * c + 7, 4:24] += 40
        for kind, a in (("images-idx3", x), ("labels-idx1", y)):
            header = bytes([0, 0, 0x08, a.ndim]) + b"".join(d.to_bytes(4, "big") for d in a.shape)
            (raw / f"{prefix}-{kind}-ubyte").write_bytes(header + a.clip(0, 255).astype(np.uint8).tobytes())
    return root


def command(device: torch.device, data: Path, storage: Path) -> list[str]:
    cpus = "0.5" if device.type == "cpu" else "1"
    return [
        sys.executable,
        "-m",
        "sweeps.lenet_mnist",
        *("--dataset", "mnist", "--data-root", str(data), "--device", device.type),
        *("--seeds", str(TRIALS), "--seeds-per-trial", "1", "--rounds", "1"),
        *("--iterations", str(ITERATIONS), "--eval-every", str(EVAL_EVERY)),
        *("--num-gpus", "1", "--gpus-per-trial", str(SHARE), "--cpus-per-trial", cpus),
        *("--storage", str(storage), "--name", "tiny", "--no-export", "--max-failures", "0"),
    ]


def lone_round_seconds(configs, data: Path, device: torch.device, threads: int) -> list[float]:
    """The trials' rounds run alone in this process (one after another), with the trials' thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        split = load_split("mnist", str(data), device)
        return [
            res.record["seconds"]
            for c in configs
            for results in Cohort([c], split).run_results()
            for res in results.values()
        ]
    finally:
        torch.set_num_threads(before)


def tiny_sweep(device: torch.device, work: Path, log: Path, seconds_left: float) -> dict:
    """Run the sweep within `seconds_left` (skipped below MIN_SECONDS); its log goes to `log`."""
    if seconds_left < MIN_SECONDS:
        return {
            "status": "skipped",
            "reason": f"time budget: {seconds_left:.0f} s left, the sweep needs ~{MIN_SECONDS}",
        }
    data, storage = write_tiny_mnist(work / "data"), work / "storage"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    cmd = command(device, data, storage)
    started = time.perf_counter()
    try:
        run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=seconds_left)
    except subprocess.TimeoutExpired as err:
        log.write_text(f"{' '.join(cmd)}\n{_text(err.stdout)}\n{_text(err.stderr)}")
        return {"status": "failed", "reason": f"did not finish within {seconds_left:.0f} s", "log": log.name}
    wall = time.perf_counter() - started
    log.write_text(f"{' '.join(cmd)}\n{run.stdout}\n{run.stderr}")
    out: dict = {"trials": TRIALS, "gpu_per_trial": SHARE, "iterations": ITERATIONS, "rounds": 2, "wall_s": wall}
    out["logical_gpus"] = device.type == "cpu"  # Ray's, declared by the sweep; the trials train on the CPU
    out["log"] = log.name
    if run.returncode != 0:
        tail = (run.stderr or run.stdout).strip().splitlines()[-1:] or [""]
        return {**out, "status": "failed", "reason": f"exit {run.returncode}: {tail[0][:200]}"}
    from lth_ray.results.experiment import load_trials

    trials = load_trials(str(storage / "tiny"), weights=False)
    rows = [
        json.loads(line)
        for f in (storage / "tiny").glob("*/result.json")
        for line in f.read_text().splitlines()
        if line.strip()
    ]
    in_sweep = [r["seconds"] for t in trials for r in t.records]
    threads = max(1, int(float(cmd[cmd.index("--cpus-per-trial") + 1])))
    alone = lone_round_seconds([t.config for t in trials], data, device, threads)
    out.update(
        status="measured",
        complete=sum(t.complete for t in trials),
        devices=sorted({str(r.get("device")) for r in rows}),
        gpus_assigned=sorted({r.get("gpus") for r in rows if r.get("gpus") is not None}),
        round_s_in_sweep=sum(in_sweep) / len(in_sweep),
        round_s_alone=sum(alone) / len(alone),
    )
    out["slowdown_in_sweep"] = out["round_s_in_sweep"] / out["round_s_alone"]
    return out


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else (value or "")
