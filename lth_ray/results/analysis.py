"""Experiment -> tidy DataFrames, the thesis' early-stop numbers, seed summaries, and paper-style plots.

Reads files only (a Tune experiment folder through `lth_ray.experiment`, or the Parquet export); it never
starts Ray nor imports the trainable. The frames use the export's column names (`lth_ray.schema`), so the
same code analyses a live sweep, a finished one, or a copy of its export. Plot functions draw on an `ax`
they are given and never choose a backend, so they work in notebooks and headless (Agg) alike.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from lth_ray.results.schema import IDENTITY, LAYER_PREFIX
from lth_ray.core.engine.cohort import METRICS
from lth_ray.core.spec.config import ABLATIONS, AT_INIT, TICKETS  # TICKETS: the methods that own a dense round 0

# A configuration is the whole recipe, everything but the seed and the method: its tickets and baselines are
# compared, and two recipes never average together.
CONFIG = ["arch", "plan_conv", "plan_fc", "dataset", "iterations", "eval_every", "batch_size", "learning_rate",
          "pruning", "prune_rate_fc", "prune_rate_conv", "rewind_iteration", "activation", "precision"]
GROUP = CONFIG + ["method", "round"]
BASELINES = ("reinit", "random-prune")  # compared against their ticket's dense round 0
OWN_DENSE_ROUND = TICKETS + tuple(f"{t}-invert" for t in TICKETS)  # labels with a round 0 of their own
FAMILIES = TICKETS + ("random-prune",) + AT_INIT  # the methods an ablation label is built on, in table order
SUMMARY_METRICS = (["early_stop_iteration"] + [f"{m}_at_early_stop" for m in METRICS]
                   + [f"final_{m}" for m in METRICS])
RUNNING = ("RUNNING", "PENDING", "PAUSED")
TRIAL_IDENTITY = [name for name, _ in IDENTITY if name not in ("round", "sparsity")]
TRIAL_COLUMNS = TRIAL_IDENTITY + ["status", "first_round", "last_round", "rounds_done", "complete",
                                  "diverged_round", "error"]


@dataclass
class Experiment:
    """The tidy view of one experiment: histories, rounds, one row per trial, and the ticket masks if read."""
    histories: pd.DataFrame   # one row per (trial, round, evaluation point); columns of schema.HISTORIES
    rounds: pd.DataFrame      # one row per (trial, round); columns of schema.rounds_schema
    trials: pd.DataFrame      # one row per trial: identity, status, expected and done rounds, read error
    masks: dict = field(default_factory=dict)  # {trial_id: its rounds reader} (Tune folder only)
    instability: pd.DataFrame | None = None    # one row per (trial, round) measured; schema.INSTABILITY
    interpolation: pd.DataFrame | None = None  # one row per (trial, round, alpha); schema.INTERPOLATION

    def mask(self, trial_id: str, round_: int) -> dict[str, np.ndarray]:
        """The bool masks {layer: array} of one trial's round (True = weight alive); reads that round only."""
        try:
            masks = self.masks[trial_id].masks(round_)
        except (KeyError, FileNotFoundError, OSError):
            raise KeyError(f"no mask for trial {trial_id} round {round_} (masks come only from a Tune folder)")
        return {name: m.numpy() for name, m in masks.items()}


# ------------------------------------------------------------------ loading

