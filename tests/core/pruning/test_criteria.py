"""Mask criteria (Zhou et al. 2019, `get_weight_init.py`) against masks worked out by hand on two tiny layers.

Layer A's six weights are chosen so every criterion keeps another set, in exact binary fractions (no rounding
ties); the kept sets below were computed on paper, from the definitions in the authors' code. A wrong definition
(a missing absolute value, init and final swapped, the union instead of the intersection) keeps another set, so
it fails. Then the engine: a ticket's round-1 mask under a criterion equals the hand selection from its init (or
W_k) and its dense round's trained weights.
"""

from __future__ import annotations

import pytest
import torch
from rounds_helpers import masks as mask_of
from rounds_helpers import run_all, trained

import lth_ray.core.pruning.criteria as criteria
from lth_ray.core.engine.trajectory import Trajectory
from lth_ray.core.options.resolve import from_preset
from lth_ray.core.pruning.criteria import CRITERIA, Criterion, criterion_scores
from lth_ray.core.pruning.masks import dense_masks, global_score_prune, removal_count, score_prune
from lth_ray.core.spec.config import ConfigError
from lth_ray.core.spec.streams import STREAM_CRITERION, generator


def tie_draw() -> list[int]:
    """The order in which the criterion stream of seed 0, round 1 lines up layer a's six weights: of tied scores,
    the first in it is pruned first (the authors' lexsort on a random key)."""
    return torch.randperm(6, generator=generator(0, STREAM_CRITERION, 1)).tolist()


WI = {
    "a": torch.tensor([0.5, -0.25, 0.125, -1.0, 0.375, 0.0625]),
    "b": torch.tensor([0.875, -0.1875, 0.3125, -0.5625]),
}
WF = {
    "a": torch.tensor([0.75, 0.625, -0.375, -0.25, -0.4375, 0.03125]),
    "b": torch.tensor([-0.125, 0.6875, 0.5, -0.8125]),
}
# Layer a at rate 0.5 keeps 3 of 6. Same sign at 0, 3, 5.
HAND_A = {
    "large_final": {0, 1, 4},  # |w_f| = .75 .625 .375 .25 .4375 .03125
    "small_final": {2, 3, 5},
    "large_init": {0, 3, 4},  # |w_i| = .5 .25 .125 1 .375 .0625
    "small_init": {1, 2, 5},
    "magnitude_increase": {0, 1, 2},  # .25 .375 .25 -.75 .0625 -.03125
    "movement": {1, 3, 4},  # .25 .875 .5 .75 .8125 .03125
    "large_final_same_sign": {0, 3, 5},  # .75 0 0 .25 0 .03125
    "large_final_diff_sign": {1, 2, 4},  # 0 .625 .375 0 .4375 0
    # .25 0 0 -.75 0 -.03125: 3 and 5 go, then one of the three zeros, the first in the draw (`tie_draw`)
    "magnitude_increase_same_sign": {0, 1, 2, 4} - {next(i for i in tie_draw() if i in (1, 2, 4))},
    "magnitude_increase_diff_sign": {1, 2, 4},  # 0 .375 .25 0 .0625 0
    # ranks by |w_i| (3 0 4 1 2 5) and |w_f| (0 1 4 2 3 5): max rank 1 3 4 4 2 5 -> keep 0 (1), 4 (2), 1 (3);
    # the top-4 sets {3,0,4,1} and {0,1,4,2} meet in exactly {0,1,4}
    "large_init_large_final": {0, 1, 4},
    # ascending ranks by |w_i| (5 2 1 4 0 3) and |w_f| (5 3 2 4 1 0): the bottom-4 sets meet in {5,2,4}
    "small_init_small_final": {2, 4, 5},
}
WRONG = {  # what a careless reading would score instead
    "magnitude_increase": [lambda wi, wf: wf - wi.abs(), lambda wi, wf: wi.abs() - wf.abs(), lambda wi, wf: wf - wi],
    "movement": [lambda wi, wf: wf - wi, lambda wi, wf: wf.abs() - wi.abs()],
    "large_final": [lambda wi, wf: wi.abs(), lambda wi, wf: wf],
    "large_init": [lambda wi, wf: wf.abs(), lambda wi, wf: wi],
    "large_final_same_sign": [lambda wi, wf: torch.where(torch.sign(wi) != torch.sign(wf), wf.abs(), 0.0)],
}


def kept(name: str, layers=("a",), scope: str = "layer", keep: dict | None = None) -> dict[str, set[int]]:
    wi, wf = {n: WI[n] for n in layers}, {n: WF[n] for n in layers}
    ones = dense_masks(wf)
    scores = criterion_scores(name, wi, wf, ones, scope, generator(0, STREAM_CRITERION, 1))
    if scope == "global":
        out = global_score_prune(scores, ones, count=sum(m.numel() for m in ones.values()) - (keep or {})["all"])
    else:
        out = score_prune(scores, ones, {n: 0.5 for n in layers})
    return {n: set(m.nonzero().flatten().tolist()) for n, m in out.items()}


@pytest.mark.parametrize("name", list(HAND_A))
def test_each_criterion_keeps_the_hand_worked_set(name):
    assert kept(name) == {"a": HAND_A[name]}


