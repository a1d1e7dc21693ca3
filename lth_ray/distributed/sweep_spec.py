"""A sweep's command line -> a validated `SweepSpec`: what the sweep runs, as data.

The recipe's options are the trajectory CLI's (`lth_ray.core.options.recipe`), with the same names; the grid's
(arch, prune rates, learning rate, batch size, rewind iteration, optimizer, weight decay, warmup, augmentation)
take comma lists here, and with `--seeds` those lists are the grid's axes (`lth_ray.distributed.grid`).
Everything is checked here, before Ray starts.
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from dataclasses import dataclass
from typing import Any

from lth_ray.core.engine.trajectory import cohort_members
from lth_ray.core.methods.member import is_ticket
from lth_ray.core.options.option import Option, OptionParser, ticket_names
from lth_ray.core.options.parsing import add_options, check_choices, grid_axes, option, recipe_settings, value_of
from lth_ray.core.options.recipe import RECIPE
from lth_ray.core.options.resolve import from_preset
from lth_ray.core.spec.config import ConfigError, TrajectoryConfig
from lth_ray.core.spec.memory import MIN_EVAL_MEMORY_MB
from lth_ray.core.spec.presets import PLAN_NETS, PRESETS
from lth_ray.distributed.calibration import choose

SCOPE = "sweep"
TRACKS = ("none", "wandb", "mlflow")  # SweepSpec.track: where Tune's callbacks log (lth_ray.distributed.tracking)
GPU_SHARING = ("time-slice", "mps")  # SweepSpec.gpu_sharing: how trials sharing a GPU run (lth_ray.distributed.planner)


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep: the trajectories to run and how and where to run them."""

    name: str
    storage: str  # absolute folder or URI; the experiment is <storage>/<name>
    trajectories: tuple[TrajectoryConfig, ...]  # every member of every cohort: tickets, then their baselines
    seeds_per_trial: int | None = None  # None: the plan's (1 without GPUs)
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None  # None: the plan's share of a GPU
    num_gpus: float | None = None  # the GPUs the sweep may use (on a cluster: may scale to); None: found
    gpu_memory_gib: float | None = None  # None: this machine's GPU when the plan is for it, else the calibration's
    gpu_calibration: str | None = None  # a calibration table (lth_ray.distributed.calibration); None: assumed numbers
    gpu_name: str | None = None  # the table's GPU model to plan for; None: its only one
    gpu_sharing: str = "time-slice"  # GPU_SHARING: trials sharing a GPU take turns, or run side by side under MPS
    cluster_config: str | None = None  # node types to check a cluster plan against (lth_ray.distributed.capacity)
    address: str | None = None
    resume: bool = False
    max_failures: int = 3
    keep_checkpoints: int = 2
    download: bool = False
    export: bool = True
    reuse_actors: bool = True
    dry_run: bool = False
    eval_memory_mb: int | None = None  # evaluation's memory budget (None: the engine's default; see cohort)
    track: str = "none"  # TRACKS: log trials to Weights & Biases or MLflow, or not

    @property
    def experiment(self) -> str:
        return f"{self.storage.rstrip('/')}/{self.name}"


# ------------------------------------------------------------------ the command line (everything is checked)


@dataclass(frozen=True)
class SweepDefaults:
    """What differs between the sweep modules: which archs and data sets make sense, and the default grid.
    `recipe`: other options' defaults by destination, as the command line spells them, e.g.
    (("arch", "resnet20"), ("rewind_iteration", "0,100,500,2000"), ("instability", True)): a flag set on here
    stays on in that sweep."""

    prog: str
    archs: tuple[str, ...]
    datasets: tuple[str, ...]
    seeds: str = "1"
    baselines: str = "none"
    recipe: tuple[tuple[str, Any], ...] = ()


