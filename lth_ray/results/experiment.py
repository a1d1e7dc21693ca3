"""Read a Tune experiment folder (local path or URI): its trials, their configs, statuses and latest states.

Shared by the exporter and the analysis. It reads files only, through pyarrow filesystems, so it works without
a running Ray, on a sweep still running, and on cloud storage. Everything is read as data, never as code:
Tune's experiment snapshot as plain JSON (see `open_analysis`), trajectory states with
`torch.load(weights_only=True)`.
A trial's round files (`<trial>/rounds/`, see `lth_ray.core.store.rounds`) are the source of truth for its histories
(Tune's result rows can repeat a round after a restart; the files cannot). Trials written by lth_ray 0.1.0
kept everything in their newest checkpoint state instead: they are read from there (`LegacyRounds`).
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

import torch
from pyarrow import fs as pafs

from lth_ray.core.engine.weights import initial_weights
from lth_ray.core.methods.member import first_round
from lth_ray.core.pruning.masks import unpack_masks
from lth_ray.core.spec.config import TrajectoryConfig
from lth_ray.core.store.rounds import RoundStore

ROUNDS_DIR = "rounds"  # a trial's round files, beside Tune's checkpoints
BRANCHES_DIR = "branches"  # <experiment>/branches/<branch>/: each branch a Tune experiment of its own
STATE_FILE = "state.pt"  # the trajectory state the trainable writes inside each checkpoint folder
ROUND_FILE = "round.json"  # beside it: {"next_round": n}, so the newest state is found without reading all
CHECKPOINT_RE = re.compile(r"^checkpoint_(\d+)$")
SNAPSHOT_RE = re.compile(r"^experiment_state-.*\.json$")  # Tune's experiment snapshots


class ExperimentError(ValueError):
    """The folder is not a readable lth_ray Tune experiment; the message names the folder or file."""


class LegacyRounds:
    """The rounds of a trial written by lth_ray 0.1.0 (state format 1): all of them in one checkpoint state.

    Read-only: such trials export and analyse, but are never continued by this version."""

    format = 1

    def __init__(self, state: dict):
        self.state = state

    def records(self) -> list[dict]:
        return sorted(self.state["records"], key=lambda r: r["round"])

    def problems(self) -> list[str]:
        return []

    def masks(self, r: int) -> dict:
        return unpack_masks(self.state["masks"][r])

    def trained(self, r: int, masks=None) -> dict | None:
        """Only the last round's trained weights were kept by 0.1.0."""
        last = max(rec["round"] for rec in self.state["records"])
        return self.state.get("trained") if r == last else None

    def early_stop(self, r: int, masks=None) -> dict | None:
        return (self.state.get("early_stop") or {}).get(r)

    def rewind(self) -> dict | None:
        return self.state.get("rewind")


class StoredRounds:
    """The rounds of a trial written by this version (format 2): one folder of files per round, read lazily,
    round by round (reading one round's mask or weights loads nothing else)."""

    format = 2

    def __init__(self, store: RoundStore):
        self.store = store
        self._records: list[dict] | None = None
        self._problems: list[str] = []

    def _scan(self) -> tuple[list[dict], list[str]]:
        records: list[dict] = []
        problems: list[str] = []
        for r in self.store.round_numbers():
            record, why = self.store.check(r)
            if why:
                problems.append(why)
            else:
                assert record is not None  # `check` gives a record exactly when it names no problem
                records.append(record)
        return records, problems

    def records(self) -> list[dict]:
        """The records of every complete round (a torn round is left out and named by `problems`)."""
        if self._records is None:
            self._records, self._problems = self._scan()
        return self._records

    def problems(self) -> list[str]:
        if self._records is None:
            self._records, self._problems = self._scan()
        return self._problems

    def masks(self, r: int) -> dict:
        return self.store.masks(r)

    def trained(self, r: int, masks=None) -> dict | None:
        return self.store.trained(r, masks)

    def early_stop(self, r: int, masks=None) -> dict | None:
        return self.store.early_stop(r, masks)

    def rewind(self) -> dict | None:
        return self.store.rewind()


