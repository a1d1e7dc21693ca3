"""A branch's members from a trunk's round files, without Ray: a member added later equals the same member trained
beside its ticket, bitwise in fp64 on the CPU; chosen rounds only; resumed from its own round files."""

from __future__ import annotations

import pytest
import torch
from rounds_helpers import masks

from lth_ray.core.branches import BRANCHES, branch_members, branch_of
from lth_ray.core.branches.run import branch_states, parse_rounds, rounds_label, rounds_to_run, run_branch
from lth_ray.core.engine.cohort import Cohort
from lth_ray.core.engine.trajectory import cohort_members
from lth_ray.core.options.resolve import from_preset
from lth_ray.core.spec.config import ConfigError
from lth_ray.core.store.rounds import RoundStore

METRICS = ("train_loss", "val_loss", "val_acc", "test_loss", "test_acc")


@pytest.fixture(scope="module")
def trunk(split, tmp_path_factory):
    """A tiny fp64 trunk of one seed: the ticket with its re-init, random-pruning and two init-variant baselines in
    lockstep."""
    root = tmp_path_factory.mktemp("trunk")
    ticket = from_preset(
        "lenet", dataset="mnist", plan_fc=(32, 16), rounds=3, iterations=20, eval_every=10, precision="fp64"
    )
    members = cohort_members(ticket, [0], ["reinit", "random-prune", "signed-constant", "reshuffle"])
    stores = {m.key: RoundStore.at(str(root / m.key)) for m in members}
    cohort = Cohort(members, split)
    for results in cohort.run_results():
        for i, res in results.items():
            stores[members[i].key].write_round(res)
    return ticket, members, stores


def grow(kind, trunk, split, root, chosen):
    ticket, members, stores = trunk
    tickets = {s: stores[ticket.replace(seed=s).key] for s in (0,)}
    new = [m for s in (0,) for m in branch_members(branch_of(kind), ticket.replace(seed=s))]
    own = [RoundStore.at(str(root / m.key)) for m in new]
    states, left = branch_states(new, chosen, own, tickets)
    cohort = Cohort(new, split, states, tickets_elsewhere=True)
    trained = []
    for results in run_branch(cohort, left, tickets):
        for i, res in results.items():
            own[i].write_round(res)
            trained.append((new[i].key, res.record["round"]))
    return new, own, trained


@pytest.mark.parametrize("kind", ["reinit", "random-prune", "signed-constant", "reshuffle"])
def test_a_member_added_by_a_branch_equals_its_lockstep_twin_bitwise(kind, trunk, split, tmp_path):
    new, own, trained = grow(kind, trunk, split, tmp_path, (1, 3))
    assert sorted(trained) == sorted((m.key, r) for m in new for r in (1, 3))  # round 2 skipped
    _, _, stores = trunk
    for m, store in zip(new, own):
        twin = stores[m.key]  # the same config: the same key as the trunk's lockstep member
        assert store.round_numbers() == [1, 3]
        for r in (1, 3):
            a, b = store.record(r), twin.record(r)
            assert all(a[k] == b[k] for k in METRICS), (m.key, r)
            assert all(torch.equal(store.masks(r)[n], twin.masks(r)[n]) for n in twin.masks(r))


def test_running_a_branch_again_trains_nothing_and_a_torn_round_is_redone(trunk, split, tmp_path):
    new, own, trained = grow("random-prune", trunk, split, tmp_path, (2, 3))
    assert len(trained) == 2
    assert grow("random-prune", trunk, split, tmp_path, (2, 3))[2] == []
    (tmp_path / new[0].key / "round_003" / "trained.pt").write_bytes(b"torn")
    again = grow("random-prune", trunk, split, tmp_path, (2, 3))[2]
    assert sorted(again) == sorted((m.key, 3) for m in new)  # both members, so the company is the same
    _, _, stores = trunk
    assert own[0].record(3)["val_loss"] == stores[new[0].key].record(3)["val_loss"]


def test_the_tickets_inversion_runs_every_round_up_to_the_last():
    ticket = from_preset("lenet", dataset="mnist", plan_fc=(32, 16), rounds=5, iterations=40, eval_every=20)
    (inverted,) = branch_members(branch_of("invert"), ticket)
    assert (inverted.method, inverted.ablation) == ("imp", "invert")
    assert rounds_to_run(inverted, (2, 4)) == [0, 1, 2, 3, 4]
    (snip_inverted,) = branch_members(branch_of("invert"), ticket, of="snip")
    assert rounds_to_run(snip_inverted, (2, 4)) == [2, 4]


def test_every_kind_adds_the_member_the_sweep_would_have():
    ticket = from_preset("lenet", dataset="mnist", rounds=2, iterations=40, eval_every=20)
    variants = ("signed-constant", "reshuffle", "signed-reshuffle", "signed-reinit")
    for name in ("reinit", "random-prune", "snip", "grasp", "synflow", "magnitude-init", *variants):
        (m,) = branch_members(branch_of(name), ticket)
        assert m.key in {x.key for x in cohort_members(ticket, [0], [name])}
    (m,) = branch_members(branch_of("shuffle"), ticket)
    assert (m.method, m.ablation) == ("imp", "shuffle")
    assert [(m.method, m.ablation) for m in branch_members(branch_of("reinit"), ticket, of="snip")] == [
        ("snip", "reinit")
    ]
    with pytest.raises(ConfigError, match="branch kind 'nope' is unknown; allowed: reinit, random-prune"):
        branch_of("nope")
    with pytest.raises(ConfigError, match="adds no member to a random-prune ticket"):
        branch_members(branch_of("invert"), ticket, of="random-prune")
    with pytest.raises(ConfigError, match="ablates nothing"):
        branch_members(branch_of("snip"), ticket, of="grasp")
    assert set(BRANCHES) >= {"reinit", "random-prune", "shuffle", "invert"}


