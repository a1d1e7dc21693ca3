"""Shared fixtures: tiny data sets in torchvision's on-disk formats, one Ray cluster per session, a tiny sweep.

The Ray cluster is a real local two-node cluster (`ray.cluster_utils.Cluster`: a head with 0 CPUs and two
worker nodes with 1 CPU and 4 logical GPUs each), started once per session. The pytest process does not stay
connected to it: sweeps connect with `--address`, like a user's driver would.

Ray's token authentication is on for the whole session, as for users (docs/security.md). The session has a
token of its own in a private temporary file (`TEST_TOKEN_PATH`, 0600), named by `RAY_AUTH_TOKEN_PATH`: the
test cluster, every sweep the tests start (embedded or `--address`) and the pytest process use it, and no
test reads, writes or deletes the user's `~/.ray/auth_token`.
"""

from __future__ import annotations

import atexit
import gzip
import os
import pickle
import shutil
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ["RAY_AUTH_MODE"] = "token"  # forced: the suite checks the secure set-up, whatever the caller's shell says
os.environ.pop("RAY_AUTH_TOKEN", None)  # (it would win over the session's token file)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

ROOT = Path(__file__).resolve().parents[1]

from lth_ray.distributed.security import create_private_token  # noqa: E402 (imports no ray)

_TOKEN_DIR = tempfile.mkdtemp(prefix="lth_ray-test-token-")  # 0700
atexit.register(shutil.rmtree, _TOKEN_DIR, ignore_errors=True)
TEST_TOKEN_PATH = Path(_TOKEN_DIR) / "auth_token"
create_private_token(TEST_TOKEN_PATH)
os.environ["RAY_AUTH_TOKEN_PATH"] = str(TEST_TOKEN_PATH)

PYTHON = sys.executable
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

# The test tiers (pyproject's markers): a test that needs Ray is marked `ray`, by hand or, when it uses one of
# these fixtures (directly or through another fixture), here; `make test-fast` deselects them.
RAY_FIXTURES = frozenset({"ray_cluster", "tiny_experiment", "pai_experiment"})
NO_RAY = Path(__file__).resolve().parent / "no_ray"  # its sitecustomize.py refuses Ray in a test's subprocesses

from no_ray.sitecustomize import ENV as FORBID_RAY_ENV  # noqa: E402 (imports nothing heavy)
from no_ray.sitecustomize import allow, forbid  # noqa: E402

_VIOLATIONS_DIR = tempfile.mkdtemp(prefix="lth_ray-test-no-ray-")
atexit.register(shutil.rmtree, _VIOLATIONS_DIR, ignore_errors=True)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config, items):
    for item in items:
        if RAY_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.ray)


@pytest.fixture
def one_thread():
    """Torch on one thread: tiny nets gain nothing from more, and on a busy 2-core machine a second thread's
    spin-waits (the grouped convolutions' OpenMP threads among them) cost seconds, once tenfold."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def no_ray_unless_marked(request, monkeypatch):
    """A test not marked `ray` that starts or joins a Ray cluster, in this process or in a subprocess (a sweep,
    `make demo`, `ray start`), fails: the fast tier must stay Ray-free, and a missing marker is found in any run."""
    if request.node.get_closest_marker("ray"):
        yield
        return
    test = request.node.nodeid
    log = Path(_VIOLATIONS_DIR) / f"{abs(hash(test))}.log"
    log.unlink(missing_ok=True)
    monkeypatch.setenv(FORBID_RAY_ENV, f"{test}\t{log}")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(NO_RAY), os.environ.get("PYTHONPATH")])))
    undo = forbid(test, str(log))
    try:
        yield
    finally:
        allow(undo)
    if log.exists():
        pytest.fail(log.read_text(), pytrace=False)


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    """MNIST's IDX format: zero, zero, dtype 0x08 (uint8), ndim, big-endian dims, raw bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if compress else data)


def make_mnist_like(root: Path, folder: str = "MNIST", n_train: int = 5600, n_test: int = 500, seed: int = 0):
    """A learnable tiny MNIST look-alike in torchvision's layout: class c lights up a band of rows."""
    rng = np.random.default_rng(seed)

    def sample(n):
        y = rng.integers(0, 10, n)
        x = rng.integers(0, 200, (n, 28, 28))
        for i, c in enumerate(y):
            x[i, 2 * c + 4 : 2 * c + 7, 4:24] += 40  # faint enough that nets do not all reach 100%
        return x.clip(0, 255).astype(np.uint8), y.astype(np.uint8)

    raw = root / folder / "raw"
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x, y = sample(n)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", x)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", y)
    return root


