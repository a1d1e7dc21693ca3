"""A sweep on Ray Tune: command line -> `SweepSpec` -> placement plan -> `Tuner` -> results + export.

`main` is the command of `sweeps/*.py`; the command line and the spec it makes are `lth_ray.distributed.sweep_spec`,
the grid's cohorts and their placement on GPUs `lth_ray.distributed.grid` (no Ray in either). One trial is one
cohort (`cohort.Cohort`): the tickets of some seeds of one configuration and their baselines, trained as one
vectorized model; how many seeds, and what share of a GPU each trial asks for, is the placement plan's choice
(`lth_ray.distributed.planner`) for the GPUs the sweep may use. Every trial checkpoints after every round and
resumes from it after a crash; `--resume` continues a killed sweep.
"""

from __future__ import annotations

import math
import os
import socket
import sys
import uuid
from dataclasses import replace
from typing import TYPE_CHECKING

from lth_ray.core import faults
from lth_ray.core.spec.config import ConfigError, TrajectoryConfig
from lth_ray.distributed.dry_run import describe
from lth_ray.distributed.grid import (
    Placement,
    cohort_name,
    gpu_calibration,
    gpu_model,
    place,
    sweep_gpus,
)
from lth_ray.distributed.planner import Plan, shared_eval_memory_mb
from lth_ray.distributed.running import Running
from lth_ray.distributed.sweep_spec import SweepDefaults, SweepSpec, build_parser, spec_from_args

if TYPE_CHECKING:
    from ray.tune import Callback

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
            raise ConfigError(
                f"--resume: {spec.experiment} was written by lth_ray 0.1.0 (state format 1), which "
                "this version does not continue; finish it with lth_ray 0.1.0, or export and "
                "analyse it as it is (lth-ray export / lth-ray report read it)"
            )
        return
    if exists:
        raise ConfigError(
            f"experiment {spec.experiment} already exists; pass --resume to continue it or choose another --name"
        )
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
    # private (Ray is pinned): one GCS call with the token ray.init sends; ray/_raylet.pyi lists only part of the
    # compiled module, which has the class
    from ray._raylet import InnerGcsClient  # type: ignore[attr-defined]
    from ray.exceptions import AuthenticationError

    try:
        InnerGcsClient.standalone(f"{host or '127.0.0.1'}:{port}", None, 5000)
    except AuthenticationError:
        mode = os.environ.get("RAY_AUTH_MODE") or "unset"
        raise ConfigError(
            f"--address {address}: that Ray cluster uses token authentication and refused this client's token "
            f"(RAY_AUTH_MODE={mode}); give the cluster's token with RAY_AUTH_MODE=token and ~/.ray/auth_token, "
            "RAY_AUTH_TOKEN_PATH=<file> or RAY_AUTH_TOKEN (see docs/security.md)"
        ) from None
    except Exception:  # noqa: BLE001 (not a GCS, or slow to answer: ray.init says what it finds)
        pass


def start_ray(spec: SweepSpec) -> None:
    """Join `--address` or start an embedded local Ray, with Ray's token authentication on (`distributed.security`)."""
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
        gpus = None if spec.num_gpus is None else int(spec.num_gpus)  # whole: `check_resources`
        ray.init(address="local", num_gpus=gpus, include_dashboard=False, log_to_driver=False)


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

    callbacks: list[Callback] = [ProgressCallback()]
    track = spec.track
    if track != "none":  # (the trackers' module imports wandb and mlflow)
        from lth_ray.distributed.tracking import tracking_callbacks

        callbacks += tracking_callbacks(track, spec.name)
    if spec.resume:
        tuner = tune.Tuner.restore(spec.experiment, trainable=trainable, resume_errored=True, resume_unfinished=True)
        # restore takes no RunConfig and brings back the callbacks pickled with the sweep: this command's instead
        local = tuner._local_tuner  # private (Ray is pinned)
        if local is None:  # Ray Client: the tuner lives on the cluster, out of this command's reach
            raise ConfigError(
                f"--resume through Ray Client (--address {spec.address}) is not supported; run it on the "
                "cluster's head node (--address auto)"
            )
        local.get_run_config().callbacks = callbacks
        return tuner
    from ray.tune import CLIReporter

    threads = max(1, int(spec.cpus_per_trial))
    param_space = {
        "cohort": tune.grid_search([[t.to_dict() for t in c] for c in trials]),
        "threads": threads,
        "download": spec.download,
    }
    if spec.eval_memory_mb is not None:
        param_space["eval_memory_mb"] = spec.eval_memory_mb
    if faults.from_environment():  # test-only fault injection (lth_ray.core.faults), for workers on any node
        param_space["fault"] = faults.from_environment()
    reporter = CLIReporter(  # the trial name carries the configuration and seeds
        parameter_columns=[],
        metric_columns={
            "round": "round",
            "sparsity": "sparsity",
            "test_acc_at_early_stop": "test_acc@es",
            "early_stop_iteration": "es_iter",
            "members": "members",
            "rounds_done": "done",
            "rounds_total": "of",
        },
        max_report_frequency=30,
    )
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            reuse_actors=spec.reuse_actors,
            max_concurrent_trials=max_concurrent(spec, gpt),
            trial_name_creator=_trial_name,
            trial_dirname_creator=_trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=spec.name,
            storage_path=spec.storage,
            progress_reporter=reporter,
            verbose=1,
            callbacks=callbacks,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=spec.keep_checkpoints),
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        ),
    )


