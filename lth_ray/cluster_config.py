"""`python -m lth_ray.cluster_config`: an older spelling; the code is in `lth_ray.distributed.cluster_config`."""

import sys

from lth_ray.distributed.cluster_config import *  # noqa: F401,F403
from lth_ray.distributed.cluster_config import main

if __name__ == "__main__":
    sys.exit(main())
