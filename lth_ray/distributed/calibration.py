"""The planner's GPU numbers, measured: a table of GPU models (by `torch.cuda.get_device_name()`) with their
training speed per precision, their launch floor and their memory, written by `benchmarks/gpu_check.py` on the
GPU itself and read by the sweep's planner (`--gpu-calibration PATH --gpu-model NAME`: `choose`).

Why: the planner's GPU-hours and its packing rest on a GPU's FLOP rate and on the shortest step that keeps it busy;
assumed numbers (`ASSUMED`) are 2-4x off on an H100. A table keeps what a GPU measured next to where it was
measured, and the dry run says which numbers it used.

The table (JSON):

    {"format": 1, "gpus": {"NVIDIA H100 80GB HBM3": {"fp32_flops": 3.1e13, "tf32_flops": 2.2e14,
      "bf16_flops": 3.6e14, "step_floor_s": 4e-05, "memory_bytes": 85045460992, "source": "gpu_check",
      "measured_at": "2026-12-07", "torch": "2.14.1+cu130"}}}

`*_flops` are the FLOP/s a cohort's training step reaches (not the datasheet's peak); `step_floor_s` is the
shortest step time, what a step of a few kernels costs whatever its size (launch-bound: host and launch
latency). tf32 and bf16 may be null (not measured): the fp32 rate stands in. No torch, no ray: the planner is pure.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from lth_ray.core.spec.config import PRECISIONS, ConfigError
from lth_ray.distributed.planner import GIB, GPUModel

FORMAT = 1
ASSUMED_SOURCE = "assumed, not measured"


@dataclass(frozen=True)
class Calibration:
    """One GPU model's numbers as the planner uses them (see the module's docstring for their meaning)."""

    name: str  # torch.cuda.get_device_name()
    fp32_flops: float
    tf32_flops: float | None
    bf16_flops: float | None
    step_floor_s: float
    memory_bytes: int
    source: str  # "gpu_check", or ASSUMED_SOURCE
    measured_at: str = ""  # ISO date (or date and time) of the measurement
    torch: str = ""  # torch.__version__ that measured it

    @property
    def measured(self) -> bool:
        return self.source != ASSUMED_SOURCE

    def describe(self) -> str:
        """Where the numbers come from, for the dry run."""
        if not self.measured:
            return ASSUMED_SOURCE
        return f"measured by {self.source}" + (f" on {self.measured_at[:10]}" if self.measured_at else "")  # the date


# An NVIDIA A10G (cluster.yaml's GPUs), 24 GiB; fp32 peak 31 TFLOP/s, of which small convolutions get about a third;
# a step busies the GPU for at least a millisecond. Assumed, not measured: no GPU was lent.
ASSUMED = Calibration(
    name="NVIDIA A10G",
    fp32_flops=10e12,
    tf32_flops=None,
    bf16_flops=None,
    step_floor_s=1e-3,
    memory_bytes=24 * GIB,
    source=ASSUMED_SOURCE,
)

_FLOAT_FIELDS = ("fp32_flops", "step_floor_s")
_OPTIONAL_FLOAT_FIELDS = ("tf32_flops", "bf16_flops")
_STR_FIELDS = ("source", "measured_at", "torch")
_REQUIRED = ("fp32_flops", "step_floor_s", "memory_bytes", "source")


def _entry(path: Path, name: str, raw: Any) -> Calibration:
    """One table entry, checked: a bad field is a one-line error naming the file, the GPU and the field."""

    def bad(field: str, why: str) -> ConfigError:
        where = f"gpus[{name!r}]" + (f".{field}" if field else "")
        return ConfigError(f"{path}: {where}{'' if why.startswith('=') else ' '}{why}")

    if not isinstance(raw, dict):
        raise bad("", f"must be an object, not {type(raw).__name__}")
    known = {f.name for f in fields(Calibration)} - {"name"}
    for key in raw:
        if key not in known:
            raise bad(key, f"is not a field; allowed: {', '.join(sorted(known))}")
    for key in _REQUIRED:
        if key not in raw:
            raise bad(key, "is missing")
    values: dict[str, Any] = {}
    for key in _FLOAT_FIELDS + _OPTIONAL_FLOAT_FIELDS:
        v = raw.get(key)
        if v is None and key in _OPTIONAL_FLOAT_FIELDS:
            values[key] = None
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise bad(key, f"={v!r} must be a positive number" + (" or null" if key in _OPTIONAL_FLOAT_FIELDS else ""))
        values[key] = float(v)
    memory = raw["memory_bytes"]
    if isinstance(memory, bool) or not isinstance(memory, int) or memory <= 0:
        raise bad("memory_bytes", f"={memory!r} must be a positive integer (bytes)")
    for key in _STR_FIELDS:
        v = raw.get(key, "")
        if not isinstance(v, str):
            raise bad(key, f"={v!r} must be a string")
        values[key] = v
    if not values["source"]:
        raise bad("source", "must not be empty (say who measured it, e.g. 'gpu_check')")
    return Calibration(name=name, memory_bytes=memory, **values)


def load_table(path: str | os.PathLike[str]) -> dict[str, Calibration]:
    """The table at `path`, by GPU name. A missing file, bad JSON or a bad field is one ConfigError naming it."""
    p = Path(path)
    try:
        raw = json.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such GPU calibration table (benchmarks/gpu_check.py writes one)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{p}: not a readable JSON GPU calibration table ({str(err).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: the table must be a JSON object with 'format' and 'gpus', not {type(raw).__name__}")
    if raw.get("format") != FORMAT:
        raise ConfigError(f"{p}: format={raw.get('format')!r} is not supported; allowed: {FORMAT}")
    gpus = raw.get("gpus")
    if not isinstance(gpus, dict):
        raise ConfigError(f"{p}: gpus must be an object of GPU name -> entry, not {type(gpus).__name__}")
    return {name: _entry(p, name, entry) for name, entry in gpus.items()}


def _as_json(c: Calibration) -> dict[str, Any]:
    out = asdict(c)
    del out["name"]
    return out


def write_entry(path: str | os.PathLike[str], calibration: Calibration) -> None:
    """Add or replace `calibration` in the table at `path` (created if missing), keeping its other GPUs. Atomic:
    the new table goes to a temporary file in the same folder, then replaces the old one, so a reader never sees
    half a table and a crash leaves the old one whole."""
    p = Path(path)
    table = load_table(p) if p.exists() else {}
    _entry(p, calibration.name, _as_json(calibration))  # write nothing a reader would refuse
    table[calibration.name] = calibration
    text = json.dumps(
        {"format": FORMAT, "gpus": {name: _as_json(c) for name, c in sorted(table.items())}}, indent=2, sort_keys=False
    )
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide the table from other users of a shared results folder
        with os.fdopen(fd, "w") as f:
            f.write(text + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def lookup(table: dict[str, Calibration], gpu_name: str) -> Calibration:
    """The entry for `gpu_name`, spelled exactly as `torch.cuda.get_device_name()` gives it."""
    if gpu_name in table:
        return table[gpu_name]
    names = ", ".join(repr(n) for n in sorted(table)) or "none"
    raise ConfigError(f"GPU model {gpu_name!r} is not in the calibration table; it has: {names}")


def flops_for(calibration: Calibration, precision: str) -> float:
    """The training FLOP/s at `precision`: tf32 and bf16 fall back to fp32 when not measured; fp64 is costed at
    the fp32 rate (an overestimate of its speed on most GPUs: fp64 sweeps are CPU runs)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r} is not one of {', '.join(PRECISIONS)}")
    rate = {"tf32": calibration.tf32_flops, "bf16": calibration.bf16_flops}.get(precision)
    return rate if rate is not None else calibration.fp32_flops


