"""Offline check of the Ray cluster-launcher YAML (cluster.yaml).

`ray up` finds many mistakes only after minutes of paid EC2 time, and some never (a head
with GPUs silently runs trials, a dashboard open to the internet runs anyone's jobs). This
checks the file locally, with no network and no running Ray: Ray's own JSON schema, Ray's
prepare/validate step, then lth_ray's rules, security included: Ray's token authentication
on in every `ray start` and never disabled, the token shared through `file_mounts` from
outside the repository (no token or password in the file itself, neither in RAY_AUTH_TOKEN
nor in a URL), the dashboard on the head's loopback, and no security-group rule
opening more than SSH to the world (or Ray's GCS, dashboard or client port to a public
network). Security groups given by id (`SecurityGroupIds`) cannot be checked offline.

Ray's offline part: `ray.autoscaler._private.util.prepare_config` (private API; Ray is
pinned to 2.60.0) only merges `ray/autoscaler/aws/defaults.yaml` from the package, and
`validate_config` is schema + consistency checks, so both run without AWS. The network
steps of `ray up` are NOT called: `AWSNodeProvider.fillout_available_node_types_resources`
(EC2 DescribeInstanceTypes, to fill missing `resources`) and `bootstrap_aws` (IAM role,
key pair, subnets, security group), so node `resources` are never autodetected here.
yaml and jsonschema are dependencies of Ray itself; all imports are lazy (no torch).

    lth-ray check-cluster cluster.yaml
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import shlex
import sys
from pathlib import PurePosixPath

TORCH_PIN = "torch==2.14.1"
USAGE_OPT_OUT = "RAY_USAGE_STATS_ENABLED=0"
AUTH_ON = "RAY_AUTH_MODE=token"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
SSH_PORT = 22
# Ray's ports that run code for whoever reaches them: GCS, dashboard/jobs API, Ray client server.
RAY_PORT_FLAGS = {"--port": 6379, "--dashboard-port": 8265, "--ray-client-server-port": 10001}
# Address ranges that stay inside a VPC or host (RFC 1918, shared/CGNAT, loopback, link-local, IPv6 ULA/link-local).
INTERNAL_NETS = [
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "fc00::/7",
        "fe80::/10",
        "::1/128",
    )
]


def validate_cluster_config(path: str | os.PathLike) -> dict:
    """Return Ray's prepared config (defaults filled in), or raise a one-line ValueError."""
    config = _load(path)
    try:
        _check_schema(config)
        config = _ray_prepare(config)
        # Ours before Ray's validate_config: where they overlap (min_workers sum, head
        # type) ours name the key and the numbers.
        _check_node_types(config)
        _ray_validate(config)
        _check_commands(config)
        _check_security(config)
    except ValueError as e:
        raise ValueError(f"{path}: " + " ".join(str(e).split())) from None
    return config


