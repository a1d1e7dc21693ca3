"""Conv-2/4/6 on CIFAR-10: `python -m sweeps.conv_cifar10 --num-gpus 8 [options]` (see --help)."""
import sys

from lth_ray.sweep import SweepDefaults, main

DEFAULTS = SweepDefaults(prog="sweeps.conv_cifar10", archs=("conv2", "conv4", "conv6"), datasets=("cifar10",),
                         gpus_per_trial=0.25)

if __name__ == "__main__":
    sys.exit(main(DEFAULTS))
