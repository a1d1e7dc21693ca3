"""The retrain kind's transfer (Morcos et al. 2019), against a hand computation in fp64 without Ray: with
--reinit-output, or under another class count, the output layer of every start point is the member's own
stream's draw (its init, its rewind point, its trained weights under fine-tune); the rest of the start and the
mask are the trunk ticket's."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from rounds_helpers import masks

import lth_ray.core.data.registry as data_registry
from lth_ray.core.branches import branch_members, branch_of
from lth_ray.core.branches.run import branch_states, fresh_output, run_branch, skip_to
from lth_ray.core.engine.cohort import Cohort
from lth_ray.core.engine.weights import fresh_weights, initial_weights
from lth_ray.core.options.resolve import from_preset
from lth_ray.core.store.rounds import RoundStore

OUT = ("out.weight", "out.bias")


@pytest.fixture(scope="module")
def trunk(split, tmp_path_factory):
    """A tiny fp64 ticket of one seed, rounds 0..2, its round files."""
    ticket = from_preset(
        "lenet", dataset="mnist", plan_fc=(32, 16), rounds=2, iterations=20, eval_every=10, precision="fp64"
    )
    store = RoundStore.at(str(tmp_path_factory.mktemp("trunk") / ticket.key))
    for results in Cohort([ticket], split).run_results():
        store.write_round(results[0])
    return ticket, store


@pytest.fixture
def five(split, monkeypatch):
    """A data set of MNIST's input shape with 5 classes (the tiny MNIST's labels mod 5)."""
    monkeypatch.setattr(data_registry, "DATASETS", dict(data_registry.DATASETS))
    data_registry.register_dataset(
        dataclasses.replace(data_registry.dataset_entry("mnist"), name="mnist-5", num_classes=5)
    )
    y = {k: getattr(split, k) % 5 for k in ("y_train", "y_val", "y_test")}
    return dataclasses.replace(split, **y, dataset="mnist-5")


def retrain_cohort(trunk, split, tmp_path, settings):
    ticket, store = trunk
    (member,) = branch_members(branch_of("retrain"), ticket, settings=settings)
    states, left = branch_states([member], (2,), [RoundStore.at(str(tmp_path / member.key))], {0: store})
    return member, Cohort([member], split, states, tickets_elsewhere=True), left


@pytest.mark.parametrize("retrain", ["weight-rewind", "fine-tune"])
@pytest.mark.parametrize("classes", [10, 5])
def test_the_fresh_output_layer_is_the_streams_draw_and_the_rest_is_the_tickets(
    retrain, classes, trunk, split, five, tmp_path
):
    ticket, store = trunk
    data = split if classes == 10 else five
    member, cohort, _ = retrain_cohort(trunk, data, tmp_path, {"dataset": data.dataset, "retrain": retrain})
    fresh_output(cohort, ticket.dataset)
    skip_to(cohort, 2, {0: store})
    mask, start = cohort.planner.mask_and_start(0, 2, {})
    drawn = fresh_weights(member, (1, 28, 28), 0)  # by hand: the member's re-init stream, round 0
    assert drawn["out.weight"].shape == (classes, 16)
    for k in OUT:
        assert torch.equal(start[k], drawn[k].double())
    # the rest: the trunk ticket's init (weight rewinding, k = 0) or its trained weights of round 1 (fine-tune)
    rest = initial_weights(ticket) if retrain == "weight-rewind" else store.trained(1)
    assert all(torch.equal(start[k], rest[k].double()) for k in rest if k not in OUT)
    assert all(torch.equal(mask[n], store.masks(2)[n]) for n in ("fc.0", "fc.2"))
    expected = store.masks(2)["out"] if classes == 10 else torch.ones(5, 16, dtype=torch.bool)
    assert torch.equal(mask["out"].cpu(), expected.to(mask["out"].dtype))  # another class count: dense


def test_another_class_count_draws_the_output_fresh_and_trains(trunk, five, tmp_path):
    ticket, store = trunk
    _, cohort, left = retrain_cohort(trunk, five, tmp_path, {"dataset": "mnist-5"})
    (results,) = list(run_branch(cohort, left, {0: store}, trunk_dataset=ticket.dataset))  # no --reinit-output
    assert "out.weight" in cohort.planner.fresh[0]
    assert masks(results[0])["out"].shape == (5, 16) and masks(results[0])["out"].all()
    assert torch.equal(masks(results[0])["fc.0"], store.masks(2)["fc.0"])
    assert 0 <= results[0].record["test_acc"][-1] <= 1


def test_only_another_input_shape_is_refused(trunk, five):
    from lth_ray.core.branches.retrain import check_transfer
    from lth_ray.core.spec.config import ConfigError

    ticket, _ = trunk
    check_transfer(ticket, ticket.replace(dataset="mnist-5"))  # another class count: a fresh output layer
    with pytest.raises(ConfigError, match=r"inputs are \(3, 32, 32\), the ticket's net takes \(1, 28, 28\)"):
        check_transfer(ticket, ticket.replace(dataset="cifar10"))
