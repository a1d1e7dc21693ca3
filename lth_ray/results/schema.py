"""The Parquet schema of an export: fixed column names and types (documented in docs/export-format.md).

`histories.parquet`: one row per (trial, round, evaluation point).
`rounds.parquet`: one row per (trial, round), with per-layer density in columns `sparsity.<layer>`
(NaN where an arch has no such layer), the other per-layer numbers as `<quantity>.<layer>` (`rounds_schema`).
"sparsity" follows the thesis: the fraction of weights REMAINING.
Iterations are absolute: a round rewound to k starts at `start_iteration` = k and trains `steps` = T - k.
A diverged round (`diverged`) has no early-stop point when no evaluation was finite (nulls).
The recipe's settings (`RECIPE`: optimizer, schedule, augmentation, layers left dense, BatchNorm on the
instability path, the mask criterion) are columns too, so rows can be grouped by them; lists are comma strings
("" for none).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from lth_ray.core.engine.records import METRICS
from lth_ray.core.spec.training import ADDED_DEFAULTS

# The modern recipe's settings (`TrajectoryConfig`'s, spec/training.py), in that order. Experiments written
# before they existed trained at `RECIPE_DEFAULTS` (Adam, a constant rate, no augmentation), which
# `analysis.load_export` fills in for exports that lack the columns.
RECIPE = [
    ("optimizer", pa.string()),
    ("momentum", pa.float64()),
    ("nesterov", pa.bool_()),
    ("weight_decay", pa.float64()),
    ("milestones", pa.string()),
    ("gamma", pa.float64()),
    ("warmup", pa.int64()),
    ("augment", pa.string()),
    ("prune_ignore", pa.string()),
    ("instability_bn", pa.string()),
    ("retrain", pa.string()),  # weight-rewind, lr-rewind or fine-tune (Renda et al. 2020)
    ("retrain_iterations", pa.int64()),  # t, the retrained rounds' length; 0: T - rewind_iteration
    ("criterion", pa.string()),  # the mask criterion (Zhou et al. 2019); large_final is IMP's
    ("pruned_weights", pa.string()),  # zero, or frozen-init
    ("successive", pa.bool_()),  # whether the ticket measured the successive-round barrier (Paul et al. 2023)
]


def recipe_cell(value):
    """A recipe setting as its column holds it: a list (milestones, prune_ignore) as a comma string."""
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else value


RECIPE_DEFAULTS = {name: recipe_cell(ADDED_DEFAULTS[name]) for name, _ in RECIPE}

# Every row carries its trajectory's whole recipe, so two recipes can never be averaged together.
IDENTITY = [
    ("experiment", pa.string()),
    ("trial_id", pa.string()),
    ("trajectory", pa.string()),
    ("arch", pa.string()),
    ("plan_conv", pa.string()),
    ("plan_fc", pa.string()),
    ("dataset", pa.string()),
    ("seed", pa.int64()),
    ("method", pa.string()),
    ("branch", pa.string()),  # the `lth-ray branch` that trained the member; '' for the trunk's own
    ("pruning", pa.string()),
    ("prune_rate_fc", pa.float64()),
    ("prune_rate_conv", pa.float64()),
    ("rewind_iteration", pa.int64()),
    ("activation", pa.string()),
    ("iterations", pa.int64()),
    ("eval_every", pa.int64()),
    ("batch_size", pa.int64()),
    ("learning_rate", pa.float64()),
    ("precision", pa.string()),
    ("deterministic", pa.bool_()),
    *RECIPE,
    ("round", pa.int64()),
    ("sparsity", pa.float64()),
]

HISTORIES = pa.schema(IDENTITY + [("iteration", pa.int64())] + [(m, pa.float64()) for m in METRICS])

# What a ticket is made of (issue 30), per round: accuracy at the round's start weights with its mask before
# any training (Zhou et al. 2019's supermask), the mask's Hamming distance to the member's previous round's, the
# share of kept weights whose sign training flipped, the mean Jaccard overlap with the other seeds' masks at the
# same round (computed at export), and the cost of one example's forward pass (ShrinkBench's params and MACs).
# Null where an older experiment did not record them, or where a round has nothing to compare.
ANATOMY = [
    ("start_val_loss", pa.float64()),
    ("start_val_acc", pa.float64()),
    ("start_test_loss", pa.float64()),
    ("start_test_acc", pa.float64()),
    ("mask_distance", pa.float64()),
    ("sign_flip_share", pa.float64()),
    ("seed_jaccard", pa.float64()),
    ("params", pa.int64()),
    ("nonzero_params", pa.int64()),
    ("dense_flops", pa.int64()),
    ("flops", pa.int64()),
]

ROUNDS_FIXED = pa.schema(
    IDENTITY
    + [
        ("start_iteration", pa.int64()),
        ("steps", pa.int64()),
        ("diverged", pa.bool_()),
        ("early_stop_index", pa.int64()),
        ("early_stop_iteration", pa.int64()),
    ]
    + [(f"{m}_at_early_stop", pa.float64()) for m in METRICS]
    + [(f"final_{m}", pa.float64()) for m in METRICS]
    + [("seconds", pa.float64()), ("status", pa.string()), ("complete", pa.bool_())]
    + ANATOMY
)

LAYER_PREFIX = "sparsity."
# The per-layer columns, `<quantity>.<layer>`, in this order: the first four over the prunable layers (each
# net's masks), the cost's over every Conv2d and Linear module (`lth_ray.core.models.cost`).
PRUNABLE_LAYER_COLUMNS = ("sparsity", "mask_distance", "sign_flip_share", "seed_jaccard")
COST_LAYER_COLUMNS = (("flops", pa.int64()), ("nonzero_weights", pa.int64()))


def rounds_schema(layers: Sequence[str], cost_layers: Sequence[str] = ()) -> pa.Schema:
    """rounds.parquet's schema for an experiment whose nets have these prunable layers and these costed layers
    (each in order)."""
    per_layer = [pa.field(f"{q}.{name}", pa.float64()) for q in PRUNABLE_LAYER_COLUMNS for name in layers]
    per_layer += [pa.field(f"{q}.{name}", typ) for q, typ in COST_LAYER_COLUMNS for name in cost_layers]
    return pa.schema(list(ROUNDS_FIXED) + per_layer)


# `instability.parquet`: one row per (trajectory, round) that measured instability (Frankle et al. 2020):
# barriers on the linear path between two copies of the round's subnetwork, on the test set (`error_barrier`,
# the paper's instability) and the validation set, and the test errors of the two ends.
INSTABILITY = pa.schema(
    IDENTITY
    + [
        ("error_barrier", pa.float64()),
        ("loss_barrier", pa.float64()),
        ("val_error_barrier", pa.float64()),
        ("val_loss_barrier", pa.float64()),
        ("error_start", pa.float64()),
        ("error_end", pa.float64()),
        ("points", pa.int64()),
    ]
)
# `successive.parquet`: the same columns for the successive-round path (Paul et al. 2023): from round r - 1's
# trained ticket under round r's mask (`error_start`) to round r's trained ticket (`error_end`), rounds >= 1.
SUCCESSIVE = INSTABILITY
# `interpolation.parquet` (and `successive_interpolation.parquet`): one row per (trajectory, round, alpha) on
# that path.
INTERPOLATION = pa.schema(
    IDENTITY
    + [
        ("alpha", pa.float64()),
        ("val_error", pa.float64()),
        ("val_loss", pa.float64()),
        ("test_error", pa.float64()),
        ("test_loss", pa.float64()),
    ]
)
