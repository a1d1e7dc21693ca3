"""Pruning: the paper's sparsity ladder, exact masks on hand-made layers, rates per layer kind, packing."""

import pytest
import torch

from lth_ray.core.data.registry import in_shape_of
from lth_ray.core.models.plan import prunable_layers
from lth_ray.core.models.registry import build_model
from lth_ray.core.pruning.masks import (
    alive_after,
    density,
    global_magnitude_prune,
    layer_rates,
    magnitude_prune,
    pack_masks,
    random_prune,
    removal_count,
    score_prune_to,
    unpack_masks,
)
from lth_ray.core.spec.config import plan_config
from lth_ray.core.spec.presets import PRESETS

# docs/design/protocol.md: percent of weights remaining after k rounds
LADDER_K = (0, 3, 5, 7, 9, 11, 12, 14, 15, 18, 20)
LADDER = {
    "lenet": (100, 51.3, 32.9, 21.1, 13.5, 8.7, 7.0, 4.5, 3.6, 1.9, 1.2),
    "conv2": (100, 51.4, 33.0, 21.2, 13.7, 8.8, 7.1, 4.6, 3.7, 1.9, 1.3),
    "conv4": (100, 53.5, 35.6, 23.9, 16.2, 11.1, 9.2, 6.4, 5.4, 3.2, 2.3),
    "conv6": (100, 56.4, 38.7, 26.6, 18.4, 12.7, 10.6, 7.4, 6.2, 3.6, 2.5),
}


def preset_layers(arch):
    p = PRESETS[arch]
    model = build_model(plan_config(p.plan_conv, p.plan_fc), in_shape_of(p.dataset))
    kinds = prunable_layers(model)
    modules = dict(model.named_modules())
    weights = {n: modules[n].weight.detach() for n in kinds}
    return weights, layer_rates(kinds, p.prune_rate_conv, p.prune_rate_fc)


@pytest.mark.parametrize("arch", sorted(LADDER))
def test_sparsity_ladder_matches_the_paper(arch):
    weights, rates = preset_layers(arch)
    total = sum(w.numel() for w in weights.values())
    got = [
        round(100 * sum(alive_after(w.numel(), rates[n], k) for n, w in weights.items()) / total, 1) for k in LADDER_K
    ]
    assert got == list(LADDER[arch])


def test_pruning_rounds_follow_the_ladder_layer_by_layer():
    weights, rates = preset_layers("lenet")
    masks = {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}
    for k in range(1, 6):
        masks = magnitude_prune(weights, masks, rates)
        for n, m in masks.items():
            assert int(m.sum()) == alive_after(m.numel(), rates[n], k)
    assert round(100 * density(masks), 1) == 32.9


def test_output_layer_is_pruned_at_half_the_fc_rate():
    rates = layer_rates({"conv.0": "conv", "fc.0": "fc", "out": "out"}, 0.1, 0.2)
    assert rates == {"conv.0": 0.1, "fc.0": 0.2, "out": 0.1}


def test_exact_mask_on_a_hand_made_layer():
    w = {"fc.0": torch.tensor([[0.5, -0.1, 0.3], [0.2, -0.9, 0.05]])}
    m = {"fc.0": torch.ones(2, 3, dtype=torch.bool)}
    new = magnitude_prune(w, m, {"fc.0": 0.5})  # removes 3 of 6: 0.05, -0.1, 0.2
    assert new["fc.0"].tolist() == [[True, False, True], [False, True, False]]
    again = magnitude_prune(w, new, {"fc.0": 0.5})  # 3 alive -> removes 2 (1.5 rounds half up): 0.3, 0.5
    assert again["fc.0"].tolist() == [[False, False, False], [False, True, False]]


def test_ties_are_broken_by_index_and_pruned_weights_are_never_chosen_again():
    w = {"l": torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0])}
    m = {"l": torch.tensor([True, True, True, True, False])}
    new = magnitude_prune(w, m, {"l": 0.5})
    assert new["l"].tolist() == [False, False, True, True, False]


def test_removal_count_rounds_half_up():
    assert [removal_count(a, 0.2) for a in (1, 2, 3, 7, 8, 10)] == [0, 0, 1, 1, 2, 2]
    assert removal_count(5, 0.1) == 1  # 0.5 rounds up


def test_global_pruning_compares_across_layers():
    w = {"a": torch.tensor([0.1, 0.2, 0.9]), "b": torch.tensor([0.3, 0.4, 0.5, 0.6])}
    m = {k: torch.ones_like(v, dtype=torch.bool) for k, v in w.items()}
    new = global_magnitude_prune(w, m, rate=3 / 7)
    assert new["a"].tolist() == [False, False, True]
    assert new["b"].tolist() == [False, True, True, True]


def test_one_shot_keeps_the_largest_weights_per_layer():
    w = {"l": torch.tensor([0.4, -0.8, 0.1, 0.3])}
    m = {"l": torch.ones(4, dtype=torch.bool)}
    scores = {"l": w["l"].abs()}  # large_final, the one-shot ticket's default criterion
    assert score_prune_to(scores, m, {"l": 2})["l"].tolist() == [True, True, False, False]


def test_random_pruning_removes_the_same_counts_nested_and_seeded():
    weights, rates = preset_layers("lenet")
    masks = {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}
    r1 = random_prune(masks, rates, torch.Generator().manual_seed(1))
    r2 = random_prune(r1, rates, torch.Generator().manual_seed(2))
    for n in masks:
        assert int(r2[n].sum()) == alive_after(masks[n].numel(), rates[n], 2)
        assert not (r2[n] & ~r1[n]).any()  # nested: nothing comes back to life
    again = random_prune(masks, rates, torch.Generator().manual_seed(1))
    assert all(torch.equal(again[n], r1[n]) for n in masks)
    magnitude = magnitude_prune(weights, masks, rates)
    assert not torch.equal(magnitude["fc.0"], r1["fc.0"])


def test_packed_masks_round_trip_at_one_bit_per_weight():
    g = torch.Generator().manual_seed(0)
    masks = {"conv.0": torch.rand(64, 3, 3, 3, generator=g) > 0.5, "out": torch.rand(10, 7, generator=g) > 0.3}
    packed = pack_masks(masks)
    assert packed["conv.0"]["bits"].numel() == (64 * 27 + 7) // 8
    back = unpack_masks(packed)
    assert all(torch.equal(back[n], masks[n]) for n in masks)
