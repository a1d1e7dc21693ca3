"""The numbers behind the plots (hand-made frames), then the tiny experiment: tidy frames, report, notebook.

Hand-made frames pin the thesis' definitions: early stop = FIRST argmin of val_loss, iteration =
(index + 1) * eval_every, metrics taken there; error bars = min/max over seeds; the winning ticket = the
sparsest round at least as accurate as the dense one; the sparsity axis = log2, inverted.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from conftest import ROOT

from lth_ray.core.engine.records import METRICS
from lth_ray.core.pruning.masks import alive_after  # noqa: E402
from lth_ray.results import analysis as A  # noqa: E402
from lth_ray.results.schema import HISTORIES, RECIPE_DEFAULTS, ROUNDS_FIXED, rounds_schema  # noqa: E402

NOTEBOOK = ROOT / "notebooks" / "ExperimentEvaluation.ipynb"
IDENT = dict(
    experiment="x",
    arch="lenet",
    plan_conv="",
    plan_fc="300,100",
    dataset="mnist",
    pruning="layerwise",
    prune_rate_fc=0.2,
    prune_rate_conv=0.0,
    rewind_iteration=0,
    activation="relu",
    iterations=200,
    eval_every=50,
    batch_size=60,
    learning_rate=1.2e-3,
    precision="fp32",
    deterministic=False,
    **RECIPE_DEFAULTS,
)  # the recipe's columns (Adam at a constant rate, as Lenet's preset)


def lenet_ladder(rounds: int = 20) -> list[float]:
    """Fraction of Lenet-300-100's weights remaining after k rounds (fc 20%, output 10%)."""
    layers = [(784 * 300, 0.2), (300 * 100, 0.2), (100 * 10, 0.1)]
    total = sum(n for n, _ in layers)
    return [sum(alive_after(n, r, k) for n, r in layers) / total for k in range(rounds + 1)]


def history_rows(trial: str, round_: int, val_loss, eval_every=50, method="imp", seed=0, start=0):
    return [
        {
            **IDENT,
            "trial_id": trial,
            "trajectory": trial,
            "seed": seed,
            "method": method,
            "round": round_,
            "sparsity": 1.0,
            "iteration": start + (k + 1) * eval_every,
            "train_loss": 1.0 + k,
            "val_loss": v,
            "val_acc": 0.1 * k,
            "test_loss": 10.0 + k,
            "test_acc": 0.01 * k,
        }
        for k, v in enumerate(val_loss)
    ]


def rounds_frame(entries) -> pd.DataFrame:
    """(method, round, seed, test_acc_at_early_stop, early_stop_iteration) -> a rounds frame."""
    ladder = lenet_ladder()
    rows = [
        {
            **IDENT,
            "trial_id": f"{m}-{s}",
            "trajectory": f"{m}-{s}",
            "method": m,
            "round": r,
            "seed": s,
            "sparsity": ladder[r],
            "test_acc_at_early_stop": acc,
            "early_stop_iteration": es,
            **{c: 0.0 for c in ("val_acc_at_early_stop", "final_test_acc")},
        }
        for m, r, s, acc, es in entries
    ]
    return pd.DataFrame(rows)


