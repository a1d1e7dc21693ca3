"""Evaluation under a memory budget (lth_ray.budget): chunks sized from the budget, not from the split, the same
numbers whatever the chunk (float rounding only), and the peak memory of a Conv-2 evaluation bounded for real."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, make_cifar10_like

from lth_ray.cli.trajectory import main
from lth_ray.core.engine.budget import MAX_CHUNK, budget_bytes, eval_chunk, example_bytes
from lth_ray.core.engine.cohort import Cohort
from lth_ray.core.engine.trajectory import cohort_members
from lth_ray.core.models.registry import build_model
from lth_ray.core.options.resolve import from_preset
from lth_ray.core.spec.config import plan_config
from lth_ray.core.spec.memory import DEFAULT_EVAL_MEMORY_MB, DEFAULT_GPU_EVAL_MEMORY_MB


def conv2():
    return build_model(plan_config((64, 64, "M"), (256, 256)), (3, 32, 32), device="meta")


def test_the_chunk_comes_from_the_budget_and_the_members_not_the_split():
    transient, kept = example_bytes(conv2(), (3, 32, 32), 4)
    assert transient == 4 * (64 * 1024 + 2 * 64 * 9 * 1024 + 2 * 64 * 1024)  # Conv-2's second conv dominates
    budget = DEFAULT_EVAL_MEMORY_MB << 20
    for members in (1, 2, 8):
        chunk = eval_chunk(conv2(), (3, 32, 32), members, 4, budget, grouped=False)
        assert chunk * (transient + members * kept) <= budget < (chunk + 1) * (transient + members * kept)
    assert eval_chunk(conv2(), (3, 32, 32), 2, 8, budget, grouped=False) < eval_chunk(
        conv2(), (3, 32, 32), 2, 4, budget, grouped=False
    )  # float64 halves it
    gpu_transient, gpu_kept = example_bytes(conv2(), (3, 32, 32), 4, im2col=False)
    assert (gpu_transient, gpu_kept) == (4 * (64 * 1024 + 2 * 64 * 1024), kept)  # cuDNN builds no im2col buffer
    chunk = eval_chunk(conv2(), (3, 32, 32), 4, 4, budget, grouped=True)
    assert chunk == budget // (4 * (gpu_transient + kept))  # grouped convs hold every member at once
    lenet = build_model(plan_config((), (300, 100)), (1, 28, 28), device="meta")
    assert eval_chunk(lenet, (1, 28, 28), 8, 4, budget, grouped=False) == MAX_CHUNK  # as before budgets
    assert eval_chunk(conv2(), (3, 32, 32), 2, 4, 1, grouped=False) == 1  # never zero


def test_evaluation_gives_the_same_numbers_whatever_the_budget(cifar_split):
    """float64: a 16 MiB budget (many small chunks) and a large one agree within float rounding."""
    ticket = from_preset(
        "conv2",
        dataset="cifar10",
        plan_conv=(8, "M"),
        plan_fc=(16,),
        rounds=0,
        iterations=10,
        eval_every=10,
        precision="fp64",
    )
    members = cohort_members(ticket, [0, 1], [])
    small, large = (Cohort(members, cifar_split, eval_memory_mb=mb) for mb in (16, 4096))
    assert small.eval_chunk(2) < len(cifar_split.x_val) <= large.eval_chunk(2)
    stacked = {k: torch.stack([init[k] for init in small.inits]) for k in small.inits[0]}
    a, b = (c._evaluate(stacked, c.split.x_val, c.split.y_val, 2) for c in (small, large))  # (float64 copies)
    assert torch.allclose(a[0], b[0], rtol=1e-12) and torch.equal(a[1], b[1])


PEAK = r"""
import json, resource, sys
import torch
from lth_ray.core.engine.cohort import Cohort
from lth_ray.core.options.resolve import from_preset
from lth_ray.core.data.loading import load_split
from lth_ray.core.engine.trajectory import cohort_members
torch.set_num_threads(1)
split = load_split("cifar10", sys.argv[1])
ticket = from_preset("conv2", data_root=sys.argv[1], rounds=0, iterations=10, eval_every=10, precision="fp64")
cohort = Cohort(cohort_members(ticket, [0, 1], []), split)
stacked = {k: torch.stack([init[k] for init in cohort.inits]) for k in cohort.inits[0]}
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
cohort._evaluate(stacked, cohort.split.x_val, cohort.split.y_val, 2)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"before": before, "after": after, "chunk": cohort.eval_chunk(2), "images": len(split.x_val)}))
"""


@pytest.mark.e2e
def test_a_conv2_evaluation_in_float64_stays_within_its_budget(tmp_path):
    """The case that was killed on a 24 GB machine: Conv-2, 2 members, float64, 5,000 validation images. The
    evaluation's peak grows by less than the default budget and a margin, not with the split (the old chunks of
    2,500 images took about 12 GB in float64)."""
    root = make_cifar10_like(tmp_path, per_batch=1100, n_test=100)
    out = subprocess.run([sys.executable, "-c", PEAK, str(root)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["images"] == 5000 and got["chunk"] < 100
    assert got["after"] - got["before"] < 1.5 * DEFAULT_EVAL_MEMORY_MB + 100, got


def test_a_too_small_budget_is_one_error_line(tiny_mnist, capsys):
    code = main(["--dataset", "mnist", "--data-root", str(tiny_mnist), "--eval-memory", "1"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--eval-memory=1 is too small; allowed: >= 16" in err


def test_the_budget_is_fixed_on_every_device_and_never_read_from_free_memory(monkeypatch):
    """Free memory changes with other processes and the allocator's cache: a budget read from it would change
    the chunks, hence the rounding of the summed losses, from run to run of one config."""

    def free_memory(*args):
        raise AssertionError("the budget read the free GPU memory")

    monkeypatch.setattr(torch.cuda, "mem_get_info", free_memory)
    assert budget_bytes(torch.device("cuda"), None) == DEFAULT_GPU_EVAL_MEMORY_MB << 20
    assert budget_bytes(torch.device("cuda", 1), None) == DEFAULT_GPU_EVAL_MEMORY_MB << 20
    assert budget_bytes(torch.device("cpu"), None) == DEFAULT_EVAL_MEMORY_MB << 20
    assert budget_bytes(torch.device("cuda"), 64) == budget_bytes(torch.device("cpu"), 64) == 64 << 20
