"""What a ticket is made of, each quantity against a hand computation, with a wrong definition that fails it:
init variants and frozen pruned weights (Zhou et al. 2019, `train_lottery.py`), the supermask accuracy at a
round's start, the successive-round barrier (Paul et al. 2023), mask distance, Jaccard overlap and sign flips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from rounds_helpers import masks as mask_of
from rounds_helpers import trained

from lth_ray.core.engine.cohort import Cohort
from lth_ray.core.engine.trajectory import Trajectory, cohort_members
from lth_ray.core.engine.weights import build_net, initial_weights
from lth_ray.core.methods.init_variants import reshuffle, signed_constant, signed_reinit, signed_reshuffle
from lth_ray.core.options.resolve import from_preset
from lth_ray.core.pruning.dynamics import jaccard, mask_distance, sign_flips
from lth_ray.core.spec.config import ConfigError
from lth_ray.core.spec.streams import STREAM_INIT_VARIANT, generator

W = torch.tensor([[0.5, -0.25, 0.125], [-1.0, 0.375, -0.0625]])
M = torch.tensor([[True, False, True], [True, False, True]])


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def small(**kw):
    base = dict(plan_fc=(16,), iterations=40, eval_every=20, batch_size=20, rounds=2, precision="fp64")
    return from_preset("lenet", **{**base, **kw})


# ------------------------------------------------------------------ init variants, by hand
def test_signed_constant_is_the_sign_times_the_layers_population_std():
    std = float(np.std(W.numpy()))  # the authors' np.std: ddof 0
    assert torch.allclose(signed_constant(W, M, torch.Generator()), torch.sign(W) * std, rtol=0, atol=1e-12)
    assert not torch.allclose(torch.sign(W) * W.std(), torch.sign(W) * std)  # the unbiased std is another value


def test_reshuffle_permutes_the_kept_values_among_the_kept_positions():
    out = reshuffle(W, M, generator(0, STREAM_INIT_VARIANT, 1))
    perm = torch.randperm(4, generator=generator(0, STREAM_INIT_VARIANT, 1))
    kept = W[M]
    assert torch.equal(out[M], kept[perm]) and torch.equal(out[~M], W[~M])
    assert sorted(out[M].tolist()) == sorted(kept.tolist())  # a whole-layer shuffle would bring in pruned values


def test_the_signed_variants_keep_each_positions_sign():
    out = signed_reshuffle(W, M, generator(0, STREAM_INIT_VARIANT, 1))
    assert torch.equal(torch.sign(out), torch.sign(W))
    assert sorted(out[M].abs().tolist()) == sorted(W[M].abs().tolist())
    out = signed_reinit(W, M, generator(0, STREAM_INIT_VARIANT, 1))
    perm = torch.randperm(6, generator=generator(0, STREAM_INIT_VARIANT, 1))
    assert torch.equal(out, W.flatten()[perm].abs().view_as(W) * torch.sign(W))


def test_an_init_variant_starts_from_its_tickets_mask_on_the_transformed_rewind_point(split):
    """The engine's start of each variant's round 1: the ticket's mask, the init transformed layer by layer."""
    cfg = small(rounds=1)
    members = cohort_members(cfg, [0], ["signed-constant", "reshuffle"])
    cohort = Cohort(members, split)
    cohort.run_round()
    init = cohort.inits[0]
    ticket_masks, _ = cohort.planner.mask_and_start(0, 1, {})
    masks, start = cohort.planner.mask_and_start(1, 1, {0: ticket_masks})
    for n in ("fc.0", "out"):
        w = init[f"{n}.weight"]
        assert torch.equal(masks[n], ticket_masks[n])
        assert torch.allclose(start[f"{n}.weight"], torch.sign(w) * float(np.std(w.numpy())), rtol=0, atol=1e-12)
    assert torch.equal(start["fc.0.bias"], init["fc.0.bias"])  # biases keep the start's values
    _, shuffled = cohort.planner.mask_and_start(2, 1, {0: ticket_masks})
    w, m = init["fc.0.weight"], ticket_masks["fc.0"]
    assert sorted(shuffled["fc.0.weight"][m].tolist()) == sorted(w[m].tolist())
    assert not torch.equal(shuffled["fc.0.weight"][m], w[m])


