"""The sweep CLI shared by `sweeps/*.py`: arguments -> `SweepSpec` -> Ray Tune `Tuner` -> results + export.

The grid is arch x prune rates x learning rate x batch size x rewind point x seed; each point is a ticket,
and each requested baseline rides with it. One trial is one cohort (`cohort.Cohort`): the tickets of
`--seeds-per-trial` seeds of one configuration and their baselines, trained as one vectorized model. Every
trial checkpoints after every round and resumes from it after a crash; `--resume` continues a killed sweep.
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
from dataclasses import dataclass

from .config import (ABLATIONS, PRECISIONS, PRESETS, ConfigError, TrajectoryConfig, from_preset, parse_numbers,
                     parse_plan, parse_seeds)
from .trajectory import BASELINES, cohort_members


@dataclass(frozen=True)
class SweepDefaults:
    """What differs between the sweep modules: which archs and data sets make sense, how to share a GPU."""
    prog: str
    archs: tuple[str, ...]
    datasets: tuple[str, ...]
    gpus_per_trial: float


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep: the trajectories to run and how and where to run them."""
    name: str
    storage: str                       # absolute folder or URI; the experiment is <storage>/<name>
    trajectories: tuple[TrajectoryConfig, ...]  # every member of every cohort: tickets, then their baselines
    seeds_per_trial: int | None = None  # None: 1 without GPUs, all seeds of a configuration with GPUs
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    num_gpus: float | None = None
    address: str | None = None
    resume: bool = False
    max_failures: int = 3
    keep_checkpoints: int = 2
    download: bool = False
    export: bool = True
    reuse_actors: bool = True
    dry_run: bool = False

    @property
    def experiment(self) -> str:
        return f"{self.storage.rstrip('/')}/{self.name}"


# ------------------------------------------------------------------ parsing (the edge: everything is checked here)

def build_parser(defaults: SweepDefaults) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=defaults.prog, description="Iterative Magnitude Pruning sweep on Ray Tune.")
    g = p.add_argument_group("what to sweep")
    g.add_argument("--archs", default=",".join(defaults.archs), help=f"comma list of {', '.join(defaults.archs)}")
    g.add_argument("--seeds", default="1", help="a count N (seeds 0..N-1) or a comma list of seeds")
    g.add_argument("--prune-rates", help="comma list of fc prune rates (default: the preset's)")
    g.add_argument("--conv-prune-rates", help="comma list of conv prune rates (default: the preset's)")
    g.add_argument("--baselines", default="",
                   help="comma list of reinit, random-prune (ride with their ticket) and the pruning-at-init methods "
                        "snip, grasp, synflow, magnitude-init")
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
    g.add_argument("--num-gpus", type=float, default=None, help="total GPUs the sweep may use")
    g.add_argument("--gpus-per-trial", type=float, default=None,
                   help=f"fraction of a GPU per trial (default {defaults.gpus_per_trial:g} when GPUs exist)")
    g.add_argument("--cpus-per-trial", type=float, default=1.0)
    g.add_argument("--seeds-per-trial", type=int, default=None,
                   help="seeds per trial (a cohort trains them, with their baselines, as one vectorized model); "
                        "default: 1 without GPUs, all seeds of a configuration with GPUs")
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
    g.add_argument("--dry-run", action="store_true", help="print the trial grid and resources, run nothing")
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
    baselines = [b.strip() for b in a.baselines.split(",") if b.strip()]
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
    if gpt is not None and (gpt < 0 or (gpt > 1 and gpt != int(gpt))):
        raise ConfigError(f"--gpus-per-trial={gpt:g} is not allowed; use a fraction in [0, 1] or a whole number")
    if gpt is not None and a.num_gpus is not None and gpt > a.num_gpus:
        raise ConfigError(f"--gpus-per-trial={gpt:g} exceeds --num-gpus={a.num_gpus:g}")
    if a.seeds_per_trial is not None and a.seeds_per_trial < 1:
        raise ConfigError(f"--seeds-per-trial={a.seeds_per_trial} must be >= 1")
    if a.cpus_per_trial <= 0:
        raise ConfigError(f"--cpus-per-trial={a.cpus_per_trial:g} must be positive")
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
                                 instability_rounds=instability_rounds, **plans)
            trajectories += [m if m.is_ticket else
                             m.replace(save_early_stop=a.baseline_early_stop_weights)
                             for m in cohort_members(ticket, [seed], baselines, ablations)]
    trajectories = tuple(sorted(trajectories, key=lambda t: not t.is_ticket))
    keys = [t.key for t in trajectories]
    if len(set(keys)) != len(keys):
        raise ConfigError("the sweep lists the same trajectory twice; check --seeds and the rate lists")
    return SweepSpec(name=name, storage=storage, trajectories=trajectories, seeds_per_trial=a.seeds_per_trial,
                     cpus_per_trial=a.cpus_per_trial,
                     gpus_per_trial=gpt if gpt is not None else -1.0, num_gpus=a.num_gpus, address=a.address,
                     resume=a.resume, max_failures=a.max_failures, keep_checkpoints=a.keep_checkpoints,
                     download=a.download, export=not a.no_export, dry_run=a.dry_run)


