"""Kept for compatibility: `lth_ray.config` as in lth_ray 0.1/0.2; new code imports `lth_ray.core.spec.config`."""

from lth_ray.core.spec.config import *  # noqa: F401,F403