def _load(path) -> dict:
    import yaml

    try:
        with open(path) as f:
            config = yaml.safe_load(f)
    except OSError as e:
        raise ValueError(f"{path}: cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ValueError(f"{path}: invalid YAML{where}: {problem}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected a mapping at the top level, got {type(config).__name__}")
    return config


def _check_schema(config: dict) -> None:
    """Ray's own schema, on the file as written (before defaults hide mistakes)."""
    import json

    import jsonschema
    import ray.autoscaler

    with open(os.path.join(os.path.dirname(ray.autoscaler.__file__), "ray-schema.json")) as f:
        schema = json.load(f)
    validator = jsonschema.validators.validator_for(schema)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "top level"
        raise ValueError(f"schema: {where}: {error.message}")


def _ray_prepare(config: dict) -> dict:
    from ray.autoscaler._private.util import prepare_config

    try:
        return prepare_config(config)
    except (NotImplementedError, AssertionError, KeyError, TypeError) as e:
        raise ValueError(f"ray prepare_config: {type(e).__name__}: {e}") from None


def _ray_validate(config: dict) -> None:
    import jsonschema
    from ray.autoscaler._private.util import validate_config

    try:
        validate_config(config)
    except jsonschema.ValidationError as e:
        raise ValueError(f"ray validate_config: {e.message}") from None
    except (RuntimeError, KeyError, TypeError) as e:
        raise ValueError(f"ray validate_config: {e}") from None


def _check_node_types(config: dict) -> None:
    types, head = config["available_node_types"], config["head_node_type"]
    if head not in types:
        raise ValueError(f"head_node_type: {head!r} is not one of available_node_types ({', '.join(types)})")
    for name, t in types.items():
        if t["min_workers"] > t["max_workers"]:
            raise ValueError(
                f"available_node_types.{name}: min_workers ({t['min_workers']}) must be <= max_workers "
                f"({t['max_workers']})"
            )
    min_sum = sum(t["min_workers"] for t in types.values())
    if min_sum > config["max_workers"]:
        raise ValueError(
            f"max_workers: top-level max_workers ({config['max_workers']}) must be >= the sum of the node types' "
            f"min_workers ({min_sum})"
        )
    head_gpus = types[head].get("resources", {}).get("GPU")
    if head_gpus != 0:
        got = "not declared" if head_gpus is None else f"GPU: {head_gpus}"
        raise ValueError(
            f"available_node_types.{head} (head): resources must declare GPU: 0 (got {got}) so trials never run on "
            "the head"
        )
    if not gpu_node_types(config):
        raise ValueError(
            "available_node_types: no worker node type can provide GPUs; give one resources: {GPU: n} with n >= 1 and "
            "max_workers >= 1"
        )


def gpu_node_types(config: dict) -> dict[str, int]:
    """Worker node types that can add GPUs to the cluster: name -> GPUs per node."""
    head = config["head_node_type"]
    return {
        name: t["resources"]["GPU"]
        for name, t in config["available_node_types"].items()
        if name != head and t.get("resources", {}).get("GPU", 0) >= 1 and t.get("max_workers", 1) >= 1
    }


def _pip_install_args(commands: list[str]):
    """Yield the arguments of every `pip install` (pip, pip3, python -m pip, uv pip) in the commands."""
    for command in commands:
        for segment in re.split(r"&&|\|\||[;|\n]", command):
            try:
                words = shlex.split(segment)
            except ValueError:
                words = segment.split()
            for i in range(len(words) - 1):
                if os.path.basename(words[i]) in ("pip", "pip3") and words[i + 1] == "install":
                    yield words[i + 2 :]


def _installs_project(args: list[str]) -> bool:
    return any(
        a in (".", "./") or a.startswith((".[", "./[")) or re.search(r"lth[_-]ray", a, re.IGNORECASE) for a in args
    )


def _check_commands(config: dict) -> None:
    import ray

    types, head = config["available_node_types"], config["head_node_type"]
    # Effective setup per node, as the autoscaler runs it: prepare_config merged
    # setup_commands into head_/worker_setup_commands; a node type's own
    # worker_setup_commands replaces both.
    for name, t in types.items():
        if name == head:
            setup = config["head_setup_commands"]
        else:
            setup = t.get("worker_setup_commands", config["worker_setup_commands"])
        setup = t.get("initialization_commands", config.get("initialization_commands", [])) + setup
        installs = list(_pip_install_args(setup))
        where = f"setup commands of node type {name!r}"
        if not any(_installs_project(args) for args in installs):
            raise ValueError(f"{where}: must install this project (`pip install -e .` in the clone, or the repo URL)")
        if not any(TORCH_PIN in args for args in installs):
            raise ValueError(f"{where}: must `pip install {TORCH_PIN}` (the project's pinned torch)")
        for args in installs:
            for a in args:
                m = re.fullmatch(r"ray(\[[^\]]*\])?==(\S+)", a)
                if m and m.group(2) != ray.__version__:
                    raise ValueError(
                        f"{where}: installs ray=={m.group(2)} but this checkout uses ray {ray.__version__}; cluster "
                        "and laptop Ray must match"
                    )
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in config.get(key, []) if re.search(r"\bray start\b", c)]
        if not starts:
            raise ValueError(f"{key}: no `ray start` command")
        for c in starts:
            if USAGE_OPT_OUT not in c:
                raise ValueError(
                    f"{key}: the `ray start` command must set {USAGE_OPT_OUT} in the same line (e.g. `export "
                    f"{USAGE_OPT_OUT}; ray start ...`)"
                )