def _trial_name(trial) -> str:
    if "cohort" in trial.config:
        return cohort_name([TrajectoryConfig.from_dict(d) for d in trial.config["cohort"]])
    return TrajectoryConfig.from_dict(trial.config["trajectory"]).key  # a trial from before cohorts


def _trial_dirname(trial) -> str:
    return f"{_trial_name(trial)}_{trial.trial_id}"


def export_at_end(experiment: str) -> bool:
    """Export a finished sweep or branch; False (and why, and how to retry) when the export failed: the
    trials' results are safe either way."""
    from lth_ray.results.export import export_experiment

    try:
        print(f"exported to {export_experiment(experiment, force=True)}")
    except Exception as err:  # noqa: BLE001 (any failure: say it in one line, keep the results)
        print(
            f"error: export failed ({type(err).__name__}: {err}); retry with lth-ray export {experiment} --force",
            file=sys.stderr,
        )
        return False
    return True


def plan_here(spec: SweepSpec, cluster_gpus: float | None = None, rounds=None) -> Placement:
    """The placement plan for this command: the GPUs it may use (`sweep_gpus`), the GPU's memory, and, without
    `--address`, checked against this machine (with `--cluster-config`, against that cluster's node types).
    `rounds`: by member key the rounds each trains (`lth-ray branch`); None: every round."""
    from lth_ray.distributed.capacity import check_fits, from_cluster_config, local_cuda, this_machine

    devices, memory = local_cuda() if not spec.address else (0, None)
    gpus, gpus_from = sweep_gpus(spec, cluster_gpus, devices)
    calibration = gpu_calibration(spec)
    placement = place(spec, gpus, gpus_from, gpu_model(spec, memory, calibration), calibration, rounds)
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
        raise ConfigError(
            f"--num-gpus={plan.gpus:g}: this machine has {devices} CUDA device(s); give --num-gpus "
            f"{devices} or fewer, or --device cpu to rehearse on logical GPUs with CPU training"
        )


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


def run(spec: SweepSpec, defaults=None) -> int:
    """Run (or resume) the sweep; returns the exit code (0 when every trial finished). (`defaults`, the sweep
    module's, is not needed any more: the spec holds everything; the argument stays for old callers.)"""
    import ray

    check_storage(spec)
    check_data(spec)
    if spec.track != "none":  # the tracker's package and key, before anything starts
        from lth_ray.distributed.tracking import check_track

        check_track(spec.track)
    placement = None if spec.address else plan_here(spec)  # before Ray: the embedded Ray declares its GPUs
    if placement:
        check_cuda_here(spec, placement.plan)
    start_ray(replace(spec, num_gpus=placement.plan.gpus) if placement else spec)
    running = Running(spec.experiment)  # `lth-ray branch` waits until the sweep ends
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
        running.clear()
        ray.shutdown()
    from lth_ray.results.experiment import load_trials

    trials = load_trials(spec.experiment, weights=False)
    unfinished = [t.trial_id for t in trials if not t.finished]
    diverged = [f"{t.trial_id} (round {t.diverged_round})" for t in trials if t.diverged_round is not None]
    print(
        f"sweep {spec.name}: {sum(t.complete for t in trials)}/{len(trials)} trajectories complete"
        + (f"; diverged (stopped there): {', '.join(diverged)}" if diverged else "")
        + (f"; unfinished: {', '.join(unfinished)} (continue with --resume)" if unfinished else "")
    )
    if spec.export and not export_at_end(spec.experiment):
        return 1
    print(
        f"results: {spec.experiment}\n"
        f"analyse: lth-ray report {spec.experiment}   (or notebooks/ExperimentEvaluation.ipynb "
        f"with LTH_EXPERIMENT={spec.experiment})"
    )
    return 0 if not unfinished else 1


def main(defaults: SweepDefaults, argv: list[str] | None = None) -> int:
    """The sweep command of a `sweeps/*.py` module: parse (`grid.build_parser`), check, then dry-run or run."""
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
