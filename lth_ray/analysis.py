"""Kept for compatibility: `lth_ray.analysis` as in lth_ray 0.1/0.2; new code imports `lth_ray.results.analysis`."""

from lth_ray.results.analysis import *  # noqa: F401,F403
