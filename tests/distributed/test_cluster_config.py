"""cluster.yaml passes Ray's and our offline checks, and each kind of mistake is caught
with a one-line message. No network, no running Ray."""

import copy
import os
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT

from lth_ray.distributed.cluster_config import validate_cluster_config

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
    # Secure by default: token auth in every `ray start`, the token mounted from outside the repo, a private dashboard.
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        (start,) = [c for c in config[key] if "ray start" in c]
        assert "RAY_AUTH_MODE=token" in start and "0.0.0.0" not in start
    assert "--dashboard-host=127.0.0.1" in config["head_start_ray_commands"][-1]
    assert config["file_mounts"] == {"/home/ubuntu/.ray/auth_token": "~/.ray/auth_token"}
    assert "RAY_AUTH_MODE=disabled" not in CLUSTER_YAML.read_text()


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
    shipped["setup_commands"] = [
        c.replace("ray[default]==2.60.0", "ray[default]==2.9.0") for c in shipped["setup_commands"]
    ]
    assert "installs ray==2.9.0" in _error(tmp_path, shipped)


def test_start_commands_without_usage_stats_opt_out(tmp_path, shipped):
    shipped["worker_start_ray_commands"] = [
        c.replace("export RAY_USAGE_STATS_ENABLED=0;", "") for c in shipped["worker_start_ray_commands"]
    ]
    assert "worker_start_ray_commands: the `ray start` command must set RAY_USAGE_STATS_ENABLED=0" in _error(
        tmp_path, shipped
    )


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (
            lambda c: c.update(max_worker=3),
            "schema: top level: Additional properties are not allowed ('max_worker' was unexpected)",
        ),
        (lambda c: c.update(max_workers="nine"), "schema: max_workers: 'nine' is not of type 'integer'"),
        (
            lambda c: c["available_node_types"]["gpu_8x"]["resources"].update(GPU=0.5),
            "schema: available_node_types.gpu_8x.resources.GPU: 0.5 is not of type 'integer'",
        ),
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


# ------------------------------------------------------------------ security rules


def _replace_in(config, key, old, new):
    assert any(old in c for c in config[key]), (key, old)
    config[key] = [c.replace(old, new) for c in config[key]]


def test_dashboard_open_to_all_interfaces(tmp_path, shipped):
    _replace_in(shipped, "head_start_ray_commands", "--dashboard-host=127.0.0.1", "--dashboard-host=0.0.0.0")
    assert "head_start_ray_commands: --dashboard-host=0.0.0.0 exposes the dashboard" in _error(tmp_path, shipped)


def test_dashboard_host_as_separate_word(tmp_path, shipped):
    _replace_in(shipped, "head_start_ray_commands", "--dashboard-host=127.0.0.1", "--dashboard-host 10.0.0.5")
    assert "--dashboard-host=10.0.0.5 exposes the dashboard" in _error(tmp_path, shipped)


@pytest.mark.parametrize("key", ["head_start_ray_commands", "worker_start_ray_commands"])
def test_start_without_token_auth(tmp_path, shipped, key):
    _replace_in(shipped, key, "export RAY_AUTH_MODE=token;", "")
    assert f"{key}: the `ray start` command must set RAY_AUTH_MODE=token" in _error(tmp_path, shipped)


@pytest.mark.parametrize(
    "where", ["worker_start_ray_commands", "setup_commands", "initialization_commands", "head_setup_commands", "docker"]
)
def test_auth_disabled_anywhere(tmp_path, shipped, where):
    if where == "worker_start_ray_commands":  # token set, then switched off again in the same line
        _replace_in(shipped, where, "ulimit", "export RAY_AUTH_MODE=disabled; ulimit")
    elif where == "docker":
        shipped["docker"] = {
            "image": "rayproject/ray:2.60.0-py311-gpu",
            "container_name": "lth_ray",
            "run_options": ["-e RAY_AUTH_MODE=disabled"],
        }
    else:
        shipped[where] = shipped.get(where, []) + ["echo 'export RAY_AUTH_MODE=disabled' >> ~/.bashrc"]
    message = _error(tmp_path, shipped)
    assert "sets RAY_AUTH_MODE=disabled, which disables Ray's token authentication" in message


def test_token_not_shared_with_the_nodes(tmp_path, shipped):
    shipped["file_mounts"] = {}
    assert "file_mounts: no node gets the cluster's token" in _error(tmp_path, shipped)


