"""The IMP trajectory without Ray: masks stay zero, rewinding, reproducibility, resume, baselines, real data."""

import json
import subprocess
import sys

import pytest
import torch
from conftest import FASHION_MNIST
from rounds_helpers import early_stop, masks, records, run_all, trained

from lth_ray.core.data.loading import load_split
from lth_ray.core.engine.cohort import Cohort
from lth_ray.core.engine.evaluation import early_stop_index
from lth_ray.core.engine.records import METRICS
from lth_ray.core.engine.trajectory import Trajectory, cohort_members
from lth_ray.core.options.resolve import from_preset
from lth_ray.core.pruning.masks import alive_after, unpack_masks
from lth_ray.core.spec.config import ConfigError
from lth_ray.core.store.resume import load_state, save_state

SMALL = dict(iterations=120, eval_every=40, rounds=2)


@pytest.fixture(scope="module")
def split(tiny_mnist):
    return load_split("mnist", str(tiny_mnist))


def small(**kw):
    return from_preset("lenet", dataset="mnist", **{**SMALL, **kw})


def histories(records):
    """Everything a record holds except wall-clock time."""
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def test_round_records_have_the_protocol_shape(split):
    t = Trajectory(small(), split)
    records = t.run()
    assert [r["round"] for r in records] == [0, 1, 2]
    assert [round(r["sparsity"], 4) for r in records] == [1.0, 0.8004, 0.6406]
    for r in records:
        assert r["iterations"] == [40, 80, 120]
        assert all(len(r[m]) == 3 for m in METRICS)
        es = early_stop_index(r["val_loss"])
        assert r["early_stop_index"] == es and r["early_stop_iteration"] == (es + 1) * 40
        assert r["test_acc_at_early_stop"] == r["test_acc"][es] and r["final_test_acc"] == r["test_acc"][-1]
        assert set(r["layer_sparsity"]) == {"fc.0", "fc.2", "out"}
    assert records[0]["final_test_acc"] > 0.5  # the tiny data set is learnable


def test_pruned_weights_stay_exactly_zero_through_training(split):
    t = Trajectory(small(rounds=2), split)
    t.run()
    m2 = unpack_masks(t.state["masks"])
    live = t.cohort.last_trained[0]  # the dense weights as round 2 left them, not the compact copy
    for name, m in m2.items():
        w = live[f"{name}.weight"]
        assert (w[~m] == 0).all()
        assert (w[m] != 0).all()
        assert int(m.sum()) == alive_after(m.numel(), 0.1 if name == "out" else 0.2, 2)


def test_rewinding_restores_every_parameter_to_the_rewind_point(split):
    t = Trajectory(small(rounds=1), split)
    dense = t.run_round()
    _, start = t._mask_and_start(1)
    init = t.init
    assert t.rewind is init
    for k, v in start.items():  # weights and biases, not just weights
        assert torch.equal(v, init[k])
    assert not torch.equal(trained(dense)["fc.0.bias"], init["fc.0.bias"])
    pruned = t.run_round()
    # the masks applied in round 1 were chosen by magnitude on the weights trained in round 0
    w = trained(dense)["fc.0.weight"].abs()
    m = masks(pruned)["fc.0"]
    assert w[m].min() >= w[~m].max()


def test_late_rewinding_captures_the_weights_at_iteration_k(split):
    t = Trajectory(small(rewind_iteration=40, rounds=1), split)
    results = run_all(t)
    assert torch.equal(results[0].rewind["fc.0.weight"], t.state["rewind"]["fc.0.weight"])  # written once
    assert results[1].rewind is None
    reference = Trajectory(small(iterations=40, eval_every=40, rounds=0), split)
    (dense,) = run_all(reference).values()
    for k, v in trained(dense).items():
        assert torch.equal(t.state["rewind"][k], v)
    assert not torch.equal(t.state["rewind"]["fc.0.weight"], t.init["fc.0.weight"])


def test_same_seed_same_histories_other_seed_other_run(split):
    a = Trajectory(small(seed=1, rounds=1), split).run()
    b = Trajectory(small(seed=1, rounds=1), split).run()
    c = Trajectory(small(seed=2, rounds=1), split)
    assert histories(a) == histories(b)
    assert histories(c.run()) != histories(a)


def test_resume_from_saved_state_equals_uninterrupted(split, tmp_path):
    whole = run_all(Trajectory(small(rounds=3), split))
    first = Trajectory(small(rounds=3), split)
    done = [first.run_round(), first.run_round()]
    save_state(first.state, tmp_path / "state.pt")
    resumed = Trajectory(small(rounds=3), split, load_state(tmp_path / "state.pt"))
    assert resumed.next_round == 2
    rest = run_all(resumed)
    assert histories([d.record for d in done] + records(rest)) == histories(records(whole))
    for k, v in trained(whole[3]).items():
        assert torch.equal(trained(rest[3])[k], v)
    for r in (2, 3):
        assert all(torch.equal(masks(rest[r])[n], masks(whole[r])[n]) for n in masks(whole[r]))


