"""Trials in memory -> one export folder: the Parquet tables, the thesis groups, and `export.json`.

The manifest lists every file and, per trial, what is missing and why; its `notes` say which trials have
no thesis files because their nets are not the thesis' (a CIFAR ResNet, a VGG: Parquet only). Nothing here
reads Tune, so the writers can be benchmarked and tested on trials built by hand.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import PurePosixPath

import pyarrow as pa
import pyarrow.parquet as pq

from lth_ray import __version__
from lth_ray.core.methods.member import first_round
from lth_ray.results.experiment import TrialResult
from lth_ray.results.export.files import EXPORT_FORMAT, MANIFEST, _write_json, _write_new
from lth_ray.results.export.parquet import (
    histories_table,
    instability_table,
    interpolation_table,
    rounds_table,
    successive_interpolation_table,
    successive_table,
    trajectory_name,
)
from lth_ray.results.export.thesis_files import write_thesis_groups
from lth_ray.results.export.thesis_groups import parquet_only_notes, thesis_net

# The linear paths' files, written where some round measured the path: its barriers and its points.
PATH_TABLES: dict[str, dict[str, Callable[[list[TrialResult], str], pa.Table]]] = {
    "instability": {"instability.parquet": instability_table, "interpolation.parquet": interpolation_table},
    "successive": {
        "successive.parquet": successive_table,
        "successive_interpolation.parquet": successive_interpolation_table,
    },
}


def write_export(
    trials: list[TrialResult],
    folder: str,
    experiment: str,
    name: str | None = None,
    last_results: dict[str, dict] | None = None,
    now: float | None = None,
) -> dict:
    """Write the Parquet files, the thesis groups (of the thesis' plan nets) and `export.json` into the
    existing empty `folder`."""
    now = time.time() if now is None else now
    name = name or PurePosixPath(experiment.rstrip("/")).name
    last_results = last_results or {}
    trials = sorted(trials, key=lambda t: t.trial_id)  # the grid order (Tune numbers trials in order)
    usable = [t for t in trials if t.records]
    missing = [line for line in map(_missing_line, trials) if line]
    _write_new(os.path.join(folder, "histories.parquet"), lambda f: pq.write_table(histories_table(usable, name), f))
    _write_new(os.path.join(folder, "rounds.parquet"), lambda f: pq.write_table(rounds_table(usable, name), f))
    extra = []
    for path, tables in PATH_TABLES.items():
        if any(rec.get(path) for t in usable for rec in t.records):
            for file, table in tables.items():
                _write_new(os.path.join(folder, file), lambda f, table=table: pq.write_table(table(usable, name), f))
                extra.append(file)
    trunk = [t for t in trials if not t.branch]  # branch members are in the Parquet tables only
    groups = write_thesis_groups(trunk, folder, experiment, last_results, now, extra)
    for g in groups:  # what the trial lines above do not already say
        missing += [f"thesis files {g['prefix']}: {line}" for line in g["unexported"]]
    manifest = {
        "format": EXPORT_FORMAT,
        "lth_ray_version": __version__,
        "experiment": experiment,
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now)),
        "files": ["histories.parquet", "rounds.parquet"] + extra + [f for g in groups for f in g["files"]],
        "trials": [_trial_summary(t) for t in trials],
        "groups": [{k: g[k] for k in ("prefix", "files", "notes", "missing")} for g in groups],
        "missing": missing,
        "notes": parquet_only_notes(trunk) + branch_notes(trials),
    }
    _write_json(os.path.join(folder, MANIFEST), manifest)
    return manifest


def _planned_rounds(t: TrialResult) -> list[int]:
    return list(t.planned) if t.planned is not None else list(range(first_round(t.config), t.config.rounds + 1))


def branch_notes(trials: list[TrialResult]) -> list[str]:
    """One line per branch (`lth-ray branch`): where its members are in the export."""
    counts: dict[str, int] = {}
    for t in trials:
        if t.branch:
            counts[t.branch] = counts.get(t.branch, 0) + 1
    return [
        f"branch {b}: {n} member(s) in the Parquet tables only (trial ids {b}.*), not in the thesis files"
        for b, n in counts.items()
    ]


def _missing_line(t: TrialResult) -> str | None:
    """What of this trial is not in the export, in one line (None when it finished every round)."""
    key = f"trial {t.trial_id} ({trajectory_name(t)}, status {t.status})"
    files = f"; {'; '.join(t.problems)} (resuming the sweep recomputes it)" if t.problems else ""
    if not t.records:
        why = t.error or "no round finished"
        return f"{key}: nothing exported ({why}){files}"
    left = [r for r in _planned_rounds(t) if r not in set(t.rounds_done)]
    if left and t.diverged_round is not None:
        return (
            f"{key}: round {t.diverged_round} diverged (a loss went NaN or infinite), so rounds {left} were "
            "not run: a trajectory stops at a diverged round"
        )
    if left:
        return f"{key}: rounds {left} missing (exported rounds {t.rounds_done}){files}"
    return None


def _trial_summary(t: TrialResult) -> dict:
    return {
        "trial_id": t.trial_id,
        "trajectory": trajectory_name(t),
        "method": t.config.label,
        "arch": t.config.arch,
        "thesis_files": thesis_net(t.config) is not None,
        "seed": t.config.seed,
        "status": t.status,
        "complete": t.complete,
        "rounds_planned": _planned_rounds(t),
        "rounds_done": t.rounds_done,
        "diverged_round": t.diverged_round,
        "error": t.error,
    }
