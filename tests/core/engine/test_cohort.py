"""Cohorts: members trained as one vectorized model equal the same trajectories trained alone (float64 within
1e-9; float32 masks identical, accuracies within float noise), a diverging member leaves the others alone,
and a cohort resumes bitwise from its state or its round files. Plain PyTorch, no Ray."""

from __future__ import annotations

import math

import pytest
import torch
from cohort_helpers import assert_close, lone_runs, run
from rounds_helpers import masks

from lth_ray.core.engine.cohort import Cohort
from lth_ray.core.engine.trajectory import cohort_members
from lth_ray.core.options.resolve import from_preset
from lth_ray.core.spec.config import ConfigError
from lth_ray.core.store.resume import resume_cohort
from lth_ray.core.store.rounds import RoundStore


@pytest.mark.e2e
@pytest.mark.parametrize("arch", ["lenet", "conv2"])
def test_float64_members_equal_their_single_runs_within_1e_9(arch, split, cifar_split):
    """Over a few hundred iterations, for imp, reinit and random-prune, Lenet and a conv preset."""
    data = cifar_split if arch == "conv2" else split
    iters = (
        dict(iterations=200, eval_every=50, plan_fc=(100, 30))  # Lenet's shape, narrowed for CPU float64
        if arch == "lenet"
        else dict(  # Conv-2's shape, narrowed for CPU
            iterations=30, eval_every=10, plan_conv=(8, 8, "M"), plan_fc=(32, 32)
        )
    )
    ticket = from_preset(arch, dataset=data.dataset, rounds=2, precision="fp64", **iters)
    members = cohort_members(ticket, [0, 1], ["reinit", "random-prune"])
    together = run(members, data)
    alone = lone_runs(members, data)
    for m in members:
        assert_close(together[m.key], alone[m.key], 1e-9)
    assert together[members[0].key][0].record["val_loss"] != together[members[1].key][0].record["val_loss"]


@pytest.mark.e2e
def test_float64_at_init_and_ablation_members_equal_their_lone_runs(split):
    """Every pruning-at-init method, random pruning, re-init and every ablation of each and of the ticket (23
    members) in one cohort: each member within 1e-9 of its lone run, masks identical."""
    ticket = from_preset(
        "lenet", dataset="mnist", plan_fc=(32, 16), rounds=2, iterations=40, eval_every=20, precision="fp64"
    )
    members = cohort_members(
        ticket, [0], ["random-prune", "snip", "grasp", "synflow", "magnitude-init"], ["shuffle", "reinit", "invert"]
    )
    assert len({m.label for m in members}) == len(members) == 23
    together = run(members, split)
    alone = lone_runs(members, split)
    for m in members:
        assert_close(together[m.key], alone[m.key], 1e-9)


@pytest.mark.e2e
def test_float64_equivalence_holds_under_late_rewinding_with_batchnorm(cifar_split):
    """Members whose rounds start at different iterations (ticket k -> T, re-init 0 -> T) and BatchNorm."""
    ticket = from_preset(
        "conv2",
        dataset="cifar10",
        plan_conv=("8B", "M"),
        plan_fc=(16,),
        rounds=1,
        iterations=30,
        eval_every=10,
        rewind_iteration=10,
        precision="fp64",
    )
    members = cohort_members(ticket, [0, 1], ["reinit", "random-prune"])
    together = run(members, cifar_split)
    alone = lone_runs(members, cifar_split)
    for m in members:
        assert_close(together[m.key], alone[m.key], 1e-9)


@pytest.mark.e2e
def test_float32_masks_identical_and_accuracies_within_noise_whatever_the_company(split):
    ticket = from_preset("lenet", dataset="mnist", rounds=2, iterations=200, eval_every=50)
    small = run(cohort_members(ticket, [0], ["random-prune"]), split)
    big = run(cohort_members(ticket, [0, 1, 2], ["reinit", "random-prune"]), split)
    for key in small:
        assert_close(small[key], big[key], 1e-4)


