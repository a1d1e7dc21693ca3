"""`python -m lth_ray.cluster_config`: the old spelling of `lth-ray check-cluster`, kept for old scripts; it warns."""

import sys
import warnings

from lth_ray.distributed.cluster_config import main

if __name__ == "__main__":
    message = "python -m lth_ray.cluster_config is deprecated; use: lth-ray check-cluster"
    warnings.warn(message, DeprecationWarning, stacklevel=1)
    sys.exit(main())
