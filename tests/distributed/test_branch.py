"""`lth-ray branch`: its refusals (one `error:` line naming the value and what is allowed, nothing touched) and its
plan, on a copy of a recorded experiment (no Ray); and one real branch of the session's tiny sweep (Ray)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

from lth_ray.cli import main as cli_main
from lth_ray.distributed import branch
from lth_ray.distributed.running import MARKER

V030 = ROOT / "tests" / "data" / "v030-experiment"  # 2 seeds of imp + reinit + random-prune, rounds 0..2


def digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, by relative path."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def trunk(tmp_path, monkeypatch) -> Path:
    monkeypatch.setattr(branch, "check_data", lambda members: None)  # its data set is not on this machine
    return Path(shutil.copytree(V030, tmp_path / "v030"))


def refuse(capsys, argv: list[str], folder: Path, *words: str) -> None:
    before = digest(folder)
    assert cli_main(["branch", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    for w in words:
        assert w in err[0], err[0]
    assert digest(folder) == before  # nothing touched


def test_bad_input_is_one_error_line_and_touches_nothing(trunk, tmp_path, capsys):
    refuse(capsys, [str(trunk), "nope"], trunk, "branch kind 'nope' is unknown; allowed: reinit, random-prune, snip")
    refuse(capsys, [str(trunk), "reinit", "--rounds", "3"], trunk, "round 3 is not finished", "available: 0-2")
    refuse(capsys, [str(trunk), "reinit", "--rounds", "0"], trunk, "reinit starts at round 1", "allowed: 1..2")
    refuse(capsys, [str(trunk), "reinit", "--seeds", "7"], trunk, "no ticket of seed 7; available: 0, 1")
    refuse(capsys, [str(trunk), "invert", "--of", "random-prune"], trunk, "adds no member to a random-prune")
    empty = tmp_path / "empty"
    empty.mkdir()
    refuse(capsys, [str(empty), "reinit"], empty, "is not a Tune experiment folder", "<storage>/<name>")
    (ticket,) = trunk.glob("*_00000/rounds/*-imp-*")
    (ticket / "round_002" / "masks.pt").unlink()
    refuse(capsys, [str(trunk), "reinit", "--rounds", "1-2"], trunk, "torn or missing", "round 2: masks.pt is missing")
    (trunk / MARKER).write_text(json.dumps({"host": os.uname().nodename, "pid": os.getpid(), "started": 0}))
    refuse(capsys, [str(trunk), "reinit", "--rounds", "1"], trunk, "still being written by a sweep", f"{os.getpid()}")


def test_retrain_settings_name_the_branch_and_bad_ones_are_refused(trunk, capsys):
    argv = [str(trunk), "retrain", "--set", "learning_rate=0.01", "--set", "dataset=fashion-mnist", "--rounds", "2"]
    assert cli_main(["branch", *argv, "--reinit-output", "--dry-run"]) == 0
    assert "branches/retrain-dataset=fashion-mnist-learning_rate=0.01-reinit-output-r2" in capsys.readouterr().out
    refuse(capsys, [str(trunk), "retrain", "--set", "dataset=cifar10"], trunk, "inputs are (3, 32, 32)")
    assert branch.parse_settings(["data_root=here"]) == {"data_root": os.path.abspath("here")}
    settings = ["retrain=fine-tune", "optimizer=sgd", "milestones=10,20", "nesterov=true", "weight_decay=1e-4"]
    assert branch.parse_settings(settings) == {
        "retrain": "fine-tune",
        "optimizer": "sgd",
        "milestones": (10, 20),
        "nesterov": True,
        "weight_decay": 1e-4,
    }
    refuse(capsys, [str(trunk), "retrain", "--set", "bogus=1"], trunk, "--set 'bogus=1' is not allowed")
    refuse(capsys, [str(trunk), "retrain", "--set", "iterations=many"], trunk, "'many' is not a value of type int")
    refuse(capsys, [str(trunk), "reinit", "--reinit-output"], trunk, "--reinit-output is for the retrain kind")


def test_a_stale_running_marker_of_a_dead_driver_is_ignored(trunk, capsys):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    mark = {"host": os.uname().nodename, "pid": int(dead.stdout), "started": 0}
    (trunk / MARKER).write_text(json.dumps(mark))
    assert cli_main(["branch", str(trunk), "random-prune", "--dry-run"]) == 0


def test_a_running_sweep_marks_its_experiment_until_it_ends(tmp_path):
    from lth_ray.distributed.running import Running, running_sweep

    mark = Running(str(tmp_path / "exp"))  # the folder need not exist yet (Tune makes it later)
    assert f"process {os.getpid()}" in running_sweep(str(tmp_path / "exp"))
    mark.clear()
    assert running_sweep(str(tmp_path / "exp")) is None
    assert not (tmp_path / "exp").exists()  # a sweep refused after Ray started leaves no experiment behind
    (tmp_path / "kept").mkdir()
    Running(str(tmp_path / "kept")).clear()
    assert (tmp_path / "kept").is_dir()


def test_the_dry_run_names_the_branch_by_its_settings(trunk, capsys):
    assert cli_main(["branch", str(trunk), "shuffle", "--of", "random-prune", "--rounds", "1,2", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"branch: {trunk}/branches/shuffle-of-random-prune-r1-2" in out
    assert out.count("1 members (random-prune-shuffle); rounds 1-2") == 2  # CPU trials: a seed each
    assert "plan: 2 trials on CPUs" in out
    assert cli_main(["branch", str(trunk), "reinit", "--seeds", "1", "--rounds", "2", "--dry-run"]) == 0
    assert f"{trunk}/branches/reinit-r2-s1" in capsys.readouterr().out
    assert not (trunk / "branches").exists()


def branch_plan(trunk: Path, *options: str):
    args = branch.build_parser().parse_args([str(trunk), "reinit", "--rounds", "2", *options])
    spec = branch.spec_from_args(args)
    return spec, branch.placement_of(spec)


def test_a_branch_is_placed_by_the_sweeps_planner_for_the_gpus_it_may_use(trunk, capsys):
    """No GPU: CPU trials of one seed each; 2 GPUs: the plan's cohorts and share, as a sweep's; explicit sizes
    kept; the cost counts only the rounds the branch trains."""
    from lth_ray.distributed.grid import place
    from lth_ray.distributed.planner import GPUModel

    _, cpu = branch_plan(trunk, "--num-gpus", "0")
    assert cpu.plan.gpus == 0 and [len(t) for t in cpu.trials] == [1, 1]
    spec, two = branch_plan(trunk, "--num-gpus", "2")
    assert two.plan.gpus == 2 and two.plan.gpu_per_trial == 1 and [len(t) for t in two.trials] == [2]
    assert {m.seed for m in two.trials[0]} == {0, 1}  # host-bound: one cohort of both seeds on a GPU of its own
    _, kept = branch_plan(trunk, "--num-gpus", "2", "--seeds-per-trial", "1", "--gpus-per-trial", "0.5")
    assert kept.plan.gpu_per_trial == 0.5 and [len(t) for t in kept.trials] == [1, 1]
    every = place(spec.sweep, 2, "", GPUModel())  # every round of the trajectories, as a sweep would
    assert two.plan.trials[0].flops < every.plan.trials[0].flops  # round 2 only
    assert cli_main(["branch", str(trunk), "reinit", "--rounds", "2", "--num-gpus", "2", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "plan: 1 trials for 2 GPUs (--num-gpus 2): per trial 1 CPU and 1 GPU" in out
    assert "2 members (reinit), 1 CPU, 1 GPU" in out and "estimate: " in out
    refuse(capsys, [str(trunk), "reinit", "--gpus-per-trial", "2"], trunk, "--gpus-per-trial=2 is not allowed")


def test_the_command_is_listed(capsys):
    assert cli_main(["--help"]) == 0
    assert "branch" in capsys.readouterr().out


def test_a_branch_of_a_finished_sweep_trains_only_its_members_beside_the_trunk(tiny_experiment, ray_cluster, tmp_path):
    """One random-pruning member for seed 0, as new Tune trials inside a copy of the session's tiny sweep: the
    trunk's trials stay byte-identical, the member equals its lockstep twin, the export shows it beside the trunk,
    and running the same branch again trains nothing."""
    from lth_ray.results.experiment import load_trials

    assert not (tiny_experiment / MARKER).exists()  # its sweep has ended: the running marker is gone
    trunk = Path(shutil.copytree(tiny_experiment, tmp_path / "tiny"))
    trials = [p for p in trunk.iterdir() if p.is_dir() and p.name not in ("export", "branches")]
    before = {p.name: digest(p) for p in trials}
    argv = ["branch", str(trunk), "random-prune", "--seeds", "0", "--address", ray_cluster.address, "--num-gpus", "0"]
    assert cli_main(argv) == 0
    assert {p.name: digest(p) for p in trials} == before
    loaded = load_trials(str(trunk), weights=False)
    (added,) = [t for t in loaded if t.branch]
    (twin,) = [t for t in loaded if not t.branch and t.config.key == added.config.key]
    assert added.branch == "random-prune-r1-2-s0" and added.complete and added.rounds_done == [1, 2]
    for a, b in zip(added.records, twin.records):  # fp32 in another company: within float noise (fp64: bitwise,
        # tests/core/branches)
        assert a["sparsity"] == b["sparsity"] and np.allclose(a["train_loss"], b["train_loss"], atol=1e-5)
    import pandas as pd

    rounds = pd.read_parquet(trunk / "export" / "rounds.parquet")
    ours = rounds[rounds.branch == "random-prune-r1-2-s0"]
    assert len(ours) == 2 and ours.trial_id.str.startswith("random-prune-r1-2-s0.").all()  # beside the trunk's
    assert (rounds.branch == "").sum() == len(rounds) - 2
    assert cli_main(["report", str(trunk), "--out", str(tmp_path / "report")]) == 0
    assert "random-prune" in (tmp_path / "report" / "summary.md").read_text()
    folder = trunk / "branches" / "random-prune-r1-2-s0"
    again = digest(folder)
    assert cli_main(argv) == 0  # the same branch again: nothing new
    assert digest(folder) == again
