"""The `lth-ray` console script, run as installed (`pip install -e .` puts it beside the venv's python): every
subcommand's help, bad commands as one `error:` line with exit code 2, and the report on the session's sweep."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

SCRIPT = Path(sys.executable).parent / "lth-ray"
COMMANDS = ["sweep", "trajectory", "branch", "export", "report", "check-cluster"]


def lth_ray(*args, cwd: Path) -> subprocess.CompletedProcess:
    assert SCRIPT.is_file(), f"{SCRIPT} is missing: run `pip install -e .` (make setup does)"
    return subprocess.run(
        [str(SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )


def test_help_lists_every_subcommand_and_the_sweeps(tmp_path):
    done = lth_ray("--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    listed = [line.split()[0] for line in done.stdout.split("commands:")[1].splitlines() if line.startswith("  ")]
    assert listed == COMMANDS
    assert "sweeps: conv-cifar10, deep-cifar10, frankle2020, lenet-mnist" in done.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["sweep", "--help"],
        ["sweep", "lenet-mnist", "--help"],
        ["sweep", "conv-cifar10", "--help"],
        ["trajectory", "--help"],
        ["branch", "--help"],
        ["export", "--help"],
        ["report", "--help"],
        ["check-cluster", "--help"],
    ],
)
def test_every_subcommand_has_its_help(args, tmp_path):
    done = lth_ray(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: ") and done.stderr == ""
    if args[:2] == ["sweep", "--help"]:
        assert "lenet-mnist" in done.stdout and "conv-cifar10" in done.stdout
    elif args[0] == "sweep":  # the sweep module's own options, with its defaults
        assert "--num-gpus" in done.stdout and f"sweeps.{args[1].replace('-', '_')}" in done.stdout


@pytest.mark.parametrize(
    "args, expected",
    [
        (["train"], "unknown command 'train'; known: sweep, trajectory, branch, export, report, check-cluster"),
        ([], "no command given; known: sweep, trajectory, branch, export, report, check-cluster"),
        (
            ["sweep", "resnet-imagenet"],
            "unknown sweep 'resnet-imagenet'; known: conv-cifar10, deep-cifar10, frankle2020, lenet-mnist",
        ),
        (
            ["sweep", "--seeds", "2"],
            "lth-ray sweep needs a sweep name first; known: conv-cifar10, deep-cifar10, frankle2020, lenet-mnist",
        ),
    ],
)
def test_a_bad_command_is_one_error_line_and_exit_2(args, expected, tmp_path):
    done = lth_ray(*args, cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0]


def test_check_cluster_is_the_cluster_config_checker(tmp_path):
    done = lth_ray("check-cluster", ROOT / "cluster.yaml", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith("ok: "), done.stderr
    module = subprocess.run(
        [sys.executable, "-m", "lth_ray.cluster_config", str(ROOT / "cluster.yaml")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert module.stdout == done.stdout


def test_lth_ray_report_writes_what_the_module_writes(tiny_experiment, tmp_path):
    done = lth_ray("report", tiny_experiment, "--out", tmp_path / "script", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    module = subprocess.run(
        [sys.executable, "-m", "lth_ray.report", str(tiny_experiment), "--out", str(tmp_path / "module")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )
    assert module.returncode == 0, module.stderr
    names = {p.name for p in (tmp_path / "script").iterdir()}
    assert names == {p.name for p in (tmp_path / "module").iterdir()}
    assert {"summary.md", "rounds.csv", "rounds.tex", "accuracy_vs_sparsity.pdf"} <= names
    assert (tmp_path / "script" / "summary.md").read_text() == (tmp_path / "module" / "summary.md").read_text()
    assert done.stdout == module.stdout.replace("module", "script")
