"""`--track wandb|mlflow`: the sweep's rounds in W&B or MLflow, through Tune's own logger callbacks.

A Tune trial is a cohort (several trajectories trained as one model) and reports one result per round, for
its lead member. The trackers log what a researcher compares instead: one run per trajectory (member), one
row per round (step = the round), with the metrics of that member's round record (`trajectory.summary`),
read on the driver from the round files the trainable wrote before it reported. The run of a member is
`<trial id>-m<index>` (the export's trajectory id): after `--resume` W&B continues it, MLflow finds it by
its tag `lth_ray_run`. Runs are grouped by the sweep's name (W&B group, MLflow experiment).

Secrets: W&B reads WANDB_API_KEY from the environment (or `wandb login`); Tune would hand it to its logging
process in a Ray runtime env, which Ray writes into its logs, so here it goes with the driver's other W&B
settings (WANDB_MODE, WANDB_DIR, ...) as a constructor argument instead, and never in offline mode. The
configs logged are the members' trajectory settings, never the environment. MLflow logs from the driver
itself; its credentials stay in MLflow's own environment variables.
"""

from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass
from typing import Any

import ray
from ray.air.integrations.mlflow import MLflowLoggerCallback
from ray.air.integrations.wandb import WandbLoggerCallback, _QueueItem, _WandbLoggingActor  # private: Ray is pinned
from ray.air.util.node import _force_on_current_node
from ray.util.queue import Queue

from lth_ray.core.engine.trajectory import summary
from lth_ray.core.methods.member import first_round
from lth_ray.core.spec.config import ConfigError, TrajectoryConfig
from lth_ray.core.store.rounds import RoundStore
from lth_ray.results.experiment import ROUNDS_DIR, member_rounds_path

TRACKS = ("none", "wandb", "mlflow")
RUN_TAG = "lth_ray_run"  # MLflow tag naming the member's run across drivers
DEFAULT_PROJECT = "lth_ray"


@dataclass(frozen=True)
class MemberRound:
    """One member's finished round: one row of its run."""

    run_id: str  # <trial id>-m<index>, the same after a restart
    name: str  # the member's key
    config: dict  # the member's trajectory settings, its trial and index
    round: int
    metrics: dict  # numbers only


def round_metrics(record: dict) -> dict:
    """The numbers of a round record's summary (its method and seed are the run's config)."""
    out = {}
    for key, value in summary(record).items():
        value = int(value) if isinstance(value, bool) else value
        if isinstance(value, (int, float)) and math.isfinite(value):  # a diverged round's NaN says nothing
            out[key] = value
    return out


def trial_members(config: dict, trial_path: str) -> list[tuple[TrajectoryConfig, str]]:
    """The trial's members and the folders of their round files (a pre-cohort trial: one, under rounds/)."""
    if "cohort" in config:
        members = [TrajectoryConfig.from_dict(d) for d in config["cohort"]]
        return [(m, member_rounds_path(trial_path, m.key)) for m in members]
    return [(TrajectoryConfig.from_dict(config["trajectory"]), f"{trial_path}/{ROUNDS_DIR}")]


def member_rounds(trial, result: dict, logged: set) -> list[MemberRound]:
    """The rows of a trial's result: every member whose record of the reported round is complete, once each
    (`logged` holds the (run, round) pairs already given)."""
    r = result.get("round")
    if r is None:
        return []
    fs, rows = trial.storage.storage_filesystem, []
    for i, (member, folder) in enumerate(trial_members(trial.config, trial.path)):
        run_id = f"{trial.trial_id}-m{i:03d}"
        if (run_id, r) in logged or not first_round(member) <= r <= member.rounds:
            continue
        record, _ = RoundStore(fs, folder).check(r)
        if record is None:  # did not run this round (finished, diverged), or its files are torn
            continue
        logged.add((run_id, r))
        config = {**member.to_dict(), "label": member.label, "trial_id": trial.trial_id, "member": i}
        rows.append(MemberRound(run_id, member.key, config, r, round_metrics(record)))
    return rows


# ------------------------------------------------------------------ MLflow


class MemberMLflowCallback(MLflowLoggerCallback):
    """Tune's MLflow logger with one run per member (params: its settings; step: the round)."""

    def setup(self, *args, **kwargs) -> None:
        super().setup(*args, **kwargs)
        self._member_runs: dict[str, str] = {}  # our run id -> MLflow's
        self._of_trial: dict[str, list[str]] = {}
        self._logged: set = set()

    def log_trial_start(self, trial):
        pass  # a member's run starts with its first row (the trial's own config is no member's)

    def _mlflow_run(self, trial, row: MemberRound) -> str:
        if row.run_id not in self._member_runs:
            from mlflow.tracking import MlflowClient  # on the tracking URI `setup` set

            experiment_id = self.mlflow_util.experiment_id
            assert experiment_id is not None  # Tune's `setup` found or made the experiment
            found = MlflowClient().search_runs(
                [experiment_id], max_results=1, filter_string=f"tags.{RUN_TAG} = '{row.run_id}'"
            )
            if found:  # a driver before this one started it
                run_id = found[0].info.run_id
            else:
                assert self.tags is not None  # Tune's `setup` makes it a dict
                tags = {**self.tags, RUN_TAG: row.run_id, "trial_name": str(trial)}
                run_id = self.mlflow_util.start_run(run_name=row.name, tags=tags).info.run_id
                self.mlflow_util.log_params(run_id=run_id, params_to_log=row.config)
            self._member_runs[row.run_id] = run_id
            self._of_trial.setdefault(trial.trial_id, []).append(row.run_id)
        return self._member_runs[row.run_id]

    def log_trial_result(self, iteration: int, trial, result: dict):
        for row in member_rounds(trial, result, self._logged):
            self.mlflow_util.log_metrics(
                run_id=self._mlflow_run(trial, row), metrics_to_log=row.metrics, step=row.round
            )

    def log_trial_end(self, trial, failed: bool = False):
        for run_id in self._of_trial.get(trial.trial_id, []):
            self.mlflow_util.end_run(run_id=self._member_runs[run_id], status="FAILED" if failed else "FINISHED")


