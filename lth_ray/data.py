"""Kept for compatibility: `lth_ray.data` as in lth_ray 0.1/0.2; new code imports `lth_ray.core.data.loading`."""

from lth_ray.core.data.loading import *  # noqa: F401,F403
