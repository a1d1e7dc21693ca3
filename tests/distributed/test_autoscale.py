"""The autoscaling rehearsal: cluster.yaml's own node types as a fake cluster on this machine, and the real
sweep CLI against it.

Ray's FakeMultiNodeProvider launches worker "nodes" (extra raylets on this host) when work asks for their
resources and removes them when idle, like the AWS provider launches instances. The cluster starts with no
worker, so `ray.cluster_resources()` shows no GPU: the sweep must ask for GPUs by its plan (`--num-gpus`) for
the autoscaler to launch any. GPUs are logical (no CUDA here), so the sweep trains with `--device cpu`.

Never `ray stop` or `AutoscalingCluster.shutdown()` here: both stop every Ray on the machine, the session's
test cluster included. The fake cluster is stopped by killing, by PID, the processes whose command line names
its private folder. Faults land at fixed points (lth_ray.faults), never "soon after" something: the trial
waits at round 1 while its node is killed.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import PYTHON, ROOT, sweep_argv
from test_sweep import assert_same_as_without_ray, sweep_cmd, wait_for

from lth_ray.results.experiment import load_trials

pytestmark = pytest.mark.e2e

CLUSTER_YAML = ROOT / "cluster.yaml"
HEAD_TYPE = "ray.head.default"  # the fake provider's name for the head
MAX_CPUS = 2  # this machine's cores: node types' CPUs scaled down to this (logical GPUs are free)
IDLE_TIMEOUT_MINUTES = 0.1  # idle workers go after 6 s (cluster.yaml: 10 min)
EMPTY_KEYS = (
    "initialization_commands",
    "setup_commands",
    "head_setup_commands",
    "worker_setup_commands",
    "head_start_ray_commands",
    "worker_start_ray_commands",
    "cluster_synced_files",
    "rsync_exclude",
    "rsync_filter",
)


def rehearsal_config(port: int) -> dict:
    """cluster.yaml's node types and limits on the fake provider: the head renamed as the provider wants it,
    every type's CPUs scaled down to this machine, nothing to install or start (the nodes are local)."""
    shipped = yaml.safe_load(CLUSTER_YAML.read_text())
    types = {}
    for name, t in shipped["available_node_types"].items():
        resources = dict(t["resources"], CPU=min(t["resources"]["CPU"], MAX_CPUS))
        types[HEAD_TYPE if name == shipped["head_node_type"] else name] = {
            "resources": resources,
            "min_workers": t["min_workers"],
            "max_workers": t["max_workers"],
            "node_config": {},
        }
    return {
        "cluster_name": "lth-ray-rehearsal",
        "max_workers": shipped["max_workers"],
        "upscaling_speed": shipped["upscaling_speed"],
        "idle_timeout_minutes": IDLE_TIMEOUT_MINUTES,
        "provider": {
            "type": "external",
            "module": "ray.autoscaler._private.fake_multi_node.node_provider.FakeMultiNodeProvider",
            "gcs_address": f"127.0.0.1:{port}",
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
            "launch_multiple": True,
        },
        "auth": {"ssh_user": "ubuntu"},
        "available_node_types": types,
        "head_node_type": HEAD_TYPE,
        "file_mounts": {},
        "file_mounts_sync_continuously": False,
        **{k: [] for k in EMPTY_KEYS},
    }


def progress_rows(experiment: Path) -> dict[str, list[dict]]:
    """Per trial folder, the rows Tune logged. From progress.csv: Tune's JSON logger re-reads result.json from
    storage when a trial restarts and so drops the rows reported since the driver last synced it."""
    rows = {}
    for f in experiment.glob("*/progress.csv"):
        with f.open() as text:
            rows[f.parent.name] = [
                dict(r, round=int(r["round"]), pid=int(r["pid"]), gpus=float(r["gpus"])) for r in csv.DictReader(text)
            ]
    return rows


