"""OpenLTH's CIFAR nets in the engine: a ResNet-20 cohort against its members one by one, and the time per
ResNet-20 and VGG-16 step against the machine's FLOP limit (ratios measured in one run, not timed tests).

    python benchmarks/bench_deep.py [--members 4] [--threads 1] [--iters N] [--batch 128] [--device cpu]
    python benchmarks/bench_deep.py --device cuda [--precision fp32|tf32|bf16]   # 200 iterations by default

One thread by default: on a CPU shared with other work, two OpenMP threads on two busy cores ran this 3-7x
slower than one (their barriers wait for a descheduled thread); give `--threads` the cores you own.

- Cohort: one dense round of `--members` ResNet-20 members (seeds 0..S-1) trained as one `Cohort`, against the
  same members each trained alone, one after another in this process; the ratio is (one by one) / (cohort) in
  trajectory-steps per second. A member alone is a cohort of one, which runs its net as a lone net
  (`FunctionalStacked` calls the module with the member's tensors, without `vmap`, when there is one member).
- FLOP limit: the FLOPs of one training step (forward and backward at `--batch`, counted by
  `torch.utils.flop_counter.FlopCounterMode` on 'meta' tensors: convolutions and matmuls, no elementwise ops),
  divided by the seconds of a cohort-of-one step, against the practical limit of the machine on the same
  threads and precision: the better of a large matmul's and a large 3x3 conv's GFLOP/s; the fraction is
  achieved / limit.

Each timing is (warm-up + N iterations) - (warm-up), best of `--repeats` (the cohort and the lone members
interleaved, so a busy machine's load falls on both): set-up and the evaluation at the end of a round cancel
out. N is 200 on a GPU (a step there is a few ms: fewer would be noise against the runs' ~100 ms of set-up and
copies) and 4 on a CPU (a step there is 0.3-1.5 s). Each step is OpenLTH's (SGD with momentum 0.9 and weight
decay 1e-4, flips and crops) on random CIFAR-shaped tensors, at `--precision` (fp32 by default). Prints one
JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from lth_ray.core.data.loading import Split  # noqa: E402
from lth_ray.core.engine import numerics  # noqa: E402
from lth_ray.core.engine.cohort import Cohort  # noqa: E402
from lth_ray.core.models.registry import build_model  # noqa: E402
from lth_ray.core.spec.config import TrajectoryConfig  # noqa: E402

SHAPE = (3, 32, 32)


def data(device: str, train: int = 5000, held_out: int = 128) -> Split:
    """Random CIFAR-shaped images and labels (the timing does not depend on their values)."""
    g = torch.Generator().manual_seed(0)
    x = lambda n: torch.randn(n, *SHAPE, generator=g).to(device)  # noqa: E731
    y = lambda n: torch.randint(0, 10, (n,), generator=g).to(device)  # noqa: E731
    return Split(x(train), y(train), x(held_out), y(held_out), x(held_out), y(held_out), "cifar10", "random")


def recipe(arch: str, batch: int, iterations: int, device: str, precision: str = "fp32") -> TrajectoryConfig:
    """OpenLTH's step (its schedule's milestones lie beyond a benchmark's few iterations) for one dense round."""
    return TrajectoryConfig(
        arch=arch,
        plan_conv=(),
        plan_fc=(),
        dataset="cifar10",
        batch_size=batch,
        iterations=iterations,
        eval_every=iterations,
        rounds=0,
        save_early_stop=False,
        optimizer="sgd",
        learning_rate=0.1,
        momentum=0.9,
        weight_decay=1e-4,
        augment="flip-crop",
        device=device,
        precision=precision,
    ).validate()


def seconds(arch: str, split: Split, seeds: list[int], batch: int, iters: int, precision: str = "fp32") -> float:
    """Wall time of one dense round of `iters` iterations of a cohort of `seeds` (one evaluation, at the end)."""
    cfg = recipe(arch, batch, iters, split.x_train.device.type, precision)
    cohort = Cohort([cfg.replace(seed=s) for s in seeds], split)
    if split.x_train.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    cohort.run_round()  # ends with a host copy of the histories: a GPU has finished
    return time.perf_counter() - start


def step_seconds(
    arch: str,
    split: Split,
    seeds: list[int],
    batch: int,
    iters: int,
    warmup: int,
    repeats: int,
    precision: str = "fp32",
) -> float:
    """Seconds per cohort iteration: (warm-up + iters) - (warm-up), best of `repeats`."""
    seconds(arch, split, seeds, batch, warmup, precision)
    return (
        min(
            seconds(arch, split, seeds, batch, warmup + iters, precision)
            - seconds(arch, split, seeds, batch, warmup, precision)
            for _ in range(repeats)
        )
        / iters
    )


