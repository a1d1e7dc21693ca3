"""Paper-style plots: each draws on an `ax` it is given and never chooses a backend (notebooks and Agg alike).

The x axis is the thesis' percent of weights remaining: log base 2, inverted, ticks on the pruning ladder.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from lth_ray.core.spec.config import TICKETS
from lth_ray.results.analysis.frames import config_labels, matching
from lth_ray.results.analysis.summaries import (
    PAPER_BASELINES,
    STABLE_BARRIER,
    _dense,
    method_order,
    split_label,
    summarise,
)
from lth_ray.results.schema import LAYER_PREFIX


def ladder_ticks(percents, max_ticks: int = 9) -> list[float]:
    """Ticks for a percent-remaining axis: every k-th level, k chosen so that ticks halve (about 2^-p), as in
    the paper (Lenet: 100, 51.3, 26.3, 13.5, 7.0, 3.6, 1.9); every level when that leaves fewer than three."""
    values = np.unique(np.asarray([p for p in percents if p > 0], dtype=float))[::-1]
    if values.size < 2:
        return [float(v) for v in values] or [100.0]
    per_level = math.log2(values[0] / values[-1]) / (values.size - 1)  # mean halvings per level
    ticks = values[:: max(1, round(1 / per_level))]
    if ticks.size < 3:
        ticks = values[:: max(1, math.ceil(values.size / max_ticks))]
    return [float(v) for v in ticks]


def _fmt_percent(v: float) -> str:
    return f"{v:.0f}" if v >= 99.95 else f"{v:.1f}" if v >= 0.95 else f"{v:.2g}"


def sparsity_axis(ax, percents, reference=None, label: str = "Percent of weights remaining", fmt=None) -> None:
    """The thesis' sparsity axis: log base 2, inverted so the dense net is on the left; ladder ticks taken
    from `reference` (one line's levels; two archs' ladders would interleave) or from `percents`, written by
    `fmt` (default: percent)."""
    from matplotlib.ticker import FixedLocator, NullLocator

    ticks = ladder_ticks(percents if reference is None else reference)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([(fmt or _fmt_percent)(t) for t in ticks])
    lo, hi = min(percents), max(percents)
    ax.set_xlim(hi * 2**0.15, lo / 2**0.15)  # reversed limits: the axis is inverted
    ax.set_xlabel(label)


# What the x axis of a plot against density may be: the percent of weights remaining (the thesis'), or the
# forward FLOPs of one example through the masked net (`cost`: multiply-accumulates, ShrinkBench's count).
X_AXES = ("density", "flops")


def _fmt_count(v: float) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= scale:
            return f"{v / scale:.3g}{suffix}"
    return f"{v:.3g}"


def x_values(rows: pd.DataFrame, x: str = "density") -> np.ndarray:
    """A summary's x values: percent of weights remaining, or the mean forward FLOPs over seeds (`flops_mean`)."""
    if x not in X_AXES:
        raise ValueError(f"x={x!r} is unknown; use {' or '.join(X_AXES)}")
    if x == "flops":
        return rows["flops_mean"].to_numpy(dtype=float)
    return rows["sparsity"].to_numpy() * 100


def x_axis(ax, values, reference=None, x: str = "density") -> None:
    """`sparsity_axis` for percent remaining, or the same log2 axis (inverted: dense on the left) in FLOPs."""
    values = [v for v in values if np.isfinite(v) and v > 0]
    reference = [v for v in reference if np.isfinite(v) and v > 0] if reference else None
    if not values:
        return
    if x == "flops":
        sparsity_axis(ax, values, reference or None, "Forward FLOPs per example (multiply-accumulates)", _fmt_count)
    else:
        sparsity_axis(ax, values, reference or None)


def has_flops(summary: pd.DataFrame) -> bool:
    """Whether a summary has FLOPs to draw against (experiments before lth_ray 0.5 recorded none)."""
    return "flops_mean" in summary.columns and bool(np.isfinite(summary["flops_mean"].to_numpy(dtype=float)).any())


def _is_fraction(metric: str) -> bool:
    return "_acc" in metric or "error" in metric


def _pretty(metric: str) -> str:
    base = metric.replace("_at_early_stop", "").replace("final_", "")
    words = {
        "test_acc": "Test accuracy",
        "val_acc": "Validation accuracy",
        "test_loss": "Test loss",
        "val_loss": "Validation loss",
        "train_loss": "Training loss",
        "early_stop_iteration": "Early-stop iteration",
    }.get(base, base)
    where = " at early stop" if "_at_early_stop" in metric else " (final)" if metric.startswith("final_") else ""
    return words + where + (" (%)" if _is_fraction(metric) else "")