def gpu_model(calibration: Calibration, precision: str = "fp32") -> GPUModel:
    """The planner's GPU from a calibration: the rate at `precision`, the step that keeps it busy for the launch
    floor (flops x step_floor_s), and its memory."""
    flops = flops_for(calibration, precision)
    return GPUModel(
        flops=flops, saturating_step_flops=flops * calibration.step_floor_s, memory_bytes=calibration.memory_bytes
    )


def choose(path: str | os.PathLike[str] | None, gpu_name: str | None) -> Calibration:
    """The sweep's GPU numbers: `gpu_name` in the table at `path`, the table's only GPU when no name is given,
    and without a table `ASSUMED` (a name other than its own is then an error naming --gpu-calibration)."""
    if path is None:
        if gpu_name is None or gpu_name == ASSUMED.name:
            return ASSUMED
        raise ConfigError(
            f"--gpu-model {gpu_name!r} needs --gpu-calibration PATH, a table that benchmarks/gpu_check.py wrote; "
            f"without one the planner knows only {ASSUMED.name!r} ({ASSUMED_SOURCE})"
        )
    table = load_table(path)
    if gpu_name is not None:
        return lookup(table, gpu_name)
    if len(table) == 1:
        return next(iter(table.values()))
    names = ", ".join(repr(n) for n in sorted(table)) or "none"
    raise ConfigError(f"{path} holds {len(table)} GPU models; pick one with --gpu-model NAME: {names}")
