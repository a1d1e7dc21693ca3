"""Typed settings of one IMP trajectory: plain data, checked once at the edge.

One `TrajectoryConfig` travels from the CLI to the trainable to the engine to the export; it is a frozen
dataclass that round-trips through plain dicts (`to_dict` / `from_dict`), which is what Ray Tune stores. What
depends on a member's method (where it starts, where its mask comes from) is asked of the method
(`methods.member`), and so are the checks that need a registry (`methods.member.check_trajectory`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from lth_ray.core.spec.errors import ConfigError, check_choice
from lth_ray.core.spec.presets import plan_preset
from lth_ray.core.spec.training import ADDED_DEFAULTS, check_training

# The built-in methods by kind, as results name them (the registry, `lth_ray.core.methods`, holds the methods).
AT_INIT = ("snip", "grasp", "synflow", "magnitude-init")  # pruning at initialization (lth_ray.core.pruning.scoring)
TICKETS = ("imp", "one-shot")
# Frankle et al. 2021's sanity checks of a method's mask: shuffled within each layer, on a fresh init, or from
# inverted scores (keep the lowest). The ticket's re-init ablation is the `reinit` method.
ABLATIONS = ("shuffle", "reinit", "invert")
PRUNINGS = ("layerwise", "global")
ACTIVATIONS = ("relu", "tanh")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "tf32", "bf16", "fp64")


def parse_plan_token(token: Any) -> int | str:
    """A conv plan token: int n (3x3 conv), 'M' (max-pool), 'A' (avg-pool), '<n>B' (conv + BatchNorm)."""
    if isinstance(token, bool):
        raise ConfigError(f"plan token {token!r} is not allowed; use an int, 'M', 'A' or '<n>B'")
    if isinstance(token, int):
        if token <= 0:
            raise ConfigError(f"plan token {token!r} must be a positive channel count")
        return token
    text = str(token).strip()
    if text in ("M", "A"):
        return text
    if text.isdigit() and int(text) > 0:
        return int(text)
    if text.endswith("B") and text[:-1].isdigit() and int(text[:-1]) > 0:
        return text
    raise ConfigError(f"plan token {token!r} is not allowed; use an int, 'M', 'A' or '<n>B'")


def plan_label(plan_conv, plan_fc) -> str:
    """The arch label of a custom plan, e.g. `fc500-300` or `conv64-64-M_fc256-256` (file-name safe)."""
    fc = "fc" + "-".join(str(w) for w in plan_fc)
    return f"conv{'-'.join(str(t) for t in plan_conv)}_{fc}" if plan_conv else fc


def _check_rate(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and 0.0 <= float(value) < 1.0):
        raise ConfigError(f"{name}={value!r} is not allowed; a prune rate must lie in [0, 1)")


@dataclass(frozen=True)
class TrajectoryConfig:
    """Everything that determines one IMP trajectory (with the seed, its histories bitwise on CPU)."""

    arch: str = "lenet"
    plan_conv: tuple = ()
    plan_fc: tuple = (300, 100)
    dataset: str = "mnist"
    data_root: str | None = None
    iterations: int = 50_000
    batch_size: int = 60
    learning_rate: float = 1.2e-3
    eval_every: int = 100
    rounds: int = 20
    prune_rate_conv: float = 0.0
    prune_rate_fc: float = 0.2
    pruning: str = "layerwise"
    method: str = "imp"
    rewind_iteration: int = 0
    activation: str = "relu"
    seed: int = 0
    save_early_stop: bool = True
    device: str = "auto"
    # Numerics: fp32 (the paper's arithmetic, TF32 off), tf32, bf16 autocast, or fp64 (weights and data in
    # float64: a reference for equivalence checks); deterministic kernels.
    precision: str = "fp32"
    deterministic: bool = False
    # The training step compiled (torch.compile; on a GPU captured in CUDA graphs): other kernels, so other
    # rounding; off until measured on a GPU.
    compile_step: bool = False
    # Instability (Frankle et al. 2020): a second copy of the ticket per round, another data order, and the
    # error along the linear path between the two; `instability_rounds` empty = every round.
    instability: bool = False
    instability_rounds: tuple = ()
    instability_points: int = 31
    # SNIP's and GraSP's training batches for their scores at initialization (SNIP's paper: one batch).
    score_batches: int = 1
    # A sanity-check ablation of the method's mask (ABLATIONS); "" is the method itself.
    ablation: str = ""
    # The modern recipe (`spec.training`; recorded only where not at these defaults): SGD or Adam, weight decay,
    # a step schedule with warmup on the absolute iteration axis, flips and pad-crops, layers global pruning
    # leaves dense, and how the instability path treats BatchNorm statistics.
    optimizer: str = "adam"
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    milestones: tuple = ()
    gamma: float = 0.1
    warmup: int = 0
    augment: str = "none"
    prune_ignore: tuple = ()
    instability_bn: str = "interpolate"
    # How a ticket is retrained after each pruning step (Renda et al. 2020; `spec.training.RETRAIN_MODES`):
    # weight-rewind (weights and schedule back to k), lr-rewind (the trained weights, the schedule from T - t) or
    # fine-tune (the trained weights, t iterations at the final rate); t = `retrain_iterations`, 0: T - k.
    retrain: str = "weight-rewind"
    retrain_iterations: int = 0
    # What a ticket is made of (Zhou et al. 2019): the mask criterion its rounds prune by (`pruning.criteria`;
    # large_final, |w_f|, is IMP's own) and what pruned weights hold while training (zero, or frozen at their
    # start values). `successive`: the error barrier between consecutive rounds' trained tickets, round r's
    # under round r+1's mask (Paul et al. 2023), measured on tickets.
    criterion: str = "large_final"
    pruned_weights: str = "zero"
    successive: bool = False

    @property
    def label(self) -> str:
        """The method as results name it: `snip`, `snip-shuffle`, `imp-invert`, `reinit` (the ticket's re-init)."""
        return f"{self.method}-{self.ablation}" if self.ablation else self.method

    @property
    def prune_rate_out(self) -> float:
        """The output layer is pruned at half the fc rate (paper, Appendix G/H)."""
        return self.prune_rate_fc / 2

    @property
    def eval_points(self) -> int:
        return self.iterations // self.eval_every

    @property
    def key(self) -> str:
        """A readable, unique name of the trajectory (trial names, mask stores, exports)."""
        # a registered net (no plan) names its conv rate where it matters: under layer-wise pruning
        named = self.plan_conv or (not self.plan_fc and self.pruning == "layerwise")
        conv = f"-conv{self.prune_rate_conv:g}" if named else ""
        rewind = f"-rw{self.rewind_iteration}" if self.rewind_iteration else ""
        preset = plan_preset(self.arch)
        lr = f"-lr{self.learning_rate:g}" if not preset or self.learning_rate != preset.learning_rate else ""
        batch = f"-b{self.batch_size}" if not preset or self.batch_size != preset.batch_size else ""
        numerics = ("" if self.precision == "fp32" else f"-{self.precision}") + ("-det" if self.deterministic else "")
        numerics += "-compiled" if self.compile_step else ""
        numerics += f"-sb{self.score_batches}" if self.score_batches != 1 else ""
        numerics += recipe_key(self)
        rewind += retrain_key(self)
        return (
            f"{self.arch}-{self.dataset}-{self.label}-{self.pruning}-fc{self.prune_rate_fc:g}{conv}{rewind}"
            f"{lr}{batch}{numerics}-s{self.seed}"
        )

    def measures_instability(self, round_: int) -> bool:
        return self.instability and (not self.instability_rounds or round_ in self.instability_rounds)

    def validate(self) -> TrajectoryConfig:
        check_config(self)
        return self

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["plan_conv"] = list(self.plan_conv)
        d["plan_fc"] = list(self.plan_fc)
        d["instability_rounds"] = list(self.instability_rounds)
        d["milestones"], d["prune_ignore"] = list(self.milestones), list(self.prune_ignore)
        for name, default in ADDED_DEFAULTS.items():  # recorded only where set: older configs compare equal
            if d[name] == default:
                del d[name]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrajectoryConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names - {"mask_store"})
        if unknown:
            raise ConfigError(f"unknown trajectory setting(s) {unknown}; allowed: {sorted(names)}")
        d = dict(d)
        d.pop("mask_store", None)  # retired: a re-init baseline rides with its ticket (older configs carry it)
        d["plan_conv"] = tuple(parse_plan_token(t) for t in d.get("plan_conv", ()))
        d["plan_fc"] = tuple(d.get("plan_fc", ()))
        d["instability_rounds"] = tuple(d.get("instability_rounds", ()))
        d["milestones"], d["prune_ignore"] = tuple(d.get("milestones", ())), tuple(d.get("prune_ignore", ()))
        return cls(**d).validate()

    def replace(self, **changes) -> TrajectoryConfig:
        return dataclasses.replace(self, **changes).validate()


