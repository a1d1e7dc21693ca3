"""The command-line options of a trajectory's recipe, declared once; both CLIs are built from this table.

Every setting of `TrajectoryConfig` that a user sets has one option here: one spelling, its help, its type, its
choices (the validator's own constants) and the default `--help` shows. The option's destination is the
setting's field name, and the parsed values go to `from_preset` as they are, so the recorded recipe
(`TrajectoryConfig.to_dict`) holds exactly what the command line set.

The trajectory CLI (`lth_ray.cli.trajectory`) takes one value per option. The sweep CLI (`lth_ray.cli.sweep`)
takes a comma list for the options marked `grid`, and each list is an axis of the sweep's grid. The spellings of
lth_ray 0.2 (`--preset`, `--archs`, `--prune-rates`, `--conv-prune-rates`, `--one-shot`) still parse, as hidden
aliases of the same destination.

The choices of --arch, --dataset, --method and --baselines are the registries' (models, data sets, methods),
read when a parser is built, so a model, data set or method registered before that is on both command lines.
Lengths (--iterations, --rewind-iteration, --milestones, --warmup) are iterations (`2000`, `2000it`) or epochs
(`80ep`); epochs become iterations of the final data set and batch size in `from_preset` (`spec.presets`).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lth_ray.core.engine.budget import DEFAULT_EVAL_MEMORY_MB, MIN_EVAL_MEMORY_MB
from lth_ray.core.spec.config import (
    ABLATIONS,
    ACTIVATIONS,
    DATASETS,
    DEVICES,
    METHODS,
    PRECISIONS,
    PRESETS,
    PRUNINGS,
    TICKETS,
    ConfigError,
    TrajectoryConfig,
    parse_numbers,
    parse_plan,
    parse_seeds,
)
from lth_ray.core.spec.presets import RECIPES, arch_names, length, lengths
from lth_ray.core.spec.training import AUGMENTATIONS, INSTABILITY_BN, OPTIMIZERS

SCOPES = ("trajectory", "sweep")
# The members that ride with a ticket in a cohort: its re-init, random pruning, the pruning-at-init methods.
BASELINES = tuple(m for m in METHODS if m not in TICKETS)
NONE = "none"  # an empty list of baselines or ablations
SETTINGS = tuple(f.name for f in dataclasses.fields(TrajectoryConfig))


def dataset_names() -> tuple[str, ...]:
    """The data registry's names, now."""
    from lth_ray.core.data.registry import DATASETS as REGISTERED  # (the registry imports this layer's types)

    return tuple(REGISTERED)


def method_names() -> tuple[str, ...]:
    """The method registry's names, now (built-ins first, in lth_ray 0.2's order)."""
    from lth_ray.core.methods import METHODS as REGISTERED  # (the methods import this layer's types)

    return tuple(REGISTERED)


def baseline_names() -> tuple[str, ...]:
    """The registered methods that ride with a ticket (every method but the tickets), and `none`."""
    from lth_ray.core.methods import METHODS as REGISTERED

    return tuple(name for name, m in REGISTERED.items() if not m.is_ticket) + (NONE,)


def ticket_names() -> tuple[str, ...]:
    """The registered tickets (imp, one-shot, ...): a sweep's --method."""
    from lth_ray.core.methods import METHODS as REGISTERED

    return tuple(name for name, m in REGISTERED.items() if m.is_ticket)


