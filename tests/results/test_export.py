"""The exporter and the loaders: Parquet and the thesis' files, checked key by key against the spec
(docs/design/thesis-format.md) and against the trajectory states they come from; partial experiments,
refusals and the CLI. Uses the session's tiny sweep (`tiny_experiment`), which the sweep already exported."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from conftest import ROOT

from lth_ray.core.data.loading import load_split
from lth_ray.core.data.registry import in_shape_of
from lth_ray.core.engine.evaluation import evaluate
from lth_ray.core.engine.records import METRICS
from lth_ray.core.engine.weights import initial_weights
from lth_ray.core.methods.member import first_round
from lth_ray.core.models.registry import build_model
from lth_ray.core.spec.config import plan_config
from lth_ray.core.store.rounds import RoundStore
from lth_ray.results import thesis
from lth_ray.results.experiment import CHECKPOINT_RE, ExperimentError, StoredRounds, TrialResult, load_trials
from lth_ray.results.export import ExportError, export_experiment, main, write_export
from lth_ray.results.schema import HISTORIES, rounds_schema

# The spec's 18 keys, in its order (written out here, not imported: this is the check).
SPEC_KEYS = [
    "net",
    "plan_conv",
    "plan_fc",
    "net_count",
    "dataset",
    "epoch_count",
    "learning_rate",
    "plot_step",
    "verbosity",
    "prune_method",
    "prune_count",
    "prune_rate_conv",
    "prune_rate_fc",
    "duration",
    "device",
    "device_name",
    "save_early_stop",
    "experiment_name",
]
SPEC_TYPES = [str, list, list, int, str, int, float, int, int, str, int, float, float, str, str, str, bool, str]
PREFIX_RE = re.compile(r"^\d{4}_\d{2}_\d{2}-\d{2}_\d{2}_\d{2}-(Lenet|Conv)-(MNIST|CIFAR-10|Fashion-MNIST)$")
LENET_MODULES = ["fc.0", "fc.2", "out"]


# ------------------------------------------------------------------ helpers


@pytest.fixture(scope="module")
def trials(tiny_experiment) -> list[TrialResult]:
    return sorted(load_trials(str(tiny_experiment)), key=lambda t: t.trial_id)


@pytest.fixture(scope="module")
def export_dir(tiny_experiment) -> Path:
    return tiny_experiment / "export"  # written by the sweep at its end


@pytest.fixture(scope="module")
def prefix(export_dir) -> str:
    [specs] = thesis.get_relative_spec_file_paths(str(export_dir))
    return thesis.extract_experiment_path_prefix(specs)


def tickets(trials):
    return sorted((t for t in trials if t.config.method == "imp"), key=lambda t: t.config.seed)


def baseline(trials, method, seed):
    [b] = [t for t in trials if t.config.method == method and t.config.seed == seed]
    return b


def records_by_round(t):
    return {r["round"]: r for r in t.records}


def snapshot(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def copy_experiment(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("export"))
    return dst


def checkpoints(trial_folder: Path) -> list[Path]:
    return sorted(p for p in trial_folder.iterdir() if CHECKPOINT_RE.match(p.name))


def member_rounds(experiment: Path, t: TrialResult) -> Path:
    """A trajectory's round files inside (a copy of) the experiment: <trial folder>/rounds/<member key>."""
    return experiment / Path(t.path).name / "rounds" / t.config.key


# ------------------------------------------------------------------ the thesis layout, key by key


def test_export_lists_exactly_the_files_it_wrote(export_dir, prefix):
    manifest = json.loads((export_dir / "export.json").read_text())
    names = {p.name for p in export_dir.iterdir()}
    assert names == set(manifest["files"]) | {"export.json"}
    assert manifest["missing"] == []
    assert PREFIX_RE.match(os.path.basename(prefix))
    paths = {"successive.parquet", "successive_interpolation.parquet"}  # the tiny sweep measures --successive
    expected = (
        {"histories.parquet", "rounds.parquet"}
        | paths
        | {
            f"{os.path.basename(prefix)}{suffix}"
            for suffix in [
                "-specs.json",
                "-lth_ray.json",
                "-histories.npz",
                "-net0.pth",
                "-net1.pth",
                "-early-stop0.pth",
                "-early-stop1.pth",
                "-random-histories0.npz",
                "-random-histories1.npz",
                "-random-prune-histories0.npz",
                "-random-prune-histories1.npz",
            ]
        }
    )
    assert names == expected | {"export.json"}


