"""Tune experiment folder -> Parquet histories + the thesis' files, written once and atomically.

    python -m lth_ray.export <experiment dir or URI> [--out DIR] [--force]

Reading (`export_experiment`) is kept apart from writing (`write_export`, which takes trials already in
memory), so the writers can be benchmarked and tested without Tune. Everything is built in a temporary folder
next to the target and renamed into place: a crash never leaves half an export, and without `--force` an
existing export is never touched. Trials that errored or stopped early export the rounds they finished; what
is missing is printed and recorded in `export.json` and in each group's `-lth_ray.json` sidecar.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from pyarrow import fs as pafs

from lth_ray import __version__
from lth_ray.results import thesis
from lth_ray.core.spec.config import ConfigError
from lth_ray.results.experiment import ExperimentError, TrialResult, filesystem_and_path, load_trials, open_analysis
from lth_ray.results.schema import HISTORIES, IDENTITY, INSTABILITY, INTERPOLATION, LAYER_PREFIX, rounds_schema
from lth_ray.core.engine.cohort import METRICS, diverged

MANIFEST = "export.json"
EXPORT_FORMAT = 1
THESIS_METRICS = ("train_loss", "val_loss", "val_acc", "test_acc")


class ExportError(ValueError):
    """The export cannot be written where asked; the message names the folder."""


# ------------------------------------------------------------------ reading the experiment (Tune side)

def export_experiment(experiment: str, out: str | None = None, force: bool = False,
                      report: Callable[[str], None] | None = None) -> str:
    """Export `experiment` (folder or URI) to `out` (default `<experiment>/export`); returns `out`."""
    report = report or (lambda line: print(line, file=sys.stderr))
    out = out or f"{str(experiment).rstrip('/')}/export"
    out_fs, out_path = filesystem_and_path(out)
    local = isinstance(out_fs, pafs.LocalFileSystem)
    _check_target(out_fs, out_path, force)  # before the (slow) read: fail fast, touch nothing
    analysis = open_analysis(experiment)
    trials = load_trials(experiment, analysis)
    last_results = {t.trial_id: dict(t.last_result or {}) for t in analysis.trials}
    name = PurePosixPath(str(experiment).rstrip("/")).name
    if local:
        parent = os.path.dirname(out_path)
        os.makedirs(parent, exist_ok=True)
        tmp = os.path.join(parent, f".{os.path.basename(out_path)}.tmp-{uuid.uuid4().hex}")
        os.mkdir(tmp)  # (not mkdtemp: its 0700 would stay on the export)
        try:
            manifest = write_export(trials, tmp, str(experiment), name, last_results)
            _swap_into_place(tmp, out_path, force)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    else:  # cloud storage: build locally, then copy (not atomic there; the manifest is copied last)
        with tempfile.TemporaryDirectory(prefix="lth_ray-export-") as tmp:
            manifest = write_export(trials, tmp, str(experiment), name, last_results)
            _upload(tmp, out_fs, out_path, force)
    for line in manifest["missing"]:
        report(f"warning: {line}")
    return out_path if local else out


def _check_target(fs: pafs.FileSystem, path: str, force: bool) -> None:
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        return
    if info.type != pafs.FileType.Directory:
        raise ExportError(f"{path} exists and is not a folder; choose another --out")
    entries = fs.get_file_info(pafs.FileSelector(path))
    if not entries:
        return
    if not force:
        raise ExportError(f"export folder {path} already exists; pass --force to replace it")
    if fs.get_file_info(f"{path}/{MANIFEST}").type != pafs.FileType.File:
        raise ExportError(f"{path} is not an lth_ray export (no {MANIFEST}); refusing to replace it")


def _swap_into_place(tmp: str, out: str, force: bool) -> None:
    if not os.path.exists(out):
        os.rename(tmp, out)
        return
    _check_target(pafs.LocalFileSystem(), out, force)  # still ours to replace?
    old = os.path.join(os.path.dirname(out), f".{os.path.basename(out)}.old-{uuid.uuid4().hex}")
    os.rename(out, old)
    os.rename(tmp, out)
    shutil.rmtree(old)


def _upload(tmp: str, fs: pafs.FileSystem, path: str, force: bool) -> None:
    """Publish a built export on cloud storage so that it becomes visible all at once.

    Objects cannot be renamed as a group, so the files go under a fresh version prefix first, then ONE
    object, `export.json`, names that version: readers trust only the manifest (`export_files`), so an upload
    cut short is never read as an export, and the previous export stays readable until the new manifest
    replaces it. Older versions are deleted last.
    """
    _check_target(fs, path, force)
    version = f"v-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    fs.create_dir(f"{path}/{version}", recursive=True)
    for name in sorted(os.listdir(tmp)):
        if name != MANIFEST:
            pafs.copy_files(os.path.join(tmp, name), f"{path}/{version}/{name}",
                            source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
    manifest = json.loads(open(os.path.join(tmp, MANIFEST)).read())
    manifest["version"] = version
    staged = f"{path}/{MANIFEST}.tmp-{uuid.uuid4().hex}"
    with fs.open_output_stream(staged) as f:
        f.write(json.dumps(manifest, indent=2).encode())
    fs.move(staged, f"{path}/{MANIFEST}")  # the switch: one object
    for info in fs.get_file_info(pafs.FileSelector(path)):
        name = PurePosixPath(info.path).name
        if name in (MANIFEST, version):
            continue
        if info.type == pafs.FileType.Directory:
            fs.delete_dir(info.path)
        else:
            fs.delete_file(info.path)


def export_files(export: str) -> tuple[pafs.FileSystem, str, dict | None]:
    """(filesystem, folder holding the export's files, manifest or None) of a local or cloud export: a cloud
    export's files live under the version its manifest names."""
    fs, path = filesystem_and_path(export)
    try:
        with fs.open_input_stream(f"{path}/{MANIFEST}") as f:
            manifest = json.loads(f.read())
    except (FileNotFoundError, OSError, ValueError):
        return fs, path, None
    version = manifest.get("version")
    return fs, (f"{path}/{version}" if version else path), manifest


# ------------------------------------------------------------------ writing (no Tune from here on)

def write_export(trials: list[TrialResult], folder: str, experiment: str, name: str | None = None,
                 last_results: dict[str, dict] | None = None, now: float | None = None) -> dict:
    """Write the Parquet files, the thesis groups and `export.json` into the existing empty `folder`."""
    now = time.time() if now is None else now
    name = name or PurePosixPath(experiment.rstrip("/")).name
    last_results = last_results or {}
    trials = sorted(trials, key=lambda t: t.trial_id)  # the grid order (Tune numbers trials in order)
    usable = [t for t in trials if t.records]
    missing = [line for line in map(_missing_line, trials) if line]
    _write_new(os.path.join(folder, "histories.parquet"),
               lambda f: pq.write_table(histories_table(usable, name), f))
    _write_new(os.path.join(folder, "rounds.parquet"), lambda f: pq.write_table(rounds_table(usable, name), f))
    extra = []
    if any("instability" in rec for t in usable for rec in t.records):
        _write_new(os.path.join(folder, "instability.parquet"),
                   lambda f: pq.write_table(instability_table(usable, name), f))
        _write_new(os.path.join(folder, "interpolation.parquet"),
                   lambda f: pq.write_table(interpolation_table(usable, name), f))
        extra = ["instability.parquet", "interpolation.parquet"]
    groups = write_thesis_groups(trials, folder, experiment, last_results, now, extra)
    for g in groups:  # what the trial lines above do not already say
        missing += [f"thesis files {g['prefix']}: {line}" for line in g.pop("unexported")]
    manifest = {"format": EXPORT_FORMAT, "lth_ray_version": __version__, "experiment": experiment,
                "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now)),
                "files": ["histories.parquet", "rounds.parquet"] + extra + [f for g in groups for f in g["files"]],
                "trials": [_trial_summary(t) for t in trials],
                "groups": [{k: g[k] for k in ("prefix", "files", "notes", "missing")} for g in groups],
                "missing": missing}
    _write_json(os.path.join(folder, MANIFEST), manifest)
    return manifest


def trajectory_name(trial: TrialResult) -> str:
    """The trajectory's readable name (the sweep names trial folders `<name>_<trial id>`)."""
    return trial.config.key


def _planned_rounds(t: TrialResult) -> list[int]:
    return list(range(t.config.first_round, t.config.rounds + 1))


def _missing_line(t: TrialResult) -> str | None:
    """What of this trial is not in the export, in one line (None when it finished every round)."""
    key = f"trial {t.trial_id} ({trajectory_name(t)}, status {t.status})"
    files = f"; {'; '.join(t.problems)} (resuming the sweep recomputes it)" if t.problems else ""
    if not t.records:
        why = t.error or "no round finished"
        return f"{key}: nothing exported ({why}){files}"
    left = [r for r in _planned_rounds(t) if r not in set(t.rounds_done)]
    if left and t.diverged_round is not None:
        return (f"{key}: round {t.diverged_round} diverged (a loss went NaN or infinite), so rounds {left} were "
                "not run: a trajectory stops at a diverged round")
    if left:
        return f"{key}: rounds {left} missing (exported rounds {t.rounds_done}){files}"
    return None


def _trial_summary(t: TrialResult) -> dict:
    return {"trial_id": t.trial_id, "trajectory": trajectory_name(t), "method": t.config.label,
            "seed": t.config.seed, "status": t.status, "complete": t.complete,
            "rounds_planned": _planned_rounds(t), "rounds_done": t.rounds_done,
            "diverged_round": t.diverged_round, "error": t.error}


# ------------------------------------------------------------------ files: new names only, JSON

def _write_new(path: str, write: Callable) -> None:
    """Create `path` (never overwrite: O_EXCL) and fill it with `write(binary file)`."""
    with open(path, "xb") as f:
        write(f)


def _write_json(path: str, obj, indent: int | None = 2) -> None:
    _write_new(path, lambda f: f.write(json.dumps(obj, indent=indent).encode()))


# ------------------------------------------------------------------ Parquet

def trial_identity(t: TrialResult, name: str) -> dict:
    """The identity columns of a trial's rows (schema.IDENTITY without round and sparsity)."""
    c = t.config
    return {"experiment": name, "trial_id": t.trial_id, "trajectory": trajectory_name(t), "arch": c.arch,
            "plan_conv": ",".join(map(str, c.plan_conv)), "plan_fc": ",".join(map(str, c.plan_fc)),
            "dataset": c.dataset, "seed": c.seed, "method": c.label, "pruning": c.pruning,
            "prune_rate_fc": float(c.prune_rate_fc), "prune_rate_conv": float(c.prune_rate_conv),
            "rewind_iteration": c.rewind_iteration, "activation": c.activation, "iterations": c.iterations,
            "eval_every": c.eval_every, "batch_size": c.batch_size, "learning_rate": float(c.learning_rate),
            # lth_ray 0.1.0 chose no GPU numerics (TF32 convolutions were torch's default): not known
            "precision": c.precision if not _legacy(t) else "unknown", "deterministic": c.deterministic}


def _legacy(t: TrialResult) -> bool:
    return t.rounds is not None and t.rounds.format == 1


def _records(t: TrialResult) -> list[dict]:
    return t.records  # in round order


def _per_trial_columns(trials, name: str, rows_per_trial: list[int]) -> dict[str, pa.Array]:
    """The identity columns that are constant within a trial, repeated over its rows."""
    which = pa.array(np.repeat(np.arange(len(trials)), rows_per_trial), type=pa.int64())
    idents = [trial_identity(t, name) for t in trials]
    return {col: pa.array([i[col] for i in idents], type=typ).take(which)
            for col, typ in IDENTITY if col not in ("round", "sparsity")}


def histories_table(trials: list[TrialResult], name: str) -> pa.Table:
    """One row per (trial, round, evaluation point), typed by `schema.HISTORIES`."""
    per_record = [(rec, len(rec["iterations"])) for t in trials for rec in _records(t)]
    rows = [sum(len(r["iterations"]) for r in _records(t)) for t in trials]
    cols = _per_trial_columns(trials, name, rows)
    counts = [n for _, n in per_record]

    def repeat(key, dtype):
        return np.repeat(np.asarray([rec[key] for rec, _ in per_record], dtype=dtype), counts)

    def concat(key, dtype):
        return np.concatenate([np.asarray(rec[key], dtype=dtype) for rec, _ in per_record]) \
            if per_record else np.zeros(0, dtype)

    cols.update({"round": repeat("round", np.int64), "sparsity": repeat("sparsity", np.float64),
                 "iteration": concat("iterations", np.int64)})
    cols.update({m: concat(m, np.float64) for m in METRICS})
    return _table(cols, HISTORIES)


def _instability_rows(trials: list[TrialResult]):
    return [(i, rec) for i, t in enumerate(trials) for rec in t.records if "instability" in rec]


def instability_table(trials: list[TrialResult], name: str) -> pa.Table:
    """One row per (trial, round) that measured instability, typed by `schema.INSTABILITY`."""
    rows = _instability_rows(trials)
    idents = [trial_identity(t, name) for t in trials]
    cols = {c: [idents[i][c] for i, _ in rows] for c, _ in IDENTITY if c not in ("round", "sparsity")}
    cols.update({"round": [r["round"] for _, r in rows], "sparsity": [r["sparsity"] for _, r in rows]})
    for key in ("error_barrier", "loss_barrier", "val_error_barrier", "val_loss_barrier"):
        cols[key] = [r["instability"][key] for _, r in rows]
    cols["error_start"] = [r["instability"]["test_error"][0] for _, r in rows]
    cols["error_end"] = [r["instability"]["test_error"][-1] for _, r in rows]
    cols["points"] = [len(r["instability"]["alphas"]) for _, r in rows]
    return _table(cols, INSTABILITY)


def interpolation_table(trials: list[TrialResult], name: str) -> pa.Table:
    """One row per (trial, round, alpha) on the measured linear paths, typed by `schema.INTERPOLATION`."""
    rows = _instability_rows(trials)
    idents = [trial_identity(t, name) for t in trials]
    counts = [len(r["instability"]["alphas"]) for _, r in rows]
    cols = {c: [idents[i][c] for (i, _), n in zip(rows, counts) for _ in range(n)]
            for c, _ in IDENTITY if c not in ("round", "sparsity")}
    for key in ("round", "sparsity"):
        cols[key] = [r[key] for (_, r), n in zip(rows, counts) for _ in range(n)]
    cols["alpha"] = [a for _, r in rows for a in r["instability"]["alphas"]]
    for key in ("val_error", "val_loss", "test_error", "test_loss"):
        cols[key] = [v for _, r in rows for v in r["instability"][key]]
    return _table(cols, INTERPOLATION)


def layer_names(trials: list[TrialResult]) -> list[str]:
    """The union of prunable layers, in order of first appearance."""
    seen: dict[str, None] = {}
    for t in trials:
        for rec in t.records:
            seen.update(dict.fromkeys(rec["layer_sparsity"]))
    return list(seen)


def rounds_table(trials: list[TrialResult], name: str) -> pa.Table:
    """One row per (trial, round), typed by `schema.rounds_schema`; layer densities as `sparsity.<layer>`."""
    layers = layer_names(trials)
    schema = rounds_schema(layers)
    cols = _per_trial_columns(trials, name, [len(t.records) for t in trials])
    recs = [(t, rec) for t in trials for rec in _records(t)]
    # 0.1.0 records lack the last three: their rounds all started at 0 on their own axis and trained T steps
    fixed = {"round": lambda t, r: r["round"], "sparsity": lambda t, r: r["sparsity"],
             "status": lambda t, r: t.status, "complete": lambda t, r: t.complete,
             "diverged": lambda t, r: r.get("diverged", diverged(r)),
             "start_iteration": lambda t, r: r.get("start_iteration", 0),
             "steps": lambda t, r: r.get("steps", t.config.iterations)}
    for col in schema.names:
        if col in cols:
            continue
        if col in fixed:
            values = [fixed[col](t, r) for t, r in recs]
        elif col.startswith(LAYER_PREFIX):
            layer = col[len(LAYER_PREFIX):]
            values = [r["layer_sparsity"].get(layer, float("nan")) for _, r in recs]
        else:
            values = [r[col] for _, r in recs]
        cols[col] = values
    return _table(cols, schema)


def _table(cols: dict, schema: pa.Schema) -> pa.Table:
    arrays = [cols[f.name] if isinstance(cols[f.name], pa.Array) else pa.array(cols[f.name], type=f.type)
              for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


# ------------------------------------------------------------------ thesis groups

@dataclass
class Group:
    """The trials that make one thesis experiment: tickets of one setting (nets = seeds) and their baselines."""
    key: tuple
    tickets: list[TrialResult] = field(default_factory=list)
    reinit: list[TrialResult] = field(default_factory=list)
    random_prune: list[TrialResult] = field(default_factory=list)
    others: list[TrialResult] = field(default_factory=list)  # pruning at init, ablations: in Parquet only

    @property
    def config(self):
        return self.tickets[0].config


def _setting(c) -> tuple:
    """Everything that must agree between the nets of one thesis experiment (not seed, not method)."""
    return (c.arch, tuple(c.plan_conv), tuple(c.plan_fc), c.dataset, c.pruning, float(c.prune_rate_fc),
            float(c.prune_rate_conv), c.rewind_iteration, c.activation, c.iterations, c.eval_every,
            c.batch_size, float(c.learning_rate), c.rounds, c.precision, c.deterministic)


def group_trials(trials: list[TrialResult]) -> list[Group]:
    """Tickets grouped by setting and method; a reinit joins the group of the ticket it took its masks from
    (same `ticket_ref`), a random-prune baseline every ticket group of its setting; every other member of the
    setting (pruning at init, ablations) is listed by its label in the sidecar (its rows are in Parquet)."""
    groups: dict[tuple, Group] = {}
    for t in trials:
        if t.config.is_ticket:
            key = _setting(t.config) + (t.config.method,)
            groups.setdefault(key, Group(key)).tickets.append(t)
    for t in trials:
        for g in groups.values():
            same = _setting(t.config) == g.key[:-1]
            if t.config.label == "reinit" and same and t.ticket_ref in {x.ticket_ref for x in g.tickets}:
                g.reinit.append(t)
            elif t.config.label == "random-prune" and same:
                g.random_prune.append(t)
            elif not t.config.is_ticket and t.config.label not in ("reinit", "random-prune") and same:
                g.others.append(t)
    return [groups[k] for k in sorted(groups, key=repr)]


def write_thesis_groups(trials: list[TrialResult], folder: str, experiment: str, last_results: dict[str, dict],
                        now: float, extra_tables: list[str] = ()) -> list[dict]:
    """Write every group's thesis files; returns per group its prefix, files, notes and what is missing."""
    taken: set[str] = set()
    done = []
    for g in group_trials(trials):
        done.append(write_group(g, folder, experiment, last_results, now, taken, list(extra_tables)))
    return done


def _prefix(g: Group, nets: list[TrialResult], last_results: dict, now: float, taken: set[str]) -> tuple[str, int]:
    """`{time}-{net}-{dataset}` with time = when the group's last trial reported; +1 s per clash."""
    members = nets + g.reinit + g.random_prune
    stamps = [last_results.get(t.tune_trial_id, {}).get("timestamp") for t in members]
    finished = max((s for s in stamps if s is not None), default=now)
    net = "Conv" if g.config.plan_conv else "Lenet"
    shift = 0
    while True:
        stamp = time.strftime(thesis.TIME_FORMAT, time.localtime(finished + shift))
        prefix = f"{stamp}-{net}-{thesis.DATASET_NAMES[g.config.dataset]}"
        if prefix not in taken:
            taken.add(prefix)
            return prefix, shift
        shift += 1


def _levels(t: TrialResult) -> dict[int, dict]:
    return {rec["round"]: rec for rec in t.records}


def history_arrays(trials: list[TrialResult], levels: list[int], length: int) -> tuple[dict, bool]:
    """The thesis arrays (trials, levels, L) with NaN where a level or point is missing; and whether padded.

    Point k of a level is iteration (k + 1) * plot_step on the absolute axis, so a round rewound to
    iteration k starts its values at index k / plot_step and is NaN before (it did not train there)."""
    out = {m: np.full((len(trials), len(levels), length), np.nan, dtype=np.float64) for m in THESIS_METRICS}
    sparsity = np.full(len(levels), np.nan, dtype=np.float64)
    padded = False
    for i, t in enumerate(trials):
        recs = _levels(t)
        for j, r in enumerate(levels):
            if r not in recs:
                padded = True
                continue
            at = np.asarray(recs[r]["iterations"]) // trials[i].config.eval_every - 1
            keep = at < length
            for m in THESIS_METRICS:
                out[m][i, j, at[keep]] = np.asarray(recs[r][m], dtype=np.float64)[keep]
            padded |= int(keep.sum()) < length
            if np.isnan(sparsity[j]):
                sparsity[j] = round(recs[r]["sparsity"], 4)
    out["sparsity"] = sparsity
    return out, padded


def _savez(path: str, arrays: dict) -> None:
    _write_new(path, lambda f: np.savez(f, **{k: arrays[k] for k in thesis.HISTORY_KEYS}))


def thesis_state(weights: dict[str, torch.Tensor], masks: dict[str, torch.Tensor],
                 rewind: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state_dict in torch.nn.utils.prune's layout (+ the thesis' weight_init) for every masked layer."""
    out: dict[str, torch.Tensor] = {}

    def cpu(t: torch.Tensor) -> torch.Tensor:
        t = t.detach().to("cpu")
        return (t.to(torch.float32) if t.is_floating_point() else t).contiguous().clone()

    for key, value in weights.items():
        module, _, leaf = key.rpartition(".")
        if module not in masks:
            out[key] = cpu(value)  # BatchNorm parameters and buffers, as they are
        elif leaf == "weight":
            if f"{module}.bias" in weights:
                out[f"{module}.bias"] = cpu(weights[f"{module}.bias"])
            out[f"{module}.weight_orig"] = cpu(value)
            out[f"{module}.weight_init"] = cpu(rewind[key])
            out[f"{module}.weight_mask"] = masks[module].to(torch.float32).contiguous()
    return out


def write_group(g: Group, folder: str, experiment: str, last_results: dict, now: float, taken: set[str],
                extra_tables: list[str] = ()) -> dict:
    """One thesis experiment: histories, net and early-stop files, baseline histories, specs, sidecar."""
    cfg = g.config
    nets = sorted((t for t in g.tickets if t.records), key=lambda t: t.config.seed)
    prefix, shift = _prefix(g, nets, last_results, now, taken)
    # "unexported": what no trial-level warning already says (baselines without a net, a group without files)
    info = {"prefix": prefix, "files": [], "unexported": [],
            "notes": [f"prefix time shifted by {shift} s to avoid a name clash with another group"] if shift else [],
            "missing": [f"ticket seed {t.config.seed} (trial {t.trial_id}) has no finished round: not a net here"
                        for t in g.tickets if t not in nets]}
    if not nets:
        _unexported(info, "no ticket finished a round: no thesis files written")
        return info
    levels = list(range(cfg.rounds + 1))
    arrays, padded = history_arrays(nets, levels, cfg.eval_points)
    if padded:
        info["notes"].append("some nets lack levels or points: those entries are NaN (padded, never cut)")
    if cfg.rewind_iteration:
        info["notes"].append(f"late rewinding: levels >= 1 train from iteration {cfg.rewind_iteration} to "
                             f"{cfg.iterations} on the absolute axis, so their first "
                             f"{cfg.rewind_iteration // cfg.eval_every} points are NaN (not trained there); use "
                             "nan-aware argmin (lth_ray.analysis.early_stop_indices) for early stop")
    if any(t.diverged_round is not None for t in nets):
        info["notes"].append("nets " + ", ".join(f"{n} (level {t.diverged_round})" for n, t in enumerate(nets)
                                                 if t.diverged_round is not None)
                             + " diverged: a loss went NaN or infinite there and the trajectory stopped")
    _savez(os.path.join(folder, thesis.histories_path(prefix)), arrays)
    info["files"].append(thesis.histories_path(prefix))
    net_info = [_write_net(t, n, prefix, levels, folder, info, last_results) for n, t in enumerate(nets)]
    baselines = {method: _write_baselines(method, trials, nets, prefix, name_of, folder, info)
                 for method, trials, name_of in (("reinit", g.reinit, thesis.random_histories_path),
                                                 ("random-prune", g.random_prune,
                                                  thesis.random_prune_histories_path))}
    specs = thesis_specs(cfg, nets, net_info, info["notes"])
    _write_json(os.path.join(folder, thesis.specs_path(prefix)), specs, indent=None)  # compact, as the thesis
    info["files"] += [thesis.specs_path(prefix), thesis.sidecar_path(prefix)]
    sidecar = {
        "format": EXPORT_FORMAT, "lth_ray_version": __version__, "experiment": experiment,
        "arch": cfg.arch, "dataset": cfg.dataset, "activation": cfg.activation, "method": cfg.method,
        "pruning": cfg.pruning, "prune_rate_fc": float(cfg.prune_rate_fc),
        "prune_rate_conv": float(cfg.prune_rate_conv), "prune_rate_out": float(cfg.prune_rate_out),
        "rounds": cfg.rounds, "iterations": cfg.iterations, "eval_every": cfg.eval_every,
        "eval_points": cfg.eval_points, "batch_size": cfg.batch_size, "learning_rate": float(cfg.learning_rate),
        "rewind_iteration": cfg.rewind_iteration, "precision": cfg.precision,
        "deterministic": cfg.deterministic, "seeds": [t.config.seed for t in nets],
        "trial_ids": [t.trial_id for t in nets], "nets": net_info, "baselines": baselines,
        "duration_seconds": _seconds(nets), "padded": padded, "time_shift_s": shift, "files": info["files"],
        "missing": info["missing"], "notes": info["notes"],
        "other_methods": _other_methods(g),
        "extra_tables": {name: "Parquet beside the thesis files (instability: Frankle et al. 2020); the thesis "
                               "files are unchanged" for name in extra_tables},
        "layout": {"early_stop": "state_dicts per level in the -net<n>.pth layout (weight_orig/init/mask)",
                   "random-prune": "-random-prune-histories<n>.npz: lth_ray's random-pruning baseline of net n, "
                                   "same arrays and shapes as -random-histories<n>.npz (levels 1..prune_count)"}}
    _write_json(os.path.join(folder, thesis.sidecar_path(prefix)), sidecar)
    return info


def _other_methods(g: Group) -> dict:
    """The group's members the thesis layout has no file for, by label: where to find them."""
    out = {}
    for t in sorted(g.others, key=lambda t: (t.config.label, t.config.seed)):
        entry = out.setdefault(t.config.label, {"seeds": [], "trial_ids": [],
                                                "where": "Parquet (rounds, histories) rows with method = this label"})
        entry["seeds"].append(t.config.seed)
        entry["trial_ids"].append(t.trial_id)
    return out


def _seconds(nets: list[TrialResult]) -> float:
    return sum(r["seconds"] for t in nets for r in t.records)


def _write_net(t: TrialResult, n: int, prefix: str, levels: list[int], folder: str, info: dict,
               last_results: dict) -> dict:
    """`-net<n>.pth` (the last finished level) and `-early-stop<n>.pth`; returns the sidecar's entry."""
    recs = _levels(t)
    last = max(recs)
    rewind = t.rewind()
    masks = t.rounds.masks(last)
    state = thesis_state(t.rounds.trained(last, masks), masks, rewind)
    _write_new(os.path.join(folder, thesis.net_path(prefix, n)), lambda f: torch.save(state, f))
    del state
    info["files"].append(thesis.net_path(prefix, n))
    if last != levels[-1]:
        info["notes"].append(f"net {n} (seed {t.config.seed}) stopped at level {last} of {levels[-1]}: "
                             f"-net{n}.pth holds level {last}")
    wrote_es = _write_early_stop(t, prefix, n, levels, folder, rewind)
    if wrote_es:
        info["files"].append(thesis.early_stop_path(prefix, n))
    device, device_name = _device(last_results, t)
    return {"n": n, "seed": t.config.seed, "trial_id": t.trial_id, "status": t.status, "complete": t.complete,
            "diverged_level": t.diverged_round,
            "levels": sorted(recs), "net_file_level": last, "early_stop_file": wrote_es, "device": device,
            "device_name": device_name}


def thesis_specs(cfg, nets: list[TrialResult], net_info: list[dict], notes: list[str]) -> dict:
    """The 18 keys of `-specs.json`, in the thesis' order; caveats for old readers go to `notes`."""
    devices = [d["device"] for d in net_info]
    device = max(set(devices), key=devices.count)
    if len(set(devices)) > 1:
        notes.append(f"nets ran on different devices {sorted(set(devices))}; specs name the most common")
    net = "Conv" if cfg.plan_conv else "Lenet"
    specs = {
        "net": net, "plan_conv": list(cfg.plan_conv), "plan_fc": list(cfg.plan_fc), "net_count": len(nets),
        "dataset": thesis.DATASET_NAMES[cfg.dataset],
        "epoch_count": thesis.epoch_count(cfg.dataset, cfg.iterations, cfg.batch_size),
        "learning_rate": float(cfg.learning_rate), "plot_step": cfg.eval_every, "verbosity": 0,
        "prune_method": thesis.PRUNE_METHODS[cfg.pruning], "prune_count": cfg.rounds,
        "prune_rate_conv": float(cfg.prune_rate_conv), "prune_rate_fc": float(cfg.prune_rate_fc),
        "duration": thesis.format_duration(_seconds(nets)), "device": device,
        "device_name": next(d["device_name"] for d in net_info if d["device"] == device),
        "save_early_stop": all(d["early_stop_file"] for d in net_info),
        "experiment_name": thesis.EXPERIMENT_NAMES[cfg.method]}
    assert tuple(specs) == thesis.SPEC_KEYS
    if cfg.activation != thesis.THESIS_ACTIVATION[net] or cfg.dataset not in ("mnist", "cifar10"):
        notes.append(f"trained with {cfg.activation} on {cfg.dataset}: the thesis' own loader rebuilds {net} "
                     f"with {thesis.THESIS_ACTIVATION[net]} and knows only MNIST and CIFAR-10, so these nets load "
                     "there but compute another function; lth_ray.thesis.get_models_from_files rebuilds them right")
    return specs


def _device(last_results: dict, t: TrialResult) -> tuple[str, str]:
    """(device, device name) the trial's rounds ran on, as its round records say (the GPU's name, e.g.
    "NVIDIA H100 80GB HBM3", not "cuda:0"); the most common one when a restart moved it. Tune's last
    result is the fallback for records without them."""
    pairs = [(rec.get("device"), rec.get("device_name")) for rec in t.records]
    pairs = [(d, n) for d, n in pairs if d and n]
    if pairs:
        device, name = max(set(pairs), key=pairs.count)
        return str(device), str(name)
    last = last_results.get(t.tune_trial_id, {})
    device = last.get("device") or "cpu"
    return str(device), str(last.get("device_name") or device)


def _write_early_stop(t: TrialResult, prefix: str, n: int, levels: list[int], folder: str, rewind: dict) -> bool:
    """`-early-stop<n>.pth` as plain containers; False (nothing written) when the trial kept none. The levels
    are read round file by round file (one trial's levels at a time are in memory)."""
    recs = _levels(t)
    state_dicts, indices = [], []
    for r in levels:
        masks = t.rounds.masks(r) if r in recs else None
        saved = t.rounds.early_stop(r, masks) if r in recs else None
        if saved is None or recs[r]["early_stop_iteration"] is None:
            state_dicts.append(None)
            indices.append(-1)
            continue
        state_dicts.append(thesis_state(saved, masks, rewind))
        indices.append(recs[r]["early_stop_iteration"] - 1)  # the thesis' 0-based iteration
    if all(sd is None for sd in state_dicts):
        return False
    _write_new(os.path.join(folder, thesis.early_stop_path(prefix, n)),
               lambda f: torch.save({"state_dicts": state_dicts, "indices": indices}, f))
    return True


def _unexported(info: dict, line: str) -> None:
    info["missing"].append(line)
    info["unexported"].append(line)


def _write_baselines(method: str, trials: list[TrialResult], nets: list[TrialResult], prefix: str, name_of,
                     folder: str, info: dict) -> list[dict]:
    """Per net n, its baseline's histories for levels 1..prune_count in shape (1, prune_count, L)."""
    seeds = [t.config.seed for t in nets]
    written = []
    for b in sorted(trials, key=lambda t: t.config.seed):
        if b.config.seed not in seeds:
            _unexported(info, f"{method} baseline seed {b.config.seed} (trial {b.trial_id}): its ticket is not "
                              "among the nets, so it is only in the Parquet files")
            continue
        if not b.records:
            info["missing"].append(f"{method} baseline seed {b.config.seed} (trial {b.trial_id}) has no finished "
                                   "round")
            continue
        n = seeds.index(b.config.seed)
        arrays, padded = history_arrays([b], list(range(1, b.config.rounds + 1)), b.config.eval_points)
        name = name_of(prefix, n)
        _savez(os.path.join(folder, name), arrays)
        info["files"].append(name)
        if padded:
            info["notes"].append(f"{name}: missing levels or points are NaN (padded)")
        written.append({"n": n, "seed": b.config.seed, "trial_id": b.trial_id, "file": name,
                        "levels": sorted(_levels(b)), "complete": b.complete})
    return written


# ------------------------------------------------------------------ CLI

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lth_ray.export",
                                description="Export a Tune experiment to Parquet and the thesis' file format.")
    p.add_argument("experiment", help="the experiment folder (or a pyarrow URI such as file:// or s3://)")
    p.add_argument("--out", help="export folder (default: <experiment>/export)")
    p.add_argument("--force", action="store_true", help="replace an existing export")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        out = export_experiment(a.experiment, a.out, a.force)
    except (ExperimentError, ExportError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: {err.filename or a.experiment}: {err.strerror or err}", file=sys.stderr)
        return 2
    print(f"exported {a.experiment} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