@pytest.mark.e2e
def test_a_diverging_member_changes_no_other_member_and_is_reported(split):
    ticket = from_preset("lenet", dataset="mnist", rounds=2, iterations=100, eval_every=50)
    members = cohort_members(ticket, [0, 1, 2], ["random-prune"])
    clean = run(members, split)
    cohort = Cohort(members, split)
    cohort.inits[1]["fc.0.weight"][0, 0] = math.nan  # seed 1's ticket is poisoned from its first step
    poisoned = {m.key: {} for m in members}
    for results in cohort.run_results():
        for i, res in results.items():
            poisoned[members[i].key][res.record["round"]] = res
    bad = members[1].key
    assert sorted(poisoned[bad]) == [0] and poisoned[bad][0].record["diverged"]
    assert cohort.states[1]["diverged_round"] == 0
    for m in members:
        if m.key != bad:
            # bitwise while the diverging member trains beside them (nothing leaks between members); in later
            # rounds the cohort is one member smaller, which changes the batched kernels' rounding only
            assert_close({0: poisoned[m.key][0]}, {0: clean[m.key][0]}, 0.0) if 0 in clean[m.key] else None
            assert_close(poisoned[m.key], clean[m.key], 1e-5)


@pytest.mark.e2e
def test_cohort_resumes_bitwise_from_its_state_and_from_round_files(split, tmp_path):
    ticket = from_preset("lenet", dataset="mnist", rounds=3, iterations=100, eval_every=50)
    members = cohort_members(ticket, [0, 1], ["reinit"])
    whole = run(members, split)
    stores = [RoundStore.at(str(tmp_path / m.key)) for m in members]
    first = Cohort(members, split)
    for _ in range(2):
        for i, res in first.run_round().items():
            stores[i].write_round(res)
    checkpoint = first.state
    for i, res in first.run_round().items():  # round 2 finishes; the checkpoint of it is lost
        if members[i].method == "imp":
            stores[i].write_round(res)  # ... and so are the re-init members' round-2 files
    states = resume_cohort(members, stores, checkpoint)
    assert [s["next_round"] for s in states] == [3, 3, 2, 2]  # each member where its own files end
    resumed = Cohort(members, split, states)
    rest = {m.key: {} for m in members}
    for results in resumed.run_results():
        for i, res in results.items():
            rest[members[i].key][res.record["round"]] = res
    assert sorted(rest[members[0].key]) == [3] and sorted(rest[members[2].key]) == [2, 3]
    for m in members:
        for r, res in rest[m.key].items():
            assert res.record["val_loss"] == whole[m.key][r].record["val_loss"]
            assert all(torch.equal(masks(res)[n], masks(whole[m.key][r])[n]) for n in masks(res))


@pytest.mark.parametrize("baselines,ablations", [(["reinit"], []), ([], ["shuffle"])])
def test_reinit_far_behind_its_ticket_gets_the_masks_from_the_tickets_files(baselines, ablations, split, tmp_path):
    """So does the ticket's shuffle ablation (it shuffles the ticket's mask of the round)."""
    ticket = from_preset("lenet", dataset="mnist", rounds=3, iterations=100, eval_every=50)
    members = cohort_members(ticket, [0], baselines, ablations)
    whole = run(members, split)
    stores = [RoundStore.at(str(tmp_path / m.key)) for m in members]
    for i, by_round in enumerate(whole.values()):
        for r, res in by_round.items():
            if not (i == 1 and r >= 1 and r != 1):  # the re-init keeps only round 1
                stores[i].write_round(res)
    states = resume_cohort(members, stores, None)
    assert states[0] is None or states[0]["next_round"] == 4
    assert states[1]["next_round"] == 2 and sorted(states[1]["ticket_masks"]) == [2]
    resumed = Cohort(members, split, states)
    got = {}
    for results in resumed.run_results():
        got.update({res.record["round"]: res for i, res in results.items() if i == 1})
    # the ticket is too far ahead to train beside it again: alone, the re-init's rounds equal the undisturbed
    # ones within float rounding (its masks exactly)
    assert_close({r: got[r] for r in (2, 3)}, {r: whole[members[1].key][r] for r in (2, 3)}, 1e-5)


