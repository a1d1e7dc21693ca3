"""The sweep CLI shared by `sweeps/*.py`: arguments -> `SweepSpec` -> Ray Tune `Tuner` -> results + export.

The grid is arch x prune rates x learning rate x batch size x rewind point x seed; each point is a ticket,
and each requested baseline rides with it. One trial is one cohort (`cohort.Cohort`): the tickets of
some seeds of one configuration and their baselines, trained as one vectorized model; how many seeds, and what
share of a GPU each trial asks for, is the placement plan's choice (`lth_ray.planner`) for the GPUs the sweep
may use. Every trial checkpoints after every round and resumes from it after a crash; `--resume` continues a
killed sweep.
"""
from __future__ import annotations

import argparse
import itertools
import math
import os
import socket
import sys
import time
import uuid
from dataclasses import dataclass, replace

from lth_ray.core import faults
from lth_ray.core.engine.budget import DEFAULT_EVAL_MEMORY_MB, MIN_EVAL_MEMORY_MB
from lth_ray.core.spec.config import (ABLATIONS, DEVICES, PRECISIONS, PRESETS, ConfigError, TrajectoryConfig, from_preset,
                     parse_numbers, parse_plan, parse_seeds)
from lth_ray.distributed.planner import GIB, GPUModel, Plan, configuration, plan_sweep, shared_eval_memory_mb
from lth_ray.core.engine.trajectory import BASELINES, cohort_members