def load_experiment(experiment: str | Path) -> Experiment:
    """Read a Tune experiment folder (or URI) as data (Tune's snapshot as JSON, the round files); partial
    experiments load too.

    The frames are built by the exporter's own table builders, so they equal the Parquet export row for row.
    """
    from lth_ray.results.experiment import load_trials
    from lth_ray.results.export import histories_table, rounds_table, trial_identity
    name = PurePosixPath(str(experiment).rstrip("/")).name
    trials = load_trials(str(experiment), weights=False)
    usable = [t for t in trials if t.records]
    trial_rows = []
    for t in trials:
        trial_rows.append({**trial_identity(t, name), "status": t.status, "first_round": t.config.first_round,
                           "last_round": t.config.rounds, "rounds_done": t.rounds_done, "complete": t.complete,
                           "diverged_round": t.diverged_round, "error": t.error})
    masks = {t.trial_id: t.rounds for t in trials if t.rounds is not None}  # read round by round, on demand
    histories = histories_table(usable, name).to_pandas()
    rounds = rounds_table(usable, name).to_pandas()
    trials_frame = pd.DataFrame(trial_rows, columns=TRIAL_COLUMNS).sort_values("trial_id", ignore_index=True)
    from lth_ray.results.export import instability_table, interpolation_table
    return Experiment(histories, rounds, trials_frame, masks, instability_table(usable, name).to_pandas(),
                      interpolation_table(usable, name).to_pandas())


def tune_analysis(experiment: str | Path):
    """Ray Tune's own `ExperimentAnalysis` of a sweep, for Tune's API (`dataframe()`, `get_best_trial`, ...).

    It unpickles the blobs in Tune's snapshot, which runs their author's code: use it only on experiments you
    trust. `load_experiment` reads the same trials as data and is what the report and notebook use.
    """
    from ray.tune import ExperimentAnalysis

    from lth_ray.results.experiment import filesystem_and_path
    fs, path = filesystem_and_path(str(experiment))
    return ExperimentAnalysis(path, storage_filesystem=fs)


def load_export(export_dir: str | Path) -> Experiment:
    """Read `histories.parquet` and `rounds.parquet` of an export (a folder or a URI such as s3://) into the
    frames `load_experiment` gives.

    The trial list comes from the export's `export.json`; without it, trials that never finished a round
    are invisible and a configuration's last round is taken to be the highest any of its trials reached. A
    cloud export is read through its manifest only (its files live under the version the manifest names),
    so an upload cut short is never read.
    """
    import pyarrow.parquet as pq
    from pyarrow import fs as pafs

    from lth_ray.results.export import export_files
    fs, folder, manifest = export_files(str(export_dir))
    if manifest is None and "://" in str(export_dir):
        raise FileNotFoundError(f"{export_dir} has no export.json: not a complete lth_ray export")
    frames = []
    for name in ("histories.parquet", "rounds.parquet"):
        if fs.get_file_info(f"{folder}/{name}").type != pafs.FileType.File:
            raise FileNotFoundError(f"{folder}/{name} is missing: {export_dir} is not an lth_ray export folder")
        frames.append(_with_recipe(pq.read_table(f"{folder}/{name}", filesystem=fs).to_pandas()))
    histories, rounds = frames
    trials = _trials_from_manifest(manifest, rounds) if manifest else _trials_from_rounds(rounds)
    extra = [pq.read_table(f"{folder}/{n}", filesystem=fs).to_pandas()
             if fs.get_file_info(f"{folder}/{n}").type == pafs.FileType.File else None
             for n in ("instability.parquet", "interpolation.parquet")]
    return Experiment(histories, rounds, trials, {}, *extra)


def _trials_from_manifest(manifest: dict, rounds: pd.DataFrame) -> pd.DataFrame:
    """One row per trial the export knows (also those without a finished round: their settings are NaN)."""
    settings = [c for c in TRIAL_IDENTITY if c not in ("trial_id", "trajectory")]
    known = rounds.drop_duplicates("trial_id").set_index("trial_id")[settings]
    rows = []
    for t in manifest["trials"]:
        ident = known.loc[t["trial_id"]].to_dict() if t["trial_id"] in known.index else {
            "experiment": PurePosixPath(str(manifest.get("experiment", "")).rstrip("/")).name}
        planned = t["rounds_planned"]
        rows.append({**ident, "trial_id": t["trial_id"], "trajectory": t["trajectory"], "method": t["method"],
                     "seed": t["seed"], "status": t["status"], "first_round": min(planned),
                     "last_round": max(planned), "rounds_done": list(t["rounds_done"]),
                     "complete": t["complete"], "diverged_round": t.get("diverged_round"), "error": t["error"]})
    return pd.DataFrame(rows, columns=TRIAL_COLUMNS)


