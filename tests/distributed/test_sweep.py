"""Sweeps on real Ray: crash a worker, kill the driver and resume, spread over two nodes, refuse bad input.

Each sweep runs the real CLI (`python -m sweeps.lenet_mnist`) in a subprocess against the session's local
two-node cluster, and its histories are compared with the same trajectories run without Ray.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from conftest import PYTHON, ROOT, sweep_argv

from lth_ray.core.data.loading import load_split
from lth_ray.core.engine.cohort import Cohort
from lth_ray.core.store.rounds import RoundStore
from lth_ray.results.experiment import load_trials

pytestmark = pytest.mark.e2e


def histories(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def sweep_cmd(*args: str) -> list[str]:
    return [PYTHON, "-m", "sweeps.lenet_mnist", *args]


def start(args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        sweep_cmd(*args), cwd=ROOT, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True
    )


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def result_rows(experiment: Path) -> dict[str, list[dict]]:
    rows = {}
    for f in experiment.glob("*/result.json"):
        text = f.read_text().strip()
        rows[f.parent.name] = [json.loads(line) for line in text.splitlines() if line.strip()]
    return rows


def assert_same_as_without_ray(trials, tiny_mnist):
    """Bitwise equal to running each trial's cohort without Ray, with the trial's thread count (1 CPU)."""
    split = load_split("mnist", str(tiny_mnist))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    by_trial: dict[str, list] = {}
    for t in trials:
        assert t.complete, (t.trial_id, t.status, t.error)
        by_trial.setdefault(t.tune_trial_id, []).append(t)
    try:
        for members in by_trial.values():
            members.sort(key=lambda t: t.trial_id)  # the cohort's own member order
            rounds = list(Cohort([t.config for t in members], split).run_results())
            for i, t in enumerate(members):
                alone = [results[i].record for results in rounds if i in results]
                assert histories(t.records) == histories(alone)
    finally:
        torch.set_num_threads(threads)


# Only a safety net for a hung run, never what decides a fault test: generous, because a machine whose cores
# are kept busy by other processes starves Ray's (niced) workers many times over.
FAULT_TIMEOUT_S = 1800


def with_fault(spec: str) -> dict:
    """The environment of a sweep whose trials meet a fault at a fixed point (lth_ray.faults)."""
    return {**os.environ, "LTH_RAY_FAULT": spec}


def markers(folder: Path, action: str) -> dict[str, dict]:
    """Where each trial's fault landed: {trial name: the marker's record}."""
    return {f.name.split(f".{action}.json")[0]: json.loads(f.read_text()) for f in folder.glob(f"*.{action}.json")}


def test_killed_worker_resumes_its_cohort_from_the_last_round_checkpoint(tiny_mnist, ray_cluster, tmp_path):
    """One trial = a cohort of 2 seeds x (ticket, re-init); its worker dies (SIGKILL) at round 1's iteration
    200 of 400, and the whole cohort resumes bitwise."""
    faults = tmp_path / "faults"
    args = sweep_argv(
        tiny_mnist,
        tmp_path,
        "crash",
        "--address",
        ray_cluster.address,
        "--rounds",
        "3",
        "--iterations",
        "400",
        "--eval-every",
        "100",
        "--no-export",
        "--seeds",
        "2",
        "--seeds-per-trial",
        "2",
        "--baselines",
        "reinit",
    )
    out = subprocess.run(
        sweep_cmd(*args),
        cwd=ROOT,
        env=with_fault(f"kill:1:200:{faults}"),
        capture_output=True,
        text=True,
        timeout=FAULT_TIMEOUT_S,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    experiment = tmp_path / "crash"
    ((name, rows),) = result_rows(experiment).items()
    ((who, landed),) = markers(faults, "kill").items()
    assert (landed["round"], landed["iteration"]) == (1, 200) and name.startswith(who)  # mid-round 1, once
    assert name.startswith("lenet-mnist-imp-layerwise-fc0.2-s0-1_")  # named after its configuration and seeds
    assert [r["round"] for r in rows] == [0, 1, 2, 3]  # no round reported twice
    assert rows[0]["pid"] == landed["pid"] and {r["pid"] for r in rows[1:]} != {landed["pid"]}  # a new worker
    assert all(r["members"] == 4 for r in rows) and [r["members_in_round"] for r in rows] == [2, 4, 4, 4]
    trials = load_trials(str(experiment))
    assert sorted((t.config.method, t.config.seed) for t in trials) == [
        ("imp", 0),
        ("imp", 1),
        ("reinit", 0),
        ("reinit", 1),
    ]
    assert_same_as_without_ray(trials, tiny_mnist)


def test_killed_driver_resumes_without_recomputing_finished_rounds(tiny_mnist, ray_cluster, tmp_path):
    """Both trials are held at round 1's iteration 200 (round 0 done, round 1 half way); the driver is killed
    there, and the resumed sweep keeps every round-0 file (the same seconds) and recomputes round 1 on."""
    faults = tmp_path / "faults"
    args = sweep_argv(
        tiny_mnist,
        tmp_path,
        "driver",
        "--address",
        ray_cluster.address,
        "--rounds",
        "3",
        "--iterations",
        "400",
        "--eval-every",
        "100",
        "--seeds",
        "2",
        "--seeds-per-trial",
        "1",
        "--no-export",
    )
    log = tmp_path / "log1"
    proc = subprocess.Popen(
        sweep_cmd(*args),
        cwd=ROOT,
        env=with_fault(f"block:1:200:{faults}"),
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        held = wait_for(
            lambda: len(markers(faults, "block")) == 2 or proc.poll() is not None,
            FAULT_TIMEOUT_S,
            "both trials held at round 1",
        )
        assert held and proc.poll() is None, log.read_text()[-3000:]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    experiment = tmp_path / "driver"
    before = {key: recs for d in experiment.glob("lenet-*") for key, recs in round_records_local(d).items()}
    assert sorted(before) == sorted(f"lenet-mnist-imp-layerwise-fc0.2-s{s}" for s in (0, 1))
    assert all([r["round"] for r in records] == [0] for records in before.values())  # exactly where held
    resumed = subprocess.run(
        sweep_cmd(*args, "--resume"), cwd=ROOT, capture_output=True, text=True, timeout=FAULT_TIMEOUT_S
    )
    (faults / "release").touch()  # (a worker of the killed driver, if any were left, would go on and exit)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    trials = load_trials(str(experiment))
    assert len(trials) == 2
    assert_same_as_without_ray(trials, tiny_mnist)
    by_key = {t.config.key: t for t in trials}
    for key, (old,) in before.items():  # the same wall-clock seconds: round 0 was kept, not run again
        assert by_key[key].records[0]["seconds"] == old["seconds"]


def round_records_local(folder: Path) -> dict[str, list[dict]]:
    """Per member key, the records of a trial's complete round files (what a resume keeps)."""
    out = {}
    for member in sorted((folder / "rounds").glob("*")):
        store = RoundStore.at(str(member))
        out[member.name] = [store.record(r) for r in store.complete_prefix(0)]
    return out