class OptionParser(argparse.ArgumentParser):
    """argparse with the house's errors: a bad command line is one `error:` line and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"error: {message}\n")


@dataclass(frozen=True)
class Alias:
    """An old spelling of an option: it still parses, into the same destination, but --help hides it.
    `const`: a flag that stands for one value (`--one-shot` is `--method one-shot`)."""

    flag: str
    const: Any = None


@dataclass(frozen=True)
class Option:
    """One command-line option: its spelling, what it means, how its text is read and what it defaults to.

    `default` is what argparse stores when the option is absent; None means "not given": the preset's or
    `TrajectoryConfig`'s value applies, and `shown` says which in --help."""

    flag: str
    help: str
    group: str
    type: type = str  # of one value: str, int or float
    action: str = "store"  # "store", or a flag: "store_true" / "store_false"
    choices: tuple = ()  # the allowed values, or each list item's
    registry: Callable | None = None  # () -> the allowed values, read from a registry when a parser is built
    default: Any = None
    shown: Any = None  # the default as --help shows it (None: `default`, or "off" for a flag)
    grid: bool = False  # an axis of the sweep's grid: a comma list there, one value in a trajectory
    listed: bool = False  # a comma list of names everywhere (baselines, ablations; `none`: empty)
    parse: Callable | None = None  # (text, flag) -> value, after argparse: plans, seeds, rounds
    metavar: str | None = None
    into: str | None = None  # the destination when it is not the flag's name (a setting's field name)
    scopes: tuple = SCOPES
    aliases: tuple = ()

    @property
    def dest(self) -> str:
        return self.into or self.flag.lstrip("-").replace("-", "_")

    @property
    def is_flag(self) -> bool:
        return self.action != "store"

    def allowed(self) -> tuple:
        """The allowed values now: the registry's when the option has one, else `choices`."""
        return tuple(self.registry()) if self.registry is not None else self.choices

    def text_type(self, scope: str) -> type:
        """What argparse converts the text to: one value by its type; lists and parsed text stay text."""
        return str if self.parse is not None or self.is_list(scope) else self.type

    def is_list(self, scope: str) -> bool:
        """A comma list of names or numbers in `scope`: `listed` ones always, the grid axes in the sweep."""
        return self.listed or (self.grid and scope == "sweep")


def names(text: str, flag: str) -> list[str]:
    """A comma list of names; `none` is the empty list."""
    return [t.strip() for t in str(text).split(",") if t.strip() and t.strip() != NONE]


def rounds_list(text: str, flag: str) -> tuple[int, ...]:
    return tuple(parse_numbers(text, flag, int))


def layer_names(text: str, flag: str) -> tuple[str, ...]:
    """A comma list of layer names (`fc,blocks.3.shortcut.0`); `none` is the empty list."""
    return tuple(names(text, flag))


ALL_PRESETS = (*PRESETS.values(), *RECIPES.values())


def _by_preset(value: Callable[[Any], Any], presets=ALL_PRESETS) -> str:
    """A preset-dependent default for --help: `the preset's: lenet 0.0012; conv2 0.0002; conv4/conv6 0.0003`."""
    groups: dict[str, list[str]] = {}
    for p in presets:
        groups.setdefault(str(value(p)), []).append(p.name)
    if len(groups) == 1:
        return f"the preset's: {next(iter(groups))}"
    return "the preset's: " + "; ".join(f"{'/'.join(presets)} {v}" for v, presets in groups.items())


def _plan(tokens: tuple) -> str:
    return ",".join(str(t) for t in tokens) or NONE


def _setting(name: str) -> Callable[[Any], Any]:
    """A preset's value of setting `name` (a thesis preset: `TrajectoryConfig`'s default where it has none)."""
    return lambda p: getattr(p, name, getattr(TrajectoryConfig, name))


def _lengths(p) -> str:
    return ",".join(str(m) for m in getattr(p, "milestones", ())) or NONE


DEFAULT = TrajectoryConfig  # its class attributes are the fields' defaults
WHAT, TRAIN, PRUNE, COHORT, MEASURE, DATA, NUMERICS = (
    "what to train",
    "the optimizer, schedule and augmentation",
    "how to prune",
    "the cohort: seeds and baselines",
    "what to measure and keep",
    "data",
    "numerics and memory",
)
LENGTH = "; iterations (2000, 2000it) or epochs of the data set at the batch size (80ep)"

