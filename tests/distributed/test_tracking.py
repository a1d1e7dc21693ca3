"""`--track mlflow|wandb`: one run per member, one row per member and round, no API key anywhere; offline only.

W&B runs in offline mode (its files under WANDB_DIR in tmp_path, read back from the run's transaction log),
MLflow against a local SQLite store set by MLFLOW_TRACKING_URI. The callbacks' logic is checked first on
fake trials without Ray, then a real tiny sweep per tracker runs through `lth_ray.distributed.sweep.main`.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import sweep_argv
from pyarrow import fs as pafs

from lth_ray.core.engine.records import RoundResult
from lth_ray.core.options.resolve import from_preset
from lth_ray.core.spec.config import ConfigError
from lth_ray.core.store.rounds import RoundStore
from lth_ray.distributed import tracking
from lth_ray.results.experiment import member_rounds_path

pytest.importorskip("wandb")
pytest.importorskip("mlflow")

FAKE_KEY = "fake-wandb-key-3f9c1e7a0b"  # must appear in no file the sweep or the trackers write


def record(r: int, acc: float, diverged: bool = False) -> dict:
    return {
        "round": r,
        "method": "imp",
        "sparsity": 1 - 0.8**r,
        "early_stop_iteration": 100,
        "val_acc_at_early_stop": acc,
        "test_acc_at_early_stop": acc,
        "final_val_acc": acc,
        "final_test_acc": float("nan") if diverged else acc,
        "diverged": diverged,
        "seconds": 1.5,
    }


def fake_trial(tmp_path: Path, rounds: dict[int, list[int]]):
    """A cohort trial (ticket seed 0, its re-init, ticket seed 1) with round files for `rounds` (member ->
    rounds written)."""
    ticket = from_preset("lenet", iterations=100, eval_every=50, rounds=2)
    members = [ticket, ticket.replace(method="reinit"), ticket.replace(seed=1)]
    path = str(tmp_path / "trial_a")
    for i, done in rounds.items():
        store = RoundStore(pafs.LocalFileSystem(), member_rounds_path(path, members[i].key))
        for r in done:
            store.write_round(RoundResult(record(r, 0.5 + r / 10 + i / 100), {}, {}, None))
    return SimpleNamespace(
        trial_id="abc_00000",
        config={"cohort": [m.to_dict() for m in members]},
        path=path,
        storage=SimpleNamespace(storage_filesystem=pafs.LocalFileSystem()),
    )


def test_round_metrics_are_numbers_only():
    metrics = tracking.round_metrics(record(1, 0.9, diverged=True))
    assert metrics["round"] == 1 and metrics["diverged"] == 1 and metrics["test_acc_at_early_stop"] == 0.9
    assert "method" not in metrics and "final_test_acc" not in metrics  # a string, a NaN


def test_member_rounds_one_row_per_member_with_the_round_once(tmp_path):
    trial = fake_trial(tmp_path, {0: [0, 1], 1: [1], 2: [0, 1]})  # re-init has no dense round
    logged = set()
    rows = tracking.member_rounds(trial, {"round": 0}, logged)
    assert [(r.run_id, r.round) for r in rows] == [("abc_00000-m000", 0), ("abc_00000-m002", 0)]
    rows = tracking.member_rounds(trial, {"round": 1}, logged)
    assert [r.run_id for r in rows] == ["abc_00000-m000", "abc_00000-m001", "abc_00000-m002"]
    assert rows[1].name.endswith("-reinit-layerwise-fc0.2-s0") and rows[1].config["label"] == "reinit"
    assert rows[2].config["seed"] == 1 and rows[2].metrics["test_acc_at_early_stop"] == pytest.approx(0.62)
    assert tracking.member_rounds(trial, {"round": 1}, logged) == []  # a repeated result logs nothing again
    assert tracking.member_rounds(trial, {"round": 2}, logged) == []  # no round files yet
    assert tracking.member_rounds(trial, {"done": True}, logged) == []


def test_check_track():
    tracking.check_track("none")
    with pytest.raises(ConfigError, match="--track='tensorboard' is unknown; allowed: none, wandb, mlflow"):
        tracking.check_track("tensorboard")


def test_wandb_online_without_a_key_is_one_line(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc login
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    import wandb

    try:
        with pytest.raises(ConfigError, match="^--track wandb: no W&B API key; set WANDB_API_KEY"):
            tracking.check_track("wandb")
    finally:
        wandb.teardown()  # W&B keeps the settings it read in this process


def test_the_logger_gets_the_drivers_wandb_settings_and_the_key_only_online(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", "runs")
    monkeypatch.setenv("WANDB_PROJECT", "lth")
    env = tracking.logger_environment()
    assert env["WANDB_DIR"] == str(tmp_path / "runs") and env["WANDB_PROJECT"] == "lth"
    assert "WANDB_API_KEY" not in env
    monkeypatch.setenv("WANDB_MODE", "online")
    assert tracking.logger_environment()["WANDB_API_KEY"] == FAKE_KEY


@pytest.fixture
def mlflow_store(monkeypatch, tmp_path) -> str:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def mlflow_rows(uri: str, experiment: str) -> dict[str, list[tuple[int, float]]]:
    """{run name: [(step, test accuracy at early stop)]} of the MLflow experiment."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return {
        run.info.run_name: sorted(
            (m.step, m.value) for m in client.get_metric_history(run.info.run_id, "test_acc_at_early_stop")
        )
        for run in runs
    }


