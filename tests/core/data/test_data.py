"""Data: torchvision's on-disk formats read in place, the seeded validation split, clear errors."""

import numpy as np
import pytest
import torch
from conftest import FASHION_MNIST, make_mnist_like, write_idx
from torchvision import datasets
from torchvision.datasets import cifar

from lth_ray.core.data.loading import DataError, epoch_batches, load_raw, load_split, validation_split


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


# ---------------------------------------------------------------- fetched once per node: the lock, the checks

import json  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from conftest import ROOT, serve_idx_mirror  # noqa: E402

from lth_ray.core.data.loading import fetch_dataset, locate  # noqa: E402

# One process of the race: wait at a barrier, then load MNIST with --download through a fake download that
# counts its calls and writes each IDX file in two halves with a pause between (a reader without the lock
# would see truncated files); print what it loaded.
_RACER = r"""
import hashlib, json, os, sys, time
from pathlib import Path
import numpy as np
from lth_ray.core.data.loading import load_raw

root, calls, barrier, n = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])

def idx(a):
    return bytes([0, 0, 8, a.ndim]) + b"".join(d.to_bytes(4, "big") for d in a.shape) + a.astype(np.uint8).tobytes()

def slow_fetch(dataset, folder):
    with open(calls, "a") as f:
        f.write(f"{os.getpid()}\n")
    raw = folder / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, count in (("train", 60), ("t10k", 20)):
        images, labels = rng.integers(0, 256, (count, 28, 28)), rng.integers(0, 10, count)
        for name, a in (("images-idx3", images), ("labels-idx1", labels)):
            data = idx(a)
            with open(raw / f"{prefix}-{name}-ubyte", "wb") as f:
                f.write(data[: len(data) // 2]); f.flush(); time.sleep(0.1); f.write(data[len(data) // 2:])

(barrier / str(os.getpid())).touch()
deadline = time.time() + 60
while len(list(barrier.iterdir())) < n and time.time() < deadline:
    time.sleep(0.01)
(xtr, ytr), (xte, yte), source = load_raw("mnist", str(root), download=True, fetch=slow_fetch)
digest = hashlib.sha256(b"".join(np.ascontiguousarray(v).tobytes() for v in (xtr, ytr, xte, yte))).hexdigest()
print(json.dumps({"source": source, "digest": digest, "shapes": [list(xtr.shape), list(xte.shape)]}))
"""


def _quick_fetch(dataset, folder):
    make_mnist_like(folder, n_train=60, n_test=20)


def _env_without_data(tmp_path) -> dict:
    empty = tmp_path / "cache"
    empty.mkdir(exist_ok=True)
    return {**os.environ, "LTH_RAY_DATA": str(empty), "PYTHONPATH": str(ROOT)}