def test_every_method_per_density_table_and_labels():
    """Labels split into method and ablation; the table lists the ticket, random pruning, the at-init methods,
    then each one's ablations, every method's mean over seeds at each round's density."""
    assert A.split_label("magnitude-init-shuffle") == ("magnitude-init", "shuffle")
    assert A.split_label("imp-invert") == ("imp", "invert") and A.split_label("reinit") == ("reinit", "")
    frame = rounds_frame(
        [
            ("imp", 0, 0, 0.90, 400),
            ("imp", 1, 0, 0.92, 300),
            ("imp", 1, 1, 0.94, 300),
            ("snip", 1, 0, 0.88, 400),
            ("snip-shuffle", 1, 0, 0.87, 400),
            ("imp-shuffle", 1, 0, 0.80, 400),
            ("reinit", 1, 0, 0.85, 400),
        ]
    )
    summary = A.summarise(frame)
    assert A.has_other_methods(summary) and not A.has_other_methods(summary[summary["method"] == "imp"])
    key = next(iter(A.config_labels(summary)))
    table = A.methods_table(summary, key)
    assert list(table.columns) == ["percent_remaining", "imp", "imp-shuffle", "reinit", "snip", "snip-shuffle"]
    assert table.loc[1, "imp"] == pytest.approx(0.93) and table.loc[1, "snip-shuffle"] == pytest.approx(0.87)
    assert np.isnan(table.loc[0, "snip"])
    assert table.loc[1, "percent_remaining"] == pytest.approx(100 * lenet_ladder()[1])
    fig, ax = plt.subplots()
    A.plot_methods_vs_sparsity(ax, summary, key)
    styles = {line.get_label(): line.get_linestyle() for line in ax.get_lines()}
    assert styles == {"imp": "-", "imp-shuffle": "--", "reinit": ":", "snip": "-", "snip-shuffle": "--"}
    plt.close(fig)


# ------------------------------------------------------------------ early stop


def test_early_stop_index_is_the_first_argmin_including_ties():
    assert int(A.early_stop_indices([3.0, 1.0, 2.0, 1.0, 1.0])) == 1
    loss = np.array([[[5, 4, 4, 6], [1, 1, 1, 1]], [[2, 3, 1, 1], [9, 8, 7, 7]]], dtype=float)
    idx = A.early_stop_indices(loss, axis=2)
    assert idx.tolist() == [[1, 0], [2, 2]]
    acc = np.arange(16, dtype=float).reshape(2, 2, 4)
    assert A.values_at(acc, idx, axis=2).tolist() == [[1, 4], [10, 14]]


def test_early_stop_frame_takes_iteration_and_metrics_at_the_first_minimum():
    h = pd.DataFrame(
        history_rows("a", 0, [0.9, 0.5, 0.7, 0.5])
        + history_rows("a", 1, [0.3, 0.4, 0.2, 0.2])
        + history_rows("b", 1, [0.1, 0.2], eval_every=100)
    )
    es = A.early_stop(h.sample(frac=1.0, random_state=0)).set_index(["trial_id", "round"])
    assert es.loc[("a", 0), "early_stop_index"] == 1
    assert es.loc[("a", 0), "early_stop_iteration"] == 100  # (1 + 1) * 50
    assert es.loc[("a", 1), "early_stop_index"] == 2  # tie 0.2 at 2 and 3: the first
    assert es.loc[("a", 1), "early_stop_iteration"] == 150
    assert es.loc[("a", 1), "test_acc_at_early_stop"] == pytest.approx(0.02)
    assert es.loc[("a", 1), "val_loss_at_early_stop"] == pytest.approx(0.2)
    assert es.loc[("a", 1), "train_loss_at_early_stop"] == pytest.approx(3.0)
    assert es.loc[("b", 1), "early_stop_iteration"] == 100  # index 0, eval_every 100


def test_early_stop_frame_uses_the_absolute_axis_and_skips_non_finite_losses():
    nan, inf = float("nan"), float("inf")
    h = pd.DataFrame(
        history_rows("rewound", 1, [0.5, 0.3, 0.4], start=200)  # evaluated at 250, 300, 350
        + history_rows("diverging", 0, [nan, 0.7, 0.6, inf])
        + history_rows("dead", 0, [nan, nan])
    )
    es = A.early_stop(h).set_index(["trial_id", "round"])
    assert es.loc[("rewound", 1), "early_stop_iteration"] == 300
    assert es.loc[("diverging", 0), "early_stop_index"] == 2  # never the NaN (which argmin would pick)
    assert es.loc[("diverging", 0), "val_loss_at_early_stop"] == pytest.approx(0.6)
    assert pd.isna(es.loc[("dead", 0), "early_stop_iteration"])
    assert np.isnan(es.loc[("dead", 0), "test_acc_at_early_stop"])


