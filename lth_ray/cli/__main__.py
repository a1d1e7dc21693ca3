"""`python -m lth_ray.cli <command>`: the `lth-ray` console script without installing it."""

import sys

from lth_ray.cli import main

sys.exit(main())
