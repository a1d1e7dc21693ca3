"""Kept for compatibility: `lth_ray.export` (and `python -m lth_ray.export`) as in lth_ray 0.1/0.2; new code imports "
"`lth_ray.results.export`."""

import sys

from lth_ray.results.export import *  # noqa: F401,F403
from lth_ray.results.export import main

if __name__ == "__main__":
    sys.exit(main())
