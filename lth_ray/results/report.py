"""`lth-ray report <experiment> [--out DIR]`: the paper's figures plus a Markdown summary.

Each figure is written as PNG (for the Markdown) and as PDF and SVG beside it (vector, for a paper); the summary's
main tables also go to CSV and LaTeX (`lth_ray.results.tables`). Works on a finished or partial Tune experiment
folder (read as data: the snapshot as JSON) and on an export folder holding `rounds.parquet`; what is missing is
listed rather than failing the report.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pandas as pd

from lth_ray.results import analysis as A
from lth_ray.results.report_anatomy import anatomy_figures, anatomy_markdown, anatomy_tables
from lth_ray.results.tables import report_tables, write_tables

VECTOR_FORMATS = ("pdf", "svg")  # written beside each PNG


def load(source: str) -> A.Experiment:
    """An export (a folder with rounds.parquet, or a URI with an export.json) or a Tune experiment folder / URI."""
    if "://" not in source:
        return A.load_export(source) if (Path(source) / "rounds.parquet").is_file() else A.load_experiment(source)
    from lth_ray.results.export import export_files

    _, _, manifest = export_files(source)
    return A.load_export(source) if manifest is not None else A.load_experiment(source)


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", label).strip("-")


def write_figures(exp: A.Experiment, out: Path, x: str = "density") -> list[Path]:
    """Every figure of the report, one PNG each plus a PDF and an SVG of it beside; returns the PNGs' paths.
    Plain `Figure`s, no pyplot: no display needed and the caller's backend (a notebook's) is left alone. `x`:
    the accuracy plots' axis, "density" (percent of weights remaining) or "flops" (where recorded)."""
    from matplotlib.figure import Figure

    written = []

    def subplots(*grid, **kw):
        fig = Figure(**kw)
        return fig, fig.subplots(*grid, squeeze=False) if grid else fig.subplots()

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(out / name, dpi=120)
        for fmt in VECTOR_FORMATS:
            fig.savefig((out / name).with_suffix(f".{fmt}"))
        written.append(out / name)

    if exp.rounds.empty:
        return written
    summary = A.summarise(exp.rounds)
    x = x if A.has_flops(summary) else "density"
    for name, draw, axis in (
        ("accuracy_vs_sparsity.png", A.plot_accuracy_vs_sparsity, x),
        ("early_stop_vs_sparsity.png", A.plot_early_stop_vs_sparsity, "density"),
    ):
        fig, ax = subplots(figsize=(7, 4.5))
        draw(ax, summary, x=axis)
        save(fig, name)
    if exp.instability is not None and not exp.instability.empty:
        fig, ax = subplots(figsize=(7, 4.5))
        A.plot_instability_vs_sparsity(ax, exp.instability)
        save(fig, "instability_vs_sparsity.png")
        for key, label in A.config_labels(exp.instability).items():
            fig, axes = subplots(1, 2, figsize=(12, 4.5))
            curves = A.matching(exp.interpolation, key)
            A.plot_interpolation(axes[0, 0], curves, metric="test_error")
            A.plot_interpolation(axes[0, 1], curves, metric="test_loss")
            axes[0, 1].set_ylabel("Test loss")
            fig.suptitle(f"{label}: linear path between two copies")
            save(fig, f"interpolation-{_slug(label)}.png")
    if A.has_other_methods(summary):
        for key, label in A.config_labels(summary).items():
            fig, ax = subplots(figsize=(9, 5.5))
            A.plot_methods_vs_sparsity(ax, summary, key, x=x)
            ax.set_title(f"{label}: every method at the ticket's densities")
            save(fig, f"methods-{_slug(label)}.png")
    for shared, rows in A.retrain_comparisons(summary):
        fig, ax = subplots(figsize=(7, 4.5))
        A.plot_retrain_modes(ax, rows)
        title = A.retrain_title(shared)
        ax.set_title(f"{title}: retraining modes")
        save(fig, f"retrain_modes-{_slug(title)}.png")
    for label, rounds, histories in A.by_configuration(exp):
        ticket = A.ticket_method(rounds)
        slug = _slug(label)
        if ticket is None:
            continue
        fig, axes = subplots(1, 2, figsize=(12, 4.5))
        A.plot_history(axes[0, 0], histories, "test_acc", method=ticket)
        A.plot_history(axes[0, 1], histories, "val_loss", method=ticket)
        fig.suptitle(label)
        save(fig, f"history-{slug}.png")
        fig, ax = subplots(figsize=(7, 4.5))
        A.plot_layer_sparsity(ax, rounds, method=ticket)
        ax.set_title(f"{label}: {ticket}")
        save(fig, f"layer_sparsity-{slug}.png")
        trials = rounds[rounds["method"] == ticket].sort_values(["seed", "round"])
        trials = trials[trials["trial_id"].isin(exp.masks)]
        if not trials.empty:
            last = trials[trials["trial_id"] == trials["trial_id"].iloc[0]].iloc[-1]
            masks = exp.mask(last["trial_id"], int(last["round"]))
            cols = min(3, len(masks))
            rows = -(-len(masks) // cols)
            fig, axes = subplots(rows, cols, figsize=(5 * cols, 3.8 * rows))
            for ax, (layer, mask) in zip(axes.ravel(), masks.items()):
                A.plot_mask(ax, mask, layer)
            for ax in axes.ravel()[len(masks) :]:
                ax.axis("off")
            fig.suptitle(f"{label}: masks of {ticket} seed {last['seed']}, round {last['round']}")
            save(fig, f"masks-{slug}.png")
    anatomy_figures(exp, subplots, save, _slug, x)
    return written


# ------------------------------------------------------------------ Markdown


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _pct(v) -> str:
    return "n/a" if v is None or pd.isna(v) else f"{100 * v:.2f}"


def _spread(row, metric: str, percent: bool) -> str:
    k = 100 if percent else 1
    fmt = "{:.2f}" if percent else "{:.0f}"
    mean, lo, hi = (row[f"{metric}_{s}"] * k for s in ("mean", "min", "max"))
    return f"{fmt.format(mean)} [{fmt.format(lo)}, {fmt.format(hi)}]"


def summary_markdown(exp: A.Experiment, source: str, figures: list[Path]) -> str:
    trials = exp.trials
    name = trials["experiment"].iloc[0] if not trials.empty else Path(source).name
    parts = [
        f"# Experiment `{name}`",
        "",
        f"Source: `{source}`. Trials: {len(trials)}, complete: {int(trials['complete'].sum()) if len(trials) else 0}. "
        "Accuracies in percent; spreads are [min, max] over seeds; sparsity = percent of weights remaining.",
        "",
    ]
    parts += [
        "## Winning tickets",
        "",
        "Winning ticket: the sparsest pruned round whose mean test accuracy at early stop is at least the "
        "dense round's; speed-up = dense early-stop iteration / ticket early-stop iteration; gaps in "
        "points (ticket minus baseline at the same round). The last two columns are the paper's "
        '"up to" numbers over all pruned rounds.',
        "",
    ]
    if exp.rounds.empty:
        parts += ["No round has finished yet.", ""]
        summary = None
    else:
        summary = A.summarise(exp.rounds)
        labels = A.config_labels(summary)
        rows = []
        for _, w in A.winning_ticket(summary).iterrows():
            label = labels[tuple(w[A.CONFIG])]
            found = not pd.isna(w["ticket_round"])
            level = f"round {int(w['ticket_round'])} ({100 * w['ticket_sparsity']:.1f}%)" if found else "none"
            pruned = not pd.isna(w["best_round"])
            rows.append(
                [
                    label,
                    w["method"],
                    _pct(w["dense_test_acc_at_early_stop"]),
                    level,
                    _pct(w["ticket_test_acc_at_early_stop"]),
                    f"{w['speedup']:.2f}x" if found else "n/a",
                    *(
                        f"{100 * w[f'gap_{b}']:+.2f}" if not pd.isna(w[f"gap_{b}"]) else "n/a"
                        for b in A.PAPER_BASELINES
                    ),
                    f"{100 * w['best_gain']:+.2f} at {100 * w['best_sparsity']:.1f}%" if pruned else "n/a",
                    f"{w['max_speedup']:.2f}x at {100 * w['fastest_sparsity']:.1f}%" if pruned else "n/a",
                ]
            )
        parts += [
            _table(
                [
                    "configuration",
                    "ticket",
                    "dense test acc",
                    "winning ticket",
                    "ticket test acc",
                    "early-stop speed-up",
                    "gap to reinit",
                    "gap to random-prune",
                    "best accuracy gain",
                    "best speed-up",
                ],
                rows,
            ),
            "",
        ]
    parts += ["## Rounds", ""]
    if summary is not None:
        for key, label in labels.items():
            mine = A.matching(summary, key)
            rows = [
                [
                    r["method"],
                    int(r["round"]),
                    f"{100 * r['sparsity']:.1f}",
                    int(r["seeds"]),
                    _spread(r, "test_acc_at_early_stop", True),
                    _spread(r, "early_stop_iteration", False),
                    _spread(r, "final_test_acc", True),
                ]
                for _, r in mine.sort_values(["method", "round"]).iterrows()
            ]
            parts += [
                f"### {label}",
                "",
                _table(
                    [
                        "method",
                        "round",
                        "% remaining",
                        "seeds",
                        "test acc at early stop",
                        "early-stop iteration",
                        "final test acc",
                    ],
                    rows,
                ),
                "",
            ]
    if summary is not None and A.has_other_methods(summary):
        parts += [
            "## Every method per density",
            "",
            "Test accuracy at early stop (mean over seeds, percent) of every method at each round's density "
            "(every member keeps exactly the ticket's count of weights). `<m>-shuffle`: the mask shuffled "
            "within each layer; `<m>-reinit` (the ticket's: `reinit`): the mask on a fresh init; "
            "`<m>-invert`: the lowest scores kept (Frankle et al. 2021's sanity checks).",
            "",
        ]
        for key, label in labels.items():
            wide = A.methods_table(summary, key)
            rows = [
                [int(r), f"{w['percent_remaining']:.1f}", *(_pct(w[m]) for m in wide.columns[1:])]
                for r, w in wide.iterrows()
            ]
            parts += [f"### {label}", "", _table(["round", "% remaining", *wide.columns[1:]], rows), ""]
    comparisons = A.retrain_comparisons(summary) if summary is not None else []
    if comparisons:
        parts += [
            "## Retraining modes",
            "",
            "Final test accuracy (at the end of each round, as Renda et al. 2020 report; mean over seeds, "
            "percent) of the ticket at each round's density, per retraining mode: weight-rewind (weights and "
            "schedule back to k), lr-rewind (the trained weights, the schedule of the last t iterations), "
            "fine-tune (the trained weights, t iterations at the final rate). Round 0 is the same dense round in "
            "every mode.",
            "",
        ]
        for shared, rows in comparisons:
            wide = A.retrain_table(rows)
            body = [
                [int(r), f"{w['percent_remaining']:.1f}", *(_pct(w[m]) for m in wide.columns[1:])]
                for r, w in wide.iterrows()
            ]
            parts += [
                f"### {A.retrain_title(shared)}",
                "",
                _table(["round", "% remaining", *wide.columns[1:]], body),
                "",
            ]
    if exp.instability is not None and not exp.instability.empty and summary is not None:
        parts += [
            "## Instability",
            "",
            f"Error barrier on the test set along the linear path between two copies of the round's "
            f"subnetwork trained with different data orders (Frankle et al. 2020), mean over seeds. Stable "
            f"and matching: the sparsest round whose barrier is below {100 * A.STABLE_BARRIER:g}% and whose "
            "test accuracy at early stop is at least the dense round's.",
            "",
        ]
        best = A.stable_and_matching(summary, exp.instability)
        ilabels = A.config_labels(exp.instability)
        rows = [
            [
                ilabels.get(tuple(b[A.CONFIG]), b["arch"]),
                b["method"],
                "none" if pd.isna(b["round"]) else f"round {int(b['round'])} ({100 * b['sparsity']:.1f}%)",
                _pct(b["error_barrier"]),
                _pct(b["test_acc_at_early_stop"]),
            ]
            for _, b in best.iterrows()
        ]
        parts += [
            _table(["configuration", "ticket", "sparsest stable and matching", "error barrier", "test acc"], rows),
            "",
        ]
        inst = A.summarise(exp.instability, metrics=["error_barrier", "loss_barrier"])
        rows = [
            [
                ilabels.get(tuple(r[A.CONFIG]), r["arch"]),
                int(r["round"]),
                f"{100 * r['sparsity']:.1f}",
                int(r["seeds"]),
                _spread(r, "error_barrier", True),
                f"{r['loss_barrier_mean']:.3f}",
            ]
            for _, r in inst.sort_values(A.CONFIG + ["round"]).iterrows()
        ]
        parts += [_table(["configuration", "round", "% remaining", "seeds", "error barrier", "loss barrier"], rows), ""]
    parts += anatomy_markdown(exp, _slug)
    parts += ["## Diverged rounds", ""]
    bad = exp.rounds[exp.rounds["diverged"]] if "diverged" in exp.rounds.columns else exp.rounds.iloc[:0]
    if bad.empty:
        parts += ["None: every loss stayed finite.", ""]
    else:
        rows = [
            [
                r["trajectory"],
                r["trial_id"],
                r["method"],
                int(r["seed"]),
                int(r["round"]),
                "none" if pd.isna(r["early_stop_iteration"]) else int(r["early_stop_iteration"]),
            ]
            for _, r in bad.sort_values(["trajectory", "round"]).iterrows()
        ]
        parts += [
            "A loss went NaN or infinite in these rounds; early stop uses only finite evaluations, and "
            "each trajectory stopped after its diverged round.",
            "",
            _table(["trajectory", "trial", "method", "seed", "round", "early-stop iteration"], rows),
            "",
        ]
    parts += ["## Missing", ""]
    gone = A.missing(exp)
    if gone.empty:
        parts += ["Nothing: every trial finished every round.", ""]
    else:
        rows = [
            [
                r["trajectory"],
                r["trial_id"],
                r["status"],
                ", ".join(map(str, r["rounds_done"])) or "-",
                ", ".join(map(str, r["rounds_missing"])) or "-",
                r["reason"],
            ]
            for _, r in gone.iterrows()
        ]
        parts += [_table(["trajectory", "trial", "status", "rounds done", "rounds missing", "reason"], rows), ""]
    if figures:
        parts += ["## Figures", ""] + [f"![{p.stem}]({p.name})" for p in figures] + [""]
    return "\n".join(parts)


def report(source: str, out: Path, x: str = "density") -> list[Path]:
    """Load, then write the figures (PNG, PDF, SVG), summary.md and its tables (CSV, TeX) into `out`;
    returns the files written. `x`: the accuracy plots' axis, "density" or "flops"."""
    exp = load(source)
    out.mkdir(parents=True, exist_ok=True)
    figures = write_figures(exp, out, x)
    (out / "summary.md").write_text(summary_markdown(exp, source, figures))
    vectors = [p.with_suffix(f".{fmt}") for p in figures for fmt in VECTOR_FORMATS]
    tables = {**report_tables(exp, _slug), **anatomy_tables(exp, _slug)}
    return figures + vectors + [out / "summary.md"] + write_tables(tables, out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="lth-ray report",
        description="Figures (PNG, PDF, SVG), summary.md and its tables (CSV, LaTeX) of an lth_ray experiment.",
    )
    p.add_argument("experiment", help="a Tune experiment folder (or URI), or its export folder")
    p.add_argument("--out", help="output folder (default: <experiment>/report)")
    p.add_argument(
        "--x",
        choices=A.X_AXES,
        default="density",
        metavar="AXIS",
        help="the accuracy plots' x axis: density (the percent of weights remaining) or flops (the multiply-"
        "accumulates of one example's forward pass through the masked net; an experiment that recorded none is "
        "drawn against density)",
    )
    a = p.parse_args(argv)
    from pyarrow import ArrowException

    from lth_ray.core.spec.config import ConfigError
    from lth_ray.results.experiment import ExperimentError

    if a.out is None and "://" in a.experiment:
        print(f"error: {a.experiment} is remote; pass --out with a local folder", file=sys.stderr)
        return 2
    out = Path(a.out).expanduser().resolve() if a.out else Path(a.experiment).expanduser().resolve() / "report"
    try:
        written = report(a.experiment, out, a.x)
    except (ExperimentError, ConfigError, OSError, ArrowException) as err:
        line = (str(err).splitlines() or [type(err).__name__])[0]
        print(
            f"error: {line if a.experiment in line or str(out) in line else f'{a.experiment}: {line}'}", file=sys.stderr
        )
        return 2
    print(f"wrote {len(written)} files to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
