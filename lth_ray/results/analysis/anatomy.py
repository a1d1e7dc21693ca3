"""What a ticket is made of, from the frames: its accuracy before training (Zhou et al. 2019's supermask), its
mask criterion and init variants, how its mask and signs move from round to round and between seeds, its cost,
and the barrier between successive rounds (Paul et al. 2023).

The numbers are the rounds' columns of `schema.ANATOMY` (means over seeds by `summarise`); the plots draw on an
`ax` they are given, against weights remaining or forward FLOPs (`x="flops"`), each line only where it has data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lth_ray.core.methods.init_variants import VARIANTS
from lth_ray.core.pruning.criteria import CRITERIA
from lth_ray.core.spec.config import TICKETS
from lth_ray.results.analysis.frames import CONFIG, config_labels, matching
from lth_ray.results.analysis.plots import plot_instability_vs_sparsity, x_axis, x_values
from lth_ray.results.schema import ANATOMY

ANATOMY_METRICS = [name for name, _ in ANATOMY]
INIT_VARIANTS = tuple(VARIANTS)  # signed-constant, reshuffle, signed-reshuffle, signed-reinit
CRITERION = ["criterion", "pruned_weights"]  # the settings a comparison of criteria varies
DYNAMICS = ("mask_distance", "sign_flip_share", "seed_jaccard")
SHARES = ("start_val_acc", "start_test_acc", *DYNAMICS)  # fractions, drawn and tabulated in percent
LABELS = {
    "start_test_acc": "Test accuracy before training (%)",
    "start_val_acc": "Validation accuracy before training (%)",
    "test_acc_at_early_stop": "Test accuracy at early stop (%)",
    "final_test_acc": "Test accuracy (final) (%)",
    "mask_distance": "Mask distance to the previous round (%)",
    "sign_flip_share": "Kept weights whose sign training flipped (%)",
    "seed_jaccard": "Jaccard overlap with the other seeds' masks (%)",
}


def has_metric(frame: pd.DataFrame | None, column: str) -> bool:
    """Whether `frame` has `column` with at least one finite value (older experiments recorded none)."""
    if frame is None or column not in frame.columns:
        return False
    return bool(np.isfinite(pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)).any())


def _scale(metric: str) -> float:
    return 100.0 if metric in SHARES or "_acc" in metric or "error" in metric else 1.0


def _plot_groups(ax, rows: pd.DataFrame, column: str, order: list, metric: str, x: str, names=None) -> None:
    """One line per value of `column` (in `order`): mean over seeds, min/max as a band, NaN rounds left out."""
    import matplotlib

    colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    scale = _scale(metric)
    drawn: list[float] = []
    reference: list[float] = []
    for i, value in enumerate(order):
        mine = rows[rows[column] == value].sort_values("round")
        mine = mine[np.isfinite(mine[f"{metric}_mean"].to_numpy(dtype=float))]
        if mine.empty:
            continue
        xs, colour = x_values(mine, x), colours[i % len(colours)]
        style = "-" if i < len(colours) else "--"
        label = (names or {}).get(value, str(value))
        ax.plot(
            xs, mine[f"{metric}_mean"] * scale, color=colour, linestyle=style, marker="o", markersize=3, label=label
        )
        if f"{metric}_min" in mine:
            lo, hi = (mine[f"{metric}_{s}"].to_numpy(dtype=float) * scale for s in ("min", "max"))
            ax.fill_between(xs, lo, hi, color=colour, alpha=0.1, linewidth=0)
        drawn += list(xs)
        reference = list(xs) if len(xs) > len(reference) else reference
    x_axis(ax, drawn, reference, x)
    ax.set_ylabel(LABELS.get(metric, metric))
    ax.grid(True, alpha=0.3)
    if drawn:
        ax.legend(fontsize="small" if len(order) <= 8 else "xx-small", ncol=1 + len(order) // 10)


def plot_anatomy_vs_sparsity(
    ax, summary: pd.DataFrame, metric: str = "start_test_acc", methods=TICKETS, x: str = "density"
) -> None:
    """`metric` (a column of `schema.ANATOMY`, or any summarised metric) against weights remaining or FLOPs:
    one line per configuration and method among `methods` (so one per criterion where criteria differ), mean
    over seeds with min/max as a band."""
    lines = summary[summary["method"].isin(methods)]
    labels = config_labels(lines) if not lines.empty else {}
    configs = [labels.get(key, str(key[0])) for key in lines[CONFIG].itertuples(index=False, name=None)]
    several = lines["method"].nunique() > 1
    names = [f"{c} ({m})" if several else c for c, m in zip(configs, lines["method"])]
    _plot_groups(ax, lines.assign(line=names), "line", list(dict.fromkeys(names)), metric, x)


def plot_supermask_vs_sparsity(ax, summary: pd.DataFrame, methods=TICKETS, x: str = "density") -> None:
    """Zhou et al.'s supermask accuracy: test accuracy at each round's start weights with its mask, before any
    training, against weights remaining; one line per configuration (criterion) and method."""
    plot_anatomy_vs_sparsity(ax, summary, "start_test_acc", methods, x)


def plot_dynamics_vs_sparsity(ax, summary: pd.DataFrame, metric: str = "mask_distance", methods=TICKETS) -> None:
    """Mask distance to the previous round, sign-flip share or seed Jaccard (`DYNAMICS`) in percent against
    weights remaining; one line per configuration and method."""
    plot_anatomy_vs_sparsity(ax, summary, metric, methods)


# ------------------------------------------------------------------ criteria and init variants


def criterion_label(criterion: str, pruned_weights: str = "zero") -> str:
    """A criterion as the report names it: `magnitude_increase`, or `large_final frozen-init` with frozen weights."""
    return criterion if pruned_weights == "zero" else f"{criterion} {pruned_weights}"


def _criterion_rank(label: str) -> tuple:
    name = label.split(" ")[0]
    return (list(CRITERIA).index(name) if name in CRITERIA else len(CRITERIA), label)


def criterion_comparisons(summary: pd.DataFrame, methods=TICKETS) -> list[tuple[dict, pd.DataFrame]]:
    """The rows of `methods` (the tickets) of every group of configurations that differ only in their mask
    criterion or pruned weights, where the group holds more than one: (shared settings, rows with a
    `criterion_label` column)."""
    rows = summary[summary["method"].isin(methods)].copy()
    if rows.empty or not set(CRITERION) <= set(rows.columns):
        return []
    rows["criterion_label"] = [criterion_label(c, p) for c, p in zip(rows["criterion"], rows["pruned_weights"])]
    shared = [c for c in CONFIG if c not in CRITERION] + ["method"]
    return [
        (group.iloc[0][shared].to_dict(), group)
        for _, group in rows.groupby(shared, dropna=False, sort=False)
        if group["criterion_label"].nunique() > 1
    ]


def criteria_order(rows: pd.DataFrame) -> list[str]:
    """A comparison's criteria in the registry's order (large_final first), frozen variants after each."""
    return sorted(set(rows["criterion_label"]), key=_criterion_rank)


def plot_criteria_vs_sparsity(ax, rows: pd.DataFrame, metric: str = "test_acc_at_early_stop", x: str = "density"):
    """One comparison's (`criterion_comparisons`) `metric` against weights remaining or FLOPs, one line per
    criterion: Zhou et al.'s figures of the criteria (test accuracy, or `start_test_acc` for the supermask)."""
    _plot_groups(ax, rows, "criterion_label", criteria_order(rows), metric, x)