KEEP, RESOURCES, BOOKKEEPING = "what to measure and keep", "resources", "bookkeeping"
# What only a sweep has: how it is placed, where it is kept, how it is run.
RUN: tuple[Option, ...] = (
    Option(
        "--baseline-early-stop-weights",
        "keep the baselines' early-stop weights too (else tickets' only)",
        KEEP,
        action="store_true",
    ),
    Option(
        "--num-gpus",
        "GPUs the sweep may use; on a cluster what it may scale to, even if none is up yet",
        RESOURCES,
        type=float,
        metavar="N",
        shown="this machine's CUDA devices; with --address the cluster's GPUs up now",
    ),
    Option(
        "--gpus-per-trial",
        "share of one GPU per trial, in (0, 1], or 0 for CPU trials",
        RESOURCES,
        type=float,
        metavar="G",
        shown="the placement plan's",
    ),
    Option(
        "--gpu-memory",
        "memory of one GPU for the plan",
        RESOURCES,
        type=float,
        metavar="GiB",
        shown="this machine's GPU, else the calibration's (24, an A10G, without --gpu-calibration)",
    ),
    Option(
        "--gpu-calibration",
        "the GPUs' measured speed, launch floor and memory for the plan: a table that benchmarks/gpu_check.py writes",
        RESOURCES,
        metavar="PATH",
        shown="assumed A10G numbers (10 TFLOP/s, 1 ms launch floor, 24 GiB), not measured",
    ),
    Option(
        "--gpu-model",
        "the GPU model in --gpu-calibration to plan for, as torch.cuda.get_device_name() spells it",
        RESOURCES,
        metavar="NAME",
        shown="the table's only GPU",
    ),
    Option(
        "--gpu-sharing",
        "how trials sharing a GPU run: time-slice (they take turns: host-bound cohorts get a GPU of their own) or mps "
        "(NVIDIA MPS is running on the GPU nodes: they run side by side)",
        RESOURCES,
        choices=GPU_SHARING,
        default=SweepSpec.gpu_sharing,
    ),
    Option(
        "--cluster-config",
        "cluster-launcher YAML whose node types the plan must fit",
        RESOURCES,
        metavar="YAML",
        shown="on a `ray up` head: ~/ray_bootstrap_config.yaml",
    ),
    Option(
        "--cpus-per-trial",
        "CPUs per trial (its torch threads)",
        RESOURCES,
        type=float,
        metavar="C",
        default=SweepSpec.cpus_per_trial,
    ),
    Option(
        "--seeds-per-trial",
        "seeds per trial: a cohort trains them, with their baselines, as one vectorized model",
        RESOURCES,
        type=int,
        metavar="N",
        shown="the placement plan's, 1 without GPUs",
    ),
    Option(
        "--address",
        "an existing Ray cluster: 'auto' or host:port",
        RESOURCES,
        metavar="ADDRESS",
        shown="a local Ray of its own",
    ),
    Option(
        "--storage", "folder or URI (s3://, gs://, file://) for results", BOOKKEEPING, metavar="DIR", default="results"
    ),
    Option(
        "--name",
        "experiment name: the results are <storage>/<name>",
        BOOKKEEPING,
        metavar="NAME",
        shown="<sweep>-<date>-<time>",
    ),
    Option(
        "--resume",
        "continue the interrupted sweep --name, without --name the newest unfinished one in "
        "--storage (its trials from their newest round checkpoints)",
        BOOKKEEPING,
        action="store_true",
    ),
    Option(
        "--max-failures",
        "retries per trial after a crash",
        BOOKKEEPING,
        type=int,
        metavar="N",
        default=SweepSpec.max_failures,
    ),
    Option(
        "--keep-checkpoints",
        "checkpoints kept per trial, at least 1 (each is small: the round files hold the results)",
        BOOKKEEPING,
        type=int,
        metavar="N",
        default=SweepSpec.keep_checkpoints,
    ),
    Option(
        "--no-export", "skip the export (Parquet and the thesis' files) at the end", BOOKKEEPING, action="store_true"
    ),
    Option(
        "--dry-run",
        "print the placement plan (trials, GPU shares, estimated GPU-hours), run nothing",
        BOOKKEEPING,
        action="store_true",
    ),
    Option(
        "--track",
        "log every trial's rounds to an experiment tracker through Tune's callbacks",
        BOOKKEEPING,
        choices=TRACKS,
        default=SweepSpec.track,
    ),
)
OPTIONS = RECIPE + RUN


