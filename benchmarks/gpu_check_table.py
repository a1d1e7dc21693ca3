"""gpu_check's cohort table: which cells run, in what order, and which are skipped and why.

The grid is fixed (every net, member count, mode and precision of the issue's table); every cell appears in the
output, measured or with the reason it was not. Cells run in order of use: eager fp32 first (the paper's
arithmetic), then tf32 and bf16, then the compiled step (`COMPILED_FIRST` leading); a cell whose predicted time no
longer fits the time budget is skipped, saying so. The prediction is the wall time of the nearest measured cell of
the same net and mode, scaled up linearly in members (a cohort's step grows at most linearly), plus a compile time
for the first compiled cell of a shape.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from gpu_check_cohorts import (
    ARCHS,
    LABELS,
    PROTOCOL_EVAL_EVERY,
    PROTOCOL_TEST,
    PROTOCOL_VAL,
    SHAPES,
    TRAIN_SIZE,
    Cell,
    Timing,
    all_cells,
    has_compile_step,
    member_slopes,
    ratios_to_alone,
    recipe,
    synthetic_split,
    time_cell,
)

from lth_ray.distributed.net_shapes import shape_of

QUICK_CPU_MEMBERS = {"lenet": 8, "conv2": 1, "cifar_resnet_20": 1}  # a 2-core CPU's share of the grid
QUICK_CPU_COMPILED = Cell("lenet", 1, "compiled", "fp32")  # compiling costs ~20 s a shape on a small CPU
QUICK_CPU_BF16 = Cell("lenet", 8, "eager", "bf16")
COMPILE_GUESS_S = {"cuda": 40.0, "cpu": 20.0}  # before a compiled cell was measured


def timing_for(device: torch.device, quick: bool) -> Timing:
    """GPU: the protocol's evaluation sizes, 2 warm-up blocks and >= 2 s timed; --quick: a tenth of the
    protocol's sizes (a CPU: a twentieth, 1 warm-up block)."""
    if device.type == "cuda":
        return Timing(scale=0.1, warmup=2, min_seconds=0.5, max_blocks=20) if quick else Timing(1.0, 2, 2.0, 10)
    return Timing(scale=0.05, warmup=1, min_seconds=0.3, max_blocks=3) if quick else Timing(1.0, 1, 1.0, 3)


# Compiled cells first where the review expects compiling to pay (each costs a compilation, so few fit): Lenet's
# host-bound step, Conv-2 and ResNet-20 at tf32 and bf16; then fp32 for comparison.
COMPILED_FIRST = [
    Cell("lenet", 8, "compiled", "fp32"),
    Cell("lenet", 1, "compiled", "fp32"),
    Cell("conv2", 8, "compiled", "tf32"),
    Cell("cifar_resnet_20", 4, "compiled", "bf16"),
    Cell("lenet", 32, "compiled", "fp32"),
    Cell("conv2", 8, "compiled", "bf16"),
    Cell("cifar_resnet_20", 4, "compiled", "tf32"),
    Cell("conv2", 8, "compiled", "fp32"),
    Cell("cifar_resnet_20", 4, "compiled", "fp32"),
]


def order(cells: list[Cell]) -> list[Cell]:
    """Eager before compiled; eager fp32 before tf32 before bf16, small cohorts before large (nets in grid order);
    compiled: COMPILED_FIRST, then the others in the eager order."""
    prec = {"fp32": 0, "tf32": 1, "bf16": 2}
    arch = {a: i for i, a in enumerate(ARCHS)}

    def key(c: Cell) -> tuple:
        first = COMPILED_FIRST.index(c) if c in COMPILED_FIRST else len(COMPILED_FIRST)
        return (c.mode == "compiled", first, prec[c.precision], arch[c.arch], c.members)

    return sorted(cells, key=key)


def not_run(cell: Cell, device: torch.device, quick: bool) -> str | None:
    """Why a cell is left out whatever the time budget (None: it runs if it fits)."""
    if cell.mode == "compiled" and not has_compile_step():
        return "not available: this lth_ray's TrajectoryConfig has no compile_step"
    if device.type != "cpu":
        return None
    if cell.precision == "tf32":
        return "same as fp32 on a CPU (TF32 is a GPU format)"
    if not quick:
        return None
    if cell.mode == "compiled" and cell != QUICK_CPU_COMPILED:
        return "--quick on a CPU: compiling costs ~20 s a shape, one small cell is compiled"
    if cell.precision == "bf16" and cell != QUICK_CPU_BF16:
        return "--quick on a CPU: bf16 is slow without bf16 units, one Lenet cell is run"
    if cell.members > QUICK_CPU_MEMBERS[cell.arch]:
        return f"--quick on a CPU: {LABELS[cell.arch]} up to {QUICK_CPU_MEMBERS[cell.arch]} member(s)"
    return None


