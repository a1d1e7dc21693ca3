"""Kept for compatibility: `lth_ray.report` (and `python -m lth_ray.report`) as in lth_ray 0.1/0.2; new code imports "
"`lth_ray.results.report`."""

import sys

from lth_ray.results.report import *  # noqa: F401,F403
from lth_ray.results.report import main

if __name__ == "__main__":
    sys.exit(main())
