"""Test-only fault injection at fixed points: a trial kills itself or blocks at round r, iteration i.

Fault tests must never race the machine's speed (machines differ 2x): instead of killing a worker "soon
after" something shows up, the worker itself dies or waits at a point the code reaches deterministically.
The spec comes from the environment variable `LTH_RAY_FAULT` (the sweep's driver forwards it into every
trial's config, so it reaches workers on any node), as `;`-separated faults `<action>:<round>:<iteration>:<dir>`:

- `kill:1:400:/tmp/f` — at round 1's evaluation at iteration 400, write `/tmp/f/<who>.kill.json`, then
  SIGKILL this process (a crashed worker, mid-round).
- `block:2:200:/tmp/f` — write `/tmp/f/<who>.block.json`, then wait until `/tmp/f/release` exists (a worker
  held mid-round while the test kills its driver or its node).

Each fault fires once per `who` (the trial's name): the marker file is created exclusively before acting, and
a restarted trial that reaches the point again finds it and goes on. The marker holds where the fault landed
(round, iteration, pid, and what the caller adds, e.g. the node), for the test to assert. The iteration must
be an evaluation point (a multiple of eval_every after the round's start): that is where the engine calls
its progress callback. Plain Python, no Ray; inert unless a spec is given.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

ENV = "LTH_RAY_FAULT"
ACTIONS = ("kill", "block")
BLOCK_LIMIT_S = 1800.0  # a blocked worker whose test died gives up eventually (it then fails, loudly)


@dataclass(frozen=True)
class Fault:
    action: str
    round: int
    iteration: int
    folder: str

    def marker(self, who: str) -> Path:
        return Path(self.folder) / f"{_safe(who)}.{self.action}.json"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def parse(spec: str | None) -> tuple[Fault, ...]:
    """The faults of a spec (empty for None or ""); a malformed one is a ValueError naming it."""
    faults = []
    for part in (spec or "").split(";"):
        if not part.strip():
            continue
        fields = part.strip().split(":", 3)
        if len(fields) != 4 or fields[0] not in ACTIONS or not fields[1].isdigit() or not fields[2].isdigit():
            raise ValueError(f"{ENV}={part!r} is not allowed; use <kill|block>:<round>:<iteration>:<folder>")
        faults.append(Fault(fields[0], int(fields[1]), int(fields[2]), fields[3]))
    return tuple(faults)


def from_environment() -> str:
    return os.environ.get(ENV, "")


class FaultHook:
    """Called at every evaluation point of a trial: fires the faults whose (round, iteration) it reaches."""

    def __init__(self, spec: str | None, who: str, where: dict | None = None):
        self.faults = parse(spec)
        self.who = who
        self.where = dict(where or {})

    def __bool__(self) -> bool:
        return bool(self.faults)

    def __call__(self, round_: int, iteration: int) -> None:
        for fault in self.faults:
            if (fault.round, fault.iteration) == (round_, iteration) and self._claim(fault):
                if fault.action == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                self._wait_for_release(fault)

    def _claim(self, fault: Fault) -> bool:
        """Publish the marker atomically and exclusively (a hard link fails when it exists); False when this
        trial's fault already fired."""
        path = fault.marker(self.who)
        if path.exists():
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(
            json.dumps(
                {
                    "who": self.who,
                    "action": fault.action,
                    "round": fault.round,
                    "iteration": fault.iteration,
                    "pid": os.getpid(),
                    **self.where,
                }
            )
        )
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            tmp.unlink()
        return True

    def _wait_for_release(self, fault: Fault) -> None:
        release = Path(fault.folder) / "release"
        deadline = time.monotonic() + BLOCK_LIMIT_S
        while not release.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"fault {fault}: never released")
            time.sleep(0.05)
