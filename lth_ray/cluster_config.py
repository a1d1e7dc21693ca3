"""Kept for compatibility: `lth_ray.cluster_config` (and `python -m lth_ray.cluster_config`) as in lth_ray 0.1/0.2; "
"new code imports `lth_ray.distributed.cluster_config`."""

import sys

from lth_ray.distributed.cluster_config import *  # noqa: F401,F403
from lth_ray.distributed.cluster_config import main

if __name__ == "__main__":
    sys.exit(main())