@dataclass(frozen=True)
class SweepDefaults:
    """What differs between the sweep modules: which archs and data sets make sense, and the default grid."""
    prog: str
    archs: tuple[str, ...]
    datasets: tuple[str, ...]
    seeds: str = "1"
    baselines: str = "none"


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep: the trajectories to run and how and where to run them."""
    name: str
    storage: str                       # absolute folder or URI; the experiment is <storage>/<name>
    trajectories: tuple[TrajectoryConfig, ...]  # every member of every cohort: tickets, then their baselines
    seeds_per_trial: int | None = None  # None: the plan's (1 without GPUs)
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None  # None: the plan's share of a GPU
    num_gpus: float | None = None        # the GPUs the sweep may use (on a cluster: may scale to); None: found
    gpu_memory_gib: float | None = None  # None: this machine's GPU when the plan is for it, else GPUModel's
    cluster_config: str | None = None    # node types to check a cluster plan against (lth_ray.capacity)
    address: str | None = None
    resume: bool = False
    max_failures: int = 3
    keep_checkpoints: int = 2
    download: bool = False
    export: bool = True
    reuse_actors: bool = True
    dry_run: bool = False
    eval_memory_mb: int | None = None  # evaluation's memory budget (None: the engine's default; see cohort)

    @property
    def experiment(self) -> str:
        return f"{self.storage.rstrip('/')}/{self.name}"


# ------------------------------------------------------------------ parsing (the edge: everything is checked here)

def build_parser(defaults: SweepDefaults) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=defaults.prog, description="Iterative Magnitude Pruning sweep on Ray Tune.")
    g = p.add_argument_group("what to sweep")
    g.add_argument("--archs", default=",".join(defaults.archs), help=f"comma list of {', '.join(defaults.archs)}")
    g.add_argument("--seeds", default=defaults.seeds,
                   help=f"a count N (seeds 0..N-1) or a comma list of seeds (default {defaults.seeds})")
    g.add_argument("--prune-rates", help="comma list of fc prune rates (default: the preset's)")
    g.add_argument("--conv-prune-rates", help="comma list of conv prune rates (default: the preset's)")
    g.add_argument("--baselines", default=defaults.baselines,
                   help="comma list of reinit, random-prune (ride with their ticket) and the pruning-at-init methods "
                        f"snip, grasp, synflow, magnitude-init, or none (default {defaults.baselines})")
    g.add_argument("--ablations", default="", help="comma list of shuffle, reinit, invert: sanity checks of the "
                                                      "ticket's and every baseline's masks (Frankle et al. 2021)")
    g.add_argument("--score-batches", type=int, default=1,
                   help="SNIP's and GraSP's training batches for their scores (1)")
    g.add_argument("--rewind-iteration", default="0",
                   help="comma list of rewind iterations k (late rewinding; default 0, the initialisation)")
    g.add_argument("--learning-rate", help="comma list of Adam learning rates (default: the preset's)")
    g.add_argument("--batch-size", help="comma list of batch sizes (default: the preset's, 60)")
    g.add_argument("--plan-fc", help="hidden fc widths, e.g. 300,100 (replaces the one --archs preset's)")
    g.add_argument("--plan-conv", help="conv plan in the thesis' tokens, e.g. 64,64,M (one --archs preset)")
    g.add_argument("--one-shot", action="store_true", help="find tickets by one-shot instead of iterative pruning")
    g.add_argument("--pruning", default="layerwise", help="layerwise or global magnitude pruning")
    g.add_argument("--activation", default="relu", help="relu or tanh")
    g.add_argument("--instability", action="store_true",
                   help="per round, a second copy of each ticket (another data order) and the error barrier on the "
                        "linear path between the two (Frankle et al. 2020)")
    g.add_argument("--instability-rounds", help="comma list of rounds to measure (default: every round)")
    g.add_argument("--instability-points", type=int, default=31, help="points on the path, ends included")
    g.add_argument("--precision", default="fp32", help=f"GPU arithmetic: {', '.join(PRECISIONS)} (default fp32)")
    g.add_argument("--deterministic", action="store_true",
                   help="deterministic kernels: bitwise reruns and resumes on a GPU (slower)")
    g = p.add_argument_group("how long")
    g.add_argument("--rounds", type=int, default=None, help="pruning rounds after the dense round 0 (default 20)")
    g.add_argument("--iterations", type=int, help="training iterations per round (default: the preset's)")
    g.add_argument("--eval-every", type=int, default=100)
    g = p.add_argument_group("where")
    g.add_argument("--dataset", default=defaults.datasets[0], help=f"one of {', '.join(defaults.datasets)}")
    g.add_argument("--data-root", help="folder holding the data set in torchvision's layout")
    g.add_argument("--download", action="store_true", help="let torchvision download a missing data set")
    g = p.add_argument_group("resources")
    g.add_argument("--num-gpus", type=float, default=None,
                   help="GPUs the sweep may use; on a cluster what it may scale to, even if none is up yet "
                        "(default: this machine's CUDA devices; with --address the cluster's GPUs up now)")
    g.add_argument("--gpus-per-trial", type=float, default=None,
                   help="share of one GPU per trial, in (0, 1] (default: the placement plan's)")
    g.add_argument("--gpu-memory", type=float, default=None, metavar="GiB",
                   help="memory of one GPU for the plan (default: this machine's GPU, else 24, an A10G)")
    g.add_argument("--cluster-config", help="cluster-launcher YAML whose node types the plan must fit (default "
                                            "on a `ray up` head: ~/ray_bootstrap_config.yaml)")
    g.add_argument("--device", default="auto",
                   help="auto (the GPU Ray assigns; a trial assigned a GPU it cannot see fails), cpu (train on "
                        "CPUs even when Ray assigns GPUs: logical GPUs, rehearsals) or cuda")
    g.add_argument("--cpus-per-trial", type=float, default=1.0)
    g.add_argument("--eval-memory", type=int, default=None, metavar="MiB",
                   help="memory budget of evaluation, scoring at init and instability paths (default: "
                        f"{DEFAULT_EVAL_MEMORY_MB} MiB on a CPU, half the free memory on a GPU)")
    g.add_argument("--seeds-per-trial", type=int, default=None,
                   help="seeds per trial (a cohort trains them, with their baselines, as one vectorized model); "
                        "default: the placement plan's (1 without GPUs)")
    g.add_argument("--address", help="an existing Ray cluster ('auto' or host:port); default: a local Ray")
    g = p.add_argument_group("bookkeeping")
    g.add_argument("--storage", default="results", help="folder or URI (s3://, gs://, file://) for results")
    g.add_argument("--name", help="experiment name (default: <prog>-<time>)")
    g.add_argument("--resume", action="store_true", help="continue the interrupted sweep --name")
    g.add_argument("--max-failures", type=int, default=3, help="retries per trial after a crash")
    g.add_argument("--keep-checkpoints", type=int, default=2,
                   help="checkpoints kept per trial (>= 1; each is small: the round files hold the results)")
    g.add_argument("--no-early-stop-weights", action="store_true",
                   help="do not keep the tickets' early-stop weights of each round (no -early-stop<n>.pth)")
    g.add_argument("--baseline-early-stop-weights", action="store_true",
                   help="keep the baselines' early-stop weights too (default: tickets only)")
    g.add_argument("--no-export", action="store_true", help="skip the export at the end")
    g.add_argument("--dry-run", action="store_true",
                   help="print the placement plan (trials, GPU shares, estimated GPU-hours), run nothing")
    return p


CREDENTIAL_QUERY = ("access_key", "secret_key", "session_token", "token", "password")


def _resolve_storage(text: str) -> str:
    if "://" in text:
        from urllib.parse import parse_qs, urlsplit
        parts = urlsplit(text)
        if "@" in parts.netloc or any(k.lower() in CREDENTIAL_QUERY for k in parse_qs(parts.query)):
            # the URI is printed and recorded with every trial's config: never let a secret ride in it
            raise ConfigError(f"--storage {parts.scheme}://<hidden> carries credentials in the URI; pass them "
                              "through the environment or an instance profile instead")
        return text.rstrip("/")
    return os.path.abspath(os.path.expanduser(text))  # a relative folder means the user's cwd, made absolute here


def spec_from_args(a: argparse.Namespace, defaults: SweepDefaults) -> SweepSpec:
    archs = [s.strip() for s in a.archs.split(",") if s.strip()]
    if not archs:
        raise ConfigError(f"--archs={a.archs!r} is empty; allowed: {', '.join(defaults.archs)}")
    for arch in archs:
        if arch not in defaults.archs:
            raise ConfigError(f"--archs: {arch!r} is not allowed here; allowed: {', '.join(defaults.archs)}")
    if a.dataset not in defaults.datasets:
        raise ConfigError(f"--dataset={a.dataset!r} is not allowed here; allowed: {', '.join(defaults.datasets)}")
    seeds = parse_seeds(a.seeds)
    baselines = [b.strip() for b in a.baselines.split(",") if b.strip() and b.strip() != "none"]
    for b in baselines:
        if b not in BASELINES:
            raise ConfigError(f"--baselines: {b!r} is unknown; allowed: {', '.join(BASELINES)}")
    ablations = [b.strip() for b in a.ablations.split(",") if b.strip()]
    for b in ablations:
        if b not in ABLATIONS:
            raise ConfigError(f"--ablations: {b!r} is unknown; allowed: {', '.join(ABLATIONS)}")
    if a.num_gpus is not None and a.num_gpus < 0:
        raise ConfigError(f"--num-gpus={a.num_gpus:g} must be >= 0")
    gpt = a.gpus_per_trial
    if gpt is not None and not 0 <= gpt <= 1:
        raise ConfigError(f"--gpus-per-trial={gpt:g} is not allowed: a trial trains its cohort on one GPU; use a "
                          "share in (0, 1], or 0 for CPU trials")
    if a.device not in DEVICES:
        raise ConfigError(f"--device={a.device!r} is unknown; allowed: {', '.join(DEVICES)}")
    if a.gpu_memory is not None and a.gpu_memory <= 0:
        raise ConfigError(f"--gpu-memory={a.gpu_memory:g} must be positive (GiB)")
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
    if a.resume and not a.name:
        raise ConfigError("--resume needs --name of the sweep to continue")
    name = a.name or f"{defaults.prog.split('.')[-1]}-{time.strftime('%Y%m%d-%H%M%S')}"
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"--name={name!r} is not allowed; use a plain folder name")
    storage = _resolve_storage(a.storage)
    rounds = 20 if a.rounds is None else a.rounds
    if (a.plan_fc or a.plan_conv) and len(archs) != 1:
        raise ConfigError(f"--plan-fc/--plan-conv replace one preset's plan; give exactly one --archs, not {a.archs!r}")
    plans = {"plan_fc": parse_plan(a.plan_fc, "--plan-fc") if a.plan_fc else None,
             "plan_conv": parse_plan(a.plan_conv, "--plan-conv") if a.plan_conv else None}
    rewinds = parse_numbers(a.rewind_iteration, "--rewind-iteration", int)
    instability_rounds = tuple(parse_numbers(a.instability_rounds, "--instability-rounds", int)) \
        if a.instability_rounds else ()
    # the user's relative folder, made absolute here: trials run in other working folders
    data_root = os.path.abspath(os.path.expanduser(a.data_root)) if a.data_root and "://" not in a.data_root \
        else a.data_root
    rates = parse_numbers(a.learning_rate, "--learning-rate") if a.learning_rate else [None]
    batches = parse_numbers(a.batch_size, "--batch-size", int) if a.batch_size else [None]
    trajectories = []
    for arch in archs:
        preset = PRESETS[arch]
        fc_rates = parse_numbers(a.prune_rates, "--prune-rates") if a.prune_rates else [preset.prune_rate_fc]
        conv_rates = (parse_numbers(a.conv_prune_rates, "--conv-prune-rates") if a.conv_prune_rates and preset.plan_conv
                      else [preset.prune_rate_conv])
        for fc, conv, lr, batch, rewind, seed in itertools.product(fc_rates, conv_rates, rates, batches, rewinds,
                                                                   seeds):
            ticket = from_preset(arch, dataset=a.dataset, data_root=data_root, rounds=rounds,
                                 iterations=a.iterations, eval_every=a.eval_every, prune_rate_fc=fc,
                                 prune_rate_conv=conv, pruning=a.pruning, activation=a.activation, seed=seed,
                                 method="one-shot" if a.one_shot else "imp", rewind_iteration=rewind,
                                 learning_rate=lr, batch_size=batch, precision=a.precision,
                                 score_batches=a.score_batches,
                                 deterministic=a.deterministic, save_early_stop=not a.no_early_stop_weights,
                                 instability=a.instability, instability_points=a.instability_points,
                                 instability_rounds=instability_rounds, device=a.device, **plans)
            trajectories += [m if m.is_ticket else
                             m.replace(save_early_stop=a.baseline_early_stop_weights)
                             for m in cohort_members(ticket, [seed], baselines, ablations)]
    trajectories = tuple(sorted(trajectories, key=lambda t: not t.is_ticket))
    keys = [t.key for t in trajectories]
    if len(set(keys)) != len(keys):
        raise ConfigError("the sweep lists the same trajectory twice; check --seeds and the rate lists")
    return SweepSpec(name=name, storage=storage, trajectories=trajectories, seeds_per_trial=a.seeds_per_trial,
                     cpus_per_trial=a.cpus_per_trial,
                     gpus_per_trial=gpt, num_gpus=a.num_gpus, gpu_memory_gib=a.gpu_memory,
                     cluster_config=a.cluster_config, address=a.address,
                     resume=a.resume, max_failures=a.max_failures, keep_checkpoints=a.keep_checkpoints,
                     download=a.download, export=not a.no_export, dry_run=a.dry_run,
                     eval_memory_mb=a.eval_memory)


# ------------------------------------------------------------------ cohorts: the sweep's trials

def configurations(spec: SweepSpec) -> list[list[TrajectoryConfig]]:
    """The sweep's configurations (one recipe and ticket kind each), every member of every seed, in grid order."""
    from lth_ray.core.engine.cohort import recipe_of
    groups: dict[str, list[TrajectoryConfig]] = {}
    for t in spec.trajectories:
        groups.setdefault(repr(sorted(recipe_of(t).items())), []).append(t)
    return list(groups.values())


