"""Cohort throughput: trajectory-iterations per second of one vectorized cohort of S members against the same
S trajectories trained separately, on the same device and cores (ratios measured in one run), with the
protocol's evaluations included.

    python benchmarks/bench_cohort.py [--arch lenet] [--members 8] [--threads 2] [--iters 300] [--device cpu]
    python benchmarks/bench_cohort.py --device cuda --arch lenet --members 32     # on a GPU machine
    python benchmarks/bench_cohort.py --device cuda --arch conv2 --members 8

Each run evaluates as the protocol does: the whole validation set (5,000) and test set (10,000) every 100
iterations; `--eval-scale s` shrinks all three by s (evaluation keeps its share of the work: about 0.8x the
training FLOPs). `--iters` and the warm-up are whole multiples of the evaluation interval, so each timing,
(warm-up + N iterations) - (warm-up), best of `--repeats`, holds N / interval evaluations and none of the
set-up or of the evaluation at the end of the warm-up.

CPU: the separate trials are `threads` worker processes of 1 thread each (Ray's one-CPU trials), running the
S trajectories between them concurrently; the cohort is one process with `threads` threads; "one by one" is
the S trajectories trained one after another in one process with `threads` threads. GPU: the reference is one
trajectory alone on the same GPU (what a trial did before cohorts); GPU memory per member is the cohort's peak
allocation less what was allocated before it (the data set), divided by S. A JSON line is printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from lth_ray.core.data.loading import DEBIAN_FASHION_MNIST, Split, load_split  # noqa: E402
from lth_ray.core.engine.cohort import Cohort  # noqa: E402
from lth_ray.core.options.resolve import from_preset  # noqa: E402

EVAL_EVERY, VAL, TEST = 100, 5000, 10_000  # the protocol's evaluation


def data(arch: str, device: str, scale: float = 1.0) -> Split:
    """Fashion-MNIST (Debian's package) for Lenet when installed, else MNIST- or CIFAR-shaped random data; the
    validation and test sets cut to `scale` of the protocol's 5,000 and 10,000."""
    val, test = round(VAL * scale), round(TEST * scale)
    if arch == "lenet" and Path(DEBIAN_FASHION_MNIST).is_dir():
        import tempfile

        s = load_split("fashion-mnist", tempfile.mkdtemp(), device)
        return dataclasses.replace(
            s, x_val=s.x_val[:val], y_val=s.y_val[:val], x_test=s.x_test[:test], y_test=s.y_test[:test]
        )
    g = torch.Generator().manual_seed(0)
    shape = (1, 28, 28) if arch == "lenet" else (3, 32, 32)
    x = lambda n: torch.randn(n, *shape, generator=g).to(device)  # noqa: E731
    y = lambda n: torch.randint(0, 10, (n,), generator=g).to(device)  # noqa: E731
    train = 55_000 if arch == "lenet" else 45_000
    return Split(
        x(train), y(train), x(val), y(val), x(test), y(test), "mnist" if arch == "lenet" else "cifar10", "random"
    )


def interval(scale: float) -> int:
    """Iterations between evaluations at `scale` of the protocol."""
    return max(1, round(EVAL_EVERY * scale))


def seconds(arch: str, split: Split, seeds: list[int], iters: int) -> float:
    """Wall time of one dense round of `iters` iterations for a cohort of `seeds`, evaluated as the protocol does
    (at the split's scale: its validation set against the protocol's 5,000)."""
    cfg = from_preset(
        arch,
        dataset=split.dataset,
        iterations=iters,
        eval_every=interval(len(split.x_val) / VAL),
        rounds=0,
        save_early_stop=False,
        device=split.x_train.device.type,
    )
    cohort = Cohort([cfg.replace(seed=s) for s in seeds], split)
    if split.x_train.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    cohort.run_round()  # ends with a host copy of the histories: the GPU has finished
    return time.perf_counter() - start


def step_seconds(arch: str, split: Split, seeds: list[int], iters: int, warmup: int, repeats: int) -> float:
    """Seconds per cohort iteration: (warm-up + iters) - (warm-up), best of `repeats`."""
    seconds(arch, split, seeds, warmup)
    return (
        min(seconds(arch, split, seeds, warmup + iters) - seconds(arch, split, seeds, warmup) for _ in range(repeats))
        / iters
    )


def _worker(arch: str, seeds: list[int], iters: int, warmup: int, repeats: int, scale: float, queue) -> None:
    torch.set_num_threads(1)
    split = data(arch, "cpu", scale)
    queue.put(sum(step_seconds(arch, split, [s], iters, warmup, repeats) for s in seeds))


def separate_trials(
    arch: str, members: int, workers: int, iters: int, warmup: int, repeats: int, scale: float
) -> float:
    """Seconds per iteration of all `members` trajectories as separate 1-thread trials on `workers` cores:
    each worker trains its share one after another, the workers run at the same time."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    shares = [list(range(w, members, workers)) for w in range(workers)]
    procs = [ctx.Process(target=_worker, args=(arch, share, iters, warmup, repeats, scale, queue)) for share in shares]
    for p in procs:
        p.start()
    totals = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return max(totals)  # the wall time per iteration of the slowest worker's share


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="lenet", choices=("lenet", "conv2", "conv4", "conv6"))
    p.add_argument("--members", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iters", type=int, default=300, help="timed iterations, a multiple of the evaluation interval")
    p.add_argument("--warmup", type=int, help="a multiple of the evaluation interval (default: one interval)")
    p.add_argument("--eval-scale", type=float, default=1.0, help="of the protocol's 100 / 5,000 / 10,000, in (0, 1]")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    a = p.parse_args()
    if not 0 < a.eval_scale <= 1:
        p.error(f"--eval-scale={a.eval_scale:g} is not allowed; use a value in (0, 1]")
    every = interval(a.eval_scale)
    a.warmup = every if a.warmup is None else a.warmup
    for name in ("iters", "warmup"):
        if getattr(a, name) <= 0 or getattr(a, name) % every:
            p.error(
                f"--{name}={getattr(a, name)} is not allowed; use a positive multiple of the evaluation "
                f"interval {every}"
            )
    torch.set_num_threads(a.threads)
    split = data(a.arch, a.device, a.eval_scale)
    seeds = list(range(a.members))
    if a.device == "cuda":
        data_bytes = torch.cuda.memory_allocated()  # the data set, resident before any cohort
        torch.cuda.reset_peak_memory_stats()
    cohort = step_seconds(a.arch, split, seeds, a.iters, a.warmup, a.repeats)
    out = {
        "arch": a.arch,
        "device": a.device,
        "members": a.members,
        "threads": a.threads,
        "iters": a.iters,
        "eval_every": every,
        "val_examples": len(split.x_val),
        "test_examples": len(split.x_test),
        "device_name": torch.cuda.get_device_name() if a.device == "cuda" else "cpu",
        "cohort_ms_per_iter": cohort * 1e3,
        "cohort_trajectory_iters_per_s": a.members / cohort,
    }
    if a.device == "cuda":
        out["gpu_mib_per_member"] = (torch.cuda.max_memory_allocated() - data_bytes) / a.members / 2**20
        out["gpu_mib_data_set"] = data_bytes / 2**20
        alone = step_seconds(a.arch, split, [0], a.iters, a.warmup, a.repeats)
        out.update(
            alone_ms_per_iter=alone * 1e3,
            alone_trajectory_iters_per_s=1 / alone,
            speedup_vs_one_alone=(a.members / cohort) / (1 / alone),
        )
    else:
        separate = separate_trials(a.arch, a.members, a.threads, a.iters, a.warmup, a.repeats, a.eval_scale)
        one = step_seconds(a.arch, split, [0], a.iters, a.warmup, a.repeats)  # one by one, all threads
        out.update(
            separate_ms_per_iter=separate * 1e3,
            separate_trajectory_iters_per_s=a.members / separate,
            speedup_vs_separate_trials=separate / cohort,
            one_by_one_ms_per_iter=one * a.members * 1e3,
            speedup_vs_one_by_one=one * a.members / cohort,
        )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
