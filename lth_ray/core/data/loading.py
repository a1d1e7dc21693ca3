"""Data sets as device-resident tensors: train / validation / test splits, batched by index.

Sources are torchvision's on-disk formats (MNIST / Fashion-MNIST IDX files, CIFAR-10 pickled batches),
found in `--data-root`, the default cache folder, or (Fashion-MNIST) Debian's package folder; with
`download=True` torchvision's real download path is tried last. A data set that cannot be found is a
`DataError` naming the node, what was searched and the fix: never a silent switch to another data set.

Downloads happen at most once per node and folder: `fetch_dataset` holds an exclusive lock
(`<root>/.lth_ray-<dataset>.lock`, `fcntl.flock`, released by the kernel if its holder dies) around the
download, looks again once it has the lock (another process may have fetched the data meanwhile), downloads into
a hidden staging folder beside the data, checks the files there and only then moves them into place. A failed
or interrupted download leaves nothing that a reader takes for the data set.

torch is imported where tensors are made, so the raw-file search (`locate`, used by a sweep's driver) is cheap.
"""
from __future__ import annotations

import fcntl
import gzip
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:
    import torch

VALIDATION_SIZE = 5_000
SPLIT_SEED = 0  # the validation split is fixed per data set, the same for every trajectory
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
NORMALISATION = {"mnist": ((0.1307,), (0.3081,)), "fashion-mnist": ((0.2860,), (0.3530,))}
TORCHVISION_FOLDER = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "cifar10": "cifar-10-batches-py"}


class DataError(RuntimeError):
    """A data set could not be found or read; the message says where we looked and how to get it."""


def default_root() -> Path:
    """Where downloads go when no --data-root is given: $LTH_RAY_DATA or ~/.cache/lth_ray/datasets."""
    return Path(os.environ.get("LTH_RAY_DATA", Path.home() / ".cache" / "lth_ray" / "datasets"))


@dataclass
class Split:
    """Normalised float images (N, C, H, W) and int64 labels for train / val / test, on one device."""
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    dataset: str
    source: str

    @property
    def in_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])

    def to(self, device) -> "Split":
        moved = {k: getattr(self, k).to(device) for k in ("x_train", "y_train", "x_val", "y_val", "x_test",
                                                          "y_test")}
        return Split(**moved, dataset=self.dataset, source=self.source)


# ---------------------------------------------------------------- raw readers (uint8 arrays, int64 labels)

def read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST's format), plain or gzipped."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
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


def _mnist_like(folder: Path):
    train, test = _idx_pair(folder, "train"), _idx_pair(folder, "t10k")
    if train is None or test is None:
        return None
    return train, test


# What CIFAR-10's python batches need to unpickle: numpy arrays (any other global is refused, so a tampered
# batch cannot run code; torchvision's own loader uses plain pickle).
CIFAR_GLOBALS = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                 ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                 ("numpy._core.multiarray", "scalar")}


def _restricted_pickle_load(f):
    import pickle

    class Restricted(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) not in CIFAR_GLOBALS:
                raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR-10 batch")
            return super().find_class(module, name)
    return Restricted(f, encoding="latin1").load()


def _cifar10(folder: Path):
    import pickle
    names = [f"data_batch_{i}" for i in range(1, 6)]
    if not all((folder / n).exists() for n in names + ["test_batch"]):
        return None

    def load(name):
        try:
            with open(folder / name, "rb") as f:
                entry = _restricted_pickle_load(f)
            x = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            return x, np.asarray(entry.get("labels", entry.get("fine_labels")), dtype=np.int64)
        except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as err:
            raise DataError(f"{folder / name} is not a readable CIFAR-10 batch ({type(err).__name__}: "
                            f"{str(err).splitlines()[0] if str(err) else ''})") from None

    parts = [load(n) for n in names]
    train = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    return train, load("test_batch")


def _folders_in(dataset: str, root: Path) -> list[Path]:
    """Where a data set may sit under one root: torchvision's layout first, then the raw files in the root."""
    sub = TORCHVISION_FOLDER[dataset]
    return [root / sub / "raw", root / sub, root] if dataset != "cifar10" else [root / sub, root]