def test_every_registered_criterion_but_random_is_checked_by_hand():
    assert set(CRITERIA) == set(HAND_A) | {"random"}


@pytest.mark.parametrize("name,wrong", [(n, w) for n, ws in WRONG.items() for w in ws])
def test_a_wrong_definition_keeps_another_set(name, wrong, monkeypatch):
    monkeypatch.setitem(CRITERIA, name, Criterion(name, "wrong", wrong))
    assert kept(name) != {"a": HAND_A[name]}


def test_the_joint_criterion_is_an_intersection_not_a_union(monkeypatch):
    """The union of the two top-q sets (min of the ranks) keeps {0, 1, 3} on layer a, not {0, 1, 4}."""
    right = kept("large_init_large_final")

    def union(wi, wf, alive, largest):
        return -torch.minimum(criteria._ranks(wi, alive, largest), criteria._ranks(wf, alive, largest)).double()

    monkeypatch.setattr(criteria, "joint_scores", union)
    assert kept("large_init_large_final") == {"a": {0, 1, 3}} != right


def test_global_joint_ranks_run_over_all_layers():
    """Ranks over a and b together (10 weights, keep 5), worked by hand: max ranks a: 3 6 8 7 5 9, b: 8 7 5 2;
    the top-7 sets by |w_i| and |w_f| meet in a0 a1 a4 b2 b3."""
    assert kept("large_init_large_final", ("a", "b"), "global", {"all": 5}) == {"a": {0, 1, 4}, "b": {2, 3}}
    # within each layer instead (layer-wise at 0.5): b keeps b2, b3 (max ranks 3 3 2 1)
    assert kept("large_init_large_final", ("a", "b"))["b"] == {2, 3}


def test_a_sign_filters_ties_are_broken_at_random_not_by_index():
    """100 weights that all kept their sign: every diff_sign score is 0, and the 50 kept are the stream's draw, not
    the first 50 (a tie broken by the flat index keeps a layer's first rows)."""
    wi, wf = {"a": torch.linspace(0.1, 1.0, 100)}, {"a": torch.linspace(0.2, 2.0, 100)}
    ones = dense_masks(wf)
    scores = criterion_scores("large_final_diff_sign", wi, wf, ones, "layer", generator(3, STREAM_CRITERION, 2))
    kept = set(score_prune(scores, ones, {"a": 0.5})["a"].nonzero().flatten().tolist())
    perm = torch.randperm(100, generator=generator(3, STREAM_CRITERION, 2)).tolist()
    assert kept == set(perm[50:]) and kept != set(range(50, 100)) and kept != set(range(50))


def test_the_random_criterion_is_the_members_own_draw():
    draw = torch.rand(6, generator=generator(0, STREAM_CRITERION, 1), dtype=torch.float64)
    assert kept("random") == {"a": set(torch.topk(draw, 3).indices.tolist())}
    assert removal_count(6, 0.5) == 3


def small(**kw):
    base = dict(plan_fc=(16,), iterations=40, eval_every=20, batch_size=20, rounds=1)
    return from_preset("lenet", **{**base, **kw})


def hand_mask(wi: torch.Tensor, wf: torch.Tensor, rate: float, score) -> torch.Tensor:
    """Layer-wise: remove round(rate x n) lowest scores (stable: the lower flat index first)."""
    s = score(wi.double(), wf.double()).flatten()
    order = sorted(range(s.numel()), key=lambda i: (s[i].item(), i))
    keep = torch.ones(s.numel(), dtype=torch.bool)
    keep[order[: removal_count(s.numel(), rate)]] = False
    return keep.view_as(wi)


@pytest.mark.parametrize("rewind", [0, 20])
def test_a_tickets_round_one_mask_follows_its_criterion_from_the_rewind_point(rewind, split):
    """magnitude_increase on the real engine: w_i is the init (or W_k under late rewinding), w_f the dense
    round's trained weights; the swapped reading (w_i the trained weights) gives another mask."""
    cfg = small(criterion="magnitude_increase", rewind_iteration=rewind)
    results = run_all(Trajectory(cfg, split))
    start = results[0].rewind if rewind else Trajectory(cfg, split).init
    dense = trained(results[0])
    got = mask_of(results[1])
    rates = {"fc.0": 0.2, "out": 0.1}

    def increase(wi, wf):
        return wf.abs() - wi.abs()

    for n, rate in rates.items():
        wi, wf = start[f"{n}.weight"], dense[f"{n}.weight"]
        assert torch.equal(got[n], hand_mask(wi, wf, rate, increase))
        assert not torch.equal(got[n], hand_mask(wf, wi, rate, increase))


def test_the_default_criterion_leaves_the_key_and_the_recorded_config_as_they_were():
    cfg = small()
    assert "criterion" not in cfg.to_dict() and "large_final" not in cfg.key
    other = small(criterion="movement")
    assert other.to_dict()["criterion"] == "movement" and other.key.endswith("-movement-s0")


def test_an_unknown_criterion_is_one_line_naming_the_allowed():
    from lth_ray.core.methods.member import check_trajectory

    with pytest.raises(ConfigError, match=r"criterion='largest' is unknown; allowed: large_final, small_final"):
        check_trajectory(small().replace(criterion="largest"))
