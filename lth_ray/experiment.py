"""Read a Tune experiment folder (local path or URI): its trials, their configs, statuses and latest states.

Shared by the exporter and the analysis. It reads files only, through `ray.tune.ExperimentAnalysis` and
pyarrow filesystems, so it works without a running Ray, on a sweep still running, and on cloud storage.
The trajectory state in a trial's newest readable checkpoint is the source of truth for its histories
(Tune's result rows can repeat a round after a restart; the state cannot).
"""
from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

import torch
from pyarrow import fs as pafs

from .config import TrajectoryConfig
from .trajectory import finished

STATE_FILE = "state.pt"  # the trajectory state the trainable writes inside each checkpoint folder
ROUND_FILE = "round.json"  # beside it: {"next_round": n}, so the newest state is found without reading all
CHECKPOINT_RE = re.compile(r"^checkpoint_(\d+)$")


class ExperimentError(ValueError):
    """The folder is not a readable lth_ray Tune experiment; the message names the folder or file."""


@dataclass
class TrialResult:
    trial_id: str
    status: str              # Tune's: TERMINATED, ERROR, RUNNING, PENDING, PAUSED
    path: str                # the trial folder on `filesystem`
    config: TrajectoryConfig
    state: dict | None       # latest trajectory state; None when no round has finished yet
    error: str | None = None  # why the state could not be read, if it could not

    @property
    def rounds_done(self) -> list[int]:
        return [rec["round"] for rec in self.state["records"]] if self.state else []

    @property
    def complete(self) -> bool:
        """Every planned round ran."""
        return bool(self.state) and self.state["next_round"] > self.config.rounds

    @property
    def diverged_round(self) -> int | None:
        return self.state.get("diverged_round") if self.state else None

    @property
    def finished(self) -> bool:
        """Nothing left to run: complete, or stopped at a diverged round."""
        return finished(self.state, self.config)


def filesystem_and_path(uri: str) -> tuple[pafs.FileSystem, str]:
    if "://" in str(uri):
        return pafs.FileSystem.from_uri(str(uri))
    from pathlib import Path
    return pafs.LocalFileSystem(), str(Path(uri).expanduser().resolve())


def open_analysis(experiment: str):
    """`ray.tune.ExperimentAnalysis` of a folder or URI, or an `ExperimentError` naming it."""
    from ray.tune import ExperimentAnalysis
    fs, path = filesystem_and_path(experiment)
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        raise ExperimentError(f"{experiment} is not a folder")
    try:
        return ExperimentAnalysis(path, storage_filesystem=fs)
    except (ValueError, FileNotFoundError) as err:
        first = str(err).splitlines()[0]
        raise ExperimentError(f"{experiment} is not a Tune experiment folder ({first})") from None


def _claimed_round(fs: pafs.FileSystem, folder: str) -> int | None:
    """The `next_round` a checkpoint's small round file announces (None: no such file, or unreadable)."""
    try:
        with fs.open_input_stream(f"{folder}/{ROUND_FILE}") as f:
            return int(json.loads(f.read())["next_round"])
    except Exception:
        return None


def read_newest_state(fs: pafs.FileSystem, trial_path: str) -> tuple[dict | None, str | None]:
    """The state with the most finished rounds among a trial's readable checkpoints, and any read error.

    Chosen by the round inside, not by folder name: after a driver crash Tune may not know its newest
    checkpoint and later reuse that folder's index, so names need not follow rounds. Each checkpoint's small
    round file says which to load first, so only one state file is read in the usual case; a torn or foreign
    checkpoint is skipped (and named in the error) in favour of the next best.
    """
    selector = pafs.FileSelector(trial_path, allow_not_found=True)
    names = [PurePosixPath(i.path).name for i in fs.get_file_info(selector)
             if i.type == pafs.FileType.Directory and CHECKPOINT_RE.match(PurePosixPath(i.path).name)]
    claims = {n: _claimed_round(fs, f"{trial_path}/{n}") for n in names}
    best, error = None, None
    for name in sorted(names, key=lambda n: (-1 if claims[n] is None else claims[n], n), reverse=True):
        if best is not None and claims[name] is not None and claims[name] <= best["next_round"]:
            continue  # announces no more rounds than the state already read
        try:
            with fs.open_input_stream(f"{trial_path}/{name}/{STATE_FILE}") as f:
                state = torch.load(io.BytesIO(f.read()), map_location="cpu", weights_only=True)
        except Exception as err:  # a torn or foreign checkpoint: say which, use the others
            error = f"{trial_path}/{name}/{STATE_FILE}: {type(err).__name__}: {err}"
            continue
        if best is None or state["next_round"] > best["next_round"]:
            best = state
    return best, error


WEIGHT_KEYS = ("init", "rewind", "trained", "dense_trained", "early_stop")


def load_trials(experiment: str, analysis=None, weights: bool = True) -> list[TrialResult]:
    """Every trial of the experiment with its config, status and latest state, in the sweep's order.

    `weights=False` drops the state's weights (`WEIGHT_KEYS`) as each trial is read, keeping records and
    masks: what analysis needs, at a small fraction of the memory for Conv sweeps.
    """
    analysis = analysis or open_analysis(experiment)
    fs, root = filesystem_and_path(experiment)
    trials = []
    for trial in analysis.trials:
        if "trajectory" not in trial.config:
            raise ExperimentError(f"{experiment}: trial {trial.trial_id} was not made by lth_ray "
                                  "(no 'trajectory' in its config)")
        config = TrajectoryConfig.from_dict(trial.config["trajectory"])
        trial_path = f"{root}/{PurePosixPath(trial.path).name}"
        state, error = read_newest_state(fs, trial_path)
        if state is not None and not weights:
            for key in WEIGHT_KEYS:
                state.pop(key, None)
        trials.append(TrialResult(trial.trial_id, str(trial.status), trial_path, config, state, error))
    return sorted(trials, key=lambda t: t.trial_id)  # ids end in the trial's index in the sweep's grid
