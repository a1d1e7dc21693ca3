"""Cohort throughput: trajectory-iterations per second of one vectorized cohort of S members against the same
S trajectories trained separately, on the same device and cores (ratios measured in one run).

    python benchmarks/bench_cohort.py [--arch lenet] [--members 8] [--threads 2] [--iters 300] [--device cpu]
    python benchmarks/bench_cohort.py --device cuda --arch lenet --members 32     # on a GPU machine
    python benchmarks/bench_cohort.py --device cuda --arch conv2 --members 8

CPU: the separate trials are `threads` worker processes of 1 thread each (Ray's one-CPU trials), running the
S trajectories between them concurrently; the cohort is one process with `threads` threads; "one by one" is
the S trajectories trained one after another in one process with `threads` threads. GPU: the
reference is one trajectory alone on the same GPU (what a trial did before cohorts); GPU memory per member is
the peak allocated by the cohort divided by S. Each timing is (warm-up + N iterations) - (warm-up), best of
`--repeats`, so set-up and the one evaluation at the end of a run cancel out. A JSON line is printed.
"""

from __future__ import annotations

import argparse
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


def data(arch: str, device: str) -> Split:
    """Fashion-MNIST (Debian's package) for Lenet when installed, else MNIST- or CIFAR-shaped random data."""
    if arch == "lenet" and Path(DEBIAN_FASHION_MNIST).is_dir():
        import tempfile

        return load_split("fashion-mnist", tempfile.mkdtemp(), device)
    g = torch.Generator().manual_seed(0)
    shape = (1, 28, 28) if arch == "lenet" else (3, 32, 32)
    x = lambda n: torch.randn(n, *shape, generator=g).to(device)  # noqa: E731
    y = lambda n: torch.randint(0, 10, (n,), generator=g).to(device)  # noqa: E731
    return Split(
        x(50_000), y(50_000), x(1000), y(1000), x(1000), y(1000), "mnist" if arch == "lenet" else "cifar10", "random"
    )


def seconds(arch: str, split: Split, seeds: list[int], iters: int) -> float:
    """Wall time of one dense round of `iters` iterations for a cohort of `seeds` (one evaluation, at the end)."""
    cfg = from_preset(
        arch,
        dataset=split.dataset,
        iterations=iters,
        eval_every=iters,
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


def _worker(arch: str, seeds: list[int], iters: int, warmup: int, repeats: int, queue) -> None:
    torch.set_num_threads(1)
    split = data(arch, "cpu")
    queue.put(sum(step_seconds(arch, split, [s], iters, warmup, repeats) for s in seeds))


def separate_trials(arch: str, members: int, workers: int, iters: int, warmup: int, repeats: int) -> float:
    """Seconds per iteration of all `members` trajectories as separate 1-thread trials on `workers` cores:
    each worker trains its share one after another, the workers run at the same time."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    shares = [list(range(w, members, workers)) for w in range(workers)]
    procs = [ctx.Process(target=_worker, args=(arch, share, iters, warmup, repeats, queue)) for share in shares]
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
    p.add_argument("--iters", type=int, default=300)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    split = data(a.arch, a.device)
    seeds = list(range(a.members))
    if a.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    cohort = step_seconds(a.arch, split, seeds, a.iters, a.warmup, a.repeats)
    out = {
        "arch": a.arch,
        "device": a.device,
        "members": a.members,
        "threads": a.threads,
        "iters": a.iters,
        "device_name": torch.cuda.get_device_name() if a.device == "cuda" else "cpu",
        "cohort_ms_per_iter": cohort * 1e3,
        "cohort_trajectory_iters_per_s": a.members / cohort,
    }
    if a.device == "cuda":
        out["gpu_mib_per_member"] = torch.cuda.max_memory_allocated() / a.members / 2**20
        alone = step_seconds(a.arch, split, [0], a.iters, a.warmup, a.repeats)
        out.update(
            alone_ms_per_iter=alone * 1e3,
            alone_trajectory_iters_per_s=1 / alone,
            speedup_vs_one_alone=(a.members / cohort) / (1 / alone),
        )
    else:
        separate = separate_trials(a.arch, a.members, a.threads, a.iters, a.warmup, a.repeats)
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
