"""Kept for compatibility: `lth_ray.rounds` as in lth_ray 0.1/0.2; new code imports `lth_ray.core.store.rounds`."""

from lth_ray.core.store.rounds import *  # noqa: F401,F403
