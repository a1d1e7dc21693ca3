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
    out = subprocess.run(
        [
            PYTHON,
            "-m",
            "sweeps.lenet_mnist",
            "--storage",
            str(old.parent),
            "--name",
            old.name,
            "--resume",
            "--data-root",
            str(old),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
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
    from lth_ray.core.data.loading import load_split
    from lth_ray.core.engine.trajectory import Trajectory
    from lth_ray.core.spec.config import TrajectoryConfig
    from lth_ray.core.store.rounds import RoundStore

    cfg = TrajectoryConfig(
        arch="custom", plan_fc=(16,), dataset="mnist", iterations=20, eval_every=20, rounds=0
    ).validate()
    folder = tmp_path / "new-trial"
    store = RoundStore.at(str(folder / "rounds"))
    for result in Trajectory(cfg, load_split("mnist", str(tiny_mnist))).run_results():
        store.write_round(result)
    return folder


# ---------------------------------------------------------------- today's format (state format 2), recorded on bcb7175
#
# `tests/data/v020-experiment` is a real experiment of the format this version writes (round files per member,
# state format 2, cohort trials): a tiny sweep run by the code of commit bcb7175 on Ray Tune 2.60, before issue
# 21's refactor; `python -m sweeps.lenet_mnist --dataset mnist --data-root <conftest.make_mnist_like's default
# data> --rounds 2 --iterations 40 --eval-every 20 --plan-fc 16 --seeds 2 --baselines reinit,random-prune
# --num-gpus 0 --device cpu --no-export --keep-checkpoints 1 --name v020-experiment` (2 Tune trials, one cohort
# of ticket + random-prune + re-init per seed; Tune's tfevents files dropped). (lth_ray.__version__ still read
# 0.1.0 at bcb7175; the folder is named for 0.2, the format after 0.1.0's.) It must keep exporting, analysing and
# resuming after the refactor, and its numbers must stay today's. Tune stores the experiment's absolute path
# (/tmp/v020-storage) in its state; restoring a copy elsewhere works (Tune 2.60 takes the folder it is given).

V020 = ROOT / "tests" / "data" / "v020-experiment"
# `tests/data/v030-experiment`: the same sweep run by the code of 19a5736 (0.3.0), with the modern recipe's
# settings (`--optimizer sgd --momentum 0.9 --learning-rate 0.05 --warmup 10it`) recorded in its configs.
V030 = ROOT / "tests" / "data" / "v030-experiment"
V020_METHODS = ["imp", "random-prune", "reinit"]
# What a round's record holds since lth_ray 0.5 (what a ticket is made of: issue 30), beside the unchanged rest.
NEW_RECORD_KEYS = {
    "start_val_loss",
    "start_val_acc",
    "start_test_loss",
    "start_test_acc",
    "mask_distance",
    "layer_mask_distance",
    "sign_flip_share",
    "layer_sign_flip_share",
    "cost",
}


RECORDED = {"v020": V020, "v030": V030}


@pytest.fixture(params=sorted(RECORDED))
def v020(request, tmp_path) -> Path:
    """A copy of a recorded experiment of state format 2: 0.2's (bcb7175) or 0.3's (19a5736)."""
    return Path(shutil.copytree(RECORDED[request.param], tmp_path / request.param))


def test_a_v020_experiment_exports_in_the_current_layout(v020, tmp_path):
    trials = load_trials(str(v020))
    assert experiment_format(trials) == 2 and len(trials) == 6 and all(t.complete for t in trials)
    assert len({t.tune_trial_id for t in trials}) == 2  # one cohort trial per seed
    out = export_experiment(str(v020), str(tmp_path / "out"), report=lambda line: None)
    histories, rounds = thesis.load_parquet(out)
    assert sorted(rounds.method.unique()) == V020_METHODS and sorted(rounds.seed.unique()) == [0, 1]
    assert len(rounds) == 2 * (3 + 2 + 2) and len(histories) == 2 * len(rounds)  # 2 evaluations a round
    assert sorted(rounds[rounds.method == "imp"]["round"]) == [0, 0, 1, 1, 2, 2]
    assert sorted(rounds[rounds.method != "imp"]["round"]) == [1] * 4 + [2] * 4
    assert (rounds["start_iteration"] == 0).all() and (rounds["steps"] == 40).all() and not rounds.diverged.any()
    assert (rounds["precision"] == "fp32").all() and (rounds["plan_fc"] == "16").all()
    by_key = {(t.config.method, t.config.seed): t for t in trials}
    for row in rounds.itertuples():
        record = next(r for r in by_key[(row.method, row.seed)].records if r["round"] == row.round)
        assert (row.sparsity, row.final_test_acc, row.early_stop_iteration) == (
            record["sparsity"],
            record["final_test_acc"],
            record["early_stop_iteration"],
        )
    [specs_file] = thesis.get_relative_spec_file_paths(out)
    prefix = thesis.extract_experiment_path_prefix(specs_file)
    h = thesis.get_experiment_histories_from_file(prefix)
    assert h.val_loss.shape == (2, 3, 2) and not np.isnan(h.val_loss).any()
    ticket = by_key[("imp", 0)]
    net = torch.load(f"{prefix}-net0.pth", weights_only=True)
    assert torch.equal(net["fc.0.weight_orig"], ticket.rounds.trained(2)["fc.0.weight"])
    assert torch.equal(net["fc.0.weight_mask"].bool(), ticket.rounds.masks(2)["fc.0"])
    es = thesis.get_early_stop_history_from_file(prefix, thesis.get_specs_from_file(specs_file), 0)
    assert len(es.state_dicts) == 3 and all(sd is not None for sd in es.state_dicts)


def test_a_v020_experiment_analyses_and_reports(v020, tmp_path):
    exp = A.load_experiment(v020)
    assert len(exp.trials) == 6 and exp.trials["complete"].all()
    assert sorted(exp.trials.method.unique()) == V020_METHODS
    assert exp.mask(exp.trials.trial_id.iloc[0], 2)["fc.0"].dtype == bool
    from lth_ray.results.report import main

    assert main([str(v020), "--out", str(tmp_path / "report")]) == 0
    assert "## Winning tickets" in (tmp_path / "report" / "summary.md").read_text()


def _files_by_digest(folder: Path) -> dict[str, str]:
    import hashlib

    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_a_v020_experiment_resumes_from_its_new_folder_as_finished(v020, ray_cluster):
    """`--resume` of the copied (finished) sweep: Tuner.restore from the folder it now lies in, not the absolute
    path Tune recorded; it succeeds and leaves every trial's files (rounds, checkpoints) exactly as they were."""
    import os

    before = {d.name: _files_by_digest(d) for d in v020.iterdir() if d.is_dir()}
    records = {t.trial_id: t.records for t in load_trials(str(v020))}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [
            PYTHON,
            "-m",
            "sweeps.lenet_mnist",
            "--storage",
            str(v020.parent),
            "--name",
            v020.name,
            "--resume",
            "--no-export",
            "--device",
            "cpu",
            "--address",
            ray_cluster.address,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert f"sweep {v020.name}: 6/6 trajectories complete" in out.stdout and f"results: {v020}" in out.stdout
    assert {d.name: _files_by_digest(d) for d in v020.iterdir() if d.is_dir()} == before  # no round rerun
    assert len(list(v020.glob("experiment_state-*.json"))) == 2  # the restored run's state, written here
    after = load_trials(str(v020))
    assert all(t.status == "TERMINATED" and t.complete for t in after)
    assert {t.trial_id: t.records for t in after} == records


def test_a_v020_experiments_numbers_are_todays(v020, tiny_mnist):
    """Each trial's cohort, rerun without Ray on the same data (conftest's tiny MNIST look-alike, which the
    sweep was run on) with the trial's one thread, gives the recorded rounds bitwise: histories and weights."""
    import golden_cases as G

    from lth_ray import Cohort
    from lth_ray.core.data.loading import load_split

    split = load_split("mnist", str(tiny_mnist))
    by_trial: dict[str, list] = {}
    for t in load_trials(str(v020)):
        by_trial.setdefault(t.tune_trial_id, []).append(t)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for members in by_trial.values():
            members.sort(key=lambda t: t.trial_id)  # the cohort's member order
            rounds = list(Cohort([t.config for t in members], split).run_results())
            for i, t in enumerate(members):
                mine = [results[i] for results in rounds if i in results]
                assert [res.record["round"] for res in mine] == t.rounds_done
                for res, stored in zip(mine, t.records):
                    r = res.record["round"]
                    now = json.loads(
                        json.dumps({k: v for k, v in res.record.items() if k not in ("seconds", "device_name")})
                    )
                    assert set(now) - set(stored) == NEW_RECORD_KEYS, (t.config.key, r)  # recorded since 0.5
                    now = {k: v for k, v in now.items() if k in stored}
                    then = {k: stored[k] for k in now}
                    assert G.same(now, then), (t.config.key, r, G.first_difference(now, then))
                    packed = t.rounds.store.packed_masks(r)
                    assert packed.keys() == res.masks.keys() and all(
                        packed[n]["shape"] == res.masks[n]["shape"]
                        and torch.equal(packed[n]["bits"], res.masks[n]["bits"])
                        for n in packed
                    ), (t.config.key, r)
                    trained = t.rounds.store.compact_trained(r)
                    assert trained.keys() == res.trained.keys()
                    assert all(torch.equal(res.trained[k], trained[k]) for k in trained), (t.config.key, r)
    finally:
        torch.set_num_threads(threads)
