"""Cohort runs for tests: a cohort run to the end, each member's lone run, and their comparison."""

from __future__ import annotations

import numpy as np
import torch
from rounds_helpers import masks

from lth_ray.core.engine.cohort import Cohort
from lth_ray.core.methods.member import first_round, is_ticket, mask_source, start_of

METRICS = ("train_loss", "val_loss", "val_acc", "test_loss", "test_acc")


def run(members, split, **kw):
    """{member key: {round: RoundResult}} of a cohort run to the end."""
    cohort = Cohort(members, split, **kw)
    out = {m.key: {} for m in members}
    for results in cohort.run_results():
        for i, res in results.items():
            out[members[i].key][res.record["round"]] = res
    return out


def assert_close(a: dict, b: dict, tol: float):
    """Two trajectories' rounds: identical masks and rounds, histories within `tol` (absolute)."""
    assert sorted(a) == sorted(b)
    for r in a:
        ma, mb = masks(a[r]), masks(b[r])
        assert all(torch.equal(ma[n], mb[n]) for n in ma), f"round {r}: masks differ"
        for m in METRICS:
            x, y = np.asarray(a[r].record[m]), np.asarray(b[r].record[m])
            assert x.shape == y.shape and np.abs(x - y).max() <= tol, (r, m, np.abs(x - y).max())


def lone_runs(members, split):
    """Each member with just what it needs beside it: a ticket alone; a member taking the ticket's masks
    (re-init, the ticket's shuffle) or its rewind point (a rider without a dense round, under late rewinding)
    with its ticket; every other member (pruning at init and its ablations, the ticket's inversion) alone."""
    out = {}
    for m in members:
        if mask_source(m) == "ticket" or (start_of(m) == "rewind" and first_round(m) == 1 and m.rewind_iteration):
            (ticket,) = [x.replace(instability=False) for x in members if x.seed == m.seed and is_ticket(x)]
            out[m.key] = run([ticket, m], split)[m.key]
        else:
            out[m.key] = run([m], split)[m.key]
    return out
