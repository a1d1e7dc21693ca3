"""gpu_check's cohort parts: the smoke comparison against the CPU, and the cohort table (trajectory-iterations
per second with the protocol's evaluations, the ratio to one member alone, device memory per member).

A cell is one real `Cohort` round on synthetic data of the protocol's shapes. Its timing comes from the round's
own evaluation points: the progress callback synchronizes the device and stamps the time at each evaluation, so
a timed stretch is whole blocks of `eval_every` training steps plus their evaluation (validation and test sets),
and set-up, compilation and the first blocks (the warm-up) stay out. Once enough was timed the callback cuts
the round short (it raises; the cohort is thrown away).
"""

from __future__ import annotations

import dataclasses
import gc
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from lth_ray.core.data.loading import Split
from lth_ray.core.engine.cohort import Cohort
from lth_ray.core.options.resolve import from_preset
from lth_ray.core.pruning.masks import unpack_masks
from lth_ray.core.spec.config import TrajectoryConfig

# The protocol's evaluation (Frankle & Carbin 2019): the whole validation set (5,000) and test set (10,000)
# every 100 iterations; `scale` shrinks all three together, so evaluation keeps its share of the work.
PROTOCOL_EVAL_EVERY, PROTOCOL_VAL, PROTOCOL_TEST = 100, 5000, 10_000
TRAIN_SIZE = {"mnist": 55_000, "cifar10": 45_000}  # training examples after the validation split
SHAPES = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
ARCHS = {"lenet": "mnist", "conv2": "cifar10", "cifar_resnet_20": "cifar10"}
LABELS = {"lenet": "Lenet-300-100", "conv2": "Conv-2", "cifar_resnet_20": "ResNet-20"}
GRID = {"lenet": (1, 8, 32, 128), "conv2": (1, 8, 32), "cifar_resnet_20": (1, 4, 8)}
PRECISIONS = ("fp32", "tf32", "bf16")
MODES = ("eager", "compiled")
# The smoke comparison: 2 rounds of 8 iterations at these batch sizes, fp32 with TF32 off, and its tolerances.
SMOKE_ITERATIONS = 8
SMOKE_BATCH = {"lenet": 60, "conv2": 4, "cifar_resnet_20": 4}
# ResNet-20's 0.1 (SGD, momentum 0.9) at batch 4 amplifies rounding differences chaotically within a few steps: the
# same smoke in fp32 against fp64 on a CPU differed by 360x the tolerance at 0.1, 0.57x at 0.01, 0.009x at 0.001.
SMOKE_LEARNING_RATE = {"cifar_resnet_20": 1e-3}
SMOKE_LOSS_RTOL, SMOKE_LOSS_ATOL = 1e-2, 1e-3
SMOKE_ACC_EXAMPLES = 2  # accuracies may differ by this many examples of the split
SMOKE_MASK_AGREEMENT = 0.995  # fraction of mask entries that must agree


