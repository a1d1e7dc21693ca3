"""The sweep's command line -> `SweepSpec`: resource numbers refused in one line before anything starts. No Ray."""

from __future__ import annotations

import pytest

from lth_ray.core.spec.config import ConfigError
from lth_ray.distributed.sweep_spec import build_parser, spec_from_args
from sweeps.lenet_mnist import DEFAULTS


def spec(tmp_path, *extra: str):
    argv = ["--dry-run", "--storage", str(tmp_path), "--name", "s", *extra]
    return spec_from_args(build_parser(DEFAULTS).parse_args(argv), DEFAULTS)


def test_a_fractional_num_gpus_is_refused_for_the_ray_started_here(tmp_path):
    """`ray.init(num_gpus=1.5)` raises deep inside Ray ("Resource quantities must all be whole numbers"): the
    embedded Ray gets whole GPUs, and a fraction is refused up front, in one line naming the value."""
    with pytest.raises(ConfigError, match=r"^--num-gpus=1\.5 is not allowed without --address: .* whole number"):
        spec(tmp_path, "--num-gpus", "1.5")
    assert spec(tmp_path, "--num-gpus", "2").num_gpus == 2  # a whole number, typed as a float, is fine


def test_a_fractional_num_gpus_stays_allowed_on_a_cluster(tmp_path):
    """With --address the sweep only plans for the GPUs (Ray is not started with them): any share may be planned."""
    assert spec(tmp_path, "--num-gpus", "1.5", "--address", "127.0.0.1:6379").num_gpus == 1.5
