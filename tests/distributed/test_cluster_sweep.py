"""A sweep on an existing cluster: a node lost mid-sweep, and storage given as a URI (the s3:// code path)."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
from conftest import ROOT, sweep_argv
from test_sweep import (
    FAULT_TIMEOUT_S,
    assert_same_as_without_ray,
    markers,
    result_rows,
    sweep_cmd,
    wait_for,
    with_fault,
)

from lth_ray.results.experiment import load_trials

pytestmark = pytest.mark.e2e


def test_lost_node_moves_its_trials_which_resume_from_their_checkpoint(tiny_mnist, ray_cluster, tmp_path):
    """Every trial is held at round 1's iteration 200; the node of one of them is removed there, the others are
    released, and the moved trial finishes elsewhere from its round-0 checkpoint, bitwise."""
    extra = ray_cluster.add_node(num_cpus=1, num_gpus=4)
    ray_cluster.wait_for_nodes()
    faults = tmp_path / "faults"
    args = sweep_argv(
        tiny_mnist,
        tmp_path,
        "lost",
        "--address",
        ray_cluster.address,
        "--seeds",
        "3",
        "--rounds",
        "3",
        "--seeds-per-trial",
        "1",
        "--iterations",
        "400",
        "--eval-every",
        "100",
        "--no-export",
    )
    proc = subprocess.Popen(
        sweep_cmd(*args),
        cwd=ROOT,
        env=with_fault(f"block:1:200:{faults}"),
        stdout=open(tmp_path / "log", "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def held_on_extra_node():
        return next((who for who, m in markers(faults, "block").items() if m["node_id"] == extra.node_id), None)

    try:  # three trials, three 1-CPU nodes: one of them runs (and is held) on the extra node
        who = wait_for(
            lambda: held_on_extra_node() or proc.poll() is not None, FAULT_TIMEOUT_S, "a trial held on the extra node"
        )
        assert proc.poll() is None, (tmp_path / "log").read_text()[-3000:]
        ray_cluster.remove_node(extra, allow_graceful=False)
        try:  # the node's processes die with it (a worker held in the fault hook would not notice its raylet)
            os.kill(markers(faults, "block")[who]["pid"], signal.SIGKILL)
        except ProcessLookupError:
            pass
    finally:
        (faults / "release").touch()
    assert proc.wait(timeout=FAULT_TIMEOUT_S) == 0, (tmp_path / "log").read_text()[-3000:]
    ((name, rows),) = [(n, r) for n, r in result_rows(tmp_path / "lost").items() if n.startswith(f"{who}_")]
    assert [r["round"] for r in rows] == [0, 1, 2, 3]
    assert rows[0]["node_id"] == extra.node_id and all(r["node_id"] != extra.node_id for r in rows[1:])
    assert_same_as_without_ray(load_trials(str(tmp_path / "lost")), tiny_mnist)


def test_storage_uri_goes_through_pyarrow_like_s3(tiny_mnist, ray_cluster, tmp_path):
    uri = f"file://{tmp_path}/bucket"
    args = sweep_argv(
        tiny_mnist, uri, "remote", "--address", ray_cluster.address, "--rounds", "1", "--baselines", "reinit"
    )
    out = subprocess.run(sweep_cmd(*args), cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    trials = load_trials(f"{uri}/remote")
    assert [t.config.method for t in trials] == ["imp", "reinit"] and all(t.complete for t in trials)
    # one cohort trial; each member's round files in its own folder of the bucket (no mask store: the re-init
    # took the ticket's masks from memory)
    assert len({t.tune_trial_id for t in trials}) == 1 and not (tmp_path / "bucket" / "remote" / "masks").exists()
    assert all(
        (tmp_path / "bucket" / "remote" / t.path.rsplit("/", 1)[-1] / "rounds" / t.config.key).is_dir() for t in trials
    )
    assert (tmp_path / "bucket" / "remote" / "export" / "histories.parquet").exists()
    again = subprocess.run(sweep_cmd(*args), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "already exists" in again.stderr
