"""One command that measures a GPU for lth_ray, within a time budget (about 8 minutes on one GPU):

    python benchmarks/gpu_check.py --out DIR [--device cuda|cpu] [--quick] [--budget-s S]

1. calibration: matmul and convolution FLOP/s at fp32, tf32 and bf16, the time of a tiny training step (the
   step floor) and the device's memory, written into DIR/calibration.json for the planner;
2. smoke: short real cohorts of Lenet, Conv-2 and ResNet-20 on the device against the same runs on the CPU,
   within stated tolerances;
3. Conv-2's grouped convolution against one convolution per member, forward + backward;
4. the cohort table with the protocol's evaluations (validation 5,000 + test 10,000 every 100 iterations;
   --quick: a tenth of each, a twentieth on a CPU): Lenet at 1/8/32/128 members, Conv-2 at 1/8/32, ResNet-20
   at 1/4/8, eager and compiled, fp32 / tf32 / bf16: trajectory-iterations per second, the ratio to one member
   alone, device memory per member without the data set;
5. a tiny real sweep on the embedded Ray, two trials sharing one GPU.

What does not fit the budget is skipped, saying so; every number is a ratio or a rate measured in this run.
Writes DIR/gpu_check.json and DIR/gpu_check.md (each replaced whole), plus DIR/sweep.log. The exit status is 1
when the smoke comparison fails or a part fails, else 0. `--device cpu --quick` is what the test suite runs
(on a 2-core CPU, in about a minute); on a CPU tf32 is fp32 and bf16 is slow, so it runs a reduced grid.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the gpu_check_* modules beside this one
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import torch  # noqa: E402
from gpu_check_cohorts import smoke  # noqa: E402
from gpu_check_kernels import calibrate, device_name, grouped_conv, rates_from_table, write_calibration  # noqa: E402
from gpu_check_report import markdown  # noqa: E402
from gpu_check_sweep import tiny_sweep  # noqa: E402
from gpu_check_table import table  # noqa: E402

BUDGET_S = {("cuda", False): 450, ("cuda", True): 150, ("cpu", False): 480, ("cpu", True): 105}
SWEEP_RESERVE_S = {"cuda": 90, "cpu": 45}  # kept back from the table for the sweep that follows it


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=Path, help="folder for gpu_check.json, gpu_check.md, calibration.json")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument(
        "--quick",
        action="store_true",
        help="the protocol's evaluation scaled down (a tenth, a CPU a twentieth); shorter timings",
    )
    p.add_argument(
        "--budget-s", type=float, help="time budget in seconds (default 450 on a GPU, --quick 150; CPU 480/105)"
    )
    p.add_argument(
        "--threads",
        type=int,
        help="torch's CPU threads (default 1 with --device cpu: on a busy CPU more threads wait on each other)",
    )
    return p.parse_args(argv)


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda: torch sees no CUDA device here; allowed: a machine with one, or --device cpu")
        return 2
    budget = a.budget_s if a.budget_s is not None else BUDGET_S[(a.device, a.quick)]
    if budget <= 0:
        print(f"error: --budget-s={budget:g} must be positive")
        return 2
    device = torch.device(a.device)
    threads = a.threads or (1 if a.device == "cpu" else None)
    if threads is not None:
        if threads < 1:
            print(f"error: --threads={threads} must be at least 1")
            return 2
        torch.set_num_threads(threads)
    a.out.mkdir(parents=True, exist_ok=True)
    work = a.out / ".gpu_check-work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    start = time.monotonic()
    end = start + budget

    def say(message: str) -> None:
        print(f"[{time.monotonic() - start:6.1f} s] {message}", flush=True)

    result: dict = {
        "format": 1,
        "command": " ".join(["python benchmarks/gpu_check.py", *(argv if argv is not None else sys.argv[1:])]),
        "device": a.device,
        "device_name": device_name(device),
        "quick": a.quick,
        "budget_s": budget,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "started_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "parts": {},
    }
    say(f"gpu_check on {result['device_name']} (torch {torch.__version__}), budget {budget:.0f} s")

    def part(name: str, run: Callable[[], dict]) -> None:
        began = time.monotonic()
        try:
            out = run()
            out.setdefault("status", "measured")
        except Exception as err:  # noqa: BLE001 (a part that fails is reported; the others still run)
            traceback.print_exc()
            out = {
                "status": "failed",
                "reason": f"{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}",
            }
        out["seconds"] = time.monotonic() - began
        result["parts"][name] = out
        say(f"{name}: {out['status']} ({out['seconds']:.1f} s)")

    def calibration() -> dict:
        entry = calibrate(device, a.quick)
        entry["writer"] = write_calibration(a.out / "calibration.json", entry)
        return entry

    try:
        part("calibration", calibration)
        part("smoke", lambda: smoke(device, say))
        members, precisions = _grouped_grid(device, a.quick)
        runs = 1 if a.device == "cpu" and a.quick else 3
        part("grouped_conv", lambda: grouped_conv(device, members, precisions, 10 if a.device == "cuda" else 2, runs))
        part("table", lambda: table(device, a.quick, end - SWEEP_RESERVE_S[a.device], say))
        entry, rows = result["parts"]["calibration"], result["parts"]["table"].get("rows", [])
        if entry["status"] == "measured":  # the rates a cohort reaches replace the kernels' peaks
            rates_from_table(entry, rows)
            entry["writer"] = write_calibration(a.out / "calibration.json", entry)
        part("sweep", lambda: tiny_sweep(device, work, a.out / "sweep.log", end - time.monotonic()))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["seconds"] = time.monotonic() - start
    result["ok"] = bool(result["parts"]["smoke"].get("ok")) and all(
        p["status"] != "failed" for p in result["parts"].values()
    )
    write_atomic(a.out / "gpu_check.json", json.dumps(result, indent=2, sort_keys=True, default=str) + "\n")
    write_atomic(a.out / "gpu_check.md", markdown(result))
    say(f"done in {result['seconds']:.0f} s: {a.out / 'gpu_check.md'}, {a.out / 'gpu_check.json'}")
    return 0 if result["ok"] else 1


def _grouped_grid(device: torch.device, quick: bool) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """Members and precisions of the grouped-convolution comparison (a CPU: small, fp32 only)."""
    if device.type == "cuda":
        return (8, 32), ("fp32", "tf32", "bf16")
    return ((2,) if quick else (4, 8)), ("fp32",)


if __name__ == "__main__":
    sys.exit(main())
