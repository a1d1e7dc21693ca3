"""Data sets by name: what a network and the loader need to know of each, in one entry.

An entry gives the image shape and class count (the network is built from them), the normalisation, the split
sizes, and where and how its files are found: torchvision's folder name under a root, the file format, the
torchvision class that downloads it, and a Debian package that installs it. Adding a data set is one entry
(`register_dataset`); an unknown name is an error listing the known ones. No torch import here.
"""

from __future__ import annotations

from dataclasses import dataclass

from lth_ray.core.data.formats import CIFAR_PICKLE, IDX, FileFormat
from lth_ray.core.spec.config import ConfigError
from lth_ray.core.spec.errors import refuse_taken, registered

VALIDATION_SIZE = 5_000  # held out of the training files, the same examples for every trajectory


@dataclass(frozen=True)
class DatasetEntry:
    """One data set. `mean`/`std` (per channel, in [0, 1] units) are fixed; None: computed from the training
    images left after the validation split (never from the validation images). `train_size` and `test_size`
    are the examples in the full files (tests use smaller copies); `validation_size` of the training
    examples are held out, leaving train_size - validation_size to train on."""

    name: str
    in_shape: tuple[int, int, int]
    num_classes: int
    train_size: int
    test_size: int
    folder: str  # torchvision's folder under a root, e.g. "MNIST"
    format: FileFormat
    validation_size: int = VALIDATION_SIZE
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    torchvision: str = ""  # the torchvision.datasets class that downloads it ("" = none)
    debian_package: str = ""  # a Debian package that installs its files ("" = none)


DATASETS: dict[str, DatasetEntry] = {}


def register_dataset(entry: DatasetEntry) -> DatasetEntry:
    """Add a data set under `entry.name`; a name already taken is refused (never silently replaced)."""
    refuse_taken(DATASETS, entry.name, "dataset")
    if (entry.mean is None) != (entry.std is None):
        raise ConfigError(f"dataset {entry.name!r}: give both mean and std, or neither (computed)")
    if not 0 < entry.validation_size < entry.train_size:
        raise ConfigError(
            f"dataset {entry.name!r}: validation_size={entry.validation_size} must lie in (0, {entry.train_size})"
        )
    DATASETS[entry.name] = entry
    return entry


def dataset_entry(name: str) -> DatasetEntry:
    """The entry of `name`, or one line naming the known data sets."""
    return registered(DATASETS, name, "dataset")


def in_shape_of(dataset: str) -> tuple[int, int, int]:
    """(C, H, W) of the data set's images, from its registry entry (an unknown name is a ConfigError)."""
    return dataset_entry(dataset).in_shape


register_dataset(
    DatasetEntry(
        "mnist", (1, 28, 28), 10, 60_000, 10_000, "MNIST", IDX, mean=(0.1307,), std=(0.3081,), torchvision="MNIST"
    )
)
register_dataset(
    DatasetEntry(
        "fashion-mnist",
        (1, 28, 28),
        10,
        60_000,
        10_000,
        "FashionMNIST",
        IDX,
        mean=(0.2860,),
        std=(0.3530,),
        torchvision="FashionMNIST",
        debian_package="dataset-fashion-mnist",
    )
)
register_dataset(
    DatasetEntry("cifar10", (3, 32, 32), 10, 50_000, 10_000, "cifar-10-batches-py", CIFAR_PICKLE, torchvision="CIFAR10")
)
