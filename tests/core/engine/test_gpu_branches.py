"""The GPU's own code branches, forced on the CPU, against the CPU branches: StackedNet's grouped convolutions
(one convolution for every member, as on CUDA) and FunctionalStacked's vmap give a whole float64 cohort (late
rewinding, an instability copy, a re-init, another seed) the records of the member-by-member branches within
1e-12. They check the GPU path's logic end to end; CUDA's kernels themselves need a GPU (benchmarks/gpu_check.py).
The forward passes alone are compared in test_cohort.py and test_deep_models.py."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

import lth_ray.core.models.registry as model_registry
from lth_ray.core.data.loading import Split
from lth_ray.core.engine.cohort import Cohort
from lth_ray.core.models import functional
from lth_ray.core.models.cifar_resnet import resnet_entry
from lth_ray.core.models.functional import FunctionalStacked
from lth_ray.core.models.registry import register_model
from lth_ray.core.models.stacked import StackedNet
from lth_ray.core.options.resolve import from_preset
from lth_ray.core.spec.config import TrajectoryConfig


def force_gpu_branches(monkeypatch) -> Counter:
    """StackedNet's grouped convolutions and FunctionalStacked's vmap, as on CUDA, while tensors stay on the CPU;
    counts the grouped forward passes and the vmapped ones."""
    forward, init, vmap = StackedNet.forward, FunctionalStacked.__init__, functional.vmap
    taken: Counter = Counter()

    def grouped(self, tensors, x, members, shared, training, grouped=None):
        taken["grouped"] += 1
        return forward(self, tensors, x, members, shared, training, grouped=True)

    def vectorized(self, template, vectorize=None):
        init(self, template, vectorize=True)

    def counted_vmap(*args, **kwargs):
        taken["vmap"] += 1
        return vmap(*args, **kwargs)

    monkeypatch.setattr(StackedNet, "forward", grouped)
    monkeypatch.setattr(FunctionalStacked, "__init__", vectorized)
    monkeypatch.setattr(functional, "vmap", counted_vmap)
    return taken


def small_split() -> Split:
    """Random 8x8 CIFAR-shaped images: enough for the small conv plan and ResNet-8."""
    gen = torch.Generator().manual_seed(0)

    def part(n: int):
        return torch.randn(n, 3, 8, 8, generator=gen), torch.randint(0, 10, (n,), generator=gen)

    return Split(*part(60), *part(20), *part(20), "cifar10", "random")


def records(members: list[TrajectoryConfig], split: Split) -> list[dict]:
    """Every member-round's histories (and the instability path's test losses) of a cohort run to the end."""
    out = []
    for results in Cohort(members, split).run_results():
        for _, res in sorted(results.items()):
            rec = res.record
            out.append({k: np.asarray(rec[k], dtype=np.float64) for k in ("train_loss", "val_loss", "test_acc")})
            if "instability" in rec:
                out[-1]["path_test_loss"] = np.asarray(rec["instability"]["test_loss"], dtype=np.float64)
    return out


@pytest.mark.parametrize("arch", ["conv (grouped)", "resnet (vmap)"])
def test_the_gpu_branches_give_a_cohort_the_cpu_branches_numbers_in_fp64(arch, monkeypatch, one_thread):
    """A whole cohort (a ticket with late rewinding and an instability copy, its re-init, another seed) through
    the grouped convolutions or vmap, forced on the CPU in float64, records the CPU branches' numbers."""
    monkeypatch.setattr(model_registry, "MODELS", dict(model_registry.MODELS))
    register_model(resnet_entry(8, 2))
    if arch.startswith("conv"):
        base = from_preset("conv2", plan_conv=(4, "4B", "M"), plan_fc=(8,))
    else:
        base = TrajectoryConfig(arch="cifar_resnet_8_2", plan_conv=(), plan_fc=(), dataset="cifar10")
        base = base.replace(optimizer="sgd", learning_rate=0.05, momentum=0.9, weight_decay=1e-4, augment="flip-crop")
    base = base.replace(
        iterations=4, eval_every=2, rounds=1, batch_size=10, precision="fp64", rewind_iteration=2
    ).validate()
    members = [
        base.replace(seed=0, instability=True, instability_points=2),
        base.replace(seed=0, method="reinit"),
        base.replace(seed=1),
    ]
    split = small_split()
    cpu = records(members, split)
    taken = force_gpu_branches(monkeypatch)
    gpu = records(members, split)
    assert taken["grouped" if arch.startswith("conv") else "vmap"] > 0
    assert [sorted(r) for r in cpu] == [sorted(r) for r in gpu] and len(cpu) == 5  # 2 + 1 + 2 member-rounds
    worst = max(float(np.abs(a[k] - b[k]).max()) for a, b in zip(cpu, gpu) for k in a)
    assert worst < 1e-12, worst
