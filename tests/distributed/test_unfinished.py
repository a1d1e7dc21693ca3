"""`--resume` without `--name`: the newest unfinished sweep of a storage folder, from Tune's snapshots."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lth_ray.core.spec.config import ConfigError
from lth_ray.distributed.unfinished import Candidates, newest_unfinished, unfinished_sweeps


def write_sweep(
    storage: Path, name: str, statuses: list[str], mtime: float, config: dict | None = None, tuner: bool = True
) -> Path:
    """A Tune experiment folder as Tune leaves it: tuner.pkl and a snapshot listing the trials' statuses."""
    folder = storage / name
    folder.mkdir(parents=True)
    if tuner:
        (folder / "tuner.pkl").write_bytes(b"not read")
    trials = [
        [
            json.dumps(
                {"trial_id": f"t{i}", "status": s, "config": config or {"cohort": []}, "relative_logdir": f"trial_{i}"}
            ),
            json.dumps({"last_result": {}}),
        ]
        for i, s in enumerate(statuses)
    ]
    older = folder / "experiment_state-2026-01-01_00-00-00.json"  # Tune reads the newest by name, not this
    running = json.dumps({"trial_id": "t0", "status": "RUNNING", "config": {"cohort": []}, "relative_logdir": "x"})
    older.write_text(json.dumps({"trial_data": [[running, "{}"]]}))
    snapshot = folder / "experiment_state-2026-01-02_00-00-00.json"
    snapshot.write_text(json.dumps({"trial_data": trials}))
    os.utime(older, (mtime - 100, mtime - 100))
    os.utime(snapshot, (mtime, mtime))
    return folder


def test_newest_unfinished_by_the_snapshots_time(tmp_path):
    write_sweep(tmp_path, "lenet_mnist-20260101-000000", ["TERMINATED", "RUNNING"], 1000)
    write_sweep(tmp_path, "lenet_mnist-20260102-000000", ["PENDING", "ERROR"], 3000)
    write_sweep(tmp_path, "named", ["TERMINATED", "PAUSED"], 2000)
    write_sweep(tmp_path, "finished", ["TERMINATED", "TERMINATED"], 9000)
    found = unfinished_sweeps(str(tmp_path))
    assert found == Candidates(str(tmp_path), "lenet_mnist-20260102-000000", ("named", "lenet_mnist-20260101-000000"))
    assert found.note == (
        f"resuming lenet_mnist-20260102-000000 (newest unfinished sweep in {tmp_path}; "
        "others: named, lenet_mnist-20260101-000000)"
    )
    assert newest_unfinished(str(tmp_path)) == "lenet_mnist-20260102-000000"


def test_one_candidate_and_a_snapshot_without_trials(tmp_path):
    write_sweep(tmp_path, "started", [], 1000)  # killed before its first trial: restore makes them
    found = unfinished_sweeps(str(tmp_path))
    assert (found.chosen, found.others) == ("started", ())
    assert found.note == f"resuming started (newest unfinished sweep in {tmp_path})"


def test_what_is_not_a_candidate(tmp_path):
    write_sweep(tmp_path, "finished", ["TERMINATED"], 1000)
    write_sweep(tmp_path, "no-tuner", ["RUNNING"], 2000, tuner=False)  # Tuner.restore could not continue it
    write_sweep(tmp_path, "foreign", ["RUNNING"], 3000, config={"lr": 0.1})  # not lth_ray's trials
    torn = write_sweep(tmp_path, "torn", ["RUNNING"], 4000)
    (torn / "experiment_state-2026-01-02_00-00-00.json").write_text('{"trial_da')
    (tmp_path / "notes.txt").write_text("a file, not a sweep")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=f"^no unfinished sweep in {tmp_path}; give --name$"):
        newest_unfinished(str(tmp_path))
    with pytest.raises(ConfigError, match="no unfinished sweep in .*missing; give --name"):
        newest_unfinished(str(tmp_path / "missing"))


def test_file_uri(tmp_path):
    write_sweep(tmp_path, "s", ["RUNNING"], 1000)
    assert newest_unfinished(f"file://{tmp_path}") == "s"


@pytest.mark.e2e
def test_a_finished_real_sweep_is_not_a_candidate(tiny_experiment):
    """Tune's own snapshot of a sweep that ran to the end says TERMINATED for every trial."""
    with pytest.raises(ConfigError, match="no unfinished sweep"):
        newest_unfinished(str(tiny_experiment.parent))
