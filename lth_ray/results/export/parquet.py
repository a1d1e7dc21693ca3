"""Trials in memory -> the export's Parquet tables (histories, rounds, and the linear paths: instability,
successive rounds, and their points).

Each table is typed by `lth_ray.results.schema`. `analysis.load_experiment` builds its frames with these same
functions, so a live experiment and its export agree row for row.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from lth_ray.core.engine.evaluation import diverged
from lth_ray.core.engine.records import METRICS
from lth_ray.results.experiment import TrialResult
from lth_ray.results.export.overlap import seed_jaccard
from lth_ray.results.schema import (
    ANATOMY,
    HISTORIES,
    IDENTITY,
    INSTABILITY,
    INTERPOLATION,
    RECIPE,
    recipe_cell,
    rounds_schema,
)

ANATOMY_NAMES = {name for name, _ in ANATOMY}
COST_TOTALS = ("params", "nonzero_params", "dense_flops", "flops")  # of a record's `cost`


def trajectory_name(trial: TrialResult) -> str:
    """The trajectory's readable name (the sweep names trial folders `<name>_<trial id>`)."""
    return trial.config.key


def trial_identity(t: TrialResult, name: str) -> dict:
    """The identity columns of a trial's rows (schema.IDENTITY without round and sparsity)."""
    c = t.config
    return {
        "experiment": name,
        "trial_id": t.trial_id,
        "trajectory": trajectory_name(t),
        "arch": c.arch,
        "plan_conv": ",".join(map(str, c.plan_conv)),
        "plan_fc": ",".join(map(str, c.plan_fc)),
        "dataset": c.dataset,
        "seed": c.seed,
        "method": c.label,
        "branch": t.branch,
        "pruning": c.pruning,
        "prune_rate_fc": float(c.prune_rate_fc),
        "prune_rate_conv": float(c.prune_rate_conv),
        "rewind_iteration": c.rewind_iteration,
        "activation": c.activation,
        "iterations": c.iterations,
        "eval_every": c.eval_every,
        "batch_size": c.batch_size,
        "learning_rate": float(c.learning_rate),
        # lth_ray 0.1.0 chose no GPU numerics (TF32 convolutions were torch's default): not known
        "precision": c.precision if not _legacy(t) else "unknown",
        "deterministic": c.deterministic,
        **{setting: recipe_cell(getattr(c, setting)) for setting, _ in RECIPE},
    }


def _legacy(t: TrialResult) -> bool:
    return t.rounds is not None and t.rounds.format == 1


def _records(t: TrialResult) -> list[dict]:
    return t.records  # in round order


def _per_trial_columns(trials, name: str, rows_per_trial: list[int]) -> dict[str, pa.Array]:
    """The identity columns that are constant within a trial, repeated over its rows."""
    which = pa.array(np.repeat(np.arange(len(trials)), rows_per_trial), type=pa.int64())
    idents = [trial_identity(t, name) for t in trials]
    return {
        col: pa.array([i[col] for i in idents], type=typ).take(which)
        for col, typ in IDENTITY
        if col not in ("round", "sparsity")
    }


def histories_table(trials: list[TrialResult], name: str) -> pa.Table:
    """One row per (trial, round, evaluation point), typed by `schema.HISTORIES`."""
    per_record = [(rec, len(rec["iterations"])) for t in trials for rec in _records(t)]
    rows = [sum(len(r["iterations"]) for r in _records(t)) for t in trials]
    cols = _per_trial_columns(trials, name, rows)
    counts = [n for _, n in per_record]

    def repeat(key, dtype):
        return np.repeat(np.asarray([rec[key] for rec, _ in per_record], dtype=dtype), counts)

    def concat(key, dtype):
        return (
            np.concatenate([np.asarray(rec[key], dtype=dtype) for rec, _ in per_record])
            if per_record
            else np.zeros(0, dtype)
        )

    cols.update(
        {
            "round": repeat("round", np.int64),
            "sparsity": repeat("sparsity", np.float64),
            "iteration": concat("iterations", np.int64),
        }
    )
    cols.update({m: concat(m, np.float64) for m in METRICS})
    return _table(cols, HISTORIES)


PATHS = ("instability", "successive")  # the linear paths a record may hold, each a dict of the same shape


def _path_rows(trials: list[TrialResult], path: str):
    return [(i, rec) for i, t in enumerate(trials) for rec in t.records if rec.get(path)]


def _instability_rows(trials: list[TrialResult]):
    return _path_rows(trials, "instability")


def instability_table(trials: list[TrialResult], name: str, path: str = "instability") -> pa.Table:
    """One row per (trial, round) that measured the linear path `path` (PATHS: the instability of two copies, or
    the successive rounds' path), typed by `schema.INSTABILITY`."""
    rows = _path_rows(trials, path)
    idents = [trial_identity(t, name) for t in trials]
    cols = {c: [idents[i][c] for i, _ in rows] for c, _ in IDENTITY if c not in ("round", "sparsity")}
    cols.update({"round": [r["round"] for _, r in rows], "sparsity": [r["sparsity"] for _, r in rows]})
    for key in ("error_barrier", "loss_barrier", "val_error_barrier", "val_loss_barrier"):
        cols[key] = [r[path][key] for _, r in rows]
    cols["error_start"] = [r[path]["test_error"][0] for _, r in rows]
    cols["error_end"] = [r[path]["test_error"][-1] for _, r in rows]
    cols["points"] = [len(r[path]["alphas"]) for _, r in rows]
    return _table(cols, INSTABILITY)


