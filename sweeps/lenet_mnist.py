"""Lenet-300-100 on MNIST (or Fashion-MNIST): `python -m sweeps.lenet_mnist [options]` (see --help).

The default is one seed of the ticket alone, a quick run; the paper's experiment adds
`--seeds 5 --baselines reinit,random-prune`.
"""

import sys

from lth_ray.distributed.sweep import main
from lth_ray.distributed.sweep_spec import SweepDefaults

DEFAULTS = SweepDefaults(
    prog="sweeps.lenet_mnist", archs=("lenet",), datasets=("mnist", "fashion-mnist"), seeds="1", baselines="none"
)

if __name__ == "__main__":
    sys.exit(main(DEFAULTS))