RECIPE: tuple[Option, ...] = (
    Option(
        "--arch",
        "the network and its recipe: a thesis preset (Frankle & Carbin 2019, Figure 2), a deeper "
        "net's preset (OpenLTH's defaults: resnet20, vgg16, vgg19; the LTH paper's section 5: resnet20-lth, "
        "resnet20-lth-warmup, vgg19-lth, vgg19-lth-warmup) or a registered model (OpenLTH's cifar_resnet_* and "
        "cifar_vgg_* with their family's OpenLTH defaults)",
        WHAT,
        choices=tuple(PRESETS),
        registry=arch_names,
        default=DEFAULT.arch,
        grid=True,
        metavar="ARCH",
        aliases=(Alias("--preset"), Alias("--archs")),
    ),
    Option(
        "--dataset",
        "the data set (any registered one)",
        WHAT,
        choices=DATASETS,
        registry=dataset_names,
        shown=_by_preset(_setting("dataset")),
    ),
    Option(
        "--plan-fc",
        "hidden fc widths, e.g. 300,100 (replaces the preset's; a custom plan is labelled by "
        "its plan, e.g. arch fc500-300)",
        WHAT,
        parse=parse_plan,
        metavar="W,W...",
        shown=_by_preset(lambda p: _plan(p.plan_fc), PRESETS.values()),
    ),
    Option(
        "--plan-conv",
        "conv plan in the thesis' tokens: n (3x3 conv), M (max-pool), A (avg-pool), nB (conv + "
        "BatchNorm), e.g. 64,64,M",
        WHAT,
        parse=parse_plan,
        metavar="T,T...",
        shown=_by_preset(lambda p: _plan(p.plan_conv), PRESETS.values()),
    ),
    Option("--activation", "the hidden layers' activation", WHAT, choices=ACTIVATIONS, shown=DEFAULT.activation),
    Option(
        "--iterations",
        "training iterations per round" + LENGTH,
        WHAT,
        parse=length,
        metavar="N|Eep",
        shown=_by_preset(_setting("iterations")),
    ),
    Option(
        "--learning-rate",
        "the optimizer's (peak) learning rate",
        WHAT,
        type=float,
        grid=True,
        metavar="LR",
        shown=_by_preset(lambda p: f"{p.learning_rate:g}"),
    ),
    Option(
        "--batch-size",
        "training batch size",
        WHAT,
        type=int,
        grid=True,
        metavar="B",
        shown=_by_preset(_setting("batch_size")),
    ),
    Option(
        "--eval-every",
        "evaluate every E iterations (validation and test splits)",
        WHAT,
        type=int,
        metavar="E",
        shown=DEFAULT.eval_every,
    ),
    Option(
        "--rounds",
        "pruning rounds after the dense round 0 (0: the dense net only; 3: rounds 0..3)",
        WHAT,
        type=int,
        metavar="R",
        shown=DEFAULT.rounds,
    ),
    Option(
        "--optimizer",
        "adam, or sgd (with --momentum, --nesterov)",
        TRAIN,
        choices=OPTIMIZERS,
        grid=True,
        shown=_by_preset(_setting("optimizer")),
    ),
    Option(
        "--momentum",
        "SGD's momentum (not with Adam; a preset switched to adam drops its momentum)",
        TRAIN,
        type=float,
        metavar="M",
        shown=_by_preset(lambda p: f"{getattr(p, 'momentum', DEFAULT.momentum):g}"),
    ),
    Option("--nesterov", "Nesterov momentum (SGD with --momentum)", TRAIN, action="store_true"),
    Option(
        "--weight-decay",
        "L2 weight decay (the optimizer's weight_decay, as OpenLTH's)",
        TRAIN,
        type=float,
        grid=True,
        metavar="WD",
        shown=_by_preset(lambda p: f"{getattr(p, 'weight_decay', 0.0):g}"),
    ),
    Option(
        "--milestones",
        "comma list of lengths at which the rate is multiplied by --gamma, on the absolute "
        "iteration axis (a round rewound to k starts at the rate of k); none: a constant rate" + LENGTH,
        TRAIN,
        parse=lengths,
        metavar="L,L...",
        shown=_by_preset(_lengths),
    ),
    Option("--gamma", "the rate's factor at each milestone", TRAIN, type=float, metavar="G", shown=DEFAULT.gamma),
    Option(
        "--warmup",
        "linear warmup of the rate from 0 over this length (0: none)" + LENGTH,
        TRAIN,
        parse=length,
        grid=True,
        metavar="L",
        shown=_by_preset(_setting("warmup")),
    ),
    Option(
        "--augment",
        "training augmentation on the device: random horizontal flips and 4-pixel pad-and-crop, per "
        "member from its seeded data order",
        TRAIN,
        choices=AUGMENTATIONS,
        grid=True,
        shown=_by_preset(_setting("augment")),
    ),
    Option(
        "--method",
        "the ticket: imp (iterative magnitude pruning) or one-shot (each round prunes the dense "
        "net's weights straight to its density); in a trajectory, random-prune and the pruning-at-init methods "
        "also run alone (reinit rides with its ticket: --baselines reinit)",
        PRUNE,
        choices=METHODS,
        registry=method_names,
        shown=DEFAULT.method,
        aliases=(Alias("--one-shot", const="one-shot"),),
    ),
    Option(
        "--pruning",
        "magnitude pruning per layer, or global over all layers (at --prune-rate-fc)",
        PRUNE,
        choices=PRUNINGS,
        shown=_by_preset(_setting("pruning")),
    ),
    Option(
        "--prune-rate-fc",
        "fraction of the remaining fc weights pruned per round (the output layer: half of it)",
        PRUNE,
        type=float,
        grid=True,
        metavar="P",
        shown=_by_preset(lambda p: f"{p.prune_rate_fc:g}"),
        aliases=(Alias("--prune-rates"),),
    ),
    Option(
        "--prune-rate-conv",
        "fraction of the remaining conv weights pruned per round (nets with conv layers)",
        PRUNE,
        type=float,
        grid=True,
        metavar="P",
        shown=_by_preset(lambda p: f"{p.prune_rate_conv:g}"),
        aliases=(Alias("--conv-prune-rates"),),
    ),
    Option(
        "--prune-ignore",
        "comma list of prunable layers left dense (OpenLTH's pruning_layers_to_ignore), e.g. "
        "fc; none: every prunable layer",
        PRUNE,
        parse=layer_names,
        metavar="LAYER,...",
        shown=_by_preset(lambda p: ",".join(getattr(p, "prune_ignore", ())) or NONE),
    ),
    Option(
        "--rewind-iteration",
        "late rewinding: rounds >= 1 restart from the ticket's weights at iteration k (a "
        "multiple of --eval-every below --iterations; 0: the initialisation)" + LENGTH,
        PRUNE,
        parse=length,
        grid=True,
        metavar="K",
        shown=DEFAULT.rewind_iteration,
    ),
    Option(
        "--score-batches",
        "SNIP's and GraSP's training batches for their scores at initialisation",
        PRUNE,
        type=int,
        metavar="N",
        shown=DEFAULT.score_batches,
    ),
    Option(
        "--seed",
        "the seed of one trajectory (--seeds: a cohort)",
        COHORT,
        type=int,
        metavar="S",
        shown=DEFAULT.seed,
        scopes=("trajectory",),
    ),
    Option(
        "--seeds",
        "a count N (seeds 0..N-1) or a comma list of seeds: every seed's ticket, with its baselines",
        COHORT,
        parse=parse_seeds,
        metavar="N|S,S...",
        shown="--seed's one trajectory",
        into="seeds",
    ),
    Option(
        "--baselines",
        "members riding with each seed's ticket: its re-init, random pruning, pruning at "
        "initialisation (any registered method but the tickets)",
        COHORT,
        listed=True,
        choices=BASELINES + (NONE,),
        registry=baseline_names,
        default=NONE,
        metavar="B,B...",
    ),
    Option(
        "--ablations",
        "sanity checks of the ticket's and every baseline's masks (Frankle et al. 2021): "
        "shuffled in each layer, on a fresh init, or from inverted scores",
        COHORT,
        listed=True,
        choices=ABLATIONS + (NONE,),
        default=NONE,
        metavar="A,A...",
    ),
    Option(
        "--instability",
        "per round, a second copy of each ticket (another data order) and the error barrier on "
        "the linear path between the two (Frankle et al. 2020)",
        MEASURE,
        action="store_true",
    ),
    Option(
        "--instability-rounds",
        "comma list of rounds to measure",
        MEASURE,
        parse=rounds_list,
        metavar="R,R...",
        shown="every round",
    ),
    Option(
        "--instability-points",
        "points on the linear path, both ends included",
        MEASURE,
        type=int,
        metavar="N",
        shown=DEFAULT.instability_points,
    ),
    Option(
        "--instability-bn",
        "BatchNorm statistics at each point of the path: interpolated like the weights, or "
        "recomputed on training batches at each point (as REPAIR, Jordan et al. 2022, resets them; recompute also "
        "records the interpolated barriers of the same pair)",
        MEASURE,
        choices=INSTABILITY_BN,
        shown=DEFAULT.instability_bn,
    ),
    Option(
        "--no-early-stop-weights",
        "do not keep the tickets' early-stop weights of each round (the round files' "
        "early_stop; a sweep's -early-stop<n>.pth)",
        MEASURE,
        action="store_false",
        into="save_early_stop",
    ),
    Option(
        "--data-root",
        "folder holding the data set (torchvision's layout or the raw files); searched first",
        DATA,
        metavar="DIR",
        shown="$LTH_RAY_DATA, else ~/.cache/lth_ray/datasets",
    ),
    Option("--download", "let torchvision download a missing data set", DATA, action="store_true"),
    Option(
        "--device",
        "auto: a GPU when one is visible (in a sweep the GPU Ray assigns; a trial assigned a GPU it "
        "cannot see fails); cpu: train on CPUs, also when Ray assigns logical GPUs (rehearsals); cuda",
        NUMERICS,
        choices=DEVICES,
        default=DEFAULT.device,
    ),
    Option(
        "--precision",
        "GPU arithmetic: fp32 (TF32 off, the paper's), tf32, bf16 autocast, or fp64 (a reference)",
        NUMERICS,
        choices=PRECISIONS,
        default=DEFAULT.precision,
    ),
    Option(
        "--deterministic",
        "deterministic kernels: bitwise reruns and resumes on a GPU (slower)",
        NUMERICS,
        action="store_true",
    ),
    Option(
        "--eval-memory",
        f"memory budget of evaluation, scoring at init and instability paths (at least {MIN_EVAL_MEMORY_MB})",
        NUMERICS,
        type=int,
        metavar="MiB",
        shown=f"{DEFAULT_EVAL_MEMORY_MB} MiB on a CPU, half the free memory on a GPU",
    ),
)


