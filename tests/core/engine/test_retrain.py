"""Retraining modes (Renda, Frankle & Carbin 2020): weight rewinding, learning-rate rewinding and fine-tuning.

Each mode's round >= 1 is checked against a plain PyTorch loop in fp64 over the member's own batches, and each
reference is shown to reject a wrong definition (fine-tuning at the schedule's rate, lr-rewinding from the
init, ...), so the check has teeth. Then: cohorts that mix rates, a resume in the middle, keys and errors.
"""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from rounds_helpers import masks as mask_of
from rounds_helpers import run_all, trained

from lth_ray.core.engine.cohort import Cohort
from lth_ray.core.engine.training import batch_indices
from lth_ray.core.engine.trajectory import Trajectory
from lth_ray.core.engine.weights import build_net, initial_weights
from lth_ray.core.methods.member import round_start
from lth_ray.core.options.resolve import from_preset
from lth_ray.core.spec.config import ConfigError, TrajectoryConfig
from lth_ray.core.spec.streams import STREAM_DATA, generator
from lth_ray.core.spec.training import learning_rate_at
from lth_ray.core.store.resume import resume_cohort
from lth_ray.core.store.rounds import RoundStore

# SGD with momentum, a warmup and two milestones: the schedule's position matters, and its final rate is not its
# peak, so every mode's definition shows in the numbers.
SGD = dict(optimizer="sgd", momentum=0.9, learning_rate=0.05, milestones=(30, 50), gamma=0.1, warmup=10)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def small(**kw) -> TrajectoryConfig:
    base = dict(plan_fc=(16,), iterations=60, eval_every=20, batch_size=20, rounds=1, precision="fp64")
    return from_preset("lenet", **{**base, **kw})


