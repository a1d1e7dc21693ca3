"""Tests that would catch a wrong definition: SynFlow against a hand computation (absolute weights, an all-ones
input, eval mode, float64, the exponential schedule after each of its 100 iterations), a re-initialized member
drawn from the initializer's distribution, and the inversions of SNIP, GraSP and SynFlow keeping the lowest
scores. Each reference is written out here from the papers, not taken from lth_ray."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from rounds_helpers import masks

import lth_ray.core.pruning.scoring as scoring
import lth_ray.core.pruning.scoring.synflow as synflow
from lth_ray.core.engine.cohort import Cohort
from lth_ray.core.engine.trajectory import cohort_members
from lth_ray.core.models.plan import prunable_layers
from lth_ray.core.models.registry import build_model
from lth_ray.core.options.resolve import from_preset
from lth_ray.core.spec.config import plan_config

LAYERS = ["conv.0", "fc.0", "out"]


def tiny_net() -> torch.nn.Module:
    """conv(1->2) + BatchNorm + ReLU + max-pool, fc(8->3), out(3->10) on 1x4x4 inputs; signed weights, BatchNorm
    statistics far from (0, 1) so that eval mode matters, and fc and out weights of 1e20 so that the synaptic
    flow (about 1e41) overflows float32: only a float64 computation gets the scores right."""
    model = build_model(plan_config(("2B", "M"), (3,)), (1, 4, 4), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        bn = model.conv[1]
        bn.running_mean.copy_(torch.tensor([-0.5, 0.2]))
        bn.running_var.copy_(torch.tensor([4.0, 0.25]))
        bn.weight.copy_(torch.tensor([-1.5, 0.7]))
        bn.bias.copy_(torch.tensor([0.3, -0.2]))
        model.fc[0].weight.mul_(1e20)
        model.out.weight.mul_(1e20)
    assert list(prunable_layers(model)) == LAYERS
    return model


def hand_synflow(model: torch.nn.Module, keep: int, invert: bool, iterations: int = 100):
    """Tanaka et al. 2020, Algorithm 1, written out: every parameter and BatchNorm statistic made absolute, the
    net in float64 and eval mode, R = 1^T f(1), scores |dR/dw * w|; after iteration k keep the
    round(total * (keep / total)^(k / n)) highest (inverted: lowest) alive scores (ties: lower index removed)."""
    sd = {k: v.detach().double().abs() for k, v in model.state_dict().items() if v.is_floating_point()}
    mask = {n: torch.ones_like(sd[f"{n}.weight"], dtype=torch.bool) for n in LAYERS}
    total = sum(m.numel() for m in mask.values())
    counts, steps = [], []
    for k in range(1, iterations + 1):
        w = {n: (sd[f"{n}.weight"] * mask[n]).requires_grad_(True) for n in LAYERS}
        h = F.conv2d(torch.ones(1, 1, 4, 4, dtype=torch.float64), w["conv.0"], sd["conv.0.bias"], padding=1)
        h = F.batch_norm(
            h,
            sd["conv.1.running_mean"],
            sd["conv.1.running_var"],
            sd["conv.1.weight"],
            sd["conv.1.bias"],
            training=False,
            eps=1e-5,
        )
        h = F.max_pool2d(F.relu(h), 2).flatten(1)
        h = F.relu(F.linear(h, w["fc.0"], sd["fc.0.bias"]))
        R = F.linear(h, w["out"], sd["out.bias"]).sum()
        grads = torch.autograd.grad(R, [w[n] for n in LAYERS])
        scores = torch.cat([(g * w[n]).detach().abs().flatten() for g, n in zip(grads, LAYERS)]).tolist()
        alive = torch.cat([mask[n].flatten() for n in LAYERS]).tolist()
        target = max(keep, round(total * (keep / total) ** (k / iterations)))
        ranked = sorted((-s if invert else s, i) for i, (s, a) in enumerate(zip(scores, alive)) if a)
        removed = {i for _, i in ranked[: len(ranked) - target]}
        flat = [a and i not in removed for i, a in enumerate(alive)]
        start = 0
        for n in LAYERS:
            size = mask[n].numel()
            mask[n] = torch.tensor(flat[start : start + size]).view_as(mask[n])
            start += size
        counts.append(target)
        steps.append({n: m.clone() for n, m in mask.items()})
    return mask, counts, steps


@pytest.mark.parametrize("invert", [False, True])
def test_synflow_equals_the_hand_computation_iteration_by_iteration(invert, monkeypatch):
    model = tiny_net()
    keep = 10
    seen = []
    real_keep_top = scoring.keep_top

    def recording(scores, current, count, inverted=False, alive=None):
        assert alive is None or alive == sum(int(m.sum()) for m in current.values())  # the count SynFlow keeps
        out = real_keep_top(scores, current, count, inverted, alive)
        seen.append((count, {n: m.clone() for n, m in out.items()}))
        return out

    monkeypatch.setattr(synflow, "keep_top", recording)  # SynFlow's own choice of weights
    got = scoring.synflow_masks(model, LAYERS, (1, 4, 4), keep, invert=invert)
    expected, counts, steps = hand_synflow(model, keep, invert)
    assert [c for c, _ in seen] == counts and len(counts) == 100  # the schedule, after each iteration
    assert counts[0] == round(72 * (10 / 72) ** 0.01) and counts[-1] == 10
    for k, ((_, mine), theirs) in enumerate(zip(seen, steps), 1):
        assert all(torch.equal(mine[n], theirs[n]) for n in LAYERS), f"iteration {k}"
    assert all(torch.equal(got[n], expected[n]) for n in LAYERS)
    assert sum(int(m.sum()) for m in got.values()) == keep


def test_the_hand_synflow_tells_eval_mode_absolute_values_and_float64_apart():
    """The reference itself discriminates: other BatchNorm statistics (train mode uses the batch's) change its
    masks, and in float32 the flow overflows (so a scorer making one of these mistakes fails the test above)."""
    model = tiny_net()
    right, _, _ = hand_synflow(model, 10, False)

    neutral = tiny_net()
    with torch.no_grad():
        neutral.conv[1].running_mean.zero_()
        neutral.conv[1].running_var.fill_(1.0)
    neutral, _, _ = hand_synflow(neutral, 10, False)
    assert any(not torch.equal(right[n], neutral[n]) for n in LAYERS)  # the BatchNorm statistics matter
    x = torch.ones(1, 1, 4, 4)
    with torch.no_grad():
        flow32 = tiny_net().float().eval()
        for v in flow32.state_dict().values():
            v.abs_()
        assert math.isinf(float(flow32(x).sum()))  # float32 overflows: the scores would be inf / nan


def test_a_reinitialized_member_draws_from_the_initializers_distribution(split):
    """Glorot normal: std sqrt(2 / (fan_in + fan_out)); Lenet's fc.0 (784 x 300) has 235,200 draws, so the
    sample std lies within a few percent; each round's re-init is a new draw, never the ticket's init."""
    cfg = from_preset("lenet", dataset="mnist", iterations=10, eval_every=10, rounds=2)
    cohort = Cohort(cohort_members(cfg, [0], ["reinit"]), split)
    expected = math.sqrt(2 / (784 + 300))
    draws = []
    for r in (1, 2):
        w = cohort.planner.start_of(1, r)["fc.0.weight"]
        assert abs(float(w.std()) / expected - 1) < 0.03 and abs(float(w.mean())) < 0.05 * expected
        assert not torch.equal(w, cohort.inits[0]["fc.0.weight"])
        draws.append(w)
    assert not torch.equal(draws[0], draws[1])
    out = cohort.planner.start_of(1, 1)["out.weight"]  # 100 x 10: a looser check of the other layer's scale
    assert abs(float(out.std()) / math.sqrt(2 / 110) - 1) < 0.2


@pytest.mark.parametrize("method", ["snip", "grasp"])
def test_the_inversions_of_snip_and_grasp_keep_the_lowest_scores(method, split):
    """<method>-invert keeps exactly the lowest (signed, for GraSP) scores at the ticket's count; the method
    itself the highest; both from the same scores."""
    cfg = from_preset("lenet", dataset="mnist", iterations=10, eval_every=10, rounds=2)
    members = cohort_members(cfg, [0], [method], ["invert"])
    index = {m.label: i for i, m in enumerate(members)}
    assert set(index) == {"imp", "imp-invert", method, f"{method}-invert"}
    cohort = Cohort(members, split)
    rounds = list(cohort.run_results())
    (scores,) = [v for k, v in cohort.planner.scores.items() if k[0] == method]
    flat = torch.cat([scores[n].flatten() for n in scores])
    for r in (1, 2):
        kept = {
            label: torch.cat([masks(rounds[r][index[label]])[n].flatten() for n in scores])
            for label in (method, f"{method}-invert")
        }
        count = int(kept[method].sum())
        assert int(kept[f"{method}-invert"].sum()) == count
        assert float(flat[kept[method]].min()) >= float(flat[~kept[method]].max())
        assert float(flat[kept[f"{method}-invert"]].max()) <= float(flat[~kept[f"{method}-invert"]].min())
        assert torch.equal(kept[f"{method}-invert"], flat <= flat.sort().values[count - 1])  # the count lowest