def test_trials_spread_over_two_nodes_with_fractional_gpus(tiny_mnist, ray_cluster, tmp_path):
    # sweep_argv gives --device cpu: the GPUs are logical, and a trial assigned one trains on the CPU on purpose
    args = sweep_argv(
        tiny_mnist,
        tmp_path,
        "spread",
        "--address",
        ray_cluster.address,
        "--seeds",
        "4",
        "--seeds-per-trial",
        "1",
        "--rounds",
        "1",
        "--gpus-per-trial",
        "0.25",
        "--num-gpus",
        "8",
        "--no-export",
    )
    out = subprocess.run(sweep_cmd(*args), cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stdout[-3000:]
    rows = [r for rs in result_rows(tmp_path / "spread").values() for r in rs]
    assert len({r["node_id"] for r in rows}) == 2
    assert all(r["gpus"] == 0.25 for r in rows)
    assert all(r["cuda_visible_devices"] != "" for r in rows)  # Ray handed each trial a (logical) GPU
    assert all(r["device"] == "cpu" for r in rows)  # and the trial fell back to the CPU


@pytest.mark.ray
def test_embedded_local_ray_sweep_with_export(tiny_mnist, tmp_path):
    """No --address: the command starts its own Ray, runs, exports and says where the results are."""
    args = sweep_argv(tiny_mnist, tmp_path, "local", "--num-gpus", "0", "--rounds", "1")
    out = subprocess.run(sweep_cmd(*args), cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert f"results: {tmp_path / 'local'}" in out.stdout
    assert (tmp_path / "local" / "export" / "rounds.parquet").exists()
    (trial,) = load_trials(str(tmp_path / "local"))
    assert [r["round"] for r in trial.records] == [0, 1]


def dry_run(tmp_path, *args: str) -> str:
    out = subprocess.run(
        [PYTHON, "-m", "sweeps.conv_cifar10", "--storage", str(tmp_path), "--name", "dry", "--dry-run", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "dry").exists()
    return out.stdout


def test_dry_run_prints_the_grid_and_runs_nothing(tmp_path):
    """The card's command: the thesis' grid (Conv-2/4/6 x 3 seeds x ticket, re-init, random pruning) placed on
    8 GPUs, in numbers."""
    out = dry_run(tmp_path, "--num-gpus", "8")
    assert "grid: 27 trajectories: 3 configurations x 3 seed(s) x (imp, random-prune, reinit)" in out
    # one seed per trial for the long nets, random pruning (which needs nothing of its ticket at k = 0) in trials
    # of its own: every GPU busy from the start, and no single Conv-6 cohort bounding the wall time
    assert "plan: 16 trials for 8 GPUs (--num-gpus 8): per trial 1 CPU and 1 GPU, 8 at once" in out
    assert "conv6-cifar10-imp-layerwise-fc0.2-conv0.15-s0: 2 members (imp, reinit), 1 CPU, 1 GPU" in out
    assert "conv6-cifar10-random-prune-layerwise-fc0.2-conv0.15-s0: 1 members (random-prune), 1 CPU, 1 GPU" in out
    assert "GPUs: 8 of 8 busy at start" in out
    used = re.search(
        r"estimate: [\d.]+ h wall time; [\d.]+ GPU-hours held, [\d.]+ busy: (\d+)% utilisation over "
        r"the sweep \([\d.]+ GPU-hours, (\d+)%, on 1-GPU nodes",
        out,
    )
    assert used and int(used[1]) >= 90 and int(used[2]) >= 90, out
    assert re.search(r"memory per GPU: up to [\d.]+ GiB of 24 GiB", out)
    assert "auto" not in out
    quick = dry_run(tmp_path, "--num-gpus", "8", "--seeds", "1", "--baselines", "none")
    assert "plan: 3 trials for 8 GPUs" in quick and "GPUs: 3 of 8 busy at start" in quick
    assert "conv6-cifar10-imp-layerwise-fc0.2-conv0.15-s0: 1 members (imp)" in quick
    if torch.cuda.device_count() == 0:  # without --num-gpus: the plan that runs here, on this machine's devices
        here = dry_run(tmp_path)
        assert "plan: 9 trials on CPUs (this machine's 0 CUDA devices (--num-gpus not given))" in here
        assert "GPUs: none" in here
        shared = subprocess.run(
            [PYTHON, "-m", "sweeps.conv_cifar10", "--gpus-per-trial", "0.25", "--dry-run"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert shared.returncode == 2 and shared.stderr.strip().splitlines() == [
            "error: --gpus-per-trial=0.25 exceeds the sweep's 0 GPUs (this machine's 0 CUDA devices (--num-gpus not "
            "given)); give --num-gpus, or --gpus-per-trial 0 for CPU trials"
        ]


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--archs", "lenet5"], "'lenet5' is not allowed here"),
        (["--seeds", ","], "--seeds=',' is empty"),
        (["--seeds", "0"], "--seeds='0' must be at least 1"),
        (["--num-gpus", "-1"], "--num-gpus=-1 must be >= 0"),
        (["--gpus-per-trial", "1.5"], "--gpus-per-trial=1.5 is not allowed: a trial trains its cohort on one GPU"),
        (["--device", "tpu"], "--device='tpu' is unknown; allowed: auto, cpu, cuda"),
        (["--num-gpus", "64"], "--num-gpus=64: this machine has"),
        (["--cpus-per-trial", "512"], "--cpus-per-trial=512 exceeds every node of this machine"),
        (
            ["--num-gpus", "1", "--gpu-memory", "0.5", "--dry-run"],
            "one seed of lenet-mnist-imp-layerwise-fc0.2 (1 member) needs 1.2 GiB, more than 1 of a 0.5 GiB GPU",
        ),
        (["--address", "127.0.0.1:1", "--dry-run"], "--address 127.0.0.1:1 without --num-gpus: a dry run does not ask"),
        (
            [
                "--address",
                "127.0.0.1:1",
                "--num-gpus",
                "32",
                "--cluster-config",
                str(ROOT / "cluster.yaml"),
                "--dry-run",
            ],
            "--num-gpus=32 exceeds what",
        ),
        (["--baselines", "lottery"], "'lottery' is unknown"),
        (["--ablations", "shuffle,flip"], "--ablations: 'flip' is unknown; allowed: shuffle, reinit, invert"),
        (["--prune-rates", "1.2"], "prune_rate_fc=1.2"),
        (["--address", "127.0.0.1:1"], "--address 127.0.0.1:1 is unreachable"),
        (["--storage", "/proc/lth_ray_cannot_write"], "is not writable"),
        (["--resume", "--name", "nothing"], "is not a Tune experiment to continue"),
    ],
)
def test_bad_input_is_one_clear_line(extra, fragment, tmp_path, tiny_mnist):
    args = ["--data-root", str(tiny_mnist), "--storage", str(tmp_path), "--name", "x", *extra]
    out = subprocess.run(sweep_cmd(*args), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert fragment in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_existing_experiment_is_never_touched_without_resume(tiny_experiment):
    before = {p: p.stat().st_mtime_ns for p in tiny_experiment.rglob("*")}
    args = ["--storage", str(tiny_experiment.parent), "--name", tiny_experiment.name]
    out = subprocess.run(sweep_cmd(*args), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "already exists; pass --resume" in out.stderr
    assert {p: p.stat().st_mtime_ns for p in tiny_experiment.rglob("*")} == before


def test_reinit_trials_use_their_tickets_masks(tiny_experiment):
    trials = load_trials(str(tiny_experiment))
    tickets = {t.config.seed: t for t in trials if t.config.method == "imp"}
    for t in trials:
        if t.config.method == "reinit":
            ticket = tickets[t.config.seed]
            for r in (1, 2):
                assert torch.equal(t.rounds.masks(r)["fc.0"], ticket.rounds.masks(r)["fc.0"])
    methods = sorted(t.config.method for t in trials)
    assert methods == ["imp", "imp", "random-prune", "random-prune", "reinit", "reinit"]


def test_global_pruning_late_rewinding_baselines_through_ray(tiny_mnist, ray_cluster, tmp_path):
    """A non-default mode end to end: every trial bitwise its run without Ray, baselines at the ticket's
    density each round, rewound rounds on the absolute axis."""
    args = sweep_argv(
        tiny_mnist,
        tmp_path,
        "modes",
        "--address",
        ray_cluster.address,
        "--pruning",
        "global",
        "--rewind-iteration",
        "50",
        "--baselines",
        "reinit,random-prune",
        "--no-export",
    )
    out = subprocess.run(sweep_cmd(*args), cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    trials = load_trials(str(tmp_path / "modes"))
    assert_same_as_without_ray(trials, tiny_mnist)
    density = {t.config.method: {r["round"]: r["sparsity"] for r in t.records} for t in trials}
    for method in ("reinit", "random-prune"):
        assert density[method] == {r: d for r, d in density["imp"].items() if r >= 1}
    by_method = {t.config.method: t.records for t in trials}
    assert by_method["imp"][1]["iterations"] == [100, 150, 200]
    assert by_method["random-prune"][0]["iterations"] == [100, 150, 200]
    assert by_method["reinit"][0]["iterations"] == [50, 100, 150, 200]


def test_a_diverging_sweep_finishes_and_says_which_rounds_diverged(tiny_mnist, ray_cluster, tmp_path):
    args = sweep_argv(
        tiny_mnist, tmp_path, "nan", "--address", ray_cluster.address, "--learning-rate", "1e11", "--rounds", "3"
    )
    out = subprocess.run(sweep_cmd(*args), cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]  # finished, not unfinished work
    assert "diverged (stopped there)" in out.stdout and "(round 0)" in out.stdout
    (t,) = load_trials(str(tmp_path / "nan"))
    assert t.finished and not t.complete and t.diverged_round == 0
    report = subprocess.run(
        [PYTHON, "-m", "lth_ray.cli", "report", str(tmp_path / "nan")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.returncode == 0, report.stderr
    summary = (tmp_path / "nan" / "report" / "summary.md").read_text()
    diverged = summary.split("## Diverged rounds")[1].split("##")[0]
    assert "lenet-mnist-imp-layerwise-fc0.2-lr1e+11-s0" in diverged


def test_cohort_trials_export_the_same_shape_as_one_seed_per_trial(tiny_mnist, ray_cluster, tmp_path):
    """One cohort of 2 seeds x (ticket, re-init) or one trial per seed: the same trajectories, Parquet rows and
    columns, thesis files; the numbers equal within float rounding (the company only changes batched kernels)."""
    import pyarrow.parquet as pq

    exports = {}
    for per_trial in ("1", "2"):
        args = sweep_argv(
            tiny_mnist,
            tmp_path,
            f"s{per_trial}",
            "--address",
            ray_cluster.address,
            "--rounds",
            "1",
            "--seeds",
            "2",
            "--baselines",
            "reinit",
            "--seeds-per-trial",
            per_trial,
        )
        out = subprocess.run(sweep_cmd(*args), cwd=ROOT, capture_output=True, text=True, timeout=400)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        assert len(list((tmp_path / f"s{per_trial}").glob("lenet-*"))) == {"1": 2, "2": 1}[per_trial]
        exports[per_trial] = tmp_path / f"s{per_trial}" / "export"
    one, two = (pq.read_table(exports[k] / "rounds.parquet") for k in ("1", "2"))
    assert one.schema.names == two.schema.names and [f.type for f in one.schema] == [f.type for f in two.schema]
    a, b = (t.to_pandas().sort_values(["trajectory", "round"], ignore_index=True) for t in (one, two))
    assert a[["trajectory", "round", "sparsity", "start_iteration", "steps"]].equals(
        b[["trajectory", "round", "sparsity", "start_iteration", "steps"]]
    )
    assert (a["final_test_loss"] - b["final_test_loss"]).abs().max() < 1e-3  # accuracies could flip a sample
    names = [
        sorted(p.name.split("-", 2)[-1] if p.name[:4].isdigit() else p.name for p in exports[k].iterdir())
        for k in ("1", "2")
    ]
    assert names[0] == names[1]


def test_pruning_at_init_and_ablations_through_ray_export_and_report(pai_experiment, tiny_mnist, tmp_path):
    """A cohort of the ticket, GraSP and random pruning with their shuffle ablations on real Ray: bitwise the
    cohort without Ray; Parquet names every member by its label; the thesis files keep their layout and the
    sidecar lists the extra methods; the report draws and tabulates every method per density."""
    import pandas as pd

    from lth_ray.results.report import report

    trials = load_trials(str(pai_experiment))
    labels = {"imp", "grasp", "random-prune", "imp-shuffle", "grasp-shuffle", "random-prune-shuffle"}
    assert {t.config.label for t in trials} == labels
    assert_same_as_without_ray(trials, tiny_mnist)
    export = pai_experiment / "export"
    rounds = pd.read_parquet(export / "rounds.parquet")
    assert set(rounds["method"]) == labels
    per_round = rounds[rounds["round"] > 0].groupby("round")["sparsity"].nunique()
    assert (per_round == 1).all()  # every member at the ticket's density
    acc = rounds[rounds["round"] == 1].set_index("method")["final_test_loss"]
    assert acc["imp-shuffle"] != acc["random-prune-shuffle"]  # same per-layer counts, yet each its own draw
    sidecar = json.loads(next(export.glob("*-lth_ray.json")).read_text())
    assert sorted(sidecar["other_methods"]) == ["grasp", "grasp-shuffle", "imp-shuffle", "random-prune-shuffle"]
    assert len(list(export.glob("*-random-prune-histories0.npz"))) == 1  # the thesis layout as before
    written = report(str(export), tmp_path / "report")
    assert any(p.name.startswith("methods-") for p in written)
    md = (tmp_path / "report" / "summary.md").read_text()
    assert "## Every method per density" in md
    assert "grasp-shuffle" in md.split("## Every method per density")[1].split("\n## ")[0]
