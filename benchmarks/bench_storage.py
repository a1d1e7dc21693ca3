"""Bytes a trajectory writes, checkpoint size per round, round-file write time, and export peak memory.

Part 1 (sizes): Lenet, Conv-2 and Conv-6 over 21 rounds (0..20) with tiny iteration counts on random data of the
right shape (sizes do not depend on the iteration count). "Before" is lth_ray 0.1.0 (commit 6b71ed0, its code
taken from this repository's history with `git archive`, run in a subprocess): every round it checkpointed its
whole growing state. "After" is this version: each round's files once, plus a checkpoint that does not grow.
Both keep the tickets' early-stop weights (the default).

Part 2 (export memory): peak RSS of a process exporting 1 vs N Conv-2-sized trials (synthetic round files of a
ticket, hard-linked into N trial folders), with early-stop weights off so the disk holds the output.

    python benchmarks/bench_storage.py [--rounds 20] [--archs lenet,conv2,conv6] [--trials 50]
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

ROOT = Path(__file__).resolve().parents[1]
OLD_COMMIT = "6b71ed0"

MEASURE = r"""
import io, json, sys, time, torch
from lth_ray.core.options.resolve import from_preset
from lth_ray.core.data.loading import Split
arch, rounds, new, out = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "new", sys.argv[4]
torch.manual_seed(0)
shape = (3, 32, 32) if arch != "lenet" else (1, 28, 28)
x = lambda n: torch.randn(n, *shape)
y = lambda n: torch.randint(0, 10, (n,))
split = Split(x(120), y(120), x(60), y(60), x(60), y(60), "cifar10" if arch != "lenet" else "mnist", "random")
cfg = from_preset(arch, dataset=split.dataset, iterations=2, eval_every=1, rounds=rounds)
from lth_ray.core.engine.trajectory import Trajectory
t = Trajectory(cfg, split)
rows = []
def size(obj):
    buf = io.BytesIO(); torch.save(obj, buf); return len(buf.getvalue())
if new:
    from lth_ray.core.store.rounds import RoundStore
    store = RoundStore.at(out)
    while not t.done:
        result = t.run_round()
        began = time.perf_counter()
        store.write_round(result)
        write_s = time.perf_counter() - began
        files = sum(p.stat().st_size for p in __import__("pathlib").Path(out).rglob("*") if p.is_file())
        rows.append({"round": result.record["round"], "checkpoint": size(t.state), "round_files_total": files,
                     "round_files_write_s": write_s})
else:
    while not t.done:
        rec = t.run_round()
        rows.append({"round": rec["round"], "checkpoint": size(t.state)})
print(json.dumps(rows))
"""

EXPORT = r"""
import json, resource, sys
from lth_ray.results.experiment import StoredRounds, TrialResult
from lth_ray.results.export import write_export
from lth_ray.core.store.rounds import RoundStore
from lth_ray.core.options.resolve import from_preset
folder, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
cfg = from_preset("conv2", iterations=2, eval_every=1, rounds=2)
trials = [TrialResult(f"t_{i:05d}", "TERMINATED", f"{folder}/trial{i}", cfg.replace(seed=i),
                      StoredRounds(RoundStore.at(f"{folder}/trial{i}/rounds"))) for i in range(n)]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
write_export(trials, out, "/bench")
print(json.dumps({"trials": n, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rss_before_export_mb": before / 1024}))
"""


def run_code(code: str, args: list[str], pythonpath: str) -> str:
    env = {**os.environ, "PYTHONPATH": pythonpath, "OMP_NUM_THREADS": "2"}
    out = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=True, cwd="/"
    )
    return out.stdout.strip().splitlines()[-1]


def sizes(archs: list[str], rounds: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="lth_ray-bench-storage-") as tmp:
        old = Path(tmp) / "v010"
        old.mkdir()
        archive = subprocess.run(
            ["git", "archive", OLD_COMMIT, "lth_ray"], cwd=ROOT, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
        for arch in archs:
            before = json.loads(run_code(MEASURE, [arch, str(rounds), "old", "-"], str(old)))
            after = json.loads(run_code(MEASURE, [arch, str(rounds), "new", f"{tmp}/{arch}/rounds"], str(ROOT)))
            old_total = sum(r["checkpoint"] for r in before)  # 0.1.0 wrote its whole state every round
            new_total = after[-1]["round_files_total"] + sum(r["checkpoint"] for r in after)
            rows.append(
                {
                    "arch": arch,
                    "rounds": rounds + 1,
                    "before_checkpoint_mb_round_1": round(before[1]["checkpoint"] / 2**20, 2),
                    "before_checkpoint_mb_last": round(before[-1]["checkpoint"] / 2**20, 2),
                    "before_bytes_per_trajectory_mb": round(old_total / 2**20, 1),
                    "after_checkpoint_mb_round_1": round(after[1]["checkpoint"] / 2**20, 2),
                    "after_checkpoint_mb_last": round(after[-1]["checkpoint"] / 2**20, 2),
                    "after_checkpoint_last_over_round_1": round(after[-1]["checkpoint"] / after[1]["checkpoint"], 3),
                    "after_round_files_mb": round(after[-1]["round_files_total"] / 2**20, 1),
                    "after_bytes_per_trajectory_mb": round(new_total / 2**20, 1),
                    "round_files_write_s_mean": round(sum(r["round_files_write_s"] for r in after) / len(after), 4),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def export_memory(n: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="lth_ray-bench-export-mem-") as tmp:
        src = f"{tmp}/trial0/rounds"
        run_code(
            MEASURE.replace(
                "cfg = from_preset(arch, dataset=split.dataset, iterations=2, eval_every=1, rounds=rounds)",
                "cfg = from_preset(arch, dataset=split.dataset, iterations=2, eval_every=1, "
                "rounds=rounds, save_early_stop=False)",
            ),
            ["conv2", "2", "new", src],
            str(ROOT),
        )
        for i in range(1, n):  # the same files for every trial: what is measured is the exporter's memory
            for f in Path(src).rglob("*"):
                target = Path(f"{tmp}/trial{i}/rounds") / f.relative_to(src)
                if f.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.link(f, target)
        for count in (1, n):
            out = f"{tmp}/export-{count}"
            os.mkdir(out)
            rows.append(json.loads(run_code(EXPORT, [tmp, str(count), out], str(ROOT))))
            print(json.dumps(rows[-1]), flush=True)
            subprocess.run(["rm", "-rf", out], check=True)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--archs", default="lenet,conv2,conv6")
    ap.add_argument("--trials", type=int, default=50)
    a = ap.parse_args()
    began = time.perf_counter()
    sizes(a.archs.split(","), a.rounds)
    mem = export_memory(a.trials)
    print(
        json.dumps(
            {
                "export_peak_rss_ratio": round(mem[1]["peak_rss_mb"] / mem[0]["peak_rss_mb"], 3),
                "seconds": round(time.perf_counter() - began, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
