"""The placement planner: FLOPs and memory from the plans' layer shapes (a registered model's from its module
on 'meta'), cohorts split by seeds so the GPUs are busy from the start and finish together, memory respected,
one-line refusals. Pure Python: no Ray, and no torch but for the registered models' shapes."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest
from conftest import ROOT

from lth_ray.core.engine.trajectory import cohort_members
from lth_ray.core.options.resolve import from_preset
from lth_ray.core.spec.config import ConfigError
from lth_ray.core.spec.presets import PRESETS
from lth_ray.distributed.net_shapes import net_shape, shape_of
from lth_ray.distributed.planner import GIB, GPUModel, configuration, plan_sweep, split_seeds

BOTH = ("reinit", "random-prune")


def conv_grid(seeds: int, baselines=BOTH, rounds: int = 20, archs=("conv2", "conv4", "conv6"), **kw):
    return [
        configuration(a, cohort_members(from_preset(a, rounds=rounds), list(range(seeds)), list(baselines)), **kw)
        for a in archs
    ]


def test_flops_and_parameters_from_the_layer_shapes():
    lenet = net_shape((), (300, 100), (1, 28, 28))
    assert lenet.macs == 784 * 300 + 300 * 100 + 100 * 10
    assert lenet.params == lenet.macs + 300 + 100 + 10  # weights and biases
    conv2 = net_shape(PRESETS["conv2"].plan_conv, PRESETS["conv2"].plan_fc, (3, 32, 32))
    assert conv2.macs == 64 * 3 * 9 * 32 * 32 + 64 * 64 * 9 * 32 * 32 + 16 * 16 * 64 * 256 + 256 * 256 + 256 * 10
    conv6 = net_shape(PRESETS["conv6"].plan_conv, PRESETS["conv6"].plan_fc, (3, 32, 32))
    assert 3.4 < conv6.macs / conv2.macs < 3.6  # Conv-6 is 3.5 Conv-2s per example
    bn = net_shape(("64B", "M"), (), (3, 32, 32))
    assert bn.params == 64 * 3 * 9 + 64 + 2 * 64 + (16 * 16 * 64) * 10 + 10


def test_registered_models_are_counted_from_their_modules():
    resnet = shape_of(from_preset("resnet20"), (3, 32, 32))
    assert resnet.params == 272_474 and 40e6 < resnet.macs < 42e6  # ResNet-20: 41M multiply-adds per image
    vgg = shape_of(from_preset("vgg16"), (3, 32, 32))
    assert 14.7e6 < vgg.params < 14.8e6 and 313e6 < vgg.macs < 314e6  # VGG-16 (CIFAR): 313M
    assert shape_of(from_preset("conv2"), (3, 32, 32)) == net_shape(
        PRESETS["conv2"].plan_conv, PRESETS["conv2"].plan_fc, (3, 32, 32)
    )
    # a ResNet-20 seed (ticket, copy for instability) costs what its FLOPs say, at the batch size
    ticket = from_preset("resnet20", rounds=1, iterations=1000, eval_every=100, milestones=(), instability=True)
    cost = configuration("r", [ticket])
    assert cost.seed_step_flops == pytest.approx(2 * 3 * 2 * resnet.macs * 128)


def test_cost_counts_rounds_members_and_evaluation():
    ticket = from_preset("conv2", rounds=2, iterations=1000, eval_every=100)
    alone = configuration("c", [ticket])
    shape = net_shape(ticket.plan_conv, ticket.plan_fc, (3, 32, 32))
    train = 3 * 2 * shape.macs * 60 * 1000 * 3  # 3 rounds of 1000 steps at batch 60
    evaluate = 2 * shape.macs * 15_000 * 10 * 3  # validation + test, 10 times a round
    assert alone.seed_flops == pytest.approx(train + evaluate)
    with_baselines = configuration("c", cohort_members(ticket, [0], list(BOTH)))
    assert with_baselines.seed_flops == pytest.approx(alone.seed_flops * 7 / 3)  # baselines: rounds 1..2 only
    assert with_baselines.members_per_seed == 3 and with_baselines.seed_bytes == 3 * alone.seed_bytes


def test_the_cards_default_grid_fills_eight_gpus_from_the_start():
    plan = plan_sweep(conv_grid(3), 8)
    assert plan.gpu_per_trial == 1.0 and plan.gpus_at_start == 8.0
    assert all(t.start == 0.0 for t in plan.trials)  # nothing waits: every trial starts at once
    longest = plan.longest
    assert longest.configuration == "conv6" and len(longest.seeds) == 1  # the long configuration split by seeds
    # The sweep cannot end before one Conv-6 seed (its ticket and baselines in one cohort) is done on a whole
    # GPU; the plan reaches that bound.
    assert plan.seconds == pytest.approx(longest.seconds)
    assert plan.utilisation == pytest.approx(plan.busy_seconds / (8 * longest.seconds))
    assert 0.60 < plan.utilisation < 0.70
    assert plan.elastic_utilisation >= 0.90  # 1-GPU nodes released when idle
    five = {a.gpus: a for a in plan.alternatives}[5]
    assert five.utilisation >= 0.90 and five.seconds < 1.15 * plan.seconds


def test_five_seeds_with_both_baselines_keep_eight_gpus_ninety_percent_busy():
    plan = plan_sweep(conv_grid(5), 8)
    assert plan.gpus_at_start == 8.0
    assert plan.utilisation >= 0.90
    assert sum(len(t.seeds) for t in plan.trials) == 15


def test_baselines_stay_with_their_tickets_seed():
    configs = conv_grid(3)
    plan = plan_sweep(configs, 8)
    for c in configs:
        seeds = [s for t in plan.trials if t.configuration == c.name for s in t.seeds]
        assert sorted(seeds) == list(c.seeds)  # every seed in exactly one trial
    assert all(t.members == 3 * len(t.seeds) for t in plan.trials)  # a seed's 3 members never split


def test_the_schedule_never_overfills_a_slot_and_starts_longest_first():
    plan = plan_sweep(conv_grid(5), 3)
    by_slot = {}
    for t in plan.trials:
        by_slot.setdefault(t.slot, []).append(t)
    assert len(by_slot) <= plan.slots == 3
    for trials in by_slot.values():
        trials.sort(key=lambda t: t.start)
        assert all(a.end <= b.start + 1e-6 for a, b in zip(trials, trials[1:]))
    assert [t.seconds for t in plan.trials] == sorted((t.seconds for t in plan.trials), reverse=True)
    assert plan.seconds == max(t.end for t in plan.trials)


def lenet_grid(seeds=(0, 1, 2), rates=(0.1, 0.2, 0.3, 0.4)):
    return [
        configuration(f"lenet-fc{r}", cohort_members(from_preset("lenet", prune_rate_fc=r), list(seeds), list(BOTH)))
        for r in rates
    ]


def test_small_cohorts_take_a_gpu_each_and_keep_their_seeds_together():
    """Without MPS, processes sharing a GPU take turns on it: a launch-bound cohort holds all its seeds (batching
    is free) on a GPU of its own rather than sharing one with others."""
    plan = plan_sweep(lenet_grid(), 1)
    assert plan.gpu_per_trial == 1.0 and plan.slots == 1
    assert len(plan.trials) == 4 and all(len(t.seeds) == 3 for t in plan.trials)
    assert plan.gpus_at_start < plan.held_at_start == 1.0  # launch-bound: the GPU is not kept busy


def test_with_mps_small_cohorts_share_a_gpu_side_by_side():
    plan = plan_sweep(lenet_grid(), 1, gpu=GPUModel(mps=True))
    assert plan.gpu_per_trial < 1 and plan.slots >= 4
    assert len(plan.trials) == 4 and all(len(t.seeds) == 3 for t in plan.trials)  # launch-bound: batching is free
    assert plan.gpus_at_start <= plan.held_at_start <= 1.0
    assert plan.seconds < plan_sweep(lenet_grid(), 1).seconds / 3  # the four run at once


def test_a_host_bound_configuration_is_one_whole_gpu_cohort_not_fractional_trials():
    (lenet,) = lenet_grid(seeds=range(8), rates=(0.2,))
    assert 8 * lenet.seed_step_flops < GPUModel().saturating_step_flops  # host-bound even with every seed
    plan = plan_sweep([lenet], 8)
    (trial,) = plan.trials
    assert trial.gpu == 1.0 and trial.seeds == tuple(range(8))  # one cohort of 8 seeds on one GPU
    # a fraction of a GPU, taking turns, is no faster than one whole-GPU cohort, and several are slower
    for share in (0.5, 0.125):
        assert plan_sweep([lenet], 8, gpu_per_trial=share).seconds > plan.seconds
    assert plan_sweep([lenet], 8, gpu_per_trial=0.125, seeds_per_trial=1).seconds >= 8 * plan.seconds * 0.99
    mps = plan_sweep([lenet], 8, gpu=GPUModel(mps=True), gpu_per_trial=0.125, seeds_per_trial=1)
    assert mps.seconds == pytest.approx(plan.seconds)  # side by side under MPS


def test_gpu_hours_scale_with_the_calibrated_rate():
    """Compute-bound nets: twice the FLOP/s, half the GPU-hours; the plan's shape depends only on the ratios."""
    from lth_ray.distributed.calibration import ASSUMED, gpu_model

    faster = replace(ASSUMED, fp32_flops=2 * ASSUMED.fp32_flops, step_floor_s=ASSUMED.step_floor_s / 2)
    slow, fast = (
        plan_sweep(conv_grid(3), 8, gpu_model(ASSUMED, "fp32")),
        plan_sweep(conv_grid(3), 8, gpu_model(faster, "fp32")),
    )
    assert fast.gpu_hours == pytest.approx(slow.gpu_hours / 2) and fast.utilisation == pytest.approx(slow.utilisation)
    assert [(t.configuration, t.seeds) for t in fast.trials] == [(t.configuration, t.seeds) for t in slow.trials]
    # launch-bound nets are bound by the floor, not the rate
    lenet = lenet_grid(rates=(0.2,))
    floor = replace(ASSUMED, fp32_flops=4 * ASSUMED.fp32_flops)
    assert plan_sweep(lenet, 1, gpu_model(floor, "fp32")).seconds == pytest.approx(
        plan_sweep(lenet, 1, gpu_model(ASSUMED, "fp32")).seconds
    )