def ticket_parts(members: list[TrajectoryConfig]) -> list[list[TrajectoryConfig]]:
    """A configuration's members in the parts the planner may place apart: the tickets with the members that
    must share their cohort (`cohort.needs_ticket`), and the members that need nothing of them. On GPUs one seed
    of the longest configuration (Conv-6: ticket, re-init, random pruning) bounded the card's sweep at 65% of 8
    GPUs; random pruning in trials of its own brings the estimate to 96%."""
    from lth_ray.core.engine.cohort import needs_ticket
    bound = [t for t in members if t.is_ticket or needs_ticket(t)]
    free = [t for t in members if not (t.is_ticket or needs_ticket(t))]
    return [part for part in (bound, free) if part]


def cohort_of(members: list[TrajectoryConfig], seeds) -> tuple[TrajectoryConfig, ...]:
    """One trial's members: those of `seeds`, tickets first, then by label, in the seeds' order."""
    order = list(seeds)
    mine = [t for t in members if t.seed in order]
    return tuple(sorted(mine, key=lambda t: (not t.is_ticket, t.label, order.index(t.seed))))


def cohorts(spec: SweepSpec, per_trial: int) -> list[tuple[TrajectoryConfig, ...]]:
    """Per configuration, its seeds in groups of `per_trial`, each with the baselines of those seeds."""
    out = []
    for members in configurations(spec):
        seeds = list(dict.fromkeys(t.seed for t in members))
        out += [cohort_of(members, seeds[i:i + per_trial]) for i in range(0, len(seeds), per_trial)]
    return out