@dataclass
class TrialResult:
    trial_id: str
    status: str  # Tune's: TERMINATED, ERROR, RUNNING, PENDING, PAUSED
    path: str  # the trial folder on `filesystem`
    config: TrajectoryConfig
    rounds: LegacyRounds | StoredRounds | None  # None when nothing was written yet (or could not be read)
    error: str | None = None  # why the trial could not be read, if it could not
    tune_trial_id: str = ""  # the Tune trial that ran it (a cohort's members share one); default: trial_id
    ticket_ref: str | None = None  # names the ticket a re-init baseline took its masks from (same on the ticket)
    branch: str = ""  # the branch that trained it ('' for the trunk's own members)
    planned: tuple[int, ...] | None = None  # a branch member's rounds (None: every round of its trajectory)

    def __post_init__(self):
        self.tune_trial_id = self.tune_trial_id or self.trial_id

    @property
    def records(self) -> list[dict]:
        """The finished rounds' records, in round order (histories included, weights not)."""
        return self.rounds.records() if self.rounds is not None else []

    @property
    def rounds_done(self) -> list[int]:
        return [rec["round"] for rec in self.records]

    @property
    def problems(self) -> list[str]:
        """Round files that are missing or torn (each such round is recomputed when the trial resumes)."""
        return self.rounds.problems() if self.rounds is not None else []

    @property
    def complete(self) -> bool:
        """Every planned round ran."""
        planned = self.planned if self.planned is not None else range(first_round(self.config), self.config.rounds + 1)
        return set(planned) <= set(self.rounds_done)

    @property
    def diverged_round(self) -> int | None:
        return next((rec["round"] for rec in self.records if rec.get("diverged")), None)

    @property
    def finished(self) -> bool:
        """Nothing left to run: complete, or stopped at a diverged round."""
        return self.complete or (self.diverged_round is not None and not self.problems)

    def rewind(self) -> dict[str, torch.Tensor]:
        """The weights the trial's rounds >= 1 start from (the init, rebuilt from the seed, unless stored)."""
        stored = self.rounds.rewind() if self.rounds is not None else None
        return stored if stored is not None else initial_weights(self.config)


def filesystem_and_path(uri: str) -> tuple[pafs.FileSystem, str]:
    if "://" in str(uri):
        return pafs.FileSystem.from_uri(str(uri))
    from pathlib import Path

    return pafs.LocalFileSystem(), str(Path(uri).expanduser().resolve())


@dataclass
class TuneTrial:
    """One trial as Tune's experiment snapshot lists it: the plain fields lth_ray uses."""

    trial_id: str
    status: str
    config: dict
    path: str  # the trial folder, inside the experiment folder
    last_result: dict


@dataclass
class TuneExperiment:
    path: str
    trials: list[TuneTrial]


def open_analysis(experiment: str) -> TuneExperiment:
    """The trials of Tune's newest experiment snapshot in a folder or URI, or an `ExperimentError` naming it.

    Read with `json` only. Tune's own readers (`ray.tune.ExperimentAnalysis`, `Tuner.restore`) unpickle
    cloudpickle blobs embedded in that JSON, so opening an experiment someone else wrote with them runs that
    person's code; here those blobs stay inert data. The fields kept are those `ExperimentAnalysis` gives
    lth_ray, with its meaning (a trial RUNNING at the snapshot is PENDING), and a trial folder is always a
    direct child of the experiment folder whatever the snapshot says.
    """
    fs, path = filesystem_and_path(experiment)
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        raise ExperimentError(f"{experiment} is not a folder")
    names = [
        PurePosixPath(i.path).name for i in fs.get_file_info(pafs.FileSelector(path)) if i.type == pafs.FileType.File
    ]
    snapshots = sorted(n for n in names if SNAPSHOT_RE.match(n))  # Tune's choice: the newest by name
    if not snapshots:
        raise ExperimentError(f"{experiment} is not a Tune experiment folder (no experiment_state-*.json in it)")
    snapshot = f"{path}/{snapshots[-1]}"
    try:
        with fs.open_input_stream(snapshot) as f:
            trial_data = json.loads(f.read())["trial_data"]
        trials = [_snapshot_trial(path, json.loads(trial), json.loads(run)) for trial, run in trial_data]
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ExperimentError(f"{snapshot} is not a Tune experiment snapshot ({type(err).__name__}: {err})") from None
    return TuneExperiment(path, trials)