def in_scope(options: tuple[Option, ...], scope: str) -> tuple[Option, ...]:
    if scope not in SCOPES:
        raise ValueError(f"scope {scope!r} is unknown; allowed: {', '.join(SCOPES)}")
    return tuple(o for o in options if scope in o.scopes)


def help_of(option: Option, scope: str, default: Any = None, choices: tuple | None = None) -> str:
    """The option's help as --help prints it: what it means, its choices in a list, a grid axis, the default."""
    text = option.help
    allowed = option.allowed() if choices is None else choices
    axis = " (an axis of the grid)" if option.grid and scope == "sweep" else ""
    if allowed and option.is_list(scope):
        text += f"; a comma list of {', '.join(allowed)}{axis}"
    elif allowed and option.metavar:  # choices its metavar does not list (--arch's)
        text += f"; one of {', '.join(allowed)}{axis}"
    elif axis:
        text += f"; a comma list{axis}"
    if option.is_flag:  # on where a command's default turns it on (store_true True, store_false False)
        shown = "on" if default is not None and default != (option.action == "store_false") else "off"
    elif default is not None:
        shown = default
    else:
        shown = option.shown if option.shown is not None else option.default
    return f"{text} (default: {NONE if shown is None else shown})"


def add_options(
    parser: argparse.ArgumentParser,
    options: tuple[Option, ...],
    scope: str,
    defaults: dict[str, Any] | None = None,
    choices: dict[str, tuple] | None = None,
) -> None:
    """Add `options` of `scope` to `parser`, in groups, each with its help, choices and default shown.

    `defaults` and `choices` (by destination) narrow the table for one command: a sweep module's archs and
    data sets, for instance. Choices are checked after parsing (`check_choices`), for lists item by item; the
    registries' choices are read here, when the parser is built."""
    defaults, choices = defaults or {}, choices or {}
    groups: dict[str, Any] = {}
    for o in in_scope(options, scope):
        if o.group not in groups:
            groups[o.group] = parser.add_argument_group(o.group)
        g = groups[o.group]
        allowed = choices.get(o.dest, o.allowed())
        default = defaults.get(o.dest, o.default)
        help_text = help_of(o, scope, defaults.get(o.dest), choices.get(o.dest, allowed))
        if o.is_flag:  # off: False for store_true, True for store_false (TrajectoryConfig's defaults)
            on = {"default": defaults[o.dest]} if o.dest in defaults else {}  # a command's default (a sweep's)
            g.add_argument(o.flag, dest=o.dest, action=o.action, help=help_text, **on)
        else:
            metavar = o.metavar or "{" + ",".join(allowed) + "}"
            if o.grid and scope == "sweep":
                metavar = f"{o.metavar or o.dest.upper()}[,...]"
            g.add_argument(
                o.flag, dest=o.dest, type=o.text_type(scope), default=default, metavar=metavar, help=help_text
            )
        for alias in o.aliases:
            if alias.const is not None:
                g.add_argument(
                    alias.flag,
                    dest=o.dest,
                    action="store_const",
                    const=alias.const,
                    default=argparse.SUPPRESS,
                    help=argparse.SUPPRESS,
                )
            else:
                g.add_argument(
                    alias.flag, dest=o.dest, type=o.text_type(scope), default=argparse.SUPPRESS, help=argparse.SUPPRESS
                )