@dataclass(frozen=True)
class Placement:
    """The plan for the GPUs the sweep may use, its trials' members in launch order, and where the GPU count
    came from (for the printout)."""
    plan: Plan
    trials: tuple[tuple[TrajectoryConfig, ...], ...]
    gpus_from: str
    gpu: GPUModel


def place(spec: SweepSpec, gpus: float, gpus_from: str, gpu: GPUModel) -> Placement:
    """The placement plan (lth_ray.planner) of the sweep's configurations on `gpus` GPUs."""
    share = spec.gpus_per_trial
    groups = configurations(spec)
    if gpus > 0 and share != 0:  # GPU trials: members that need nothing of the ticket may be placed apart
        groups = [part for members in groups for part in ticket_parts(members)]
    names = [_configuration_name(m[0]) for m in groups]
    if len(set(names)) != len(names):
        names = [f"{n}#{i}" for i, n in enumerate(names)]
    costs = [configuration(n, m, gpu, spec.eval_memory_mb) for n, m in zip(names, groups)]
    if share and share > gpus:
        raise ConfigError(f"--gpus-per-trial={share:g} exceeds the sweep's {gpus:g} GPUs ({gpus_from}); give "
                          "--num-gpus, or --gpus-per-trial 0 for CPU trials")
    plan = plan_sweep(costs, 0.0 if share == 0 else gpus, gpu, spec.seeds_per_trial, share or None,
                      spec.cpus_per_trial)
    by_name = dict(zip(names, groups))
    return Placement(plan, tuple(cohort_of(by_name[t.configuration], t.seeds) for t in plan.trials), gpus_from, gpu)


def _configuration_name(ticket: TrajectoryConfig) -> str:
    return ticket.key[:ticket.key.rindex("-s")]


