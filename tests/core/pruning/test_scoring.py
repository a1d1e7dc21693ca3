"""Pruning at initialization (lth_ray.scoring): SNIP's scores by hand, SynFlow data-free and never emptying a
layer, every method at the ticket's density each round in both pruning modes, bad methods refused."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from rounds_helpers import masks

from lth_ray.core.engine.cohort import Cohort
from lth_ray.core.engine.trajectory import cohort_members
from lth_ray.core.models.plan import prunable_layers
from lth_ray.core.models.registry import build_model
from lth_ray.core.options.resolve import from_preset
from lth_ray.core.pruning.masks import alive_after
from lth_ray.core.pruning.scoring import keep_top, magnitude_scores, snip_scores, synflow_masks
from lth_ray.core.spec.config import ConfigError, plan_config


def test_snip_scores_equal_the_hand_computed_ones():
    """A one-layer net: dL/dW = (softmax(Wx + b) - y)^T x / B, score = |dL/dW * W| (mean over the batches)."""
    g = torch.Generator().manual_seed(0)
    model = build_model(plan_config((), ()), (1, 2, 2), generator=g)  # just `out`: 4 inputs -> 10 classes
    x1, x2 = torch.randn(5, 1, 2, 2, generator=g), torch.randn(5, 1, 2, 2, generator=g)
    y1, y2 = torch.randint(0, 10, (5,), generator=g), torch.randint(0, 10, (5,), generator=g)
    scores = snip_scores(model, ["out"], [(x1, y1), (x2, y2)])
    w, b = model.out.weight.detach(), model.out.bias.detach()

    def grad(x, y):
        p = torch.softmax(x.flatten(1) @ w.T + b, 1)
        return (p - F.one_hot(y, 10).float()).T @ x.flatten(1) / len(y)

    expected = ((grad(x1, y1) + grad(x2, y2)) / 2 * w).abs()
    assert torch.allclose(scores["out"], expected, atol=1e-7)
    assert model.out.weight.grad is None  # the model is left without gradients


def test_magnitude_init_keeps_the_largest_initial_weights_globally():
    model = build_model(plan_config((), (300, 100)), (1, 28, 28), generator=torch.Generator().manual_seed(1))
    layers = prunable_layers(model)
    ones = {n: torch.ones_like(dict(model.named_modules())[n].weight, dtype=torch.bool) for n in layers}
    kept = keep_top(magnitude_scores(model, layers), ones, 5000)
    assert sum(int(m.sum()) for m in kept.values()) == 5000
    w = {n: dict(model.named_modules())[n].weight.detach().abs() for n in layers}
    assert min(float(w[n][m].min()) for n, m in kept.items()) >= max(float(w[n][~m].max()) for n, m in kept.items())


@pytest.mark.e2e
def test_synflow_is_data_free_and_never_empties_a_layer():
    """At Lenet's densest rung of a 15-round ladder (about 3.5%) every layer keeps weights; no data is read
    (the scorer gets none), and the model's own weights are untouched."""
    model = build_model(plan_config((), (300, 100)), (1, 28, 28), generator=torch.Generator().manual_seed(2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    layers = prunable_layers(model)
    total = sum(dict(model.named_modules())[n].weight.numel() for n in layers)
    keep = alive_after(total, 0.2, 15)
    kept = synflow_masks(model, layers, (1, 28, 28), keep, iterations=100)
    assert sum(int(m.sum()) for m in kept.values()) == keep
    assert all(int(m.sum()) > 0 for m in kept.values())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    again = synflow_masks(model, layers, (1, 28, 28), keep, iterations=100)
    assert all(torch.equal(kept[n], again[n]) for n in kept)  # deterministic


@pytest.mark.e2e
@pytest.mark.parametrize("pruning", ["layerwise", "global"])
def test_every_at_init_method_has_the_tickets_density_each_round(pruning, split):
    cfg = from_preset("lenet", dataset="mnist", iterations=20, eval_every=10, rounds=3, pruning=pruning)
    members = cohort_members(cfg, [0], ["snip", "synflow", "magnitude-init"])
    rounds = list(Cohort(members, split).run_results())
    for r in range(1, 4):
        ticket = sum(int(m.sum()) for m in masks(rounds[r][0]).values())
        for i in (1, 2, 3):
            rec = rounds[r][i].record
            assert sum(int(m.sum()) for m in masks(rounds[r][i]).values()) == ticket, (members[i].method, r)
            assert rec["sparsity"] == rounds[r][0].record["sparsity"]
            assert (rec["start_iteration"], rec["steps"], rec["iterations"]) == (0, 20, [10, 20])  # init: 0 -> T
    assert sorted(rounds[0]) == [0]  # no dense round of their own


@pytest.mark.e2e
def test_synflow_masks_do_not_depend_on_the_data(split):
    cfg = from_preset("lenet", dataset="mnist", iterations=10, eval_every=10, rounds=2, method="synflow")
    other = dataclasses.replace(split, x_train=split.x_train.flip(0), y_train=split.y_train.flip(0))
    a, b = (list(Cohort([cfg], s).run_results()) for s in (split, other))
    assert all(torch.equal(masks(a[-1][0])[n], masks(b[-1][0])[n]) for n in masks(a[-1][0]))


def test_unknown_methods_and_bad_score_batches_are_one_line_errors(tiny_mnist, capsys):
    from lth_ray.cli.trajectory import main

    with pytest.raises(ConfigError, match="method='grasp2' is unknown"):
        from_preset("lenet", method="grasp2")
    with pytest.raises(ConfigError, match="score_batches=0"):
        from_preset("lenet", method="snip", score_batches=0)
    code = main(["--data-root", str(tiny_mnist), "--baselines", "snip,lottery", "--rounds", "1"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "'lottery' is unknown" in err


def test_grasp_scores_equal_the_hand_computed_ones():
    """A one-layer net, logits z = (Wx + b) / T: g = (p - y) x^T / (T B) and the Hessian-vector product
    H v = sum_n [(diag p_n - p_n p_n^T)(v x_n)] x_n^T / (T^2 B); the kept score is W * (H g), GraSP's
    S = -W * (H g) negated (GraSP removes the highest S). Mean over two batches."""
    from lth_ray.core.pruning.scoring import grasp_scores

    T = 200.0  # Wang et al.'s temperature, written as the paper's number (not imported: a wrong one must fail)
    g = torch.Generator().manual_seed(3)
    model = build_model(plan_config((), ()), (1, 2, 2), generator=g).double()
    xs = [torch.randn(6, 1, 2, 2, generator=g, dtype=torch.float64) for _ in range(2)]
    ys = [torch.randint(0, 10, (6,), generator=g) for _ in range(2)]
    scores = grasp_scores(model, ["out"], list(zip(xs, ys)))
    w, b = model.out.weight.detach(), model.out.bias.detach()
    x, y = torch.cat([x.flatten(1) for x in xs]), torch.cat(ys)  # two equal batches: the mean over all 12
    p = torch.softmax((x @ w.T + b) / T, 1)
    grad = (p - F.one_hot(y, 10).double()).T @ x / (T * len(y))
    hg = torch.zeros_like(w)
    for n in range(len(y)):
        jac = torch.diag(p[n]) - torch.outer(p[n], p[n])
        hg += torch.outer(jac @ (grad @ x[n]), x[n])
    hg /= T**2 * len(y)
    assert torch.allclose(scores["out"], w * hg, rtol=1e-9, atol=1e-18)
    assert scores["out"].abs().max() > 0 and model.out.weight.grad is None


def test_grasp_keeps_the_lowest_grasp_score_and_inverting_keeps_the_highest():
    """Signed scores: keep_top keeps the highest w * Hg (the lowest S = -w * Hg), not the highest |.|;
    the inversion keeps the lowest."""
    scores = {"a": torch.tensor([[-3.0, 1.0], [2.0, -0.5]])}
    ones = {"a": torch.ones(2, 2, dtype=torch.bool)}
    assert keep_top(scores, ones, 2)["a"].tolist() == [[False, True], [True, False]]
    assert keep_top(scores, ones, 2, invert=True)["a"].tolist() == [[True, False], [False, True]]


def test_score_batches_beyond_one_epoch_are_refused(split):
    per_epoch = len(split.x_train) // 60
    cfg = from_preset(
        "lenet", dataset="mnist", iterations=10, eval_every=10, rounds=1, method="grasp", score_batches=per_epoch + 1
    )
    with pytest.raises(ConfigError, match=f"score_batches={per_epoch + 1} exceeds one epoch of {per_epoch} "):
        Cohort([cfg], split)