def _candidates(dataset: str, data_root: str | None) -> list[Path]:
    """Folders to search, in order: --data-root (torchvision layout or the raw files), cache, Debian."""
    roots = [Path(data_root)] if data_root else []
    roots.append(default_root())
    folders = [folder for root in roots for folder in _folders_in(dataset, root)]
    if dataset == "fashion-mnist":
        folders.append(DEBIAN_FASHION_MNIST)
    return list(dict.fromkeys(folders))  # --data-root may be $LTH_RAY_DATA itself


def download_root(data_root: str | None) -> Path:
    """Where --download puts a data set: --data-root if given, else $LTH_RAY_DATA (the cache)."""
    return Path(data_root) if data_root else default_root()


# ---------------------------------------------------------------- the cheap search (no full read)

def _files(dataset: str, folder: Path) -> list[Path] | None:
    """The files the reader would read in `folder` (same choice of plain or gzipped IDX), or None if some lack."""
    if dataset == "cifar10":
        paths = [folder / f"data_batch_{i}" for i in range(1, 6)] + [folder / "test_batch"]
        return paths if all(p.is_file() for p in paths) else None
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


def _damage(path: Path) -> str | None:
    """What is wrong with one data file, judged from its header and size only; None when it looks whole.

    IDX: the header's dimensions must account for the file's size (gzip: for the size recorded in its
    trailer). Pickles (CIFAR-10) must end with pickle's STOP opcode."""
    try:
        size = path.stat().st_size
        if path.name.startswith(("data_batch_", "test_batch")):
            with open(path, "rb") as f:
                f.seek(max(size - 1, 0))
                last = f.read(1)
            return None if size > 1 and last == b"." else f"{path} is truncated (not a whole pickle)"
        gz = path.name.endswith(".gz")
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
            head = f.read(4)
            if len(head) < 4 or head[:3] != b"\x00\x00\x08":
                return f"{path} is not an unsigned-byte IDX file"
            dims = f.read(4 * head[3])
        expected = 4 + len(dims) + int(np.prod([int.from_bytes(dims[i:i + 4], "big")
                                                 for i in range(0, len(dims), 4)], dtype=np.int64))
        if gz:
            with open(path, "rb") as f:
                f.seek(max(size - 4, 0))
                actual = int.from_bytes(f.read(4), "little")  # ISIZE: uncompressed size mod 2**32
            expected %= 2 ** 32
        else:
            actual = size
        return None if actual == expected else f"{path} is truncated: its header promises {expected} bytes"
    except (OSError, EOFError) as err:
        return f"{path} is unreadable ({type(err).__name__}: {err})"


def _whole(dataset: str, folder: Path) -> tuple[bool, str | None]:
    """(files present, what is damaged among them or None)."""
    files = _files(dataset, folder) if folder.is_dir() else None
    if files is None:
        return False, None
    return True, next((d for d in map(_damage, files) if d is not None), None)


def locate(dataset: str, data_root: str | None = None, *, strict: bool = True) -> Path | None:
    """The first searched folder that holds the data set, judged from names, headers and sizes without reading
    the images (cheap enough for a sweep's driver); None when no folder holds it. A folder whose files are there
    but damaged is a DataError naming the file (`strict`), or passed over (not strict: a download replaces it)."""
    if dataset not in TORCHVISION_FOLDER:
        raise DataError(f"dataset {dataset!r} is unknown; allowed: {', '.join(TORCHVISION_FOLDER)}")
    for folder in _candidates(dataset, data_root):
        present, damage = _whole(dataset, folder)
        if present and damage is None:
            return folder
        if present and strict:
            raise DataError(f"{damage}; delete it and pass --download, or fix --data-root")
    return None


def require(dataset: str, data_root: str | None = None) -> Path:
    """`locate`, or the one-line DataError naming this node, the places searched and the fix."""
    found = locate(dataset, data_root)
    if found is None:
        found = _after_running_fetch(dataset, data_root)
    if found is None:
        raise DataError(_missing_message(dataset, _candidates(dataset, data_root)))
    return found


# ---------------------------------------------------------------- fetching, once per node and folder

Fetch = Callable[[str, Path], None]


