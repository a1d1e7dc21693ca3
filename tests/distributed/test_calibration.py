"""The planner's GPU numbers from a calibration table (benchmarks/gpu_check.py writes it): a round trip, an atomic
merge, one-line refusals, the assumed fallback, and a dry run that names the numbers it used. No Ray started."""

from __future__ import annotations

import json
import os

import pytest

from lth_ray.core.spec.config import ConfigError
from lth_ray.distributed import calibration as cal
from lth_ray.distributed.calibration import ASSUMED, Calibration, choose, gpu_model, load_table, lookup, write_entry
from lth_ray.distributed.planner import GIB, GPUModel

H100 = Calibration(
    name="NVIDIA H100 80GB HBM3",
    fp32_flops=30e12,
    tf32_flops=150e12,
    bf16_flops=None,
    step_floor_s=4e-5,
    memory_bytes=80 * GIB,
    source="gpu_check",
    measured_at="2026-12-07",
    torch="2.14.1+cu130",
)


def test_a_table_round_trips(tmp_path):
    path = tmp_path / "gpus.json"
    write_entry(path, H100)
    assert load_table(path) == {H100.name: H100}
    raw = json.loads(path.read_text())
    assert raw["format"] == 1 and raw["gpus"][H100.name]["bf16_flops"] is None  # null: not measured
    assert set(raw["gpus"][H100.name]) == {
        "fp32_flops",
        "tf32_flops",
        "bf16_flops",
        "step_floor_s",
        "memory_bytes",
        "source",
        "measured_at",
        "torch",
    }


def test_writing_merges_into_the_table_atomically(tmp_path, monkeypatch):
    path = tmp_path / "gpus.json"
    write_entry(path, ASSUMED)
    write_entry(path, H100)
    newer = Calibration(**{**H100.__dict__, "fp32_flops": 32e12, "measured_at": "2026-12-08"})
    write_entry(path, newer)
    assert load_table(path) == {ASSUMED.name: ASSUMED, H100.name: newer}  # the other GPU kept, this one replaced
    assert sorted(os.listdir(tmp_path)) == ["gpus.json"]  # no temporary file left behind

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(cal.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_entry(path, Calibration(**{**H100.__dict__, "name": "NVIDIA A100-SXM4-40GB"}))
    assert load_table(path) == {ASSUMED.name: ASSUMED, H100.name: newer}  # the old table is whole
    assert sorted(os.listdir(tmp_path)) == ["gpus.json"]


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("{not json", "not a readable JSON GPU calibration table"),
        ('{"format": 2, "gpus": {}}', "format=2 is not supported; allowed: 1"),
        ('{"format": 1, "gpus": []}', "gpus must be an object"),
        (
            '{"format": 1, "gpus": {"G": {"step_floor_s": 1e-3, "memory_bytes": 1, "source": "x"}}}',
            "fp32_flops is missing",
        ),
        (
            '{"format": 1, "gpus": {"G": {"fp32_flops": -1, "step_floor_s": 1e-3, "memory_bytes": 1, "source": "x"}}}',
            "gpus['G'].fp32_flops=-1 must be a positive number",
        ),
        (
            '{"format": 1, "gpus": {"G": {"fp32_flops": 1e12, "step_floor_s": 1e-3, "memory_bytes": "24G", '
            '"source": "x"}}}',
            "gpus['G'].memory_bytes='24G' must be a positive integer",
        ),
        (
            '{"format": 1, "gpus": {"G": {"fp32_flops": 1e12, "step_floor_s": 1e-3, "memory_bytes": 1, '
            '"source": "x", "fp16_flops": 1}}}',
            "gpus['G'].fp16_flops is not a field",
        ),
    ],
)
def test_a_malformed_table_is_one_line_naming_the_file_and_field(tmp_path, text, fragment):
    path = tmp_path / "gpus.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_table(path)
    message = str(info.value)
    assert message.startswith(str(path)) and fragment in message and "\n" not in message
    with pytest.raises(ConfigError):  # and nothing is written over it
        write_entry(path, H100)
    assert path.read_text() == text


def test_an_unknown_gpu_is_an_error_listing_the_tables_gpus(tmp_path):
    path = tmp_path / "gpus.json"
    write_entry(path, H100)
    write_entry(path, ASSUMED)
    with pytest.raises(ConfigError, match=r"'NVIDIA L4' is not in .*: 'NVIDIA A10G', 'NVIDIA H100 80GB HBM3'$"):
        lookup(load_table(path), "NVIDIA L4")
    with pytest.raises(ConfigError, match=r"holds 2 GPU models; pick one with --gpu-model NAME"):
        choose(str(path), None)
    assert choose(str(path), H100.name) == H100
    with pytest.raises(ConfigError, match=r"no such GPU calibration table"):
        choose(str(tmp_path / "missing.json"), None)


def test_without_a_table_the_assumed_numbers_are_the_planners_defaults():
    assert choose(None, None) is ASSUMED and not ASSUMED.measured
    assert ASSUMED.describe() == "assumed, not measured"
    assert gpu_model(ASSUMED, "fp32") == GPUModel()  # the planner's numbers until a GPU is measured
    with pytest.raises(ConfigError, match=r"--gpu-model 'NVIDIA L4' needs --gpu-calibration PATH"):
        choose(None, "NVIDIA L4")


def test_the_precision_picks_the_rate_and_the_floor_gives_the_saturating_step():
    assert gpu_model(H100, "tf32").flops == 150e12
    assert gpu_model(H100, "bf16").flops == 30e12  # bf16 not measured: the fp32 rate
    model = gpu_model(H100, "fp32")
    assert model.saturating_step_flops == pytest.approx(30e12 * 4e-5) and model.memory_bytes == 80 * GIB
    with pytest.raises(ConfigError, match=r"precision='fp8' is not one of fp32, tf32, bf16, fp64"):
        gpu_model(H100, "fp8")
    assert H100.describe() == "measured by gpu_check on 2026-12-07"


def test_the_dry_run_names_the_numbers_it_used(tmp_path, capsys):
    from lth_ray.distributed.sweep import main
    from sweeps.lenet_mnist import DEFAULTS

    argv = ["--storage", str(tmp_path), "--name", "d", "--num-gpus", "1", "--dry-run"]
    assert main(DEFAULTS, argv) == 0
    assumed = capsys.readouterr().out.splitlines()[-1]
    assert assumed == (
        "cost model: NVIDIA A10G, 10 TFLOP/s (fp32), step floor 1 ms (a step under 10 GFLOP is host-bound), 24 GiB; "
        "trials sharing a GPU: time-slice (assumed, not measured: see --gpu-calibration)"
    )
    table = tmp_path / "gpus.json"
    write_entry(table, H100)
    assert main(DEFAULTS, [*argv, "--gpu-calibration", str(table), "--gpu-sharing", "mps"]) == 0
    measured = capsys.readouterr().out.splitlines()[-1]
    assert measured == (
        "cost model: NVIDIA H100 80GB HBM3, 30 TFLOP/s (fp32), step floor 0.04 ms (a step under 1.2 GFLOP is "
        f"host-bound), 80 GiB; trials sharing a GPU: mps (measured by gpu_check on 2026-12-07, {table})"
    )
    assert main(DEFAULTS, [*argv, "--gpu-calibration", str(table), "--gpu-model", "NVIDIA L4"]) == 2
    assert "'NVIDIA L4' is not in the calibration table; it has: 'NVIDIA H100 80GB HBM3'" in capsys.readouterr().err
