"""Conv-2/4/6 on CIFAR-10: `python -m sweeps.conv_cifar10 --num-gpus 8 [options]` (see --help).

The default grid is the thesis' experiment: Conv-2/4/6 x 3 seeds x (the ticket, random re-init, random pruning),
20 rounds; `--seeds 1 --baselines none` is a quick run.
"""

import sys

from lth_ray.distributed.sweep import main
from lth_ray.distributed.sweep_spec import SweepDefaults

DEFAULTS = SweepDefaults(
    prog="sweeps.conv_cifar10",
    archs=("conv2", "conv4", "conv6"),
    datasets=("cifar10",),
    seeds="3",
    baselines="reinit,random-prune",
)

if __name__ == "__main__":
    sys.exit(main(DEFAULTS))