def narrowed(defaults: SweepDefaults) -> tuple[dict, dict]:
    """A sweep module's defaults and choices where they narrow the recipe's: its archs and data sets; a sweep's
    members ride with tickets, so its --method is a ticket kind."""
    values = {
        "arch": ",".join(defaults.archs),
        "dataset": defaults.datasets[0],
        "seeds": defaults.seeds,
        "baselines": defaults.baselines,
        **dict(defaults.recipe),
    }
    return values, {"arch": defaults.archs, "dataset": defaults.datasets, "method": ticket_names()}


def build_parser(defaults: SweepDefaults) -> argparse.ArgumentParser:
    p = OptionParser(
        prog=defaults.prog,
        description="Iterative Magnitude Pruning sweep on Ray Tune. The recipe's "
        "options are those of lth-ray trajectory; the ones marked [,...] take comma lists, "
        "and each list is an axis of the grid (with --seeds).",
    )
    add_options(p, OPTIONS, SCOPE, *narrowed(defaults))
    return p


CREDENTIAL_QUERY = ("access_key", "secret_key", "session_token", "token", "password")


def _resolve_storage(text: str) -> str:
    if "://" in text:
        from urllib.parse import parse_qs, urlsplit

        parts = urlsplit(text)
        if "@" in parts.netloc or any(k.lower() in CREDENTIAL_QUERY for k in parse_qs(parts.query)):
            # the URI is printed and recorded with every trial's config: never let a secret ride in it
            raise ConfigError(
                f"--storage {parts.scheme}://<hidden> carries credentials in the URI; pass them "
                "through the environment or an instance profile instead"
            )
        return text.rstrip("/")
    return os.path.abspath(os.path.expanduser(text))  # a relative folder means the user's cwd, made absolute here


def _calibration_path(a: argparse.Namespace) -> str | None:
    return None if a.gpu_calibration is None else os.path.abspath(os.path.expanduser(a.gpu_calibration))


def check_resources(a: argparse.Namespace) -> None:
    """The run's numbers, each in its range (what they fit on is checked against the plan, later)."""
    if a.num_gpus is not None and a.num_gpus < 0:
        raise ConfigError(f"--num-gpus={a.num_gpus:g} must be >= 0")
    if a.num_gpus is not None and not a.address and not float(a.num_gpus).is_integer():
        raise ConfigError(
            f"--num-gpus={a.num_gpus:g} is not allowed without --address: the Ray started here declares whole "
            "GPUs; give a whole number (--gpus-per-trial shares a GPU between trials)"
        )
    gpt = a.gpus_per_trial
    if gpt is not None and not 0 <= gpt <= 1:
        raise ConfigError(
            f"--gpus-per-trial={gpt:g} is not allowed: a trial trains its cohort on one GPU; use a "
            "share in (0, 1], or 0 for CPU trials"
        )
    if a.gpu_memory is not None and a.gpu_memory <= 0:
        raise ConfigError(f"--gpu-memory={a.gpu_memory:g} must be positive (GiB)")
    choose(_calibration_path(a), a.gpu_model)  # the table reads and names the GPU, before anything starts
    if gpt is not None and a.num_gpus is not None and gpt > a.num_gpus:
        raise ConfigError(f"--gpus-per-trial={gpt:g} exceeds --num-gpus={a.num_gpus:g}")
    if a.seeds_per_trial is not None and a.seeds_per_trial < 1:
        raise ConfigError(f"--seeds-per-trial={a.seeds_per_trial} must be >= 1")
    if a.cpus_per_trial <= 0:
        raise ConfigError(f"--cpus-per-trial={a.cpus_per_trial:g} must be positive")
    if a.eval_memory is not None and a.eval_memory < MIN_EVAL_MEMORY_MB:
        raise ConfigError(f"--eval-memory={a.eval_memory} is too small; allowed: >= {MIN_EVAL_MEMORY_MB} (MiB)")
    if a.max_failures < 0:
        raise ConfigError(f"--max-failures={a.max_failures} must be >= 0")
    if a.keep_checkpoints < 1:
        raise ConfigError(f"--keep-checkpoints={a.keep_checkpoints} must be >= 1 (a trial resumes from the latest)")


