"""The CUDA rehearsal: everything of a round but the autograd backward, run by the engine's own code on fake
'cuda' tensors with no GPU (tests/fake_cuda.py), for Lenet, Conv-2 and ResNet-20 members: training steps (Adam,
SGD, flips and crops, a sparse mask, two start groups, bf16), evaluation, instability paths, scoring at
initialization and magnitude pruning. Inside the training step and the evaluation no operator may mix devices or
read a device value on the host; the planted faults show that the rehearsal then fails. (The GPU's own code
branches, forced on the CPU, are checked against the CPU's numbers in test_gpu_branches.py.)

A fake tensor has shapes, dtypes and devices but no values: what it checks is where tensors live and which
operators run, never numbers, kernels, memory or speed (those need a real GPU: benchmarks/gpu_check.py).
"""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
import torch
from fake_cuda import DeviceGuardError, Rehearsal, Violation, bf16_autocast_on_fake_cuda, fake_cuda

from lth_ray.core.data.loading import Split
from lth_ray.core.engine import compiled, instability, training
from lth_ray.core.engine.cohort import Cohort, linear_path
from lth_ray.core.engine.training import Participant
from lth_ray.core.engine.weights import build_net
from lth_ray.core.models.registry import model_entry, model_of
from lth_ray.core.options.resolve import from_preset
from lth_ray.core.pruning import scoring
from lth_ray.core.pruning.masks import dense_masks, global_magnitude_prune, magnitude_prune
from lth_ray.core.pruning.scoring import synflow
from lth_ray.core.spec.config import TrajectoryConfig

EVAL_MB = 64  # given: the rehearsal never asks a device for its free memory
TRAIN, HELD_OUT = 48, 16  # examples per split: compute on fake tensors is free, Python per operator is not


def recipe(arch: str, **changes) -> TrajectoryConfig:
    """A member of `arch` ('lenet', 'conv2' or 'resnet20', OpenLTH's recipe in miniature) for 4 iterations."""
    tiny = {"iterations": 4, "eval_every": 2, "batch_size": 8, "rounds": 1, **changes}
    if arch == "resnet20":
        openlth = dict(
            arch="cifar_resnet_20",
            plan_conv=(),
            plan_fc=(),
            dataset="cifar10",
            optimizer="sgd",
            learning_rate=0.1,
            momentum=0.9,
            weight_decay=1e-4,
            warmup=1,
            milestones=(1,),
            augment="flip-crop",
        )
        return TrajectoryConfig(**{**openlth, **tiny}).validate()
    return from_preset(arch, **tiny)


def shape_of(cfg: TrajectoryConfig) -> tuple[int, int, int]:
    return (3, 32, 32) if cfg.dataset == "cifar10" else (1, 28, 28)


def random_split(cfg: TrajectoryConfig, device: torch.device | None = None) -> Split:
    """Random images of the data set's shape: real on the CPU, or fake on `device` inside the rehearsal."""
    gen = torch.Generator().manual_seed(0) if device is None else None

    def part(n: int):
        return (
            torch.randn(n, *shape_of(cfg), generator=gen, device=device),
            torch.randint(0, 10, (n,), generator=gen, device=device),
        )

    return Split(*part(TRAIN), *part(HELD_OUT), *part(HELD_OUT), cfg.dataset, "random")


def cohort_of(cfg: TrajectoryConfig, seeds=(0, 1)) -> tuple[Cohort, list[Participant]]:
    """A real cohort of the seeds on the CPU, and its round-0 participants (host masks and starts)."""
    cohort = Cohort([cfg.replace(seed=s) for s in seeds], random_split(cfg), eval_memory_mb=EVAL_MB)
    return cohort, cohort.planner.participants(0, {})


