"""Tune's pickles of earlier sweeps name lth_ray's objects by module path; `--resume` unpickles them, so every
name in the recorded experiments' `tuner.pkl` must still import, and nothing else in them may name lth_ray."""

from __future__ import annotations

import importlib
import pickletools

import pytest
from conftest import ROOT

EXPERIMENTS = sorted((ROOT / "tests" / "data").glob("v0*-experiment"))


def pickled_globals(data: bytes) -> set[str]:
    """Every `module.name` a pickle's GLOBAL or STACK_GLOBAL opcodes load."""
    names, strings = set(), []
    for op, arg, _ in pickletools.genops(data):
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(arg)
        elif op.name == "STACK_GLOBAL":
            names.add(f"{strings[-2]}.{strings[-1]}")
        elif op.name == "GLOBAL":
            names.add(arg.replace(" ", "."))
    return names


@pytest.mark.parametrize("experiment", EXPERIMENTS, ids=lambda p: p.name)
def test_every_lth_ray_name_in_a_recorded_tuner_pickle_still_imports(experiment):
    names = sorted(n for n in pickled_globals((experiment / "tuner.pkl").read_bytes()) if n.startswith("lth_ray"))
    assert names, "the pickle names no lth_ray object: the scan found nothing to check"
    for name in names:
        module, _, attr = name.rpartition(".")
        assert callable(getattr(importlib.import_module(module), attr)), name


def test_the_scan_sees_a_pickled_function():
    import pickle

    from lth_ray.distributed.sweep import _trial_name

    assert "lth_ray.distributed.sweep._trial_name" in pickled_globals(pickle.dumps(_trial_name))
