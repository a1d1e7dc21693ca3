"""Instability (linear mode connectivity, Frankle et al. 2020): barriers on the path between two copies, masks
all along it, the copy's own reproducible data order, export rows that survive a resume, bad values."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from lth_ray.cli.trajectory import main
from lth_ray.core.engine.evaluation import evaluate
from lth_ray.core.engine.instability import barrier, evaluate_path, path_weights
from lth_ray.core.engine.trajectory import Trajectory
from lth_ray.core.engine.weights import cpu_state
from lth_ray.core.models.registry import build_model
from lth_ray.core.options.resolve import from_preset
from lth_ray.core.spec.config import ConfigError, plan_config
from lth_ray.core.spec.streams import STREAM_COPY_DATA
from lth_ray.core.store.resume import resume_state
from lth_ray.core.store.rounds import RoundStore
from lth_ray.results.experiment import StoredRounds, TrialResult
from lth_ray.results.export import write_export


def small(**kw):
    return from_preset(
        "lenet",
        dataset="mnist",
        **{**dict(iterations=40, eval_every=20, rounds=2, instability=True, instability_points=5), **kw},
    )


def test_two_identical_copies_have_a_barrier_of_exactly_zero(split):
    model = build_model(plan_config((), (300, 100)), split.in_shape, generator=torch.Generator().manual_seed(1))
    w = cpu_state(model)
    ones = {n: torch.ones_like(w[f"{n}.weight"], dtype=torch.bool) for n in ("fc.0", "fc.2", "out")}
    path = evaluate_path(model, w, {k: v.clone() for k, v in w.items()}, ones, split, 7, evaluate)
    assert path["error_barrier"] == 0.0 and path["loss_barrier"] == 0.0
    assert len(set(path["test_error"])) == 1


def test_a_hand_built_pair_gives_the_known_barrier(split):
    """theta_2 = -theta_1 (biases zero): the path's midpoint is the zero net, whose logits tie, so it predicts
    class 0 everywhere; its error is known without training, and so is the barrier."""
    model = build_model(
        plan_config((), ()), split.in_shape, generator=torch.Generator().manual_seed(2)
    )  # out layer only
    a = {k: v if k.endswith("weight") else torch.zeros_like(v) for k, v in cpu_state(model).items()}
    b = {k: -v for k, v in a.items()}
    ones = {"out": torch.ones_like(a["out.weight"], dtype=torch.bool)}
    path = evaluate_path(model, a, b, ones, split, 3, evaluate)  # alphas 0, 0.5, 1
    middle = 1.0 - float((split.y_test == 0).float().mean())
    ends = []
    for w in (a, b):
        model.load_state_dict(w)
        ends.append(1.0 - float(evaluate(model, split.x_test, split.y_test)[1]))
    assert path["test_error"] == pytest.approx([ends[0], middle, ends[1]], abs=1e-6)
    assert path["error_barrier"] == pytest.approx(max(ends + [middle]) - sum(ends) / 2, abs=1e-6)
    assert barrier([0.1, 0.5, 0.3]) == pytest.approx(0.3)


def test_masks_hold_all_along_the_path():
    g = torch.Generator().manual_seed(3)
    a, b = {"fc.0.weight": torch.randn(4, 5, generator=g)}, {"fc.0.weight": torch.randn(4, 5, generator=g)}
    mask = torch.rand(4, 5, generator=g) > 0.5
    for alpha in np.linspace(0, 1, 11):
        w = path_weights(a, b, float(alpha), {"fc.0": mask})["fc.0.weight"]
        assert (w[~mask] == 0).all() and torch.allclose(
            w[mask], ((1 - alpha) * a["fc.0.weight"] + alpha * b["fc.0.weight"])[mask]
        )


def test_the_copy_has_its_own_reproducible_data_order(split):
    t = Trajectory(small(), split)
    ticket = [b for _, b in zip(range(20), t._batches(1, 0))]
    copy = [b for _, b in zip(range(20), t._batches(1, 0, STREAM_COPY_DATA))]
    again = [b for _, b in zip(range(20), t._batches(1, 0, STREAM_COPY_DATA))]
    assert not all(torch.equal(x, y) for x, y in zip(ticket, copy))
    assert all(torch.equal(x, y) for x, y in zip(copy, again))


def test_every_round_records_its_path_and_the_ticket_is_unchanged(split):
    plain = Trajectory(small(instability=False), split).run()
    measured = Trajectory(small(), split).run()
    for p, m in zip(plain, measured):  # the copy, a member of the round, never touches the ticket's numbers
        assert (p["sparsity"], p["layer_sparsity"], p["iterations"]) == (
            m["sparsity"],
            m["layer_sparsity"],
            m["iterations"],
        )
        for key in ("train_loss", "val_loss", "val_acc", "test_loss", "test_acc"):  # the batched kernels'
            assert m[key] == pytest.approx(p[key], abs=1e-5)  # rounding only
        inst = m["instability"]
        assert inst["alphas"] == [0.0, 0.25, 0.5, 0.75, 1.0] and len(inst["test_error"]) == 5
        assert inst["test_error"][0] == pytest.approx(1 - m["final_test_acc"], abs=1e-6)  # theta_1 is the ticket
        assert inst["error_barrier"] >= 0
    only = Trajectory(small(instability_rounds=(1,)), split).run()
    assert ["instability" in r for r in only] == [False, True, False]


def test_instability_rows_survive_a_resume(split, tmp_path):
    cfg = small()
    store = RoundStore.at(str(tmp_path / "t" / "rounds"))
    t = Trajectory(cfg, split)
    for _ in range(2):
        store.write_round(t.run_round())
    (tmp_path / "t" / "rounds" / "round_001" / "record.json").unlink()  # round 1 lost: recomputed
    resumed = Trajectory(cfg, split, resume_state(cfg, store, t.state))
    for result in resumed.run_results():
        store.write_round(result)
    out = tmp_path / "export"
    out.mkdir()
    manifest = write_export(
        [TrialResult("t_00000", "TERMINATED", str(tmp_path / "t"), cfg, StoredRounds(store))], str(out), "/x"
    )
    assert "instability.parquet" in manifest["files"] and "interpolation.parquet" in manifest["files"]
    inst = pq.read_table(out / "instability.parquet").to_pandas()
    assert sorted(inst["round"]) == [0, 1, 2] and (inst["points"] == 5).all()
    assert len(pq.read_table(out / "interpolation.parquet").to_pandas()) == 3 * 5
    assert set(inst.columns) >= {
        "trajectory",
        "seed",
        "rewind_iteration",
        "error_barrier",
        "loss_barrier",
        "error_start",
        "error_end",
    }


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--instability", "--instability-points", "1"], "instability_points=1"),
        (
            ["--instability", "--rounds", "2", "--instability-rounds", "3"],
            "instability round 3 is outside the trajectory",
        ),
        (["--instability", "--instability-rounds", "x"], "--instability-rounds='x'"),
        (["--instability", "--method", "random-prune"], "measured on tickets"),
    ],
)
def test_bad_instability_values_are_one_error_line(argv, needle, tiny_mnist, capsys):
    code = main(["--dataset", "mnist", "--data-root", str(tiny_mnist), *argv])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and needle in err


def test_sweep_measures_tickets_only():
    from lth_ray.distributed.sweep import build_parser, spec_from_args
    from sweeps.lenet_mnist import DEFAULTS

    a = build_parser(DEFAULTS).parse_args(
        [
            "--storage",
            "/tmp/x",
            "--name",
            "n",
            "--instability",
            "--baselines",
            "reinit,random-prune",
            "--rewind-iteration",
            "0,500",
            "--instability-rounds",
            "0,3",
            "--instability-points",
            "11",
        ]
    )
    spec = spec_from_args(a, DEFAULTS)
    for t in spec.trajectories:
        assert t.instability == (t.method == "imp")
        if t.instability:
            assert t.instability_rounds == (0, 3) and t.instability_points == 11
    assert {t.rewind_iteration for t in spec.trajectories} == {0, 500}
    with pytest.raises(ConfigError, match="instability round 30"):
        small(instability_rounds=(30,))


@pytest.mark.parametrize("k", [0, 20])
def test_both_ends_of_every_pair_start_from_the_right_weights(k, split, monkeypatch):
    """Frankle et al. 2020: the pair of round r starts from the weights the round rewinds to, at iteration k.
    The dense round's pair starts at W_k (the dense net at iteration k, k > 0), not at the initialization: the
    ticket's round 0 runs 0 -> T through W_k, its copy from W_k at k; rounds >= 1 both from the masked W_k."""
    from lth_ray.core.engine.training import Lockstep

    trained = []
    real = Lockstep.train

    def spy(self, r, parts):
        real(self, r, parts)
        trained.extend((r, p.stream, p.start_iteration, {n: v.clone() for n, v in p.start.items()}) for p in parts)

    monkeypatch.setattr(Lockstep, "train", spy)
    cfg = small(rewind_iteration=k, iterations=60, eval_every=20, rounds=1)
    t = Trajectory(cfg, split)
    results = list(t.run_results())
    w_k = t.rewind  # the dense trajectory's weights at iteration k (the init when k = 0)
    init = t.init
    for r in (0, 1):
        (ticket,) = [x for x in trained if x[0] == r and x[1] != STREAM_COPY_DATA]
        (copy,) = [x for x in trained if x[0] == r and x[1] == STREAM_COPY_DATA]
        ticket_from, ticket_at = (init, 0) if r == 0 else (w_k, k)  # round 0's ticket passes through W_k at k
        assert ticket[2] == ticket_at and copy[2] == k
        assert all(torch.equal(ticket[3][n], ticket_from[n]) for n in init)
        assert all(torch.equal(copy[3][n], w_k[n]) for n in init), f"round {r}: the copy does not start at W_k"
    if k:
        assert not torch.equal(w_k["fc.0.weight"], init["fc.0.weight"])
        # the dense pair's end theta_1 is the ticket's round 0; theta_2 trained k -> T from W_k
        assert results[0].record["instability"]["test_error"][0] == pytest.approx(
            1 - results[0].record["final_test_acc"], abs=1e-6
        )


def test_the_dense_rounds_barrier_depends_on_the_rewind_point(split):
    """Round 0's pair differs with k (it starts at W_k), so its barrier does too; the ticket's own round 0 does
    not depend on k (it trains 0 -> T either way; float32 rounding only, as its company in the batch differs)."""
    runs = {
        k: Trajectory(small(rewind_iteration=k, iterations=60, eval_every=20, rounds=0), split).run()[0]
        for k in (0, 20)
    }
    assert runs[0]["test_loss"] == pytest.approx(runs[20]["test_loss"], abs=1e-5)
    paths = [np.asarray(runs[k]["instability"]["test_loss"]) for k in (0, 20)]
    assert np.abs(paths[0] - paths[1]).max() > 1e-3