def _snapshot_trial(root: str, trial: dict, run: dict) -> TuneTrial:
    status = str(trial["status"])
    config, last_result = trial["config"], run.get("last_result") or {}
    if not isinstance(config, dict) or not isinstance(last_result, dict):
        raise TypeError(f"trial {trial['trial_id']}: config and last result must be JSON objects")
    return TuneTrial(
        trial_id=str(trial["trial_id"]),
        status="PENDING" if status == "RUNNING" else status,
        config=config,
        path=f"{root}/{PurePosixPath(str(trial['relative_logdir'])).name}",
        last_result=last_result,
    )


def _claimed_round(fs: pafs.FileSystem, folder: str) -> int | None:
    """The `next_round` a checkpoint's small round file announces (None: no such file, or unreadable)."""
    try:
        with fs.open_input_stream(f"{folder}/{ROUND_FILE}") as f:
            return int(json.loads(f.read())["next_round"])
    except Exception:
        return None


def progress(state: dict) -> int:
    """How far a checkpoint state got: a cohort's count of finished member rounds, a trajectory's next round."""
    return state["progress"] if "progress" in state else state["next_round"]


def read_newest_state(fs: pafs.FileSystem, trial_path: str) -> tuple[dict | None, str | None]:
    """The state with the most finished rounds among a trial's readable checkpoints, and any read error.

    Chosen by the round inside, not by folder name: after a driver crash Tune may not know its newest
    checkpoint and later reuse that folder's index, so names need not follow rounds. Each checkpoint's small
    round file says which to load first, so only one state file is read in the usual case; a torn or foreign
    checkpoint is skipped (and named in the error) in favour of the next best.
    """
    selector = pafs.FileSelector(trial_path, allow_not_found=True)
    names = [
        PurePosixPath(i.path).name
        for i in fs.get_file_info(selector)
        if i.type == pafs.FileType.Directory and CHECKPOINT_RE.match(PurePosixPath(i.path).name)
    ]
    claims = {n: _claimed_round(fs, f"{trial_path}/{n}") for n in names}
    best, error = None, None
    for name in sorted(names, key=lambda n: (-1 if claims[n] is None else claims[n], n), reverse=True):
        claim = claims[name]
        if best is not None and claim is not None and claim <= progress(best):
            continue  # announces no more rounds than the state already read
        try:
            with fs.open_input_stream(f"{trial_path}/{name}/{STATE_FILE}") as f:
                state = torch.load(io.BytesIO(f.read()), map_location="cpu", weights_only=True)
        except Exception as err:  # a torn or foreign checkpoint: say which, use the others
            error = f"{trial_path}/{name}/{STATE_FILE}: {type(err).__name__}: {err}"
            continue
        if best is None or progress(state) > progress(best):
            best = state
    return best, error


WEIGHT_KEYS = ("init", "rewind", "trained", "dense_trained", "early_stop")  # of a 0.1.0 (format 1) state


def member_rounds_path(trial_path: str, key: str) -> str:
    """Where a cohort member's round files live inside its trial folder."""
    return f"{trial_path}/{ROUNDS_DIR}/{key}"


def trial_rounds(
    fs: pafs.FileSystem, trial_path: str, weights: bool = True
) -> tuple[LegacyRounds | StoredRounds | None, str | None]:
    """(rounds reader, read error) of one trial folder: its round files (this version), else a 0.1.0 state.

    `weights=False` drops a 0.1.0 state's weights (`WEIGHT_KEYS`) as it is read: what analysis needs."""
    store = RoundStore(fs, f"{trial_path}/{ROUNDS_DIR}")
    if store.round_numbers():
        return StoredRounds(store), None
    state, error = read_newest_state(fs, trial_path)
    if state is None or state.get("format") != 1:
        return None, error  # no round finished yet (a checkpoint of this version always has round files)
    if not weights:
        for key in WEIGHT_KEYS:
            state.pop(key, None)
    return LegacyRounds(state), error


