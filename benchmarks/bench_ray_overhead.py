"""What Ray Tune adds: a sweep of N short trajectories vs the same trajectories back to back without Ray.

Lenet on Fashion-MNIST (Debian's package), N trajectories of R rounds x I iterations. Without Ray they run one
after another in this process with `--threads` threads; the sweep runs them on an embedded local Ray with
1 CPU per trial (so 2 at a time on 2 cores). Also the cost of the per-round checkpoint: the time to write the
state file and its size, as a share of a round.

    python benchmarks/bench_ray_overhead.py [--trials 4] [--rounds 2] [--iterations 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from lth_ray.core.data.loading import load_split  # noqa: E402
from lth_ray.core.engine.trajectory import Trajectory
from lth_ray.core.options.resolve import from_preset  # noqa: E402
from lth_ray.core.store.resume import save_state
from lth_ray.core.store.rounds import RoundStore  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--iterations", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    split = load_split("fashion-mnist")
    start = time.perf_counter()
    round_seconds, ckpt_seconds, ckpt_bytes = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(a.trials):
            cfg = from_preset("lenet", dataset="fashion-mnist", iterations=a.iterations, rounds=a.rounds, seed=seed)
            t = Trajectory(cfg, split)
            store = RoundStore.at(f"{tmp}/s{seed}/rounds")
            while not t.done:
                result = t.run_round()
                round_seconds.append(result.record["seconds"])
                c0 = time.perf_counter()  # what the trainable does after each round: round files, checkpoint
                store.write_round(result)
                save_state(t.state, Path(tmp) / "state.pt")
                ckpt_seconds.append(time.perf_counter() - c0)
                ckpt_bytes.append((Path(tmp) / "state.pt").stat().st_size)
    plain = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as storage:
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        cmd = [
            sys.executable,
            "-m",
            "sweeps.lenet_mnist",
            "--dataset",
            "fashion-mnist",
            "--seeds",
            str(a.trials),
            "--rounds",
            str(a.rounds),
            "--iterations",
            str(a.iterations),
            "--num-gpus",
            "0",
            "--storage",
            storage,
            "--name",
            "bench",
            "--no-export",
        ]
        start = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
        swept = time.perf_counter() - start
        from lth_ray.results.experiment import load_trials

        in_trials = [r["seconds"] for t in load_trials(f"{storage}/bench", weights=False) for r in t.records]
    cores = os.cpu_count()
    per_round = sum(round_seconds) / len(round_seconds)
    print(
        json.dumps(
            {
                "trials": a.trials,
                "rounds": a.rounds + 1,
                "iterations": a.iterations,
                "cores": cores,
                "no_ray_back_to_back_s": round(plain, 2),
                "ray_sweep_wall_s": round(swept, 2),
                "ratio_sweep_over_back_to_back": round(swept / plain, 3),
                "ideal_ratio_with_parallel_trials": round(1 / min(cores, a.trials), 3),
                "round_s": round(per_round, 3),
                "round_s_inside_sweep": round(sum(in_trials) / len(in_trials), 3),
                "round_files_and_checkpoint_write_s": round(sum(ckpt_seconds) / len(ckpt_seconds), 4),
                "checkpoint_share_of_round": round(sum(ckpt_seconds) / sum(round_seconds), 4),
                "checkpoint_mb_last_round": round(ckpt_bytes[-1] / 2**20, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