def test_rounds_parse_and_label():
    assert parse_rounds("1,3-5") == (1, 3, 4, 5) and rounds_label((1, 3, 4, 5)) == "1,3-5"
    assert parse_rounds("2, 2,1") == (1, 2)
    for bad in ("a", "3-1", "-1", "1,,2"):
        with pytest.raises(ConfigError, match="--rounds"):
            parse_rounds(bad)


def test_a_branch_kind_registered_from_outside_the_package(monkeypatch):
    from toy_extension import TOY_BRANCH

    import lth_ray.core.branches.registry as registry

    monkeypatch.setattr(registry, "BRANCHES", dict(registry.BRANCHES))
    registry.register_branch(TOY_BRANCH)
    ticket = from_preset("lenet", dataset="mnist", rounds=2, iterations=40, eval_every=20)
    labels = [m.label for m in branch_members(registry.branch_of("toy-random-pair"), ticket)]
    assert labels == ["random-prune", "random-prune-reinit"]
    with pytest.raises(ConfigError, match="already registered"):
        registry.register_branch(TOY_BRANCH)


def test_instability_measured_afterwards_equals_instability_measured_in_the_sweep(trunk, split, tmp_path):
    """The trunk ran without --instability; the branch measures it at round 2 from the trunk's round-1 files,
    bitwise as a ticket measuring it in lockstep (fp64)."""
    ticket, _, stores = trunk
    (member,) = branch_members(branch_of("instability"), ticket, rounds=(2,))
    assert member.instability and member.instability_rounds == (2,)
    lockstep = Cohort([member], split)
    measured = {}
    for results in lockstep.run_results():
        measured.update({res.record["round"]: res.record for res in results.values()})
    own = [RoundStore.at(str(tmp_path / member.key))]
    states, left = branch_states([member], (2,), own, {0: stores[ticket.key]})
    assert left == [2]
    cohort = Cohort([member], split, states, tickets_elsewhere=True)
    (results,) = list(run_branch(cohort, left, {0: stores[ticket.key]}))
    record = results[0].record
    timeless = lambda d: {k: v for k, v in d.items() if k != "seconds"}  # noqa: E731
    assert record["round"] == 2 and timeless(record["instability"]) == timeless(measured[2]["instability"])
    assert all(record[k] == measured[2][k] for k in METRICS)


def retrained(trunk, split, root, settings, reinit_output=False, rounds=(2,)):
    ticket, _, stores = trunk
    (member,) = branch_members(branch_of("retrain"), ticket, settings=settings)
    own = [RoundStore.at(str(root / member.key))]
    tickets = {0: stores[ticket.key]}
    states, left = branch_states([member], rounds, own, tickets)
    cohort = Cohort([member], split, states, tickets_elsewhere=True)
    return {r: res[0] for r, res in zip(left, run_branch(cohort, left, tickets, reinit_output))}


def test_retrain_under_the_same_recipe_repeats_the_ticket_and_another_keeps_its_mask(trunk, split, tmp_path):
    """The retrain kind's round r: the ticket's mask of round r (IMP on the trunk's round r - 1), trained from its
    rewind point under the branch's recipe; unchanged, it is the trunk's round bitwise (fp64)."""
    _, _, stores = trunk
    ticket = trunk[0]
    same = retrained(trunk, split, tmp_path / "same", {})[2]
    twin = stores[ticket.key]
    assert all(same.record[k] == twin.record(2)[k] for k in METRICS)
    faster = retrained(trunk, split, tmp_path / "lr", {"learning_rate": 0.01})[2]
    fresh = retrained(trunk, split, tmp_path / "fresh", {}, reinit_output=True)[2]
    frozen = retrained(trunk, split, tmp_path / "frozen", {"pruned_weights": "frozen-init"})[2]  # Zhou's mask-0
    for res in (faster, fresh, frozen):
        assert all(torch.equal(masks(res)[n], twin.masks(2)[n]) for n in twin.masks(2))
        assert res.record["val_loss"] != twin.record(2)["val_loss"]


def test_retrain_refuses_what_it_cannot_change(trunk):
    ticket = trunk[0]
    with pytest.raises(ConfigError, match="--set prune_rate_fc: not a setting a retrain branch changes; allowed: "):
        branch_members(branch_of("retrain"), ticket, settings={"prune_rate_fc": 0.5})
    with pytest.raises(ConfigError, match="--set learning_rate: not a setting a reinit branch changes; allowed: none"):
        branch_members(branch_of("reinit"), ticket, settings={"learning_rate": 0.5})
    from lth_ray.core.branches.retrain import check_transfer

    with pytest.raises(ConfigError, match=r"inputs are \(3, 32, 32\), the ticket's net takes \(1, 28, 28\)"):
        check_transfer(ticket, ticket.replace(dataset="cifar10"))
    check_transfer(ticket, ticket.replace(dataset="fashion-mnist"))


def test_the_tickets_inversion_resumes_after_its_last_complete_round(trunk, split, tmp_path):
    new, own, trained = grow("invert", trunk, split, tmp_path, (1,))
    assert sorted(r for _, r in trained) == [0, 1]  # a trajectory of its own: from round 0
    first = own[0].record(1)["val_loss"]
    (tmp_path / new[0].key / "round_001" / "record.json").unlink()
    assert grow("invert", trunk, split, tmp_path, (1,))[2] == [(new[0].key, 1)]
    assert own[0].record(1)["val_loss"] == first
