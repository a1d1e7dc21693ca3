"""No number changes: today's code reproduces the golden outputs recorded before issue 21's refactor, bitwise.

Issue 21 moves the modules into lth_ray/core, lth_ray/distributed and lth_ray/results; a refactor like that must
change no number. `tests/golden_cases.py` defines small deterministic cohorts (IMP in fp32 and fp64, late
rewinding with instability, one-shot with global pruning, pruning at initialization with every ablation, a conv
plan with BatchNorm), and `tests/data/golden/<case>.json` holds what the code of commit bcb7175 (before the
refactor) produced for each: every member's every round, its histories, sparsities, early stop and instability
path as float64 values, and sha256 digests of its masks and weights. Each case runs again here and must match
exactly: floats compared with == (NaN equal to NaN), digests equal.

A failure is a changed number: explain it, never re-record it to make this pass. The numbers are those of one
torch build on one kind of CPU kernels (the environment recorded with them; the cases run on one thread): where
the environment differs, the comparison says nothing about the code and the case is skipped with the reason.
"""

from __future__ import annotations

import json

import golden_cases as G
import pytest


def recorded(name: str) -> dict:
    return json.loads((G.GOLDEN_DIR / f"{name}.json").read_text())


def test_every_case_has_a_recording():
    assert sorted(p.stem for p in G.GOLDEN_DIR.glob("*.json")) == sorted(G.CASES)


@pytest.mark.parametrize("name", list(G.CASES))
def test_case_reproduces_the_recorded_numbers(name):
    golden = recorded(name)
    env, now = golden["meta"]["environment"], G.environment()
    differs = {k: (env[k], now[k]) for k in ("torch", "cpu_capability", "machine") if env[k] != now[k]}
    if differs:
        pytest.skip(f"recorded with another torch build or CPU kernels {differs}: bitwise equality does not apply")
    output = G.run_case(name)
    assert G.same(output, golden["output"]), G.first_difference(output, golden["output"])


def test_the_comparison_sees_a_one_ulp_change():
    import math

    golden = recorded("lenet_fp32")["output"]
    changed = json.loads(json.dumps(golden))
    loss = changed["rounds"][1]["members"][2]["val_loss"]
    loss[0] = math.nextafter(loss[0], math.inf)
    assert G.same(golden, json.loads(json.dumps(golden))) and not G.same(golden, changed)
    assert "rounds[1].members[2].val_loss[0]" in G.first_difference(changed, golden)
    assert G.same([math.nan], [math.nan]) and not G.same([1.0], [1])
