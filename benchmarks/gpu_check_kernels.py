"""gpu_check's kernel parts: Conv-2's grouped convolution against per-member convolutions, and the planner's
calibration (matmul and convolution FLOP/s at fp32, tf32 and bf16, the floor of a tiny training step, memory).

Each timing is the best of 3 runs (a CPU with --quick: 1) of `repeats` calls after a warm-up call, with the
device synchronized around each run (ratios come from one process, one device, one session).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from gpu_check_cohorts import LABELS

from lth_ray.core.engine import numerics
from lth_ray.core.engine.weights import build_net
from lth_ray.core.models.registry import model_entry, model_of
from lth_ray.core.options.resolve import from_preset


def best_seconds(run: Callable[[], object], device: torch.device, repeats: int, runs: int = 3) -> float:
    """Seconds per call of `run`: best of `runs` runs of `repeats` calls, after one warm-up call."""
    run()
    best = float("inf")
    for _ in range(runs):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for _ in range(repeats):
            run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best / repeats


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


# ------------------------------------------------------------------ Conv-2: grouped vs per-member convolutions


def grouped_conv(
    device: torch.device, members: tuple[int, ...], precisions: tuple[str, ...], repeats: int, runs: int = 3
) -> dict:
    """Forward + backward of Conv-2's stacked forward at batch 60, as one grouped convolution per layer
    (`grouped=True`, the GPU's path) and as one convolution per member (`grouped=False`, the CPU's path);
    also the largest difference of their logits (the same math)."""
    cfg = from_preset("conv2", dataset="cifar10", device=device.type)
    template = build_net(cfg, (3, 32, 32), device="meta")
    net = model_entry(model_of(cfg)).stacked(template)
    rows = []
    for p in members:
        nets = [build_net(cfg.replace(seed=s), (3, 32, 32)).state_dict() for s in range(p)]
        tensors = {k: torch.stack([n[k] for n in nets]).to(device) for k in nets[0]}
        params = [t.requires_grad_(True) for k, t in tensors.items() if t.is_floating_point()]
        x = torch.randn(p, 60, 3, 32, 32, generator=torch.Generator().manual_seed(0)).to(device)
        for precision in precisions:
            numerics.configure(precision, False)

            def step(grouped: bool, x=x, tensors=tensors, params=params, p=p, precision=precision) -> torch.Tensor:
                with numerics.autocast(precision, device):
                    out = net.forward(tensors, x, p, shared=False, training=True, grouped=grouped)
                torch.autograd.grad(out.float().square().mean(), params)
                return out.detach()

            seconds = {g: best_seconds(lambda g=g: step(g), device, repeats, runs) for g in (True, False)}
            diff = float((step(True).float() - step(False).float()).abs().max())
            rows.append(
                {
                    "members": p,
                    "precision": precision,
                    "grouped_ms": seconds[True] * 1e3,
                    "per_member_ms": seconds[False] * 1e3,
                    "grouped_speedup": seconds[False] / seconds[True],
                    "max_abs_logit_difference": diff,
                }
            )
    numerics.configure("fp32", False)
    return {"batch": 60, "rows": rows}


# ------------------------------------------------------------------ calibration for the planner


def _flops(device: torch.device, precision: str, size: int, conv: tuple[int, int, int], repeats: int) -> dict:
    """GFLOP/s of a size^3 matmul and of a 3x3 convolution (batch, channels, pixels^2) at `precision`."""
    numerics.configure("tf32" if precision == "tf32" else "fp32", False)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(size, size, generator=g).to(device, dtype) for _ in range(2))
    n, c, hw = conv
    x = torch.randn(n, c, hw, hw, generator=g).to(device, dtype)
    w = torch.randn(c, c, 3, 3, generator=g).to(device, dtype)
    with torch.no_grad():
        matmul = 2 * size**3 / best_seconds(lambda: a @ b, device, repeats)
        convolution = 2 * n * c * c * 9 * hw * hw / best_seconds(lambda: F.conv2d(x, w, padding=1), device, repeats)
    return {"matmul_flops": matmul, "conv_flops": convolution}


def step_floor_seconds(device: torch.device, repeats: int) -> float:
    """Seconds of a tiny training step (2 linear layers of 8 units, batch 8: forward, loss, backward, fused
    Adam): what any step costs at least on this device and host, whatever its FLOPs."""
    g = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    x, y = torch.randn(8, 8, generator=g).to(device), torch.randint(0, 8, (8,), generator=g).to(device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return best_seconds(step, device, repeats)


def calibrate(device: torch.device, quick: bool) -> dict:
    """The planner's numbers for this device: the better of matmul and convolution FLOP/s per precision."""
    if device.type == "cuda":
        size, conv, repeats = 8192, (128, 256, 32), 10
    else:
        size, conv, repeats = (512, (8, 64, 16), 2) if quick else (2048, (32, 128, 16), 3)
    measured = {p: _flops(device, p, size, conv, repeats) for p in ("fp32", "tf32", "bf16")}
    numerics.configure("fp32", False)
    return {
        "name": device_name(device),
        "fp32_flops": max(measured["fp32"].values()),
        "tf32_flops": max(measured["tf32"].values()),
        "bf16_flops": max(measured["bf16"].values()),
        "step_floor_s": step_floor_seconds(device, 200 if device.type == "cuda" else 50),
        "memory_bytes": memory_bytes(device),
        "source": "gpu_check",
        "measured_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "kernels": measured,
        "matmul_size": size,
        "conv_shape": {"batch": conv[0], "channels": conv[1], "pixels": conv[2], "kernel": 3},
    }


CONV_NETS = ("conv2", "cifar_resnet_20")  # the nets whose cohorts are compute-bound on a GPU


def rates_from_table(entry: dict, rows: list[dict]) -> None:
    """The planner's `*_flops` as what a cohort reaches: per precision, the best rate in the planner's FLOPs of a
    measured conv-net cell (the table's `planner_flops`), else, for fp32, the kernels' (a peak, not a cohort's),
    and for tf32 and bf16 none (the planner then uses fp32's). `flops_from` says which."""
    entry["flops_from"] = {}
    for precision in ("fp32", "tf32", "bf16"):
        cells = [
            r for r in rows if r.get("status") == "measured" and r["arch"] in CONV_NETS and r["precision"] == precision
        ]
        if cells:
            best = max(cells, key=lambda r: r["planner_flops"])
            entry[f"{precision}_flops"] = best["planner_flops"]
            entry["flops_from"][precision] = f"{LABELS[best['arch']]} x{best['members']} {best['mode']} cohort"
        elif precision == "fp32":
            entry["flops_from"][precision] = "kernel peak (no conv cohort measured)"
        else:
            entry[f"{precision}_flops"] = None
            entry["flops_from"][precision] = "not measured (the planner uses fp32's)"


def write_calibration(path: Path, entry: dict) -> str:
    """Into the planner's table at `path`, with lth_ray.distributed.calibration's `write_entry` (atomic, merged
    into an existing table); returns the writer's name for the report."""
    from lth_ray.distributed.calibration import Calibration, write_entry

    fields = {f.name for f in dataclasses.fields(Calibration)} - {"name"}
    write_entry(path, Calibration(entry["name"], **{k: entry[k] for k in fields}))
    return "lth_ray.distributed.calibration.write_entry"