def step_flops(arch: str, batch: int) -> int:
    """FLOPs of one training step (forward and backward, cross-entropy loss) of one member, counted on 'meta'."""
    model = build_model(recipe(arch, batch, 1, "cpu"), SHAPE, 10, device="meta").train()
    x = torch.empty(batch, *SHAPE, device="meta")
    y = torch.zeros(batch, dtype=torch.long, device="meta")
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    return counter.get_total_flops()


def _best_seconds(run, device: str, repeats: int = 5) -> float:
    """Best of 3 timings of `repeats` calls of `run` (after one warm-up call)."""
    run()
    best = float("inf")
    for _ in range(3):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            run()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best / repeats


def peak_gflops(device: str, precision: str = "fp32") -> dict[str, float]:
    """GFLOP/s of a 2048 x 2048 matmul (BLAS) and of a 3x3 conv of 128 channels at 16x16, batch 128 (oneDNN or
    cuDNN) at `precision` (fp32 with TF32 off, tf32, or bf16 tensors): the practical FLOP limit is the better of
    the two (on AMD CPUs MKL's matmul runs well below the convolutions' rate)."""
    numerics.configure("tf32" if precision == "tf32" else "fp32", False)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(2048, 2048, generator=g).to(device, dtype) for _ in range(2))
    x = torch.randn(128, 128, 16, 16, generator=g).to(device, dtype)
    w = torch.randn(128, 128, 3, 3, generator=g).to(device, dtype)
    with torch.no_grad():
        matmul = 2 * 2048**3 / _best_seconds(lambda: a @ b, device) / 1e9
        conv = 2 * 128 * 128 * 128 * 9 * 16 * 16 / _best_seconds(lambda: F.conv2d(x, w, padding=1), device) / 1e9
    return {"matmul": matmul, "conv": conv}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--members", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--iters", type=int, help="timed iterations (default: 200 on a GPU, 4 on a CPU)")
    p.add_argument("--warmup", type=int, help="warm-up iterations (default: 20 on a GPU, 1 on a CPU)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--precision", default="fp32", choices=("fp32", "tf32", "bf16"))
    a = p.parse_args()
    gpu = a.device == "cuda"
    a.iters = a.iters if a.iters is not None else (200 if gpu else 4)
    a.warmup = a.warmup if a.warmup is not None else (20 if gpu else 1)
    if a.iters < 1 or a.warmup < 1:
        p.error(f"--iters={a.iters} and --warmup={a.warmup} must be at least 1")
    torch.set_num_threads(a.threads)
    split = data(a.device)
    seeds = list(range(a.members))
    timing = dict(batch=a.batch, iters=a.iters, warmup=a.warmup, repeats=1, precision=a.precision)  # interleaved
    runs = [
        [step_seconds("cifar_resnet_20", split, group, **timing) for group in [seeds] + [[s] for s in seeds]]
        for _ in range(a.repeats)
    ]
    cohort, *alone = (min(times) for times in zip(*runs))
    peak = peak_gflops(a.device, a.precision)
    limit = max(peak.values())
    out = {
        "device": a.device,
        "device_name": torch.cuda.get_device_name() if a.device == "cuda" else "cpu",
        "threads": a.threads,
        "batch": a.batch,
        "members": a.members,
        "iters": a.iters,
        "warmup": a.warmup,
        "precision": a.precision,
        "resnet20_cohort_ms_per_iter": cohort * 1e3,
        "resnet20_one_by_one_ms_per_iter": sum(alone) * 1e3,
        "cohort_speedup_vs_one_by_one": sum(alone) / cohort,
        "matmul_gflops": peak["matmul"],
        "conv_gflops": peak["conv"],
        "gflops_limit": limit,
    }
    steps = {
        "resnet20": ("cifar_resnet_20", min(alone)),
        "vgg16": ("cifar_vgg_16", step_seconds("cifar_vgg_16", split, [0], **dict(timing, repeats=a.repeats))),
    }
    for label, (arch, step) in steps.items():
        gflop = step_flops(arch, a.batch) / 1e9
        out.update(
            {
                f"{label}_gflop_per_step": gflop,
                f"{label}_ms_per_step": step * 1e3,
                f"{label}_gflops": gflop / step,
                f"{label}_fraction_of_limit": gflop / step / limit,
            }
        )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