def _download(dataset: str, root: Path) -> None:
    """torchvision's real download (with its md5 checks) of both splits into `root`, in its own layout."""
    from torchvision import datasets
    cls = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST, "cifar10": datasets.CIFAR10}[dataset]
    root.mkdir(parents=True, exist_ok=True)
    cls(str(root), train=True, download=True)
    cls(str(root), train=False, download=True)


def _lock_path(dataset: str, root: Path) -> Path:
    return root / f".lth_ray-{dataset}.lock"


def _after_running_fetch(dataset: str, data_root: str | None) -> Path | None:
    """Without --download: if some process on this node is fetching into our folder right now, wait for it
    (a shared lock on its lock file, which is never created here) and search again."""
    try:
        fd = os.open(_lock_path(dataset, download_root(data_root)), os.O_RDONLY)
    except OSError:  # no lock file: nobody ever fetched here
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # returns once no fetch holds the lock
    finally:
        os.close(fd)
    return locate(dataset, data_root, strict=False)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:300]


def fetch_dataset(dataset: str, data_root: str | None = None, fetch: Fetch | None = None) -> Path:
    """The folder holding `dataset`, downloaded first if no searched folder holds it whole.

    At most one process per node and folder downloads: the others wait on the lock and then find the data.
    `fetch(dataset, folder)` writes the data set into an empty folder (torchvision's layout or the raw files);
    the default is torchvision's real download. The result is checked (read in full) before it is moved into
    `download_root(data_root)`; a failed, partial or unreadable download leaves nothing behind but the lock file.
    """
    found = locate(dataset, data_root, strict=False)  # no lock (a read-only --data-root that holds the data works)
    if found is not None:
        return found
    fetch = fetch or _download
    root = download_root(data_root)
    searched = _candidates(dataset, data_root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(_lock_path(dataset, root), os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        raise DataError(_missing_message(dataset, searched, f"cannot write the download folder {root} "
                                                            f"({err.strerror or err})")) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # waits while another process on this node fetches; freed if it dies
        found = locate(dataset, data_root, strict=False)  # fetched by that process while we waited?
        return found if found is not None else _fetch_locked(dataset, root, fetch, searched)
    finally:
        os.close(fd)  # releases the lock


def _fetch_locked(dataset: str, root: Path, fetch: Fetch, searched: list[Path]) -> Path:
    """Under the lock: download into a fresh staging folder inside `root`, check, move into place."""
    for stale in root.glob(f".lth_ray-{dataset}-download-*"):  # left by a process killed mid-download
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".lth_ray-{dataset}-download-", dir=root))
    try:
        try:
            fetch(dataset, staging)
        except Exception as err:  # noqa: BLE001 (no internet, a mirror down, a full disk: say which)
            raise DataError(_missing_message(dataset, searched, f"download failed: {type(err).__name__}: "
                                                                f"{_one_line(err)}")) from None
        checks = [(folder, *_whole(dataset, folder)) for folder in _folders_in(dataset, staging)]
        got = next((folder for folder, present, damage in checks if present and damage is None), None)
        reader = _cifar10 if dataset == "cifar10" else _mnist_like
        try:
            if got is None:
                raise DataError(next((d for _, present, d in checks if present), None) or "its files are missing")
            reader(got)  # read in full once: what the trials will read is readable
        except DataError as err:
            raise DataError(_missing_message(dataset, searched, f"download incomplete: {_one_line(err)}")) from None
        return _install(dataset, got, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _install(dataset: str, got: Path, root: Path) -> Path:
    """Move the checked files into torchvision's layout under `root`, one atomic rename per file (same file
    system: the staging folder is inside `root`), replacing any damaged copies there."""
    sub = TORCHVISION_FOLDER[dataset]
    dest = root / sub if dataset == "cifar10" else root / sub / "raw"
    dest.mkdir(parents=True, exist_ok=True)
    for f in sorted(got.iterdir()):
        if f.is_file() and not f.name.startswith("."):
            os.replace(f, dest / f.name)
    present, damage = _whole(dataset, dest)
    if not present or damage is not None:  # e.g. a disk that filled up between check and rename
        raise DataError(f"dataset {dataset!r} was downloaded but {damage or 'its files vanished from ' + str(dest)}")
    return dest


def load_raw(dataset: str, data_root: str | None = None, download: bool = False, fetch: Fetch | None = None):
    """((x_train, y_train), (x_test, y_test), source folder) as uint8 N x C x H x W arrays.

    With `download`, a missing (or damaged) data set is fetched by `fetch_dataset` (`fetch`: see there)."""
    if dataset not in TORCHVISION_FOLDER:
        raise DataError(f"dataset {dataset!r} is unknown; allowed: {', '.join(TORCHVISION_FOLDER)}")
    reader = _cifar10 if dataset == "cifar10" else _mnist_like
    searched = _candidates(dataset, data_root)
    for folder in searched:
        if folder.is_dir():
            try:
                found = reader(folder)
            except DataError:
                if download:  # a damaged copy: fetch_dataset passes over it and replaces it
                    continue
                raise
            if found is not None:
                return (*_with_channels(found), str(folder))
    folder = fetch_dataset(dataset, data_root, fetch) if download else require(dataset, data_root)
    found = reader(folder)
    if found is None:  # (removed between the check and the read)
        raise DataError(_missing_message(dataset, searched))
    return (*_with_channels(found), str(folder))


def _with_channels(found):
    (xtr, ytr), (xte, yte) = found
    if xtr.ndim == 3:
        xtr, xte = xtr[:, None], xte[:, None]
    return (xtr, ytr), (xte, yte)


def _missing_message(dataset: str, searched: list[Path], why: str = "") -> str:
    """One line: the data set, this node, the places searched, why the download failed (if tried), the fix."""
    fix = ("pass --download (needs internet; fetched once per node into --data-root, else $LTH_RAY_DATA), "
           "or point --data-root at a folder holding it in torchvision's layout on every node"
           + (", or install Debian's package dataset-fashion-mnist" if dataset == "fashion-mnist" else ""))
    places = ", ".join(str(p) for p in searched)
    return (f"dataset {dataset!r} not found on node {socket.gethostname()} (searched: {places})"
            f"{'; ' + why if why else ''}; fix: {fix}")


# ---------------------------------------------------------------- splits and batches

def validation_split(n: int, size: int = VALIDATION_SIZE, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train indices, validation indices) of a training set of n examples."""
    if not 0 < size < n:
        raise DataError(f"validation size {size} must lie in (0, {n})")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[size:]), np.sort(order[:size])


def normalisation(dataset: str, x_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean/std in [0, 1] units: fixed for (Fashion-)MNIST, from the given training images (the
    45,000 left after the validation split) for CIFAR-10."""
    if dataset in NORMALISATION:
        mean, std = NORMALISATION[dataset]
        return np.asarray(mean), np.asarray(std)
    scaled = x_train.astype(np.float64) / 255.0
    return scaled.mean(axis=(0, 2, 3)), scaled.std(axis=(0, 2, 3))


def load_split(dataset: str, data_root: str | None = None, device: str | torch.device = "cpu",
               download: bool = False, validation_size: int = VALIDATION_SIZE, fetch: Fetch | None = None) -> Split:
    """The whole data set as normalised float32 tensors on `device`, 5,000 training examples held out."""
    import torch
    (xtr, ytr), (xte, yte), source = load_raw(dataset, data_root, download, fetch)
    train_idx, val_idx = validation_split(len(xtr), validation_size)
    mean, std = normalisation(dataset, xtr[train_idx])  # the training images only: validation must not leak

    def prepare(x):
        t = torch.from_numpy(np.ascontiguousarray(x)).to(torch.float32).div_(255.0)
        m = torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        s = torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        return ((t - m) / s).to(device)

    def labels(y):
        return torch.from_numpy(np.ascontiguousarray(y)).to(device)

    return Split(prepare(xtr[train_idx]), labels(ytr[train_idx]), prepare(xtr[val_idx]), labels(ytr[val_idx]),
                 prepare(xte), labels(yte), dataset=dataset, source=source)


def epoch_batches(n: int, batch_size: int, generator: torch.Generator, device) -> torch.Tensor:
    """One epoch's shuffled batch indices (num_batches, batch_size) on `device`; the partial batch is dropped."""
    import torch
    perm = torch.randperm(n, generator=generator)
    usable = (n // batch_size) * batch_size
    return perm[:usable].view(-1, batch_size).to(device, non_blocking=True)
