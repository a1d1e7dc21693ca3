"""What a ticket is made of, exported and analysed (issue 30): hand-made round files of a tiny fc net, no training.

The records carry the engine's anatomy keys (start accuracy, mask distance, sign flips, cost, the successive
path) or, for an older trajectory, none of them. The seeds' Jaccard overlap is checked against sets of kept
indices, the per-layer columns against the records, the tables against the Markdown, and exports written before
these columns existed must still load.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from lth_ray.core.engine.records import RoundResult, round_record  # noqa: E402
from lth_ray.core.engine.weights import initial_weights  # noqa: E402
from lth_ray.core.pruning.masks import compact, pack_masks  # noqa: E402
from lth_ray.core.spec.config import TrajectoryConfig  # noqa: E402
from lth_ray.core.store.rounds import RoundStore  # noqa: E402
from lth_ray.results import analysis as A  # noqa: E402
from lth_ray.results.experiment import StoredRounds, TrialResult  # noqa: E402
from lth_ray.results.export import rounds_table, seed_jaccard, successive_table, write_export  # noqa: E402
from lth_ray.results.export.parquet import successive_interpolation_table  # noqa: E402
from lth_ray.results.schema import ANATOMY, rounds_schema  # noqa: E402

SHAPES = {"fc.0": (4, 784), "out": (10, 4)}  # fc4's prunable layers (and its costed ones: every Linear)
PARAMS = 4 * 784 + 4 + 10 * 4 + 10
BASE = dict(arch="fc4", plan_fc=(4,), dataset="mnist", iterations=40, eval_every=20, rounds=2)
PATH = {  # a successive path as the engine records it (3 points)
    "alphas": [0.0, 0.5, 1.0],
    "val_loss": [0.5, 0.9, 0.6],
    "val_error": [0.2, 0.3, 0.21],
    "test_loss": [0.55, 0.95, 0.65],
    "test_error": [0.22, 0.31, 0.2],
    "error_barrier": 0.1,
    "loss_barrier": 0.35,
    "val_error_barrier": 0.095,
    "val_loss_barrier": 0.35,
    "seconds": 0.1,
}


def masks_of(seed: int, r: int) -> dict[str, torch.Tensor]:
    """A seed's mask at round r: each layer keeps the top 0.8^r of a seed's own scores (round 0: dense)."""
    g = torch.Generator().manual_seed(100 * seed + 7)
    out = {}
    for name, shape in SHAPES.items():
        scores = torch.rand(shape, generator=g)
        keep = max(1, round(scores.numel() * 0.8**r))
        out[name] = scores >= scores.flatten().sort(descending=True).values[keep - 1]
    return out


def cost(masks) -> dict:
    """The cost record of fc4 under `masks` (a Linear layer's dense FLOPs are its weights)."""
    layers = {}
    for name, m in masks.items():
        n, kept = m.numel(), int(m.sum())
        layers[name] = {"weights": n, "nonzero_weights": kept, "dense_flops": n, "flops": kept}
    pruned = sum(c["weights"] - c["nonzero_weights"] for c in layers.values())
    return {
        "params": PARAMS,
        "nonzero_params": PARAMS - pruned,
        "dense_flops": sum(c["dense_flops"] for c in layers.values()),
        "flops": sum(c["flops"] for c in layers.values()),
        "layers": layers,
    }


def anatomy(cfg: TrajectoryConfig, r: int, masks) -> dict:
    """The engine's anatomy keys of a round, with numbers made up per seed and round."""
    k = cfg.seed + 10 * r
    return {
        "start_val_loss": 2.0 + 0.01 * k,
        "start_val_acc": 0.1 + 0.01 * k,
        "start_test_loss": 2.1 + 0.01 * k,
        "start_test_acc": 0.12 + 0.01 * k + (0.05 if cfg.criterion != "large_final" else 0.0),
        "mask_distance": None if r == 0 else 0.1 * r,
        "layer_mask_distance": None if r == 0 else {"fc.0": 0.1 * r, "out": 0.05 * r},
        "sign_flip_share": 0.02 * (k + 1),
        "layer_sign_flip_share": {"fc.0": 0.02 * (k + 1), "out": None},
        "cost": cost(masks),
        **({"successive": PATH} if cfg.successive and cfg.method == "imp" and r >= 1 else {}),  # tickets only
    }


def member(folder: Path, trial_id: str, branch: str = "", old: bool = False, **settings) -> TrialResult:
    """A member with round files written by hand: rounds 0..2 for a ticket, 1..2 for a baseline (masks of the
    ticket of its seed); `old` leaves out every anatomy key, as records before lth_ray 0.5."""
    cfg = TrajectoryConfig(**{**BASE, **settings}).validate()
    store = RoundStore.at(str(folder / trial_id / "rounds"))
    weights = initial_weights(cfg)
    for r in range(0 if cfg.method == "imp" else 1, cfg.rounds + 1):
        masks = masks_of(cfg.seed, r)
        history = np.array([[1.0, 0.9 - 0.1 * r, 0.8, 0.95, 0.7 + 0.01 * r + 0.001 * cfg.seed]] * 2)
        record = round_record(cfg, r, masks, history, 0.5, cfg.iterations, torch.device("cpu"))
        record.update({} if old else anatomy(cfg, r, masks))
        store.write_round(RoundResult(record, pack_masks(masks), compact(weights, masks), None))
    return TrialResult(trial_id, "TERMINATED", str(folder / trial_id), cfg, StoredRounds(store), branch=branch)


@pytest.fixture(scope="module")
def trials(tmp_path_factory) -> list[TrialResult]:
    """Three seeds of a ticket measuring successive rounds, a signed-constant variant riding with seed 0, a
    ticket by another criterion (one seed), an older ticket (no anatomy keys), and a branch with one seed of the
    ticket's key (never compared with the trunk's seeds)."""
    folder = tmp_path_factory.mktemp("anatomy")
    made = [member(folder, f"t_{s:05d}", seed=s, successive=True) for s in range(3)]
    made += [member(folder, "t_00003", seed=0, successive=True, method="signed-constant")]
    made += [member(folder, "t_00004", seed=0, successive=True, criterion="magnitude_increase")]
    made += [member(folder, "t_00005", seed=0, old=True, prune_rate_fc=0.4)]
    made += [member(folder, "b.t_00000", branch="b", seed=3, successive=True)]
    return made


@pytest.fixture(scope="module")
def export(trials, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export")
    write_export(trials, str(out), "/x/anatomy", now=0.0)
    return out


def kept(masks) -> set[tuple[str, int]]:
    return {(name, i) for name, m in masks.items() for i in torch.nonzero(m.flatten()).flatten().tolist()}


# ------------------------------------------------------------------ the rounds table


def test_rounds_table_holds_the_records_anatomy_per_layer_and_nulls_for_older_records(trials):
    table = rounds_table(trials, "anatomy")
    assert table.schema == rounds_schema(["fc.0", "out"], ["fc.0", "out"])
    assert [f"{q}.out" for q in ("mask_distance", "sign_flip_share", "seed_jaccard", "flops", "nonzero_weights")] == [
        c for c in table.schema.names if c.endswith(".out") and not c.startswith("sparsity.")
    ]
    rows = table.to_pandas()
    for t in trials:
        for rec in t.records:
            [row] = rows[(rows.trial_id == t.trial_id) & (rows["round"] == rec["round"])].to_dict("records")
            if t.trial_id == "t_00005":  # older records: every anatomy number null, the recipe's defaults set
                assert all(pd.isna(row[name]) for name, _ in ANATOMY)
                assert all(pd.isna(row[c]) for c in row if c.split(".")[0] in ("mask_distance", "flops"))
                assert (row["criterion"], row["pruned_weights"], row["successive"]) == ("large_final", "zero", False)
                continue
            for key in ("start_val_loss", "start_val_acc", "start_test_loss", "start_test_acc", "sign_flip_share"):
                assert row[key] == rec[key], key
            assert row["params"] == PARAMS and row["flops"] == rec["cost"]["flops"]
            assert row["nonzero_params"] == PARAMS - sum(
                int((~m).sum()) for m in masks_of(t.config.seed, rec["round"]).values()
            )
            for layer, c in rec["cost"]["layers"].items():
                assert (row[f"flops.{layer}"], row[f"nonzero_weights.{layer}"]) == (c["flops"], c["nonzero_weights"])
            if rec["round"] == 0:
                assert pd.isna(row["mask_distance"]) and pd.isna(row["mask_distance.fc.0"])
            else:
                assert row["mask_distance.out"] == pytest.approx(0.05 * rec["round"])
            assert row["sign_flip_share.fc.0"] == rec["layer_sign_flip_share"]["fc.0"]
            assert pd.isna(row["sign_flip_share.out"])  # None in the record: nothing to count
            assert row["criterion"] == t.config.criterion and row["successive"] == t.config.successive


def test_seed_jaccard_is_the_mean_overlap_with_the_other_seeds_masks_read_once(trials, monkeypatch):
    reads: list[tuple[str, int]] = []
    for t in trials:
        original = t.rounds.masks
        monkeypatch.setattr(t.rounds, "masks", lambda r, t=t, f=original: reads.append((t.trial_id, r)) or f(r))
    overlaps = seed_jaccard(trials)
    # the three seeds' tickets, rounds 0..2 (seed 0's variant has no other seed of its own key: never read)
    assert sorted(reads) == sorted((f"t_{s:05d}", r) for s in range(3) for r in range(3))
    assert sorted(overlaps) == sorted(reads)
    for s in range(3):
        for r in range(3):
            mine = masks_of(s, r)
            others = [masks_of(o, r) for o in range(3) if o != s]
            by_hand = [len(kept(mine) & kept(o)) / len(kept(mine) | kept(o)) for o in others]
            overall, layers = overlaps[(f"t_{s:05d}", r)]
            assert overall == pytest.approx(sum(by_hand) / 2, rel=1e-12)
            for name in SHAPES:
                per = [
                    len(kept({name: mine[name]}) & kept({name: o[name]}))
                    / len(kept({name: mine[name]}) | kept({name: o[name]}))
                    for o in others
                ]
                assert layers[name] == pytest.approx(sum(per) / 2, rel=1e-12)
    assert overlaps[("t_00000", 0)] == (1.0, {"fc.0": 1.0, "out": 1.0})  # dense masks overlap wholly
    rows = rounds_table(trials, "anatomy").to_pandas().set_index(["trial_id", "round"])
    assert rows.loc[("t_00001", 2), "seed_jaccard"] == overlaps[("t_00001", 2)][0]
    assert rows.loc[("t_00001", 2), "seed_jaccard.out"] == overlaps[("t_00001", 2)][1]["out"]
    for alone in ("t_00003", "t_00004", "t_00005", "b.t_00000"):  # no other seed (the branch is apart)
        assert rows.loc[alone, "seed_jaccard"].isna().all() and rows.loc[alone, "seed_jaccard.fc.0"].isna().all()


def test_a_wrong_jaccard_fails_the_hand_computation():
    """The hand computation tells the Jaccard from what a slip would give (the intersection over one mask)."""
    a, b = masks_of(0, 2), masks_of(1, 2)
    by_hand = len(kept(a) & kept(b)) / len(kept(a) | kept(b))
    assert len(kept(a) & kept(b)) / len(kept(a)) != pytest.approx(by_hand)
    from lth_ray.core.pruning.dynamics import jaccard

    assert jaccard(a, b)[0] == pytest.approx(by_hand, rel=1e-12)


# ------------------------------------------------------------------ the successive path


def test_successive_tables_hold_the_path_of_every_measured_round(trials):
    table = successive_table(trials, "anatomy").to_pandas()
    measured = [(t.trial_id, r["round"]) for t in trials for r in t.records if "successive" in r]
    assert sorted(zip(table.trial_id, table["round"])) == sorted(measured)
    assert {r for _, r in measured} == {1, 2} and len(measured) == 2 * 5  # rounds >= 1 of the 5 measuring tickets
    row = table.iloc[0]
    assert (row.error_barrier, row.loss_barrier, row.val_error_barrier, row.val_loss_barrier) == (
        0.1,
        0.35,
        0.095,
        0.35,
    )
    assert (row.error_start, row.error_end, row.points) == (0.22, 0.2, 3)
    points = successive_interpolation_table(trials, "anatomy").to_pandas()
    assert len(points) == 3 * len(measured) and points["alpha"].tolist()[:3] == [0.0, 0.5, 1.0]
    assert points["test_error"].tolist()[:3] == PATH["test_error"]


def test_the_export_writes_the_successive_files_and_loads_them(export):
    manifest = json.loads((export / "export.json").read_text())
    assert {"successive.parquet", "successive_interpolation.parquet"} <= set(manifest["files"])
    assert "instability.parquet" not in manifest["files"]  # no path of two copies was measured
    exp = A.load_export(export)
    assert exp.instability is None and len(exp.successive) == 2 * 5  # rounds 1, 2 of the tickets that measured it
    assert len(exp.successive_interpolation) == 3 * len(exp.successive)
    sidecars = [json.loads(p.read_text()) for p in export.glob("*-lth_ray.json")]
    assert any("Paul et al. 2023" in v for s in sidecars for v in s["extra_tables"].values())


def older(export: Path, folder: Path) -> Path:
    """The export as lth_ray 0.4 would have written it: none of these columns, files or methods."""
    folder.mkdir()
    new = [name for name, _ in ANATOMY] + ["criterion", "pruned_weights", "successive"]
    for name in ("histories.parquet", "rounds.parquet"):
        frame = pq.read_table(export / name).to_pandas()
        frame = frame[~frame["method"].isin(A.INIT_VARIANTS)]
        frame.drop(columns=[c for c in frame.columns if c in new or c.split(".")[0] in A.DYNAMICS]).to_parquet(
            folder / name
        )
    return folder


def test_an_export_before_these_columns_loads_with_nan_and_the_recipes_defaults(export, tmp_path):
    old = older(export, tmp_path / "old")
    exp = A.load_export(old)
    assert exp.successive is None
    assert all(exp.rounds[c].isna().all() for c, _ in ANATOMY)
    assert (exp.rounds["criterion"] == "large_final").all() and not exp.rounds["successive"].any()
    assert (exp.histories["pruned_weights"] == "zero").all()
    summary = A.summarise(exp.rounds)
    assert not A.has_metric(summary, "start_test_acc_mean") and not A.has_flops(summary)


# ------------------------------------------------------------------ analysis


def test_criteria_are_configurations_and_compared_per_round(export):
    summary = A.summarise(A.load_export(export).rounds)
    assert sorted(A.config_labels(summary).values()) == [
        "fc4 fc0.2 large_final",  # the branch's member joins its configuration: it is the same recipe
        "fc4 fc0.2 magnitude_increase",
        "fc4 fc0.4 large_final",  # measuring the successive barrier or not names no configuration
    ]
    [(shared, rows)] = A.criterion_comparisons(summary)
    assert (shared["prune_rate_fc"], shared["method"]) == (0.2, "imp") and "criterion" not in shared
    trained, untrained = A.criteria_table(rows), A.criteria_table(rows, "start_test_acc")
    assert list(trained.columns) == ["percent_remaining", "large_final", "magnitude_increase"]
    assert trained["percent_remaining"].tolist() == pytest.approx([100.0, 80.006297, 64.011335], rel=1e-6)
    # seeds 0, 1, 2 and the branch's 3: start accuracy 0.12 + 0.01 (seed + 10 r), +0.05 for magnitude_increase
    assert untrained["large_final"].tolist() == pytest.approx([0.135, 0.235, 0.335])
    assert untrained["magnitude_increase"].tolist() == pytest.approx([0.17, 0.27, 0.37])
    assert A.criterion_label("large_final", "frozen-init") == "large_final frozen-init"


def test_anatomy_summaries(export):
    exp = A.load_export(export)
    summary = A.summarise(exp.rounds)
    mine = (summary["method"] == "imp") & (summary["criterion"] == "large_final") & (summary["prune_rate_fc"] == 0.2)
    ticket = summary[mine]
    assert ticket["seeds"].tolist() == [4, 4, 4]  # the branch's seed 3 is the same configuration
    rows = exp.rounds[(exp.rounds["method"] == "imp") & (exp.rounds["criterion"] == "large_final")]
    expected = rows[rows["prune_rate_fc"] == 0.2].groupby("round")
    assert ticket["start_test_acc_mean"].tolist() == pytest.approx(expected["start_test_acc"].mean().tolist())
    key = tuple(ticket.iloc[0][A.CONFIG])
    assert A.variant_methods(summary, key) == ["imp", "signed-constant"]
    table = A.dynamics_table(summary, key, "imp")
    assert table["speedup"].tolist() == pytest.approx((ticket["dense_flops_mean"] / ticket["flops_mean"]).tolist())
    assert math.isnan(table.loc[0, "mask_distance"]) and table.loc[2, "mask_distance"] == pytest.approx(0.2)
    assert table["seed_jaccard"].tolist() == pytest.approx(expected["seed_jaccard"].mean().tolist())


# ------------------------------------------------------------------ the report


def drawn(exp, x: str = "density") -> dict:
    """The section's figures by file name, drawn but not written (the report's own `save` writes three files)."""
    from matplotlib.figure import Figure

    from lth_ray.results.report import _slug
    from lth_ray.results.report_anatomy import anatomy_figures

    figures = {}

    def subplots(*grid, **kw):
        fig = Figure(**kw)
        return fig, fig.subplots(*grid, squeeze=False) if grid else fig.subplots()

    anatomy_figures(exp, subplots, lambda fig, name: figures.setdefault(name, fig), _slug, x)
    return figures


def test_the_figures_are_drawn_where_the_experiment_has_the_numbers(export, tmp_path):
    figures = drawn(A.load_export(export), x="flops")
    assert sorted(figures) == [
        "criteria-fc4-mnist-imp-k-0.png",
        "init_variants-fc4-fc0.2-large-final.png",
        "mask_dynamics_vs_sparsity.png",
        "successive_interpolation-fc4-large-final.png",
        "successive_interpolation-fc4-magnitude-increase.png",
        "successive_vs_sparsity.png",
        "supermask_vs_sparsity.png",
    ]
    supermask = figures["supermask_vs_sparsity.png"].axes[0]
    assert "FLOPs" in supermask.get_xlabel() and {line.get_label() for line in supermask.lines} == {
        "fc4 fc0.2 large_final",
        "fc4 fc0.2 magnitude_increase",
    }
    criteria = figures["criteria-fc4-mnist-imp-k-0.png"].axes
    assert [line.get_label() for line in criteria[1].lines] == ["large_final", "magnitude_increase"]
    assert criteria[1].lines[1].get_ydata().tolist() == pytest.approx([17.0, 27.0, 37.0])  # percent, untrained
    distance, flips, jaccard = figures["mask_dynamics_vs_sparsity.png"].axes
    assert "Percent of weights remaining" in jaccard.get_xlabel()  # the dynamics stay against density
    assert [line.get_label() for line in jaccard.lines] == [
        "fc4 fc0.2 large_final"
    ]  # one seed of magnitude_increase: no line
    assert jaccard.lines[0].get_ydata()[1:].tolist() == pytest.approx([66.46, 46.61], abs=0.01)
    assert drawn(A.load_export(older(export, tmp_path / "old"))) == {}  # an older export: nothing of this section


def test_accuracy_against_flops_draws_the_mean_flops_and_falls_back_without_them(export):
    from matplotlib.figure import Figure

    summary = A.summarise(A.load_export(export).rounds)
    ax = Figure().subplots()
    A.plot_accuracy_vs_sparsity(ax, summary, x="flops")
    assert "FLOPs" in ax.get_xlabel()
    # the tickets' mean FLOPs per round (the older ticket recorded none: its points are NaN, not drawn)
    lines = [c.lines[0] for c in ax.containers]  # each errorbar's data line
    assert sum(np.allclose(line.get_xdata(), [3176, 2541, 2033]) for line in lines) == 2
    assert not A.has_flops(summary[summary["prune_rate_fc"] == 0.4]) and A.has_flops(summary)
    from lth_ray.results.report import main

    with pytest.raises(SystemExit):
        main([str(export), "--x", "params"])


def test_the_sections_tables_equal_its_markdown(export):
    from lth_ray.results.report import _slug
    from lth_ray.results.report_anatomy import HEADERS, anatomy_markdown, anatomy_tables

    exp = A.load_export(export)
    tables = anatomy_tables(exp, _slug)
    assert sorted(tables) == [
        "criteria-fc4-mnist-imp-k-0",
        "criteria_supermask-fc4-mnist-imp-k-0",
        "dynamics-fc4-fc0.2-large-final",
        "dynamics-fc4-fc0.2-magnitude-increase",
        "successive",
        "supermask-fc4-fc0.2-large-final",
        "supermask-fc4-fc0.2-magnitude-increase",
    ]
    md = "\n".join(anatomy_markdown(exp, _slug))
    dynamics = tables["dynamics-fc4-fc0.2-large-final"]
    assert list(dynamics.columns) == [
        "round",
        "percent_remaining",
        "start_test_acc",
        *A.DYNAMICS,
        "nonzero_params",
        "flops",
        "speedup",
    ]
    header = "| " + " | ".join(HEADERS.get(c, c) for c in dynamics.columns) + " |"
    body = md[md.index(header) :].splitlines()[2:5]
    for (_, r), line in zip(dynamics.iterrows(), body, strict=True):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[:3] == [str(int(r["round"])), f"{r['percent_remaining']:.1f}", f"{r['start_test_acc']:.2f}"]
        assert cells[6:] == [f"{r['nonzero_params']:.0f}", f"{r['flops']:.0f}", f"{r['speedup']:.2f}"]
    assert dynamics["start_test_acc"].tolist() == pytest.approx([13.5, 23.5, 33.5])  # percent; the branch's seed in
    supermask = tables["supermask-fc4-fc0.2-large-final"]
    assert list(supermask.columns) == ["round", "percent_remaining", "imp", "signed-constant"]
    successive = tables["successive"]
    assert successive["error_barrier_mean"].tolist() == pytest.approx([10.0] * 4)
    assert "| fc4 large_final | imp | 1 | 80.0 | 4 | 10.00 [10.00, 10.00] | 0.350 |" in md
