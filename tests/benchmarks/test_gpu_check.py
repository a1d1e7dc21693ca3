"""benchmarks/gpu_check.py as the suite runs it: `--device cpu --quick` in a subprocess, into a temporary folder.

What is checked is the output's shape (every part and every cell of the grid present, measured or skipped with a
reason; the smoke comparison bitwise on the CPU; a calibration table the planner reads), not speeds: timings on
a shared CI machine say nothing."""

from __future__ import annotations

import importlib.util
import json
import subprocess

import pytest
import torch
from conftest import PYTHON, ROOT

GPU_CHECK = ROOT / "benchmarks" / "gpu_check.py"
PARTS = {"calibration", "smoke", "grouped_conv", "table", "sweep"}
CELLS = (4 + 3 + 3) * 2 * 3  # (Lenet, Conv-2, ResNet-20 sizes) x (eager, compiled) x (fp32, tf32, bf16)


@pytest.mark.ray  # its tiny sweep starts an embedded Ray
@pytest.mark.e2e  # about a minute on 2 cores
def test_gpu_check_on_the_cpu_writes_every_part_and_cell(tmp_path):
    out = tmp_path / "out"
    run = subprocess.run(
        [PYTHON, str(GPU_CHECK), "--device", "cpu", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads((out / "gpu_check.json").read_text())
    assert result["device"] == "cpu" and result["quick"] and result["ok"]
    assert set(result["parts"]) == PARTS
    for name, part in result["parts"].items():
        assert part["status"] in ("measured", "skipped"), (name, part)
        assert part["status"] == "measured" or part["reason"], name

    smoke = result["parts"]["smoke"]
    assert [r["arch"] for r in smoke["runs"]] == ["lenet", "conv2", "cifar_resnet_20"]
    assert all(r["ok"] and r["bitwise"] for r in smoke["runs"])  # both runs on the CPU: the same numbers

    rows = result["parts"]["table"]["rows"]
    assert len(rows) == CELLS
    assert len({(r["arch"], r["members"], r["mode"], r["precision"]) for r in rows}) == CELLS
    for r in rows:
        if r["status"] == "measured":
            assert r["trajectory_iterations_per_s"] > 0 and r["iterations_timed"] > 0, r
        else:
            assert r["status"] == "skipped" and r["reason"], r
    assert all("fp32" in r["reason"] for r in rows if r["precision"] == "tf32")  # a CPU has no TF32
    alone = next(
        r for r in rows if (r["arch"], r["members"], r["mode"], r["precision"]) == ("lenet", 1, "eager", "fp32")
    )
    assert alone["status"] == "measured" and alone["ratio_to_one_alone"] == 1

    grouped = result["parts"]["grouped_conv"]["rows"]
    assert grouped and all(r["max_abs_logit_difference"] < 1e-4 for r in grouped)  # the two paths: the same math

    sweep = result["parts"]["sweep"]
    if sweep["status"] == "measured":  # (skipped, with its reason, when the budget ran out on a busy machine)
        assert sweep["complete"] == 2 and sweep["logical_gpus"] and sweep["gpus_assigned"] == [0.5]

    from lth_ray.distributed.calibration import load_table

    (entry,) = load_table(out / "calibration.json").values()
    assert entry.fp32_flops > 0 and entry.step_floor_s > 0 and entry.source == "gpu_check"

    text = (out / "gpu_check.md").read_text()
    for heading in ("# gpu_check: cpu", "## Calibration", "## Smoke", "## Conv-2", "## Cohorts", "## A tiny sweep"):
        assert heading in text
    assert not list(out.glob(".*"))  # no temporary files or work folder left behind


BAD = [(["--device", "cpu", "--budget-s", "0"], "error: --budget-s=0 must be positive")]
if not torch.cuda.is_available():
    BAD.append(
        ([], "error: --device cuda: torch sees no CUDA device here; allowed: a machine with one, or --device cpu")
    )


@pytest.mark.parametrize("args, line", BAD)
def test_bad_options_are_one_line(args, line, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("gpu_check", GPU_CHECK)
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    assert gpu_check.main([*args, "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().out.strip() == line
    assert not (tmp_path / "out").exists()