def sweep_gpus(spec: SweepSpec, cluster_gpus: float | None = None, local_devices: int | None = None
               ) -> tuple[float, str]:
    """The GPUs the sweep may use and where that number comes from: `--num-gpus` (on a cluster what it may
    scale to, up or not); else this machine's CUDA devices, or with `--address` the cluster's GPUs up now
    (`cluster_gpus`; None: not asked, a dry run). An autoscaling cluster with no GPU node up cannot say: that
    is an error naming --num-gpus."""
    if spec.num_gpus is not None:
        return spec.num_gpus, f"--num-gpus {spec.num_gpus:g}"
    if not spec.address:
        n = local_devices or 0
        return float(n), f"this machine's {n} CUDA device{'s' * (n != 1)} (--num-gpus not given)"
    if cluster_gpus is None:
        raise ConfigError(f"--address {spec.address} without --num-gpus: a dry run does not ask the cluster; "
                          "give --num-gpus N, the GPUs the sweep may scale to (0 for CPU trials)")
    if cluster_gpus <= 0:
        raise ConfigError(f"--address {spec.address}: the cluster shows no GPUs now (an autoscaler starts GPU "
                          "nodes only for work that asks for them); give --num-gpus N, the GPUs the sweep may "
                          "scale to, or --num-gpus 0 for CPU trials")
    return cluster_gpus, f"the cluster's {cluster_gpus:g} GPUs up now (--num-gpus not given)"


def gpu_model(spec: SweepSpec, local_memory: int | None) -> GPUModel:
    """`--gpu-memory`, else this machine's GPU when the plan is for it, else the planner's default (A10G)."""
    if spec.gpu_memory_gib:
        return GPUModel(memory_bytes=int(spec.gpu_memory_gib * GIB))
    if local_memory and not spec.address:
        return GPUModel(memory_bytes=local_memory)
    return GPUModel()


def cohort_name(members) -> str:
    """The trial's name: its configuration (the first ticket's key without the seed) and its seeds."""
    key = members[0].key
    seeds = sorted({m.seed for m in members})
    if len(seeds) > 1 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        label = f"{seeds[0]}-{seeds[-1]}"
    else:
        label = "_".join(str(s) for s in seeds)
    return f"{key[:key.rindex('-s')]}-s{label}"


# ------------------------------------------------------------------ checks that touch the outside world

def check_storage(spec: SweepSpec) -> None:
    """The experiment folder must be new (or, with --resume, an experiment), and the storage writable."""
    from pyarrow import fs as pafs

    from lth_ray.results.experiment import filesystem_and_path
    fs, path = filesystem_and_path(spec.experiment)
    exists = fs.get_file_info(path).type != pafs.FileType.NotFound
    if spec.resume:
        from ray.tune import Tuner
        if not exists or not Tuner.can_restore(spec.experiment):
            raise ConfigError(f"--resume: {spec.experiment} is not a Tune experiment to continue")
        from lth_ray.results.experiment import experiment_format, load_trials
        if experiment_format(load_trials(spec.experiment, weights=False)) == 1:  # never mix formats
            raise ConfigError(f"--resume: {spec.experiment} was written by lth_ray 0.1.0 (state format 1), which "
                              "this version does not continue; finish it with lth_ray 0.1.0, or export and "
                              "analyse it as it is (python -m lth_ray.export / lth_ray.report read it)")
        return
    if exists:
        raise ConfigError(f"experiment {spec.experiment} already exists; pass --resume to continue it "
                          "or choose another --name")
    if "://" not in spec.storage:
        try:
            os.makedirs(spec.storage, exist_ok=True)
            probe = os.path.join(spec.storage, f".lth_ray-probe-{uuid.uuid4().hex}")
            with open(probe, "w") as f:
                f.write("ok")
            os.remove(probe)
        except OSError as err:
            raise ConfigError(f"--storage {spec.storage} is not writable ({err.strerror})") from None


def check_address(address: str) -> None:
    """Fail fast with one line when host:port does not answer (ray.init would hang or print pages), or when
    its Ray refuses this client's token (ray.init would retry for 20 s, then say only "failed to connect")."""
    if address in ("auto", "local") or address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=5):
            pass
    except (OSError, ValueError):
        raise ConfigError(f"--address {address} is unreachable (no Ray head answers there)") from None
    from ray._raylet import InnerGcsClient  # private (Ray is pinned): one GCS call with the token ray.init sends
    from ray.exceptions import AuthenticationError
    try:
        InnerGcsClient.standalone(f"{host or '127.0.0.1'}:{port}", None, 5000)
    except AuthenticationError:
        mode = os.environ.get("RAY_AUTH_MODE") or "unset"
        raise ConfigError(
            f"--address {address}: that Ray cluster uses token authentication and refused this client's token "
            f"(RAY_AUTH_MODE={mode}); give the cluster's token with RAY_AUTH_MODE=token and ~/.ray/auth_token, "
            "RAY_AUTH_TOKEN_PATH=<file> or RAY_AUTH_TOKEN (see README, Security)") from None
    except Exception:  # noqa: BLE001 (not a GCS, or slow to answer: ray.init says what it finds)
        pass