def on_fake_cuda(cohort: Cohort, rh, monkeypatch) -> tuple[training.Lockstep, list]:
    """The cohort moved onto a fake CUDA split, as a cohort on a GPU holds it: its lockstep, evaluation and
    planner follow the split. The step, the augmentation and the evaluation run guarded; the round's hand-out
    (its host reads at the end of the round, on purpose) is replaced by keeping the round's tensors."""
    split = random_split(cohort.recipe, rh.device)
    cohort.split, cohort.device, cohort._chunks = split, rh.device, {}
    cohort.planner.split, cohort.planner.device = split, rh.device
    fill = split.x_train.amin(dim=(0, 2, 3)) if cohort.recipe.augment != "none" else None
    lockstep = cohort.lockstep = dataclasses.replace(cohort.lockstep, split=split, fill=fill)
    lockstep._step = rh.guarded(lockstep._step, "training step")
    lockstep._evaluate_and_early_stop = rh.guarded(lockstep._evaluate_and_early_stop, "evaluation")
    # also the start's evaluation (supermask accuracy)
    monkeypatch.setattr(training, "split_metrics", rh.guarded(training.split_metrics, "evaluation"))
    monkeypatch.setattr(training, "flip_crop", rh.guarded(training.flip_crop, "augmentation"))
    handed: list = []
    lockstep._hand_out = handed.append
    return lockstep, handed


def rehearse(cohort: Cohort, parts: list[Participant], rh, monkeypatch) -> training.RoundTensors:
    """Round 0 of `parts` trained on fake CUDA; the round's tensors."""
    lockstep, handed = on_fake_cuda(cohort, rh, monkeypatch)
    lockstep.train(0, parts)  # (its host reads outside the windows, as of keep_es.any(), read host values)
    (rt,) = handed
    return rt


def convolutions(ops) -> int:
    """Convolutions run (in inference mode torch's `conv2d` reaches the guard undecomposed)."""
    return ops["convolution"] + ops["conv2d"]


def assert_on_cuda(rt: training.RoundTensors, cfg: TrajectoryConfig) -> None:
    """Every tensor the round keeps lives on the device, its evaluations among them."""
    P = len(rt.parts)
    assert len(rt.points) == cfg.iterations // cfg.eval_every
    assert all(p.shape == (P, 5) and p.is_cuda for p in rt.points)
    assert rt.start_metrics is not None and rt.start_metrics.shape == (P, 4) and rt.start_metrics.is_cuda
    kept = [*rt.stacked().values(), *rt.masks, rt.running, rt.best_loss, *(rt.best or {}).values()]
    kept += [s for state in rt.optimizer.state.values() for s in state.values() if isinstance(s, torch.Tensor)]
    assert all(t.is_cuda for t in kept)


ROUNDS = {
    "lenet-adam": ("lenet", {}),
    "lenet-sgd": ("lenet", {"optimizer": "sgd", "momentum": 0.9}),
    "conv2-adam": ("conv2", {}),
    "resnet20-sgd-flip-crop": ("resnet20", {"iterations": 2}),
}


@pytest.mark.parametrize("arch, changes", ROUNDS.values(), ids=list(ROUNDS))
def test_a_round_trains_and_evaluates_on_cuda_with_no_host_sync(arch, changes, monkeypatch):
    """Round 0 of two members: every step and evaluation on the device, with the fused optimizer, CUDA's grouped
    convolutions (Conv-2) or vmap (ResNet-20), flips and crops as batched device ops."""
    cfg = recipe(arch, **changes)
    cohort, parts = cohort_of(cfg)
    with fake_cuda() as rh:
        rt = rehearse(cohort, parts, rh, monkeypatch)
    assert_on_cuda(rt, cfg)
    assert rt.best is not None and rh.guard.tolerated == []
    step = rh.ops("training step")
    assert step[f"_fused_{cfg.optimizer}_"] == cfg.iterations  # one fused update of every member per step
    # validation and test, one chunk each, at every evaluation and once at the start (supermask accuracy)
    assert rh.ops("evaluation")["argmax"] == 2 * (len(rt.points) + 1)
    if arch == "conv2":  # CUDA's branch: member p's channels are group p of one convolution
        assert set(rh.guard.conv_groups) == {len(parts)}
    if cfg.augment == "flip-crop":
        assert rh.ops("augmentation")["gather"] == 2 * cfg.iterations


