"""A deeper net end to end: a tiny Frankle et al. 2020 sweep of the real ResNet-20 on Ray, its export, its report.

One sweep (`python -m sweeps.frankle2020`, the session's two-node cluster, trained on CPUs) of OpenLTH's
`cifar_resnet_20` with its SGD recipe and augmentation, rewound to k = 2, instability in every round, the
re-init, random-pruning and SNIP baselines (the ablations' sweeps are Lenet's, tests/distributed). Its export must
hold every member's rounds and the instability in Parquet, with the numbers of the round files, and no thesis files
(the thesis' format is for its plan nets; export.json and the export's output say so); the report must draw and
tabulate it. Kept small: 4 iterations a round and 60 test images (the 5,000 validation images the data
registry holds out are what an evaluation costs). A first test, without Ray, exports hand-made trials: a
ResNet beside a Conv-2 trained with SGD, and an export without the recipe's columns (older lth_ray).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from conftest import PYTHON, ROOT, make_cifar10_like

from lth_ray.core.engine.trajectory import Trajectory
from lth_ray.core.options.resolve import from_preset
from lth_ray.core.store.rounds import RoundStore
from lth_ray.results import analysis as A
from lth_ray.results import thesis
from lth_ray.results.experiment import StoredRounds, TrialResult, load_trials
from lth_ray.results.export import write_export
from lth_ray.results.schema import RECIPE_DEFAULTS

NOTE = (
    "the thesis' format is for the thesis' plan nets (Lenet, Conv-2/4/6); cifar_resnet_20 trials are in the "
    "Parquet tables only"
)
LABELS = {"imp", "reinit", "random-prune", "snip"}
PARQUET = {"histories.parquet", "rounds.parquet", "instability.parquet", "interpolation.parquet"}
RECIPE = {
    "optimizer": "sgd",
    "momentum": 0.9,
    "nesterov": False,
    "weight_decay": 1e-4,
    "milestones": "",
    "gamma": 0.1,
    "warmup": 0,
    "augment": "flip-crop",
    "prune_ignore": "",
    "instability_bn": "interpolate",
}


def stored_trial(cfg, split, folder: Path, trial_id: str) -> TrialResult:
    """A trajectory run without Ray, its rounds in round files, as the exporter sees a trial."""
    store = RoundStore.at(str(folder / trial_id / "rounds"))
    for result in Trajectory(cfg, split).run_results():
        store.write_round(result)
    return TrialResult(trial_id, "TERMINATED", str(folder / trial_id), cfg, StoredRounds(store))


@pytest.mark.e2e
def test_thesis_files_for_plan_nets_only_and_old_exports_get_the_recipes_defaults(cifar_split, tmp_path):
    tiny = dict(iterations=4, eval_every=2, batch_size=10, rounds=1)
    resnet = from_preset("resnet20", milestones=(), **tiny)
    adam, sgd = from_preset("conv2", **tiny), from_preset("conv2", optimizer="sgd", momentum=0.9, **tiny)
    trials = [stored_trial(c, cifar_split, tmp_path, f"t_0000{i}") for i, c in enumerate((resnet, adam, sgd))]
    out = tmp_path / "export"
    out.mkdir()
    manifest = write_export(trials, str(out), "/x")
    assert manifest["notes"] == [NOTE] and manifest["missing"] == []
    assert [t["thesis_files"] for t in manifest["trials"]] == [False, True, True]
    assert len(manifest["groups"]) == 2  # one per recipe: Adam's and SGD's Conv-2 never share a thesis group
    sidecars = [json.loads(p.read_text()) for p in sorted(out.glob("*-lth_ray.json"))]
    assert sorted(s["recipe"]["optimizer"] for s in sidecars) == ["adam", "sgd"]
    assert sum(any("optimizer=sgd, momentum=0.9" in n for n in s["notes"]) for s in sidecars) == 1
    assert all(s["arch"] == "conv2" for s in sidecars)
    _, rounds = thesis.load_parquet(str(out))
    assert sorted(rounds["arch"].unique()) == ["cifar_resnet_20", "conv2"]
    assert sorted(rounds["optimizer"]) == ["adam"] * 2 + ["sgd"] * 4
    labels = A.config_labels(A.summarise(A.load_export(out).rounds))
    assert sorted(labels.values()) == ["cifar_resnet_20", "conv2 adam momentum0", "conv2 sgd momentum0.9"]
    old = tmp_path / "old"  # the same tables as an older lth_ray wrote them: no recipe columns
    old.mkdir()
    for name in ("histories.parquet", "rounds.parquet"):
        table = pd.read_parquet(out / name)
        table[table["optimizer"] == "adam"].drop(columns=list(RECIPE_DEFAULTS)).to_parquet(old / name)
    exp = A.load_export(old)
    assert all((exp.rounds[c] == v).all() and (exp.histories[c] == v).all() for c, v in RECIPE_DEFAULTS.items())
    assert len(A.summarise(exp.rounds)) == 2 and list(A.config_labels(exp.rounds).values()) == ["conv2"]


@pytest.fixture(scope="module")
def small_cifar10(tmp_path_factory) -> Path:
    """CIFAR-10's python batches with the fewest images a sweep takes: the 5,000 held out for validation, 50 to
    train on (five batches of 10), 60 to test."""
    return make_cifar10_like(tmp_path_factory.mktemp("small-cifar10"), per_batch=1010, n_test=60)


@pytest.fixture(scope="module")
def deep(small_cifar10, ray_cluster, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The finished sweep (<storage>/deep, exported at its end) and its output. The session's cluster has logical
    GPUs, so the planner places the ticket's cohort and SNIP's apart, one trial per node (--device cpu)."""
    storage = tmp_path_factory.mktemp("storage-deep")
    argv = [
        "--arch",
        "resnet20",
        "--dataset",
        "cifar10",
        "--data-root",
        str(small_cifar10),
        "--iterations",
        "4",
        "--eval-every",
        "2",
        "--batch-size",
        "10",
        "--rounds",
        "2",
        "--milestones",
        "none",
        "--rewind-iteration",
        "2",
        "--instability",
        "--instability-points",
        "3",
        "--baselines",
        "reinit,random-prune,snip",
        "--seeds",
        "1",
        "--device",
        "cpu",
        "--address",
        ray_cluster.address,
        "--storage",
        str(storage),
        "--name",
        "deep",
    ]
    out = subprocess.run(
        [PYTHON, "-m", "sweeps.frankle2020", *argv], cwd=ROOT, capture_output=True, text=True, timeout=1800
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return storage / "deep", out


def round_files(experiment: Path) -> dict[tuple[str, int], dict]:
    """Every member's round records as the trials wrote them: {(label, round): the record in record.json}."""
    records = {}
    for t in load_trials(str(experiment)):
        member = experiment / Path(t.path).name / "rounds" / t.config.key
        for f in sorted(member.glob("round_*/record.json")):
            record = json.loads(f.read_text())["record"]
            records[(t.config.label, record["round"])] = record
    return records


@pytest.mark.e2e
def test_every_member_of_the_grid_trained_the_resnet_with_its_recipe(deep):
    experiment, out = deep
    trials = load_trials(str(experiment))
    assert {t.config.label for t in trials} == LABELS and all(t.complete for t in trials)
    assert len({t.tune_trial_id for t in trials}) == 2  # the ticket's cohort, and SNIP's
    assert {t.config.arch for t in trials} == {"cifar_resnet_20"}
    assert all(t.config.optimizer == "sgd" and t.config.augment == "flip-crop" for t in trials)
    rounds = {t.config.label: t.rounds_done for t in trials}
    assert rounds["imp"] == [0, 1, 2] and all(rounds[m] == [1, 2] for m in LABELS - {"imp"})


@pytest.mark.e2e
def test_the_export_is_parquet_only_and_says_why(deep):
    experiment, out = deep
    export = experiment / "export"
    manifest = json.loads((export / "export.json").read_text())
    assert {p.name for p in export.iterdir()} == PARQUET | {"export.json"}  # never a thesis file of a ResNet
    assert set(manifest["files"]) == PARQUET and manifest["groups"] == [] and manifest["missing"] == []
    assert manifest["notes"] == [NOTE]
    assert f"note: {NOTE}" in out.stderr
    assert {t["arch"] for t in manifest["trials"]} == {"cifar_resnet_20"}
    assert not any(t["thesis_files"] for t in manifest["trials"])


@pytest.mark.e2e
def test_the_parquet_numbers_are_the_round_files(deep):
    experiment, _ = deep
    export = experiment / "export"
    records = round_files(experiment)
    rounds = pd.read_parquet(export / "rounds.parquet")
    histories = pd.read_parquet(export / "histories.parquet")
    instability = pd.read_parquet(export / "instability.parquet")
    assert sorted(zip(rounds["method"], rounds["round"])) == sorted(records)
    assert (rounds["plan_conv"] == "").all() and (rounds["plan_fc"] == "").all()
    assert (rounds["rewind_iteration"] == 2).all()
    for column, value in RECIPE.items():
        assert (rounds[column] == value).all(), column
        assert (histories[column] == value).all() and (instability[column] == value).all(), column
    layers = [c for c in rounds.columns if c.startswith("sparsity.")]
    assert len(layers) == 22  # ResNet-20: the stem, 18 block convs, two 1x1 shortcuts, the output layer
    for row in rounds.itertuples(index=False):
        record = records[(row.method, row.round)]
        assert (row.sparsity, row.start_iteration, row.steps, row.early_stop_iteration) == (
            record["sparsity"],
            record["start_iteration"],
            record["steps"],
            record["early_stop_iteration"],
        )
        assert (row.test_acc_at_early_stop, row.final_test_acc, row.final_val_loss) == (
            record["test_acc_at_early_stop"],
            record["final_test_acc"],
            record["final_val_loss"],
        )
    for (method, round_), record in records.items():
        mine = rounds[(rounds["method"] == method) & (rounds["round"] == round_)].iloc[0]
        assert {layer: mine[f"sparsity.{layer}"] for layer in record["layer_sparsity"]} == record["layer_sparsity"]
        h = histories[(histories["method"] == method) & (histories["round"] == round_)].sort_values("iteration")
        assert h["iteration"].tolist() == record["iterations"]
        assert h["val_loss"].tolist() == record["val_loss"] and h["test_acc"].tolist() == record["test_acc"]
    assert sorted(instability["method"]) == ["imp"] * 3 and sorted(instability["round"]) == [0, 1, 2]
    for row in instability.itertuples(index=False):
        measured = records[("imp", row.round)]["instability"]
        assert (row.error_barrier, row.loss_barrier, row.points) == (
            measured["error_barrier"],
            measured["loss_barrier"],
            3,
        )
    interpolation = pd.read_parquet(export / "interpolation.parquet")
    assert len(interpolation) == 3 * 3 and sorted(set(interpolation["alpha"])) == [0.0, 0.5, 1.0]
    live = A.load_experiment(experiment).rounds.sort_values(["trial_id", "round"], ignore_index=True)
    exported = A.load_export(export).rounds.sort_values(["trial_id", "round"], ignore_index=True)
    pd.testing.assert_frame_equal(live, exported)


@pytest.mark.e2e
def test_the_report_draws_and_tabulates_the_resnet(deep, tmp_path):
    experiment, _ = deep
    out = subprocess.run(
        [PYTHON, "-m", "lth_ray.cli", "report", str(experiment / "export"), "--out", str(tmp_path / "r")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    names = {p.name for p in (tmp_path / "r").iterdir()}
    for figure in (
        "accuracy_vs_sparsity",
        "early_stop_vs_sparsity",
        "instability_vs_sparsity",
        "interpolation-cifar-resnet-20",
        "methods-cifar-resnet-20",
        "history-cifar-resnet-20",
        "layer_sparsity-cifar-resnet-20",
    ):
        assert {f"{figure}.{ext}" for ext in ("png", "pdf", "svg")} <= names, figure
    assert {"rounds.csv", "winning_tickets.csv", "instability.csv", "methods-cifar-resnet-20.csv"} <= names
    md = (tmp_path / "r" / "summary.md").read_text()
    instability = md.split("## Instability")[1].split("\n## ")[0]
    assert instability.count("| cifar_resnet_20 |") == 1 + 3  # its stable-and-matching row, one row per round
    methods = md.split("## Every method per density")[1].split("\n## ")[0]
    assert all(label in methods for label in LABELS)
    assert len(pd.read_csv(tmp_path / "r" / "rounds.csv")) == 3 + 2 * (len(LABELS) - 1)
    from lth_ray.results.report import report

    written = report(str(experiment), tmp_path / "live")  # the Tune folder: the masks figure too
    assert "masks-cifar-resnet-20.png" in {p.name for p in written}