def start_ray(spec: SweepSpec) -> None:
    """Join `--address` or start an embedded local Ray, with Ray's token authentication on (lth_ray.security)."""
    import ray

    from lth_ray.distributed.security import AuthSetupError, keep_credentials_out_of_runtime_env, prepare_auth
    try:
        for note in prepare_auth(spec.address):
            print(note, file=sys.stderr)
    except AuthSetupError as err:
        raise ConfigError(str(err)) from None
    if spec.address:
        check_address(spec.address)
        try:
            ray.init(address=spec.address, log_to_driver=False)
        except (ConnectionError, RuntimeError, ray.exceptions.AuthenticationError) as err:
            raise ConfigError(f"--address {spec.address}: cannot connect ({str(err).splitlines()[0]})") from None
    else:
        keep_credentials_out_of_runtime_env()
        # address="local": always a fresh Ray of our own, never a running one found on this machine
        ray.init(address="local", num_gpus=spec.num_gpus, include_dashboard=False, log_to_driver=False)


def max_concurrent(spec: SweepSpec, gpt: float) -> int:
    """Never hold more GPUs than the sweep may use (also on a shared cluster); the plan's slots."""
    if spec.num_gpus is None or gpt <= 0:
        return 0
    return max(1, math.floor(spec.num_gpus / gpt + 1e-9))


# ------------------------------------------------------------------ running

def make_tuner(spec: SweepSpec, gpt: float, trials):
    """The Tuner of `trials` (cohorts, in launch order), each asking for `gpt` of a GPU."""
    from ray import tune

    from lth_ray.distributed.trainable import run_trial
    trainable = tune.with_resources(run_trial, {"cpu": spec.cpus_per_trial, "gpu": gpt})
    from lth_ray.distributed.progress import ProgressCallback
    callbacks, track = [ProgressCallback()], getattr(spec, "track", "none")
    if track != "none":  # (the trackers' module imports wandb and mlflow)
        from lth_ray.distributed.tracking import tracking_callbacks
        callbacks += tracking_callbacks(track, spec.name)
    if spec.resume:
        tuner = tune.Tuner.restore(spec.experiment, trainable=trainable, resume_errored=True, resume_unfinished=True)
        # restore takes no RunConfig and brings back the callbacks pickled with the sweep: this command's instead
        tuner._local_tuner.get_run_config().callbacks = callbacks  # private (Ray is pinned)
        return tuner
    from ray.tune import CLIReporter
    threads = max(1, int(spec.cpus_per_trial))
    param_space = {"cohort": tune.grid_search([[t.to_dict() for t in c] for c in trials]),
                   "threads": threads, "download": spec.download}
    if spec.eval_memory_mb is not None:
        param_space["eval_memory_mb"] = spec.eval_memory_mb
    if faults.from_environment():  # test-only fault injection (lth_ray.faults), for workers on any node
        param_space["fault"] = faults.from_environment()
    reporter = CLIReporter(  # the trial name carries the configuration and seeds
        parameter_columns=[],
        metric_columns={"round": "round", "sparsity": "sparsity", "test_acc_at_early_stop": "test_acc@es",
                        "early_stop_iteration": "es_iter", "members": "members", "rounds_done": "done",
                        "rounds_total": "of"},
        max_report_frequency=30)
    return tune.Tuner(
        trainable, param_space=param_space,
        tune_config=tune.TuneConfig(reuse_actors=spec.reuse_actors, max_concurrent_trials=max_concurrent(spec, gpt),
                                    trial_name_creator=_trial_name, trial_dirname_creator=_trial_dirname),
        run_config=tune.RunConfig(
            name=spec.name, storage_path=spec.storage, progress_reporter=reporter, verbose=1, callbacks=callbacks,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=spec.keep_checkpoints),
            failure_config=tune.FailureConfig(max_failures=spec.max_failures)))


def _trial_name(trial) -> str:
    if "cohort" in trial.config:
        return cohort_name([TrajectoryConfig.from_dict(d) for d in trial.config["cohort"]])
    return TrajectoryConfig.from_dict(trial.config["trajectory"]).key  # a trial from before cohorts


def _trial_dirname(trial) -> str:
    return f"{_trial_name(trial)}_{trial.trial_id}"


