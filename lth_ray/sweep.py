"""Kept for compatibility: `lth_ray.sweep` as in lth_ray 0.1/0.2; new code imports `lth_ray.distributed.sweep`.

Tune's pickled experiment state of a 0.2 sweep names `lth_ray.sweep._trial_name` and `_trial_dirname`
(a star import leaves private names out), so they are named here for `--resume` of such sweeps.
"""

from lth_ray.distributed.sweep import *  # noqa: F401,F403
from lth_ray.distributed.sweep import _trial_dirname, _trial_name  # noqa: F401
