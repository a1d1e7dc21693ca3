"""Cloud storage, for real: a sweep on an S3-compatible server (moto's server mode on 127.0.0.1, reached
through AWS_ENDPOINT_URL, as boto3 and pyarrow read it), with a killed worker, a killed driver and `--resume`,
then the export (visible all at once, through its manifest) and the report."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time

import pytest
import torch
from conftest import PYTHON, ROOT, sweep_argv
from pyarrow import fs as pafs
from test_sweep import FAULT_TIMEOUT_S

from lth_ray.core.data.loading import load_split
from lth_ray.core.engine.trajectory import Trajectory

pytestmark = pytest.mark.e2e
BUCKET = "lth-ray-test"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A local S3 server with one bucket; yields the environment that reaches it."""
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "server.log", "w")
    server = subprocess.Popen(
        [PYTHON, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError as err:
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("moto's S3 server did not start") from err
            time.sleep(0.2)
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", **CREDENTIALS}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        import boto3

        boto3.client("s3").create_bucket(Bucket=BUCKET)
        yield env
    server.terminate()
    server.wait(timeout=30)


def s3_files(prefix: str) -> list[str]:
    fs, path = pafs.FileSystem.from_uri(f"s3://{BUCKET}/{prefix}")
    return [
        i.path
        for i in fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
        if i.type == pafs.FileType.File
    ]


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.ray
def test_sweep_kill_resume_export_report_on_s3(s3, tiny_mnist, tmp_path):
    """The worker dies (SIGKILL) at round 1's iteration 200 and Tune restarts it from the bucket; then, held at
    round 2's iteration 200, the driver is killed (SIGKILL), and `--resume` finishes the sweep bitwise."""
    faults = tmp_path / "faults"
    env = {**os.environ, **s3, "LTH_RAY_FAULT": f"kill:1:200:{faults};block:2:200:{faults}"}
    storage, name = f"s3://{BUCKET}/sweeps", "cloud"
    args = sweep_argv(
        tiny_mnist,
        storage,
        name,
        "--rounds",
        "3",
        "--iterations",
        "400",
        "--eval-every",
        "100",
        "--num-gpus",
        "0",
        "--cpus-per-trial",
        "1",
    )
    cmd = [PYTHON, "-m", "sweeps.lenet_mnist", *args]
    log = open(tmp_path / "driver.log", "w")
    driver = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(
            lambda: list(faults.glob("*.block.json")) or driver.poll() is not None,
            FAULT_TIMEOUT_S,
            "the restarted trial held at round 2",
        )
        assert driver.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver (and its embedded Ray) dies mid-round 2
        driver.wait()
    (killed,) = [json.loads(p.read_text()) for p in faults.glob("*.kill.json")]
    (held,) = [json.loads(p.read_text()) for p in faults.glob("*.block.json")]
    assert (killed["round"], killed["iteration"], held["round"]) == (1, 200, 2) and killed["pid"] != held["pid"]
    in_bucket = s3_files(f"sweeps/{name}")
    assert [r for r in range(4) if any(p.endswith(f"/round_{r:03d}/record.json") for p in in_bucket)] == [0, 1]
    resumed = subprocess.run(
        cmd + ["--resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=FAULT_TIMEOUT_S
    )
    assert resumed.returncode == 0, (
        resumed.stdout[-3000:] + resumed.stderr[-3000:] + (tmp_path / "driver.log").read_text()[-2000:]
    )

    from lth_ray.results import analysis as A
    from lth_ray.results.experiment import load_trials

    (trial,) = load_trials(f"{storage}/{name}")
    assert trial.complete and trial.rounds_done == [0, 1, 2, 3]
    torch.set_num_threads(1)
    alone = Trajectory(trial.config, load_split("mnist", str(tiny_mnist))).run()
    strip = lambda records: [{k: v for k, v in r.items() if k != "seconds"} for r in records]  # noqa: E731
    assert strip(trial.records) == strip(alone)  # bitwise, after a killed worker and a killed driver

    files = s3_files(f"sweeps/{name}/export")
    manifest_path = f"{BUCKET}/sweeps/{name}/export/export.json"
    assert manifest_path in files
    fs, _ = pafs.FileSystem.from_uri(f"s3://{manifest_path}")
    with fs.open_input_stream(manifest_path) as f:
        manifest = json.loads(f.read())
    assert {f"{BUCKET}/sweeps/{name}/export/{manifest['version']}/{n}" for n in manifest["files"]} == set(files) - {
        manifest_path
    }
    exp = A.load_export(f"{storage}/{name}/export")
    assert sorted(exp.rounds["round"]) == [0, 1, 2, 3]
    report = subprocess.run(
        [PYTHON, "-m", "lth_ray.cli", "report", f"{storage}/{name}", "--out", str(tmp_path / "rep")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "rep" / "accuracy_vs_sparsity.png").is_file()


def test_an_export_cut_short_is_never_read_and_the_old_one_stays(s3, tmp_path, monkeypatch):
    """A crash while uploading a new export leaves the previous manifest, and so the previous export."""
    from lth_ray.results import export as E
    from lth_ray.results.analysis import load_export

    out = f"s3://{BUCKET}/exports/e1"
    built = E.export_experiment(
        str(ROOT / "tests" / "data" / "v010-experiment"), str(tmp_path / "local"), report=lambda line: None
    )
    fs, path = pafs.FileSystem.from_uri(out)
    E._upload(built, fs, path, force=False)
    first = load_export(out)
    real_copy = pafs.copy_files

    def crash_midway(src, dst, **kw):
        if dst.endswith("rounds.parquet"):
            raise ConnectionError("network lost while uploading")
        return real_copy(src, dst, **kw)

    monkeypatch.setattr(pafs, "copy_files", crash_midway)
    with pytest.raises(ConnectionError):
        E._upload(built, fs, path, force=True)
    monkeypatch.setattr(pafs, "copy_files", real_copy)
    again = load_export(out)  # the old manifest, the old files
    assert again.rounds.equals(first.rounds)
    with pytest.raises(FileNotFoundError, match="no export.json"):
        load_export(f"s3://{BUCKET}/exports/never-finished")