def test_mlflow_callback_on_fake_trials_continues_its_runs(tmp_path, mlflow_store):
    trial = fake_trial(tmp_path, {0: [0, 1], 1: [1], 2: [0]})
    cb = tracking.tracking_callbacks("mlflow", "sweep-x")[0]
    cb.setup()
    cb.log_trial_start(trial)
    cb.log_trial_result(1, trial, {"round": 0})
    cb.log_trial_end(trial, failed=True)
    again = tracking.tracking_callbacks("mlflow", "sweep-x")[0]  # a resumed driver: the same runs go on
    again.setup()
    again.log_trial_result(2, trial, {"round": 1})
    again.log_trial_end(trial)
    rows = mlflow_rows(mlflow_store, "sweep-x")
    keys = [from_preset("lenet").replace(**d).key for d in ({}, {"method": "reinit"}, {"seed": 1})]
    assert sorted(rows) == sorted(keys)
    assert [s for s, _ in rows[keys[0]]] == [0, 1] and [s for s, _ in rows[keys[1]]] == [1]
    assert [s for s, _ in rows[keys[2]]] == [0]


class ListQueue:
    def __init__(self, items):
        self.items = list(items)

    def get(self):
        return self.items.pop(0)


def wandb_records(run_file: Path):
    """The records of a W&B run's transaction log (`run-<id>.wandb`): a LevelDB-style log of protobufs."""
    from wandb.proto import wandb_internal_pb2

    data = run_file.read_bytes()
    assert data[:4] == b":W&B"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk  # full, first | middle, last
        if kind in (1, 4):
            rec = wandb_internal_pb2.Record()
            rec.ParseFromString(pending)
            yield rec


def wandb_rows(wandb_dir: Path) -> dict[str, list[dict]]:
    """{run id: its history rows} of the offline runs under `wandb_dir` (a resumed run: all its files)."""
    rows: dict[str, list[dict]] = {}
    for run_file in sorted(wandb_dir.rglob("run-*.wandb")):
        for rec in wandb_records(run_file):
            if rec.WhichOneof("record_type") == "run":
                rows.setdefault(rec.run.run_id, [])
            if rec.WhichOneof("record_type") == "history":
                row = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item}
                rows.setdefault(run_file.stem[len("run-") :], []).append(row)
    return rows