def plot_vs_sparsity(
    ax,
    summary: pd.DataFrame,
    metric: str = "test_acc_at_early_stop",
    methods=("imp", "one-shot", "reinit", "random-prune"),
    spread: str = "minmax",
    x: str = "density",
) -> None:
    """`metric` (mean over seeds, error bars min/max or std) against percent of weights remaining (or forward
    FLOPs, `x="flops"`); one colour per configuration, tickets solid, baselines dotted and starting from their
    ticket's dense round."""
    import matplotlib

    scale = 100.0 if _is_fraction(metric) else 1.0
    labels = config_labels(summary)
    colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    markers = {"imp": "o", "one-shot": "D", "reinit": "x", "random-prune": "^"}
    percents: list[float] = []
    reference: list[float] = []
    for i, (key, label) in enumerate(labels.items()):
        mine = matching(summary, key)
        dense = _dense(mine)
        for method in [m for m in methods if m in set(mine["method"])]:
            rows = mine[mine["method"] == method].sort_values("round")
            if method in PAPER_BASELINES and not dense.empty and 0 not in set(rows["round"]):
                rows = pd.concat([dense.iloc[:1], rows])
            xs = x_values(rows, x)
            y = rows[f"{metric}_mean"].to_numpy() * scale
            if spread == "std":
                err = rows[f"{metric}_std"].fillna(0).to_numpy() * scale
            else:
                err = np.vstack(
                    [y - rows[f"{metric}_min"].to_numpy() * scale, rows[f"{metric}_max"].to_numpy() * scale - y]
                ).clip(min=0)  # equal seeds' mean can round a hair past their min or max
            ax.errorbar(
                xs,
                y,
                yerr=err,
                color=colours[i % len(colours)],
                marker=markers.get(method, "o"),
                markerfacecolor="none" if method == "random-prune" else None,
                markersize=4,
                capsize=3,
                linewidth=1.5,
                linestyle="-" if method in TICKETS else ":",
                label=label if method in TICKETS else f"{label} ({method})",
            )
            percents += list(xs)
            if method in TICKETS and len(xs) > len(reference):
                reference = list(xs)
    x_axis(ax, percents, reference, x)
    ax.set_ylabel(_pretty(metric))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")


ABLATION_STYLES = {"": "-", "shuffle": "--", "reinit": ":", "invert": "-."}


def plot_methods_vs_sparsity(
    ax, summary: pd.DataFrame, key: tuple, metric: str = "test_acc_at_early_stop", x: str = "density"
) -> None:
    """Every method of one configuration against weights remaining (or FLOPs): one colour per method (the ticket's
    re-init in the ticket's colour), the line style by ablation (solid: the method; dashed: shuffled within
    layers; dotted: fresh init; dash-dot: inverted scores); mean over seeds, min/max as a band."""
    import matplotlib

    scale = 100.0 if _is_fraction(metric) else 1.0
    mine = matching(summary, key)
    labels = method_order(mine["method"])
    colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    ticket = next((t for t in TICKETS if t in labels), "imp")
    styles = {label: (ticket, "reinit") if label == "reinit" else split_label(label) for label in labels}
    families = list(dict.fromkeys(family for family, _ in styles.values()))
    percents = []
    for label in labels:
        family, ablation = styles[label]
        rows = mine[mine["method"] == label].sort_values("round")
        xs = x_values(rows, x)
        y = rows[f"{metric}_mean"].to_numpy() * scale
        colour = colours[families.index(family) % len(colours)]
        ax.plot(
            xs,
            y,
            color=colour,
            linestyle=ABLATION_STYLES[ablation],
            marker=None if ablation else "o",
            markersize=3,
            linewidth=1.4,
            label=label,
        )
        ax.fill_between(
            xs,
            rows[f"{metric}_min"].to_numpy() * scale,
            rows[f"{metric}_max"].to_numpy() * scale,
            color=colour,
            alpha=0.08,
            linewidth=0,
        )
        percents += list(xs)
    x_axis(ax, percents, x=x)
    ax.set_ylabel(_pretty(metric))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="x-small", ncol=2)