@pytest.mark.parametrize(
    "optimizer", [{"optimizer": "adam"}, {"optimizer": "sgd", "momentum": 0.9}], ids=["adam", "sgd"]
)
def test_the_compiled_steps_parts_run_on_cuda_with_no_host_sync(optimizer, monkeypatch):
    """`compile_step`'s parts, run eagerly down the branches torch.compile traces (what CUDA graphs capture, where
    a host sync cannot be): the foreach optimizer with its learning rate a device tensor, filled in place by the
    schedule. (Run eagerly outside a trace, torch's foreach SGD reads a tensor rate back at every step.)"""
    cfg = recipe("lenet", compile_step=True, warmup=1, milestones=(3,), **optimizer)
    cohort, parts = cohort_of(cfg)

    def traced(fn, device):
        def run(*args, **kwargs):
            with monkeypatch.context() as tracing:
                tracing.setattr(torch.compiler, "is_compiling", lambda: True)
                return fn(*args, **kwargs)

        return run

    monkeypatch.setattr(compiled, "compile_step_part", traced)
    with fake_cuda() as rh:
        rt = rehearse(cohort, parts, rh, monkeypatch)
    assert_on_cuda(rt, cfg)
    assert all(g["lr"].is_cuda for g in rt.optimizer.param_groups)
    step = rh.ops("training step")
    assert not any(name.startswith("_fused") for name in step) and any(name.startswith("_foreach") for name in step)
    assert step["fill_"] >= cfg.iterations  # the schedule's rate written into the device tensor