# ------------------------------------------------------------------ cohorts: the sweep's trials

def seeds_per_trial(spec: SweepSpec, gpus: float) -> int:
    """`--seeds-per-trial`, or the default rule: with GPUs, every seed of a configuration in one cohort (a
    GPU fills up with members, not with processes); on CPUs one seed per trial (cores fill up with trials)."""
    if spec.seeds_per_trial is not None:
        return spec.seeds_per_trial
    return max(len({t.seed for t in spec.trajectories}), 1) if gpus > 0 else 1


def cohorts(spec: SweepSpec, per_trial: int) -> list[tuple[TrajectoryConfig, ...]]:
    """The sweep's trials: per configuration (one recipe and ticket kind), its seeds in groups of
    `per_trial`, each with the baselines of those seeds; members ordered tickets first, by seed."""
    from .cohort import recipe_of
    configurations: dict[str, list[TrajectoryConfig]] = {}
    for t in spec.trajectories:
        configurations.setdefault(repr(sorted(recipe_of(t).items())), []).append(t)
    out = []
    for members in configurations.values():
        seeds = list(dict.fromkeys(t.seed for t in members))
        for start in range(0, len(seeds), per_trial):
            chunk = seeds[start:start + per_trial]
            mine = [t for t in members if t.seed in chunk]
            out.append(tuple(sorted(mine, key=lambda t: (not t.is_ticket, t.label, chunk.index(t.seed)))))
    return out


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

    from .experiment import filesystem_and_path
    fs, path = filesystem_and_path(spec.experiment)
    exists = fs.get_file_info(path).type != pafs.FileType.NotFound
    if spec.resume:
        from ray.tune import Tuner
        if not exists or not Tuner.can_restore(spec.experiment):
            raise ConfigError(f"--resume: {spec.experiment} is not a Tune experiment to continue")
        from .experiment import experiment_format, load_trials
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

    from .security import AuthSetupError, keep_credentials_out_of_runtime_env, prepare_auth
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


def gpus_per_trial(spec: SweepSpec, defaults: SweepDefaults, cluster_gpus: float) -> float:
    if spec.gpus_per_trial >= 0:
        return spec.gpus_per_trial
    available = cluster_gpus if spec.num_gpus is None else min(spec.num_gpus, cluster_gpus)
    return defaults.gpus_per_trial if available > 0 else 0.0


def max_concurrent(spec: SweepSpec, gpt: float) -> int:
    """With --num-gpus on a shared cluster, never hold more GPUs than asked for."""
    if spec.num_gpus is None or gpt <= 0:
        return 0
    return max(1, math.floor(spec.num_gpus / gpt + 1e-9))


# ------------------------------------------------------------------ running

