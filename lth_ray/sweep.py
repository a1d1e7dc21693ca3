"""Kept for compatibility: `lth_ray.sweep` as in lth_ray 0.1/0.2; new code imports `lth_ray.distributed.sweep`."""
from lth_ray.distributed.sweep import *  # noqa: F401,F403