def load_trials(experiment: str, analysis=None, weights: bool = True) -> list[TrialResult]:
    """Every trajectory of the experiment with its config, status and (lazily read) rounds, in the sweep's order.

    A cohort trial gives one `TrialResult` per member (id `<trial id>-m<index>`, its rounds under
    `<trial>/rounds/<member key>/`); a trial of one trajectory (before cohorts) gives one. Nothing heavy is read
    here: a trial's records are read when first asked for, its weights only round by round. An experiment whose
    trials were written by different lth_ray formats is refused, never mixed.
    """
    analysis = analysis or open_analysis(experiment)
    fs, root = filesystem_and_path(experiment)
    trials = []
    for trial in analysis.trials:
        trial_path = f"{root}/{PurePosixPath(trial.path).name}"
        if "cohort" in trial.config:
            for i, raw in enumerate(trial.config["cohort"]):
                config = TrajectoryConfig.from_dict(raw)
                store = RoundStore(fs, member_rounds_path(trial_path, config.key))
                trials.append(
                    TrialResult(
                        f"{trial.trial_id}-m{i:03d}",
                        str(trial.status),
                        trial_path,
                        config,
                        StoredRounds(store) if store.round_numbers() else None,
                        None,
                        trial.trial_id,
                        f"{trial.trial_id}/seed{config.seed}",
                    )
                )
            continue
        if "trajectory" not in trial.config:
            raise ExperimentError(
                f"{experiment}: trial {trial.trial_id} was not made by lth_ray "
                "(no 'cohort' or 'trajectory' in its config)"
            )
        config = TrajectoryConfig.from_dict(trial.config["trajectory"])
        rounds, error = trial_rounds(fs, trial_path, weights)
        trials.append(
            TrialResult(
                trial.trial_id,
                str(trial.status),
                trial_path,
                config,
                rounds,
                error,
                ticket_ref=trial.config["trajectory"].get("mask_store"),
            )
        )
    trials = sorted(trials, key=lambda t: t.trial_id) + branch_trials(experiment)
    formats = {t.rounds.format for t in trials if t.rounds is not None}
    if len(formats) > 1:
        raise ExperimentError(
            f"{experiment} mixes trials of lth_ray 0.1.0 (state format 1) and of format 2; "
            "export its trials separately or rerun the sweep"
        )
    return trials  # the trunk's by id (ids end in the trial's index in the sweep's grid), then the branches'


def branch_names(experiment: str) -> list[str]:
    """The branches grown from an experiment (`lth-ray branch`), by folder name."""
    fs, root = filesystem_and_path(experiment)
    found = fs.get_file_info(pafs.FileSelector(f"{root}/{BRANCHES_DIR}", allow_not_found=True))
    return sorted(PurePosixPath(i.path).name for i in found if i.type == pafs.FileType.Directory)


def branch_trials(experiment: str) -> list[TrialResult]:
    """Every member of every branch of the experiment: one `TrialResult` each, id `<branch>.<trial id>-m<index>`,
    with its branch, its rounds and the trunk ticket it grew from (`ticket_ref`, the ticket's own)."""
    fs, root = filesystem_and_path(experiment)
    out = []
    for name in branch_names(experiment):
        try:
            analysis = open_analysis(f"{str(experiment).rstrip('/')}/{BRANCHES_DIR}/{name}")
        except ExperimentError:
            continue  # a branch that never started a trial
        for trial in sorted(analysis.trials, key=lambda t: t.trial_id):
            branch = trial.config.get("branch") or {}
            trial_path = f"{root}/{BRANCHES_DIR}/{name}/{PurePosixPath(trial.path).name}"
            for i, raw in enumerate(trial.config.get("cohort", [])):
                config = TrajectoryConfig.from_dict(raw)
                store = RoundStore(fs, member_rounds_path(trial_path, config.key))
                ticket = (branch.get("tickets") or {}).get(config.key, {})
                result = TrialResult(
                    f"{name}.{trial.trial_id}-m{i:03d}",
                    str(trial.status),
                    trial_path,
                    config,
                    StoredRounds(store) if store.round_numbers() else None,
                    tune_trial_id=trial.trial_id,
                    ticket_ref=ticket.get("ref"),
                    branch=name,
                    planned=tuple((branch.get("planned") or {}).get(config.key, ())) or None,
                )
                out.append(result)
    return out


def experiment_format(trials: list[TrialResult]) -> int | None:
    """The state format the experiment's trials were written in (1: lth_ray 0.1.0), None if none wrote any."""
    return next((t.rounds.format for t in trials if t.rounds is not None), None)
