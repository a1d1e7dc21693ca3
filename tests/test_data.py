"""Data: torchvision's on-disk formats read in place, the seeded validation split, clear errors."""

import numpy as np
import pytest
import torch
from torchvision import datasets
from torchvision.datasets import cifar

from conftest import FASHION_MNIST, make_mnist_like, write_idx
from lth_ray.data import DataError, epoch_batches, load_raw, load_split, validation_split


def test_tiny_files_are_what_torchvision_itself_reads(tiny_mnist, tiny_cifar10, monkeypatch):
    tv = datasets.MNIST(str(tiny_mnist), train=True, download=False)
    (x, y), _, _ = load_raw("mnist", str(tiny_mnist))
    assert torch.equal(torch.from_numpy(x[:, 0]), tv.data) and torch.equal(torch.from_numpy(y), tv.targets)
    monkeypatch.setattr(cifar, "check_integrity", lambda *a, **k: True)  # its md5s are those of the real files
    tc = datasets.CIFAR10(str(tiny_cifar10), train=False, download=False)
    _, (xc, yc), _ = load_raw("cifar10", str(tiny_cifar10))
    assert np.array_equal(xc.transpose(0, 2, 3, 1), tc.data) and yc.tolist() == tc.targets


def test_mnist_split_shapes_normalisation_and_held_out_validation(tiny_mnist):
    s = load_split("mnist", str(tiny_mnist))
    assert s.x_train.shape == (600, 1, 28, 28) and s.x_val.shape == (5000, 1, 28, 28)
    assert s.x_test.shape == (500, 1, 28, 28) and s.x_train.dtype == torch.float32
    assert s.y_train.dtype == torch.int64
    (raw, _), _, _ = load_raw("mnist", str(tiny_mnist))
    assert torch.allclose(s.x_val.min(), torch.tensor((0 - 0.1307) / 0.3081))
    _, val_idx = validation_split(len(raw))
    expected = (torch.from_numpy(raw[val_idx]).float() / 255 - 0.1307) / 0.3081
    assert torch.allclose(s.x_val, expected)


def test_validation_split_is_seeded_disjoint_and_complete():
    a_train, a_val = validation_split(60_000)
    b_train, b_val = validation_split(60_000)
    assert np.array_equal(a_val, b_val) and len(a_val) == 5000 and len(a_train) == 55_000
    assert len(np.intersect1d(a_train, a_val)) == 0 and len(np.union1d(a_train, a_val)) == 60_000


def test_cifar10_normalisation_comes_from_the_training_images_only(tiny_cifar10):
    s = load_split("cifar10", str(tiny_cifar10))
    assert s.x_train.shape == (1000, 3, 32, 32) and s.x_test.shape == (500, 3, 32, 32)
    # statistics of the images left after the validation split: those are exactly standardised ...
    assert torch.allclose(s.x_train.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(s.x_train.std(dim=(0, 2, 3), correction=0), torch.ones(3), atol=1e-4)
    # ... while training + validation together are not (the held-out images did not leak into the statistics)
    full = torch.cat([s.x_train, s.x_val])
    assert not torch.allclose(full.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)


def test_gzipped_idx_files_in_a_flat_folder(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 5100), ("t10k", 50)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 28, 28)), compress=True)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n), compress=True)
    s = load_split("fashion-mnist", str(tmp_path))
    assert len(s.x_train) == 100 and len(s.x_test) == 50


def test_missing_data_set_names_it_and_the_places_searched(tmp_path, monkeypatch):
    monkeypatch.setenv("LTH_RAY_DATA", str(tmp_path / "cache"))
    with pytest.raises(DataError) as err:
        load_raw("cifar10", str(tmp_path / "nowhere"))
    text = str(err.value)
    assert "'cifar10' not found" in text and str(tmp_path / "nowhere") in text and "--data-root" in text
    assert "\n" not in text


def test_truncated_idx_file_is_a_clear_error(tmp_path):
    make_mnist_like(tmp_path)
    f = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:1000])
    with pytest.raises(DataError, match="truncated"):
        load_raw("mnist", str(tmp_path))


def test_epoch_batches_are_a_seeded_permutation():
    a = epoch_batches(130, 60, torch.Generator().manual_seed(5), "cpu")
    b = epoch_batches(130, 60, torch.Generator().manual_seed(5), "cpu")
    assert a.shape == (2, 60) and torch.equal(a, b) and len(set(a.flatten().tolist())) == 120


@pytest.mark.skipif(not FASHION_MNIST.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_debian_fashion_mnist_is_found_without_a_data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("LTH_RAY_DATA", str(tmp_path))
    s = load_split("fashion-mnist")
    assert s.source == str(FASHION_MNIST)
    assert (len(s.x_train), len(s.x_val), len(s.x_test)) == (55_000, 5_000, 10_000)
