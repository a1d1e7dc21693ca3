"""On-disk formats of data sets: how a folder's files are listed, checked cheaply and read into arrays.

A format knows nothing of where folders are or which data set they hold (that is the registry's entry and
the loader's search); it reads one folder into ((x_train, y_train), (x_test, y_test)) uint8 / int64 arrays,
or says None when the folder lacks its files. The cheap check (`files`, `damage`) reads headers and sizes only,
so a sweep's driver can look for the data without reading the images. No torch import here.
"""

from __future__ import annotations

import gzip
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

Arrays = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


class DataError(RuntimeError):
    """A data set could not be found or read; the message says where we looked and how to get it."""


@dataclass(frozen=True)
class FileFormat:
    """How one kind of data folder is read. `subfolder`: where torchvision keeps these files below the data
    set's own folder ('raw' for IDX files, '' for CIFAR-10's batches), which is also where a download lands."""

    name: str
    read: Callable[[Path], Arrays | None]  # the whole folder, or None when some file is missing
    files: Callable[[Path], list[Path] | None]  # the files `read` would read, or None when some are missing
    damage: Callable[[Path], str | None]  # what is wrong with one file (headers and sizes only)
    subfolder: str


# ---------------------------------------------------------------- IDX (MNIST, Fashion-MNIST)


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST's format), plain or gzipped."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(f"{path} is truncated: header says {dims}, found {body.size} bytes")
    return body.reshape(dims).copy()  # writable, so torch.from_numpy does not warn


def _idx_pair(folder: Path, prefix: str) -> tuple[np.ndarray, np.ndarray] | None:
    for suffix in ("", ".gz"):
        images = folder / f"{prefix}-images-idx3-ubyte{suffix}"
        labels = folder / f"{prefix}-labels-idx1-ubyte{suffix}"
        if images.exists() and labels.exists():
            return read_idx(images), read_idx(labels).astype(np.int64)
    return None


def read_mnist_like(folder: Path) -> Arrays | None:
    train, test = _idx_pair(folder, "train"), _idx_pair(folder, "t10k")
    if train is None or test is None:
        return None
    return train, test


def idx_files(folder: Path) -> list[Path] | None:
    """The IDX files `read_mnist_like` would read in `folder` (the same choice of plain or gzipped)."""
    chosen = []
    for prefix in ("train", "t10k"):
        for suffix in ("", ".gz"):
            pair = [folder / f"{prefix}-images-idx3-ubyte{suffix}", folder / f"{prefix}-labels-idx1-ubyte{suffix}"]
            if all(p.exists() for p in pair):
                chosen += pair
                break
        else:
            return None
    return chosen


def idx_damage(path: Path) -> str | None:
    """The header's dimensions must account for the file's size (gzip: for the size in its trailer)."""
    try:
        size = path.stat().st_size
        gz = path.name.endswith(".gz")
        with gzip.open(path, "rb") if gz else open(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4 or head[:3] != b"\x00\x00\x08":
                return f"{path} is not an unsigned-byte IDX file"
            dims = f.read(4 * head[3])
        expected = (
            4
            + len(dims)
            + int(np.prod([int.from_bytes(dims[i : i + 4], "big") for i in range(0, len(dims), 4)], dtype=np.int64))
        )
        if gz:
            with open(path, "rb") as f:
                f.seek(max(size - 4, 0))
                actual = int.from_bytes(f.read(4), "little")  # ISIZE: uncompressed size mod 2**32
            expected %= 2**32
        else:
            actual = size
        return None if actual == expected else f"{path} is truncated: its header promises {expected} bytes"
    except (OSError, EOFError) as err:
        return f"{path} is unreadable ({type(err).__name__}: {err})"


# ---------------------------------------------------------------- CIFAR-10's pickled python batches

# What CIFAR-10's python batches need to unpickle: numpy arrays (any other global is refused, so a tampered
# batch cannot run code; torchvision's own loader uses plain pickle).
CIFAR_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
}
CIFAR_BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in CIFAR_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR-10 batch")
        return super().find_class(module, name)


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            entry = _RestrictedUnpickler(f, encoding="latin1").load()
        x = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        return x, np.asarray(entry.get("labels", entry.get("fine_labels")), dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as err:
        raise DataError(
            f"{path} is not a readable CIFAR-10 batch ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''})"
        ) from None


def read_cifar10(folder: Path) -> Arrays | None:
    if not all((folder / n).exists() for n in CIFAR_BATCHES):
        return None
    parts = [_cifar_batch(folder / n) for n in CIFAR_BATCHES[:-1]]
    train = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    return train, _cifar_batch(folder / "test_batch")


def cifar_files(folder: Path) -> list[Path] | None:
    paths = [folder / n for n in CIFAR_BATCHES]
    return paths if all(p.is_file() for p in paths) else None


def pickle_damage(path: Path) -> str | None:
    """A pickle must end with pickle's STOP opcode."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            f.seek(max(size - 1, 0))
            last = f.read(1)
        return None if size > 1 and last == b"." else f"{path} is truncated (not a whole pickle)"
    except OSError as err:
        return f"{path} is unreadable ({type(err).__name__}: {err})"


IDX = FileFormat("idx", read_mnist_like, idx_files, idx_damage, subfolder="raw")
CIFAR_PICKLE = FileFormat("cifar-pickle", read_cifar10, cifar_files, pickle_damage, subfolder="")
