"""Secure by default (docs/security.md): Ray's token authentication on the sweep's embedded Ray and on the
test cluster, owner-only token files that are never replaced, results read as data, and no credential
passed through the environment in anything lth_ray writes.

A "client" here is one GCS call made the way `ray.init` makes its first one (`InnerGcsClient`), with a given
auth environment, in a subprocess of its own: the refusal is the server's, not a client-side check.
"""

from __future__ import annotations

import json
import os
import pickle
import secrets
import stat
import subprocess
import tempfile
import zipfile
from pathlib import Path

import pytest
from conftest import PYTHON, ROOT, sweep_argv

from lth_ray.distributed import security

AUTH_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
WRONG_TOKEN = "0" * 64

PROBE = r"""
import json, os, sys
from ray._raylet import AuthenticationTokenLoader, Config, InnerGcsClient
from ray.exceptions import AuthenticationError
out = {}
for name, env in json.loads(sys.argv[2]).items():
    for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        os.environ.pop(k, None)
    os.environ.update(env)
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()
    try:
        InnerGcsClient.standalone(sys.argv[1], None, 5000)
        out[name] = "accepted"
    except AuthenticationError:
        out[name] = "refused"
print(json.dumps(out))
"""

EMBEDDED = r"""
import json, sys
import ray
from lth_ray.distributed.sweep import SweepSpec, start_ray
start_ray(SweepSpec(name="auth", storage=sys.argv[1], trajectories=()))
print(json.dumps({"gcs": ray.get_runtime_context().gcs_address}), flush=True)
sys.stdin.readline()
ray.shutdown()
"""


def user_env(home: Path, **extra: str) -> dict:
    """The environment of a user with no Ray token anywhere (a fresh HOME, no RAY_AUTH_* variables)."""
    env = {k: v for k, v in os.environ.items() if k not in AUTH_VARS}
    return {**env, "HOME": str(home), **extra}


def clients(token_path: Path) -> dict:
    return {
        "no token (auth disabled)": {"RAY_AUTH_MODE": "disabled"},
        "wrong token": {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": WRONG_TOKEN},
        "the cluster's token": {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_path)},
    }