# Columns an export written by lth_ray 0.1.0 lacks, with the value every 0.1.0 run had (or "unknown").
OLD_EXPORT_DEFAULTS = {"plan_conv": "unknown", "plan_fc": "unknown", "batch_size": -1, "learning_rate": np.nan,
                       "precision": "unknown", "deterministic": False, "diverged": False}


def _with_recipe(frame: pd.DataFrame) -> pd.DataFrame:
    """An export from lth_ray 0.1.0 lacks some recipe columns: fill them so grouping still works (every
    trial of such an export shares the filled values, so nothing is merged that the old export kept apart)."""
    for col, value in OLD_EXPORT_DEFAULTS.items():
        if col not in frame.columns and (col != "diverged" or "early_stop_index" in frame.columns):
            frame[col] = value
    if "diverged" in frame.columns:
        frame["diverged"] = frame["diverged"].fillna(False).astype(bool)
    return frame


def _trials_from_rounds(rounds: pd.DataFrame) -> pd.DataFrame:
    if rounds.empty:
        return pd.DataFrame(columns=TRIAL_COLUMNS)
    last = rounds.groupby(CONFIG, dropna=False)["round"].max().rename("last_round").reset_index()
    rows = []
    for key, g in rounds.groupby(TRIAL_IDENTITY, dropna=False, sort=False):
        rows.append({**dict(zip(TRIAL_IDENTITY, key)), "status": g["status"].iloc[-1],
                     "first_round": 0 if g["method"].iloc[0] in OWN_DENSE_ROUND else 1,
                     "rounds_done": sorted(g["round"].tolist()), "complete": bool(g["complete"].all()),
                     "diverged_round": next((int(r) for r in g.loc[g["diverged"], "round"]), None),
                     "error": None})
    return pd.DataFrame(rows).merge(last, on=CONFIG, how="left")[TRIAL_COLUMNS]


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
        rows.append({**g.iloc[0][ident].to_dict(), "early_stop_index": k if found else pd.NA,
                     "early_stop_iteration": int(g["iteration"].iloc[k]) if found else pd.NA,
                     **{f"{m}_at_early_stop": float(g[m].iloc[k]) if found else np.nan for m in METRICS}})
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
        row = {**dense[CONFIG].to_dict(), "method": dense["method"], "dense_" + metric: dense[col],
               "dense_early_stop_iteration": dense[es], "ticket_round": pd.NA, "ticket_sparsity": np.nan,
               "ticket_" + metric: np.nan, "ticket_early_stop_iteration": np.nan, "speedup": np.nan}
        if not wins.empty:
            best = wins.loc[wins["sparsity"].idxmin()]
            row.update({"ticket_round": int(best["round"]), "ticket_sparsity": best["sparsity"],
                        "ticket_" + metric: best[col], "ticket_early_stop_iteration": best[es],
                        "speedup": dense[es] / best[es]})
        for b in BASELINES:
            base = same[same["method"] == b]
            base = base[base["round"] == row["ticket_round"]] if not wins.empty else base.iloc[:0]
            row[f"{b}_{metric}"] = base[col].iloc[0] if not base.empty else np.nan
            row[f"gap_{b}"] = row["ticket_" + metric] - row[f"{b}_{metric}"]
        top = pruned.loc[pruned[col].idxmax()] if not pruned.empty else None
        fast = pruned.loc[pruned[es].idxmin()] if not pruned.empty else None
        row.update({"best_round": pd.NA if top is None else int(top["round"]),
                    "best_sparsity": np.nan if top is None else top["sparsity"],
                    "best_gain": np.nan if top is None else top[col] - dense[col],
                    "fastest_round": pd.NA if fast is None else int(fast["round"]),
                    "fastest_sparsity": np.nan if fast is None else fast["sparsity"],
                    "max_speedup": np.nan if fast is None else dense[es] / fast[es]})
        rows.append(row)
    return pd.DataFrame(rows)


