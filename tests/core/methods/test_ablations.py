"""The sanity-check ablations (Frankle et al. 2021) of the ticket and of every pruning-at-init method: the
mask shuffled within each layer (same per-layer counts), the same mask on a fresh init, the mask from inverted
scores; every member at the ticket's density every round, in both pruning modes. Plain PyTorch, no Ray."""

from __future__ import annotations

import pytest
import torch
from rounds_helpers import masks

from lth_ray.core.engine.cohort import Cohort
from lth_ray.core.engine.trajectory import ablated, cohort_members
from lth_ray.core.methods.member import check_trajectory
from lth_ray.core.options.resolve import from_preset
from lth_ray.core.pruning.masks import shuffle_within_layers
from lth_ray.core.spec.config import ConfigError


def rounds_of(members, split):
    """{member label: {round: RoundResult}}."""
    out = {m.label: {} for m in members}
    for results in Cohort(members, split).run_results():
        for i, res in results.items():
            out[members[i].label][res.record["round"]] = res
    return out


def counts(result) -> dict[str, int]:
    return {n: int(m.sum()) for n, m in masks(result).items()}


def test_shuffle_keeps_each_layers_count_and_moves_the_weights():
    g = torch.Generator().manual_seed(0)
    m = {"a": torch.rand(30, 40, generator=g) < 0.1, "b": torch.rand(10, 30, generator=g) < 0.5}
    s = shuffle_within_layers(m, torch.Generator().manual_seed(1))
    assert {n: int(v.sum()) for n, v in s.items()} == {n: int(v.sum()) for n, v in m.items()}
    assert not torch.equal(s["a"], m["a"]) and s["a"].shape == m["a"].shape


@pytest.mark.e2e
@pytest.mark.parametrize("pruning", ["layerwise", "global"])
def test_every_ablation_has_the_tickets_density_each_round(pruning, split):
    cfg = from_preset(
        "lenet", dataset="mnist", iterations=20, eval_every=10, rounds=2, pruning=pruning, rewind_iteration=10
    )
    members = cohort_members(
        cfg, [0], ["random-prune", "grasp", "synflow", "magnitude-init"], ["shuffle", "reinit", "invert"]
    )
    labels = [m.label for m in members]
    assert labels == [
        "imp",
        "random-prune",
        "grasp",
        "synflow",
        "magnitude-init",
        "imp-shuffle",
        "reinit",
        "imp-invert",
        "random-prune-shuffle",
        "random-prune-reinit",
        "grasp-shuffle",
        "grasp-reinit",
        "grasp-invert",
        "synflow-shuffle",
        "synflow-reinit",
        "synflow-invert",
        "magnitude-init-shuffle",
        "magnitude-init-reinit",
        "magnitude-init-invert",
    ]
    got = rounds_of(members, split)
    for r in (1, 2):
        ticket = got["imp"][r]
        for label, by_round in got.items():
            assert sum(counts(by_round[r]).values()) == sum(counts(ticket).values()), (label, r)
            assert by_round[r].record["sparsity"] == ticket.record["sparsity"]
            assert by_round[r].record["method"] == label
        for method in ("imp", "random-prune", "grasp", "synflow", "magnitude-init"):
            shuffled = got[f"{method}-shuffle"][r]
            assert counts(shuffled) == counts(got[method][r])  # the same count in every layer ...
            assert not torch.equal(masks(shuffled)["fc.0"], masks(got[method][r])["fc.0"])  # ... elsewhere
        for method in ("random-prune", "grasp", "synflow", "magnitude-init"):  # the method's mask, fresh init
            same = got[f"{method}-reinit"][r]
            assert all(torch.equal(masks(same)[n], v) for n, v in masks(got[method][r]).items())
            assert same.record["val_loss"] != got[method][r].record["val_loss"]
        # where each starts: the ticket's shuffle (and random pruning's) at the rewind point k, the rest at 0
        starts = {label: by_round[r].record["start_iteration"] for label, by_round in got.items()}
        assert {label for label, s in starts.items() if s == 10} == {
            "imp",
            "imp-shuffle",
            "imp-invert",
            "random-prune",
            "random-prune-shuffle",
        }
    assert sorted(label for label, by_round in got.items() if 0 in by_round) == ["imp", "imp-invert"]


def test_inversion_keeps_the_lowest_scores(split):
    """magnitude-init-invert keeps the smallest |w| at init; the ticket's inversion prunes, each round, the
    largest |w| of its own trained weights (its own dense round, equal to the ticket's)."""
    cfg = from_preset("lenet", dataset="mnist", iterations=20, eval_every=10, rounds=1)
    members = cohort_members(cfg, [0], ["magnitude-init"], ["invert"])
    cohort = Cohort(members, split)
    got = {}
    for results in cohort.run_results():
        for i, res in results.items():
            got.setdefault(members[i].label, {})[res.record["round"]] = res
    init = cohort.inits[0]
    kept = masks(got["magnitude-init-invert"][1])
    w = {n: init[f"{n}.weight"].abs() for n in kept}
    assert max(float(w[n][m].max()) for n, m in kept.items()) <= min(float(w[n][~m].min()) for n, m in kept.items())
    # its dense round is the ticket's, up to float32 rounding (a member's slot in the stacked model)
    assert got["imp-invert"][0].record["val_loss"] == pytest.approx(got["imp"][0].record["val_loss"], rel=1e-4)
    trained = got["imp"][0]  # the dense round both prune from: the inversion keeps the smallest 80% per layer
    from rounds_helpers import trained as dense

    t = dense(trained)
    inv, imp = masks(got["imp-invert"][1]), masks(got["imp"][1])
    for n in inv:
        a = t[f"{n}.weight"].abs()
        assert float(a[inv[n]].max()) <= float(a[~inv[n]].min())
        assert int(inv[n].sum()) == int(imp[n].sum())


def test_ablations_are_chosen_per_method_and_bad_ones_are_one_line_errors(tiny_mnist, capsys):
    assert ablated("imp", ["shuffle", "reinit", "invert"]) == [("imp", "shuffle"), ("reinit", ""), ("imp", "invert")]
    assert ablated("random-prune", ["shuffle", "invert"]) == [("random-prune", "shuffle")]
    assert ablated("reinit", ["shuffle"]) == []
    ticket = from_preset("lenet", rounds=2)
    assert [m.label for m in cohort_members(ticket, [0], ["reinit"], ["reinit"])] == ["imp", "reinit"]
    with pytest.raises(ConfigError, match="ablation='flip' is unknown; allowed: shuffle, reinit, invert"):
        ticket.replace(method="snip", ablation="flip")
    with pytest.raises(ConfigError, match="random pruning has no scores to invert"):
        check_trajectory(ticket.replace(method="random-prune", ablation="invert"))
    with pytest.raises(ConfigError, match="baseline 'reinit'"):
        check_trajectory(ticket.replace(ablation="reinit"))
    with pytest.raises(ConfigError, match="needs its ticket"):
        Cohort([ticket.replace(ablation="shuffle")], None)
    from lth_ray.cli.trajectory import main

    code = main(["--data-root", str(tiny_mnist), "--baselines", "snip", "--ablations", "shuffle,flip", "--rounds", "1"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "ablation 'flip' is unknown" in err