def test_a_cohort_too_big_for_a_gpu_is_split():
    small = GPUModel(memory_bytes=4 * GIB)
    configs = conv_grid(8, archs=("conv2",), gpu=small)
    plan = plan_sweep(configs, 1, gpu=small)
    per = max(len(t.seeds) for t in plan.trials)
    (c,) = configs
    assert c.trial_bytes + 8 * c.seed_bytes > small.memory_bytes  # all 8 seeds would not fit
    assert all(t.memory_bytes <= small.memory_bytes for t in plan.trials) and per < 8


def test_cpu_plans_put_one_seed_in_each_trial():
    plan = plan_sweep(conv_grid(3), 0)
    assert len(plan.trials) == 9 and plan.gpu_per_trial == 0 and plan.utilisation == 0
    assert len(plan_sweep(conv_grid(3), 0, seeds_per_trial=3).trials) == 3


def test_users_choices_are_kept():
    plan = plan_sweep(conv_grid(3), 8, seeds_per_trial=3, gpu_per_trial=0.5)
    assert len(plan.trials) == 3 and plan.gpu_per_trial == 0.5 and plan.slots == 16


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(gpu=GPUModel(memory_bytes=GIB)), "one seed of conv2 (3 members) needs"),
        (dict(seeds_per_trial=400), "--seeds-per-trial=400: a cohort of conv2 with 400 seeds needs"),
        (
            dict(gpu_per_trial=0.125, gpu=GPUModel(memory_bytes=8 * GIB)),
            "more than 0.125 of a 8 GiB GPU; give a trial a bigger share (--gpus-per-trial 0.5)",
        ),
    ],
)
def test_a_plan_that_cannot_fit_is_one_line_naming_what_would(kwargs, fragment):
    gpu = kwargs.get("gpu", GPUModel())
    with pytest.raises(ConfigError) as info:
        plan_sweep(conv_grid(400 if "seeds_per_trial" in kwargs else 3, archs=("conv2",), gpu=gpu), 8, **kwargs)
    assert fragment in str(info.value) and "\n" not in str(info.value)
    if "seeds_per_trial" in kwargs:
        assert "at most" in str(info.value)


def test_split_seeds_is_contiguous_and_even():
    assert split_seeds([0, 1, 2, 3, 4], 2) == [(0, 1), (2, 3), (4,)]
    assert split_seeds([0, 1, 2], 2) == [(0, 1), (2,)]
    assert split_seeds(list(range(7)), 3) == [(0, 1, 2), (3, 4), (5, 6)]


def test_the_planner_imports_neither_ray_nor_torch():
    code = (
        "import sys, lth_ray.distributed.planner, lth_ray.distributed.calibration; "
        "print(sorted({'ray', 'torch'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr
