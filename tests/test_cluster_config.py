"""cluster.yaml passes Ray's and our offline checks, and each kind of mistake is caught
with a one-line message. No network, no running Ray."""
import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lth_ray.cluster_config import validate_cluster_config

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_YAML = ROOT / "cluster.yaml"


@pytest.fixture
def shipped():
    return yaml.safe_load(CLUSTER_YAML.read_text())


def _write(tmp_path, config):
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _error(tmp_path, config):
    with pytest.raises(ValueError) as info:
        validate_cluster_config(_write(tmp_path, config))
    message = str(info.value)
    assert "\n" not in message and "cluster.yaml" in message
    return message


def test_shipped_cluster_yaml_validates():
    config = validate_cluster_config(CLUSTER_YAML)
    types = config["available_node_types"]
    head = config["head_node_type"]
    assert config["cluster_name"] == "lth-ray"
    assert config["provider"]["type"] == "aws" and "cache_stopped_nodes" in config["provider"]
    assert types[head]["resources"]["GPU"] == 0
    gpus = {t["resources"].get("GPU", 0) for n, t in types.items() if n != head}
    assert {1, 8} <= gpus
    assert config["max_workers"] >= sum(t["max_workers"] for t in types.values())


def test_min_workers_above_max_workers(tmp_path, shipped):
    shipped["available_node_types"]["gpu_1x"].update(min_workers=3, max_workers=2)
    assert "available_node_types.gpu_1x: min_workers (3) must be <= max_workers (2)" in _error(tmp_path, shipped)


def test_global_max_workers_below_sum_of_min_workers(tmp_path, shipped):
    shipped["max_workers"] = 1
    shipped["available_node_types"]["gpu_1x"].update(min_workers=2, max_workers=2)
    assert "top-level max_workers (1) must be >= the sum" in _error(tmp_path, shipped)


def test_no_gpu_worker_type(tmp_path, shipped):
    for name, t in shipped["available_node_types"].items():
        if name != shipped["head_node_type"]:
            t["resources"].pop("GPU")
    assert "no worker node type can provide GPUs" in _error(tmp_path, shipped)


def test_head_with_gpus(tmp_path, shipped):
    shipped["available_node_types"]["head"]["resources"]["GPU"] = 1
    assert "(head): resources must declare GPU: 0 (got GPU: 1)" in _error(tmp_path, shipped)


def test_head_gpus_undeclared(tmp_path, shipped):
    del shipped["available_node_types"]["head"]["resources"]["GPU"]
    assert "(got not declared)" in _error(tmp_path, shipped)


def test_setup_without_project_install(tmp_path, shipped):
    shipped["setup_commands"] = [c for c in shipped["setup_commands"] if "-e ." not in c]
    assert "must install this project" in _error(tmp_path, shipped)


def test_node_type_override_drops_project_install(tmp_path, shipped):
    # A node type's own worker_setup_commands replaces the global ones on that node.
    shipped["available_node_types"]["gpu_1x"]["worker_setup_commands"] = ["pip install torch==2.14.1"]
    assert "node type 'gpu_1x': must install this project" in _error(tmp_path, shipped)


def test_setup_without_torch_pin(tmp_path, shipped):
    shipped["setup_commands"] = [c.replace("torch==2.14.1", "torch") for c in shipped["setup_commands"]]
    assert "must `pip install torch==2.14.1`" in _error(tmp_path, shipped)


def test_setup_with_other_ray_version(tmp_path, shipped):
    shipped["setup_commands"] = [c.replace("ray[default]==2.60.0", "ray[default]==2.9.0") for c in shipped["setup_commands"]]
    assert "installs ray==2.9.0" in _error(tmp_path, shipped)


def test_start_commands_without_usage_stats_opt_out(tmp_path, shipped):
    shipped["worker_start_ray_commands"] = [c.replace("export RAY_USAGE_STATS_ENABLED=0;", "") for c in shipped["worker_start_ray_commands"]]
    assert "worker_start_ray_commands: the `ray start` command must set RAY_USAGE_STATS_ENABLED=0" in _error(tmp_path, shipped)


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda c: c.update(max_worker=3), "schema: top level: Additional properties are not allowed ('max_worker' was unexpected)"),
        (lambda c: c.update(max_workers="nine"), "schema: max_workers: 'nine' is not of type 'integer'"),
        (lambda c: c["available_node_types"]["gpu_8x"]["resources"].update(GPU=0.5), "schema: available_node_types.gpu_8x.resources.GPU: 0.5 is not of type 'integer'"),
        (lambda c: c["available_node_types"]["gpu_8x"].pop("node_config"), "'node_config' is a required property"),
    ],
)
def test_schema_violation(tmp_path, shipped, mutate, expected):
    mutate(shipped)
    assert expected in _error(tmp_path, shipped)


def test_head_node_type_not_declared(tmp_path, shipped):
    shipped["head_node_type"] = "boss"
    assert "head_node_type: 'boss' is not one of available_node_types" in _error(tmp_path, shipped)


def test_broken_yaml(tmp_path):
    path = tmp_path / "cluster.yaml"
    path.write_text("cluster_name: lth-ray\nprovider: {type: aws\n")
    with pytest.raises(ValueError, match=r"cluster\.yaml: invalid YAML at line \d+, column \d+"):
        validate_cluster_config(path)


def test_not_a_mapping(tmp_path):
    path = tmp_path / "cluster.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="expected a mapping at the top level, got list"):
        validate_cluster_config(path)


def _cli(*args):
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    return subprocess.run(
        [sys.executable, "-m", "lth_ray.cluster_config", *map(str, args)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )


def test_cli_ok():
    result = _cli(CLUSTER_YAML)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok: 3 node types, GPU types: gpu_8x (8 GPU x max 1), gpu_1x (1 GPU x max 8)"


def test_cli_error_is_one_line_exit_1(tmp_path, shipped):
    bad = copy.deepcopy(shipped)
    bad["available_node_types"]["head"]["resources"]["GPU"] = 2
    result = _cli(_write(tmp_path, bad))
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "GPU: 0" in lines[0]
    assert "Traceback" not in result.stderr


def test_cli_broken_yaml_exit_1(tmp_path):
    path = tmp_path / "cluster.yaml"
    path.write_text("a: [1\n")
    result = _cli(path)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "invalid YAML" in result.stderr