def _strings(value, where: str = ""):
    """Every string in the config with where it is (`head_start_ray_commands[1]`, ...)."""
    if isinstance(value, str):
        yield where or "top level", value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, f"{where}.{k}" if where else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, f"{where}[{i}]")


def _flag_values(command: str, flag: str) -> list[str]:
    """The values given to `flag` (`--flag=v` or `--flag v`) in a shell command."""
    return re.findall(rf"(?:^|\s){re.escape(flag)}(?:=|\s+)['\"]?([^\s'\";]+)", command)


def _check_security(config: dict) -> None:
    """Token auth on and shared, dashboard private, nothing but SSH open to the world."""
    for where, text in _strings(config):
        for mode in re.findall(r"RAY_AUTH_MODE\s*=\s*['\"]?([A-Za-z]*)", text):
            if mode.lower() != "token":
                raise ValueError(
                    f"{where}: sets RAY_AUTH_MODE={mode}, which disables Ray's token authentication (anyone who "
                    f"reaches the cluster could run code on it); keep {AUTH_ON}"
                )
        if re.search(r"[A-Za-z][A-Za-z0-9+.-]*://[^/\s@:'\"]+:[^/\s@'\"]+@", text):
            raise ValueError(
                f"{where}: a URL carries a password or token (scheme://user:secret@host); it would sit in "
                "cluster.yaml and in Ray's logs: use a deploy key, the file_mounts alternative or the nodes' "
                "instance profile"
            )
        for value in re.findall(r"RAY_AUTH_TOKEN\s*=\s*['\"]?([^\s'\";]*)", text):
            if value and not value.startswith("$"):
                raise ValueError(
                    f"{where}: writes a token into RAY_AUTH_TOKEN; keep the token out of the config (and git): mount "
                    "~/.ray/auth_token with file_mounts"
                )
    token_paths = set()
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        for c in (c for c in config.get(key, []) if re.search(r"\bray start\b", c)):
            if AUTH_ON not in c:
                raise ValueError(
                    f"{key}: the `ray start` command must set {AUTH_ON} in the same line (e.g. `export {AUTH_ON}; ray "
                    "start ...`), so a node without the token fails instead of starting unauthenticated"
                )
            for host in _flag_values(c, "--dashboard-host"):
                if host.strip("[]") not in LOOPBACK:
                    raise ValueError(
                        f"{key}: --dashboard-host={host} exposes the dashboard/jobs API beyond the head; use "
                        "--dashboard-host=127.0.0.1 and reach it with `ray dashboard cluster.yaml`"
                    )
            token_paths.update(re.findall(r"RAY_AUTH_TOKEN_PATH\s*=\s*['\"]?([^\s'\";]+)", c))
    _check_token_mount(config.get("file_mounts") or {}, token_paths)
    _check_ingress(config)


def _check_token_mount(file_mounts: dict, token_paths: set[str]) -> None:
    mounts = {
        remote: local
        for remote, local in file_mounts.items()
        if remote in token_paths or PurePosixPath(remote).parts[-2:] == (".ray", "auth_token")
    }
    if not mounts:
        raise ValueError(
            "file_mounts: no node gets the cluster's token; add `/home/ubuntu/.ray/auth_token: ~/.ray/auth_token` "
            "(generate it once with `ray get-auth-token --generate`)"
        )
    for remote, local in mounts.items():
        if not str(local).startswith(("~", "/")):
            raise ValueError(
                f"file_mounts.{remote}: the token comes from {local!r}, a path inside this project; keep it out of "
                "the repository (e.g. ~/.ray/auth_token)"
            )