def test_concurrent_downloads_into_one_folder_fetch_once_and_agree(tmp_path):
    root, calls, barrier = tmp_path / "data", tmp_path / "calls", tmp_path / "barrier"
    barrier.mkdir()
    n = 4
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, str(root), str(calls), str(barrier), str(n)],
            cwd=ROOT,
            env=_env_without_data(tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert len(calls.read_text().splitlines()) == 1  # one download; the others waited on the lock, then found it
    raw = root / "MNIST" / "raw"
    assert {r["source"] for r in results} == {str(raw)}
    assert len({r["digest"] for r in results}) == 1 and results[0]["shapes"] == [[60, 1, 28, 28], [20, 1, 28, 28]]
    assert sorted(p.name for p in raw.iterdir()) == sorted(
        f"{s}-{k}-ubyte" for s in ("train", "t10k") for k in ("images-idx3", "labels-idx1")
    )
    assert sorted(p.name for p in root.iterdir()) == [".lth_ray-mnist.lock", "MNIST"]  # no staging folder left
    assert locate("mnist", str(root)) == raw


def test_a_failed_or_partial_download_leaves_nothing_taken_for_the_data(tmp_path, monkeypatch):
    monkeypatch.setenv("LTH_RAY_DATA", str(tmp_path / "cache"))
    root = tmp_path / "data"

    def dies_midway(dataset, folder):
        write_idx(folder / "MNIST" / "raw" / "train-images-idx3-ubyte", np.zeros((60, 28, 28)))
        raise ConnectionError("network is unreachable")

    def truncates(dataset, folder):  # returns as if all went well
        _quick_fetch(dataset, folder)
        f = folder / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
        f.write_bytes(f.read_bytes()[:500])

    with pytest.raises(DataError, match="download failed: ConnectionError: network is unreachable"):
        load_raw("mnist", str(root), download=True, fetch=dies_midway)
    with pytest.raises(DataError, match="download incomplete: .*t10k-images-idx3-ubyte is truncated"):
        load_raw("mnist", str(root), download=True, fetch=truncates)
    assert sorted(p.name for p in root.iterdir()) == [".lth_ray-mnist.lock"]  # staging folders removed
    assert locate("mnist", str(root)) is None
    with pytest.raises(DataError, match="'mnist' not found on node"):
        load_raw("mnist", str(root))
    # the lock was released: the next attempt fetches and installs a readable copy
    (xtr, _), _, source = load_raw("mnist", str(root), download=True, fetch=_quick_fetch)
    assert source == str(root / "MNIST" / "raw") and xtr.shape == (60, 1, 28, 28)


def test_a_damaged_copy_is_named_without_download_and_replaced_with_it(tmp_path, monkeypatch):
    monkeypatch.setenv("LTH_RAY_DATA", str(tmp_path / "cache"))
    make_mnist_like(tmp_path, n_train=60, n_test=20)
    f = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:1000])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte is truncated"):
        locate("mnist", str(tmp_path))
    assert locate("mnist", str(tmp_path), strict=False) is None
    _, (xte, _), _ = load_raw("mnist", str(tmp_path), download=True, fetch=_quick_fetch)
    assert xte.shape == (20, 1, 28, 28) and locate("mnist", str(tmp_path)) == f.parent
    assert fetch_dataset("mnist", str(tmp_path), fetch=lambda *a: pytest.fail("fetched twice")) == f.parent


def test_the_cheap_check_accepts_what_the_readers_read(tmp_path, tiny_mnist, tiny_cifar10):
    assert locate("mnist", str(tiny_mnist)) == tiny_mnist / "MNIST" / "raw"
    assert locate("cifar10", str(tiny_cifar10)) == tiny_cifar10 / "cifar-10-batches-py"
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 30), ("t10k", 10)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 28, 28)), compress=True)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n), compress=True)
    assert locate("fashion-mnist", str(tmp_path)) == tmp_path
    batch = tiny_cifar10 / "cifar-10-batches-py" / "test_batch"
    damaged = tmp_path / "c" / "cifar-10-batches-py"
    damaged.mkdir(parents=True)
    for f in batch.parent.iterdir():
        (damaged / f.name).write_bytes(f.read_bytes()[: -10 if f.name == "test_batch" else None])
    with pytest.raises(DataError, match="test_batch is truncated"):
        locate("cifar10", str(tmp_path / "c"))


def test_missing_data_message_names_the_node_the_places_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("LTH_RAY_DATA", str(tmp_path / "cache"))
    monkeypatch.setattr("lth_ray.core.data.loading.DEBIAN_FASHION_MNIST", tmp_path / "no-debian")
    with pytest.raises(DataError) as err:
        load_raw("fashion-mnist", str(tmp_path / "nowhere"))
    text = str(err.value)
    assert "\n" not in text and f"not found on node {socket.gethostname()} " in text
    for place in (tmp_path / "nowhere" / "FashionMNIST" / "raw", tmp_path / "cache", tmp_path / "no-debian"):
        assert str(place) in text
    assert "--download" in text and "--data-root" in text and "dataset-fashion-mnist" in text
    assert not (tmp_path / "nowhere").exists() and not (tmp_path / "cache").exists()  # a look creates nothing


