"""The report's main tables as data: one DataFrame each, written as CSV (full precision) and LaTeX.

The Markdown summary formats the same numbers for reading; these are for a paper or another tool. Every
table is in the Markdown's units (accuracies, barriers and weights remaining in percent; iterations as
counts) so a CSV cell rounded to the Markdown's digits is the Markdown's cell. The LaTeX tables use those
digits and the CSV's column names with spaces for underscores (booktabs rules: `\\usepackage{booktabs}`);
missing values are "n/a", as in the Markdown.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lth_ray.results import analysis as A

SPREAD = ("mean", "min", "max")
ROUND_METRICS = ("test_acc_at_early_stop", "early_stop_iteration", "final_test_acc")


def rounds_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Every configuration, method and round: % remaining, seeds and mean/min/max over seeds (the Markdown's
    "Rounds" tables, one row per row there, in the same order)."""
    rows = []
    for key, label in A.config_labels(summary).items():
        for _, r in A.matching(summary, key).sort_values(["method", "round"]).iterrows():
            row = {
                "configuration": label,
                "method": r["method"],
                "round": int(r["round"]),
                "percent_remaining": 100 * r["sparsity"],
                "seeds": int(r["seeds"]),
            }
            for m in ROUND_METRICS:
                k = 1 if m == "early_stop_iteration" else 100
                row.update({f"{m}_{s}": k * r[f"{m}_{s}"] for s in SPREAD})
            rows.append(row)
    return pd.DataFrame(rows)


def winning_tickets_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The Markdown's "Winning tickets" table as numbers: percent, rounds, speed-ups (NA where none)."""
    labels = A.config_labels(summary)
    rows = []
    for _, w in A.winning_ticket(summary).iterrows():
        rows.append(
            {
                "configuration": labels[tuple(w[A.CONFIG])],
                "ticket": w["method"],
                "dense_test_acc": 100 * w["dense_test_acc_at_early_stop"],
                "ticket_round": w["ticket_round"],
                "ticket_percent_remaining": 100 * w["ticket_sparsity"],
                "ticket_test_acc": 100 * w["ticket_test_acc_at_early_stop"],
                "speedup": w["speedup"],
                **{f"gap_{b}": 100 * w[f"gap_{b}"] for b in A.PAPER_BASELINES},
                "best_gain": 100 * w["best_gain"],
                "best_percent_remaining": 100 * w["best_sparsity"],
                "max_speedup": w["max_speedup"],
                "fastest_percent_remaining": 100 * w["fastest_sparsity"],
            }
        )
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame["ticket_round"] = frame["ticket_round"].astype("Int64")
    return frame


def methods_table(summary: pd.DataFrame, key: tuple) -> pd.DataFrame:
    """One configuration's "Every method per density" table: round, % remaining, each method's mean test
    accuracy at early stop in percent."""
    wide = A.methods_table(summary, key)
    out = wide.copy()
    out[list(wide.columns[1:])] = 100 * wide[list(wide.columns[1:])]
    return out.reset_index()


def retrain_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One "Retraining modes" table: round, % remaining, each mode's mean final test accuracy in percent."""
    wide = A.retrain_table(rows)
    out = wide.copy()
    out[list(wide.columns[1:])] = 100 * wide[list(wide.columns[1:])]
    return out.reset_index()


def instability_tables(summary: pd.DataFrame, instability: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The Markdown's two "Instability" tables: the sparsest stable and matching round per ticket, and the
    error barrier (mean/min/max over seeds, percent) and mean loss barrier per round."""
    labels = A.config_labels(instability)
    best = A.stable_and_matching(summary, instability)
    stable = pd.DataFrame(
        [
            {
                "configuration": labels.get(tuple(b[A.CONFIG]), b["arch"]),
                "ticket": b["method"],
                "round": b["round"],
                "percent_remaining": 100 * b["sparsity"],
                "error_barrier": 100 * b["error_barrier"],
                "test_acc": 100 * b["test_acc_at_early_stop"],
            }
            for _, b in best.iterrows()
        ]
    )
    if not stable.empty:
        stable["round"] = stable["round"].astype("Int64")
    inst = A.summarise(instability, metrics=["error_barrier", "loss_barrier"])
    rows = [
        {
            "configuration": labels.get(tuple(r[A.CONFIG]), r["arch"]),
            "round": int(r["round"]),
            "percent_remaining": 100 * r["sparsity"],
            "seeds": int(r["seeds"]),
            **{f"error_barrier_{s}": 100 * r[f"error_barrier_{s}"] for s in SPREAD},
            "loss_barrier_mean": r["loss_barrier_mean"],
        }
        for _, r in inst.sort_values(A.CONFIG + ["round"]).iterrows()
    ]
    return {"instability_stable_matching": stable, "instability": pd.DataFrame(rows)}


def report_tables(exp: A.Experiment, slug) -> dict[str, pd.DataFrame]:
    """Every main table of the report by file stem (`slug` turns a configuration label into a file name)."""
    if exp.rounds.empty:
        return {}
    summary = A.summarise(exp.rounds)
    tables = {"winning_tickets": winning_tickets_table(summary), "rounds": rounds_table(summary)}
    if A.has_other_methods(summary):
        for key, label in A.config_labels(summary).items():
            tables[f"methods-{slug(label)}"] = methods_table(summary, key)
    for shared, rows in A.retrain_comparisons(summary):
        tables[f"retrain_modes-{slug(A.retrain_title(shared))}"] = retrain_table(rows)
    if exp.instability is not None and not exp.instability.empty:
        tables.update(instability_tables(summary, exp.instability))
    return tables


def _digits(column: str) -> int:
    """The Markdown's digits for a column: 1 for % remaining, 0 for iterations and counts (parameters, FLOPs),
    3 for loss barriers, else 2."""
    if "percent_remaining" in column:
        return 1
    if "iteration" in column or column in ("nonzero_params", "params", "flops", "dense_flops"):
        return 0
    return 3 if column.startswith("loss_barrier") else 2


def latex(frame: pd.DataFrame) -> str:
    """`frame` as a booktabs tabular with the Markdown's digits, "n/a" for missing values, headers with spaces
    for underscores, everything else escaped for LaTeX."""

    def formatter(column):
        def fmt(v):
            if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
                return "n/a"
            return f"{v:.{_digits(column)}f}" if isinstance(v, (float, np.floating)) else str(v)

        return fmt

    named = frame.rename(columns=lambda c: c.replace("_", " "))  # "percent remaining": readable headers
    return named.to_latex(
        index=False, escape=True, na_rep="n/a", formatters={c.replace("_", " "): formatter(c) for c in frame.columns}
    )


def write_tables(tables: dict[str, pd.DataFrame], out: Path) -> list[Path]:
    """Each table as `<stem>.csv` (full precision, empty cells for missing values) and `<stem>.tex`."""
    written = []
    for stem, frame in tables.items():
        frame.to_csv(out / f"{stem}.csv", index=False)
        (out / f"{stem}.tex").write_text(latex(frame))
        written += [out / f"{stem}.csv", out / f"{stem}.tex"]
    return written
