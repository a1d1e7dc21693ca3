"""Kept for compatibility: `lth_ray.cohort` as in lth_ray 0.1/0.2; new code imports `lth_ray.core.engine.cohort`."""

from lth_ray.core.engine.cohort import *  # noqa: F401,F403