def missing(exp: Experiment) -> pd.DataFrame:
    """Trials that are not complete: which rounds they lack and why (running, errored, unreadable, unfinished)."""
    rows = []
    for _, t in exp.trials.iterrows():
        if t["complete"]:
            continue
        done = set(t["rounds_done"])
        lacking = [r for r in range(int(t["first_round"]), int(t["last_round"]) + 1) if r not in done]
        if not pd.isna(t.get("diverged_round")):
            reason = f"diverged at round {int(t['diverged_round'])} (the trajectory stops there)"
        elif t["status"] == "ERROR":
            reason = "errored"
        elif t["status"] in RUNNING:
            reason = f"running ({t['status'].lower()})"
        elif isinstance(t["error"], str) and t["error"]:
            reason = f"no readable state: {t['error']}"
        elif not done:
            reason = "no round finished"
        else:
            reason = "unfinished"
        rows.append({"trial_id": t["trial_id"], "trajectory": t["trajectory"], "arch": t["arch"],
                     "method": t["method"], "seed": t["seed"], "status": t["status"],
                     "rounds_done": sorted(done), "rounds_missing": lacking, "reason": reason})
    return pd.DataFrame(rows, columns=["trial_id", "trajectory", "arch", "method", "seed", "status",
                                       "rounds_done", "rounds_missing", "reason"])


def config_labels(frame: pd.DataFrame) -> dict[tuple, str]:
    """A short legend label per configuration: the arch, plus the settings that differ between the
    configurations of that arch (e.g. "lenet fc0.2" and "lenet fc0.4")."""
    configs = frame[CONFIG].drop_duplicates()
    short = {"prune_rate_fc": "fc", "prune_rate_conv": "conv", "rewind_iteration": "rewind", "learning_rate": "lr",
             "batch_size": "batch", "iterations": "T", "eval_every": "every"}
    labels = {}
    for _, same in configs.groupby("arch", sort=False):
        varying = [c for c in CONFIG[1:] if same[c].nunique(dropna=False) > 1]
        for _, r in same.iterrows():
            words = [f"{short[c]}{r[c]:g}" if c in short else str(r[c]) for c in varying]
            labels[tuple(r[CONFIG])] = " ".join([str(r["arch"])] + words)
    return labels


def matching(frame: pd.DataFrame, key: tuple) -> pd.DataFrame:
    """The rows of `frame` that belong to configuration `key` (values of CONFIG, in order)."""
    return frame[(frame[CONFIG] == pd.Series(key, index=CONFIG)).all(axis=1)]


def by_configuration(exp: Experiment):
    """(label, rounds, histories) of each configuration in turn: the per-arch figures draw one each."""
    for key, label in config_labels(exp.rounds).items():
        yield label, matching(exp.rounds, key), matching(exp.histories, key)


STABLE_BARRIER = 0.02  # Frankle et al. 2020: a subnetwork is stable when its error barrier is below 2%


def stable_and_matching(summary: pd.DataFrame, instability: pd.DataFrame,
                        metric: str = "test_acc_at_early_stop") -> pd.DataFrame:
    """Per configuration and ticket method: the sparsest round that is both stable (mean error barrier over
    seeds below `STABLE_BARRIER`) and matching (mean `metric` at least the dense round's); NA when none is."""
    barriers = instability.groupby(GROUP, dropna=False)["error_barrier"].mean().rename("error_barrier_mean")
    merged = summary.merge(barriers.reset_index(), on=GROUP, how="left")
    rows = []
    for _, dense in _dense(merged).iterrows():
        mine = matching(merged, tuple(dense[CONFIG]))
        mine = mine[mine["method"] == dense["method"]]
        ok = mine[(mine["error_barrier_mean"] < STABLE_BARRIER) & (mine[f"{metric}_mean"] >= dense[f"{metric}_mean"])]
        best = ok.loc[ok["sparsity"].idxmin()] if not ok.empty else None
        rows.append({**dense[CONFIG].to_dict(), "method": dense["method"],
                     "round": pd.NA if best is None else int(best["round"]),
                     "sparsity": np.nan if best is None else best["sparsity"],
                     "error_barrier": np.nan if best is None else best["error_barrier_mean"],
                     metric: np.nan if best is None else best[f"{metric}_mean"]})
    return pd.DataFrame(rows)