def make_cifar10_like(root: Path, per_batch: int = 1200, n_test: int = 500, seed: int = 0):
    """CIFAR-10's pickled python batches (data_batch_1..5, test_batch) with small random images."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", n_test)]:
        labels = rng.integers(0, 10, n)
        data = rng.integers(0, 256, (n, 3 * 32 * 32)).astype(np.uint8)
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels.tolist(), "batch_label": name.encode()}, f)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": names, "num_cases_per_batch": per_batch, "num_vis": 3072}, f)
    return root


def serve_idx_mirror(monkeypatch, dataset_class, served: Path, sizes: dict[str, int], seed: int = 0):
    """torchvision's mirror of an IDX data set on 127.0.0.1: small gzipped IDX files under their real names
    (`sizes`: images per prefix, train / t10k), the class's mirrors and resources (md5s) pointed at them.
    Returns the server; the caller shuts it down."""
    import functools
    import hashlib
    import http.server
    import threading

    rng = np.random.default_rng(seed)
    resources = []
    for prefix, n in sizes.items():
        for kind, a in (("images-idx3", rng.integers(0, 255, (n, 28, 28))), ("labels-idx1", rng.integers(0, 10, n))):
            f = served / f"{prefix}-{kind}-ubyte.gz"
            write_idx(f, a, compress=True)
            resources.append((f.name, hashlib.md5(f.read_bytes()).hexdigest()))
    quiet = type("Quiet", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda *a: None})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(quiet, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(dataset_class, "mirrors", [f"http://127.0.0.1:{server.server_port}/"])
    monkeypatch.setattr(dataset_class, "resources", resources)
    return server


@pytest.fixture(scope="session")
def tiny_mnist(tmp_path_factory) -> Path:
    return make_mnist_like(tmp_path_factory.mktemp("tiny-mnist"))


@pytest.fixture(scope="session")
def tiny_cifar10(tmp_path_factory) -> Path:
    return make_cifar10_like(tmp_path_factory.mktemp("tiny-cifar10"))


@pytest.fixture(scope="session")
def ray_cluster():
    """A local two-node Ray cluster with logical GPUs and token authentication (the session's token, from
    the environment set above: sweeps given `--address` find it there); yields the cluster."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, connect=False, head_node_args={"num_cpus": 0, "include_dashboard": False})
    for _ in range(2):
        cluster.add_node(num_cpus=1, num_gpus=4)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


def sweep_argv(data_root: Path, storage: Path, name: str, *extra: str) -> list[str]:
    """A tiny Lenet sweep: 2 rounds of 200 iterations, evaluated every 50, trained on CPUs (`--device cpu`: the
    session's cluster declares logical GPUs, and a trial assigned a GPU it cannot see fails otherwise)."""
    return [
        "--dataset",
        "mnist",
        "--data-root",
        str(data_root),
        "--rounds",
        "2",
        "--iterations",
        "200",
        "--eval-every",
        "50",
        "--device",
        "cpu",
        "--storage",
        str(storage),
        "--name",
        name,
        *extra,
    ]


@pytest.fixture(scope="session")
def tiny_experiment(tmp_path_factory, tiny_mnist, ray_cluster) -> Path:
    """A finished tiny sweep (2 seeds, ticket + reinit + random-prune, the successive rounds' barrier measured),
    exported: <storage>/<name>."""
    from lth_ray.distributed.sweep import main
    from sweeps.lenet_mnist import DEFAULTS

    storage = tmp_path_factory.mktemp("storage")
    argv = sweep_argv(
        tiny_mnist,
        storage,
        "tiny",
        "--seeds",
        "2",
        "--baselines",
        "reinit,random-prune",
        "--successive",
        "--instability-points",
        "3",
        "--address",
        ray_cluster.address,
    )
    assert main(DEFAULTS, argv) == 0
    return storage / "tiny"


@pytest.fixture(scope="session")
def pai_experiment(tmp_path_factory, tiny_mnist, ray_cluster) -> Path:
    """A finished tiny sweep of one seed: the ticket, GraSP and random pruning, each with its shuffle ablation."""
    from lth_ray.distributed.sweep import main
    from sweeps.lenet_mnist import DEFAULTS

    storage = tmp_path_factory.mktemp("storage-pai")
    argv = sweep_argv(
        tiny_mnist,
        storage,
        "pai",
        "--address",
        ray_cluster.address,
        "--baselines",
        "grasp,random-prune",
        "--ablations",
        "shuffle",
    )
    assert main(DEFAULTS, argv) == 0
    return storage / "pai"


@pytest.fixture(scope="session")
def split(tiny_mnist):
    """The tiny MNIST look-alike as device tensors (read-only: trajectories only gather from it)."""
    from lth_ray.core.data.loading import load_split

    return load_split("mnist", str(tiny_mnist))


@pytest.fixture(scope="session")
def cifar_split(tiny_cifar10):
    """A few CIFAR-like images: enough for a real conv preset to train two steps a round, quickly."""
    from lth_ray.core.data.loading import Split, load_split

    s = load_split("cifar10", str(tiny_cifar10))
    return Split(
        s.x_train[:120],
        s.y_train[:120],
        s.x_val[:60],
        s.y_val[:60],
        s.x_test[:60],
        s.y_test[:60],
        dataset="cifar10",
        source=s.source,
    )


@pytest.fixture
def registries(monkeypatch):
    """The toy model and data set of tests/toy_extension.py registered, as a user's program registers its own; the
    registries are restored afterwards, so other tests see only the built-ins."""
    from toy_extension import TINY, TOY_DIGITS

    import lth_ray.core.data.registry as data_registry
    import lth_ray.core.models.registry as model_registry

    monkeypatch.setattr(model_registry, "MODELS", dict(model_registry.MODELS))
    monkeypatch.setattr(data_registry, "DATASETS", dict(data_registry.DATASETS))
    data_registry.register_dataset(TOY_DIGITS)
    model_registry.register_model(TINY)
