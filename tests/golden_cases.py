"""Golden cases: small deterministic cohorts whose every number was recorded before issue 21's refactor.

A plain module (not a test file): `tests/record_golden.py` writes `run_case(name)` of every case in `CASES`
to `tests/data/golden/<name>.json`, and `tests/test_no_number_change.py` checks that today's code still
produces exactly those outputs, bitwise. The goldens were recorded on commit bcb7175 (before the modules moved
into lth_ray/core, lth_ray/distributed and lth_ray/results).

Every case builds its data in code: a tiny MNIST look-alike (IDX files) or CIFAR-10 look-alike (pickled
python batches) written into a temporary folder and read back by the real loader
(`lth_ray.core.data.loading.load_split`), then trains a cohort (`lth_ray.Cohort`) round by round until it is
done. What is recorded, per member and round: the member's key, the round record's numbers (histories,
sparsities, early stop, ...; nothing time-dependent: no seconds, no device name), the instability record when
there is one, and sha256 digests of the round's bit-packed masks, trained weights, early-stop weights and
rewind point.

The cases build their cohorts through the public API (`lth_ray.from_preset`, `lth_ray.Cohort`) where it has
the name. Torch runs on one intra-op thread while a case runs (and is
set back after), so the numbers do not depend on the machine's core count.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import pickle
import platform
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

GOLDEN_DIR = Path(__file__).resolve().parent / "data" / "golden"
RECORDED_ON = "bcb7175"

# The numbers of a round record that are compared (seconds and device_name are time/host dependent; left out).
RECORD_KEYS = (
    "round",
    "method",
    "sparsity",
    "layer_sparsity",
    "iterations",
    "train_loss",
    "val_loss",
    "val_acc",
    "test_loss",
    "test_acc",
    "early_stop_index",
    "early_stop_iteration",
    "train_loss_at_early_stop",
    "val_loss_at_early_stop",
    "val_acc_at_early_stop",
    "test_loss_at_early_stop",
    "test_acc_at_early_stop",
    "final_train_loss",
    "final_val_loss",
    "final_val_acc",
    "final_test_loss",
    "final_test_acc",
    "diverged",
    "start_iteration",
    "steps",
    "device",
)
INSTABILITY_DROP = ("seconds",)


# ---------------------------------------------------------------- data, written in code


def _write_idx(path: Path, array: np.ndarray) -> None:
    """MNIST's IDX format (uint8), gzipped."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes(), mtime=0))


def _mnist_like(root: Path, n_train: int = 600, n_test: int = 100, seed: int = 21) -> None:
    """A learnable MNIST look-alike in torchvision's layout: class c lights up a band of rows."""
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        y = rng.integers(0, 10, n)
        x = rng.integers(0, 200, (n, 28, 28))
        for i, c in enumerate(y):
            x[i, 2 * c + 4 : 2 * c + 7, 4:24] += 90
        _write_idx(root / "MNIST" / "raw" / f"{prefix}-images-idx3-ubyte.gz", x.clip(0, 255))
        _write_idx(root / "MNIST" / "raw" / f"{prefix}-labels-idx1-ubyte.gz", y)