def plot_instability_vs_sparsity(ax, instability: pd.DataFrame, spread: str = "minmax") -> None:
    """Error barrier (percent) against weights remaining: one line per configuration (so one per rewind
    iteration), mean over seeds with min/max (or std) bars; the 2% stability line dashed."""
    summary = summarise(instability, spread=spread, metrics=["error_barrier", "loss_barrier"])
    plot_vs_sparsity(ax, summary, "error_barrier", spread=spread)
    ax.axhline(100 * STABLE_BARRIER, color="grey", linestyle="--", linewidth=1)
    ax.set_ylabel("Instability: test error barrier (%)")


def plot_interpolation(ax, interpolation: pd.DataFrame, rounds=None, metric: str = "test_error") -> None:
    """`metric` along the linear path between the two copies, per selected round (mean over seeds)."""
    import matplotlib
    rounds = select_rounds(interpolation) if rounds is None else list(rounds)
    cmap = matplotlib.colormaps["viridis"]
    for j, r in enumerate(rounds):
        g = interpolation[interpolation["round"] == r]
        if g.empty:
            continue
        s = g.groupby("alpha")[metric].mean() * 100
        ax.plot(s.index, s.to_numpy(), color=cmap(j / max(1, len(rounds) - 1) * 0.9),
                label=f"{_fmt_percent(g['sparsity'].mean() * 100)}% (round {r})")
    ax.set_xlabel("Interpolation alpha")
    ax.set_ylabel(f"{metric.replace('_', ' ').capitalize()} (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", title="weights remaining")


def ticket_method(rounds: pd.DataFrame) -> str | None:
    """The ticket method present in these rounds (imp, else one-shot), or None when only baselines ran."""
    return next((m for m in TICKETS if m in set(rounds["method"])), None)


# ------------------------------------------------------------------ plots (each draws on a given ax)

def ladder_ticks(percents, max_ticks: int = 9) -> list[float]:
    """Ticks for a percent-remaining axis: every k-th level, k chosen so that ticks halve (about 2^-p), as in
    the paper (Lenet: 100, 51.3, 26.3, 13.5, 7.0, 3.6, 1.9); every level when that leaves fewer than three."""
    values = np.unique(np.asarray([p for p in percents if p > 0], dtype=float))[::-1]
    if values.size < 2:
        return [float(v) for v in values] or [100.0]
    per_level = math.log2(values[0] / values[-1]) / (values.size - 1)  # mean halvings per level
    ticks = values[:: max(1, round(1 / per_level))]
    if ticks.size < 3:
        ticks = values[:: max(1, math.ceil(values.size / max_ticks))]
    return [float(v) for v in ticks]


def _fmt_percent(v: float) -> str:
    return f"{v:.0f}" if v >= 99.95 else f"{v:.1f}" if v >= 0.95 else f"{v:.2g}"


def sparsity_axis(ax, percents, reference=None, label: str = "Percent of weights remaining") -> None:
    """The thesis' sparsity axis: log base 2, inverted so the dense net is on the left; ladder ticks taken
    from `reference` (one line's levels; two archs' ladders would interleave) or from `percents`."""
    from matplotlib.ticker import FixedLocator, NullLocator
    ticks = ladder_ticks(percents if reference is None else reference)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([_fmt_percent(t) for t in ticks])
    lo, hi = min(percents), max(percents)
    ax.set_xlim(hi * 2 ** 0.15, lo / 2 ** 0.15)  # reversed limits: the axis is inverted
    ax.set_xlabel(label)


