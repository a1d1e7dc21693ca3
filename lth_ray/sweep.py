"""Kept because Ray Tune's pickled experiment state names `lth_ray.sweep._trial_name` and `_trial_dirname`:
an experiment started under this module name restores (`--resume`). The code is `lth_ray.distributed.sweep`."""

from lth_ray.distributed.sweep import _trial_dirname, _trial_name

__all__ = ["_trial_dirname", "_trial_name"]