def describe(spec: SweepSpec, placement: Placement | None = None) -> str:
    """What will run, in numbers: the trials with their members, CPUs and GPU share, the GPUs busy at start,
    the estimated wall time, GPU-hours and utilisation, memory per GPU (--resume: only where it goes, the
    restored experiment keeps its own grid)."""
    where = f"ray: {spec.address or 'local (embedded)'}"
    if spec.resume or placement is None:
        return (f"experiment: {spec.experiment} (resume: errored and unfinished trials continue from their "
                f"newest round checkpoint); {where}")
    plan = placement.plan
    labels = ", ".join(sorted({t.label for t in spec.trajectories}))
    seeds = sorted({t.seed for t in spec.trajectories})
    lines = [f"experiment: {spec.experiment}",
             f"grid: {len(spec.trajectories)} trajectories: {len(configurations(spec))} configurations x "
             f"{len(seeds)} seed(s) x ({labels})"]
    if plan.gpus:
        lines.append(f"plan: {len(plan.trials)} trials for {_gpus(plan.gpus)} ({placement.gpus_from}): per trial "
                     f"{plan.cpu_per_trial:g} CPU and {plan.gpu_per_trial:g} GPU, {plan.slots} at once; {where}")
    else:
        lines.append(f"plan: {len(plan.trials)} trials on CPUs ({placement.gpus_from}): per trial "
                     f"{plan.cpu_per_trial:g} CPU; {where}")
    for members, t in zip(placement.trials, plan.trials):
        m = members[0]
        head = f"  {cohort_name(members)}: {len(members)} members ({', '.join(sorted({x.label for x in members}))})"
        if plan.gpus:
            head += (f", {t.cpu:g} CPU, {t.gpu:g} GPU, {t.memory_bytes / GIB:.1f} GiB, est. {_duration(t.seconds)}"
                     f" from {_duration(t.start)}")
        lines.append(f"{head}; rounds {m.first_round}..{m.rounds}, {m.iterations} iterations/round, "
                     f"eval every {m.eval_every}")
    if not plan.gpus:
        lines.append("GPUs: none")
        return "\n".join(lines)
    lines += [
        f"GPUs: {plan.gpus_at_start:.3g} of {plan.gpus:g} busy at start",
        f"estimate: {_duration(plan.seconds)} wall time; {plan.gpu_hours:.1f} GPU-hours held, "
        f"{plan.busy_seconds / 3600:.1f} busy: {plan.utilisation:.0%} utilisation over the sweep "
        f"({plan.elastic_gpu_hours:.1f} GPU-hours, {plan.elastic_utilisation:.0%}, on 1-GPU nodes released "
        f"{plan.idle_timeout_s / 60:g} min after their last trial)",
        f"memory per GPU: up to {plan.memory_per_gpu / GIB:.1f} GiB of {placement.gpu.memory_bytes / GIB:g} GiB "
        f"({max(1, round(1 / plan.gpu_per_trial))} trial(s) per GPU)"]
    if plan.utilisation < 0.9:
        lines.append(f"note: {_why_idle(plan)}")
    lines.append(f"cost model: FLOPs of the nets' layers at {placement.gpu.flops / 1e12:g} TFLOP/s per GPU "
                 "(assumed, not measured; lth_ray/planner.py)")
    return "\n".join(lines)


def _why_idle(plan: Plan) -> str:
    """Why the GPUs are not all busy until the end, and what fewer GPUs would do."""
    longest = plan.longest
    if plan.gpus_at_start < 0.9 * plan.held_at_start:
        why = "the trials' steps are too small to keep their GPU shares busy (launch-bound)"
    elif math.isclose(longest.seconds, plan.seconds, rel_tol=1e-3):
        seeds = "one seed" if len(longest.seeds) == 1 else f"{len(longest.seeds)} seeds"
        why = (f"the longest trial, {seeds} of {longest.configuration}, takes the whole wall time on "
               f"{_gpus(longest.gpu)} (a seed's ticket and the members taking its masks are never split)")
    else:
        why = f"{len(plan.trials)} trials do not divide evenly onto {plan.slots} slots"
    same = [a for a in plan.alternatives if math.isclose(a.seconds, plan.seconds, rel_tol=1e-3)]
    busy = [a for a in plan.alternatives if a.utilisation >= 0.9]
    if same:
        why += f"; {_gpus(same[0].gpus)} finish as soon ({same[0].utilisation:.0%} busy)"
    if busy:
        b = busy[-1]
        why += f"; {_gpus(b.gpus)} {'reaches' if b.gpus == 1 else 'reach'} {b.utilisation:.0%} in {_duration(b.seconds)}"
    return why


def _gpus(n: float) -> str:
    return f"{n:g} GPU{'s' * (n != 1)}"


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def plan_here(spec: SweepSpec, cluster_gpus: float | None = None) -> Placement:
    """The placement plan for this command: the GPUs it may use (`sweep_gpus`), the GPU's memory, and, without
    `--address`, checked against this machine (with `--cluster-config`, against that cluster's node types)."""
    from lth_ray.distributed.capacity import check_fits, from_cluster_config, local_cuda, this_machine
    devices, memory = local_cuda() if not spec.address else (0, None)
    gpus, gpus_from = sweep_gpus(spec, cluster_gpus, devices)
    placement = place(spec, gpus, gpus_from, gpu_model(spec, memory))
    plan = placement.plan
    if spec.cluster_config:
        check_fits(from_cluster_config(spec.cluster_config), plan.gpus, plan.gpu_per_trial, plan.cpu_per_trial)
    elif not spec.address:
        check_fits(this_machine(plan.gpus), plan.gpus, plan.gpu_per_trial, plan.cpu_per_trial)
    return placement


