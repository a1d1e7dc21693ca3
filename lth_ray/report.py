"""`python -m lth_ray.report`: an older spelling of a documented command; the code is in `lth_ray.results.report`."""

import sys

from lth_ray.results.report import *  # noqa: F401,F403
from lth_ray.results.report import main

if __name__ == "__main__":
    sys.exit(main())
