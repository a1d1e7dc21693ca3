"""Kept because Ray Tune's pickled experiment state names `lth_ray.trainable.run_trial`: an experiment started
under this module name restores. The code is `lth_ray.distributed.trainable`."""

from lth_ray.distributed.trainable import run_trial

__all__ = ["run_trial"]
