"""Lenet-300-100 on MNIST (or Fashion-MNIST): `python -m sweeps.lenet_mnist [options]` (see --help)."""
import sys

from lth_ray.sweep import SweepDefaults, main

DEFAULTS = SweepDefaults(prog="sweeps.lenet_mnist", archs=("lenet",), datasets=("mnist", "fashion-mnist"),
                         gpus_per_trial=0.125)

if __name__ == "__main__":
    sys.exit(main(DEFAULTS))
