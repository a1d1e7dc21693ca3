"""Config validation at the edge: one clear line naming the bad value, non-zero exit, no traceback."""

import subprocess
import sys

import pytest

from lth_ray.core.options.resolve import from_preset
from lth_ray.core.spec.config import ConfigError, TrajectoryConfig


def test_presets_carry_the_paper_recipes():
    c = from_preset("conv6")
    assert (c.iterations, c.learning_rate, c.prune_rate_conv, c.prune_rate_fc, c.batch_size) == (
        30_000,
        3e-4,
        0.15,
        0.2,
        60,
    )
    assert c.prune_rate_out == 0.1 and c.dataset == "cifar10"
    lenet = from_preset("lenet")
    assert (lenet.iterations, lenet.learning_rate, lenet.plan_fc) == (50_000, 1.2e-3, (300, 100))


def test_config_round_trips_through_a_plain_dict():
    c = from_preset("conv4", seed=3, rounds=5)
    assert TrajectoryConfig.from_dict(c.to_dict()) == c


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (dict(prune_rate_fc=1.0), "prune_rate_fc=1.0"),
        (dict(prune_rate_conv=-0.1), "prune_rate_conv=-0.1"),
        (dict(iterations=0), "iterations=0"),
        (dict(eval_every=-5), "eval_every=-5"),
        (dict(rewind_iteration=50_000), "rewind_iteration=50000"),
        (dict(dataset="imagenet"), "dataset='imagenet'"),
        (dict(method="magic"), "method='magic'"),
        (dict(activation="gelu"), "activation='gelu'"),
    ],
)
def test_bad_settings_name_the_value(overrides, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(")):
        from_preset("lenet", **overrides)


def test_unknown_preset():
    with pytest.raises(ConfigError, match="preset 'conv8' is unknown; allowed: lenet, conv2, conv4, conv6"):
        from_preset("conv8")


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--preset", "conv9"], "'conv9' is unknown; allowed: lenet, conv2, conv4, conv6"),  # --preset: old --arch
        (["--arch", "conv9"], "--arch='conv9' is unknown; allowed: lenet, conv2, conv4, conv6"),
        (["--method", "magic"], "--method='magic' is unknown"),
        (["--prune-rate-fc", "1.5"], "prune_rate_fc=1.5"),
        (["--iterations", "0"], "iterations=0"),
        (["--eval-every", "0"], "eval_every=0"),
        (["--iterations", "100", "--rewind-iteration", "200"], "rewind_iteration=200"),
        (["--dataset", "svhn"], "dataset='svhn'"),
    ],
)
def test_trajectory_cli_bad_input_is_one_line(args, fragment):
    out = subprocess.run([sys.executable, "-m", "lth_ray.cli", "trajectory", *args], capture_output=True, text=True)
    assert out.returncode == 2
    assert fragment in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