def test_token_mounted_from_inside_the_project(tmp_path, shipped):
    shipped["file_mounts"] = {"/home/ubuntu/.ray/auth_token": "secrets/auth_token"}
    assert "a path inside this project; keep it out of the repository" in _error(tmp_path, shipped)


def test_token_path_named_in_start_commands_counts_as_mount(tmp_path, shipped):
    shipped["file_mounts"] = {"/home/ubuntu/cluster-token": "~/.ray/auth_token"}
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        _replace_in(
            shipped,
            key,
            "export RAY_AUTH_MODE=token;",
            "export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=/home/ubuntu/cluster-token;",
        )
    assert validate_cluster_config(_write(tmp_path, shipped))


def test_literal_token_in_the_config(tmp_path, shipped):
    _replace_in(
        shipped,
        "head_start_ray_commands",
        "export RAY_AUTH_MODE=token;",
        "export RAY_AUTH_MODE=token RAY_AUTH_TOKEN=0123456789abcdef;",
    )
    assert "writes a token into RAY_AUTH_TOKEN; keep the token out of the config" in _error(tmp_path, shipped)


def test_credentials_in_a_repository_url(tmp_path, shipped):
    shipped["setup_commands"] = [
        c.replace("https://github.com/YOUR-ORG", "https://me:ghp_secret123@github.com/YOUR-ORG")
        for c in shipped["setup_commands"]
    ]
    assert "a URL carries a password or token (scheme://user:secret@host)" in _error(tmp_path, shipped)


def _ingress(port_from, port_to, cidr=None, cidr6=None, protocol="tcp"):
    rule = {"IpProtocol": protocol, "FromPort": port_from, "ToPort": port_to}
    if cidr:
        rule["IpRanges"] = [{"CidrIp": cidr}]
    if cidr6:
        rule["Ipv6Ranges"] = [{"CidrIpv6": cidr6}]
    return rule


@pytest.mark.parametrize(
    "rule, expected",
    [
        (_ingress(8265, 8265, cidr="0.0.0.0/0"), "IpPermissions[0]: opens port 8265 to the world (0.0.0.0/0)"),
        (_ingress(6379, 6379, cidr6="::/0"), "opens port 6379 to the world (::/0)"),
        (_ingress(10001, 10001, cidr="0.0.0.0/0"), "opens port 10001 to the world"),
        (_ingress(0, 65535, cidr="0.0.0.0/0"), "opens ports 0-65535 to the world"),
        (_ingress(-1, -1, cidr="0.0.0.0/0", protocol="-1"), "opens all ports to the world"),
        (
            _ingress(8000, 9000, cidr="203.0.113.0/24"),
            "opens Ray's dashboard port 8265 to the public network 203.0.113.0/24",
        ),
        (_ingress(6379, 6379, cidr="198.51.100.7/32"), "opens Ray's GCS port 6379 to the public network"),
    ],
)
def test_security_group_opens_ray_to_the_world(tmp_path, shipped, rule, expected):
    shipped["provider"]["security_group"] = {"GroupName": "lth-ray", "IpPermissions": [rule]}
    assert expected in _error(tmp_path, shipped)


def test_security_group_moved_dashboard_port_is_still_checked(tmp_path, shipped):
    _replace_in(
        shipped,
        "head_start_ray_commands",
        "--dashboard-host=127.0.0.1",
        "--dashboard-host=127.0.0.1 --dashboard-port=9999",
    )
    shipped["provider"]["security_group"] = {"IpPermissions": [_ingress(9999, 9999, cidr="192.0.2.0/24")]}
    assert "opens Ray's dashboard port 9999 to the public network 192.0.2.0/24" in _error(tmp_path, shipped)


def test_security_group_ssh_to_the_world_and_ray_ports_inside_are_fine(tmp_path, shipped):
    shipped["provider"]["security_group"] = {
        "GroupName": "lth-ray",
        "IpPermissions": [
            _ingress(22, 22, cidr="0.0.0.0/0", cidr6="::/0"),
            _ingress(8265, 8265, cidr="10.0.0.0/8"),
            _ingress(443, 443, cidr="203.0.113.0/24"),
        ],
    }
    assert validate_cluster_config(_write(tmp_path, shipped))


def _cli(*args):
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    return subprocess.run(
        [sys.executable, "-m", "lth_ray.cli", "check-cluster", *map(str, args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
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