def _is_fraction(metric: str) -> bool:
    return "_acc" in metric or "error" in metric


def _pretty(metric: str) -> str:
    base = metric.replace("_at_early_stop", "").replace("final_", "")
    words = {"test_acc": "Test accuracy", "val_acc": "Validation accuracy", "test_loss": "Test loss",
             "val_loss": "Validation loss", "train_loss": "Training loss",
             "early_stop_iteration": "Early-stop iteration"}.get(base, base)
    where = " at early stop" if "_at_early_stop" in metric else " (final)" if metric.startswith("final_") else ""
    return words + where + (" (%)" if _is_fraction(metric) else "")


def plot_vs_sparsity(ax, summary: pd.DataFrame, metric: str = "test_acc_at_early_stop",
                     methods=("imp", "one-shot", "reinit", "random-prune"), spread: str = "minmax") -> None:
    """`metric` (mean over seeds, error bars min/max or std) against percent of weights remaining; one colour
    per configuration, tickets solid, baselines dotted and starting from their ticket's dense round."""
    import matplotlib
    scale = 100.0 if _is_fraction(metric) else 1.0
    labels = config_labels(summary)
    colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    markers = {"imp": "o", "one-shot": "D", "reinit": "x", "random-prune": "^"}
    percents, reference = [], []
    for i, (key, label) in enumerate(labels.items()):
        mine = matching(summary, key)
        dense = _dense(mine)
        for method in [m for m in methods if m in set(mine["method"])]:
            rows = mine[mine["method"] == method].sort_values("round")
            if method in BASELINES and not dense.empty and 0 not in set(rows["round"]):
                rows = pd.concat([dense.iloc[:1], rows])
            x = rows["sparsity"].to_numpy() * 100
            y = rows[f"{metric}_mean"].to_numpy() * scale
            if spread == "std":
                err = rows[f"{metric}_std"].fillna(0).to_numpy() * scale
            else:
                err = np.vstack([y - rows[f"{metric}_min"].to_numpy() * scale,
                                 rows[f"{metric}_max"].to_numpy() * scale - y])
            ax.errorbar(x, y, yerr=err, color=colours[i % len(colours)], marker=markers.get(method, "o"),
                        markerfacecolor="none" if method == "random-prune" else None,
                        markersize=4, capsize=3, linewidth=1.5, linestyle="-" if method in TICKETS else ":",
                        label=label if method in TICKETS else f"{label} ({method})")
            percents += list(x)
            if method in TICKETS and len(x) > len(reference):
                reference = list(x)
    if percents:
        sparsity_axis(ax, percents, reference or None)
    ax.set_ylabel(_pretty(metric))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")


# ------------------------------------------------------------------ every method of one configuration

ABLATION_STYLES = {"": "-", "shuffle": "--", "reinit": ":", "invert": "-."}


def split_label(label: str) -> tuple[str, str]:
    """(method, ablation) of a result label: `snip-shuffle` -> (snip, shuffle); the ticket's re-init ablation,
    `reinit`, -> (reinit, "")."""
    for a in ABLATIONS:
        if label.endswith(f"-{a}") and label[:-len(a) - 1] in FAMILIES:
            return label[:-len(a) - 1], a
    return label, ""


def has_other_methods(summary: pd.DataFrame) -> bool:
    """Whether these results hold more than tickets and their classic baselines (pruning at init, ablations)."""
    return not set(summary["method"]) <= set(TICKETS + BASELINES)