def _cifar10_like(root: Path, per_batch: int = 40, n_test: int = 50, seed: int = 21) -> None:
    """CIFAR-10's pickled python batches (data_batch_1..5, test_batch): a class-dependent colour shift."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", n_test)]:
        labels = rng.integers(0, 10, n)
        data = rng.integers(0, 200, (n, 3, 32 * 32))
        data[np.arange(n), labels % 3] += 6 * labels[:, None]
        with open(folder / name, "wb") as f:
            pickle.dump(
                {
                    "data": data.reshape(n, -1).clip(0, 255).astype(np.uint8),
                    "labels": labels.tolist(),
                    "batch_label": name.encode(),
                },
                f,
                protocol=4,
            )


# dataset -> (writer, validation examples held out)
_DATA = {"mnist": (_mnist_like, 100), "cifar10": (_cifar10_like, 50)}
_SPLITS: dict = {}


def split(dataset: str):
    """The data set of the cases, through the real loader (built once per process; trajectories only read it)."""
    if dataset not in _SPLITS:
        from lth_ray.core.data.loading import Split, load_split

        writer, validation = _DATA[dataset]
        with tempfile.TemporaryDirectory(prefix=f"lth_ray-golden-{dataset}-") as root:
            writer(Path(root))
            s = load_split(dataset, root, validation_size=validation)
        _SPLITS[dataset] = Split(
            s.x_train, s.y_train, s.x_val, s.y_val, s.x_test, s.y_test, dataset=dataset, source="golden"
        )
    return _SPLITS[dataset]


# ---------------------------------------------------------------- the cases


@dataclass(frozen=True)
class Case:
    preset: str
    overrides: dict
    seeds: tuple = (0,)
    baselines: tuple = ()
    ablations: tuple = ()
    doc: str = ""


LENET = dict(dataset="mnist", plan_fc=(16,), rounds=2, iterations=60, eval_every=20, batch_size=20)
AT_INIT = ("snip", "grasp", "synflow", "magnitude-init")
ABLATIONS = ("shuffle", "reinit", "invert")
CONV_BN = dict(
    dataset="cifar10", plan_conv=("4B", "M"), plan_fc=(8,), rounds=2, iterations=20, eval_every=10, batch_size=15
)

CASES: dict[str, Case] = {
    "lenet_fp32": Case(
        "lenet",
        dict(LENET),
        (0, 1),
        ("reinit", "random-prune"),
        doc="IMP on a 16-unit Lenet, two seeds, re-init and random pruning beside it",
    ),
    "lenet_fp64": Case(
        "lenet", dict(LENET, precision="fp64"), (0, 1), ("reinit", "random-prune"), doc="the same in float64"
    ),
    "lenet_late_rewind_instability": Case(
        "lenet",
        dict(LENET, rewind_iteration=20, instability=True, instability_points=3),
        (0,),
        ("reinit", "random-prune"),
        doc="late rewinding to iteration 20, with instability paths every round",
    ),
    "one_shot_global": Case(
        "lenet",
        dict(LENET, method="one-shot", pruning="global"),
        (0,),
        ("reinit", "random-prune"),
        doc="a one-shot ticket, global magnitude pruning",
    ),
    "pruning_at_init_fp32": Case(
        "lenet",
        dict(LENET, iterations=40),
        (0,),
        AT_INIT,
        ABLATIONS,
        doc="SNIP, GraSP, SynFlow, magnitude at init, every ablation of each and of IMP",
    ),
    "pruning_at_init_fp64": Case(
        "lenet", dict(LENET, iterations=40, precision="fp64"), (0,), AT_INIT, ABLATIONS, doc="the same in float64"
    ),
    "conv_batchnorm": Case(
        "conv2",
        CONV_BN,
        (0,),
        ("reinit",),
        doc="a tiny conv plan with BatchNorm (4B, M | fc 8) on CIFAR-like data, re-init beside",
    ),
}


def members_of(case: Case):
    from lth_ray import from_preset
    from lth_ray.core.engine.trajectory import cohort_members

    ticket = from_preset(case.preset, **case.overrides)
    return cohort_members(ticket, list(case.seeds), list(case.baselines), list(case.ablations))


# ---------------------------------------------------------------- what is recorded


def _plain(value):
    """JSON-able plain values: floats stay Python floats (float64; json round-trips them exactly)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return float(value)
    raise TypeError(f"not a recordable value: {type(value).__name__}")


def _update_tensor(h, key: str, t: torch.Tensor) -> None:
    t = t.detach().cpu().contiguous()
    h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
    h.update(t.numpy().tobytes())


def digest_state(state: dict | None) -> str | None:
    """sha256 of a state dict (name, dtype, shape and bytes of each tensor, in sorted name order)."""
    if state is None:
        return None
    h = hashlib.sha256()
    for key in sorted(state):
        _update_tensor(h, key, state[key])
    return h.hexdigest()


def digest_masks(packed: dict) -> str:
    """sha256 of bit-packed masks ({layer: {"shape", "bits"}}), layers in sorted order."""
    h = hashlib.sha256()
    for name in sorted(packed):
        entry = packed[name]
        h.update(f"{name}|{list(entry['shape'])}|".encode())
        _update_tensor(h, name, entry["bits"])
    return h.hexdigest()


def round_entry(config, result) -> dict:
    record = result.record
    entry = {"key": config.key, **{k: _plain(record[k]) for k in RECORD_KEYS}}
    if "instability" in record:
        entry["instability"] = _plain({k: v for k, v in record["instability"].items() if k not in INSTABILITY_DROP})
    else:
        entry["instability"] = None
    entry["masks_sha256"] = digest_masks(result.masks)
    entry["trained_sha256"] = digest_state(result.trained)
    entry["early_stop_sha256"] = digest_state(result.early_stop)
    entry["rewind_sha256"] = digest_state(result.rewind)
    return entry


def run_case(name: str) -> dict:
    """Every member's every round of case `name`, as a JSON-able dict (deterministic, bitwise on one CPU)."""
    from lth_ray import Cohort

    case = CASES[name]
    members = members_of(case)
    data = split(members[0].dataset)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cohort = Cohort(members, data)
        rounds = []
        while not cohort.done:
            r = cohort.next_round
            results = cohort.run_round()
            rounds.append({"round": r, "members": [round_entry(members[i], results[i]) for i in sorted(results)]})
    finally:
        torch.set_num_threads(threads)
    return {"case": name, "doc": case.doc, "keys": [m.key for m in members], "rounds": rounds}


def environment() -> dict:
    """What the numbers depend on besides the code: torch's build and the CPU's kernels."""
    return {
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": platform.machine(),
        "python": platform.python_version(),
    }


def same(a, b) -> bool:
    """Exact equality of JSON-able values; floats with ==, NaN equal to NaN (the bit pattern of a float64 NaN
    is not compared)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def first_difference(a, b, where: str = "") -> str | None:
    """Where two JSON-able values first differ (for the assertion message), None when `same`."""
    if same(a, b):
        return None
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return f"{where or '<top>'}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            d = first_difference(a[k], b[k], f"{where}.{k}")
            if d:
                return d
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{where}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            d = first_difference(x, y, f"{where}[{i}]")
            if d:
                return d
    return f"{where}: {a!r} != {b!r}"