def running() -> dict[int, tuple[int, list[str]]]:
    """Every process of this machine: pid -> (parent pid, command line), from /proc."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = [a.decode(errors="replace") for a in (entry / "cmdline").read_bytes().split(b"\0") if a]
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            out[int(entry.name)] = (parent, argv)
    return out


def kill(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class FakeCluster:
    """A running fake autoscaling cluster: its address, config file and the folder naming its processes."""

    folder: Path
    address: str
    config: Path
    gpu_types: dict[str, float]  # worker node type -> GPUs per node, as in cluster.yaml

    def nodes(self) -> list:
        """Every node the GCS knows (alive and dead), as GcsNodeInfo messages."""
        from ray._raylet import GcsClient

        return list(GcsClient(address=self.address).get_all_node_info().values())

    def workers_alive(self) -> list:
        return [n for n in self.nodes() if not n.is_head_node and n.state == 0]  # 0: ALIVE

    def processes(self) -> list[int]:
        """The PIDs whose command line names the cluster's private folder."""
        return [
            pid for pid, (_, argv) in running().items() if pid != os.getpid() and str(self.folder) in " ".join(argv)
        ]

    def kill_node(self, node_id: str) -> int:
        """Kill a worker node as a lost instance dies: its raylet and everything under it, at once (SIGKILL)."""
        (info,) = [n for n in self.nodes() if n.node_id.hex() == node_id]
        table = running()
        flag = f"--raylet_socket_name={info.raylet_socket_name}"
        (raylet,) = [pid for pid, (_, argv) in table.items() if flag in argv]
        tree, grew = {raylet}, True
        while grew:  # the raylet's descendants: its workers and agents
            more = {pid for pid, (parent, _) in table.items() if parent in tree} - tree
            tree, grew = tree | more, bool(more)
        kill(tree)
        return len(tree)

    def stop(self) -> None:
        """Kill by PID every process naming the private folder (gcs_server ignores SIGTERM for a while)."""
        deadline = time.monotonic() + 60
        while self.processes():
            if time.monotonic() > deadline:
                raise AssertionError(f"processes of {self.folder} survive: {self.processes()}")
            kill(self.processes())
            time.sleep(0.2)