def test_early_stop_indices_skip_nan_padding_of_thesis_arrays():
    nan = np.nan
    loss = np.array([[[nan, nan, 0.5, 0.4], [nan, nan, nan, nan]]])  # a rewound level; a level never run
    idx = A.early_stop_indices(loss, axis=2)
    assert idx.tolist() == [[3, -1]]
    values = A.values_at(np.arange(8, dtype=float).reshape(1, 2, 4), idx, axis=2)
    assert values[0, 0] == 3 and np.isnan(values[0, 1])


# ------------------------------------------------------------------ summaries


def test_summarise_gives_mean_and_min_max_over_seeds():
    r = rounds_frame(
        [("imp", 0, s, acc, es) for s, (acc, es) in enumerate([(0.90, 300), (0.96, 100), (0.93, 200)])]
        + [("imp", 1, s, 0.95, 100) for s in range(2)]
    )
    s = A.summarise(r).set_index("round")
    assert s.loc[0, "test_acc_at_early_stop_mean"] == pytest.approx(0.93)
    assert s.loc[0, "test_acc_at_early_stop_min"] == pytest.approx(0.90)
    assert s.loc[0, "test_acc_at_early_stop_max"] == pytest.approx(0.96)
    assert s.loc[0, "early_stop_iteration_min"] == 100 and s.loc[0, "early_stop_iteration_max"] == 300
    assert s.loc[0, "seeds"] == 3 and s.loc[1, "seeds"] == 2
    assert s.loc[1, "sparsity"] == pytest.approx(lenet_ladder()[1])
    std = A.summarise(r, spread="std").set_index("round")
    assert std.loc[0, "test_acc_at_early_stop_std"] == pytest.approx(np.std([0.90, 0.96, 0.93], ddof=1))
    assert "test_acc_at_early_stop_min" not in std.columns
    with pytest.raises(ValueError):
        A.summarise(r, spread="iqr")


def test_summarise_keeps_configurations_and_methods_apart():
    r = pd.concat(
        [
            rounds_frame([("imp", 1, 0, 0.9, 100), ("reinit", 1, 0, 0.5, 300)]),
            rounds_frame([("imp", 1, 0, 0.7, 100)]).assign(prune_rate_fc=0.4),
        ]
    )
    s = A.summarise(r)
    assert len(s) == 3 and set(s["seeds"]) == {1}


def test_winning_ticket_is_the_sparsest_round_at_least_as_accurate_as_dense():
    entries = []
    for s in range(2):
        entries += [
            ("imp", 0, s, 0.90, 400),
            ("imp", 1, s, 0.92, 300),
            ("imp", 2, s, 0.91, 200),
            ("imp", 3, s, 0.90, 100),
            ("imp", 4, s, 0.85, 100),
        ]  # round 3 ties dense
        entries += [("reinit", r, s, 0.80 + 0.01 * r, 400) for r in range(1, 5)]
    w = A.winning_ticket(A.summarise(rounds_frame(entries)))
    assert len(w) == 1
    row = w.iloc[0]
    assert row["ticket_round"] == 3
    assert row["ticket_sparsity"] == pytest.approx(lenet_ladder()[3])
    assert row["speedup"] == pytest.approx(4.0)  # 400 / 100
    assert row["gap_reinit"] == pytest.approx(0.90 - 0.83)
    assert np.isnan(row["gap_random-prune"])
    assert row["dense_test_acc_at_early_stop"] == pytest.approx(0.90)
    assert row["best_round"] == 1 and row["best_gain"] == pytest.approx(0.02)  # the paper's "up to"
    assert row["fastest_round"] == 3 and row["max_speedup"] == pytest.approx(4.0)  # first of the tied minima