def plot_accuracy_vs_sparsity(ax, summary, metric="test_acc_at_early_stop", **kw) -> None:
    """The paper's Figure 4 (right column): test accuracy at early stop against weights remaining."""
    plot_vs_sparsity(ax, summary, metric, **kw)


def plot_early_stop_vs_sparsity(ax, summary, **kw) -> None:
    """The paper's Figure 4 (left column): early-stop iteration against weights remaining."""
    plot_vs_sparsity(ax, summary, "early_stop_iteration", **kw)


def plot_retrain_modes(ax, rows: pd.DataFrame, metric: str = "final_test_acc") -> None:
    """Renda et al.'s figures: the ticket's `metric` against weights remaining, one line per retraining mode
    (`summaries.retrain_comparisons`' rows), mean over seeds with min/max as a band; round 0 (dense, the same in
    every mode) as a dashed reference."""
    import matplotlib

    from lth_ray.core.spec.training import RETRAIN_MODES

    scale = 100.0 if _is_fraction(metric) else 1.0
    colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    percents: list[float] = []
    modes = sorted(set(rows["mode"]), key=lambda m: (RETRAIN_MODES.index(m.split(" ")[0]), m))
    for i, mode in enumerate(modes):
        mine = rows[rows["mode"] == mode].sort_values("round")
        x, y = mine["sparsity"].to_numpy() * 100, mine[f"{metric}_mean"].to_numpy() * scale
        colour = colours[i % len(colours)]
        ax.plot(x, y, color=colour, marker="o", markersize=3, linewidth=1.5, label=mode)
        if f"{metric}_min" in mine:
            lo, hi = (mine[f"{metric}_{s}"].to_numpy() * scale for s in ("min", "max"))
            ax.fill_between(x, lo, hi, color=colour, alpha=0.12, linewidth=0)
        percents += list(x)
    dense = rows[rows["round"] == 0]
    if not dense.empty:
        ax.axhline(dense[f"{metric}_mean"].mean() * scale, color="grey", linestyle="--", linewidth=1, label="dense")
    if percents:
        sparsity_axis(ax, percents)
    ax.set_ylabel(_pretty(metric))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")


def select_rounds(rounds: pd.DataFrame) -> list[int]:
    """The rounds nearest the ladder ticks (dense, ~50%, ~25%, ...): what the paper's Figure 3 shows."""
    by_round = rounds.groupby("round")["sparsity"].mean() * 100
    ticks = ladder_ticks(by_round.to_numpy())
    return sorted({int((by_round - t).abs().idxmin()) for t in ticks})


def plot_history(ax, histories: pd.DataFrame, metric: str = "test_acc", rounds=None, method: str = "imp") -> None:
    """`metric` against training iteration for selected rounds of one configuration's `method`
    (mean over seeds, min/max band); `histories` should hold a single configuration."""
    import matplotlib

    h = histories[histories["method"] == method]
    rounds = (select_rounds(h) if not h.empty else []) if rounds is None else list(rounds)
    scale = 100.0 if _is_fraction(metric) else 1.0
    cmap = matplotlib.colormaps["viridis"]
    for j, r in enumerate(rounds):
        g = h[h["round"] == r]
        if g.empty:
            continue
        s = g.groupby("iteration")[metric].agg(["mean", "min", "max"]) * scale
        colour = cmap(j / max(1, len(rounds) - 1) * 0.9)
        ax.plot(s.index, s["mean"], color=colour, label=f"{_fmt_percent(g['sparsity'].mean() * 100)}% (round {r})")
        ax.fill_between(s.index, s["min"], s["max"], color=colour, alpha=0.2, linewidth=0)
    ax.set_xlabel("Training iteration")
    ax.set_ylabel(_pretty(metric))
    ax.set_title(method, fontsize="medium")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", title="weights remaining")


