"""The sweep's progress line: rounds done of the total, trajectory-iterations per second and an ETA.

Tune's table says how far each trial is; this says how far the sweep is and when it will end, at least every
30 s. A round is one member's round (what the trainable counts in `rounds_done` / `rounds_total`); a
trajectory-iteration is one training step of one member (a round of rounds >= 1 trains from its start
iteration, the rewind point under late rewinding, to the end). The trainable reports once per finished round,
so the counts move round by round: between two results the line still comes, its rate falling and its ETA
growing with the time since the last one. The rate counts only what this driver ran (after `--resume`, the
rounds of earlier drivers are done, not fast).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ray.tune import Callback

from lth_ray.core.methods.member import first_round, round_start
from lth_ray.core.spec.config import TrajectoryConfig

EVERY_S = 30.0  # the longest silence between two progress lines


@dataclass(frozen=True)
class Tally:
    """Work done and planned, in rounds and in trajectory-iterations."""

    rounds_done: int
    rounds_total: int
    iterations_done: int
    iterations_total: int


def cohort_work(members: list[TrajectoryConfig]) -> tuple[int, int]:
    """(rounds, trajectory-iterations) a cohort trains in all: each member's rounds from its first one."""
    rounds = sum(m.rounds + 1 - first_round(m) for m in members)
    iterations = sum(m.iterations - round_start(m, r) for m in members for r in range(first_round(m), m.rounds + 1))
    return rounds, iterations


def trial_tally(rounds_total: int, iterations_total: int, rounds_done: int) -> Tally:
    """A trial's tally from its count of finished rounds; its iterations pro rata (exact when its members train
    alike, as a cohort's seeds and baselines do)."""
    rounds_done = min(rounds_done, rounds_total)
    iterations = iterations_total * rounds_done // rounds_total if rounds_total else 0
    return Tally(rounds_done, rounds_total, iterations, iterations_total)


def add(tallies: list[Tally]) -> Tally:
    return Tally(
        *(
            sum(getattr(t, f) for t in tallies)
            for f in ("rounds_done", "rounds_total", "iterations_done", "iterations_total")
        )
    )


def duration(seconds: float) -> str:
    if seconds >= 5400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def progress_line(now: Tally, iterations_at_start: int, elapsed_s: float) -> str:
    """The line printed: `progress: 12/60 rounds (20%), 1,234 trajectory-iterations/s, ETA 13 min (elapsed 3 min)`.

    `iterations_at_start`: what was done when this driver started; `elapsed_s`: its time since then."""
    share = now.rounds_done / now.rounds_total if now.rounds_total else 0.0
    head = f"progress: {now.rounds_done}/{now.rounds_total} rounds ({share:.0%})"
    tail = f"(elapsed {duration(elapsed_s)})"
    left = now.iterations_total - now.iterations_done
    if now.rounds_total and now.rounds_done >= now.rounds_total:
        return f"{head}, done {tail}"
    ran = now.iterations_done - iterations_at_start
    if ran <= 0 or elapsed_s <= 0:
        return f"{head}, rate and ETA after the first round {tail}"
    rate = ran / elapsed_s
    return f"{head}, {rate:,.0f} trajectory-iterations/s, ETA {duration(left / rate)} {tail}"


class ProgressCallback(Callback):
    """Prints `progress_line` on the driver at the first Tune step, then at least every `every_s` seconds of
    `clock`, and once at the end. The trials' plans come from their configs, their counts from their last
    result (a TERMINATED trial has nothing left: a member that diverged stops early)."""

    def __init__(
        self,
        every_s: float = EVERY_S,
        clock: Callable[[], float] = time.monotonic,
        out: Callable[[str], None] | None = None,
    ):
        self.every_s, self.clock, self.out = every_s, clock, out
        self._work: dict[str, tuple[int, int]] = {}  # trial id -> (rounds, trajectory-iterations) planned
        self._start: tuple[float, int] | None = None  # (clock, iterations done) at the first line
        self._printed: float | None = None

    def tally(self, trials) -> Tally:
        tallies = []
        for trial in trials:
            if trial.trial_id not in self._work:
                config = trial.config
                members = config["cohort"] if "cohort" in config else [config["trajectory"]]
                self._work[trial.trial_id] = cohort_work([TrajectoryConfig.from_dict(d) for d in members])
            rounds, iterations = self._work[trial.trial_id]
            done = rounds if trial.status == "TERMINATED" else int((trial.last_result or {}).get("rounds_done", 0))
            tallies.append(trial_tally(rounds, iterations, done))
        return add(tallies)

    def line(self, trials) -> str:
        now, tally = self.clock(), self.tally(trials)
        if self._start is None:
            self._start = (now, tally.iterations_done)
        self._printed = now
        return progress_line(tally, self._start[1], now - self._start[0])

    def _say(self, text: str) -> None:
        if self.out is not None:
            self.out(text)
        else:
            print(text, flush=True)

    def on_step_end(self, iteration: int, trials: list, **info):
        if not trials or (self._printed is not None and self.clock() - self._printed < self.every_s):
            return
        self._say(self.line(trials))

    def on_experiment_end(self, trials: list, **info):
        if trials:
            self._say(self.line(trials))