def criteria_table(rows: pd.DataFrame, metric: str = "test_acc_at_early_stop") -> pd.DataFrame:
    """One comparison's `metric` (mean over seeds) per round (rows, with the percent remaining) and criterion
    (columns, `criteria_order`)."""
    wide = rows.pivot_table(index="round", columns="criterion_label", values=f"{metric}_mean", dropna=False)
    wide = wide[[c for c in criteria_order(rows) if c in wide.columns]]
    wide.insert(0, "percent_remaining", rows.groupby("round")["sparsity"].mean() * 100)
    return wide


def variant_methods(summary: pd.DataFrame, key: tuple) -> list[str]:
    """The methods of one configuration an init-variant comparison draws: the ticket, its re-init and random
    pruning, then the init variants present (none: no comparison)."""
    present = set(matching(summary, key)["method"])
    if not present & set(INIT_VARIANTS):
        return []
    return [m for m in (*TICKETS, "reinit", "random-prune", *INIT_VARIANTS) if m in present]


def plot_init_variants(ax, summary: pd.DataFrame, key: tuple, metric: str = "test_acc_at_early_stop", x="density"):
    """Zhou et al.'s init variants of one configuration: `metric` against weights remaining or FLOPs, one line
    per method (`variant_methods`): the ticket's own start, signed constant, reshuffled, and the re-inits."""
    methods = variant_methods(summary, key)
    _plot_groups(ax, matching(summary, key), "method", methods, metric, x)


# ------------------------------------------------------------------ dynamics, cost and successive rounds


def dynamics_table(summary: pd.DataFrame, key: tuple, method: str) -> pd.DataFrame:
    """One configuration's `method` per round: percent remaining, its mean supermask accuracy, mask distance,
    sign-flip share and seed Jaccard (fractions), nonzero parameters, forward FLOPs and the FLOPs speed-up
    (dense / masked, ShrinkBench's)."""
    rows = matching(summary, key)
    rows = rows[rows["method"] == method].sort_values("round").set_index("round")
    out = pd.DataFrame({"percent_remaining": rows["sparsity"] * 100}, index=rows.index)
    for m in ("start_test_acc", *DYNAMICS, "nonzero_params", "flops"):
        out[m] = rows.get(f"{m}_mean", np.nan)
    dense = rows.get("dense_flops_mean", np.nan)
    out["speedup"] = dense / out["flops"]
    return out


def plot_successive_vs_sparsity(ax, successive: pd.DataFrame, spread: str = "minmax") -> None:
    """Paul et al.'s barrier between successive rounds (round r - 1's trained ticket under round r's mask to
    round r's) against weights remaining, drawn as the instability is; the 2% line dashed."""
    plot_instability_vs_sparsity(ax, successive, spread)
    ax.set_ylabel("Successive rounds: test error barrier (%)")
