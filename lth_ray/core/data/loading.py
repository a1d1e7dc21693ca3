"""Data sets as device-resident tensors: train / validation / test splits, batched by index.

What each data set is (shape, normalisation, split sizes, folder, file format) is its registry entry
(`lth_ray.core.data.registry`); this module finds its files and reads them. Sources are torchvision's on-disk
formats (MNIST / Fashion-MNIST IDX files, CIFAR-10 pickled batches: `lth_ray.core.data.formats`), found in
`--data-root`, the default cache folder, or the folder of the entry's Debian package; with `download=True`
torchvision's real download path is tried last. A data set that cannot be found is a
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
import os
import shutil
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lth_ray.core.data.formats import DataError
from lth_ray.core.data.registry import VALIDATION_SIZE, DatasetEntry, dataset_entry
from lth_ray.core.spec.config import ConfigError

if TYPE_CHECKING:
    import torch

SPLIT_SEED = 0  # the validation split is fixed per data set, the same for every trajectory
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def default_root() -> Path:
    """Where downloads go when no --data-root is given: $LTH_RAY_DATA or ~/.cache/lth_ray/datasets."""
    return Path(os.environ.get("LTH_RAY_DATA", Path.home() / ".cache" / "lth_ray" / "datasets"))


def debian_folder(package: str) -> Path:
    """Where Debian's `dataset-<name>` package installs its files: /usr/share/datasets/<name>."""
    if package == "dataset-fashion-mnist":
        return DEBIAN_FASHION_MNIST  # one constant for the Makefile's FMNIST and the tests that move it
    return Path("/usr/share/datasets") / package.removeprefix("dataset-")


def _entry(dataset: str) -> DatasetEntry:
    """The registry's entry; an unknown name is a DataError here (what the loader's callers catch)."""
    try:
        return dataset_entry(dataset)
    except ConfigError as err:
        raise DataError(str(err)) from None


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
        c, h, w = self.x_train.shape[1:]
        return (c, h, w)

    def to(self, device) -> Split:
        moved = {k: getattr(self, k).to(device) for k in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")}
        return Split(**moved, dataset=self.dataset, source=self.source)


def _folders_in(dataset: str, root: Path) -> list[Path]:
    """Where a data set may sit under one root: torchvision's layout first, then the raw files in the root."""
    entry = _entry(dataset)
    sub = root / entry.folder
    return [sub / entry.format.subfolder, sub, root] if entry.format.subfolder else [sub, root]


def _candidates(dataset: str, data_root: str | None) -> list[Path]:
    """Folders to search, in order: --data-root (torchvision layout or the raw files), cache, Debian."""
    roots = [Path(data_root)] if data_root else []
    roots.append(default_root())
    folders = [folder for root in roots for folder in _folders_in(dataset, root)]
    package = _entry(dataset).debian_package
    if package:
        folders.append(debian_folder(package))
    return list(dict.fromkeys(folders))  # --data-root may be $LTH_RAY_DATA itself


def download_root(data_root: str | None) -> Path:
    """Where --download puts a data set: --data-root if given, else $LTH_RAY_DATA (the cache)."""
    return Path(data_root) if data_root else default_root()


# ---------------------------------------------------------------- the cheap search (no full read)


def _whole(dataset: str, folder: Path) -> tuple[bool, str | None]:
    """(files present, what is damaged among them or None)."""
    form = _entry(dataset).format
    files = form.files(folder) if folder.is_dir() else None
    if files is None:
        return False, None
    return True, next((d for d in map(form.damage, files) if d is not None), None)


def locate(dataset: str, data_root: str | None = None, *, strict: bool = True) -> Path | None:
    """The first searched folder that holds the data set, judged from names, headers and sizes without reading
    the images (cheap enough for a sweep's driver); None when no folder holds it. A folder whose files are there
    but damaged is a DataError naming the file (`strict`), or passed over (not strict: a download replaces it)."""
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

    name = _entry(dataset).torchvision
    if not name:
        raise DataError(f"dataset {dataset!r} names no torchvision class to download it with")
    cls = getattr(datasets, name)
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


def _one_line(text: object) -> str:
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
        raise DataError(
            _missing_message(dataset, searched, f"cannot write the download folder {root} ({err.strerror or err})")
        ) from None
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
            raise DataError(
                _missing_message(dataset, searched, f"download failed: {type(err).__name__}: {_one_line(err)}")
            ) from None
        checks = [(folder, *_whole(dataset, folder)) for folder in _folders_in(dataset, staging)]
        got = next((folder for folder, present, damage in checks if present and damage is None), None)
        reader = _entry(dataset).format.read
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
    entry = _entry(dataset)
    dest = root / entry.folder / entry.format.subfolder
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
    reader = _entry(dataset).format.read
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
    package = _entry(dataset).debian_package
    fix = (
        "pass --download (needs internet; fetched once per node into --data-root, else $LTH_RAY_DATA), "
        "or point --data-root at a folder holding it in torchvision's layout on every node"
        + (f", or install Debian's package {package}" if package else "")
    )
    places = ", ".join(str(p) for p in searched)
    return (
        f"dataset {dataset!r} not found on node {socket.gethostname()} (searched: {places})"
        f"{'; ' + why if why else ''}; fix: {fix}"
    )


# ---------------------------------------------------------------- splits and batches


def validation_split(n: int, size: int = VALIDATION_SIZE, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train indices, validation indices) of a training set of n examples."""
    if not 0 < size < n:
        raise DataError(f"validation size {size} must lie in (0, {n})")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[size:]), np.sort(order[:size])


def normalisation(dataset: str, x_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean/std in [0, 1] units: the entry's fixed values ((Fashion-)MNIST), else from the given
    training images (CIFAR-10: the 45,000 left after the validation split)."""
    entry = _entry(dataset)
    if entry.mean is not None:
        return np.asarray(entry.mean), np.asarray(entry.std)
    scaled = x_train.astype(np.float64) / 255.0
    return scaled.mean(axis=(0, 2, 3)), scaled.std(axis=(0, 2, 3))


def load_split(
    dataset: str,
    data_root: str | None = None,
    device: str | torch.device = "cpu",
    download: bool = False,
    validation_size: int | None = None,
    fetch: Fetch | None = None,
) -> Split:
    """The whole data set as normalised float32 tensors on `device`, the entry's validation size (5,000)
    of the training examples held out."""
    import torch

    (xtr, ytr), (xte, yte), source = load_raw(dataset, data_root, download, fetch)
    size = _entry(dataset).validation_size if validation_size is None else validation_size
    train_idx, val_idx = validation_split(len(xtr), size)
    mean, std = normalisation(dataset, xtr[train_idx])  # the training images only: validation must not leak

    def prepare(x):
        t = torch.from_numpy(np.ascontiguousarray(x)).to(torch.float32).div_(255.0)
        m = torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        s = torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        return ((t - m) / s).to(device)

    def labels(y):
        return torch.from_numpy(np.ascontiguousarray(y)).to(device)

    return Split(
        prepare(xtr[train_idx]),
        labels(ytr[train_idx]),
        prepare(xtr[val_idx]),
        labels(ytr[val_idx]),
        prepare(xte),
        labels(yte),
        dataset=dataset,
        source=source,
    )


def epoch_batches(n: int, batch_size: int, generator: torch.Generator, device) -> torch.Tensor:
    """One epoch's shuffled batch indices (num_batches, batch_size) on `device`; the partial batch is dropped."""
    import torch

    perm = torch.randperm(n, generator=generator)
    usable = (n // batch_size) * batch_size
    return perm[:usable].view(-1, batch_size).to(device, non_blocking=True)
