"""Kept for compatibility: `lth_ray.trajectory` (and `python -m lth_ray.trajectory`) as in lth_ray 0.1/0.2.

New code imports from `lth_ray.core.engine.trajectory` (the trajectory), `lth_ray.core.store.resume`
(resuming, state files) and `lth_ray.cli.trajectory` (the command line).
"""

import sys

from lth_ray.cli.trajectory import build_parser, config_from_args, main  # noqa: F401
from lth_ray.core.engine.cohort import (
    METRICS,
    STATE_FORMAT,
    STREAM_COPY_DATA,
    STREAM_DATA,
    cohort_state,  # noqa: F401
    cpu_state,
    diverged,
    early_stop_index,
    evaluate,
    initial_weights,
)
from lth_ray.core.engine.trajectory import *  # noqa: F401,F403
from lth_ray.core.store.resume import *  # noqa: F401,F403

if __name__ == "__main__":
    sys.exit(main())