# ------------------------------------------------------------------ W&B


def logger_environment() -> dict[str, str]:
    """The driver's W&B settings (WANDB_*) for the logging process, which runs in a Ray worker with the
    environment of its node's raylet, not the driver's; the API key only where it is needed (not offline or
    disabled), a relative WANDB_DIR made absolute (the process runs in the trial's folder)."""
    env = {k: v for k, v in os.environ.items() if k.startswith("WANDB_")}
    if env.get("WANDB_MODE") in ("offline", "disabled"):
        env.pop("WANDB_API_KEY", None)
    if "WANDB_DIR" in env:
        env["WANDB_DIR"] = os.path.abspath(env["WANDB_DIR"])
    return env


class MemberRunsActor(_WandbLoggingActor):
    """Tune's W&B logging process for one trial, holding one W&B run per member (wandb's reinit="create_new")."""

    def __init__(
        self,
        logdir: str,
        queue: Queue,
        exclude: list,
        to_config: list,
        *args,
        env: dict[str, str] | None = None,
        **kwargs,
    ):
        super().__init__(logdir, queue, exclude, to_config, *args, **kwargs)
        os.environ.update(env or {})

    def run(self):
        os.environ["WANDB_START_METHOD"] = "thread"
        runs = {}
        while True:
            kind, row = self.queue.get()
            if kind == _QueueItem.END:
                break
            if kind != _QueueItem.RESULT:
                continue
            if row.run_id not in runs:
                runs[row.run_id] = self._wandb.init(
                    *self.args,
                    **self.kwargs,
                    id=row.run_id,
                    name=row.name,
                    config=row.config,
                    reinit="create_new",
                    resume="allow",
                )
            runs[row.run_id].log(row.metrics, step=row.round)
        for run in runs.values():
            run.finish()
        self._wandb.teardown()  # waits for W&B's own process to write everything: Tune kills this one next


class MemberWandbCallback(WandbLoggerCallback):
    """Tune's W&B logger with one run per member (config: its settings; step: the round)."""

    _logger_actor_cls = MemberRunsActor

    def setup(self, *args, **kwargs) -> None:
        super().setup(*args, **kwargs)
        self._logged: set = set()

    def log_trial_start(self, trial):
        self._start_logging_actor(trial, [], project=self.project, group=self.group, **self.kwargs)

    def _start_logging_actor(self, trial, exclude_results: list, **init_kwargs):
        """Tune's, but the driver's W&B settings and key go as an argument, not in the runtime env (which Ray
        writes into its logs)."""
        if trial in self._trial_logging_futures:
            return  # a restarted trial keeps its logging process
        on_this_node = _force_on_current_node()
        assert isinstance(on_this_node, dict)  # called without a function or class: the options to give one
        here = {"num_cpus": 0, **on_this_node, "max_restarts": -1, "max_task_retries": -1}
        # Any: Ray's actor types do not model an actor's methods (`actor.run.remote()`)
        remote_class: Any = self._remote_logger_class
        if not remote_class:
            remote_class = ray.remote(**here)(self._logger_actor_cls)
            self._remote_logger_class = remote_class
        self._trial_queues[trial] = Queue(actor_options=here)
        actor = remote_class.remote(
            logdir=trial.local_path,
            queue=self._trial_queues[trial],
            exclude=exclude_results,
            to_config=[],
            env=logger_environment(),
            **init_kwargs,
        )
        self._trial_logging_actors[trial] = actor
        future = actor.run.remote()
        self._trial_logging_futures[trial] = future
        self._logging_future_to_trial[future] = trial

    def log_trial_result(self, iteration: int, trial, result: dict):
        if trial not in self._trial_logging_actors:
            self.log_trial_start(trial)
        for row in member_rounds(trial, result, self._logged):
            self._trial_queues[trial].put((_QueueItem.RESULT, row))


# ------------------------------------------------------------------ choosing


def check_track(track: str) -> None:
    """`--track` names a tracker whose package is installed (and, for W&B online, a key or login is there)."""
    if track not in TRACKS:
        raise ConfigError(f"--track={track!r} is unknown; allowed: {', '.join(TRACKS)}")
    if track == "none":
        return
    if importlib.util.find_spec(track) is None:
        raise ConfigError(f"--track {track} needs the {track} package; install it with pip install 'lth_ray[track]'")
    if track == "wandb":
        from ray.air.integrations.wandb import _set_api_key  # Tune's own check (private: Ray is pinned)

        try:
            _set_api_key()
        except ValueError:
            raise ConfigError(
                "--track wandb: no W&B API key; set WANDB_API_KEY or run `wandb login` "
                "(or WANDB_MODE=offline to log locally)"
            ) from None


def tracking_callbacks(track: str, experiment: str) -> list:
    """The Tune callbacks of `--track` for the sweep named `experiment` (none for "none")."""
    check_track(track)
    if track == "wandb":
        project = os.environ.get("WANDB_PROJECT_NAME") or os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT
        return [MemberWandbCallback(project=project, group=experiment)]
    if track == "mlflow":
        return [MemberMLflowCallback(experiment_name=experiment, tags={"lth_ray_sweep": experiment})]
    return []
