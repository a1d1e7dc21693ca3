"""Extending lth_ray from outside the package, end to end: a toy model, data set and scorer, each registered
with one call, train a real cohort (the engine's `Cohort`) beside an IMP ticket and its re-init baseline.

What must hold for them is what holds for the built-ins: every member keeps the ticket's count of weights
each round (the sparsity ladder), the toy method keeps exactly its top-scored weights, pruned weights stay
zero after training, and a cohort member equals its lone run in fp64.
"""

import pytest
import torch
from toy_extension import make_toy_digits

import lth_ray.core.methods.registry as method_registry
import lth_ray.core.pruning.scoring as scoring
from lth_ray.core.data.loading import load_split
from lth_ray.core.engine.cohort import Cohort
from lth_ray.core.engine.trajectory import cohort_members
from lth_ray.core.methods import PruneAtInit, register_method
from lth_ray.core.methods.member import check_trajectory
from lth_ray.core.pruning.masks import dense_masks, expand, unpack_masks
from lth_ray.core.pruning.scoring import Scorer, keep_top, register_scorer
from lth_ray.core.spec.config import ConfigError, TrajectoryConfig


def row_scores(model, layers, batches=()):
    """A toy scorer: each weight scored by the magnitude of its output unit's mean incoming weight."""
    modules = dict(model.named_modules())
    return {
        n: modules[n].weight.detach().mean(1, keepdim=True).abs().expand_as(modules[n].weight).clone()
        + 1e-6 * modules[n].weight.detach().abs()
        for n in layers
    }


@pytest.fixture
def toy(registries, monkeypatch, tmp_path):  # noqa: F811
    monkeypatch.setattr(scoring, "SCORERS", dict(scoring.SCORERS))
    monkeypatch.setattr(method_registry, "METHODS", dict(method_registry.METHODS))
    register_scorer(Scorer("row-mean", row_scores))
    register_method(PruneAtInit("row-mean"))
    split = load_split("toy-digits", str(make_toy_digits(tmp_path)))
    return TrajectoryConfig(
        arch="tiny-mlp",
        plan_conv=(),
        plan_fc=(),
        dataset="toy-digits",
        iterations=40,
        batch_size=20,
        eval_every=20,
        learning_rate=1e-2,
        rounds=2,
        prune_rate_fc=0.3,
    ), split


def test_a_toy_model_data_set_and_scorer_train_a_cohort_with_a_ticket(toy):
    ticket, split = toy
    members = cohort_members(ticket, [0], ["reinit", "row-mean"])
    cohort = Cohort(members, split)
    rounds = list(cohort.run_results())
    assert [sorted(r) for r in rounds] == [[0], [0, 1, 2], [0, 1, 2]]
    sizes = {"hidden": 64 * 16, "head": 16 * 4}
    for r in (1, 2):
        for i, result in rounds[r].items():
            masks = unpack_masks(result.masks)
            kept = sum(int(m.sum()) for m in masks.values())
            assert kept == cohort.ladder_count(r), (members[i].label, r)
            trained = expand(result.trained, masks)
            for n in sizes:  # pruned weights stay exactly zero through training
                assert (trained[f"{n}.weight"][~masks[n]] == 0).all()
        init = {n: cohort.inits[2][f"{n}.weight"] for n in sizes}
        model = cohort.planner.view(2).scoring_model()
        expected = keep_top(row_scores(model, list(sizes)), dense_masks(init), cohort.ladder_count(r))
        assert all(torch.equal(unpack_masks(rounds[r][2].masks)[n], expected[n]) for n in sizes)
    assert rounds[2][1].record["method"] == "reinit" and rounds[2][2].record["method"] == "row-mean"


def test_a_toy_member_equals_its_lone_run_in_fp64(toy):
    ticket, split = toy
    ticket = ticket.replace(precision="fp64")
    members = cohort_members(ticket, [0, 1], ["row-mean"])
    together = list(Cohort(members, split).run_results())
    alone = list(Cohort([members[3]], split).run_results())  # seed 1's row-mean member alone: rounds 1, 2
    for r in (1, 2):
        a, b = together[r][3].record, alone[r - 1][0].record
        assert a["sparsity"] == b["sparsity"]
        for metric in ("train_loss", "val_loss", "test_acc"):
            assert max(abs(x - y) for x, y in zip(a[metric], b[metric])) < 1e-9


def test_unknown_names_list_the_registered_ones(toy):
    ticket, _ = toy
    with pytest.raises(ConfigError, match=r"method='nope' is unknown; allowed: .*row-mean"):
        check_trajectory(ticket.replace(method="nope"))
    with pytest.raises(ConfigError, match=r"arch='nope' is unknown; allowed: .*tiny-mlp"):
        check_trajectory(ticket.replace(arch="nope"))
    with pytest.raises(
        ConfigError, match="scorer 'nope' is unknown; known: snip, grasp, synflow, magnitude-init, row-mean"
    ):
        scoring.scorer("nope")
    with pytest.raises(ConfigError, match="already registered"):
        register_scorer(Scorer("row-mean", row_scores))