def test_winning_ticket_uses_means_over_seeds_and_reports_none_when_no_round_qualifies():
    # round 1: seed means 0.905 >= dense mean 0.90 although one seed is below it
    entries = [
        ("imp", 0, 0, 0.89, 200),
        ("imp", 0, 1, 0.91, 200),
        ("imp", 1, 0, 0.88, 100),
        ("imp", 1, 1, 0.93, 100),
        ("imp", 2, 0, 0.5, 100),
        ("imp", 2, 1, 0.5, 100),
    ]
    assert A.winning_ticket(A.summarise(rounds_frame(entries))).iloc[0]["ticket_round"] == 1
    worse = [("imp", 0, 0, 0.9, 200), ("imp", 1, 0, 0.8, 100)]
    row = A.winning_ticket(A.summarise(rounds_frame(worse))).iloc[0]
    assert pd.isna(row["ticket_round"]) and np.isnan(row["speedup"])


def test_config_labels_name_only_what_differs_within_an_arch():
    r = pd.concat(
        [
            rounds_frame([("imp", 0, 0, 0.9, 100)]),
            rounds_frame([("imp", 0, 0, 0.9, 100)]).assign(prune_rate_fc=0.4),
            rounds_frame([("imp", 0, 0, 0.6, 100)]).assign(arch="conv2", prune_rate_conv=0.1),
        ]
    )
    assert sorted(A.config_labels(r).values()) == ["conv2", "lenet fc0.2", "lenet fc0.4"]
    assert [label for label, _, _ in A.by_configuration(A.Experiment(r.iloc[:0], r, pd.DataFrame()))] == [
        "lenet fc0.2",
        "lenet fc0.4",
        "conv2",
    ]


# ------------------------------------------------------------------ the axis and the plots


def test_ladder_ticks_reproduce_the_papers_lenet_ticks():
    ticks = A.ladder_ticks([100 * p for p in lenet_ladder()])
    assert [A._fmt_percent(t) for t in ticks] == ["100", "51.3", "26.3", "13.5", "7.0", "3.6", "1.9"]
    assert A.ladder_ticks([100.0, 80.0, 64.0]) == [100.0, 80.0, 64.0]  # short ladders: every level


def test_sparsity_axis_is_log2_and_inverted_with_dense_on_the_left():
    entries = [(m, r, s, 0.9 + 0.001 * r, 1000 - 10 * r) for s in range(2) for r in range(21) for m in ("imp",)]
    entries += [("reinit", r, s, 0.9 - 0.002 * r, 1000) for s in range(2) for r in range(1, 21)]
    fig, ax = plt.subplots()
    A.plot_accuracy_vs_sparsity(ax, A.summarise(rounds_frame(entries)))
    assert ax.get_xscale() == "log"
    assert ax.xaxis.get_transform().base == 2
    assert ax.xaxis_inverted()
    left, right = ax.get_xlim()
    assert left > 100 > 1.19 > right
    assert [t.get_text() for t in ax.get_xticklabels()] == ["100", "51.3", "26.3", "13.5", "7.0", "3.6", "1.9"]
    solid = [line for line in ax.get_lines() if line.get_linestyle() == "-"]
    dotted = [line for line in ax.get_lines() if line.get_linestyle() == ":"]
    assert len(solid) == 1 and len(dotted) == 1
    # the baseline starts at the ticket's dense point; accuracies are drawn in percent
    assert dotted[0].get_xdata()[0] == pytest.approx(100.0)
    assert dotted[0].get_ydata()[0] == pytest.approx(90.0)
    assert solid[0].get_ydata()[3] == pytest.approx(90.3)
    plt.close(fig)


def test_error_bars_span_min_to_max():
    entries = [("imp", 0, 0, 0.90, 200), ("imp", 0, 1, 0.94, 400), ("imp", 1, 0, 0.91, 100), ("imp", 1, 1, 0.95, 300)]
    fig, ax = plt.subplots()
    A.plot_early_stop_vs_sparsity(ax, A.summarise(rounds_frame(entries)))
    segments = ax.collections[0].get_segments()  # the vertical error bars
    spans = sorted((seg[:, 1].min(), seg[:, 1].max()) for seg in segments)
    assert spans == [(100.0, 300.0), (200.0, 400.0)]
    plt.close(fig)


