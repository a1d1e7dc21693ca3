"""Data sets as device-resident tensors: train / validation / test splits, batched by index.

Sources are torchvision's on-disk formats (MNIST / Fashion-MNIST IDX files, CIFAR-10 pickled batches),
found in `--data-root`, the default cache folder, or (Fashion-MNIST) Debian's package folder; with
`download=True` torchvision's real download path is tried last. A data set that cannot be found is a
`DataError` naming what was searched: never a silent switch to another data set.
"""
from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
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


def _cifar10(folder: Path):
    import pickle
    names = [f"data_batch_{i}" for i in range(1, 6)]
    if not all((folder / n).exists() for n in names + ["test_batch"]):
        return None

    def load(name):
        with open(folder / name, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        x = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        return x, np.asarray(entry.get("labels", entry.get("fine_labels")), dtype=np.int64)

    parts = [load(n) for n in names]
    train = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    return train, load("test_batch")


def _candidates(dataset: str, data_root: str | None) -> list[Path]:
    """Folders to search, in order: --data-root (torchvision layout or the raw files), cache, Debian."""
    roots = [Path(data_root)] if data_root else []
    roots.append(default_root())
    sub = TORCHVISION_FOLDER[dataset]
    folders = []
    for root in roots:
        folders += [root / sub / "raw", root / sub, root] if dataset != "cifar10" else [root / sub, root]
    if dataset == "fashion-mnist":
        folders.append(DEBIAN_FASHION_MNIST)
    return folders


def _download(dataset: str, root: Path) -> None:
    from torchvision import datasets
    cls = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST, "cifar10": datasets.CIFAR10}[dataset]
    root.mkdir(parents=True, exist_ok=True)
    cls(str(root), train=True, download=True)
    cls(str(root), train=False, download=True)


def load_raw(dataset: str, data_root: str | None = None, download: bool = False):
    """((x_train, y_train), (x_test, y_test), source folder) as uint8 N x C x H x W arrays."""
    if dataset not in TORCHVISION_FOLDER:
        raise DataError(f"dataset {dataset!r} is unknown; allowed: {', '.join(TORCHVISION_FOLDER)}")
    reader = _cifar10 if dataset == "cifar10" else _mnist_like
    searched = _candidates(dataset, data_root)
    for folder in searched:
        if folder.is_dir():
            found = reader(folder)
            if found is not None:
                return (*_with_channels(found), str(folder))
    if download:
        target = Path(data_root) if data_root else default_root()
        try:
            _download(dataset, target)
        except Exception as err:  # no internet: say so, with what was searched
            raise DataError(_missing_message(dataset, searched, f"download failed: {type(err).__name__}")) from None
        return load_raw(dataset, str(target), download=False)
    raise DataError(_missing_message(dataset, searched))


def _with_channels(found):
    (xtr, ytr), (xte, yte) = found
    if xtr.ndim == 3:
        xtr, xte = xtr[:, None], xte[:, None]
    return (xtr, ytr), (xte, yte)


def _missing_message(dataset: str, searched: list[Path], why: str = "") -> str:
    how = ("download it with internet (--download), point --data-root at a folder in torchvision's layout"
           + (", or install Debian's dataset-fashion-mnist" if dataset == "fashion-mnist" else ""))
    places = ", ".join(str(p) for p in searched)
    return f"dataset {dataset!r} not found (searched: {places}){'; ' + why if why else ''}; {how}"


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
               download: bool = False, validation_size: int = VALIDATION_SIZE) -> Split:
    """The whole data set as normalised float32 tensors on `device`, 5,000 training examples held out."""
    (xtr, ytr), (xte, yte), source = load_raw(dataset, data_root, download)
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
    perm = torch.randperm(n, generator=generator)
    usable = (n // batch_size) * batch_size
    return perm[:usable].view(-1, batch_size).to(device, non_blocking=True)
