"""Experiment -> tidy DataFrames, the thesis' early-stop numbers, seed summaries, and paper-style plots.

Reads files only (a Tune experiment folder through `lth_ray.results.experiment`, or the Parquet export); it never
starts Ray nor imports the trainable. The frames use the export's column names (`lth_ray.results.schema`), so the
same code analyses a live sweep, a finished one, or a copy of its export. Plot functions draw on an `ax`
they are given and never choose a backend, so they work in notebooks and headless (Agg) alike.

One job per module: `frames` (loading, the tidy frames, configurations), `summaries` (early stop, means over
seeds, winning tickets, stability), `plots`, `anatomy` (what a ticket is made of: supermask accuracy, criteria,
init variants, mask dynamics, cost, successive rounds), and `tune` (Ray Tune's `ExperimentAnalysis`, on request). This
module names their public API in one place, as `from lth_ray.results import analysis as A` uses it.
"""

from lth_ray.core.engine.records import METRICS
from lth_ray.core.spec.config import ABLATIONS, AT_INIT, TICKETS
from lth_ray.results.analysis.anatomy import (
    ANATOMY_METRICS,
    CRITERION,
    DYNAMICS,
    INIT_VARIANTS,
    criteria_order,
    criteria_table,
    criterion_comparisons,
    criterion_label,
    dynamics_table,
    has_metric,
    plot_anatomy_vs_sparsity,
    plot_criteria_vs_sparsity,
    plot_dynamics_vs_sparsity,
    plot_init_variants,
    plot_successive_vs_sparsity,
    plot_supermask_vs_sparsity,
    variant_methods,
)
from lth_ray.results.analysis.frames import (
    CONFIG,
    GROUP,
    OLD_EXPORT_DEFAULTS,
    OWN_DENSE_ROUND,
    PATH_FILES,
    RUNNING,
    TRIAL_COLUMNS,
    TRIAL_IDENTITY,
    Experiment,
    by_configuration,
    config_labels,
    load_experiment,
    load_export,
    matching,
    missing,
)
from lth_ray.results.analysis.plots import (
    ABLATION_STYLES,
    X_AXES,
    _fmt_percent,
    has_flops,
    ladder_ticks,
    mask_image,
    plot_accuracy_vs_sparsity,
    plot_early_stop_vs_sparsity,
    plot_history,
    plot_instability_vs_sparsity,
    plot_interpolation,
    plot_layer_sparsity,
    plot_mask,
    plot_methods_vs_sparsity,
    plot_retrain_modes,
    plot_vs_sparsity,
    select_rounds,
    sparsity_axis,
    x_axis,
    x_values,
)
from lth_ray.results.analysis.summaries import (
    FAMILIES,
    PAPER_BASELINES,
    RETRAIN,
    STABLE_BARRIER,
    SUMMARY_METRICS,
    early_stop,
    early_stop_indices,
    has_other_methods,
    method_order,
    methods_table,
    retrain_comparisons,
    retrain_label,
    retrain_table,
    retrain_title,
    split_label,
    stable_and_matching,
    summarise,
    ticket_method,
    values_at,
    winning_ticket,
)
from lth_ray.results.analysis.tune import tune_analysis