def method_order(labels) -> list[str]:
    """Tickets, random pruning, the pruning-at-init methods, then their ablations in ABLATIONS' order."""
    def rank(label):
        method, ablation = ("imp", "reinit") if label == "reinit" else split_label(label)
        return (FAMILIES.index(method) if method in FAMILIES else len(FAMILIES),
                (("",) + ABLATIONS).index(ablation), label)
    return sorted(set(labels), key=rank)


def methods_table(summary: pd.DataFrame, key: tuple, metric: str = "test_acc_at_early_stop") -> pd.DataFrame:
    """One configuration's `metric` (mean over seeds) per round (rows, with the percent remaining) and method
    (columns, `method_order`): every method at the same density, side by side."""
    mine = matching(summary, key)
    wide = mine.pivot_table(index="round", columns="method", values=f"{metric}_mean", dropna=False)
    wide = wide[method_order(wide.columns)]
    wide.insert(0, "percent_remaining", mine.groupby("round")["sparsity"].mean() * 100)
    return wide


def plot_methods_vs_sparsity(ax, summary: pd.DataFrame, key: tuple, metric: str = "test_acc_at_early_stop") -> None:
    """Every method of one configuration against weights remaining: one colour per method (the ticket's
    re-init in the ticket's colour), the line style by ablation (solid: the method; dashed: shuffled within
    layers; dotted: fresh init; dash-dot: inverted scores); mean over seeds, min/max as a band."""
    import matplotlib
    scale = 100.0 if _is_fraction(metric) else 1.0
    mine = matching(summary, key)
    labels = method_order(mine["method"])
    colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    ticket = next((t for t in TICKETS if t in labels), "imp")
    styles = {label: (ticket, "reinit") if label == "reinit" else split_label(label) for label in labels}
    families = list(dict.fromkeys(family for family, _ in styles.values()))
    percents = []
    for label in labels:
        family, ablation = styles[label]
        rows = mine[mine["method"] == label].sort_values("round")
        x = rows["sparsity"].to_numpy() * 100
        y = rows[f"{metric}_mean"].to_numpy() * scale
        colour = colours[families.index(family) % len(colours)]
        ax.plot(x, y, color=colour, linestyle=ABLATION_STYLES[ablation], marker=None if ablation else "o",
                markersize=3, linewidth=1.4, label=label)
        ax.fill_between(x, rows[f"{metric}_min"].to_numpy() * scale, rows[f"{metric}_max"].to_numpy() * scale,
                        color=colour, alpha=0.08, linewidth=0)
        percents += list(x)
    if percents:
        sparsity_axis(ax, percents)
    ax.set_ylabel(_pretty(metric))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="x-small", ncol=2)


def plot_accuracy_vs_sparsity(ax, summary, metric="test_acc_at_early_stop", **kw) -> None:
    """The paper's Figure 4 (right column): test accuracy at early stop against weights remaining."""
    plot_vs_sparsity(ax, summary, metric, **kw)


def plot_early_stop_vs_sparsity(ax, summary, **kw) -> None:
    """The paper's Figure 4 (left column): early-stop iteration against weights remaining."""
    plot_vs_sparsity(ax, summary, "early_stop_iteration", **kw)


def select_rounds(rounds: pd.DataFrame) -> list[int]:
    """The rounds nearest the ladder ticks (dense, ~50%, ~25%, ...): what the paper's Figure 3 shows."""
    by_round = rounds.groupby("round")["sparsity"].mean() * 100
    ticks = ladder_ticks(by_round.to_numpy())
    return sorted({int((by_round - t).abs().idxmin()) for t in ticks})


