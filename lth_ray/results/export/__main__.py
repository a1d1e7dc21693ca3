"""`python -m lth_ray.results.export`: the export's command line (`command.main`)."""

import sys

from lth_ray.results.export.command import main

if __name__ == "__main__":
    sys.exit(main())