def test_mask_image_reshapes_conv_kernels_into_tiles():
    mask = np.ones((4, 3, 3, 3), dtype=bool)
    mask[2, 1, 0, 2] = False
    img = A.mask_image(mask)
    assert img.shape == (9, 12)
    assert not img[1 * 3 + 0, 2 * 3 + 2] and img.sum() == mask.sum()
    assert A.mask_image(np.zeros((5, 7), dtype=bool)).shape == (5, 7)


def test_missing_lists_unfinished_errored_and_running_trials():
    ident = {**IDENT, "seed": 0}
    trials = pd.DataFrame(
        [
            {
                **ident,
                "trial_id": "t0",
                "trajectory": "a",
                "method": "imp",
                "status": "TERMINATED",
                "first_round": 0,
                "last_round": 2,
                "rounds_done": [0, 1, 2],
                "complete": True,
                "error": None,
            },
            {
                **ident,
                "trial_id": "t1",
                "trajectory": "b",
                "method": "reinit",
                "status": "ERROR",
                "first_round": 1,
                "last_round": 2,
                "rounds_done": [1],
                "complete": False,
                "error": None,
            },
            {
                **ident,
                "trial_id": "t2",
                "trajectory": "c",
                "method": "imp",
                "status": "RUNNING",
                "first_round": 0,
                "last_round": 2,
                "rounds_done": [],
                "complete": False,
                "error": None,
            },
        ]
    )
    m = A.missing(A.Experiment(pd.DataFrame(), pd.DataFrame(), trials)).set_index("trial_id")
    assert list(m.index) == ["t1", "t2"]
    assert m.loc["t1", "rounds_missing"] == [2] and m.loc["t1", "reason"] == "errored"
    assert m.loc["t2", "rounds_missing"] == [0, 1, 2] and m.loc["t2", "reason"].startswith("running")


# ------------------------------------------------------------------ the tiny experiment


@pytest.fixture(scope="session")
def experiment(tiny_experiment) -> Path:
    """The session's tiny sweep (exported)."""
    return tiny_experiment


@pytest.fixture(scope="session")
def partial(experiment, tmp_path_factory) -> Path:
    """A copy of the tiny experiment where the imp ticket of seed 1 lost its last round (its round files
    and its cohort's newest checkpoint) and random-prune seed 0 never finished a round (no round files)."""
    from lth_ray.results.experiment import load_trials

    copy = tmp_path_factory.mktemp("partial") / "tiny"
    shutil.copytree(experiment, copy, ignore=shutil.ignore_patterns("report"))
    for t in load_trials(str(copy)):
        checkpoints = sorted(Path(t.path).glob("checkpoint_*"))
        if (t.config.method, t.config.seed) == ("imp", 1):
            shutil.rmtree(checkpoints[-1])
            shutil.rmtree(Path(t.path) / "rounds" / t.config.key / "round_002")
        elif (t.config.method, t.config.seed) == ("random-prune", 0):
            shutil.rmtree(Path(t.path) / "rounds" / t.config.key)
    return copy