def plan_config(plan_conv, plan_fc, activation: str = "relu") -> TrajectoryConfig:
    """The config of a custom plan, named by its label (`fc500-300`): how a plan net is built outside a preset,
    e.g. from a thesis file's plan (`models.registry.build_model(plan_config(...), in_shape)`)."""
    conv = tuple(parse_plan_token(t) for t in plan_conv)
    return TrajectoryConfig(
        arch=plan_label(conv, plan_fc), plan_conv=conv, plan_fc=tuple(plan_fc), activation=activation
    )


def check_config(c: TrajectoryConfig) -> None:
    """The settings a config checks by itself, each with the values it allows (one-line errors); the net, data
    set and method are checked against their registries by `methods.member.check_trajectory`."""
    for t in c.plan_conv:
        parse_plan_token(t)
    for w in c.plan_fc:
        if isinstance(w, bool) or not isinstance(w, int) or w <= 0:
            raise ConfigError(f"fc plan width {w!r} is not allowed; use positive ints")
    label = plan_label(c.plan_conv, c.plan_fc)
    preset = plan_preset(c.arch)
    if preset is not None and (tuple(c.plan_conv), tuple(c.plan_fc)) != (preset.plan_conv, preset.plan_fc):
        raise ConfigError(f"arch={c.arch!r} names the preset plan, not {label}; label a custom plan arch={label!r}")
    for name in ("iterations", "batch_size", "eval_every"):
        v = getattr(c, name)
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ConfigError(f"{name}={v!r} is not allowed; it must be a positive integer")
    if c.eval_every > c.iterations:
        raise ConfigError(f"eval_every={c.eval_every} exceeds iterations={c.iterations}")
    if not (isinstance(c.learning_rate, (int, float)) and c.learning_rate > 0):
        raise ConfigError(f"learning_rate={c.learning_rate!r} must be positive")
    if isinstance(c.rounds, bool) or not isinstance(c.rounds, int) or c.rounds < 0:
        raise ConfigError(f"rounds={c.rounds!r} is not allowed; it must be an integer >= 0")
    _check_rate("prune_rate_conv", c.prune_rate_conv)
    _check_rate("prune_rate_fc", c.prune_rate_fc)
    check_choice("pruning", c.pruning, PRUNINGS)
    if isinstance(c.score_batches, bool) or not isinstance(c.score_batches, int) or c.score_batches < 1:
        raise ConfigError(f"score_batches={c.score_batches!r} is not allowed; it must be an integer >= 1")
    if c.ablation not in ("",) + ABLATIONS:
        raise ConfigError(f"ablation={c.ablation!r} is unknown; allowed: {', '.join(ABLATIONS)}")
    if (
        isinstance(c.rewind_iteration, bool)
        or not isinstance(c.rewind_iteration, int)
        or not 0 <= c.rewind_iteration < c.iterations
        or c.rewind_iteration % c.eval_every
    ):
        raise ConfigError(
            f"rewind_iteration={c.rewind_iteration!r} is not allowed; it must be a multiple "
            f"of eval_every={c.eval_every} in [0, iterations={c.iterations})"
        )
    check_choice("activation", c.activation, ACTIVATIONS)
    check_choice("precision", c.precision, PRECISIONS)
    if not isinstance(c.deterministic, bool):
        raise ConfigError(f"deterministic={c.deterministic!r} is not allowed; use true or false")
    if not isinstance(c.compile_step, bool):
        raise ConfigError(f"compile_step={c.compile_step!r} is not allowed; use true or false")
    if isinstance(c.instability_points, bool) or not isinstance(c.instability_points, int) or c.instability_points < 2:
        raise ConfigError(
            f"instability_points={c.instability_points!r} is not allowed; it must be an "
            "integer >= 2 (the path's two ends included)"
        )
    for r in c.instability_rounds:
        if isinstance(r, bool) or not isinstance(r, int) or not 0 <= r <= c.rounds:
            raise ConfigError(f"instability round {r!r} is outside the trajectory; allowed: 0..{c.rounds}")
    check_choice("device", c.device, DEVICES)
    if isinstance(c.seed, bool) or not isinstance(c.seed, int) or c.seed < 0:
        raise ConfigError(f"seed={c.seed!r} is not allowed; it must be an integer >= 0")
    check_training(c)


