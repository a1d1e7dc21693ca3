"""The training recipe beyond the thesis' Adam at a constant rate: optimizer, schedule, augmentation, pruning
scope and the instability path's BatchNorm. Checked once, with one-line errors.

A config records these settings only where they differ from their defaults (`ADDED_DEFAULTS`), so an
experiment recorded before they existed keeps its configs, states and keys exactly as they were.
Lengths are iterations here; the command line also takes epochs (`80ep`, `parse_length`).
"""

from __future__ import annotations

from lth_ray.core.spec.errors import ConfigError, check_choice

OPTIMIZERS = ("adam", "sgd")
AUGMENTATIONS = ("none", "flip-crop")
INSTABILITY_BN = ("interpolate", "recompute")
# Renda et al. 2020's retraining after each pruning step: weights and schedule rewound to k, the schedule alone
# rewound (the trained weights kept), or fine-tuning at the final rate (the trained weights kept).
RETRAIN_MODES = ("weight-rewind", "lr-rewind", "fine-tune")
# What a pruned weight holds while its subnetwork trains: zero (the ticket's), or frozen at its value in the
# round's start weights (Zhou et al. 2019's mask-0 "freeze at init").
PRUNED_WEIGHTS = ("zero", "frozen-init")
ADDED_DEFAULTS = {
    "optimizer": "adam",
    "momentum": 0.0,
    "nesterov": False,
    "weight_decay": 0.0,
    "milestones": [],
    "gamma": 0.1,
    "warmup": 0,
    "augment": "none",
    "prune_ignore": [],
    "instability_bn": "interpolate",
    "compile_step": False,
    "retrain": "weight-rewind",
    "retrain_iterations": 0,
    "criterion": "large_final",
    "pruned_weights": "zero",
    "successive": False,
}


def parse_length(text, per_epoch: int, what: str) -> int:
    """'2000', '2000it' or '80ep' (80 epochs of `per_epoch` iterations) -> iterations."""
    value = str(text).strip()
    try:
        if value.endswith("ep"):
            return round(float(value[:-2]) * per_epoch)
        return int(value[:-2] if value.endswith("it") else value)
    except ValueError:
        raise ConfigError(
            f"{what}={text!r} is not a length; use iterations (2000 or 2000it) or epochs (80ep)"
        ) from None


def learning_rate_at(config, iteration: int) -> float:
    """The rate of the update taken after `iteration` updates on the absolute axis (as OpenLTH's schedule:
    base x gamma^(milestones passed) x min(1, iteration / warmup)); a round rewound to k starts at lr(k)."""
    passed = sum(m <= iteration for m in config.milestones)
    warm = min(1.0, iteration / config.warmup) if config.warmup else 1.0
    return config.learning_rate * config.gamma**passed * warm


def final_learning_rate(config) -> float:
    """The rate of the schedule's last update (after T - 1 updates): what fine-tuning trains at."""
    return learning_rate_at(config, config.iterations - 1)


def retrain_length(config) -> int:
    """t, the iterations a retrained round trains: `retrain_iterations`, or T - k when it is 0."""
    return config.retrain_iterations or config.iterations - config.rewind_iteration


def check_retrain(c) -> None:
    """The retraining mode and its length: t in [1, T] with T - t a multiple of eval_every (a round's evaluations
    fall on the multiples of eval_every after its start), and no length of its own under weight rewinding."""
    check_choice("retrain", c.retrain, RETRAIN_MODES)
    t = c.retrain_iterations
    if (
        isinstance(t, bool)
        or not isinstance(t, int)
        or not 0 <= t <= c.iterations
        or (t and (c.iterations - t) % c.eval_every)
    ):
        raise ConfigError(
            f"retrain_iterations={t!r} is not allowed; use 0 (T - k) or a length t in 1..iterations={c.iterations} "
            f"with iterations - t a multiple of eval_every={c.eval_every}"
        )
    if t and c.retrain == "weight-rewind":
        raise ConfigError(
            f"retrain_iterations={t} is not allowed with retrain='weight-rewind' (it retrains T - k: set "
            "rewind_iteration); allowed with lr-rewind or fine-tune"
        )


def check_training(c) -> None:
    """The recipe's optimizer, schedule and augmentation settings, each with the values it allows."""
    check_choice("optimizer", c.optimizer, OPTIMIZERS)
    if not (isinstance(c.momentum, (int, float)) and 0 <= c.momentum < 1):
        raise ConfigError(f"momentum={c.momentum!r} is not allowed; it must lie in [0, 1)")
    if c.momentum and c.optimizer == "adam":
        raise ConfigError(
            f"momentum={c.momentum:g} is not allowed with optimizer='adam' (Adam keeps its own "
            "moments); use optimizer='sgd' or momentum=0"
        )
    if not isinstance(c.nesterov, bool) or (c.nesterov and not (c.optimizer == "sgd" and c.momentum > 0)):
        raise ConfigError(
            f"nesterov={c.nesterov!r} is not allowed: Nesterov momentum needs optimizer='sgd' and momentum > 0"
        )
    if not (isinstance(c.weight_decay, (int, float)) and c.weight_decay >= 0):
        raise ConfigError(f"weight_decay={c.weight_decay!r} is not allowed; it must be >= 0")
    if not (isinstance(c.gamma, (int, float)) and 0 < c.gamma <= 1):
        raise ConfigError(f"gamma={c.gamma!r} is not allowed; it must lie in (0, 1]")
    previous = 0
    for m in c.milestones:
        if isinstance(m, bool) or not isinstance(m, int) or m <= previous:
            raise ConfigError(f"milestones={list(c.milestones)!r} must be increasing positive iterations")
        if m >= c.iterations:
            raise ConfigError(
                f"milestone {m} is past the end of training (iterations={c.iterations}); allowed: 1..{c.iterations - 1}"
            )
        previous = m
    if isinstance(c.warmup, bool) or not isinstance(c.warmup, int) or c.warmup < 0:
        raise ConfigError(f"warmup={c.warmup!r} is not allowed; it must be an integer >= 0 (iterations)")
    if c.warmup >= c.iterations:
        raise ConfigError(
            f"warmup={c.warmup} is not shorter than training (iterations={c.iterations}); allowed: "
            f"0..{c.iterations - 1}"
        )
    check_choice("augment", c.augment, AUGMENTATIONS)
    check_choice("instability_bn", c.instability_bn, INSTABILITY_BN)
    check_retrain(c)
    check_choice("pruned_weights", c.pruned_weights, PRUNED_WEIGHTS)
    if c.pruned_weights == "frozen-init" and (c.instability or c.successive or c.retrain != "weight-rewind"):
        raise ConfigError(
            "pruned_weights='frozen-init' is allowed only with retrain='weight-rewind' and without instability or "
            "successive (their paths and the retrained starts hold pruned weights at zero)"
        )
    if not isinstance(c.successive, bool):
        raise ConfigError(f"successive={c.successive!r} is not allowed; use true or false")
    if not all(isinstance(n, str) and n for n in c.prune_ignore):
        raise ConfigError(f"prune_ignore={list(c.prune_ignore)!r} must list layer names, e.g. fc or out")