def test_tidy_frames_match_the_trajectory_records(experiment):
    from lth_ray.results.experiment import load_trials

    exp = A.load_experiment(experiment)
    assert list(exp.histories.columns) == HISTORIES.names
    layers = ["fc.0", "fc.2", "out"]
    assert list(exp.rounds.columns) == rounds_schema(layers, layers).names
    assert list(exp.rounds.columns)[: len(ROUNDS_FIXED) + 3] == ROUNDS_FIXED.names + [f"sparsity.{n}" for n in layers]
    trials = load_trials(str(experiment))
    assert len(trials) == len(exp.trials) == 6
    assert sorted(exp.rounds.groupby("method")["round"].apply(lambda r: sorted(set(r))).items()) == [
        ("imp", [0, 1, 2]),
        ("random-prune", [1, 2]),
        ("reinit", [1, 2]),
    ]
    points = 0
    for t in trials:
        for rec in t.records:
            row = exp.rounds[(exp.rounds["trial_id"] == t.trial_id) & (exp.rounds["round"] == rec["round"])]
            assert len(row) == 1
            row = row.iloc[0]
            assert (row["method"], row["seed"], row["arch"]) == (t.config.method, t.config.seed, "lenet")
            assert row["eval_every"] == 50 and row["iterations"] == 200 and row["status"] == "TERMINATED"
            for key in (
                ["sparsity", "early_stop_index", "early_stop_iteration", "seconds"]
                + [f"{m}_at_early_stop" for m in METRICS]
                + [f"final_{m}" for m in METRICS]
            ):
                assert row[key] == pytest.approx(rec[key]), key
            for layer, value in rec["layer_sparsity"].items():
                assert row[f"sparsity.{layer}"] == pytest.approx(value)
            h = exp.histories[(exp.histories["trial_id"] == t.trial_id) & (exp.histories["round"] == rec["round"])]
            h = h.sort_values("iteration")
            assert h["iteration"].tolist() == rec["iterations"] == [50, 100, 150, 200]
            for m in METRICS:
                assert h[m].tolist() == pytest.approx(rec[m])
            points += len(h)
    assert points == len(exp.histories)
    # the early-stop numbers recomputed from the histories are the ones the trajectory recorded
    es = A.early_stop(exp.histories).merge(exp.rounds, on=["trial_id", "round"], suffixes=("", "_recorded"))
    assert len(es) == len(exp.rounds)
    for c in ["early_stop_index", "early_stop_iteration", "test_acc_at_early_stop", "val_loss_at_early_stop"]:
        assert es[c].to_numpy() == pytest.approx(es[f"{c}_recorded"].to_numpy())
    assert A.missing(exp).empty
    masks = exp.mask(exp.trials.loc[exp.trials["method"] == "imp", "trial_id"].iloc[0], 2)
    assert masks["fc.0"].shape == (300, 784) and masks["fc.0"].dtype == bool
    assert np.mean(masks["fc.0"]) == pytest.approx(0.64)


def test_load_export_reads_the_same_frames(experiment):
    export = experiment / "export"
    if not (export / "rounds.parquet").is_file():
        pytest.skip("no export in this experiment (lth_ray/export.py missing)")
    live, exported = A.load_experiment(experiment), A.load_export(export)
    for name, keys in (("histories", ["trial_id", "round", "iteration"]), ("rounds", ["trial_id", "round"])):
        a = getattr(live, name).sort_values(keys).reset_index(drop=True)
        b = getattr(exported, name).sort_values(keys).reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(live.trials, exported.trials)  # the trial list from export.json
    assert A.missing(exported).empty