def test_cohort_rules_are_one_line_errors(split):
    ticket = from_preset("lenet", dataset="mnist", rounds=1, iterations=100, eval_every=50)
    with pytest.raises(ConfigError, match="share one recipe; .* differs in learning_rate"):
        Cohort([ticket, ticket.replace(seed=1, learning_rate=0.1)], split)
    with pytest.raises(ConfigError, match="same member twice"):
        Cohort([ticket, ticket], split)
    with pytest.raises(ConfigError, match="needs its ticket"):
        Cohort([ticket.replace(method="reinit", seed=4)], split)
    with pytest.raises(ConfigError, match="one kind of ticket"):
        Cohort([ticket, ticket.replace(method="one-shot", seed=1)], split)


def test_trajectory_cli_runs_a_cohort(tiny_mnist, capsys, tmp_path):
    from lth_ray.cli.trajectory import main

    code = main(
        [
            "--dataset",
            "mnist",
            "--data-root",
            str(tiny_mnist),
            "--rounds",
            "1",
            "--iterations",
            "60",
            "--eval-every",
            "20",
            "--seeds",
            "2",
            "--baselines",
            "reinit",
            "--rounds-dir",
            str(tmp_path),
        ]
    )
    import json

    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert code == 0 and [(x["round"], x["method"], x["seed"]) for x in lines] == [
        (0, "imp", 0),
        (0, "imp", 1),
        (1, "imp", 0),
        (1, "imp", 1),
        (1, "reinit", 0),
        (1, "reinit", 1),
    ]
    assert len(list(tmp_path.glob("*/round_001/record.json"))) == 4


def test_grouped_convolutions_equal_the_member_by_member_path(cifar_split):
    """The GPU path (one grouped convolution, BatchNorm over P*C channels; also in the channels-last layout
    it takes under tf32 / bf16) and the CPU path (one convolution per member) give the same logits, gradients
    and BatchNorm statistics (float64, on the CPU)."""
    from lth_ray.core.engine.weights import initial_weights
    from lth_ray.core.models.registry import build_model
    from lth_ray.core.models.stacked import StackedNet
    from lth_ray.core.spec.config import plan_config

    cfg = from_preset("conv2", dataset="cifar10", plan_conv=(4, "8B", "M"), plan_fc=(16,))
    net = StackedNet(build_model(plan_config(cfg.plan_conv, cfg.plan_fc), (3, 32, 32), device="meta"))
    states = [initial_weights(cfg.replace(seed=s)) for s in range(3)]
    x = cifar_split.x_train[:30].double().view(3, 10, 3, 32, 32)
    out = {}
    for grouped, channels_last in ((True, False), (False, False), (True, True)):
        net.channels_last = channels_last
        tensors = {
            k: torch.stack([s[k] for s in states]).double()
            if states[0][k].is_floating_point()
            else torch.stack([s[k] for s in states])
            for k in states[0]
        }
        params = [t.requires_grad_() for k, t in tensors.items() if k.endswith(("weight", "bias"))]
        logits = net.forward(tensors, x, 3, shared=False, training=True, grouped=grouped)
        grads = torch.autograd.grad(logits.square().sum(), params)
        shared = net.forward(tensors, cifar_split.x_val[:7].double(), 3, shared=True, training=False, grouped=grouped)
        out[grouped, channels_last] = (
            logits,
            grads,
            tensors["conv.3.running_var"],
            tensors["conv.3.num_batches_tracked"],
            shared,
        )
    lb, gb, vb, nb, sb = out[False, False]
    for la, ga, va, na, sa in (out[True, False], out[True, True]):
        assert torch.allclose(la, lb, atol=1e-12) and torch.allclose(sa, sb, atol=1e-12)
        assert all(torch.allclose(a, b, atol=1e-10) for a, b in zip(ga, gb))
        assert torch.allclose(va, vb, atol=1e-12) and torch.equal(na, nb) and na.tolist() == [1, 1, 1]
