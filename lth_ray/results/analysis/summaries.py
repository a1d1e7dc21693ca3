"""The numbers behind the plots: the thesis' early stop, means over seeds, the winning ticket, stability.

They take the frames of `frames.Experiment` (or the thesis' arrays) and return frames; nothing here draws.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lth_ray.core.engine.records import METRICS
from lth_ray.core.spec.config import ABLATIONS, AT_INIT, TICKETS
from lth_ray.results.analysis.frames import CONFIG, GROUP, matching
from lth_ray.results.schema import ANATOMY, IDENTITY

# The paper's two baselines: the winning-ticket table gives each one's gap to the ticket at the ticket's round.
PAPER_BASELINES = ("reinit", "random-prune")
FAMILIES = TICKETS + ("random-prune",) + AT_INIT  # the methods an ablation label is built on, in table order
SUMMARY_METRICS = (
    ["early_stop_iteration"]
    + [f"{m}_at_early_stop" for m in METRICS]
    + [f"final_{m}" for m in METRICS]
    + [name for name, _ in ANATOMY]  # what a ticket is made of: NaN in an older experiment's rows
)


# ------------------------------------------------------------------ the thesis' early-stop numbers


def early_stop_indices(val_loss: np.ndarray, axis: int = -1) -> np.ndarray:
    """First argmin of the validation loss along the evaluation axis (ties: the earliest point wins).

    NaN and inf are skipped: a diverged evaluation, or a point a rewound round did not train (NaN padding in
    the thesis arrays), is never the early-stop point; -1 where no point is finite."""
    v = np.asarray(val_loss, dtype=np.float64)
    finite = np.isfinite(v)
    idx = np.argmin(np.where(finite, v, np.inf), axis=axis)
    return np.where(finite.any(axis=axis), idx, -1)


def values_at(values: np.ndarray, indices: np.ndarray, axis: int = -1) -> np.ndarray:
    """`values` taken at per-row indices along `axis` (the thesis' `np.take_along_axis`); NaN at index -1."""
    indices = np.asarray(indices)
    idx = np.expand_dims(np.maximum(indices, 0), axis)
    taken = np.take_along_axis(np.asarray(values, dtype=np.float64), idx, axis=axis).squeeze(axis)
    return np.where(indices < 0, np.nan, taken)


def early_stop(histories: pd.DataFrame) -> pd.DataFrame:
    """Per (trial, round): early-stop index (into the round's evaluations), its absolute iteration, and the
    metrics there; a round without a finite validation loss has none (NA)."""
    keys = ["trial_id", "round"]
    ident = [c for c, _ in IDENTITY if c in histories.columns]
    rows = []
    for _, g in histories.sort_values(keys + ["iteration"]).groupby(keys, sort=False):
        k = int(early_stop_indices(g["val_loss"].to_numpy()))
        found = k >= 0
        rows.append(
            {
                **g.iloc[0][ident].to_dict(),
                "early_stop_index": k if found else pd.NA,
                "early_stop_iteration": int(g["iteration"].iloc[k]) if found else pd.NA,
                **{f"{m}_at_early_stop": float(g[m].iloc[k]) if found else np.nan for m in METRICS},
            }
        )
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ summaries over seeds


def summarise(rounds: pd.DataFrame, spread: str = "minmax", metrics=SUMMARY_METRICS) -> pd.DataFrame:
    """Mean and spread over seeds per (configuration, method, round): `<m>_mean` plus `<m>_min`/`<m>_max`
    (the thesis' error bars) or `<m>_std`; `sparsity` is the seeds' mean, `seeds` their count."""
    if spread not in ("minmax", "std"):
        raise ValueError(f"spread={spread!r} is unknown; use 'minmax' or 'std'")
    metrics = [m for m in metrics if m in rounds.columns]
    stats = ["mean", "min", "max"] if spread == "minmax" else ["mean", "std"]
    grouped = rounds.groupby(GROUP, dropna=False, sort=True)
    out = grouped[metrics].agg(stats)
    out.columns = [f"{m}_{s}" for m, s in out.columns]
    out.insert(0, "seeds", grouped["seed"].nunique())
    out.insert(0, "sparsity", grouped["sparsity"].mean())
    return out.reset_index()


def _dense(summary: pd.DataFrame) -> pd.DataFrame:
    return summary[summary["method"].isin(TICKETS) & (summary["round"] == 0)]


def winning_ticket(summary: pd.DataFrame, metric: str = "test_acc_at_early_stop") -> pd.DataFrame:
    """Per configuration and ticket method: the sparsest pruned round whose mean `metric` is >= the dense
    round's (ticket_round; NA when none is), its early-stop speed-up (dense / ticket early-stop iteration)
    and its gap to each baseline at that round (ticket minus baseline). Also the paper's "up to" numbers:
    the round with the best mean `metric` (best_round, best_gain over dense) and the fastest-stopping
    round (fastest_round, max_speedup)."""
    col, es = f"{metric}_mean", "early_stop_iteration_mean"
    rows = []
    for _, dense in _dense(summary).iterrows():
        same = matching(summary, tuple(dense[CONFIG]))
        mine = same[same["method"] == dense["method"]]
        pruned = mine[mine["round"] > 0]
        wins = pruned[pruned[col] >= dense[col]]
        row = {
            **dense[CONFIG].to_dict(),
            "method": dense["method"],
            "dense_" + metric: dense[col],
            "dense_early_stop_iteration": dense[es],
            "ticket_round": pd.NA,
            "ticket_sparsity": np.nan,
            "ticket_" + metric: np.nan,
            "ticket_early_stop_iteration": np.nan,
            "speedup": np.nan,
        }
        if not wins.empty:
            best = wins.loc[wins["sparsity"].idxmin()]
            row.update(
                {
                    "ticket_round": int(best["round"]),
                    "ticket_sparsity": best["sparsity"],
                    "ticket_" + metric: best[col],
                    "ticket_early_stop_iteration": best[es],
                    "speedup": dense[es] / best[es],
                }
            )
        for b in PAPER_BASELINES:
            base = same[same["method"] == b]
            base = base[base["round"] == row["ticket_round"]] if not wins.empty else base.iloc[:0]
            row[f"{b}_{metric}"] = base[col].iloc[0] if not base.empty else np.nan
            row[f"gap_{b}"] = row["ticket_" + metric] - row[f"{b}_{metric}"]
        top = pruned.loc[pruned[col].idxmax()] if not pruned.empty else None
        fast = pruned.loc[pruned[es].idxmin()] if not pruned.empty else None
        row.update(
            {
                "best_round": pd.NA if top is None else int(top["round"]),
                "best_sparsity": np.nan if top is None else top["sparsity"],
                "best_gain": np.nan if top is None else top[col] - dense[col],
                "fastest_round": pd.NA if fast is None else int(fast["round"]),
                "fastest_sparsity": np.nan if fast is None else fast["sparsity"],
                "max_speedup": np.nan if fast is None else dense[es] / fast[es],
            }
        )
        rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ stability (Frankle et al. 2020)

STABLE_BARRIER = 0.02  # Frankle et al. 2020: a subnetwork is stable when its error barrier is below 2%


def stable_and_matching(
    summary: pd.DataFrame, instability: pd.DataFrame, metric: str = "test_acc_at_early_stop"
) -> pd.DataFrame:
    """Per configuration and ticket method: the sparsest round that is both stable (mean error barrier over
    seeds below `STABLE_BARRIER`) and matching (mean `metric` at least the dense round's); NA when none is.
    A ticket that measured no instability in any round has no row (it was not asked, so it is no "none")."""
    barriers = instability.groupby(GROUP, dropna=False)["error_barrier"].mean().rename("error_barrier_mean")
    merged = summary.merge(barriers.reset_index(), on=GROUP, how="left")
    rows = []
    for _, dense in _dense(merged).iterrows():
        mine = matching(merged, tuple(dense[CONFIG]))
        mine = mine[mine["method"] == dense["method"]]
        if mine["error_barrier_mean"].isna().all():
            continue
        ok = mine[(mine["error_barrier_mean"] < STABLE_BARRIER) & (mine[f"{metric}_mean"] >= dense[f"{metric}_mean"])]
        best = ok.loc[ok["sparsity"].idxmin()] if not ok.empty else None
        rows.append(
            {
                **dense[CONFIG].to_dict(),
                "method": dense["method"],
                "round": pd.NA if best is None else int(best["round"]),
                "sparsity": np.nan if best is None else best["sparsity"],
                "error_barrier": np.nan if best is None else best["error_barrier_mean"],
                metric: np.nan if best is None else best[f"{metric}_mean"],
            }
        )
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ methods by label


def ticket_method(rounds: pd.DataFrame) -> str | None:
    """The ticket method present in these rounds (imp, else one-shot), or None when only baselines ran."""
    return next((m for m in TICKETS if m in set(rounds["method"])), None)


def split_label(label: str) -> tuple[str, str]:
    """(method, ablation) of a result label: `snip-shuffle` -> (snip, shuffle); the ticket's re-init ablation,
    `reinit`, -> (reinit, "")."""
    for a in ABLATIONS:
        if label.endswith(f"-{a}") and label[: -len(a) - 1] in FAMILIES:
            return label[: -len(a) - 1], a
    return label, ""


def has_other_methods(summary: pd.DataFrame) -> bool:
    """Whether these results hold more than tickets and their classic baselines (pruning at init, ablations)."""
    return not set(summary["method"]) <= set(TICKETS + PAPER_BASELINES)


def method_order(labels) -> list[str]:
    """Tickets, random pruning, the pruning-at-init methods, then their ablations in ABLATIONS' order."""

    def rank(label):
        method, ablation = ("imp", "reinit") if label == "reinit" else split_label(label)
        return (
            FAMILIES.index(method) if method in FAMILIES else len(FAMILIES),
            (("",) + ABLATIONS).index(ablation),
            label,
        )

    return sorted(set(labels), key=rank)


def methods_table(summary: pd.DataFrame, key: tuple, metric: str = "test_acc_at_early_stop") -> pd.DataFrame:
    """One configuration's `metric` (mean over seeds) per round (rows, with the percent remaining) and method
    (columns, `method_order`): every method at the same density, side by side."""
    mine = matching(summary, key)
    wide = mine.pivot_table(index="round", columns="method", values=f"{metric}_mean", dropna=False)
    wide = wide[method_order(wide.columns)]
    wide.insert(0, "percent_remaining", mine.groupby("round")["sparsity"].mean() * 100)
    return wide


# ------------------------------------------------------------------ retraining modes (Renda et al. 2020)

RETRAIN = ["retrain", "retrain_iterations"]  # the settings a comparison of retraining modes varies


def retrain_label(retrain: str, length) -> str:
    """A mode as the report names it: `lr-rewind`, or `lr-rewind t=1000` with a length of its own."""
    return f"{retrain} t={int(length)}" if length else str(retrain)


def retrain_comparisons(summary: pd.DataFrame) -> list[tuple[dict, pd.DataFrame]]:
    """The tickets' rows of every group of configurations that differ only in their retraining mode or length,
    where the group holds more than one: (the group's shared settings, its rows with a `mode` column)."""
    tickets = summary[summary["method"].isin(TICKETS)].copy()
    if tickets.empty or not set(RETRAIN) <= set(tickets.columns):
        return []
    tickets["mode"] = [retrain_label(a, b) for a, b in zip(tickets["retrain"], tickets["retrain_iterations"])]
    shared = [c for c in CONFIG if c not in RETRAIN] + ["method"]
    out = []
    for _, rows in tickets.groupby(shared, dropna=False, sort=False):
        if rows["mode"].nunique() > 1:
            out.append((rows.iloc[0][shared].to_dict(), rows))
    return out


def retrain_title(shared: dict) -> str:
    """A comparison of retraining modes named by its net, data set, ticket and rewind point."""
    return f"{shared['arch']} {shared['dataset']} {shared['method']} k={int(shared['rewind_iteration'])}"


def retrain_table(rows: pd.DataFrame, metric: str = "final_test_acc") -> pd.DataFrame:
    """One comparison's `metric` (mean over seeds) per round (rows, with the percent remaining) and mode
    (columns, in RETRAIN_MODES' order): Renda et al.'s accuracy against density, as a table."""
    from lth_ray.core.spec.training import RETRAIN_MODES

    wide = rows.pivot_table(index="round", columns="mode", values=f"{metric}_mean", dropna=False)
    order = sorted(wide.columns, key=lambda m: (RETRAIN_MODES.index(m.split(" ")[0]), m))
    wide = wide[order]
    wide.insert(0, "percent_remaining", rows.groupby("round")["sparsity"].mean() * 100)
    return wide