@pytest.fixture(scope="module")
def fake_cluster():
    """The fake cluster, started with zero workers; stopped by PID afterwards whatever happened."""
    folder = Path(tempfile.mkdtemp(prefix="lth-as-", dir="/tmp"))  # short: Ray's socket paths have a length limit
    port = free_port()
    config = rehearsal_config(port)
    (folder / "cluster.yaml").write_text(yaml.safe_dump(config))
    head = config["available_node_types"][HEAD_TYPE]["resources"]
    env = dict(
        os.environ,
        RAY_FAKE_CLUSTER="1",
        AUTOSCALER_UPDATE_INTERVAL_S="1",
        # a killed node is declared dead within seconds, not after Ray's ~15 s default
        RAY_health_check_period_ms="1000",
        RAY_health_check_failure_threshold="3",
    )
    cluster = FakeCluster(
        folder,
        f"127.0.0.1:{port}",
        folder / "cluster.yaml",
        {
            n: t["resources"]["GPU"]
            for n, t in config["available_node_types"].items()
            if n != HEAD_TYPE and t["resources"].get("GPU", 0) > 0
        },
    )
    try:
        started = subprocess.run(
            [
                str(Path(PYTHON).parent / "ray"),
                "start",
                "--head",
                f"--port={port}",
                "--node-ip-address=127.0.0.1",
                f"--num-cpus={head['CPU']}",
                f"--num-gpus={head.get('GPU', 0)}",
                f"--autoscaling-config={folder / 'cluster.yaml'}",
                f"--temp-dir={folder / 'ray'}",
                "--include-dashboard=false",
                "--dashboard-agent-listen-port=0",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.ray
def test_without_num_gpus_a_cluster_with_no_gpu_up_is_one_error(fake_cluster, tiny_mnist, tmp_path):
    """The cluster shows 0 GPUs until the autoscaler starts a GPU node, which it does only for work that asks
    for one: the sweep cannot size itself from what is up, and says so."""
    assert fake_cluster.workers_alive() == []
    args = sweep_argv(tiny_mnist, tmp_path, "unsized", "--address", fake_cluster.address)
    out = subprocess.run(sweep_cmd(*args), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--num-gpus" in errors[0] and "shows no GPUs now" in errors[0]
    assert "Traceback" not in out.stderr
    assert fake_cluster.workers_alive() == []  # nothing was asked of the autoscaler


@pytest.mark.ray
def test_sweep_scales_the_cluster_up_survives_a_lost_node_and_lets_it_scale_down(fake_cluster, tiny_mnist, tmp_path):
    markers = tmp_path / "faults"
    env = dict(os.environ, LTH_RAY_FAULT=f"block:1:100:{markers}")  # each trial waits at round 1, iteration 100
    args = sweep_argv(
        tiny_mnist,
        tmp_path,
        "elastic",
        "--address",
        fake_cluster.address,
        "--num-gpus",
        "2",
        "--rounds",
        "1",
        "--seeds",
        "2",
        "--seeds-per-trial",
        "1",
        "--no-export",
        "--cluster-config",
        str(fake_cluster.config),
    )
    log = tmp_path / "log"
    proc = subprocess.Popen(
        sweep_cmd(*args), cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        marker = wait_for(
            lambda: next(markers.glob("*.block.json"), None) if markers.exists() else None,
            180,
            f"a trial blocked mid-round 1 ({log.read_text()[-2000:] if log.exists() else ''})",
        )
        blocked = json.loads(marker.read_text())
        assert (blocked["round"], blocked["iteration"]) == (1, 100)
        launched = {n.node_id.hex(): n.node_type_name for n in fake_cluster.workers_alive()}
        assert blocked["node_id"] in launched  # on a worker the autoscaler launched for the plan's GPUs
        assert fake_cluster.kill_node(blocked["node_id"]) >= 2  # the raylet and the trial's worker at least
        (markers / "release").touch()
        assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    share = float(re.search(r"per trial [\d.]+ CPU and ([\d.]+) GPU", log.read_text()).group(1))
    assert share > 0  # the plan's share of a GPU, asked for while no GPU node was up
    experiment = tmp_path / "elastic"
    rows = progress_rows(experiment)
    assert len(rows) == 2
    nodes = {n.node_id.hex(): n for n in fake_cluster.nodes()}
    for name, trial_rows in rows.items():
        assert [r["round"] for r in trial_rows] == [0, 1], name  # every round once, none lost, none twice
        for r in trial_rows:  # every trial on a GPU node type of cluster.yaml, holding its GPU
            assert nodes[r["node_id"]].node_type_name in fake_cluster.gpu_types
            assert r["gpus"] == share and r["cuda_visible_devices"] != "" and r["device"] == "cpu"
    (moved,) = [rs for name, rs in rows.items() if name.startswith(f"{blocked['who']}_")]
    assert moved[0]["node_id"] == blocked["node_id"] != moved[-1]["node_id"]  # it finished on another node...
    assert len({r["pid"] for r in moved}) == 2
    assert_same_as_without_ray(load_trials(str(experiment)), tiny_mnist)  # ...with an undisturbed run's numbers
    # idle workers go: every worker the sweep made the autoscaler launch is removed after the idle timeout
    assert len({r["node_id"] for rs in rows.values() for r in rs}) >= 2
    wait_for(lambda: not fake_cluster.workers_alive(), 180, "idle workers removed")
    assert fake_cluster.nodes() and all(n.state == 1 for n in fake_cluster.nodes() if not n.is_head_node)


def test_a_trial_assigned_a_gpu_it_cannot_see_fails_naming_its_node(tiny_mnist, ray_cluster, tmp_path):
    """The session's cluster declares logical GPUs: a trial given one without CUDA (`--device auto`) must stop
    with an error naming the node, never train on the CPU unnoticed."""
    args = sweep_argv(
        tiny_mnist,
        tmp_path,
        "nocuda",
        "--address",
        ray_cluster.address,
        "--device",
        "auto",
        "--max-failures",
        "0",
        "--no-export",
    )
    out = subprocess.run(sweep_cmd(*args), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
    assert "unfinished" in out.stdout
    (error,) = (tmp_path / "nocuda").glob("*/error.txt")
    text = error.read_text()
    assert "but torch sees no CUDA device there" in text and "pass --device cpu" in text
    node_ids = {n.node_id for n in ray_cluster.list_all_nodes()}
    assert any(f"node {node_id}" in text for node_id in node_ids)
    assert not list((tmp_path / "nocuda").glob("*/rounds/*/round_000"))  # nothing was trained
