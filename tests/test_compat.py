"""Experiments written by lth_ray 0.1.0 (state format 1: every round inside one growing checkpoint state).

`tests/data/v010-experiment` is a real one: a tiny sweep (a 16-unit Lenet, ticket + reinit + random-prune,
rounds 0..2) run by the 0.1.0 code (commit 6b71ed0) on Ray Tune. It must still export and analyse, and a
`--resume` of it must be refused with one line naming the format, never continued in another format.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import PYTHON, ROOT
from lth_ray.results import analysis as A
from lth_ray.results import thesis
from lth_ray.results.experiment import ExperimentError, experiment_format, load_trials
from lth_ray.results.export import export_experiment

V010 = ROOT / "tests" / "data" / "v010-experiment"


@pytest.fixture
def old(tmp_path) -> Path:
    return Path(shutil.copytree(V010, tmp_path / "v010"))


def test_an_old_experiment_exports_in_the_current_layout(old, tmp_path):
    trials = load_trials(str(old))
    assert experiment_format(trials) == 1 and all(t.complete for t in trials)
    out = export_experiment(str(old), str(tmp_path / "out"), report=lambda line: None)
    histories, rounds = thesis.load_parquet(out)
    assert sorted(rounds.method.unique()) == ["imp", "random-prune", "reinit"]
    assert len(rounds) == 3 + 2 + 2
    assert (rounds["start_iteration"] == 0).all() and (rounds["steps"] == 40).all() and not rounds.diverged.any()
    assert (rounds["precision"] == "unknown").all()  # 0.1.0 did not choose the GPU numerics
    [specs_file] = thesis.get_relative_spec_file_paths(out)
    prefix = thesis.extract_experiment_path_prefix(specs_file)
    h = thesis.get_experiment_histories_from_file(prefix)
    assert h.val_loss.shape == (1, 3, 2) and not np.isnan(h.val_loss).any()
    ticket = next(t for t in trials if t.config.method == "imp")
    net = torch.load(f"{prefix}-net0.pth", weights_only=True)
    old_state = ticket.rounds.state
    assert torch.equal(net["fc.0.weight_orig"], old_state["trained"]["fc.0.weight"])
    assert torch.equal(net["fc.0.weight_init"], old_state["rewind"]["fc.0.weight"])
    es = thesis.get_early_stop_history_from_file(prefix, thesis.get_specs_from_file(specs_file), 0)
    assert len(es.state_dicts) == 3 and all(sd is not None for sd in es.state_dicts)


def test_an_old_experiment_analyses_and_reports(old, tmp_path):
    exp = A.load_experiment(old)
    assert len(exp.trials) == 3 and exp.trials["complete"].all()
    assert exp.mask(exp.trials.trial_id.iloc[0], 2)["fc.0"].dtype == bool
    from lth_ray.results.report import main
    assert main([str(old), "--out", str(tmp_path / "report")]) == 0
    assert "## Winning tickets" in (tmp_path / "report" / "summary.md").read_text()


def test_resuming_an_old_experiment_is_refused_in_one_line(old):
    out = subprocess.run([PYTHON, "-m", "sweeps.lenet_mnist", "--storage", str(old.parent), "--name", old.name,
                          "--resume", "--data-root", str(old)], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert "written by lth_ray 0.1.0 (state format 1)" in out.stderr and "finish it with lth_ray 0.1.0" in out.stderr


def test_an_experiment_mixing_formats_is_refused(old, split_free_new_trial):
    shutil.copytree(split_free_new_trial, old / split_free_new_trial.name)
    state = json.loads(sorted(old.glob("experiment_state-*.json"))[-1].read_text())
    trial, run = state["trial_data"][0]
    trial = json.loads(trial)
    trial["trial_id"] = "mixed_00009"
    trial["relative_logdir"] = split_free_new_trial.name
    state["trial_data"].append([json.dumps(trial), run])
    sorted(old.glob("experiment_state-*.json"))[-1].write_text(json.dumps(state))
    with pytest.raises(ExperimentError, match="mixes trials of lth_ray 0.1.0"):
        load_trials(str(old))


@pytest.fixture
def split_free_new_trial(tmp_path, tiny_mnist) -> Path:
    """A trial folder with round files of this version (written by the core, no Ray)."""
    from lth_ray.core.spec.config import TrajectoryConfig
    from lth_ray.core.data.loading import load_split
    from lth_ray.core.store.rounds import RoundStore
    from lth_ray.core.engine.trajectory import Trajectory
    cfg = TrajectoryConfig(arch="custom", plan_fc=(16,), dataset="mnist", iterations=20, eval_every=20,
                           rounds=0).validate()
    folder = tmp_path / "new-trial"
    store = RoundStore.at(str(folder / "rounds"))
    for result in Trajectory(cfg, load_split("mnist", str(tiny_mnist))).run_results():
        store.write_round(result)
    return folder