def run_report(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "MPLBACKEND": "Agg"}
    return subprocess.run(
        [sys.executable, "-m", "lth_ray.cli", "report", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )


def test_report_writes_the_figures_and_summary(experiment, tmp_path):
    out = tmp_path / "report"
    done = run_report(experiment, "--out", out)
    assert done.returncode == 0, done.stderr
    names = {
        "accuracy_vs_sparsity.png",
        "early_stop_vs_sparsity.png",
        "history-lenet.png",
        "layer_sparsity-lenet.png",
        "masks-lenet.png",
        "summary.md",
    }
    assert names <= {p.name for p in out.iterdir()}
    for p in out.glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000
    text = (out / "summary.md").read_text()
    for part in [
        "## Winning tickets",
        "## Rounds",
        "### lenet",
        "| imp | 2 | 64.1 | 2 |",
        "## Missing",
        "Nothing: every trial finished every round.",
        "![accuracy_vs_sparsity](accuracy_vs_sparsity.png)",
    ]:
        assert part in text, part


def test_report_reads_an_export_folder(experiment, tmp_path):
    from lth_ray.results.report import main

    export = experiment / "export"
    if not (export / "rounds.parquet").is_file():
        pytest.skip("no export in this experiment (lth_ray/export.py missing)")
    assert main([str(export), "--out", str(tmp_path / "r")]) == 0
    names = {p.name for p in (tmp_path / "r").iterdir()}
    assert {"accuracy_vs_sparsity.png", "history-lenet.png", "summary.md"} <= names
    assert "masks-lenet.png" not in names  # masks are read from the Tune folder only
    assert "Nothing: every trial finished every round." in (tmp_path / "r" / "summary.md").read_text()


@pytest.mark.parametrize("make", ["missing", "empty", "file", "foreign"])
def test_report_rejects_what_is_not_an_experiment(tmp_path, make):
    target = tmp_path / "target"
    if make == "empty":
        target.mkdir()
    elif make == "file":
        target.write_text("hello")
    elif make == "foreign":
        target.mkdir()
        (target / "notes.json").write_text(json.dumps({"a": 1}))
    done = run_report(target)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "target" in lines[0]
    assert not (target / "report").exists()


def test_a_partial_experiment_loads_and_reports_what_is_missing(partial):
    exp = A.load_experiment(partial)
    gone = A.missing(exp).set_index("method")
    assert sorted(gone.index) == ["imp", "random-prune"]
    assert gone.loc["imp", "rounds_done"] == [0, 1] and gone.loc["imp", "rounds_missing"] == [2]
    assert gone.loc["imp", "reason"] == "unfinished"
    assert gone.loc["random-prune", "rounds_missing"] == [1, 2]
    assert gone.loc["random-prune", "reason"] == "no round finished"
    assert len(exp.rounds) == 3 + 2 + 2 * 2 + 2 + 0  # imp 0..2 and 0..1, reinit 2x2, random-prune 2 and 0
    from lth_ray.results.report import main

    assert main([str(partial)]) == 0  # default output: <experiment>/report
    text = (partial / "report" / "summary.md").read_text()
    section = text[text.index("## Missing") :]
    assert "imp" in section and "random-prune" in section and "| 2 | unfinished |" in section
    assert (partial / "report" / "accuracy_vs_sparsity.png").is_file()


@pytest.fixture
def venv_kernel(tmp_path, monkeypatch) -> str:
    """A kernelspec that runs this interpreter (the venv's ipykernel), whatever `python` is on PATH."""
    folder = tmp_path / "jupyter" / "kernels" / "lth-venv"
    folder.mkdir(parents=True)
    (folder / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "lth_ray venv",
                "language": "python",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return "lth-venv"


def execute_notebook(experiment: Path, kernel: str, cwd: Path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")
    monkeypatch.setenv("LTH_EXPERIMENT", str(experiment))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    NotebookClient(nb, timeout=300, kernel_name=kernel, resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


@pytest.mark.ray
@pytest.mark.parametrize("which", ["experiment", "partial", "pai_experiment"])
def test_the_notebook_runs_top_to_bottom(which, request, venv_kernel, tmp_path, monkeypatch):
    nb = execute_notebook(request.getfixturevalue(which), venv_kernel, tmp_path, monkeypatch)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3
    text = "".join(json.dumps(o.get("data", {})) + o.get("text", "") for o in outputs)
    assert ("random-prune" in text and "no round finished" in text) if which == "partial" else "Nothing:" in text
    every_method = "grasp-shuffle" in text and "percent_remaining" in text  # the methods table
    assert every_method == (which == "pai_experiment")
    assert len(images) >= (4 if which == "pai_experiment" else 3)


def test_tune_analysis_gives_tunes_own_api_on_a_trusted_sweep(experiment):
    from ray.tune import ExperimentAnalysis

    analysis = A.tune_analysis(experiment)
    assert isinstance(analysis, ExperimentAnalysis)
    # one row per Tune trial: the session's cluster has (logical) GPUs, and the tiny Lenet cohort is host-bound,
    # so the plan keeps 2 seeds x (ticket, re-init, random pruning) in one whole-GPU cohort
    frame = analysis.dataframe()
    from lth_ray.results.experiment import load_trials

    assert len(frame) == len({t.tune_trial_id for t in load_trials(str(experiment))}) == 1
    assert "test_acc_at_early_stop" in frame.columns and frame["members"].tolist() == [6]