def make_tuner(spec: SweepSpec, gpt: float, per_trial: int):
    from ray import tune

    from .trainable import run_trial
    trainable = tune.with_resources(run_trial, {"cpu": spec.cpus_per_trial, "gpu": gpt})
    if spec.resume:
        return tune.Tuner.restore(spec.experiment, trainable=trainable, resume_errored=True, resume_unfinished=True)
    from ray.tune import CLIReporter
    threads = max(1, int(spec.cpus_per_trial))
    param_space = {"cohort": tune.grid_search([[t.to_dict() for t in c] for c in cohorts(spec, per_trial)]),
                   "threads": threads, "download": spec.download}
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
            name=spec.name, storage_path=spec.storage, progress_reporter=reporter, verbose=1,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=spec.keep_checkpoints),
            failure_config=tune.FailureConfig(max_failures=spec.max_failures)))


def _trial_name(trial) -> str:
    if "cohort" in trial.config:
        return cohort_name([TrajectoryConfig.from_dict(d) for d in trial.config["cohort"]])
    return TrajectoryConfig.from_dict(trial.config["trajectory"]).key  # a trial from before cohorts


def _trial_dirname(trial) -> str:
    return f"{_trial_name(trial)}_{trial.trial_id}"


def describe(spec: SweepSpec, gpt: float | None = None) -> str:
    """The grid and resources (for --resume only where it goes: the restored experiment keeps its own grid)."""
    gpus = "auto" if gpt is None else f"{gpt:g}"
    if gpt is None:  # before Ray runs: GPUs as the command line says
        gpt = spec.gpus_per_trial if spec.gpus_per_trial >= 0 else (1.0 if spec.num_gpus else 0.0)
    if spec.resume:
        return (f"experiment: {spec.experiment} (resume: errored and unfinished trials continue from their "
                f"newest round checkpoint); ray: {spec.address or 'local (embedded)'}")
    per_trial = seeds_per_trial(spec, gpt)
    trials = cohorts(spec, per_trial)
    lines = [f"experiment: {spec.experiment}",
             f"trials: {len(trials)} cohorts of up to {per_trial} seed(s), {len(spec.trajectories)} trajectories; "
             f"per trial: {spec.cpus_per_trial:g} CPU, {gpus} GPU; "
             f"sweep GPUs: {'all available' if spec.num_gpus is None else f'{spec.num_gpus:g}'}; "
             f"ray: {spec.address or 'local (embedded)'}"]
    for members in trials:
        t = members[0]
        labels = ", ".join(sorted({m.label for m in members}))
        lines.append(f"  {cohort_name(members)}: {len(members)} members ({labels}), "
                     f"rounds {t.first_round}..{t.rounds}, {t.iterations} iterations/round, eval every {t.eval_every}")
    return "\n".join(lines)


def check_data(spec: SweepSpec) -> None:
    """The sweep's data sets as this driver's node sees them, before anything starts: found (names, headers and
    sizes; no tensors), or with --download fetched now, once, under the same per-folder lock the trials use, so
    trials on this node find them; missing without --download is a ConfigError naming the node, the places
    searched and the fix. Not on --resume: the restored experiment keeps its own grid and --download, which
    may differ from this command line's, so its trials search (and fetch) for themselves. (--dry-run never
    gets here: it touches nothing.)"""
    if spec.resume:
        return
    from .data import DataError, fetch_dataset, require
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
    start_ray(spec)
    try:
        gpt = gpus_per_trial(spec, defaults, ray.cluster_resources().get("GPU", 0.0))
        print(describe(spec, gpt), flush=True)
        make_tuner(spec, gpt, seeds_per_trial(spec, gpt)).fit()  # trial states are read back from storage below, not trusted from here
    finally:
        ray.shutdown()
    from .experiment import load_trials
    trials = load_trials(spec.experiment, weights=False)
    unfinished = [t.trial_id for t in trials if not t.finished]
    diverged = [f"{t.trial_id} (round {t.diverged_round})" for t in trials if t.diverged_round is not None]
    print(f"sweep {spec.name}: {sum(t.complete for t in trials)}/{len(trials)} trajectories complete"
          + (f"; diverged (stopped there): {', '.join(diverged)}" if diverged else "")
          + (f"; unfinished: {', '.join(unfinished)} (continue with --resume)" if unfinished else ""))
    if spec.export:
        from .export import export_experiment
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
            print(describe(spec))
            return 0
        return run(spec, defaults)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