def option(dest: str, options: tuple[Option, ...] = RECIPE) -> Option:
    for o in options:
        if o.dest == dest:
            return o
    raise KeyError(dest)


def value_of(args: argparse.Namespace, o: Option, scope: str) -> Any:
    """The option's value as the recipe takes it: None when not given, a list for a list or a sweep's axis."""
    text = getattr(args, o.dest)
    if text is None or o.is_flag:
        return text
    if o.grid and scope == "sweep":
        if o.type is str or o.parse is not None:
            values = [t.strip() for t in str(text).split(",") if t.strip()]  # (`none` is a value here: --augment)
            if not values:
                raise ConfigError(f"{o.flag}={text!r} is empty; give at least one value")
            return values if o.parse is None else [o.parse(v, o.flag) for v in values]
        return parse_numbers(text, o.flag, o.type)
    if o.parse is not None:
        return o.parse(text, o.flag)
    if o.listed:
        return names(text, o.flag)
    return text


def check_choices(
    args: argparse.Namespace, options: tuple[Option, ...], scope: str, choices: dict[str, tuple] | None = None
) -> None:
    """Every given value is one of its option's choices, or one `error:` line naming it and the allowed ones.
    A command's narrowed choices (`choices`, by destination) are "not allowed here" rather than unknown."""
    choices = choices or {}
    for o in in_scope(options, scope):
        allowed = choices.get(o.dest, o.allowed())
        text = getattr(args, o.dest, None)
        if not allowed or text is None:
            continue
        values = [t.strip() for t in str(text).split(",") if t.strip()] if o.is_list(scope) else [text]
        for value in values:
            if value not in allowed:
                named = f"{o.flag}: {value!r}" if o.is_list(scope) else f"{o.flag}={value!r}"
                why = "is not allowed here" if o.dest in choices else "is unknown"
                raise ConfigError(f"{named} {why}; allowed: {', '.join(allowed)}")


def recipe_settings(args: argparse.Namespace, scope: str, options: tuple[Option, ...] = RECIPE) -> dict:
    """The recipe's settings that the command line gives one value each, by field name, for `from_preset`
    (None: not given). In the sweep the grid axes are not among them (`grid_axes`)."""
    return {
        o.dest: value_of(args, o, scope)
        for o in in_scope(options, scope)
        if o.dest in SETTINGS and not (o.grid and scope == "sweep")
    }


def grid_axes(args: argparse.Namespace, options: tuple[Option, ...] = RECIPE) -> dict[str, list]:
    """The sweep's grid axes by field name, each a list; [None] where the option is not given (the preset's)."""
    return {o.dest: value_of(args, o, "sweep") or [None] for o in in_scope(options, "sweep") if o.grid}