def test_state_of_another_config_is_refused(split):
    t = Trajectory(small(rounds=1), split)
    t.run_round()
    with pytest.raises(ValueError, match="another config"):
        Trajectory(small(rounds=1, seed=9), split, t.state)


def test_early_stop_weights_are_those_of_the_lowest_validation_loss(split):
    t = Trajectory(small(rounds=0, iterations=200, eval_every=40), split)
    result = t.run_round()
    es_state = early_stop(result)
    cut = Trajectory(small(rounds=0, iterations=result.record["early_stop_iteration"], eval_every=40), split)
    for k, v in trained(cut.run_round()).items():
        assert torch.equal(es_state[k], v)


def test_one_shot_prunes_the_dense_net_straight_to_each_rounds_density(split):
    t = Trajectory(small(method="one-shot", rounds=2), split)
    results = run_all(t)
    dense = trained(results[0])["fc.0.weight"].abs()
    for r in (1, 2):
        m = masks(results[r])["fc.0"]
        assert int(m.sum()) == alive_after(m.numel(), 0.2, r)
        assert dense[m].min() >= dense[~m].max()


def test_random_pruning_baseline_starts_at_round_one_with_the_ladder_counts(split):
    results = run_all(Trajectory(small(method="random-prune", rounds=2), split))
    assert sorted(results) == [1, 2]
    ticket = run_all(Trajectory(small(rounds=2), split))
    assert [results[r].record["sparsity"] for r in (1, 2)] == [ticket[r].record["sparsity"] for r in (1, 2)]
    assert not torch.equal(masks(results[1])["fc.0"], masks(ticket[1])["fc.0"])


def test_reinit_rides_with_its_ticket_and_takes_its_masks_on_a_fresh_init(split):
    """The re-init member of round r takes the ticket's round-r mask from memory (no store, no waiting)."""
    cohort = Cohort(cohort_members(small(rounds=2), [0], ["reinit"]), split)
    rounds = list(cohort.run_results())
    assert [sorted(r) for r in rounds] == [[0], [0, 1], [0, 1]]  # the baseline has no dense round
    for r in (1, 2):
        ticket, reinit = rounds[r][0], rounds[r][1]
        assert reinit.record["method"] == "reinit"
        assert all(torch.equal(masks(reinit)[n], masks(ticket)[n]) for n in masks(ticket))
    _, start = cohort.planner.mask_and_start(1, 1, {0: masks(rounds[1][0])})
    assert not torch.equal(start["fc.0.weight"], cohort.inits[0]["fc.0.weight"])
    ticket_alone = run_all(Trajectory(small(rounds=2), split))  # riding changes nothing for the ticket ...
    for r in range(3):  # ... but the float rounding of the batched kernels
        assert torch.equal(masks(ticket_alone[r])["fc.0"], masks(rounds[r][0])["fc.0"])
        assert rounds[r][0].record["val_loss"] == pytest.approx(ticket_alone[r].record["val_loss"], abs=1e-5)


def test_reinit_without_its_ticket_is_a_one_line_error(split):
    with pytest.raises(ConfigError, match="needs its ticket"):
        Trajectory(small(method="reinit"), split)


def test_global_pruning_reaches_the_global_density(split):
    t = Trajectory(small(pruning="global", rounds=2), split)
    records = t.run()
    assert abs(records[2]["sparsity"] - 0.64) < 1e-4
    layers = records[2]["layer_sparsity"]
    assert len({round(v, 3) for v in layers.values()}) > 1  # layers end at different densities


@pytest.mark.e2e
def test_cli_prints_one_json_line_per_round_and_resumes(tiny_mnist, tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "lth_ray.cli",
        "trajectory",
        "--preset",
        "lenet",
        "--dataset",
        "mnist",
        "--data-root",
        str(tiny_mnist),
        "--iterations",
        "60",
        "--eval-every",
        "20",
        "--threads",
        "1",
    ]
    out = subprocess.run(
        cmd + ["--rounds", "1", "--save-state", str(tmp_path / "s.pt")], capture_output=True, text=True, check=True
    )
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    assert [x["round"] for x in lines] == [0, 1] and lines[1]["sparsity"] == pytest.approx(0.800376, abs=1e-6)
    more = subprocess.run(cmd + ["--rounds", "2", "--resume", str(tmp_path / "s.pt")], capture_output=True, text=True)
    assert more.returncode == 2 and "another config" in more.stderr  # rounds differ: a different trajectory


@pytest.mark.e2e
@pytest.mark.skipif(not FASHION_MNIST.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_lenet_on_real_fashion_mnist_reaches_80_percent_dense(tmp_path, monkeypatch):
    monkeypatch.setenv("LTH_RAY_DATA", str(tmp_path))
    split = load_split("fashion-mnist")
    cfg = from_preset("lenet", dataset="fashion-mnist", iterations=1000, eval_every=100, rounds=1)
    records = Trajectory(cfg, split).run()
    assert records[0]["test_acc_at_early_stop"] >= 0.80
    assert records[1]["final_test_acc"] >= 0.80 and round(records[1]["sparsity"], 4) == 0.8004