def _ray_ports(head_starts: list[str]) -> dict[int, str]:
    """Ray's code-running ports on the head (defaults, or as moved by the head's `ray start`): port -> name."""
    ports = dict(RAY_PORT_FLAGS)
    for c in head_starts:
        for flag in RAY_PORT_FLAGS:
            for v in _flag_values(c, flag):
                if v.isdigit():
                    ports[flag] = int(v)  # the last one given wins, as in `ray start`
    names = {"--port": "GCS", "--dashboard-port": "dashboard", "--ray-client-server-port": "Ray client"}
    return {port: names[flag] for flag, port in ports.items()}


def _inside(
    net: ipaddress.IPv4Network | ipaddress.IPv6Network, outer: ipaddress.IPv4Network | ipaddress.IPv6Network
) -> bool:
    """`net` lies within `outer`; a network of the other IP version never does."""
    if isinstance(net, ipaddress.IPv4Network) and isinstance(outer, ipaddress.IPv4Network):
        return net.subnet_of(outer)
    if isinstance(net, ipaddress.IPv6Network) and isinstance(outer, ipaddress.IPv6Network):
        return net.subnet_of(outer)
    return False


def _check_ingress(config: dict) -> None:
    """provider.security_group.IpPermissions (boto3's shape): only SSH to the world, Ray's ports private."""
    rules = (config["provider"].get("security_group") or {}).get("IpPermissions") or []
    ray_ports = _ray_ports(config.get("head_start_ray_commands", []))
    for i, rule in enumerate(rules):
        where = f"provider.security_group.IpPermissions[{i}]"
        if not isinstance(rule, dict):
            raise ValueError(f"{where}: must be a mapping (boto3's IpPermissions shape)")
        cidrs = [r.get("CidrIp") for r in rule.get("IpRanges", [])] + [
            r.get("CidrIpv6") for r in rule.get("Ipv6Ranges", [])
        ]
        protocol = str(rule.get("IpProtocol", "-1")).lower()
        every_port = protocol in ("-1", "all")
        low, high = (0, 65535) if every_port else (rule.get("FromPort", 0), rule.get("ToPort", 65535))
        ports = "all ports" if every_port else (f"port {low}" if low == high else f"ports {low}-{high}")
        for cidr in cidrs:
            try:
                net = ipaddress.ip_network(str(cidr), strict=False)
            except ValueError:
                raise ValueError(f"{where}: {cidr!r} is not a CIDR range") from None
            if net.prefixlen == 0 and not (protocol in ("tcp", "6") and low == high == SSH_PORT):
                raise ValueError(
                    f"{where}: opens {ports} to the world ({cidr}); only SSH (22) may be: reach the dashboard with "
                    "`ray dashboard cluster.yaml`, keep Ray's ports inside the cluster"
                )
            exposed = [f"{name} port {port}" for port, name in sorted(ray_ports.items()) if low <= port <= high]
            if exposed and not any(_inside(net, n) for n in INTERNAL_NETS):
                raise ValueError(
                    f"{where}: opens Ray's {', '.join(exposed)} to the public network {cidr}; keep them inside the "
                    "cluster (SSH tunnel: `ray dashboard cluster.yaml`)"
                )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lth-ray check-cluster", description=__doc__.splitlines()[0])
    parser.add_argument("path", help="Ray cluster-launcher YAML, e.g. cluster.yaml")
    args = parser.parse_args(argv)
    try:
        config = validate_cluster_config(args.path)
    except (ValueError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    types = config["available_node_types"]
    gpus = ", ".join(
        f"{name} ({n} GPU x max {types[name]['max_workers']})" for name, n in gpu_node_types(config).items()
    )
    print(f"ok: {len(types)} node types, GPU types: {gpus}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