def test_specs_json_has_the_18_keys_in_order_with_thesis_values(prefix, trials):
    raw = json.loads(Path(f"{prefix}-specs.json").read_text())
    assert list(raw) == SPEC_KEYS
    for key, typ in zip(SPEC_KEYS, SPEC_TYPES):
        assert type(raw[key]) is typ, key
    cfg = tickets(trials)[0].config
    assert raw["net"] == "Lenet" and raw["dataset"] == "MNIST"
    assert raw["plan_conv"] == [] and raw["plan_fc"] == [300, 100]
    assert raw["net_count"] == 2 and raw["prune_count"] == 2 and raw["plot_step"] == 50
    assert raw["epoch_count"] == math.ceil(cfg.iterations / (55_000 // cfg.batch_size)) == 1
    assert raw["learning_rate"] == cfg.learning_rate and raw["prune_rate_fc"] == 0.2 and raw["prune_rate_conv"] == 0.0
    assert raw["prune_method"] == "IMP-per-layer" and raw["experiment_name"] == "imp" and raw["verbosity"] == 0
    seconds = sum(r["seconds"] for t in tickets(trials) for r in t.records)
    assert raw["duration"] == thesis.format_duration(seconds) and re.fullmatch(
        r"\d+\.\d{4}sec|\d+:\d{2}min", raw["duration"]
    )
    assert raw["device"] == "cpu" and raw["device_name"] == "cpu" and raw["save_early_stop"] is True
    specs = thesis.get_specs_from_file(f"{prefix}-specs.json")
    assert [getattr(specs, k) for k in SPEC_KEYS] == list(raw.values())


def test_histories_npz_layout_and_values(prefix, trials):
    path = f"{prefix}-histories.npz"
    with zipfile.ZipFile(path) as z:  # np.savez, not savez_compressed
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_STORED}
        assert sorted(z.namelist()) == sorted(
            f"{k}.npy" for k in ["train_loss", "val_loss", "val_acc", "test_acc", "sparsity"]
        )
    h = thesis.get_experiment_histories_from_file(prefix)
    train_loss, val_loss, val_acc, test_acc, sparsity = h  # the tuple the brief promises
    for a in (train_loss, val_loss, val_acc, test_acc):
        assert a.dtype == np.float64 and a.shape == (2, 3, 4)  # nets, prune_count + 1, L = 200 // 50
    assert sparsity.dtype == np.float64 and sparsity.shape == (3,)
    for n, t in enumerate(tickets(trials)):
        recs = records_by_round(t)
        for level in range(3):
            for name in ("train_loss", "val_loss", "val_acc", "test_acc"):
                np.testing.assert_array_equal(getattr(h, name)[n, level], recs[level][name])
            assert sparsity[level] == round(recs[level]["sparsity"], 4)
    assert sparsity[0] == 1.0 and np.all(np.diff(sparsity) < 0)


def test_net_files_use_the_prune_layout_of_the_last_level(prefix, trials):
    for n, t in enumerate(tickets(trials)):
        saved = torch.load(f"{prefix}-net{n}.pth", map_location="cpu", weights_only=True)
        assert list(saved) == [
            f"{m}.{leaf}" for m in LENET_MODULES for leaf in ("bias", "weight_orig", "weight_init", "weight_mask")
        ]
        masks = t.rounds.masks(t.config.rounds)
        trained, rewind = t.rounds.trained(t.config.rounds), initial_weights(t.config)
        for m in LENET_MODULES:
            for leaf in ("bias", "weight_orig", "weight_init", "weight_mask"):
                tensor = saved[f"{m}.{leaf}"]
                assert tensor.dtype == torch.float32 and tensor.device.type == "cpu"
            torch.testing.assert_close(saved[f"{m}.weight_orig"], trained[f"{m}.weight"], rtol=0, atol=0)
            torch.testing.assert_close(saved[f"{m}.weight_init"], rewind[f"{m}.weight"], rtol=0, atol=0)
            torch.testing.assert_close(saved[f"{m}.bias"], trained[f"{m}.bias"], rtol=0, atol=0)
            mask = saved[f"{m}.weight_mask"]
            assert set(mask.unique().tolist()) <= {0.0, 1.0}
            assert torch.equal(mask.bool(), masks[m])
        assert saved["fc.0.weight_orig"].shape == (300, 784) and saved["out.weight_mask"].shape == (10, 100)


def test_rebuilt_net_has_the_trained_nets_test_accuracy(prefix, trials, tiny_mnist):
    specs = thesis.get_specs_from_file(f"{prefix}-specs.json")
    nets = thesis.get_models_from_files(prefix, specs)
    split = load_split("mnist", data_root=str(tiny_mnist))
    assert len(nets) == 2
    for net, t in zip(nets, tickets(trials)):
        trained = build_model(
            plan_config(t.config.plan_conv, t.config.plan_fc, t.config.activation), in_shape_of("mnist")
        )
        trained.load_state_dict(t.rounds.trained(t.config.rounds))
        trained.eval()
        loss, acc = evaluate(net, split.x_test, split.y_test)
        ref_loss, ref_acc = evaluate(trained, split.x_test, split.y_test)
        assert float(acc) == float(ref_acc) and float(loss) == float(ref_loss)
        last = records_by_round(t)[t.config.rounds]
        assert float(acc) == pytest.approx(last["final_test_acc"])
        assert float(loss) == pytest.approx(last["final_test_loss"], rel=1e-4)


def test_early_stop_files_round_trip(prefix, trials):
    specs = thesis.get_specs_from_file(f"{prefix}-specs.json")
    for n, t in enumerate(tickets(trials)):
        raw = torch.load(f"{prefix}-early-stop{n}.pth", weights_only=True)
        assert list(raw) == ["state_dicts", "indices"] and len(raw["state_dicts"]) == 3
        es = thesis.get_early_stop_history_from_file(prefix, specs, n)
        recs = records_by_round(t)
        assert es.indices.tolist() == [(recs[r]["early_stop_index"] + 1) * 50 - 1 for r in range(3)]
        for r, sd in enumerate(es.state_dicts):
            plain = thesis.effective_state(sd)
            for key, value in t.rounds.early_stop(r).items():
                torch.testing.assert_close(plain[key], value, rtol=0, atol=0)
    with pytest.raises(ValueError, match="out of range"):
        thesis.get_early_stop_history_from_file(prefix, specs, 2)


@pytest.mark.parametrize(
    "method,reader",
    [
        ("reinit", thesis.get_random_experiment_histories_from_file),
        ("random-prune", thesis.get_random_prune_histories_from_file),
    ],
)
def test_baseline_histories_round_trip(prefix, trials, method, reader):
    for n, seed in enumerate([0, 1]):
        h = reader(prefix, n)
        b = records_by_round(baseline(trials, method, seed))
        for name in ("train_loss", "val_loss", "val_acc", "test_acc"):
            a = getattr(h, name)
            assert a.dtype == np.float64 and a.shape == (1, 2, 4)  # (1, prune_count, L): levels 1..2
            for level in (1, 2):
                np.testing.assert_array_equal(a[0, level - 1], b[level][name])
        assert h.sparsity.shape == (2,) and h.sparsity.tolist() == [round(b[r]["sparsity"], 4) for r in (1, 2)]


def test_sidecar_records_what_the_thesis_keys_cannot(prefix, trials):
    side = json.loads(Path(f"{prefix}-lth_ray.json").read_text())
    ts = tickets(trials)
    assert side["seeds"] == [0, 1] and side["trial_ids"] == [t.trial_id for t in ts]
    assert (side["iterations"], side["eval_every"], side["rewind_iteration"]) == (200, 50, 0)
    assert (side["activation"], side["method"], side["pruning"], side["dataset"]) == (
        "relu",
        "imp",
        "layerwise",
        "mnist",
    )
    assert [b["trial_id"] for b in side["baselines"]["reinit"]] == [
        baseline(trials, "reinit", s).trial_id for s in (0, 1)
    ]
    assert [b["n"] for b in side["baselines"]["random-prune"]] == [0, 1]
    assert side["lth_ray_version"] and side["padded"] is False and side["missing"] == []
    assert any("relu" in note and "tanh" in note for note in side["notes"])  # old code would rebuild tanh


# ------------------------------------------------------------------ Parquet


def test_parquet_schema_is_the_fixed_one(export_dir, trials):
    assert pq.read_schema(export_dir / "histories.parquet").remove_metadata() == HISTORIES
    rounds = pq.read_schema(export_dir / "rounds.parquet").remove_metadata()
    assert rounds == rounds_schema(["fc.0", "fc.2", "out"], ["fc.0", "fc.2", "out"])  # Lenet's Linears: all pruned
    histories, rounds_df = thesis.load_parquet(str(export_dir))
    for df in (histories, rounds_df):
        assert not any(dtype == np.dtype(object) for dtype in df.dtypes), df.dtypes
        assert str(df["seed"].dtype) == "int64" and str(df["round"].dtype) == "int64"


def test_parquet_values_equal_the_trajectory_records(export_dir, trials, tiny_experiment):
    histories, rounds = thesis.load_parquet(str(export_dir))
    assert set(histories["experiment"]) == {tiny_experiment.name}
    assert len(rounds) == sum(len(t.records) for t in trials) == 2 * 3 + 4 * 2
    for t in trials:
        for rec in t.records:
            rows = histories[(histories.trial_id == t.trial_id) & (histories["round"] == rec["round"])]
            assert rows["iteration"].tolist() == rec["iterations"]
            for m in METRICS:
                assert rows[m].tolist() == rec[m]
            assert set(rows["sparsity"]) == {rec["sparsity"]} and set(rows["method"]) == {t.config.method}
            [row] = rounds[(rounds.trial_id == t.trial_id) & (rounds["round"] == rec["round"])].to_dict("records")
            for key in (
                ["early_stop_index", "early_stop_iteration", "seconds", "sparsity"]
                + [f"{m}_at_early_stop" for m in METRICS]
                + [f"final_{m}" for m in METRICS]
            ):
                assert row[key] == rec[key], key
            for layer, value in rec["layer_sparsity"].items():
                assert row[f"sparsity.{layer}"] == value
            assert (row["seed"], row["iterations"], row["eval_every"], row["complete"], row["status"]) == (
                t.config.seed,
                200,
                50,
                True,
                "TERMINATED",
            )
            assert row["trajectory"].endswith(f"-s{t.config.seed}") and t.config.method in row["trajectory"]
            for key in ("start_val_loss", "start_val_acc", "start_test_loss", "start_test_acc", "sign_flip_share"):
                assert row[key] == rec[key], key
            assert (row["params"], row["flops"]) == (rec["cost"]["params"], rec["cost"]["flops"]) and row[
                "params"
            ] == 266610
            for layer, cost in rec["cost"]["layers"].items():
                assert (row[f"flops.{layer}"], row[f"nonzero_weights.{layer}"]) == (
                    cost["flops"],
                    cost["nonzero_weights"],
                )
            for layer, share in rec["layer_sign_flip_share"].items():
                assert row[f"sign_flip_share.{layer}"] == share
            distance = rec["layer_mask_distance"] or {}
            assert all(row[f"mask_distance.{layer}"] == distance[layer] for layer in distance)
            assert (
                (rec["mask_distance"] is None)
                == (rec["round"] == first_round(t.config))
                == np.isnan(row["mask_distance"])
            )
            # the two seeds' masks at this round, from the round files: Jaccard by hand
            [other] = [o for o in trials if o.config.method == t.config.method and o.config.seed != t.config.seed]
            mine, theirs = t.rounds.masks(rec["round"]), other.rounds.masks(rec["round"])
            both = sum(int((mine[n] & theirs[n]).sum()) for n in mine)
            either = sum(int((mine[n] | theirs[n]).sum()) for n in mine)
            assert row["seed_jaccard"] == pytest.approx(both / either, rel=1e-12)
            assert row["seed_jaccard.out"] == pytest.approx(
                int((mine["out"] & theirs["out"]).sum()) / int((mine["out"] | theirs["out"]).sum())
            )


# ------------------------------------------------------------------ partial experiments


def test_partial_experiment_exports_what_finished_and_reports_the_rest(tiny_experiment, trials, tmp_path):
    exp = copy_experiment(tiny_experiment, tmp_path / "partial")
    ticket1 = tickets(trials)[1]
    shutil.rmtree(member_rounds(exp, ticket1) / "round_002")  # seed 1's ticket: only rounds 0..1 survive
    broken = baseline(trials, "random-prune", 0)
    for record in member_rounds(exp, broken).glob("round_*/record.json"):
        record.write_bytes(b"not json")  # a corrupt trial: nothing readable
    lines = []
    out = export_experiment(str(exp), str(tmp_path / "out"), report=lines.append)
    assert out == str(tmp_path / "out")
    assert any(broken.trial_id in line and "nothing exported" in line for line in lines)
    assert any(ticket1.trial_id in line and "[2]" in line for line in lines)
    manifest = json.loads((tmp_path / "out" / "export.json").read_text())
    assert [line.removeprefix("warning: ") for line in lines] == manifest["missing"]

    histories, rounds = thesis.load_parquet(str(tmp_path / "out"))
    assert broken.trial_id not in set(rounds.trial_id)
    assert sorted(rounds[rounds.trial_id == ticket1.trial_id]["round"]) == [0, 1]
    assert len(rounds) == 2 * 3 + 4 * 2 - 1 - 2

    [specs_file] = thesis.get_relative_spec_file_paths(str(tmp_path / "out"))
    prefix = thesis.extract_experiment_path_prefix(specs_file)
    h = thesis.get_experiment_histories_from_file(prefix)
    assert h.val_loss.shape == (2, 3, 4)  # padded, never cut
    assert np.isnan(h.val_loss[1, 2]).all() and not np.isnan(h.val_loss[:, :2]).any()
    assert not np.isnan(h.sparsity).any()
    side = json.loads(Path(f"{prefix}-lth_ray.json").read_text())
    assert side["padded"] is True and any("NaN" in note for note in side["notes"])
    assert side["nets"][1]["levels"] == [0, 1] and side["nets"][1]["net_file_level"] == 1
    assert [b["n"] for b in side["baselines"]["random-prune"]] == [1]
    saved = torch.load(f"{prefix}-net1.pth", weights_only=True)
    masks = ticket1.rounds.masks(1)
    assert torch.equal(saved["fc.0.weight_mask"].bool(), masks["fc.0"])
    specs = thesis.get_specs_from_file(specs_file)
    es = thesis.get_early_stop_history_from_file(prefix, specs, 1)
    assert es.indices[2] == -1 and es.state_dicts[2] is None
    assert not Path(f"{prefix}-random-prune-histories0.npz").exists()


def test_a_torn_or_deleted_round_file_is_named_and_never_exported_as_complete(tiny_experiment, trials, tmp_path):
    exp = copy_experiment(tiny_experiment, tmp_path / "torn")
    t, other = tickets(trials)
    trained = member_rounds(exp, t) / "round_002" / "trained.pt"
    trained.write_bytes(trained.read_bytes()[:100])  # torn
    (member_rounds(exp, other) / "round_001" / "masks.pt").unlink()  # deleted
    lines = []
    export_experiment(str(exp), str(tmp_path / "out"), report=lines.append)
    _, rounds = thesis.load_parquet(str(tmp_path / "out"))
    assert sorted(rounds[rounds.trial_id == t.trial_id]["round"]) == [0, 1]
    assert sorted(rounds[rounds.trial_id == other.trial_id]["round"]) == [0, 2]
    assert len(lines) == 2
    assert t.trial_id in lines[0] and "round 2: trained.pt is torn" in lines[0]
    assert other.trial_id in lines[1] and "round 1: masks.pt is missing" in lines[1]


# ------------------------------------------------------------------ refusals, CLI, URIs


def test_existing_export_is_not_touched_without_force(tiny_experiment, export_dir, capsys):
    before = snapshot(export_dir)
    with pytest.raises(ExportError, match="already exists"):
        export_experiment(str(tiny_experiment))
    assert main([str(tiny_experiment)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and str(export_dir) in err[0]
    assert snapshot(export_dir) == before


def test_force_replaces_an_export_with_the_same_names(tiny_experiment, tmp_path):
    exp = copy_experiment(tiny_experiment, tmp_path / "exp")
    first = export_experiment(str(exp))
    names = sorted(os.listdir(first))
    (Path(first) / "stale.txt").write_text("from before")
    assert main([str(exp), "--force"]) == 0
    assert sorted(os.listdir(first)) == names  # same prefixes; the stale file went with the old export
    assert not [p for p in os.listdir(exp) if p.startswith(".export.")]  # no temp folders left behind


def test_force_refuses_a_folder_that_is_not_an_export(tiny_experiment, tmp_path, capsys):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    assert main([str(tiny_experiment), "--out", str(target), "--force"]) == 2
    assert "not an lth_ray export" in capsys.readouterr().err
    assert os.listdir(target) == ["notes.txt"]


def test_foreign_and_corrupt_folders_are_clear_errors(tmp_path, tiny_experiment, capsys):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "a.txt").write_text("hello")
    with pytest.raises(ExperimentError, match="not a Tune experiment"):
        export_experiment(str(foreign), str(tmp_path / "o1"))
    corrupt = copy_experiment(tiny_experiment, tmp_path / "corrupt")
    for state in corrupt.glob("experiment_state-*.json"):
        state.write_text("{garbage")
    for folder, out in ((foreign, "o2"), (corrupt, "o3"), (tmp_path / "missing", "o4")):
        assert main([str(folder), "--out", str(tmp_path / out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and str(folder) in err[0]
        assert not (tmp_path / out).exists()


def test_cli_exit_codes_in_a_fresh_process(tiny_experiment, tmp_path):
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    ok = subprocess.run(
        [sys.executable, "-m", "lth_ray.cli", "export", str(tiny_experiment), "--out", str(tmp_path / "o")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ok.returncode == 0, ok.stderr
    assert str(tmp_path / "o") in ok.stdout and (tmp_path / "o" / "export.json").exists()
    bad = subprocess.run(
        [sys.executable, "-m", "lth_ray.cli", "export", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and len(bad.stderr.strip().splitlines()) == 1


def test_experiment_given_as_a_file_uri(tiny_experiment, tmp_path):
    out = export_experiment(f"file://{tiny_experiment}", str(tmp_path / "o"))
    assert json.loads((Path(out) / "export.json").read_text())["missing"] == []
    assert len(thesis.get_relative_spec_file_paths(out)) == 1


# ------------------------------------------------------------------ writers without Tune


def test_groups_with_the_same_time_get_distinct_prefixes(trials, tmp_path):
    other = [
        TrialResult(
            f"x{t.trial_id}",
            t.status,
            t.path.replace(t.trial_id, f"x{t.trial_id}"),
            t.config.replace(prune_rate_fc=0.3),
            t.rounds,
            None,
            f"x{t.tune_trial_id}",
            f"x{t.ticket_ref}",
        )
        for t in trials
    ]
    out = tmp_path / "two"
    out.mkdir()
    stamps = {t.tune_trial_id: {"timestamp": 1_700_000_000} for t in trials + other}
    manifest = write_export(trials + other, str(out), "/somewhere/exp", last_results=stamps)
    prefixes = [g["prefix"] for g in manifest["groups"]]
    assert len(prefixes) == 2 and len(set(prefixes)) == 2 and all(PREFIX_RE.match(p) for p in prefixes)
    shifted = [json.loads((out / f"{p}-lth_ray.json").read_text())["time_shift_s"] for p in prefixes]
    assert sorted(shifted) == [0, 1]
    rates = {json.loads((out / f"{p}-specs.json").read_text())["prune_rate_fc"] for p in prefixes}
    assert rates == {0.2, 0.3}
    _, rounds = thesis.load_parquet(str(out))
    assert len(rounds) == 2 * (2 * 3 + 4 * 2)


def test_duration_and_epoch_count_follow_the_thesis():
    assert thesis.format_duration(5.58634) == "5.5863sec"
    assert thesis.format_duration(138.2) == "2:18min"
    assert thesis.format_duration(119.6) == "2:00min"
    assert [
        thesis.epoch_count(d, i, 60)
        for d, i in [
            ("mnist", 50_000),
            ("cifar10", 20_000),
            ("cifar10", 25_000),
            ("cifar10", 30_000),
            ("fashion-mnist", 916),
        ]
    ] == [55, 27, 34, 40, 1]


def test_specs_with_foreign_keys_are_refused(tmp_path, prefix):
    raw = json.loads(Path(f"{prefix}-specs.json").read_text())
    path = tmp_path / "x-specs.json"
    path.write_text(json.dumps({**raw, "seeds": [0]}))
    with pytest.raises(ValueError, match="seeds"):
        thesis.get_specs_from_file(str(path))


def test_conv_with_batchnorm_one_shot_round_trips_without_tune(tiny_cifar10, tmp_path):
    """Conv names, BatchNorm buffers, one-shot's experiment name: a trajectory run in-process, then written."""
    from lth_ray.core.engine.trajectory import Trajectory
    from lth_ray.core.spec.config import TrajectoryConfig

    split = load_split("cifar10", data_root=str(tiny_cifar10))
    cfg = TrajectoryConfig(
        arch="custom",
        plan_conv=("8B", "M", 8),
        plan_fc=(16,),
        dataset="cifar10",
        iterations=20,
        eval_every=10,
        rounds=1,
        prune_rate_conv=0.1,
        method="one-shot",
        pruning="global",
        seed=3,
    ).validate()
    trajectory = Trajectory(cfg, split)
    store = RoundStore.at(str(tmp_path / "trial" / "rounds"))
    for result in trajectory.run_results():
        store.write_round(result)
    trial = TrialResult("t_00000", "TERMINATED", str(tmp_path / "trial"), cfg, StoredRounds(store))
    out = tmp_path / "conv"
    out.mkdir()
    manifest = write_export([trial], str(out), "/x")
    [group] = manifest["groups"]
    prefix = str(out / group["prefix"])
    assert PREFIX_RE.match(group["prefix"]) and group["prefix"].endswith("-Conv-CIFAR-10")
    specs = thesis.get_specs_from_file(f"{prefix}-specs.json")
    assert (specs.net, specs.experiment_name, specs.prune_method, specs.plan_conv) == (
        "Conv",
        "osp",
        "IMP-global",
        ["8B", "M", 8],
    )
    saved = torch.load(f"{prefix}-net0.pth", weights_only=True)
    assert list(saved)[:4] == ["conv.0.bias", "conv.0.weight_orig", "conv.0.weight_init", "conv.0.weight_mask"]
    assert saved["conv.1.num_batches_tracked"].dtype == torch.int64 and "conv.1.running_var" in saved
    assert "conv.4.weight_mask" in saved and "fc.0.weight_mask" in saved and "out.weight_mask" in saved
    [net] = thesis.get_models_from_files(prefix, specs)
    model = build_model(plan_config(cfg.plan_conv, cfg.plan_fc), in_shape_of("cifar10"))
    model.load_state_dict(store.trained(1))
    model.eval()
    assert [float(v) for v in evaluate(net, split.x_test, split.y_test)] == [
        float(v) for v in evaluate(model, split.x_test, split.y_test)
    ]
    h = thesis.get_experiment_histories_from_file(prefix)
    assert h.train_loss.shape == (1, 2, 2) and h.sparsity[0] == 1.0 and h.sparsity[1] < 1.0