def probe(address: str, token_path: Path, home: Path) -> dict:
    home.mkdir(exist_ok=True)
    out = subprocess.run(
        [PYTHON, "-c", PROBE, address, json.dumps(clients(token_path))],
        env=user_env(home),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


EXPECTED = {"no token (auth disabled)": "refused", "wrong token": "refused", "the cluster's token": "accepted"}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ------------------------------------------------------------------ Ray refuses clients without the token


@pytest.mark.e2e
def test_test_cluster_refuses_a_client_without_the_token(ray_cluster, tmp_path):
    token = Path(os.environ["RAY_AUTH_TOKEN_PATH"])
    assert os.environ["RAY_AUTH_MODE"] == "token" and mode(token) == 0o600
    assert probe(ray_cluster.address, token, tmp_path / "home") == EXPECTED


@pytest.mark.e2e
def test_sweep_without_the_token_is_refused_by_the_cluster_in_one_line(ray_cluster, tiny_mnist, tmp_path):
    (tmp_path / "home").mkdir()
    args = sweep_argv(tiny_mnist, tmp_path, "refused", "--address", ray_cluster.address)
    out = subprocess.run(
        [PYTHON, "-m", "sweeps.lenet_mnist", *args],
        cwd=ROOT,
        env=user_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    (line,) = [x for x in out.stderr.splitlines() if x.startswith("error:")]
    assert f"--address {ray_cluster.address}: that Ray cluster uses token authentication and refused" in line
    assert "RAY_AUTH_TOKEN_PATH" in line and not (tmp_path / "refused").exists()


@pytest.mark.ray
@pytest.mark.e2e
def test_embedded_ray_has_a_private_token_and_refuses_clients_without_it(tmp_path):
    """A user with no token and no RAY_AUTH_MODE: the sweep's own Ray still runs with token auth."""
    home = tmp_path / "home"
    home.mkdir()
    log = tmp_path / "stderr"
    proc = subprocess.Popen(
        [PYTHON, "-c", EMBEDDED, str(tmp_path)],
        cwd=ROOT,
        env=user_env(home),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=open(log, "w"),
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line, log.read_text()[-3000:]
        token = home / ".ray" / "auth_token"
        assert mode(token) == 0o600 and mode(token.parent) == 0o700
        assert len(token.read_text()) == 64
        assert probe(json.loads(line)["gcs"], token, tmp_path / "client") == EXPECTED
    finally:
        proc.communicate("\n", timeout=60)
    assert proc.returncode == 0
    assert f"its token is in {token} (readable by you only)" in log.read_text()


# ------------------------------------------------------------------ the token file (no Ray started)


@pytest.fixture
def user_home(tmp_path, monkeypatch):
    """This process as a user with HOME=tmp_path/home and no token variables (RAY_AUTH_MODE as the caller sets)."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    return home


def test_existing_token_is_kept_and_made_owner_only(user_home, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    token = user_home / ".ray" / "auth_token"
    token.parent.mkdir()
    token.write_text("the user's own token")
    token.chmod(0o644)  # what `ray get-auth-token --generate` or ray.init leave under umask 022
    (note,) = security.prepare_auth(None)
    assert note == f"note: {token} was readable by other users (mode 644); made it 0600"
    assert token.read_text() == "the user's own token" and mode(token) == 0o600
    assert security.prepare_auth(None) == []  # nothing more to say


def test_a_new_token_never_replaces_an_existing_one(tmp_path):
    token = tmp_path / "auth_token"
    token.write_text("keep me")
    security.create_private_token(token)
    assert token.read_text() == "keep me"
    security.create_private_token(tmp_path / "new" / "auth_token")
    assert mode(tmp_path / "new" / "auth_token") == 0o600 and mode(tmp_path / "new") == 0o700


def test_someone_elses_readable_token_is_refused(user_home, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    token = user_home / "shared_token"
    token.write_text("x" * 64)
    token.chmod(0o640)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token))
    monkeypatch.setattr(security.os, "getuid", lambda: token.stat().st_uid + 1)
    with pytest.raises(security.AuthSetupError, match="readable by other users and not yours to fix"):
        security.prepare_auth("10.0.0.1:6379")
    assert mode(token) == 0o640


@pytest.mark.parametrize("content, expected", [(None, "cannot read the token file"), ("\n", "the token file is empty")])
def test_unusable_token_path(user_home, monkeypatch, content, expected):
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    token = user_home / "token"
    if content is not None:
        token.write_text(content)
        token.chmod(0o600)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token))
    with pytest.raises(security.AuthSetupError, match=f"RAY_AUTH_TOKEN_PATH={token}: {expected}"):
        security.prepare_auth(None)


def test_auth_switched_off_by_the_user_is_respected_with_a_warning(user_home, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    (warning,) = security.prepare_auth(None)
    assert warning.startswith("warning: RAY_AUTH_MODE=disabled: Ray's token authentication is off, so anyone")
    assert os.environ["RAY_AUTH_MODE"] == "disabled" and not (user_home / ".ray").exists()


def test_address_uses_a_token_given_for_it_and_no_other(user_home, monkeypatch):
    monkeypatch.delenv("RAY_AUTH_MODE")
    assert security.prepare_auth("10.0.0.1:6379") == []  # no token given: Ray's own default, nothing written
    assert "RAY_AUTH_MODE" not in os.environ and not (user_home / ".ray").exists()
    token = user_home / "cluster_token"
    security.create_private_token(token)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token))
    assert security.prepare_auth("10.0.0.1:6379") == []
    assert os.environ["RAY_AUTH_MODE"] == "token"


# ------------------------------------------------------------------ results are data, never code


def test_reading_an_experiment_never_unpickles_tunes_blobs(tiny_experiment, tmp_path):
    """Tune's snapshot embeds cloudpickle blobs (Tune's own reader runs them); lth_ray reads it as JSON only."""
    import shutil

    from lth_ray.results.experiment import load_trials, open_analysis

    copy = tmp_path / "tiny"
    shutil.copytree(tiny_experiment, copy, ignore=shutil.ignore_patterns("export", "report"))
    (snapshot,) = copy.glob("experiment_state-*.json")
    state = json.loads(snapshot.read_text())
    marker = tmp_path / "pwned"

    class Payload:  # unpickling it creates `marker`: any code could run there
        def __reduce__(self):
            return (open, (str(marker), "w"))

    blob = {"_type": "CLOUDPICKLE_FALLBACK", "value": pickle.dumps(Payload()).hex()}
    for i, (trial, run) in enumerate(state["trial_data"]):
        trial, run = json.loads(trial), json.loads(run)
        trial["storage"] = trial["trial_name_creator"] = blob
        run["checkpoint_manager"] = blob
        state["trial_data"][i] = [json.dumps(trial), json.dumps(run)]
    snapshot.write_text(json.dumps(state))
    trials = load_trials(str(copy), weights=False)
    assert len({t.tune_trial_id for t in trials}) == len(open_analysis(str(copy)).trials)
    assert len(trials) == 6 and all(t.complete for t in trials)
    assert not marker.exists()
    from ray.tune import ExperimentAnalysis

    try:  # the same folder through Tune's reader: the payload runs (which is why lth_ray does not use it)
        ExperimentAnalysis(str(copy))
    except Exception:  # noqa: BLE001 (what the payload returned is no Trial storage)
        pass
    assert marker.exists()


# ------------------------------------------------------------------ no credential in anything lth_ray writes


def _contents(path: Path) -> list[bytes]:
    """The bytes of a file as written, and where it packs others (zip: .pt, .npz) or compresses (Parquet),
    what a reader gets back."""
    parts = [path.read_bytes()]
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            parts += [z.read(n) for n in z.namelist()]
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        parts.append(json.dumps(table.to_pylist(), default=str).encode())
        parts.append(str(table.schema.metadata).encode())
    return parts


@pytest.mark.ray
@pytest.mark.e2e
def test_no_credential_from_the_environment_in_results_exports_reports_or_logs(tiny_mnist, tmp_path):
    """A sweep on an embedded Ray (its workers inherit the environment), its export and report, the logs of
    both commands and Ray's session logs."""
    gcp = tmp_path / "gcp.json"
    gcp.write_text(
        json.dumps(
            {
                "type": "service_account",
                "private_key": "-----BEGIN PRIVATE KEY-----LTHRAYFAKEGCPKEY0042-----END PRIVATE KEY-----",
            }
        )
    )
    secrets_by_name = {
        "AWS_ACCESS_KEY_ID": "AKIALTHRAYFAKE000042",
        "AWS_SECRET_ACCESS_KEY": "lthrayFakeSecretAccessKey/0042+" + secrets.token_hex(8),
        "AWS_SESSION_TOKEN": "lthrayFakeSessionToken0042" + secrets.token_hex(8),
        "AZURE_STORAGE_KEY": "lthrayFakeAzureKey0042" + secrets.token_hex(8),
        "RAY_AUTH_TOKEN": secrets.token_hex(32),  # the embedded Ray really uses this one
    }
    home = tmp_path / "home"
    home.mkdir()
    ray_tmp = tempfile.mkdtemp(prefix="r", dir="/tmp")  # short: Ray's socket paths live under it
    env = user_env(home, **secrets_by_name, GOOGLE_APPLICATION_CREDENTIALS=str(gcp), RAY_TMPDIR=ray_tmp)
    storage = tmp_path / "results"
    args = sweep_argv(tiny_mnist, storage, "secrets", "--rounds", "1", "--iterations", "100", "--baselines", "reinit")
    logs = tmp_path / "logs"
    logs.mkdir()
    try:
        for name, cmd in [
            ("sweep", [PYTHON, "-m", "sweeps.lenet_mnist", *args]),
            ("report", [PYTHON, "-m", "lth_ray.cli", "report", str(storage / "secrets")]),
        ]:
            out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, timeout=300)
            (logs / f"{name}.out").write_bytes(out.stdout)
            (logs / f"{name}.err").write_bytes(out.stderr)
            assert out.returncode == 0, (out.stdout[-2000:] + out.stderr[-3000:]).decode(errors="replace")
        experiment = storage / "secrets"
        ray_logs = [p for p in sorted(Path(ray_tmp).rglob("*")) if p.is_file() and not p.is_symlink()]
        files = [p for p in sorted(experiment.rglob("*")) if p.is_file()] + sorted(logs.iterdir()) + ray_logs
        names = {p.name for p in files}
        assert {"params.json", "result.json", "histories.parquet", "rounds.parquet", "summary.md"} <= names
        assert "runtime_env_agent.log" in names  # Ray's own logs too: Tune copies AWS_* into runtime envs it logs
        assert any(p.suffix == ".npz" for p in files) and any(p.suffix == ".pt" for p in files)
        values = {k: v.encode() for k, v in secrets_by_name.items()}
        values["GOOGLE_APPLICATION_CREDENTIALS (content)"] = b"LTHRAYFAKEGCPKEY0042"
        leaks = [
            f"{name} in {p}" for p in files for part in _contents(p) for name, value in values.items() if value in part
        ]
        assert not leaks
        assert not (home / ".ray").exists()  # RAY_AUTH_TOKEN given: no token file written
    finally:
        import shutil

        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.mark.parametrize("uri", ["s3://AKIAEXAMPLE:s3cr3t@bucket/results", "s3://bucket/results?secret_key=s3cr3t"])
def test_a_storage_uri_carrying_credentials_is_refused(uri):
    from lth_ray.core.spec.config import ConfigError
    from lth_ray.distributed.sweep import build_parser, spec_from_args
    from sweeps.lenet_mnist import DEFAULTS

    with pytest.raises(ConfigError, match="carries credentials") as err:
        spec_from_args(build_parser(DEFAULTS).parse_args(["--storage", uri, "--name", "x"]), DEFAULTS)
    assert "s3cr3t" not in str(err.value)


def test_a_cifar10_batch_cannot_run_code(tmp_path, tiny_cifar10):
    import pickle
    import shutil

    from lth_ray.core.data.loading import DataError, load_raw

    folder = tmp_path / "cifar-10-batches-py"
    shutil.copytree(tiny_cifar10 / "cifar-10-batches-py", folder)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with open(folder / "data_batch_3", "wb") as f:
        pickle.dump({"data": Evil(), "labels": [0]}, f)
    with pytest.raises(DataError, match="data_batch_3 is not a readable CIFAR-10 batch.*is not allowed"):
        load_raw("cifar10", str(tmp_path))
    assert not marker.exists()
