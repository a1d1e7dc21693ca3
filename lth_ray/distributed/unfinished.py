"""The sweep `--resume` continues when no `--name` is given: the newest unfinished one in `--storage`.

A default name is a timestamp, so nobody should have to copy it from the first line of output. A sweep is a
Tune experiment folder directly under the storage (`tuner.pkl`, which `Tuner.restore` needs, and Tune's
experiment snapshots `experiment_state-*.json`) whose trials are lth_ray's; it is unfinished when its newest
snapshot lists a trial that is not TERMINATED, or no trial yet. Tune writes a snapshot after a SIGINT too,
with the trials it stopped still RUNNING, and a killed driver leaves its last one as it was. Newest means
the newest snapshot's modification time. Snapshots are read as JSON only (see `lth_ray.results.experiment`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import PurePosixPath

from pyarrow import fs as pafs

from lth_ray.core.spec.config import ConfigError
from lth_ray.results.experiment import SNAPSHOT_RE, filesystem_and_path

TUNER_FILE = "tuner.pkl"


@dataclass(frozen=True)
class Candidates:
    """The unfinished sweeps of a storage: the one `--resume` continues, and the others, newest first."""

    storage: str
    chosen: str
    others: tuple[str, ...] = ()

    @property
    def note(self) -> str:
        """What the driver prints: which sweep it resumes, and which others it could have."""
        others = f"; others: {', '.join(self.others)}" if self.others else ""
        return f"resuming {self.chosen} (newest unfinished sweep in {self.storage}{others})"


def _newest_snapshot(fs: pafs.FileSystem, folder: str) -> pafs.FileInfo | None:
    """The snapshot Tune would restore from (the newest by name), if the folder can be restored at all."""
    files = {
        PurePosixPath(i.path).name: i
        for i in fs.get_file_info(pafs.FileSelector(folder))
        if i.type == pafs.FileType.File
    }
    snapshots = sorted(n for n in files if SNAPSHOT_RE.match(n))
    return files[snapshots[-1]] if snapshots and TUNER_FILE in files else None


def _is_unfinished(fs: pafs.FileSystem, snapshot: str) -> bool:
    """Some trial of lth_ray's is not TERMINATED (or none was made yet); False for a torn or foreign snapshot."""
    try:
        with fs.open_input_stream(snapshot) as f:
            trials = [json.loads(trial) for trial, _ in json.loads(f.read())["trial_data"]]
        if any("cohort" not in t["config"] and "trajectory" not in t["config"] for t in trials):
            return False  # another program's Tune experiment
        return not trials or any(t["status"] != "TERMINATED" for t in trials)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def unfinished_sweeps(storage: str) -> Candidates:
    """Every unfinished sweep directly under `storage` (a folder or URI), newest first, or a ConfigError."""
    fs, root = filesystem_and_path(storage)
    found = []
    if fs.get_file_info(root).type == pafs.FileType.Directory:
        for info in fs.get_file_info(pafs.FileSelector(root)):
            if info.type != pafs.FileType.Directory or PurePosixPath(info.path).name.startswith("."):
                continue
            snapshot = _newest_snapshot(fs, info.path)
            if snapshot is not None and _is_unfinished(fs, snapshot.path):
                found.append((snapshot.mtime_ns or 0, PurePosixPath(info.path).name))
    if not found:
        raise ConfigError(f"no unfinished sweep in {storage}; give --name")
    names = [name for _, name in sorted(found, reverse=True)]
    return Candidates(storage, names[0], tuple(names[1:]))


def newest_unfinished(storage: str) -> str:
    """The name of the newest unfinished sweep in `storage`, or a ConfigError saying there is none."""
    return unfinished_sweeps(storage).chosen