def interpolation_table(trials: list[TrialResult], name: str, path: str = "instability") -> pa.Table:
    """One row per (trial, round, alpha) on the measured linear paths `path`, typed by `schema.INTERPOLATION`."""
    rows = _path_rows(trials, path)
    idents = [trial_identity(t, name) for t in trials]
    counts = [len(r[path]["alphas"]) for _, r in rows]
    cols = {
        c: [idents[i][c] for (i, _), n in zip(rows, counts) for _ in range(n)]
        for c, _ in IDENTITY
        if c not in ("round", "sparsity")
    }
    for key in ("round", "sparsity"):
        cols[key] = [r[key] for (_, r), n in zip(rows, counts) for _ in range(n)]
    cols["alpha"] = [a for _, r in rows for a in r[path]["alphas"]]
    for key in ("val_error", "val_loss", "test_error", "test_loss"):
        cols[key] = [v for _, r in rows for v in r[path][key]]
    return _table(cols, INTERPOLATION)


def successive_table(trials: list[TrialResult], name: str) -> pa.Table:
    """`successive.parquet`: the successive-round barriers (Paul et al. 2023), typed by `schema.SUCCESSIVE`."""
    return instability_table(trials, name, "successive")


def successive_interpolation_table(trials: list[TrialResult], name: str) -> pa.Table:
    """`successive_interpolation.parquet`: the points of the successive-round paths."""
    return interpolation_table(trials, name, "successive")


def layer_names(trials: list[TrialResult]) -> list[str]:
    """The union of prunable layers, in order of first appearance."""
    seen: dict[str, None] = {}
    for t in trials:
        for rec in t.records:
            seen.update(dict.fromkeys(rec["layer_sparsity"]))
    return list(seen)


def cost_layer_names(trials: list[TrialResult]) -> list[str]:
    """The union of the costed layers (every Conv2d and Linear), in order of first appearance; none before costs
    were recorded."""
    seen: dict[str, None] = {}
    for t in trials:
        for rec in t.records:
            seen.update(dict.fromkeys((rec.get("cost") or {}).get("layers") or {}))
    return list(seen)


def _cost(rec: dict, key: str):
    return (rec.get("cost") or {}).get(key)


def _layer_cell(quantity: str, layer: str, rec: dict, overlap) -> float | int | None:
    """One `<quantity>.<layer>` cell of a round (None where the record has no such number)."""
    if quantity == "sparsity":
        return rec["layer_sparsity"].get(layer, float("nan"))
    if quantity == "seed_jaccard":
        return overlap[1].get(layer) if overlap else None
    if quantity in ("flops", "nonzero_weights"):
        return ((_cost(rec, "layers") or {}).get(layer) or {}).get(quantity)
    return (rec.get(f"layer_{quantity}") or {}).get(layer)  # mask_distance, sign_flip_share


def rounds_table(trials: list[TrialResult], name: str) -> pa.Table:
    """One row per (trial, round), typed by `schema.rounds_schema`; per-layer numbers as `<quantity>.<layer>`.
    Keys an older record lacks are null; `seed_jaccard` is computed here from the round files' masks."""
    schema = rounds_schema(layer_names(trials), cost_layer_names(trials))
    cols = _per_trial_columns(trials, name, [len(t.records) for t in trials])
    recs = [(t, rec) for t in trials for rec in _records(t)]
    overlaps = seed_jaccard(trials)
    overlap = [overlaps.get((t.trial_id, r["round"])) for t, r in recs]
    # 0.1.0 records lack the last three: their rounds all started at 0 on their own axis and trained T steps
    fixed = {
        "round": lambda t, r: r["round"],
        "sparsity": lambda t, r: r["sparsity"],
        "status": lambda t, r: t.status,
        "complete": lambda t, r: t.complete,
        "diverged": lambda t, r: r.get("diverged", diverged(r)),
        "start_iteration": lambda t, r: r.get("start_iteration", 0),
        "steps": lambda t, r: r.get("steps", t.config.iterations),
    }
    for col in schema.names:
        if col in cols:
            continue
        if col in fixed:
            values = [fixed[col](t, r) for t, r in recs]
        elif col in COST_TOTALS:
            values = [_cost(r, col) for _, r in recs]
        elif col == "seed_jaccard":
            values = [o[0] if o else None for o in overlap]
        elif "." in col:
            quantity, layer = col.split(".", 1)
            values = [_layer_cell(quantity, layer, r, o) for (_, r), o in zip(recs, overlap)]
        elif col in ANATOMY_NAMES:
            values = [r.get(col) for _, r in recs]
        else:
            values = [r[col] for _, r in recs]
        cols[col] = values
    return _table(cols, schema)


def _table(cols: dict, schema: pa.Schema) -> pa.Table:
    arrays = [
        cols[f.name] if isinstance(cols[f.name], pa.Array) else pa.array(cols[f.name], type=f.type) for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)
