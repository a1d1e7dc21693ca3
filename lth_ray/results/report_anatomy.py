"""The report's part on what a ticket is made of: figures, a Markdown section and its tables, each only where the
experiment has the numbers (experiments before lth_ray 0.5 recorded none of them).

- Supermask accuracy (Zhou et al. 2019): test accuracy at each round's start weights with its mask, untrained.
- Mask criteria and init variants (Zhou et al. 2019): accuracy per criterion, per init variant.
- Mask dynamics: Hamming distance to the previous round's mask, sign flips of the kept weights (Gadhikar &
  Burkholz 2024), Jaccard overlap between seeds; the cost of a forward pass (ShrinkBench's FLOPs).
- Successive rounds (Paul et al. 2023): the error barrier between consecutive rounds' tickets, beside the
  instability.

The tables hold the Markdown's numbers in its units (fractions in percent) and are written as CSV and LaTeX by
`tables.write_tables`, under the names `anatomy_tables` gives them.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from lth_ray.core.spec.config import TICKETS
from lth_ray.results import analysis as A
from lth_ray.results.tables import _digits

SHARE_COLUMNS = ("start_test_acc", *A.DYNAMICS)  # fractions in the frames, percent in the tables
SUCCESSIVE_TEXT = (
    "Error barrier on the test set (percent) along the linear path from round r - 1's trained ticket, under round "
    "r's mask, to round r's trained ticket (Paul et al. 2023), mean [min, max] over seeds, and the mean loss "
    "barrier. Paul et al. find it near zero while the tickets still match the dense net; the figure draws "
    f"Frankle et al.'s {100 * A.STABLE_BARRIER:g}% stability line beside it."
)


def _percent(frame: pd.DataFrame, columns) -> pd.DataFrame:
    out = frame.copy()
    cols = [c for c in columns if c in out.columns]
    out[cols] = 100 * out[cols]
    return out


def _supermask_configs(summary: pd.DataFrame) -> dict[tuple, str]:
    return {
        key: label
        for key, label in A.config_labels(summary).items()
        if A.has_metric(A.matching(summary, key), "start_test_acc_mean")
    }


def _titles(comparisons, slug) -> list[str]:
    """A unique file-name-safe title per criteria comparison (its net, data set, ticket and rewind point)."""
    titles: list[str] = []
    for shared, _ in comparisons:
        title = slug(A.retrain_title(shared))
        titles.append(title if title not in titles else f"{title}-{len(titles) + 1}")
    return titles


def anatomy_tables(exp: A.Experiment, slug) -> dict[str, pd.DataFrame]:
    """Every table of the section by file stem: `supermask-<configuration>` (each method's test accuracy
    before training per round), `criteria-<comparison>` and `criteria_supermask-<comparison>` (per criterion,
    trained and untrained), `dynamics-<configuration>` (the ticket's mask distance, sign flips, seed Jaccard,
    nonzero parameters and FLOPs per round) and `successive` (the barrier per round)."""
    if exp.rounds.empty:
        return {}
    summary = A.summarise(exp.rounds)
    tables = {}
    for key, label in _supermask_configs(summary).items():
        wide = A.methods_table(summary, key, "start_test_acc")
        tables[f"supermask-{slug(label)}"] = _percent(wide, wide.columns[1:]).reset_index()
    comparisons = A.criterion_comparisons(summary)
    for title, (_, rows) in zip(_titles(comparisons, slug), comparisons):
        for stem, metric in (("criteria", "test_acc_at_early_stop"), ("criteria_supermask", "start_test_acc")):
            wide = A.criteria_table(rows, metric)
            tables[f"{stem}-{title}"] = _percent(wide, wide.columns[1:]).reset_index()
    for key, label in A.config_labels(summary).items():
        ticket = A.ticket_method(A.matching(summary, key))
        if ticket is None:
            continue
        table = A.dynamics_table(summary, key, ticket)
        if any(A.has_metric(table, c) for c in (*A.DYNAMICS, "flops")):
            tables[f"dynamics-{slug(label)}"] = _percent(table, SHARE_COLUMNS).reset_index()
    if exp.successive is not None and not exp.successive.empty:
        tables["successive"] = successive_table(exp.successive)
    return tables


def successive_table(successive: pd.DataFrame) -> pd.DataFrame:
    """The barrier per configuration and round: % remaining, seeds, mean/min/max (percent), mean loss barrier."""
    labels = A.config_labels(successive)
    rows = A.summarise(successive, metrics=["error_barrier", "loss_barrier"])
    return pd.DataFrame(
        [
            {
                "configuration": labels.get(tuple(r[A.CONFIG]), r["arch"]),
                "method": r["method"],
                "round": int(r["round"]),
                "percent_remaining": 100 * r["sparsity"],
                "seeds": int(r["seeds"]),
                **{f"error_barrier_{s}": 100 * r[f"error_barrier_{s}"] for s in ("mean", "min", "max")},
                "loss_barrier_mean": r["loss_barrier_mean"],
            }
            for _, r in rows.sort_values(A.CONFIG + ["method", "round"]).iterrows()
        ]
    )


# ------------------------------------------------------------------ Markdown


HEADERS = {  # the Markdown's names of the tables' columns (a method's or criterion's name stays as it is)
    "percent_remaining": "% remaining",
    "start_test_acc": "test acc before training",
    "mask_distance": "mask distance",
    "sign_flip_share": "sign flips",
    "seed_jaccard": "seed Jaccard",
    "nonzero_params": "nonzero params",
    "flops": "FLOPs",
    "speedup": "FLOPs speed-up",
    "error_barrier": "error barrier",
    "loss_barrier": "loss barrier",
}


def _cell(column: str, v) -> str:
    if v is None or v is pd.NA or (isinstance(v, float) and pd.isna(v)):
        return "n/a"
    return f"{v:.{_digits(column)}f}" if isinstance(v, float) else str(v)


def markdown_table(frame: pd.DataFrame) -> str:
    """A table's frame as Markdown with the LaTeX table's digits ("n/a" for missing values)."""
    header = [HEADERS.get(str(c), str(c)) for c in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * frame.shape[1]]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(c, v) for c, v in zip(frame.columns, row)) + " |")
    return "\n".join(lines)


def _successive_rows(frame: pd.DataFrame) -> pd.DataFrame:
    spread = [
        f"{r.error_barrier_mean:.2f} [{r.error_barrier_min:.2f}, {r.error_barrier_max:.2f}]"
        for r in frame.itertuples(index=False)
    ]
    cols = ["configuration", "method", "round", "percent_remaining", "seeds"]
    return frame[cols].assign(error_barrier=spread, loss_barrier=frame["loss_barrier_mean"])


def _labelled(stems: list[str], labels: dict[str, str], tables: dict[str, pd.DataFrame]) -> list[str]:
    """Each table under its configuration's heading, as Markdown lines."""
    return [line for stem in stems for line in (f"#### {labels[stem]}", "", markdown_table(tables[stem]), "")]


