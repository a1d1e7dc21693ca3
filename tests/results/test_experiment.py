"""Reading a trial's checkpoints: the newest state wins by the round inside; torn files are skipped."""

import json

import torch
from pyarrow import fs as pafs

from lth_ray.results.experiment import ROUND_FILE, STATE_FILE, read_newest_state


def checkpoint(trial, index, next_round, claim=True, torn=False):
    folder = trial / f"checkpoint_{index:06d}"
    folder.mkdir(parents=True)
    if torn:
        (folder / STATE_FILE).write_bytes(b"not a torch file")
    else:
        torch.save(
            {"next_round": next_round, "records": [{"round": r} for r in range(next_round)]}, folder / STATE_FILE
        )
    if claim:
        (folder / ROUND_FILE).write_text(json.dumps({"next_round": next_round}))


def test_newest_by_round_not_by_folder_name(tmp_path):
    checkpoint(tmp_path, 0, 3)
    checkpoint(tmp_path, 1, 2)  # a later folder index holding fewer rounds (index reused after a crash)
    state, error = read_newest_state(pafs.LocalFileSystem(), str(tmp_path))
    assert state["next_round"] == 3 and error is None


def test_only_the_announced_newest_state_is_read(tmp_path):
    checkpoint(tmp_path, 0, 1, torn=True)  # would be an error if it were read
    checkpoint(tmp_path, 1, 2)
    state, error = read_newest_state(pafs.LocalFileSystem(), str(tmp_path))
    assert state["next_round"] == 2 and error is None


def test_torn_newest_falls_back_and_is_named(tmp_path):
    checkpoint(tmp_path, 0, 1)
    checkpoint(tmp_path, 1, 3, torn=True)
    checkpoint(tmp_path, 2, 2, claim=False)  # no round file (e.g. copied by hand): read to be sure
    state, error = read_newest_state(pafs.LocalFileSystem(), str(tmp_path))
    assert state["next_round"] == 2
    assert "checkpoint_000001" in error and STATE_FILE in error


def test_no_checkpoints(tmp_path):
    assert read_newest_state(pafs.LocalFileSystem(), str(tmp_path / "missing")) == (None, None)
