"""The test-only fault hook (lth_ray.faults): it fires at its (round, iteration) and nowhere else, once per
trial, says where it landed, kills for real, blocks until released; and a cohort calls it at evaluation points."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import ROOT

from lth_ray.core.engine.cohort import Cohort
from lth_ray.core.faults import FaultHook, parse
from lth_ray.core.options.resolve import from_preset


def test_a_spec_parses_and_a_bad_one_is_refused(tmp_path):
    (a, b) = parse(f"kill:1:400:{tmp_path};block:2:200:{tmp_path}/b")
    assert (a.action, a.round, a.iteration, a.folder) == ("kill", 1, 400, str(tmp_path))
    assert (b.action, b.round, b.iteration) == ("block", 2, 200)
    assert parse("") == () and parse(None) == () and not FaultHook("", "t")
    for bad in ("crash:1:2:/x", "kill:one:2:/x", "kill:1:/x"):
        with pytest.raises(ValueError, match="LTH_RAY_FAULT="):
            parse(bad)


def test_a_block_fires_once_at_its_point_and_waits_for_the_release(tmp_path):
    hook = FaultHook(f"block:1:20:{tmp_path}", "trial-a", {"node_id": "n1"})
    hook(0, 20), hook(1, 10)  # other points: nothing
    assert list(tmp_path.iterdir()) == []
    done = threading.Event()
    worker = threading.Thread(target=lambda: (hook(1, 20), done.set()))
    worker.start()
    marker = tmp_path / "trial-a.block.json"
    while not marker.exists():  # the worker publishes where it is, then waits (nothing here races it)
        time.sleep(0.01)
    assert not done.is_set()
    assert json.loads(marker.read_text())["node_id"] == "n1"
    (tmp_path / "release").touch()
    worker.join(timeout=60)
    assert done.is_set()
    hook(1, 20)  # the same trial again (a restart): already fired, returns at once
    other = FaultHook(f"block:1:20:{tmp_path}", "trial-b")
    other(1, 20)  # another trial fires its own (released already)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["release", "trial-a.block.json", "trial-b.block.json"]


def test_a_kill_is_a_real_sigkill_once_and_the_marker_says_where(tmp_path):
    code = (
        "import sys; from lth_ray.core.faults import FaultHook; h = FaultHook(sys.argv[1], 'w'); "
        "h(1, 100); print('survived', flush=True); h(1, 200); print('not reached')"
    )
    spec = f"kill:1:200:{tmp_path}"
    first = subprocess.run([sys.executable, "-c", code, spec], cwd=ROOT, capture_output=True, text=True)
    assert first.returncode == -signal.SIGKILL and first.stdout == "survived\n"
    landed = json.loads((tmp_path / "w.kill.json").read_text())
    assert (landed["round"], landed["iteration"], landed["action"]) == (1, 200, "kill")
    again = subprocess.run([sys.executable, "-c", code, spec], cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0 and "not reached" in again.stdout  # the restarted process goes on


def test_a_cohort_calls_the_hook_at_each_evaluation_point_of_each_round(split):
    cfg = from_preset("lenet", dataset="mnist", iterations=40, eval_every=20, rounds=1, rewind_iteration=20)
    calls = []
    list(Cohort([cfg], split, progress=lambda r, it: calls.append((r, it))).run_results())
    assert calls == [(0, 20), (0, 40), (1, 40)]  # round 1 starts at k = 20: its first evaluation is at 40
