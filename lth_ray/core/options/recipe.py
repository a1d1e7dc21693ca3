"""The recipe's options, declared once: both CLIs (`lth-ray trajectory` and every sweep) are built from this table.

Each option's help, type, choices (the validator's own constants, or a registry's names read when a parser is
built) and the default `--help` shows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lth_ray.core.options.anatomy import ANATOMY
from lth_ray.core.options.option import (
    COHORT,
    DATA,
    MEASURE,
    NONE,
    NUMERICS,
    PRUNE,
    TRAIN,
    WHAT,
    Alias,
    Option,
    baseline_names,
    dataset_names,
    layer_names,
    method_names,
    rounds_list,
)
from lth_ray.core.options.resolve import arch_names
from lth_ray.core.spec.config import (
    ABLATIONS,
    ACTIVATIONS,
    DEVICES,
    PRECISIONS,
    PRUNINGS,
    TrajectoryConfig,
    parse_plan,
    parse_seeds,
)
from lth_ray.core.spec.memory import DEFAULT_EVAL_MEMORY_MB, DEFAULT_GPU_EVAL_MEMORY_MB, MIN_EVAL_MEMORY_MB
from lth_ray.core.spec.presets import PLAN_NETS, PRESETS, length, lengths
from lth_ray.core.spec.training import AUGMENTATIONS, INSTABILITY_BN, OPTIMIZERS, RETRAIN_MODES

ALL_PRESETS = tuple(PRESETS.values())
PLAN_PRESETS = tuple(PRESETS[name] for name in PLAN_NETS)


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
    """A preset's value of setting `name` (`TrajectoryConfig`'s default where a preset has no such field)."""
    return lambda p: getattr(p, name, getattr(TrajectoryConfig, name))


def _lengths(p) -> str:
    return ",".join(str(m) for m in getattr(p, "milestones", ())) or NONE


DEFAULT = TrajectoryConfig  # its class attributes are the fields' defaults
LENGTH = "; iterations (2000, 2000it) or epochs of the data set at the batch size (80ep)"

RECIPE: tuple[Option, ...] = (
    Option(
        "--arch",
        "the network and its recipe: a thesis preset (Frankle & Carbin 2019, Figure 2), a deeper "
        "net's preset (OpenLTH's defaults: resnet20, vgg16, vgg19; the LTH paper's section 5: resnet20-lth, "
        "resnet20-lth-warmup, vgg19-lth, vgg19-lth-warmup) or a registered model (OpenLTH's cifar_resnet_* and "
        "cifar_vgg_* with their family's OpenLTH defaults)",
        WHAT,
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
        shown=_by_preset(lambda p: _plan(p.plan_fc), PLAN_PRESETS),
    ),
    Option(
        "--plan-conv",
        "conv plan in the thesis' tokens: n (3x3 conv), M (max-pool), A (avg-pool), nB (conv + "
        "BatchNorm), e.g. 64,64,M",
        WHAT,
        parse=parse_plan,
        metavar="T,T...",
        shown=_by_preset(lambda p: _plan(p.plan_conv), PLAN_PRESETS),
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
        "--retrain",
        "how the ticket is retrained after each pruning step (Renda et al. 2020): weight-rewind (weights and "
        "schedule back to --rewind-iteration k), lr-rewind (the trained weights kept, the schedule of the last t "
        "iterations), fine-tune (the trained weights kept, t iterations at the schedule's final rate); baselines "
        "train as under weight-rewind",
        PRUNE,
        choices=RETRAIN_MODES,
        grid=True,
        shown=DEFAULT.retrain,
    ),
    Option(
        "--retrain-iterations",
        "t, the length of each retrained round under lr-rewind and fine-tune (0: T - k; iterations - t a "
        "multiple of --eval-every)" + LENGTH,
        PRUNE,
        parse=length,
        grid=True,
        metavar="T",
        shown="T - k",
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
        "--compile-step",
        "compile the training step (torch.compile; CUDA graphs on a GPU): other kernels, so other rounding",
        NUMERICS,
        action="store_true",
    ),
    Option(
        "--eval-memory",
        f"memory budget of evaluation, scoring at init and instability paths (at least {MIN_EVAL_MEMORY_MB})",
        NUMERICS,
        type=int,
        metavar="MiB",
        shown=f"{DEFAULT_EVAL_MEMORY_MB} MiB on a CPU, {DEFAULT_GPU_EVAL_MEMORY_MB} MiB on a GPU (fixed: reproducible)",
    ),
) + ANATOMY
