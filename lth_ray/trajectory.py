"""`python -m lth_ray.trajectory`: the old spelling of `lth-ray trajectory`, kept for old scripts; it warns."""

import sys
import warnings

from lth_ray.cli.trajectory import main

if __name__ == "__main__":
    message = "python -m lth_ray.trajectory is deprecated; use: lth-ray trajectory"
    warnings.warn(message, DeprecationWarning, stacklevel=1)
    sys.exit(main())