# The grid's axes besides arch, outermost first (seeds innermost): lth_ray 0.2's order, then the recipe's.
GRID_ORDER = (
    "prune_rate_fc",
    "prune_rate_conv",
    "learning_rate",
    "batch_size",
    "rewind_iteration",
    "optimizer",
    "weight_decay",
    "warmup",
    "augment",
    "retrain",
    "retrain_iterations",
    "criterion",
    "pruned_weights",
)


def spec_from_args(a: argparse.Namespace, defaults: SweepDefaults) -> SweepSpec:
    """The sweep a parsed command line asks for: every point of the grid a ticket, its members beside it."""
    check_choices(a, OPTIONS, SCOPE, narrowed(defaults)[1])
    axes = grid_axes(a)
    archs = axes.pop("arch")
    seeds = value_of(a, option("seeds"), SCOPE)
    baselines = value_of(a, option("baselines"), SCOPE)
    ablations = value_of(a, option("ablations"), SCOPE)
    check_resources(a)
    storage = _resolve_storage(a.storage)
    if a.resume and not a.name:  # the newest unfinished sweep in the storage, or one line saying there is none
        from lth_ray.distributed.unfinished import newest_unfinished

        name = newest_unfinished(storage)
    else:
        name = a.name or f"{defaults.prog.split('.')[-1]}-{time.strftime('%Y%m%d-%H%M%S')}"
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"--name={name!r} is not allowed; use a plain folder name")
    settings = recipe_settings(a, SCOPE)
    if (settings["plan_fc"] or settings["plan_conv"]) and len(archs) != 1:
        raise ConfigError(
            f"--plan-fc/--plan-conv replace one preset's plan; give exactly one --archs/--arch value, not {a.arch!r}"
        )
    if settings["data_root"] and "://" not in settings["data_root"]:
        # the user's relative folder, made absolute here: trials run in other working folders
        settings["data_root"] = os.path.abspath(os.path.expanduser(settings["data_root"]))
    members: list[TrajectoryConfig] = []
    for arch in archs:
        arch_axes = {name: axes[name] for name in GRID_ORDER}
        if arch in PLAN_NETS and not PRESETS[arch].plan_conv:
            arch_axes["prune_rate_conv"] = [None]  # a net without conv layers
        for *point, seed in itertools.product(*arch_axes.values(), seeds):
            ticket = from_preset(arch, **settings, **dict(zip(arch_axes, point)), seed=seed)
            members += [
                m if is_ticket(m) else m.replace(save_early_stop=a.baseline_early_stop_weights)
                for m in cohort_members(ticket, [seed], baselines, ablations)
            ]
    trajectories = tuple(sorted(members, key=lambda t: not is_ticket(t)))
    keys = [t.key for t in trajectories]
    if len(set(keys)) != len(keys):
        raise ConfigError("the sweep lists the same trajectory twice; check --seeds and the rate lists")
    return SweepSpec(
        name=name,
        storage=storage,
        trajectories=trajectories,
        keep_checkpoints=a.keep_checkpoints,
        download=a.download,
        eval_memory_mb=a.eval_memory,
        track=a.track,
        **resources(a),
    )


def resources(a: argparse.Namespace) -> dict[str, Any]:
    """What a sweep and a branch take alike from their command lines: where trials run, on what, and how."""
    return dict(
        seeds_per_trial=a.seeds_per_trial,
        cpus_per_trial=a.cpus_per_trial,
        gpus_per_trial=a.gpus_per_trial,
        num_gpus=a.num_gpus,
        gpu_memory_gib=a.gpu_memory,
        gpu_calibration=_calibration_path(a),
        gpu_name=a.gpu_model,
        gpu_sharing=a.gpu_sharing,
        cluster_config=a.cluster_config,
        address=a.address,
        resume=a.resume,
        max_failures=a.max_failures,
        export=not a.no_export,
        dry_run=a.dry_run,
    )
