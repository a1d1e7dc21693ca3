"""An experiment as tidy DataFrames, from a Tune folder or from its Parquet export, and how to slice them.

A configuration is the whole recipe but the seed and the method (`CONFIG`); `matching` and
`by_configuration` select one, `config_labels` names each for legends, `missing` lists unfinished trials.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from lth_ray.core.methods.member import first_round
from lth_ray.core.spec.config import TICKETS  # the methods that own a dense round 0
from lth_ray.results.schema import ANATOMY, IDENTITY, RECIPE, RECIPE_DEFAULTS

# A configuration is the whole recipe, everything but the seed and the method: its tickets and baselines are
# compared, and two recipes never average together. `successive` is a measurement, not a setting of training (a
# ticket trains alike with and without it): it names no configuration of its own.
MEASUREMENTS = ("successive",)
CONFIG = [
    "arch",
    "plan_conv",
    "plan_fc",
    "dataset",
    "iterations",
    "eval_every",
    "batch_size",
    "learning_rate",
    "pruning",
    "prune_rate_fc",
    "prune_rate_conv",
    "rewind_iteration",
    "activation",
    "precision",
    *(name for name, _ in RECIPE if name not in MEASUREMENTS),
]
GROUP = CONFIG + ["method", "round"]
PATH_FILES = (  # an export's tables of the linear paths, in `Experiment`'s order; absent where not measured
    "instability.parquet",
    "interpolation.parquet",
    "successive.parquet",
    "successive_interpolation.parquet",
)
OWN_DENSE_ROUND = TICKETS + tuple(f"{t}-invert" for t in TICKETS)  # labels with a round 0 of their own
RUNNING = ("RUNNING", "PENDING", "PAUSED")
TRIAL_IDENTITY = [name for name, _ in IDENTITY if name not in ("round", "sparsity")]
TRIAL_COLUMNS = TRIAL_IDENTITY + [
    "status",
    "first_round",
    "last_round",
    "rounds_done",
    "complete",
    "diverged_round",
    "error",
]


@dataclass
class Experiment:
    """The tidy view of one experiment: histories, rounds, one row per trial, and the ticket masks if read."""

    histories: pd.DataFrame  # one row per (trial, round, evaluation point); columns of schema.HISTORIES
    rounds: pd.DataFrame  # one row per (trial, round); columns of schema.rounds_schema
    trials: pd.DataFrame  # one row per trial: identity, status, expected and done rounds, read error
    masks: dict = field(default_factory=dict)  # {trial_id: its rounds reader} (Tune folder only)
    instability: pd.DataFrame | None = None  # one row per (trial, round) measured; schema.INSTABILITY
    interpolation: pd.DataFrame | None = None  # one row per (trial, round, alpha); schema.INTERPOLATION
    successive: pd.DataFrame | None = None  # the successive rounds' path (Paul et al. 2023); schema.SUCCESSIVE
    successive_interpolation: pd.DataFrame | None = None  # its points; schema.INTERPOLATION

    def mask(self, trial_id: str, round_: int) -> dict[str, np.ndarray]:
        """The bool masks {layer: array} of one trial's round (True = weight alive); reads that round only."""
        try:
            masks = self.masks[trial_id].masks(round_)
        except (KeyError, FileNotFoundError, OSError) as err:
            raise KeyError(f"no mask for trial {trial_id} round {round_} (masks come only from a Tune folder)") from err
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
        trial_rows.append(
            {
                **trial_identity(t, name),
                "status": t.status,
                "first_round": first_round(t.config),
                "last_round": t.config.rounds,
                "rounds_done": t.rounds_done,
                "complete": t.complete,
                "diverged_round": t.diverged_round,
                "error": t.error,
            }
        )
    masks = {t.trial_id: t.rounds for t in trials if t.rounds is not None}  # read round by round, on demand
    histories = histories_table(usable, name).to_pandas()
    rounds = rounds_table(usable, name).to_pandas()
    trials_frame = pd.DataFrame(trial_rows, columns=TRIAL_COLUMNS).sort_values("trial_id", ignore_index=True)
    from lth_ray.results.export import (
        instability_table,
        interpolation_table,
        successive_interpolation_table,
        successive_table,
    )

    return Experiment(
        histories,
        rounds,
        trials_frame,
        masks,
        *(table(usable, name).to_pandas() for table in (instability_table, interpolation_table)),
        *(table(usable, name).to_pandas() for table in (successive_table, successive_interpolation_table)),
    )


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
    extra = [
        _with_recipe(pq.read_table(f"{folder}/{n}", filesystem=fs).to_pandas())
        if fs.get_file_info(f"{folder}/{n}").type == pafs.FileType.File
        else None
        for n in PATH_FILES
    ]
    return Experiment(histories, rounds, trials, {}, *extra)


def _trials_from_manifest(manifest: dict, rounds: pd.DataFrame) -> pd.DataFrame:
    """One row per trial the export knows (also those without a finished round: their settings are NaN)."""
    settings = [c for c in TRIAL_IDENTITY if c not in ("trial_id", "trajectory")]
    known = rounds.drop_duplicates("trial_id").set_index("trial_id")[settings]
    rows = []
    for t in manifest["trials"]:
        ident = (
            known.loc[t["trial_id"]].to_dict()
            if t["trial_id"] in known.index
            else {"experiment": PurePosixPath(str(manifest.get("experiment", "")).rstrip("/")).name}
        )
        planned = t["rounds_planned"]
        rows.append(
            {
                **ident,
                "trial_id": t["trial_id"],
                "trajectory": t["trajectory"],
                "method": t["method"],
                "seed": t["seed"],
                "status": t["status"],
                "first_round": min(planned),
                "last_round": max(planned),
                "rounds_done": list(t["rounds_done"]),
                "complete": t["complete"],
                "diverged_round": t.get("diverged_round"),
                "error": t["error"],
            }
        )
    return pd.DataFrame(rows, columns=TRIAL_COLUMNS)


