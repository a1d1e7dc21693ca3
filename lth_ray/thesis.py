"""Kept for compatibility: `lth_ray.thesis` as in lth_ray 0.1/0.2; new code imports `lth_ray.results.thesis`."""

from lth_ray.results.thesis import *  # noqa: F401,F403
