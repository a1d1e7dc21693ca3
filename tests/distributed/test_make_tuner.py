"""The sweep's Tuner (`sweep.make_tuner`) without a cluster: Tune's `Tuner.restore` is stood in for."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest
from ray import tune

from lth_ray.core.spec.config import ConfigError
from lth_ray.distributed.sweep import make_tuner
from lth_ray.distributed.sweep_spec import build_parser, spec_from_args
from sweeps.lenet_mnist import DEFAULTS


def test_resume_through_ray_client_is_one_clear_line(tmp_path, monkeypatch):
    """Under Ray Client (`--address ray://...`) Tune keeps the restored tuner on the cluster (`_remote_tuner`) and
    has no local one, so this command's callbacks cannot be put in its place: one line, not an AttributeError on
    None."""
    monkeypatch.setattr(tune.Tuner, "restore", lambda *a, **kw: SimpleNamespace(_local_tuner=None))
    argv = ["--dry-run", "--storage", str(tmp_path), "--name", "s", "--address", "ray://head:10001"]
    spec = replace(spec_from_args(build_parser(DEFAULTS).parse_args(argv), DEFAULTS), resume=True)
    with pytest.raises(ConfigError, match=r"^--resume through Ray Client \(--address ray://head:10001\) is not"):
        make_tuner(spec, 0.0, [])


def test_resume_puts_this_commands_callbacks_in_the_restored_tuner(tmp_path, monkeypatch):
    run_config = tune.RunConfig(callbacks=[])
    local = SimpleNamespace(get_run_config=lambda: run_config)
    monkeypatch.setattr(tune.Tuner, "restore", lambda *a, **kw: SimpleNamespace(_local_tuner=local))
    argv = ["--dry-run", "--storage", str(tmp_path), "--name", "s"]
    spec = replace(spec_from_args(build_parser(DEFAULTS).parse_args(argv), DEFAULTS), resume=True)
    make_tuner(spec, 0.0, [])
    assert [type(c).__name__ for c in run_config.callbacks] == ["ProgressCallback"]