def recipe_key(c: TrajectoryConfig) -> str:
    """The key's part for the modern recipe: empty at the defaults (an older key stays what it was)."""
    parts = (
        []
        if c.optimizer == "adam"
        else [c.optimizer + (f"{c.momentum:g}" if c.momentum else "") + ("n" if c.nesterov else "")]
    )
    parts += [f"wd{c.weight_decay:g}"] if c.weight_decay else []
    parts += [f"ms{'_'.join(map(str, c.milestones))}g{c.gamma:g}"] if c.milestones else []
    parts += [f"wu{c.warmup}"] if c.warmup else []
    parts += ["aug"] if c.augment != "none" else []
    parts += [f"ig{'_'.join(c.prune_ignore)}"] if c.prune_ignore else []
    parts += [c.criterion] if c.criterion != "large_final" else []
    parts += ["frozeninit"] if c.pruned_weights == "frozen-init" else []
    return "".join(f"-{p}" for p in parts)


def retrain_key(c: TrajectoryConfig) -> str:
    """The key's part for the retraining mode: empty under weight rewinding (an older key stays what it was),
    else `-lrrewind` or `-finetune`, with `-rt<t>` where the length is not the default T - k."""
    if c.retrain == "weight-rewind":
        return ""
    mode = "-lrrewind" if c.retrain == "lr-rewind" else "-finetune"
    return mode + (f"-rt{c.retrain_iterations}" if c.retrain_iterations else "")


