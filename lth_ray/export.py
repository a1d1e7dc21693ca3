"""`python -m lth_ray.export`: an older spelling of a documented command; the code is in `lth_ray.results.export`."""

import sys

from lth_ray.results.export import *  # noqa: F401,F403
from lth_ray.results.export import main

if __name__ == "__main__":
    sys.exit(main())