# ------------------------------------------------------------------ frozen pruned weights
def frozen_reference(cfg, split, init: dict, masks: dict, r: int, frozen: bool = True) -> dict:
    """Zhou et al.'s FreezeDense by hand: the kernel is w * m + w_init * (1 - m) (w_init a constant), Adam at the
    constant rate over the round's batches (not `frozen`: w * m, the ticket's zeros)."""
    from lth_ray.core.engine.training import batch_indices
    from lth_ray.core.spec.streams import STREAM_DATA

    model = build_net(cfg, split.in_shape).double()
    model.load_state_dict(init)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    x, y = split.x_train.double(), split.y_train
    for it, idx in batch_indices(split, cfg.batch_size, [generator(cfg.seed, STREAM_DATA, r)], 0, "cpu"):
        if it == cfg.iterations:
            break
        opt.zero_grad()
        F.cross_entropy(model(x[idx[0]]), y[idx[0]]).backward()
        opt.step()
        with torch.no_grad():
            for n, m in masks.items():
                w = model.get_submodule(n).weight
                w.copy_(w * m + init[f"{n}.weight"] * ~m if frozen else w * m)
    return {k: v.detach() for k, v in model.state_dict().items()}


def test_frozen_pruned_weights_keep_their_start_values_and_train_like_zhous_frozen_layer(split):
    cfg = small(rounds=1, pruned_weights="frozen-init")
    t = Trajectory(cfg, split)
    t.run_round()
    result = t.run_round()
    masks, got = mask_of(result), t.cohort.last_trained[0]
    init = {k: v.double() for k, v in initial_weights(cfg, split.in_shape).items()}
    for n, m in masks.items():
        assert torch.equal(got[f"{n}.weight"][~m], init[f"{n}.weight"][~m])
    ref = frozen_reference(cfg, split, init, masks, 1)
    assert all(torch.allclose(got[k], ref[k], rtol=0, atol=1e-9) for k in ref)
    zero = frozen_reference(cfg, split, init, masks, 1, frozen=False)  # pruned weights at zero: another net
    assert not all(torch.allclose(trained(result)[k], zero[k], rtol=0, atol=1e-9) for k in ref)


def test_frozen_init_refuses_what_would_zero_its_pruned_weights():
    with pytest.raises(ConfigError, match=r"pruned_weights='frozen-init' is allowed only with"):
        small(pruned_weights="frozen-init", retrain="lr-rewind")
    with pytest.raises(ConfigError, match=r"pruned_weights='frozen-init' is allowed only with"):
        small(pruned_weights="frozen-init", successive=True)


# ------------------------------------------------------------------ supermask accuracy, successive rounds
def hand_eval(cfg, split, weights: dict, masks: dict) -> tuple[float, float]:
    """Test loss and accuracy of one net at `weights` with `masks` applied, by a plain forward pass."""
    model = build_net(cfg, split.in_shape).double()
    model.load_state_dict({k: v * masks[k[:-7]] if k[:-7] in masks else v for k, v in weights.items()})
    model.eval()
    with torch.no_grad():
        logits = model(split.x_test.double())
    return F.cross_entropy(logits, split.y_test).item(), (logits.argmax(1) == split.y_test).double().mean().item()


@pytest.fixture(scope="module")
def two_rounds(split):
    cfg = small(successive=True, instability_points=3)
    t = Trajectory(cfg, split)
    results, dense = {}, {}
    while not t.done:
        res = t.run_round()
        results[res.record["round"]], dense[res.record["round"]] = res, t.cohort.last_trained[0]
    return cfg, t, results, dense


