"""gpu_check's Markdown: the JSON's numbers as tables, each skipped or failed part and cell with its reason."""

from __future__ import annotations

from gpu_check_cohorts import LABELS


def _f(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 1000 else f"{value:.3g}"


def _x(value) -> str:
    return "-" if value is None else f"{value:.3g}x"


def _status(part: dict) -> str | None:
    """A line for a part that was not measured, else None."""
    if part.get("status") == "measured":
        return None
    return f"**{part.get('status', 'missing')}**: {part.get('reason', '')}\n"


def _tflops(value) -> str:
    return "-" if value is None else f"{value / 1e12:.3g}"


def _calibration(c: dict) -> list[str]:
    precisions = ("fp32", "tf32", "bf16")
    source = c.get("flops_from", {p: "kernel peak" for p in precisions})
    lines = [
        "## Calibration (for the planner: `calibration.json`)\n",
        "| | fp32 | tf32 | bf16 |",
        "|---|---|---|---|",
        f"| planner's TFLOP/s | {' | '.join(_tflops(c[f'{p}_flops']) for p in precisions)} |",
        f"| from | {' | '.join(source[p] for p in precisions)} |",
    ]
    for kind in ("matmul", "conv"):
        lines.append(
            f"| {kind} TFLOP/s | {' | '.join(_tflops(c['kernels'][p][f'{kind}_flops']) for p in precisions)} |"
        )
    lines += [
        "",
        f"Step floor (a tiny training step: 2 linear layers of 8 units, batch 8, fused Adam): "
        f"{c['step_floor_s'] * 1e3:.3g} ms; memory {c['memory_bytes'] / 2**30:.1f} GiB; matmul {c['matmul_size']}^3, "
        f"conv 3x3 of {c['conv_shape']['channels']} channels at {c['conv_shape']['pixels']}^2, batch "
        f"{c['conv_shape']['batch']}; written by {c['writer']}.\n",
    ]
    return lines


def _smoke(s: dict) -> list[str]:
    t = s["tolerance"]
    batches = ", ".join(f"{r['label']} {r['batch']}" for r in s["runs"])
    rates = "".join(
        f", {r['label']} at learning rate {r['learning_rate']:g}" for r in s["runs"] if r.get("learning_rate")
    )
    lines = [
        "## Smoke: the device against the CPU\n",
        f"2-member cohorts, 2 rounds (dense, pruned) of {s['runs'][0]['iterations']} iterations (batch: "
        f"{batches}{rates}), fp32, the same seeds and data on both. "
        f"Tolerance: losses within {t['loss_atol']:g} + {t['loss_rtol']:g} x |CPU's|, accuracies within "
        f"{t['accuracy_examples']} examples, masks {t['mask_agreement']:.1%} equal.\n",
        "| net | within tolerance | worst loss difference / tolerance | accuracy difference (examples) | masks equal "
        "| bitwise | deterministic reruns bitwise | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in s["runs"]:
        reruns = r.get("deterministic_reruns_bitwise")
        lines.append(
            f"| {r['label']} | {'yes' if r['ok'] else '**no**'} | {_f(r['loss_difference_over_tolerance'])} | "
            f"{_f(r['accuracy_difference_examples'])} | {r['mask_agreement']:.4%} | "
            f"{'yes' if r['bitwise'] else 'no'} | {'-' if reruns is None else 'yes' if reruns else '**no**'} | "
            f"{r['seconds']:.1f} |"
        )
    return [*lines, ""]


def _grouped(g: dict) -> list[str]:
    lines = [
        f"## Conv-2: one grouped convolution against one per member (forward + backward, batch {g['batch']})\n",
        "| members | precision | grouped ms | per member ms | grouped speed-up | largest logit difference |",
        "|---|---|---|---|---|---|",
    ]
    for r in g["rows"]:
        lines.append(
            f"| {r['members']} | {r['precision']} | {_f(r['grouped_ms'])} | {_f(r['per_member_ms'])} | "
            f"{_f(r['grouped_speedup'])}x | {_f(r['max_abs_logit_difference'], 2)} |"
        )
    return [*lines, ""]


def _table(t: dict) -> list[str]:
    lines = [
        "## Cohorts with the protocol's evaluations\n",
        f"Evaluation every {t['eval_every']} iterations on {t['val_examples']} validation + {t['test_examples']} test "
        f"examples ({t['scale_of_protocol']:g} of the protocol's 100 / 5,000 / 10,000); {t['warmup_blocks']} block(s) "
        f"of warm-up, then whole blocks (training + evaluation) for at least {t['min_seconds_timed']:g} s. "
        "Memory per member (a GPU's only): (peak device memory of the cohort - what was allocated before it, i.e. "
        "the data set) / members.\n",
        "| net | members | mode | precision | trajectory-it/s | ms per cohort step | x one alone | compiled vs eager "
        "| MiB per member |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    skipped: dict[str, dict[tuple, list[int]]] = {}  # reason -> (net, mode, precision) -> members
    for r in t["rows"]:
        if r.get("status") != "measured":
            why = skipped.setdefault(f"{r.get('status')}: {r.get('reason', '')}", {})
            why.setdefault((LABELS[r["arch"]], r["mode"], r["precision"]), []).append(r["members"])
            continue
        lines.append(
            f"| {LABELS[r['arch']]} | {r['members']} | {r['mode']} | {r['precision']} | "
            f"{_rate(r['trajectory_iterations_per_s'])} | {_f(r['ms_per_step'])} | {_x(r.get('ratio_to_one_alone'))} | "
            f"{_x(r.get('speedup_vs_eager'))} | {_f(r.get('mib_per_member'))} |"
        )
    lines.append("")
    if t["mib_per_member_slope"]:
        slopes = ", ".join(f"{k}: {v:.3g}" for k, v in sorted(t["mib_per_member_slope"].items()))
        lines.append(f"Memory per further member (slope of peak MiB against members): {slopes}.\n")
    for reason, groups in skipped.items():
        cells = ", ".join(f"{net} x{'/'.join(map(str, ps))} {mode} {prec}" for (net, mode, prec), ps in groups.items())
        lines.append(f"- {sum(map(len, groups.values()))} cell(s) {reason}: {cells}")
    return [*lines, ""]


def _sweep(s: dict) -> list[str]:
    return [
        "## A tiny sweep on the embedded Ray\n",
        f"{s['trials']} Lenet trials of {s['rounds']} rounds x {s['iterations']} iterations, {s['gpu_per_trial']:g}"
        f"{' logical' if s['logical_gpus'] else ''} GPU each, trained on {', '.join(s['devices'])}: {s['complete']} "
        f"trajectories complete, {s['wall_s']:.0f} s wall. A round took {s['round_s_in_sweep']:.3g} s in the sweep "
        f"and {s['round_s_alone']:.3g} s alone: {s['slowdown_in_sweep']:.2f}x (about 1: the trials ran side by "
        f"side; about {s['trials']}: they took turns).\n",
    ]


SECTIONS = {"calibration": _calibration, "smoke": _smoke, "grouped_conv": _grouped, "table": _table, "sweep": _sweep}
TITLES = {  # a part's heading when it was not measured (as its section's when it was)
    "calibration": "Calibration (for the planner: `calibration.json`)",
    "smoke": "Smoke: the device against the CPU",
    "grouped_conv": "Conv-2: one grouped convolution against one per member",
    "table": "Cohorts with the protocol's evaluations",
    "sweep": "A tiny sweep on the embedded Ray",
}


def markdown(result: dict) -> str:
    lines = [
        f"# gpu_check: {result['device_name']}\n",
        f"`{result['command']}` at {result['started_at']}, torch {result['torch']}, {result['threads']} CPU "
        f"threads; {result['seconds']:.0f} s of a {result['budget_s']:.0f} s budget. "
        f"{'All parts passed.' if result['ok'] else '**A part failed or the smoke comparison did not hold.**'}\n",
    ]
    for name, render in SECTIONS.items():
        part = result["parts"].get(name, {"status": "missing"})
        note = _status(part)
        if note:
            lines += [f"## {TITLES[name]}\n", note]
            continue
        lines += render(part)
    return "\n".join(lines).rstrip() + "\n"
