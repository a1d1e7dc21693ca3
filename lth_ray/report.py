"""`python -m lth_ray.report`: the old spelling of `lth-ray report`, kept for old scripts; it warns."""

import sys
import warnings

from lth_ray.results.report import main

if __name__ == "__main__":
    message = "python -m lth_ray.report is deprecated; use: lth-ray report"
    warnings.warn(message, DeprecationWarning, stacklevel=1)
    sys.exit(main())