def anatomy_markdown(exp: A.Experiment, slug) -> list[str]:
    """The section "What a ticket is made of" of summary.md (no lines where the experiment has none of it)."""
    tables = anatomy_tables(exp, slug)
    if not tables:
        return []
    summary = A.summarise(exp.rounds)
    labels = {f"supermask-{slug(label)}": label for label in A.config_labels(summary).values()}
    labels.update({f"dynamics-{slug(label)}": label for label in A.config_labels(summary).values()})
    parts = ["## What a ticket is made of", ""]
    supermask = [stem for stem in tables if stem.startswith("supermask-")]
    if supermask:
        parts += [
            "### Supermask accuracy",
            "",
            "Test accuracy (mean over seeds, percent) of each method at its round's start weights with the round's "
            "mask, before any training (Zhou et al. 2019's supermask; round 0 is the dense net at its start).",
            "",
        ]
        parts += _labelled(supermask, labels, tables)
    comparisons = A.criterion_comparisons(summary)
    if comparisons:
        parts += [
            "### Mask criteria",
            "",
            "The tickets of configurations that differ only in their mask criterion (Zhou et al. 2019), per round: "
            "test accuracy at early stop and before training, mean over seeds, percent.",
            "",
        ]
        for title, (shared, _) in zip(_titles(comparisons, slug), comparisons):
            for stem, when in (("criteria", "after training"), ("criteria_supermask", "before training")):
                heading = f"#### {A.retrain_title(shared)}: {when}"
                parts += [heading, "", markdown_table(tables[f"{stem}-{title}"]), ""]
    dynamics = [stem for stem in tables if stem.startswith("dynamics-")]
    if dynamics:
        parts += [
            "### Mask dynamics and cost",
            "",
            "The ticket per round, mean over seeds: its test accuracy before training, the share of prunable weights "
            "whose kept/pruned state differs from its previous round's mask (normalised Hamming distance), the share "
            "of kept weights whose sign training flipped, the Jaccard overlap of its mask with the other seeds' at "
            "the same round (all percent), its nonzero parameters, the multiply-accumulates of one example's "
            "forward pass (FLOPs, ShrinkBench's count) and the FLOPs speed-up over the dense net.",
            "",
        ]
        parts += _labelled(dynamics, labels, tables)
    if "successive" in tables:
        parts += [
            "### Successive rounds",
            "",
            SUCCESSIVE_TEXT,
            "",
            markdown_table(_successive_rows(tables["successive"])),
        ]
        parts += [""]
    return parts