def check_cuda_here(spec: SweepSpec, plan: Plan) -> None:
    """An embedded Ray declaring GPUs this machine does not have would hand out GPUs no trial can use."""
    if spec.address or not plan.gpus or spec.trajectories[0].device == "cpu":
        return
    from lth_ray.distributed.capacity import local_cuda
    devices, _ = local_cuda()
    if devices < plan.gpus:
        raise ConfigError(f"--num-gpus={plan.gpus:g}: this machine has {devices} CUDA device(s); give --num-gpus "
                          f"{devices} or fewer, or --device cpu to rehearse on logical GPUs with CPU training")


def check_data(spec: SweepSpec) -> None:
    """The sweep's data sets as this driver's node sees them, before anything starts: found (names, headers and
    sizes; no tensors), or with --download fetched now, once, under the same per-folder lock the trials use, so
    trials on this node find them; missing without --download is a ConfigError naming the node, the places
    searched and the fix. Not on --resume: the restored experiment keeps its own grid and --download, which
    may differ from this command line's, so its trials search (and fetch) for themselves. (--dry-run never
    gets here: it touches nothing.)"""
    if spec.resume:
        return
    from lth_ray.core.data.loading import DataError, fetch_dataset, require
    for dataset, data_root in dict.fromkeys((t.dataset, t.data_root) for t in spec.trajectories):
        try:
            if spec.download:
                fetch_dataset(dataset, data_root)
            else:
                require(dataset, data_root)
        except DataError as err:
            raise ConfigError(str(err)) from None


def run(spec: SweepSpec, defaults: SweepDefaults) -> int:
    """Run (or resume) the sweep; returns the exit code (0 when every trial finished)."""
    import ray
    check_storage(spec)
    check_data(spec)
    placement = None if spec.address else plan_here(spec)  # before Ray: the embedded Ray declares its GPUs
    if placement:
        check_cuda_here(spec, placement.plan)
    start_ray(replace(spec, num_gpus=placement.plan.gpus) if placement else spec)
    try:
        if placement is None:  # a cluster: planned for --num-gpus (what it may scale to), else the GPUs up now
            from lth_ray.distributed.capacity import check_fits, cluster_node_types
            placement = plan_here(spec, ray.cluster_resources().get("GPU", 0.0))
            if not spec.cluster_config:  # (plan_here checked that one) the head's bootstrap config, or the nodes up
                plan = placement.plan
                check_fits(cluster_node_types(None), plan.gpus, plan.gpu_per_trial, plan.cpu_per_trial)
        plan = placement.plan
        print(describe(spec, placement), flush=True)
        sized = replace(spec, num_gpus=plan.gpus)
        if spec.eval_memory_mb is None and shared_eval_memory_mb(plan):  # trials sharing a GPU stay in their share
            sized = replace(sized, eval_memory_mb=shared_eval_memory_mb(plan))
        # trial states are read back from storage below, not trusted from here
        make_tuner(sized, plan.gpu_per_trial, placement.trials).fit()
    finally:
        ray.shutdown()
    from lth_ray.results.experiment import load_trials
    trials = load_trials(spec.experiment, weights=False)
    unfinished = [t.trial_id for t in trials if not t.finished]
    diverged = [f"{t.trial_id} (round {t.diverged_round})" for t in trials if t.diverged_round is not None]
    print(f"sweep {spec.name}: {sum(t.complete for t in trials)}/{len(trials)} trajectories complete"
          + (f"; diverged (stopped there): {', '.join(diverged)}" if diverged else "")
          + (f"; unfinished: {', '.join(unfinished)} (continue with --resume)" if unfinished else ""))
    if spec.export:
        from lth_ray.results.export import export_experiment
        try:
            print(f"exported to {export_experiment(spec.experiment, force=True)}")
        except Exception as err:  # the sweep's results are safe; say why the export failed and how to retry
            print(f"error: export failed ({type(err).__name__}: {err}); retry with "
                  f"python -m lth_ray.export {spec.experiment} --force", file=sys.stderr)
            return 1
    print(f"results: {spec.experiment}\n"
          f"analyse: python -m lth_ray.report {spec.experiment}   (or notebooks/ExperimentEvaluation.ipynb "
          f"with LTH_EXPERIMENT={spec.experiment})")
    return 0 if not unfinished else 1


def main(defaults: SweepDefaults, argv: list[str] | None = None) -> int:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's table reporter with our columns
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    args = build_parser(defaults).parse_args(argv)
    try:
        spec = spec_from_args(args, defaults)
        if spec.dry_run:
            print(describe(spec, None if spec.resume else plan_here(spec)))
            return 0
        return run(spec, defaults)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
