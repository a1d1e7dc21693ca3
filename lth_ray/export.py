"""`python -m lth_ray.export`: the old spelling of `lth-ray export`, kept for old scripts; it warns."""

import sys
import warnings

from lth_ray.results.export import main

if __name__ == "__main__":
    message = "python -m lth_ray.export is deprecated; use: lth-ray export"
    warnings.warn(message, DeprecationWarning, stacklevel=1)
    sys.exit(main())