def test_a_reader_without_download_waits_for_a_running_fetch(tmp_path, monkeypatch):
    import fcntl
    import threading

    monkeypatch.setenv("LTH_RAY_DATA", str(tmp_path / "cache"))
    root = tmp_path / "data"
    root.mkdir()
    fd = os.open(root / ".lth_ray-mnist.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a "fetch" in progress

    def finish():
        time.sleep(0.3)
        make_mnist_like(root, n_train=60, n_test=20)
        os.close(fd)

    threading.Thread(target=finish).start()
    (xtr, _), _, _ = load_raw("mnist", str(root))
    assert xtr.shape == (60, 1, 28, 28)


def _sweep_spec(tmp_path, download):
    from lth_ray.core.options.resolve import from_preset
    from lth_ray.distributed.sweep import SweepSpec

    t = from_preset("lenet", dataset="mnist", data_root=str(tmp_path / "data"), rounds=1, iterations=10, eval_every=5)
    return SweepSpec(
        name="x", storage=str(tmp_path / "storage"), trajectories=(t, t.replace(seed=1)), download=download
    )


def test_the_driver_fetches_once_with_download_and_refuses_without(tmp_path, monkeypatch):
    from lth_ray.core.spec.config import ConfigError
    from lth_ray.distributed.sweep import check_data

    monkeypatch.setenv("LTH_RAY_DATA", str(tmp_path / "cache"))
    with pytest.raises(ConfigError, match="'mnist' not found on node"):
        check_data(_sweep_spec(tmp_path, download=False))
    calls = []
    monkeypatch.setattr(
        "lth_ray.core.data.loading._download", lambda d, folder: (calls.append(d), _quick_fetch(d, folder))
    )
    check_data(_sweep_spec(tmp_path, download=True))
    check_data(_sweep_spec(tmp_path, download=False))  # now found
    assert calls == ["mnist"] and locate("mnist", str(tmp_path / "data")) == tmp_path / "data" / "MNIST" / "raw"


def test_a_sweep_without_its_data_fails_before_launching_anything(tmp_path):
    storage, empty = tmp_path / "storage", tmp_path / "empty"
    empty.mkdir()
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "sweeps.lenet_mnist",
            "--data-root",
            str(empty),
            "--storage",
            str(storage),
            "--name",
            "x",
        ],
        cwd=ROOT,
        env=_env_without_data(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "'mnist' not found on node" in errors[0] and str(empty) in errors[0]
    assert not (storage / "x").exists() and r.stdout == ""


def test_the_default_fetch_is_torchvisions_real_download(tmp_path, monkeypatch):
    """torchvision's own download code (served from 127.0.0.1, its md5 checks on) goes through the staging folder
    and lands in its usual layout."""
    monkeypatch.setenv("LTH_RAY_DATA", str(tmp_path / "cache"))
    server = serve_idx_mirror(monkeypatch, datasets.MNIST, tmp_path / "served", {"train": 60, "t10k": 20})
    try:
        (xtr, _), (xte, _), source = load_raw("mnist", str(tmp_path / "data"), download=True)
    finally:
        server.shutdown()
    assert source == str(tmp_path / "data" / "MNIST" / "raw") and xtr.shape == (60, 1, 28, 28)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [".lth_ray-mnist.lock", "MNIST"]


def test_a_registered_entry_drives_the_search_its_debian_package_and_the_download(tmp_path, monkeypatch):
    """A data set's folder, format and Debian package come from its registry entry, nowhere else."""
    import lth_ray.core.data.registry as registry
    from lth_ray.core.data.formats import IDX

    monkeypatch.setattr(registry, "DATASETS", dict(registry.DATASETS))
    monkeypatch.setenv("LTH_RAY_DATA", str(tmp_path / "cache"))
    registry.register_dataset(
        registry.DatasetEntry(
            "toy", (1, 28, 28), 10, 60, 20, "Toy", IDX, validation_size=10, debian_package="dataset-toy"
        )
    )
    with pytest.raises(DataError) as err:
        load_raw("toy", str(tmp_path / "nowhere"))
    text = str(err.value)
    assert str(tmp_path / "nowhere" / "Toy" / "raw") in text and "/usr/share/datasets/toy" in text
    assert "install Debian's package dataset-toy" in text
    with pytest.raises(DataError, match="download failed: DataError: dataset 'toy' names no torchvision class"):
        load_raw("toy", str(tmp_path / "data"), download=True)
    (xtr, _), _, source = load_raw(
        "toy",
        str(tmp_path / "data"),
        download=True,
        fetch=lambda d, folder: make_mnist_like(folder, "Toy", n_train=60, n_test=20),
    )
    assert source == str(tmp_path / "data" / "Toy" / "raw") and xtr.shape == (60, 1, 28, 28)
    assert len(load_split("toy", str(tmp_path / "data")).x_val) == 10  # the entry's validation size