def plot_history(ax, histories: pd.DataFrame, metric: str = "test_acc", rounds=None, method: str = "imp") -> None:
    """`metric` against training iteration for selected rounds of one configuration's `method`
    (mean over seeds, min/max band); `histories` should hold a single configuration."""
    import matplotlib
    h = histories[histories["method"] == method]
    rounds = (select_rounds(h) if not h.empty else []) if rounds is None else list(rounds)
    scale = 100.0 if _is_fraction(metric) else 1.0
    cmap = matplotlib.colormaps["viridis"]
    for j, r in enumerate(rounds):
        g = h[h["round"] == r]
        if g.empty:
            continue
        s = g.groupby("iteration")[metric].agg(["mean", "min", "max"]) * scale
        colour = cmap(j / max(1, len(rounds) - 1) * 0.9)
        ax.plot(s.index, s["mean"], color=colour, label=f"{_fmt_percent(g['sparsity'].mean() * 100)}% (round {r})")
        ax.fill_between(s.index, s["min"], s["max"], color=colour, alpha=0.2, linewidth=0)
    ax.set_xlabel("Training iteration")
    ax.set_ylabel(_pretty(metric))
    ax.set_title(method, fontsize="medium")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", title="weights remaining")


def plot_layer_sparsity(ax, rounds: pd.DataFrame, method: str = "imp") -> None:
    """Percent of each layer's weights remaining per round (and the whole net dashed), mean over seeds."""
    from matplotlib.ticker import NullLocator
    r = rounds[rounds["method"] == method]
    layers = [c for c in r.columns if c.startswith(LAYER_PREFIX) and r[c].notna().any()]
    per_round = r.groupby("round")[layers + ["sparsity"]].mean() * 100
    for c, marker in zip(layers, "osv^D<>ph*"):
        ax.plot(per_round.index, per_round[c], marker=marker, markersize=4, label=c[len(LAYER_PREFIX):])
    ax.plot(per_round.index, per_round["sparsity"], "k--", label="all prunable")
    ax.set_yscale("log", base=2)
    lowest = per_round[per_round > 0].min().min()  # a layer pruned away has no place on a log axis
    ticks = [100 / 2 ** p for p in range(int(math.log2(100 / lowest)) + 1)]  # halvings within the data
    if len(ticks) < 3:
        ticks = ladder_ticks(per_round["sparsity"])  # a short ladder: the whole net's levels
    ax.set_yticks(ticks, [f"{t:.3g}" for t in ticks])
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_ylim(lowest / 2 ** 0.15, 100 * 2 ** 0.15)
    ax.set_xlabel("Pruning round")
    ax.set_ylabel("Percent of weights remaining")
    ax.set_xticks(list(per_round.index))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")


def mask_image(mask: np.ndarray) -> np.ndarray:
    """A 2-D view of a mask: fc (out, in) as is; conv (out, in, kh, kw) as (in x kh) rows by (out x kw)
    columns, so each filter's kernel is a kh x kw tile."""
    m = np.asarray(mask, dtype=bool)
    if m.ndim == 4:
        out, inp, kh, kw = m.shape
        return m.transpose(1, 2, 0, 3).reshape(inp * kh, out * kw)
    return m.reshape(1, -1) if m.ndim == 1 else m.reshape(m.shape[0], -1)


def plot_mask(ax, mask: np.ndarray, name: str = "") -> None:
    """One layer's mask as an image: alive weights dark, pruned weights light (grey where many weights
    share a pixel)."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch
    m = np.asarray(mask, dtype=bool)
    image = mask_image(m)
    alive, pruned = "#1f3b73", "#f2f2f2"
    big = max(image.shape) > 600  # more weights than pixels: blend colours, so the shade shows the density
    ax.imshow(image, cmap=ListedColormap([pruned, alive]), vmin=0, vmax=1, aspect="auto",
              interpolation="antialiased" if big else "nearest", interpolation_stage="rgba")
    conv = m.ndim == 4
    ax.set_xlabel("output channel x kernel column" if conv else "input")
    ax.set_ylabel("input channel x kernel row" if conv else "output unit")
    ax.set_title(f"{name} {tuple(m.shape)}: {100 * m.mean():.1f}% remaining", fontsize="medium")
    ax.legend(handles=[Patch(color=alive, label="alive"), Patch(facecolor=pruned, edgecolor="grey",
                                                                 label="pruned")],
              loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize="small", frameon=False)
