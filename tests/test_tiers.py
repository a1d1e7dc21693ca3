"""The test tiers hold: a test that uses the session's cluster is marked `ray` (and `-m "not ray"` leaves it out),
and a test not marked `ray` that starts Ray anyway, in the pytest process or in a subprocess, fails loudly even
where it swallows the subprocess' failure. Checked on planted tests, in a pytest of their own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from no_ray.sitecustomize import ENV

ROOT = Path(__file__).resolve().parents[1]

PLANTED = """
import subprocess
import sys


def test_unmarked_starts_ray_in_process():
    import ray

    ray.init(num_cpus=1, include_dashboard=False)


def test_unmarked_runs_ray_in_a_subprocess_and_ignores_its_failure():
    subprocess.run([sys.executable, "-c", "import ray; ray.init(num_cpus=1)"], capture_output=True)


def test_unmarked_imports_ray_without_starting_it():
    done = subprocess.run([sys.executable, "-c", "import ray, ray.tune"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_uses_the_session_cluster(ray_cluster):
    raise AssertionError("deselected by -m 'not ray': it must never run")
"""


def test_an_unmarked_test_that_starts_ray_fails_and_the_cluster_users_are_deselected(tmp_path, monkeypatch):
    (tmp_path / "test_planted.py").write_text(PLANTED)
    monkeypatch.delenv(ENV)  # this pytest's own guard stays out of the planted one's way
    cmd = [sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-q", "-m", "not ray"]
    cmd += ["--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"), str(tmp_path / "test_planted.py")]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    summary = out.stdout.strip().splitlines()[-1]
    assert out.returncode == 1 and "1 failed, 2 passed, 1 deselected, 2 errors" in summary, out.stdout[-3000:]
    assert "test_unmarked_starts_ray_in_process is not marked `ray` but calls ray.init" in out.stdout
    assert "test_unmarked_runs_ray_in_a_subprocess_and_ignores_its_failure is not marked `ray`" in out.stdout