def test_around_the_step_data_goes_to_the_device_an_epoch_at_a_time_and_nothing_comes_back(monkeypatch):
    """The whole round guarded: between steps only each epoch's data order, flips and crop offsets are copied to
    the GPU (one copy each), and nothing is read back before the round's end; stacking copies the starts."""
    cfg = recipe("conv2", iterations=8, augment="flip-crop")
    cohort, parts = cohort_of(cfg)

    def expected(v: Violation) -> bool:
        if v.window == "stacking":  # the starts, masks and flags go to the GPU
            return v.kind == "host copy"
        return v.window == "round" and v.kind == "host copy"

    with fake_cuda(tolerate=expected) as rh:
        lockstep, handed = on_fake_cuda(cohort, rh, monkeypatch)
        lockstep._stack = rh.guarded(lockstep._stack, "stacking")
        with rh.window("round"):
            lockstep.train(0, parts)
    epochs = -(-cfg.iterations // (TRAIN // cfg.batch_size))
    between = [v for v in rh.guard.tolerated if v.window == "round"]
    assert len(between) == 3 * epochs and epochs == 2, between
    assert handed and rh.ops("training step")["_fused_adam_"] == cfg.iterations


def test_a_sparse_round_masks_its_weights_on_the_device(monkeypatch):
    """Pruned members (half of each layer): their masks go to the device once and mask the weights every step."""
    cfg = recipe("lenet")
    cohort, parts = cohort_of(cfg)
    rates = {n: 0.5 for n in cohort.kinds}
    parts = [
        dataclasses.replace(p, masks=magnitude_prune(cohort.planner.view(p.member).layer_weights(), p.masks, rates))
        for p in parts
    ]
    with fake_cuda() as rh:
        rt = rehearse(cohort, parts, rh, monkeypatch)
    assert rt.sparse and all(m.is_cuda for m in rt.masks)
    assert rh.ops("training step")["_foreach_mul_"] == cfg.iterations  # pruned weights kept at zero, on the GPU


def late_rewinding(parts: list[Participant]) -> list[Participant]:
    """Two start groups, as late rewinding makes them: member 0 trains from iteration 0 and captures W_2,
    member 1 (rewound to iteration 2) stays frozen until then."""
    return [dataclasses.replace(parts[0], capture_at=2), dataclasses.replace(parts[1], start_iteration=2)]


def test_two_start_groups_train_on_cuda(monkeypatch):
    """Late rewinding's two start groups train on the device: one leaf per key whose rows the groups share, W_2
    captured, the waiting group's BatchNorm statistics and optimizer state left alone."""
    cfg = recipe("lenet")
    cohort, parts = cohort_of(cfg)
    with fake_cuda() as rh:  # nothing copied in the step: the started flags come from the device's starts
        rt = rehearse(cohort, late_rewinding(parts), rh, monkeypatch)
    assert rt.full is not None and len(rt.leaves) == 2 and set(rt.captured) == {2}
    assert_on_cuda(rt, cfg)


def test_stacking_reads_nothing_from_the_device(monkeypatch):
    """Stacking copies the starts, masks and flags to the GPU once and reads nothing back."""
    cohort, parts = cohort_of(recipe("lenet"))
    with fake_cuda(tolerate=lambda v: v.kind == "host copy") as rh:
        lockstep, _ = on_fake_cuda(cohort, rh, monkeypatch)
        with rh.window("stacking"):
            lockstep._stack(parts)


def test_bf16_autocast_reaches_the_grouped_convolutions_on_cuda(monkeypatch):
    """Under `bf16` the convolutions and matrix products run in bfloat16 on CUDA; weights stay float32."""
    cfg = recipe("conv2", precision="bf16")
    cohort, parts = cohort_of(cfg)
    with bf16_autocast_on_fake_cuda(), fake_cuda() as rh:
        rt = rehearse(cohort, parts, rh, monkeypatch)
    dtypes = rh.guard.compute_dtypes
    assert dtypes[("convolution", torch.bfloat16)] > 0 and dtypes[("convolution", torch.float32)] == 0
    assert dtypes[("baddbmm", torch.bfloat16)] > 0
    assert all(t.dtype == torch.float32 for t in rt.stacked().values() if t.is_floating_point())  # fp32 weights


# ------------------------------------------------------------------ the guard and the fake backward themselves
GUARDED = {  # what a GPU does with it: None (runs), or the guard's refusal
    "cpu scalar": (lambda x: x * torch.tensor(2.0), None),
    "python scalar": (lambda x: torch.where(x > 0, x, 0.0), None),
    "cpu tensor": (lambda x: x * torch.ones(3), "device mix"),
    "item": (lambda x: x.sum().item(), "host read"),
    "nonzero": (lambda x: x.nonzero(), "host read"),
    "boolean mask": (lambda x: x[x > 0], "host read"),
    "copy to the host": (lambda x: x.cpu(), "host read"),
    "copy to the device": (lambda x: x + torch.arange(3.0).to(x.device), "host copy"),
    "copy into the device": (lambda x: x.clone().copy_(torch.arange(3.0)), "host copy"),
}


@pytest.mark.parametrize("op, refusal", GUARDED.values(), ids=list(GUARDED))
def test_the_guard_refuses_what_a_gpu_would_wait_for(op, refusal):
    """Each kind of refusal on its own, and what a GPU runs without waiting (CPU and Python scalars)."""
    with fake_cuda() as rh:
        x = torch.randn(3, device=rh.device)
        with rh.window("step"), pytest.raises(DeviceGuardError, match=refusal) if refusal else contextlib.nullcontext():
            op(x)


def test_the_fake_backward_gives_every_reachable_leaf_a_zero_gradient():
    with fake_cuda() as rh:
        w, unused = torch.randn(3, 2, device=rh.device, requires_grad=True), torch.randn(2, device=rh.device)
        unused.requires_grad_(True)
        (w.sum(0) * 2).sum().backward()
        assert w.grad is not None and w.grad.shape == w.shape and w.grad.is_cuda and unused.grad is None
        (g,) = torch.autograd.grad((w**2).sum(), [w], create_graph=True)
        assert g.shape == w.shape and g.requires_grad  # a second derivative can follow, as in GraSP
        with pytest.raises(RuntimeError, match="not have been used in the graph"):
            torch.autograd.grad(w.sum(), [w, unused])
        assert torch.autograd.grad(w.sum(), [w, unused], allow_unused=True)[1] is None


# ------------------------------------------------------------------ planted faults: the rehearsal can fail
def plant(cohort: Cohort, monkeypatch, fault, evaluation: bool = False) -> None:
    """`fault(logits)` run in the stacked forward pass of the training step (or of the evaluation)."""
    net = cohort.lockstep.net
    forward = net.forward

    def planted(tensors, x, members, shared, training):
        logits = forward(tensors, x, members, shared, training)
        return fault(logits) if shared == evaluation else logits

    monkeypatch.setattr(net, "forward", planted)


HOST_READS = {
    "item": lambda z: z + z.sum().item(),
    "bool": lambda z: z if not z.isnan().any() else z.nan_to_num(),
    "tolist": lambda z: z + z[0, 0, 0].tolist(),
    "numpy": lambda z: z + float(z.detach().numpy().mean()),
    "cpu": lambda z: z + z.detach().cpu().mean().to(z.device),
}


@pytest.mark.parametrize("read", HOST_READS.values(), ids=list(HOST_READS))
def test_a_host_read_planted_in_the_step_fails_the_rehearsal(read, monkeypatch):
    """The rehearsal can fail: a NaN check, a logged loss, a copy to the host planted in the forward pass."""
    cohort, parts = cohort_of(recipe("lenet"))
    plant(cohort, monkeypatch, read)
    with fake_cuda() as rh, pytest.raises(DeviceGuardError, match="host read in 'training step'"):
        rehearse(cohort, parts, rh, monkeypatch)


def test_a_host_read_planted_in_the_evaluation_fails_the_rehearsal(monkeypatch):
    cohort, parts = cohort_of(recipe("lenet"))
    plant(cohort, monkeypatch, HOST_READS["item"], evaluation=True)
    with fake_cuda() as rh, pytest.raises(DeviceGuardError, match="host read in 'evaluation'"):
        rehearse(cohort, parts, rh, monkeypatch)


def test_a_cpu_tensor_planted_in_the_step_fails_the_rehearsal(monkeypatch):
    cohort, parts = cohort_of(recipe("lenet"))
    plant(cohort, monkeypatch, lambda z: z + torch.ones(z.shape[-1]))  # a bias left on the CPU
    with fake_cuda() as rh, pytest.raises(DeviceGuardError, match="device mix in 'training step'"):
        rehearse(cohort, parts, rh, monkeypatch)


def test_a_mask_left_on_the_cpu_fails_the_rehearsal(monkeypatch):
    cfg = recipe("lenet")
    cohort, parts = cohort_of(cfg)
    parts = [dataclasses.replace(p, masks={n: m.clone() for n, m in p.masks.items()}) for p in parts]
    for p in parts:
        p.masks["fc.0"].view(-1)[:10] = False  # sparse: the step masks the weights
    stack = training.Lockstep._stack

    def masks_on_the_cpu(self, parts):
        rt = stack(self, parts)
        rt.masks = [m.cpu() for m in rt.masks]
        return rt

    monkeypatch.setattr(training.Lockstep, "_stack", masks_on_the_cpu)
    with fake_cuda() as rh, pytest.raises(DeviceGuardError, match="device mix in 'training step'.*_foreach_mul_"):
        rehearse(cohort, parts, rh, monkeypatch)


# ------------------------------------------------------------------ the rest of a round on the device
def measure_instability(arch: str, bn: str, monkeypatch, tolerate=None) -> tuple[dict, Cohort, Rehearsal]:
    """The cohort's own instability measurement of a ticket and its copy on a net it builds on the device; each
    point's numbers go to the host on purpose (outside the windows)."""
    cfg = recipe(arch, instability=True, instability_points=2, instability_bn=bn)
    cohort, parts = cohort_of(cfg, seeds=(0,))
    (copy,) = cohort.planner.copies(0, parts)
    monkeypatch.setattr(instability, "BN_BATCHES", 2)
    with fake_cuda(tolerate) as rh:
        on_fake_cuda(cohort, rh, monkeypatch)
        monkeypatch.setattr(instability, "evaluate", rh.guarded(instability.evaluate, "evaluation"))
        recompute = rh.guarded(instability.recompute_batchnorm, "batchnorm statistics")
        monkeypatch.setattr(instability, "recompute_batchnorm", recompute)
        for p in (parts[0], copy):
            p.out["device_weights"] = {k: v.to(rh.device) for k, v in p.start.items()}
        with rh.answering(lambda t: 1):
            record = linear_path(
                cohort, 0, cfg, parts[0].out["device_weights"], copy.out["device_weights"], parts[0].masks
            )
    return record, cohort, rh


@pytest.mark.parametrize("arch, bn", [("conv2", "interpolate"), ("resnet20", "recompute")])
def test_an_instability_path_evaluates_on_cuda(arch, bn, monkeypatch):
    record, cohort, rh = measure_instability(arch, bn, monkeypatch)
    assert record["alphas"] == [0.0, 1.0] and len(record["test_error"]) == 2
    assert cohort._single is not None and next(cohort._single.parameters()).is_cuda
    assert convolutions(rh.ops("evaluation")) > 0
    if bn == "recompute":  # every point re-estimates its statistics from 2 training batches, on the device
        assert convolutions(rh.ops("batchnorm statistics")) > 0
        # no batch count read back: momentum 1 / (i + 1) per batch, not None


def scalar_reads(v: Violation) -> bool:
    """A count or a flag read back (a sync, not a copy of the scores)."""
    return v.kind == "host read" and "_local_scalar_dense" in v.op


@pytest.mark.filterwarnings("ignore:Accessing the data pointer of FakeTensor")  # SynFlow's deepcopy
@pytest.mark.parametrize("method", ["snip", "grasp", "synflow", "magnitude-init"])
def test_scoring_at_init_runs_on_cuda(method, monkeypatch):
    """A pruning-at-init member's round-1 mask, scored on the device by the cohort's planner: no device mix,
    no copy of scores to the host while scoring (SynFlow reads one count per layer and pruning)."""
    cfg = recipe("conv2", method=method, rounds=2)
    cohort, _ = cohort_of(cfg, seeds=(0,))
    monkeypatch.setattr(synflow.synflow_masks, "__defaults__", (3, False))  # 3 prunings of SynFlow's 100
    with fake_cuda(tolerate=scalar_reads) as rh:
        on_fake_cuda(cohort, rh, monkeypatch)
        how = scoring.SCORERS[method]
        field = "masks" if how.iterative else "score"
        guarded = dataclasses.replace(how, **{field: rh.guarded(getattr(how, field), "scoring")})
        monkeypatch.setitem(scoring.SCORERS, method, guarded)
        with rh.answering(lambda t: 1):
            masks = cohort.planner.masks(0, 1, {})
    assert set(masks) == set(cohort.kinds)
    scored = rh.ops("scoring")
    assert scored["abs"] > 0 if method == "magnitude-init" else convolutions(scored) > 0
    assert len(rh.guard.tolerated) <= (3 * len(cohort.kinds) if method == "synflow" else 0)  # a count a pruning


@pytest.mark.parametrize("pruning", ["layer-wise", "global"])
def test_magnitude_pruning_sorts_on_cuda(pruning):
    """A trained net's weights on the device and the host's masks: only masks cross, the sort runs on the GPU."""
    cfg = recipe("conv2")
    net = build_net(cfg, shape_of(cfg))
    modules = dict(net.named_modules())
    trained = {n: modules[n].weight.detach() for n in model_entry(model_of(cfg)).prunable(net)}
    masks = dense_masks(trained)

    def mask_traffic(v: Violation) -> bool:
        return scalar_reads(v) or (v.kind in ("host copy", "host read") and " bool[" in v.detail)

    with fake_cuda(tolerate=mask_traffic) as rh:
        weights = {n: w.to(rh.device) for n, w in trained.items()}
        with rh.answering(lambda t: 1000), rh.window("pruning"):  # the global count: a tolerated read
            if pruning == "global":
                new = global_magnitude_prune(weights, masks, rate=0.2)
            else:
                new = magnitude_prune(weights, masks, {n: 0.2 for n in masks})
    assert all(m.device.type == "cpu" and m.dtype == torch.bool for m in new.values())
    assert rh.ops("pruning")["sort"] == (1 if pruning == "global" else len(masks))
    assert not any(v.kind == "host read" and "float" in v.detail for v in rh.guard.tolerated)