def test_the_start_accuracy_is_the_masked_start_before_any_training(split, two_rounds):
    cfg, t, results, _ = two_rounds
    init = {k: v.double() for k, v in t.init.items()}
    for r in (0, 1, 2):
        rec = results[r].record
        loss, acc = hand_eval(cfg, split, init, mask_of(results[r]))
        assert rec["start_test_acc"] == pytest.approx(acc, abs=1e-12)
        assert rec["start_test_loss"] == pytest.approx(loss, abs=1e-9)
    wrong = hand_eval(cfg, split, init, mask_of(results[0]))  # the unmasked init: another number
    assert results[2].record["start_test_loss"] != pytest.approx(wrong[0], abs=1e-9)


def test_the_successive_barrier_is_round_r_minus_1_under_round_rs_mask_to_round_r(split, two_rounds):
    cfg, t, results, dense = two_rounds
    assert "successive" not in results[0].record
    for r in (1, 2):
        masks, path = mask_of(results[r]), results[r].record["successive"]
        hand = [
            1 - hand_eval(cfg, split, {k: torch.lerp(dense[r - 1][k], dense[r][k], a) for k in dense[r]}, masks)[1]
            for a in (0.0, 0.5, 1.0)
        ]
        assert path["test_error"] == pytest.approx(hand, abs=1e-12)
        assert path["error_barrier"] == pytest.approx(max(hand) - (hand[0] + hand[-1]) / 2, abs=1e-12)
        init = {k: v.double() for k, v in t.init.items()}  # from the round's start instead: another path
        start_end = 1 - hand_eval(cfg, split, init, masks)[1]
        assert path["test_error"][0] != pytest.approx(start_end, abs=1e-12)


# ------------------------------------------------------------------ mask dynamics
def test_mask_distance_jaccard_and_sign_flips_by_hand():
    a = {"x": torch.tensor([1, 1, 0, 0, 1], dtype=torch.bool), "y": torch.tensor([1, 0, 1], dtype=torch.bool)}
    b = {"x": torch.tensor([1, 0, 0, 1, 1], dtype=torch.bool), "y": torch.tensor([1, 0, 1], dtype=torch.bool)}
    assert mask_distance(a, b) == (2 / 8, {"x": 2 / 5, "y": 0.0})
    assert jaccard(a, b) == (4 / 6, {"x": 2 / 4, "y": 2 / 2})
    start = {"x.weight": torch.tensor([0.5, -0.2, 0.3, 0.1, -0.4]), "y.weight": torch.tensor([0.1, 0.2, -0.3])}
    end = {"x.weight": torch.tensor([-0.1, 0.2, 0.3, 0.0, -0.9]), "y.weight": torch.tensor([0.1, -0.2, 0.3])}
    # kept in a: x0 flips, x1 flips, x4 stays; y0 stays, y2 flips (y1 is pruned: its flip does not count)
    assert sign_flips(start, end, a) == (3 / 5, {"x": 2 / 3, "y": 1 / 2})


def test_each_round_records_its_mask_distance_and_sign_flips(two_rounds):
    _, t, results, dense = two_rounds
    init = t.init
    for r in (1, 2):
        rec, now = results[r].record, mask_of(results[r])
        before = mask_of(results[r - 1])
        differ = sum(int((before[n] != now[n]).sum()) for n in now)
        assert rec["mask_distance"] == differ / sum(m.numel() for m in now.values())
        flips = sum(
            int(((torch.sign(init[f"{n}.weight"]) != torch.sign(dense[r][f"{n}.weight"])) & m).sum())
            for n, m in now.items()
        )
        assert rec["sign_flip_share"] == flips / sum(int(m.sum()) for m in now.values())
    assert results[0].record["mask_distance"] is None  # no round before the dense one
    cost = results[2].record["cost"]
    assert cost["flops"] == sum(int(m.sum()) for m in mask_of(results[2]).values())  # an fc net: one MAC a weight
