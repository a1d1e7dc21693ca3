"""`make demo` without Debian's Fashion-MNIST: the Makefile's sweep command gains `--download`, and that
command's data check fetches Fashion-MNIST with torchvision's real download code (served from 127.0.0.1, its
md5 checks on) into torchvision's layout under the cache. The sweep itself is not run here (minutes)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, serve_idx_mirror

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def demo_sweep_argv(fmnist: Path) -> list[str]:
    """The options `make demo` passes to `-m sweeps.lenet_mnist` when Debian's package folder is `fmnist`
    (make -n prints the recipe without running anything)."""
    done = subprocess.run(
        ["make", "-n", "demo", f"FMNIST={fmnist}"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    line = next(c for c in done.stdout.replace("\\\n", " ").splitlines() if "-m sweeps.lenet_mnist" in c)
    words = shlex.split(line)
    return words[words.index("sweeps.lenet_mnist") + 1 :]


def test_the_demo_downloads_only_where_debians_package_is_absent(tmp_path):
    present = tmp_path / "fashion-mnist"
    present.mkdir()
    assert "--download" not in demo_sweep_argv(present)
    assert "--download" in demo_sweep_argv(tmp_path / "absent")


def test_the_makefile_and_the_loader_mean_the_same_debian_folder():
    from lth_ray.core.data.loading import DEBIAN_FASHION_MNIST

    text = (ROOT / "Makefile").read_text()
    assert f"FMNIST := {DEBIAN_FASHION_MNIST}\n" in text


@pytest.fixture
def fashion_mirror(tmp_path, monkeypatch):
    """torchvision's Fashion-MNIST mirror on 127.0.0.1: four small gzipped IDX files under their real names, the
    resources' md5s those of the served files. Yields the (train, test) sizes."""
    from torchvision import datasets

    sizes = {"train": 70, "t10k": 30}
    server = serve_idx_mirror(monkeypatch, datasets.FashionMNIST, tmp_path / "served", sizes, seed=1)
    yield sizes
    server.shutdown()


def test_without_debians_package_the_demos_data_check_downloads_fashion_mnist(tmp_path, monkeypatch, fashion_mirror):
    from lth_ray.core.data.loading import load_raw, locate
    from lth_ray.distributed.sweep import build_parser, check_data, spec_from_args
    from sweeps.lenet_mnist import DEFAULTS

    cache = tmp_path / "cache"  # the demo gives no --data-root: downloads go to $LTH_RAY_DATA
    cache.mkdir()
    monkeypatch.setenv("LTH_RAY_DATA", str(cache))
    monkeypatch.setattr("lth_ray.core.data.loading.DEBIAN_FASHION_MNIST", tmp_path / "no-debian")
    argv = demo_sweep_argv(tmp_path / "no-debian")
    argv[argv.index("--storage") + 1] = str(tmp_path / "results")  # the rest is the Makefile's command line
    spec = spec_from_args(build_parser(DEFAULTS).parse_args(argv), DEFAULTS)
    assert spec.download and {t.dataset for t in spec.trajectories} == {"fashion-mnist"}
    check_data(spec)  # what the demo's sweep does first, before Ray starts
    raw = cache / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(
        f"{s}-{k}-ubyte{z}" for s in ("train", "t10k") for k in ("images-idx3", "labels-idx1") for z in ("", ".gz")
    )
    assert sorted(p.name for p in cache.iterdir()) == [".lth_ray-fashion-mnist.lock", "FashionMNIST"]
    assert locate("fashion-mnist") == raw
    (xtr, _), (xte, _), source = load_raw("fashion-mnist", download=True)  # what each trial then reads
    assert source == str(raw) and (len(xtr), len(xte)) == (fashion_mirror["train"], fashion_mirror["t10k"])
    monkeypatch.setattr("lth_ray.core.data.loading._download", lambda *a: pytest.fail("fetched twice"))
    check_data(spec)  # a second demo finds it: nothing is fetched again
    assert not (tmp_path / "results").exists()  # the data check touches no experiment