# ------------------------------------------------------------------ figures


def anatomy_figures(exp: A.Experiment, subplots, save, slug, x: str = "density") -> None:
    """Draw the section's figures with the report's `subplots` and `save` (PNG, PDF and SVG); `x` is the
    accuracy plots' axis ("density" or "flops")."""
    if exp.rounds.empty:
        return
    summary = A.summarise(exp.rounds)
    if A.has_metric(summary, "start_test_acc_mean"):
        fig, ax = subplots(figsize=(7, 4.5))
        A.plot_supermask_vs_sparsity(ax, summary, x=x)
        ax.set_title("Supermask accuracy: the round's mask on its start weights, untrained")
        save(fig, "supermask_vs_sparsity.png")
    comparisons = A.criterion_comparisons(summary)
    for title, (shared, rows) in zip(_titles(comparisons, slug), comparisons):
        fig, axes = subplots(1, 2, figsize=(13, 4.8))
        A.plot_criteria_vs_sparsity(axes[0, 0], rows, "test_acc_at_early_stop", x)
        A.plot_criteria_vs_sparsity(axes[0, 1], rows, "start_test_acc", x)
        fig.suptitle(f"{A.retrain_title(shared)}: mask criteria (left trained, right untrained)")
        save(fig, f"criteria-{title}.png")
    for key, label in A.config_labels(summary).items():
        if A.variant_methods(summary, key):
            fig, axes = subplots(1, 2, figsize=(13, 4.8))
            A.plot_init_variants(axes[0, 0], summary, key, "test_acc_at_early_stop", x)
            A.plot_init_variants(axes[0, 1], summary, key, "start_test_acc", x)
            fig.suptitle(f"{label}: init variants (left trained, right untrained)")
            save(fig, f"init_variants-{slug(label)}.png")
    dynamics = [m for m in A.DYNAMICS if A.has_metric(summary, f"{m}_mean")]
    if dynamics:  # one figure, a panel each: the report draws each figure three times (PNG, PDF, SVG)
        fig, axes = subplots(1, len(dynamics), figsize=(6 * len(dynamics), 4.5))
        for ax, metric in zip(axes[0], dynamics):
            chance = metric == "seed_jaccard"  # random pruning's overlap: what chance gives
            A.plot_dynamics_vs_sparsity(ax, summary, metric, (*TICKETS, "random-prune") if chance else TICKETS)
        save(fig, "mask_dynamics_vs_sparsity.png")
    if exp.successive is not None and not exp.successive.empty:
        _successive_figures(exp, subplots, save, slug)


def _successive_figures(exp: A.Experiment, subplots, save, slug) -> None:
    """The successive barrier beside the instability (same y axis), and each configuration's paths."""
    assert exp.successive is not None
    panels: list[tuple[Callable, pd.DataFrame, str]] = [
        (A.plot_successive_vs_sparsity, exp.successive, "Successive rounds (Paul et al. 2023)")
    ]
    if exp.instability is not None and not exp.instability.empty:
        panels.insert(0, (A.plot_instability_vs_sparsity, exp.instability, "Two copies (instability)"))
    fig, axes = subplots(1, len(panels), figsize=(6.5 * len(panels), 4.5))
    for ax, (draw, frame, title) in zip(axes[0], panels):
        draw(ax, frame)
        ax.set_title(title)
    low = min(ax.get_ylim()[0] for ax in axes[0])
    high = max(ax.get_ylim()[1] for ax in axes[0])
    for ax in axes[0]:
        ax.set_ylim(low, high)
    save(fig, "successive_vs_sparsity.png")
    curves = exp.successive_interpolation
    if curves is None or curves.empty:
        return
    for key, label in A.config_labels(exp.successive).items():
        fig, axes = subplots(1, 2, figsize=(12, 4.5))
        mine = A.matching(curves, key)
        A.plot_interpolation(axes[0, 0], mine, metric="test_error")
        A.plot_interpolation(axes[0, 1], mine, metric="test_loss")
        axes[0, 1].set_ylabel("Test loss")
        fig.suptitle(f"{label}: linear path from round r - 1's ticket (under round r's mask) to round r's")
        save(fig, f"successive_interpolation-{slug(label)}.png")