def parse_numbers(text: str, what: str, convert=float) -> list:
    """A comma-separated list of numbers from the command line, or a one-line error naming it."""
    try:
        values = [convert(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        kind = "integers" if convert is int else "numbers"
        raise ConfigError(f"{what}={text!r} is not a comma-separated list of {kind}") from None
    if not values:
        raise ConfigError(f"{what}={text!r} is empty; give at least one value")
    return values


def parse_seeds(text: str, what: str = "--seeds") -> list[int]:
    """'3' means seeds 0, 1, 2; '0,5,7' means exactly those."""
    values = parse_numbers(text, what, int)
    if len(values) == 1 and "," not in str(text):
        if values[0] < 1:
            raise ConfigError(f"{what}={text!r} must be at least 1 (a count) or a comma-separated list")
        return list(range(values[0]))
    if any(v < 0 for v in values) or len(set(values)) != len(values):
        raise ConfigError(f"{what}={text!r} must list distinct non-negative seeds")
    return values


def parse_plan(text: str, what: str) -> tuple:
    """A plan from the command line, in the thesis' tokens: `300,100` (fc) or `64,64,M` (conv)."""
    tokens = [t.strip() for t in str(text).split(",") if t.strip()]
    if what == "--plan-fc":
        if not tokens or not all(t.isdigit() and int(t) > 0 for t in tokens):
            raise ConfigError(f"{what}={text!r} is not allowed; use a comma list of positive widths, e.g. 300,100")
        return tuple(int(t) for t in tokens)
    return tuple(parse_plan_token(t) for t in tokens)
