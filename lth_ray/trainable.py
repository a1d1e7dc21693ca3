"""Kept under this name on purpose: Ray Tune's pickled experiment state names `lth_ray.trainable.run_trial`,
so experiments started by lth_ray 0.1/0.2 restore. New code imports `lth_ray.distributed.trainable`."""

from lth_ray.distributed.trainable import *  # noqa: F401,F403
from lth_ray.distributed.trainable import run_trial  # noqa: F401