def predicted_seconds(cell: Cell, rows: dict[str, dict], device: torch.device) -> float:
    """The wall time to expect: the nearest measured cell of the same net and mode (any precision) scaled up in
    members; a compiled cell with no compiled neighbour yet: the nearest eager one plus a compilation (the longest
    compiled cell so far, else a guess)."""
    measured = [r for r in rows.values() if r.get("status") == "measured"]
    same = [r for r in measured if r["arch"] == cell.arch and r["mode"] == cell.mode]
    extra = 0.0
    if cell.mode == "compiled" and not same:
        compiled = [r["wall_s"] for r in measured if r["mode"] == "compiled"]
        extra = max(compiled) if compiled else COMPILE_GUESS_S[device.type]
        same = [r for r in measured if r["arch"] == cell.arch and r["mode"] == "eager"]
    if not same:
        return extra
    near = min(same, key=lambda r: (r["members"] > cell.members, abs(r["members"] - cell.members)))
    return extra + near["wall_s"] * max(1.0, cell.members / near["members"])


def planner_rates(rows: list[dict], timing: Timing, device: torch.device) -> None:
    """Each measured row's rate in the planner's FLOPs (`distributed.planner.configuration`: a step is 3 forward
    passes of the batch, an evaluation one forward pass over validation and test), per second."""
    for r in rows:
        if r.get("status") != "measured":
            continue
        cfg = recipe(r["arch"], device)
        macs = shape_of(cfg, SHAPES[ARCHS[r["arch"]]]).macs
        held_out = (PROTOCOL_VAL + PROTOCOL_TEST) / PROTOCOL_EVAL_EVERY  # per iteration, at any scale
        r["planner_flops"] = 2 * macs * (3 * cfg.batch_size + held_out) * r["trajectory_iterations_per_s"]


def table(device: torch.device, quick: bool, deadline: float, say: Callable[[str], None]) -> dict:
    """Every cell of the grid: measured within the time budget (monotonic `deadline`), or why not."""
    timing = timing_for(device, quick)
    val, test = round(PROTOCOL_VAL * timing.scale), round(PROTOCOL_TEST * timing.scale)
    splits: dict = {}
    rows: dict[str, dict] = {}
    for cell in order(all_cells()):
        row = {"arch": cell.arch, "members": cell.members, "mode": cell.mode, "precision": cell.precision}
        rows[cell.key] = row
        reason = not_run(cell, device, quick)
        left = deadline - time.monotonic()
        expected = predicted_seconds(cell, rows, device)
        if reason is None and expected > left:
            reason = f"time budget: about {expected:.0f} s expected, {max(left, 0):.0f} s left"
        if reason is not None:
            row.update(status="skipped", reason=reason)
            if reason.startswith("time budget"):
                say(f"table {LABELS[cell.arch]} x{cell.members} {cell.mode} {cell.precision}: skipped, {reason}")
            continue
        dataset = ARCHS[cell.arch]
        if dataset not in splits:
            train = TRAIN_SIZE[dataset] if not (quick and device.type == "cpu") else 2000
            splits[dataset] = synthetic_split(dataset, device, train, val, test)
        try:
            row.update(time_cell(cell, splits[dataset], timing, deadline))
        except Exception as err:  # noqa: BLE001 (a cell that fails is reported, the others still run)
            row.update(status="failed", reason=f"{type(err).__name__}: {str(err).splitlines()[0][:200]}")
        if row["status"] == "measured":
            say(
                f"table {LABELS[cell.arch]} x{cell.members} {cell.mode} {cell.precision}: "
                f"{row['trajectory_iterations_per_s']:.0f} trajectory-it/s ({row['wall_s']:.1f} s)"
            )
        else:
            say(f"table {cell.key}: {row['status']}: {row.get('reason', '')}")
    ordered = [rows[c.key] for c in all_cells()]
    ratios_to_alone(ordered)
    planner_rates(ordered, timing, device)
    eager = {(r["arch"], r["members"], r["precision"]): r for r in ordered if r["mode"] == "eager"}
    for r in ordered:
        e = eager.get((r["arch"], r["members"], r["precision"]))
        if r["mode"] == "compiled" and r.get("status") == "measured" and e and e.get("status") == "measured":
            r["speedup_vs_eager"] = r["trajectory_iterations_per_s"] / e["trajectory_iterations_per_s"]
    return {
        "eval_every": timing.eval_every,
        "val_examples": val,
        "test_examples": test,
        "scale_of_protocol": timing.scale,
        "warmup_blocks": timing.warmup,
        "min_seconds_timed": timing.min_seconds,
        "compile_step_available": has_compile_step(),
        "rows": ordered,
        "mib_per_member_slope": member_slopes(ordered),
    }
