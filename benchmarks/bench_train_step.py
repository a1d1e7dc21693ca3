"""Training-step speed of lth_ray's trajectory against the yardstick loop (benchmarks/yardstick.py).

Both run in this process's session on the same machine with the same thread count; the result is the ratio
of iterations per second (ours / yardstick). Lenet on Fashion-MNIST (real data, Debian's package) and
Conv-2 on CIFAR-shaped random data. Our step is timed as the difference of two runs (warm-up + N steps
minus warm-up steps), so the single evaluation at the end of each run cancels out.

    python benchmarks/bench_train_step.py [--threads 2] [--iters 1000] [--conv-iters 100]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from lth_ray.core.data.loading import DEBIAN_FASHION_MNIST, Split, load_split  # noqa: E402
from lth_ray.core.engine.trajectory import Trajectory
from lth_ray.core.options.resolve import from_preset  # noqa: E402

YARDSTICK = Path(__file__).resolve().parent / "yardstick.py"  # docs/benchmarks.md: what it is and why


def fake_cifar(n_train=45_000, seed=0) -> Split:
    g = torch.Generator().manual_seed(seed)
    x = lambda n: torch.randn(n, 3, 32, 32, generator=g)  # noqa: E731
    y = lambda n: torch.randint(0, 10, (n,), generator=g)  # noqa: E731
    return Split(x(n_train), y(n_train), x(1000), y(1000), x(1000), y(1000), "cifar10", "random")


def ours_ms_per_iter(
    preset: str, split: Split, iters: int, warmup: int, sparse: bool, repeats: int = 3, precision: str = "fp32"
) -> float:
    """ms per training iteration of a trajectory round (dense round 0, or a pruned round 1 if `sparse`).

    One untimed run first (the first touches of the data and allocator are slow), then the best of `repeats`.
    """

    def timed(n):
        cfg = from_preset(
            preset,
            dataset=split.dataset,
            iterations=n,
            eval_every=n,
            rounds=1,
            save_early_stop=False,
            precision=precision,
            device=split.x_train.device.type,
        )
        t = Trajectory(cfg, split)
        if sparse:
            t.run_round()  # round 0 (dense), then time round 1 (masked)
        start = time.perf_counter()
        t.run_round()
        return time.perf_counter() - start

    timed(warmup)
    return min(timed(warmup + iters) - timed(warmup) for _ in range(repeats)) / iters * 1e3


def yardstick(arch: str, dataset: str, root: str, iters: int, threads: int, repeats: int = 3) -> float:
    """The yardstick's ms per iteration, best of `repeats` runs (the same rule as ours)."""
    return min(_yardstick_once(arch, dataset, root, iters, threads) for _ in range(repeats))


def _yardstick_once(arch: str, dataset: str, root: str, iters: int, threads: int) -> float:
    out = subprocess.run(
        [
            sys.executable,
            str(YARDSTICK),
            "--arch",
            arch,
            "--dataset",
            dataset,
            "--root",
            root,
            "--iters",
            str(iters),
            "--threads",
            str(threads),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["ms_per_iter"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=1000)
    ap.add_argument("--conv-iters", type=int, default=100)
    ap.add_argument(
        "--precisions",
        default="fp32,bf16",
        help="ours in each of these precisions (the first is compared with the yardstick)",
    )
    a = ap.parse_args()
    precisions = a.precisions.split(",")
    torch.set_num_threads(a.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        # the yardstick wants torchvision's layout: link Debian's gz files into <tmp>/FashionMNIST/raw
        raw = Path(tmp) / "FashionMNIST" / "raw"
        raw.mkdir(parents=True)
        import gzip

        for f in DEBIAN_FASHION_MNIST.glob("*.gz"):
            (raw / f.stem).write_bytes(gzip.decompress(f.read_bytes()))
        split = load_split("fashion-mnist")
        base = yardstick("lenet", "fashion-mnist", tmp, a.iters, a.threads)
        for precision in precisions:
            for sparse in (False, True):
                ours = ours_ms_per_iter("lenet", split, a.iters, 100, sparse, precision=precision)
                rows.append(
                    {
                        "arch": "lenet",
                        "data": "fashion-mnist",
                        "round": "pruned" if sparse else "dense",
                        "precision": precision,
                        "ours_ms": round(ours, 4),
                        "yardstick_ms": base,
                        "speedup": round(base / ours, 2),
                    }
                )
    cifar = fake_cifar()
    base = yardstick("conv2", "fake-cifar10", "unused", a.conv_iters, a.threads)
    for sparse in (False, True):
        ours = ours_ms_per_iter("conv2", cifar, a.conv_iters, 10, sparse, precision=precisions[0])
        rows.append(
            {
                "arch": "conv2",
                "data": "cifar-shaped",
                "round": "pruned" if sparse else "dense",
                "precision": precisions[0],
                "ours_ms": round(ours, 4),
                "yardstick_ms": base,
                "speedup": round(base / ours, 2),
            }
        )
    print(f"threads={a.threads} torch={torch.__version__}")
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