def test_wandb_logger_process_one_run_per_member(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # Tune's logging process moves to the trial's folder: come back after
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_CONSOLE", "off")  # (this process is pytest's)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    (tmp_path / "wandb-dir").mkdir()
    trial = fake_trial(tmp_path, {0: [0, 1], 1: [1], 2: [0, 1]})
    logged = set()
    items = [
        (tracking._QueueItem.RESULT, row) for r in (0, 1) for row in tracking.member_rounds(trial, {"round": r}, logged)
    ]
    actor = tracking.MemberRunsActor(
        str(tmp_path), ListQueue(items + [(tracking._QueueItem.END, None)]), [], [], project="p", group="sweep-x"
    )
    import wandb

    try:
        actor.run()
    finally:
        wandb.teardown()
    rows = wandb_rows(tmp_path / "wandb-dir")
    assert sorted(rows) == ["abc_00000-m000", "abc_00000-m001", "abc_00000-m002"]
    assert [(r["_step"], r["round"]) for r in rows["abc_00000-m001"]] == [(1, 1)]
    assert [r["round"] for r in rows["abc_00000-m000"]] == [0, 1]


# ------------------------------------------------------------------ real sweeps


def files_holding(text: str, *folders: Path) -> list[str]:
    needle = text.encode()
    return [str(f) for folder in folders for f in Path(folder).rglob("*") if f.is_file() and needle in f.read_bytes()]


def tracked_sweep(tmp_path: Path, tiny_mnist, ray_cluster, track: str):
    """A tiny sweep of one seed (the ticket, rounds 0-2, and its re-init, rounds 1-2) logged by `track`, with
    a fake W&B key in the driver's environment; returns its trajectories, each with its rounds."""
    from lth_ray.distributed.sweep import main
    from lth_ray.results.experiment import load_trials
    from sweeps.lenet_mnist import DEFAULTS

    storage = tmp_path / "storage"
    argv = sweep_argv(
        tiny_mnist,
        storage,
        f"tracked-{track}",
        "--baselines",
        "reinit",
        "--no-export",
        "--address",
        ray_cluster.address,
        "--track",
        track,
    )
    assert main(DEFAULTS, argv) == 0
    trials = load_trials(str(storage / f"tracked-{track}"), weights=False)
    assert sorted(len(t.rounds_done) for t in trials) == [2, 3]
    return trials


@pytest.mark.e2e
def test_sweep_tracked_in_mlflow(tmp_path, monkeypatch, capsys, tiny_mnist, ray_cluster, mlflow_store):
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)  # set, as on a user's machine: written nowhere
    trials = tracked_sweep(tmp_path, tiny_mnist, ray_cluster, "mlflow")
    rows = mlflow_rows(mlflow_store, "tracked-mlflow")
    assert sorted(rows) == sorted(t.config.key for t in trials)  # one run per member
    for t in trials:  # one row per member and round, with the round's own numbers
        assert rows[t.config.key] == [(rec["round"], rec["test_acc_at_early_stop"]) for rec in t.records]
    out = capsys.readouterr().out
    assert "progress: 0/5 rounds (0%), rate and ETA after the first round" in out
    assert "progress: 5/5 rounds (100%), done" in out
    assert files_holding(FAKE_KEY, tmp_path, Path(ray_cluster.head_node.get_session_dir_path())) == []


@pytest.mark.e2e
def test_sweep_tracked_in_wandb_offline(tmp_path, monkeypatch, tiny_mnist, ray_cluster):
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    (tmp_path / "wandb-dir").mkdir()
    trials = tracked_sweep(tmp_path, tiny_mnist, ray_cluster, "wandb")
    rows = wandb_rows(tmp_path / "wandb-dir")
    assert sorted(rows) == sorted(t.trial_id for t in trials)  # one run per member: <trial id>-m<index>
    for t in trials:
        assert [(r["_step"], r["test_acc_at_early_stop"]) for r in rows[t.trial_id]] == [
            (rec["round"], rec["test_acc_at_early_stop"]) for rec in t.records
        ]
    assert files_holding(FAKE_KEY, tmp_path, Path(ray_cluster.head_node.get_session_dir_path())) == []