# Columns an export written by lth_ray 0.1.0 lacks, with the value every 0.1.0 run had (or "unknown"); and the
# modern recipe's columns, which exports before them lack: their runs all trained at its defaults (Adam, a
# constant rate, no augmentation, nothing left dense, BatchNorm statistics interpolated).
OLD_EXPORT_DEFAULTS = {
    "plan_conv": "unknown",
    "plan_fc": "unknown",
    "batch_size": -1,
    "learning_rate": np.nan,
    "precision": "unknown",
    "deterministic": False,
    "diverged": False,
    **RECIPE_DEFAULTS,
}


def _with_recipe(frame: pd.DataFrame) -> pd.DataFrame:
    """An export from an older lth_ray lacks some recipe columns: fill them so grouping still works (every
    trial of such an export shares the filled values, so nothing is merged that the old export kept apart).
    Its rounds also lack what a ticket is made of (`schema.ANATOMY`): NaN, as the exporter writes for records
    without those numbers."""
    rounds = "early_stop_index" in frame.columns
    for col, value in OLD_EXPORT_DEFAULTS.items():
        if col not in frame.columns and (col != "diverged" or rounds):
            frame[col] = value
    if rounds:
        for col in [c for c, _ in ANATOMY if c not in frame.columns]:
            frame[col] = np.nan
    if "diverged" in frame.columns:
        frame["diverged"] = frame["diverged"].fillna(False).astype(bool)
    return frame


def _trials_from_rounds(rounds: pd.DataFrame) -> pd.DataFrame:
    if rounds.empty:
        return pd.DataFrame(columns=TRIAL_COLUMNS)
    last = rounds.groupby(CONFIG, dropna=False)["round"].max().rename("last_round").reset_index()
    rows = []
    for key, g in rounds.groupby(TRIAL_IDENTITY, dropna=False, sort=False):
        rows.append(
            {
                **dict(zip(TRIAL_IDENTITY, key)),
                "status": g["status"].iloc[-1],
                "first_round": 0 if g["method"].iloc[0] in OWN_DENSE_ROUND else 1,
                "rounds_done": sorted(g["round"].tolist()),
                "complete": bool(g["complete"].all()),
                "diverged_round": next((int(r) for r in g.loc[g["diverged"], "round"]), None),
                "error": None,
            }
        )
    return pd.DataFrame(rows).merge(last, on=CONFIG, how="left")[TRIAL_COLUMNS]


# ------------------------------------------------------------------ unfinished trials, configurations


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
        rows.append(
            {
                "trial_id": t["trial_id"],
                "trajectory": t["trajectory"],
                "arch": t["arch"],
                "method": t["method"],
                "seed": t["seed"],
                "status": t["status"],
                "rounds_done": sorted(done),
                "rounds_missing": lacking,
                "reason": reason,
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "trial_id",
            "trajectory",
            "arch",
            "method",
            "seed",
            "status",
            "rounds_done",
            "rounds_missing",
            "reason",
        ],
    )


# How a setting that varies within an arch is named in a legend label: numbers after a short name; the
# recipe's words after a prefix, so "none" or "" still says what it is.
SHORT_NUMBERS = {
    "prune_rate_fc": "fc",
    "prune_rate_conv": "conv",
    "rewind_iteration": "rewind",
    "learning_rate": "lr",
    "batch_size": "batch",
    "iterations": "T",
    "eval_every": "every",
    "momentum": "momentum",
    "weight_decay": "wd",
    "gamma": "gamma",
    "warmup": "warmup",
}
SHORT_WORDS = {
    "milestones": "milestones:",
    "augment": "augment:",
    "prune_ignore": "dense:",
    "instability_bn": "bn:",
    "pruned_weights": "pruned:",
}


def _label_word(column: str, value) -> str:
    if column in SHORT_NUMBERS:
        return f"{SHORT_NUMBERS[column]}{value:g}"
    if column in SHORT_WORDS:
        return f"{SHORT_WORDS[column]}{value or 'none'}"
    if column == "retrain_iterations":
        return f"t{value}" if value else "t=T-k"
    if column == "nesterov":
        return "nesterov" if value else "no-nesterov"
    return str(value)  # a word that names itself: the optimizer, the retraining mode, the criterion


def config_labels(frame: pd.DataFrame) -> dict[tuple, str]:
    """A short legend label per configuration: the arch, plus the settings that differ between the
    configurations of that arch (e.g. "lenet fc0.2" and "lenet fc0.4", "cifar_resnet_20 rewind0")."""
    configs = frame[CONFIG].drop_duplicates()
    labels = {}
    for _, same in configs.groupby("arch", sort=False):
        varying = [c for c in CONFIG[1:] if same[c].nunique(dropna=False) > 1]
        for _, r in same.iterrows():
            labels[tuple(r[CONFIG])] = " ".join([str(r["arch"])] + [_label_word(c, r[c]) for c in varying])
    return labels


def matching(frame: pd.DataFrame, key: tuple) -> pd.DataFrame:
    """The rows of `frame` that belong to configuration `key` (values of CONFIG, in order)."""
    return frame[(frame[CONFIG] == pd.Series(key, index=CONFIG)).all(axis=1)]


def by_configuration(exp: Experiment):
    """(label, rounds, histories) of each configuration in turn: the per-arch figures draw one each."""
    for key, label in config_labels(exp.rounds).items():
        yield label, matching(exp.rounds, key), matching(exp.histories, key)