def has_compile_step() -> bool:
    """Whether this lth_ray's TrajectoryConfig can compile the training step (`compile_step`)."""
    return "compile_step" in {f.name for f in dataclasses.fields(TrajectoryConfig)}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synthetic_split(dataset: str, device: torch.device, train: int, val: int, test: int, seed: int = 0) -> Split:
    """Random images and labels of the data set's shape (the timing does not depend on their values)."""
    g = torch.Generator().manual_seed(seed)
    shape = SHAPES[dataset]

    def part(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.randn(n, *shape, generator=g).to(device), torch.randint(0, 10, (n,), generator=g).to(device)

    (xt, yt), (xv, yv), (xs, ys) = part(train), part(val), part(test)
    return Split(xt, yt, xv, yv, xs, ys, dataset, "random")


def recipe(arch: str, device: torch.device, **changes) -> TrajectoryConfig:
    """The preset's recipe for one dense round (a schedule's milestones and warm-up lie beyond a benchmark)."""
    base = dict(dataset=ARCHS[arch], rounds=0, milestones=(), warmup=0, device=device.type)
    return from_preset(arch, **{**base, **changes})


# ------------------------------------------------------------------ smoke: the device against the CPU


def _round_results(arch: str, split: Split, batch: int, deterministic: bool = False) -> list[dict]:
    """Two rounds (dense, then pruned) of SMOKE_ITERATIONS of a cohort of two seeds on the split's device."""
    lr = {"learning_rate": SMOKE_LEARNING_RATE[arch]} if arch in SMOKE_LEARNING_RATE else {}
    cfg = recipe(
        arch,
        split.x_train.device,
        rounds=1,
        iterations=SMOKE_ITERATIONS,
        eval_every=4,
        batch_size=batch,
        deterministic=deterministic,
        **lr,
    )
    cohort = Cohort([cfg.replace(seed=s) for s in (0, 1)], split)
    out = []
    for results in cohort.run_results():
        for i, res in sorted(results.items()):
            out.append({"member": i, "record": res.record, "masks": unpack_masks(res.masks)})
    return out


def _agreement(device_run: list[dict], cpu_run: list[dict], sizes: dict[str, int]) -> dict:
    """The largest differences of the histories and the masks' agreement between the two runs."""
    loss_excess, acc_examples, worst, agree, total = 0.0, 0.0, "", 0, 0
    for a, b in zip(device_run, cpu_run):
        for metric in ("train_loss", "val_loss", "test_loss", "val_acc", "test_acc"):
            for x, y in zip(a["record"][metric], b["record"][metric]):
                if not (math.isfinite(x) and math.isfinite(y)):
                    if math.isfinite(x) != math.isfinite(y):
                        loss_excess, worst = math.inf, f"{metric} finite on one device only"
                    continue
                if metric.endswith("_acc"):
                    examples = abs(x - y) * sizes[metric.split("_")[0]]
                    acc_examples = max(acc_examples, examples)
                else:  # how far past the tolerance, as a fraction of it
                    excess = abs(x - y) / (SMOKE_LOSS_ATOL + SMOKE_LOSS_RTOL * abs(y))
                    if excess > loss_excess:
                        loss_excess, worst = excess, f"{metric}: {x:.6g} vs {y:.6g}"
        for name, m in a["masks"].items():
            agree += int((m.cpu() == b["masks"][name].cpu()).sum())
            total += m.numel()
    mask_agreement = agree / total if total else 1.0
    return {
        "loss_difference_over_tolerance": loss_excess,
        "worst_loss": worst,
        "accuracy_difference_examples": acc_examples,
        "mask_agreement": mask_agreement,
        "ok": loss_excess <= 1 and acc_examples <= SMOKE_ACC_EXAMPLES + 1e-6 and mask_agreement >= SMOKE_MASK_AGREEMENT,
    }


def smoke(device: torch.device, say: Callable[[str], None]) -> dict:
    """Lenet, Conv-2 and ResNet-20: two short rounds of a 2-member cohort on the device and on the CPU, from
    the same seeds and data; the histories and masks must agree within the stated tolerances (on a CPU
    device both runs are on the CPU, and must agree bitwise). On a GPU, two more runs with `--deterministic`
    must give the same numbers bitwise (what the docs promise)."""
    entries = []
    for arch, batch in SMOKE_BATCH.items():
        started = time.perf_counter()
        host = synthetic_split(ARCHS[arch], torch.device("cpu"), train=320, val=64, test=64, seed=1)
        on_device = dataclasses.replace(host, **{k: getattr(host, k).to(device) for k in _TENSORS})
        dev_run = _round_results(arch, on_device, batch)
        cpu_run = _round_results(arch, host, batch)
        entry = {"arch": arch, "label": LABELS[arch], "members": 2, "rounds": 2, "iterations": SMOKE_ITERATIONS}
        entry["batch"] = batch
        entry["learning_rate"] = SMOKE_LEARNING_RATE.get(arch)
        entry.update(_agreement(dev_run, cpu_run, {"val": 64, "test": 64, "train": 1}))
        entry["bitwise"] = all(a["record"][m] == b["record"][m] for a, b in zip(dev_run, cpu_run) for m in _METRICS)
        if device.type == "cuda":
            first, second = (_round_results(arch, on_device, batch, deterministic=True) for _ in range(2))
            same = all(a["record"][m] == b["record"][m] for a, b in zip(first, second) for m in _METRICS)
            entry["deterministic_reruns_bitwise"] = same
            entry["ok"] = entry["ok"] and same
        entry["seconds"] = time.perf_counter() - started
        say(f"smoke {LABELS[arch]}: {'ok' if entry['ok'] else 'MISMATCH'} ({entry['seconds']:.1f} s)")
        entries.append(entry)
    return {
        "tolerance": {
            "loss_rtol": SMOKE_LOSS_RTOL,
            "loss_atol": SMOKE_LOSS_ATOL,
            "accuracy_examples": SMOKE_ACC_EXAMPLES,
            "mask_agreement": SMOKE_MASK_AGREEMENT,
        },
        "runs": entries,
        "ok": all(e["ok"] for e in entries),
    }


_TENSORS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
_METRICS = ("train_loss", "val_loss", "val_acc", "test_loss", "test_acc")


# ------------------------------------------------------------------ the cohort table


class _Enough(Exception):
    """Raised from the progress callback: the cell has been timed, the rest of the round is not needed."""


@dataclass(frozen=True)
class Cell:
    arch: str
    members: int
    mode: str  # eager or compiled
    precision: str

    @property
    def key(self) -> str:
        return f"{self.arch}/{self.members}/{self.mode}/{self.precision}"


@dataclass(frozen=True)
class Timing:
    """How a cell is timed: blocks of `eval_every` steps, `warmup` blocks (at least 1) left out, then blocks
    until `min_seconds` were timed (at most `max_blocks`)."""

    scale: float
    warmup: int
    min_seconds: float
    max_blocks: int

    @property
    def eval_every(self) -> int:
        return max(1, round(PROTOCOL_EVAL_EVERY * self.scale))


def all_cells() -> list[Cell]:
    return [Cell(a, p, m, q) for a, ps in GRID.items() for p in ps for m in MODES for q in PRECISIONS]


def time_cell(cell: Cell, split: Split, timing: Timing, deadline: float) -> dict:
    """One cell: trajectory-iterations per second over whole evaluation blocks, and device memory."""
    device = split.x_train.device
    changes: dict = {"precision": cell.precision, "eval_every": timing.eval_every}
    if cell.mode == "compiled":
        changes["compile_step"] = True
    cfg = recipe(cell.arch, device, iterations=timing.eval_every * (timing.warmup + timing.max_blocks), **changes)
    stamps: list[tuple[int, float]] = []

    def progress(_round: int, done: int) -> None:
        sync(device)
        stamps.append((done, time.perf_counter()))
        if len(stamps) > timing.warmup:
            timed = stamps[-1][1] - stamps[timing.warmup - 1][1]
            if timed >= timing.min_seconds or time.monotonic() > deadline:
                raise _Enough

    gc.collect()
    base = 0
    if device.type == "cuda":
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated(device)  # the data set (and nothing of an earlier cell)
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    cohort = Cohort([cfg.replace(seed=s) for s in range(cell.members)], split, progress=progress)
    try:
        cohort.run_round()
    except _Enough:
        pass
    finally:
        del cohort
    wall = time.perf_counter() - started
    if len(stamps) <= timing.warmup:
        return {"status": "failed", "reason": "the round ended before a block was timed", "wall_s": wall}
    (it0, t0), (it1, t1) = stamps[timing.warmup - 1], stamps[-1]
    seconds = t1 - t0
    out = {
        "status": "measured",
        "iterations_timed": it1 - it0,
        "seconds_timed": seconds,
        "ms_per_step": 1e3 * seconds / (it1 - it0),
        "trajectory_iterations_per_s": cell.members * (it1 - it0) / seconds,
        "wall_s": wall,
    }
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - base
        out.update(peak_mib=peak / 2**20, mib_per_member=peak / cell.members / 2**20)
    gc.collect()
    return out


def member_slopes(rows: list[dict]) -> dict[str, float]:
    """Device memory per member as the least-squares slope of peak memory against members, per (arch, mode,
    precision) with at least two measured sizes: what each further member costs, without the fixed costs."""
    groups: dict[str, list[tuple[int, float]]] = {}
    for r in rows:
        if r.get("status") == "measured" and "peak_mib" in r:
            groups.setdefault(f"{r['arch']}/{r['mode']}/{r['precision']}", []).append((r["members"], r["peak_mib"]))
    slopes = {}
    for key, points in groups.items():
        if len({p for p, _ in points}) < 2:
            continue
        mp = sum(p for p, _ in points) / len(points)
        mm = sum(m for _, m in points) / len(points)
        slopes[key] = sum((p - mp) * (m - mm) for p, m in points) / sum((p - mp) ** 2 for p, _ in points)
    return slopes


def ratios_to_alone(rows: list[dict]) -> None:
    """Each measured row's throughput against the one-member row of its arch, mode and precision."""
    alone = {
        (r["arch"], r["mode"], r["precision"]): r["trajectory_iterations_per_s"]
        for r in rows
        if r.get("status") == "measured" and r["members"] == 1
    }
    for r in rows:
        one = alone.get((r["arch"], r["mode"], r["precision"]))
        if r.get("status") == "measured" and one:
            r["ratio_to_one_alone"] = r["trajectory_iterations_per_s"] / one