def reference(cfg, split, start: dict, masks: dict, first: int, r: int, rate) -> dict:
    """Round r by hand: `start` masked, fresh SGD, the round's batches of iterations first+1..T, the rate
    `rate(it)` before each update, the mask re-applied after it."""
    x, y = split.x_train.double(), split.y_train
    model = build_net(cfg, split.in_shape).double()
    model.load_state_dict(start)
    weights = {n: model.get_submodule(n).weight for n in masks}
    with torch.no_grad():
        for n, w in weights.items():
            w.mul_(masks[n].double())
    opt = torch.optim.SGD(model.parameters(), lr=cfg.learning_rate, momentum=cfg.momentum)
    for it, idx in batch_indices(split, cfg.batch_size, [generator(cfg.seed, STREAM_DATA, r)], first, "cpu"):
        if it == cfg.iterations:
            break
        for g in opt.param_groups:
            g["lr"] = rate(it)
        opt.zero_grad()
        F.cross_entropy(model(x[idx[0]]), y[idx[0]]).backward()
        opt.step()
        with torch.no_grad():
            for n, w in weights.items():
                w.mul_(masks[n].double())
    return {k: v.detach() for k, v in model.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return all(torch.allclose(a[k], b[k], rtol=0, atol=1e-9) for k in a)


@pytest.mark.parametrize("mode,length", [("weight-rewind", 0), ("lr-rewind", 0), ("lr-rewind", 20), ("fine-tune", 0)])
def test_each_mode_equals_a_plain_pytorch_loop_and_a_wrong_definition_does_not(mode, length, split):
    cfg = small(**SGD, rewind_iteration=20, retrain=mode, retrain_iterations=length)
    results = run_all(Trajectory(cfg, split))
    masks = mask_of(results[1])
    init = {k: v.double() for k, v in initial_weights(cfg, split.in_shape).items()}
    rewind = {k: v.double() for k, v in results[0].rewind.items()}
    dense = trained(results[0])
    t = length or 60 - 20
    schedule = lambda it: learning_rate_at(cfg, it)  # noqa: E731
    final = lambda it: learning_rate_at(cfg, 59)  # noqa: E731  # 0.05 x 0.1^2
    right = {
        "weight-rewind": (rewind, 20, schedule),
        "lr-rewind": (dense, 60 - t, schedule),
        "fine-tune": (dense, 60 - t, final),
    }[mode]
    wrong = {  # what a careless reading would do instead
        "weight-rewind": [(dense, 20, schedule), (rewind, 20, final)],
        "lr-rewind": [(rewind, 60 - t, schedule), (init, 60 - t, schedule), (dense, 60 - t, final)],
        "fine-tune": [(dense, 60 - t, schedule), (dense, 60 - t, lambda it: cfg.learning_rate), (rewind, 20, final)],
    }[mode]
    got = trained(results[1])
    assert same(got, reference(cfg, split, right[0], masks, right[1], 1, right[2]))
    for start, first, rate in wrong:
        assert not same(got, reference(cfg, split, start, masks, first, 1, rate))
    record = results[1].record
    assert record["start_iteration"] == right[1] == round_start(cfg, 1)
    assert record["iterations"] == list(range(right[1] + 20, 61, 20)) and record["steps"] == 60 - right[1]
    assert results[0].record["start_iteration"] == 0  # round 0 is the dense round in every mode


def test_one_shot_lr_rewinding_goes_on_from_the_dense_rounds_weights(split):
    """One-shot prunes the dense round's trained weights every round: round 2 continues from those."""
    cfg = small(**SGD, method="one-shot", rounds=2, retrain="lr-rewind")
    results = run_all(Trajectory(cfg, split))
    masks = mask_of(results[2])
    ref = reference(cfg, split, trained(results[0]), masks, 0, 2, lambda it: learning_rate_at(cfg, it))
    assert same(trained(results[2]), ref)
    assert not same(trained(results[2]), reference(cfg, split, trained(results[1]), masks, 0, 2, lambda it: 0.05))


def test_under_a_constant_rate_fine_tuning_is_lr_rewinding(split):
    """Adam at the thesis' constant rate: the final rate is the rate, so the two modes train alike, bitwise."""
    a, b = (run_all(Trajectory(small(rounds=1, retrain=m), split)) for m in ("lr-rewind", "fine-tune"))
    assert all(torch.equal(trained(a[1])[k], v) for k, v in trained(b[1]).items())


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_fine_tuned_ticket_and_a_scheduled_baseline_share_a_cohort(optimizer, split):
    """Same start (k = 0, t = T), different rates: each member equals its lone run in fp64."""
    extra = dict(SGD) if optimizer == "sgd" else dict(milestones=(30, 50), warmup=10)
    ticket = small(**extra, retrain="fine-tune")
    baseline = ticket.replace(method="random-prune")
    cohort = Cohort([ticket, baseline], split)
    together = [cohort.run_round(), cohort.run_round()]
    for i, cfg in enumerate([ticket, baseline]):
        alone = run_all(Trajectory(cfg, split))
        assert same(trained(together[-1][i]), trained(alone[1]))


def test_a_resume_in_the_middle_is_bitwise(split, tmp_path):
    cfg = small(**SGD, rounds=3, retrain="lr-rewind", retrain_iterations=40)
    whole = run_all(Trajectory(cfg, split))
    store = RoundStore.at(str(tmp_path / cfg.key))
    first = Cohort([cfg], split)
    for _ in range(2):
        store.write_round(first.run_round()[0])
    for states in ([first.state["members"][0]], resume_cohort([cfg], [store], None)):  # checkpoint, round files
        resumed = Cohort([cfg], split, states)
        rest = {res[0].record["round"]: res[0] for res in resumed.run_results()}
        assert sorted(rest) == [2, 3]
        for r, res in rest.items():
            assert res.record["val_loss"] == whole[r].record["val_loss"]
            assert all(torch.equal(v, trained(whole[r])[k]) for k, v in trained(res).items())


def test_keys_and_records_change_only_where_a_mode_is_set():
    base = TrajectoryConfig()
    assert "retrain" not in base.to_dict() and "retrain_iterations" not in base.to_dict()
    assert base.key == "lenet-mnist-imp-layerwise-fc0.2-s0"
    lr = base.replace(retrain="lr-rewind")
    ft = base.replace(retrain="fine-tune", retrain_iterations=20_000)
    assert lr.key == "lenet-mnist-imp-layerwise-fc0.2-lrrewind-s0"
    assert ft.key == "lenet-mnist-imp-layerwise-fc0.2-finetune-rt20000-s0"
    for c in (lr, ft):
        assert TrajectoryConfig.from_dict(c.to_dict()) == c


@pytest.mark.parametrize(
    "changes,needle",
    [
        (dict(retrain="rewind"), "retrain='rewind' is unknown; allowed: weight-rewind, lr-rewind, fine-tune"),
        (dict(retrain="lr-rewind", retrain_iterations=50), "retrain_iterations=50 is not allowed"),
        (dict(retrain="fine-tune", retrain_iterations=200), "retrain_iterations=200 is not allowed"),
        (dict(retrain_iterations=40), "not allowed with retrain='weight-rewind'"),
    ],
)
def test_bad_modes_and_lengths_are_one_line_errors(changes, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace(")", r"\)")) as err:
        small(**changes)
    assert "\n" not in str(err.value)


def test_modes_are_export_columns_and_the_report_compares_them(split, tmp_path):
    """Two modes of one seed: their rounds carry `retrain` and `retrain_iterations`, and the report draws and
    tabulates accuracy against density per mode."""
    from matplotlib.figure import Figure

    from lth_ray.results import analysis as A
    from lth_ray.results.experiment import StoredRounds, TrialResult
    from lth_ray.results.export import write_export
    from lth_ray.results.report import load, summary_markdown
    from lth_ray.results.tables import report_tables

    trials = []
    for n, cfg in enumerate([small(iterations=40), small(iterations=40, retrain="fine-tune", retrain_iterations=20)]):
        store = RoundStore.at(str(tmp_path / f"t{n}" / "rounds"))
        for res in run_all(Trajectory(cfg, split)).values():
            store.write_round(res)
        trials.append(TrialResult(f"t{n}", "TERMINATED", str(tmp_path / f"t{n}"), cfg, StoredRounds(store)))
    out = tmp_path / "export"
    out.mkdir()
    write_export(trials, str(out), "/x")
    rounds = pq.read_table(out / "rounds.parquet").to_pandas()
    assert sorted(zip(rounds["retrain"], rounds["retrain_iterations"], rounds["round"], rounds["start_iteration"])) == [
        ("fine-tune", 20, 0, 0),
        ("fine-tune", 20, 1, 20),
        ("weight-rewind", 0, 0, 0),
        ("weight-rewind", 0, 1, 0),
    ]
    histories = pq.read_table(out / "histories.parquet").to_pandas()
    assert histories[(histories["retrain"] == "fine-tune") & (histories["round"] == 1)]["iteration"].tolist() == [40]
    exp = load(str(out))
    summary = summary_markdown(exp, str(out), [])
    assert "## Retraining modes" in summary and "| round | % remaining | weight-rewind | fine-tune t=20 |" in summary
    [(shared, rows)] = A.retrain_comparisons(A.summarise(exp.rounds))  # the report's figure, drawn alone
    ax = Figure().subplots()
    A.plot_retrain_modes(ax, rows)
    assert [line.get_label() for line in ax.get_lines()] == ["weight-rewind", "fine-tune t=20", "dense"]
    (table,) = [t for name, t in report_tables(exp, str).items() if name.startswith("retrain_modes-")]
    assert list(table.columns) == ["round", "percent_remaining", "weight-rewind", "fine-tune t=20"]


def test_modes_and_lengths_are_grid_axes_of_a_sweep_and_options_of_a_trajectory():
    from lth_ray.distributed.grid import cohorts
    from lth_ray.distributed.sweep import build_parser, spec_from_args
    from sweeps.lenet_mnist import DEFAULTS

    argv = ["--storage", "/tmp/x", "--name", "n", "--seeds", "2", "--iterations", "1000", "--baselines", "reinit"]
    argv += ["--retrain", "weight-rewind,lr-rewind,fine-tune", "--retrain-iterations", "0,500"]
    with pytest.raises(ConfigError, match="not allowed with retrain='weight-rewind'"):
        spec_from_args(build_parser(DEFAULTS).parse_args(argv), DEFAULTS)  # weight-rewind has no length of its own
    spec = spec_from_args(build_parser(DEFAULTS).parse_args(argv[:-2] + ["--milestones", "500"]), DEFAULTS)
    tickets = [t for t in spec.trajectories if t.method == "imp"]
    assert sorted({t.retrain for t in tickets}) == ["fine-tune", "lr-rewind", "weight-rewind"] and len(tickets) == 6
    assert all(c[0].retrain == c[1].retrain for c in cohorts(spec, 1))  # a re-init rides with its ticket's mode
    lengths = build_parser(DEFAULTS).parse_args(argv[:-4] + ["--retrain", "lr-rewind", "--retrain-iterations", "500"])
    assert {t.retrain_iterations for t in spec_from_args(lengths, DEFAULTS).trajectories} == {500}


def test_a_lone_baseline_with_a_retraining_mode_is_one_error_line(capsys):
    from lth_ray.cli.trajectory import main

    assert main(["--method", "snip", "--retrain", "lr-rewind", "--rounds", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--retrain lr-rewind retrains a ticket" in err and "method='snip'" in err


def test_an_instability_copy_of_a_fine_tuned_ticket_starts_where_it_does_at_its_rate(split):
    cohort = Cohort(
        [small(**SGD, retrain="fine-tune", retrain_iterations=40, instability=True, instability_points=2)], split
    )
    cohort.run_round()
    parts = cohort.planner.participants(1, {})
    (copy,) = cohort.planner.copies(1, parts)
    assert copy.final_rate and parts[0].final_rate and copy.start_iteration == parts[0].start_iteration == 20
    assert all(torch.equal(copy.start[k], v) for k, v in parts[0].start.items())


def test_a_member_left_a_round_behind_resumes_bitwise_beside_a_replay(split, tmp_path):
    """A crash between two members' round files: the member ahead replays its round (from its own trained
    weights: results unused) so that the one behind trains in the same company, bitwise."""
    members = [small(**SGD, rounds=2, retrain="lr-rewind", seed=s) for s in (0, 1)]
    whole = Cohort(members, split)
    every = [whole.run_round() for _ in range(3)]
    stores = [RoundStore.at(str(tmp_path / m.key)) for m in members]
    first = Cohort(members, split)
    for r in range(2):
        for i, res in first.run_round().items():
            if r == 0 or i == 0:
                stores[i].write_round(res)
    states = resume_cohort(members, stores, None)
    assert [s["next_round"] for s in states] == [2, 1]
    resumed = Cohort(members, split, states)
    rest = [resumed.run_round() for _ in range(2)]
    assert sorted(rest[0]) == [1] and sorted(rest[1]) == [0, 1]
    for got, want in ((rest[0][1], every[1][1]), (rest[1][1], every[2][1]), (rest[1][0], every[2][0])):
        assert got.record["val_loss"] == want.record["val_loss"]
        assert all(torch.equal(v, trained(want)[k]) for k, v in trained(got).items())