def plot_layer_sparsity(ax, rounds: pd.DataFrame, method: str = "imp") -> None:
    """Percent of each layer's weights remaining per round (and the whole net dashed), mean over seeds."""
    from matplotlib.ticker import NullLocator

    r = rounds[rounds["method"] == method]
    layers = [c for c in r.columns if c.startswith(LAYER_PREFIX) and r[c].notna().any()]
    per_round = r.groupby("round")[layers + ["sparsity"]].mean() * 100
    markers, styles = "osv^D<>ph*", ("-", "--", ":")  # a ResNet has more layers than the colour cycle
    for i, c in enumerate(layers):
        ax.plot(
            per_round.index,
            per_round[c],
            marker=markers[i % len(markers)],
            markersize=4,
            linestyle=styles[i // len(markers) % len(styles)],
            label=c[len(LAYER_PREFIX) :],
        )
    ax.plot(per_round.index, per_round["sparsity"], "k--", label="all prunable")
    ax.set_yscale("log", base=2)
    lowest = per_round[per_round > 0].min().min()  # a layer pruned away has no place on a log axis
    ticks = [100 / 2**p for p in range(int(math.log2(100 / lowest)) + 1)]  # halvings within the data
    if len(ticks) < 3:
        ticks = ladder_ticks(per_round["sparsity"])  # a short ladder: the whole net's levels
    ax.set_yticks(ticks, [f"{t:.3g}" for t in ticks])
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_ylim(lowest / 2**0.15, 100 * 2**0.15)
    ax.set_xlabel("Pruning round")
    ax.set_ylabel("Percent of weights remaining")
    ax.set_xticks(list(per_round.index))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small" if len(layers) <= 10 else "xx-small", ncol=1 + len(layers) // 12)


def mask_image(mask: np.ndarray) -> np.ndarray:
    """A 2-D view of a mask: fc (out, in) as is; conv (out, in, kh, kw) as (in x kh) rows by (out x kw)
    columns, so each filter's kernel is a kh x kw tile."""
    m = np.asarray(mask, dtype=bool)
    if m.ndim == 4:
        out, inp, kh, kw = m.shape
        return m.transpose(1, 2, 0, 3).reshape(inp * kh, out * kw)
    return m.reshape(1, -1) if m.ndim == 1 else m.reshape(m.shape[0], -1)


def plot_mask(ax, mask: np.ndarray, name: str = "") -> None:
    """One layer's mask as an image: alive weights dark, pruned weights light (grey where many weights
    share a pixel)."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    m = np.asarray(mask, dtype=bool)
    image = mask_image(m)
    alive, pruned = "#1f3b73", "#f2f2f2"
    big = max(image.shape) > 600  # more weights than pixels: blend colours, so the shade shows the density
    ax.imshow(
        image,
        cmap=ListedColormap([pruned, alive]),
        vmin=0,
        vmax=1,
        aspect="auto",
        interpolation="antialiased" if big else "nearest",
        interpolation_stage="rgba",
    )
    conv = m.ndim == 4
    ax.set_xlabel("output channel x kernel column" if conv else "input")
    ax.set_ylabel("input channel x kernel row" if conv else "output unit")
    ax.set_title(f"{name} {tuple(m.shape)}: {100 * m.mean():.1f}% remaining", fontsize="medium")
    ax.legend(
        handles=[Patch(color=alive, label="alive"), Patch(facecolor=pruned, edgecolor="grey", label="pruned")],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.16),
        ncol=2,
        fontsize="small",
        frameon=False,
    )


def plot_instability_vs_sparsity(ax, instability: pd.DataFrame, spread: str = "minmax") -> None:
    """Error barrier (percent) against weights remaining: one line per configuration (so one per rewind
    iteration), mean over seeds with min/max (or std) bars; the 2% stability line dashed."""
    summary = summarise(instability, spread=spread, metrics=["error_barrier", "loss_barrier"])
    plot_vs_sparsity(ax, summary, "error_barrier", spread=spread)
    ax.axhline(100 * STABLE_BARRIER, color="grey", linestyle="--", linewidth=1)
    ax.set_ylabel("Instability: test error barrier (%)")


def plot_interpolation(ax, interpolation: pd.DataFrame, rounds=None, metric: str = "test_error") -> None:
    """`metric` along the linear path between the two copies, per selected round (mean over seeds)."""
    import matplotlib

    rounds = select_rounds(interpolation) if rounds is None else list(rounds)
    cmap = matplotlib.colormaps["viridis"]
    for j, r in enumerate(rounds):
        g = interpolation[interpolation["round"] == r]
        if g.empty:
            continue
        s = g.groupby("alpha")[metric].mean() * (100 if _is_fraction(metric) else 1)
        ax.plot(
            s.index,
            s.to_numpy(),
            color=cmap(j / max(1, len(rounds) - 1) * 0.9),
            label=f"{_fmt_percent(g['sparsity'].mean() * 100)}% (round {r})",
        )
    ax.set_xlabel("Interpolation alpha")
    ax.set_ylabel(metric.replace("_", " ").capitalize() + (" (%)" if _is_fraction(metric) else ""))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", title="weights remaining")
