"""Frankle et al. 2020's grid (linear mode connectivity): `python -m sweeps.frankle2020 --num-gpus 8 [options]`.

ResNet-20 and VGG-16 with OpenLTH's recipes (presets `resnet20`, `vgg16`: SGD 0.1, momentum 0.9, weight decay
1e-4, batch 128, x0.1 at 80 and 120 of 160 epochs, flips and pad-crops, global pruning of 20% per round, VGG's
output layer dense), IMP rewound to k = 0, 100, 500 and 2,000 iterations, and every ticket's instability in every
round: a second copy on another data order and the error barrier on the linear path between the two (always on
here: it is what the paper measures; `--instability-rounds` picks rounds). Random re-initialization and random
pruning ride with each ticket, as the paper's controls (neither becomes stable or matching). 20 rounds reach
1.2% density, past both nets' sparsest matching tickets (ResNet-20 16.8%, VGG-16 1.5%).

One difference from the paper: an epoch here is the 45,000 training images left after the validation split, so
160 epochs are 56,160 iterations (the paper: 63K on all 50,000); `--iterations 63000it --milestones 32000,48000`
gives the paper's lengths. `--dataset fashion-mnist` and fewer `--iterations` make a small rehearsal.
"""

import sys

from lth_ray.distributed.sweep import main
from lth_ray.distributed.sweep_spec import SweepDefaults

K = "0,100,500,2000"  # the rewind points; instability becomes low for ResNet-20 by 2,000, VGG-16 by 1,000
DEFAULTS = SweepDefaults(
    prog="sweeps.frankle2020",
    archs=("resnet20", "vgg16"),
    datasets=("cifar10", "fashion-mnist"),
    seeds="3",
    baselines="reinit,random-prune",
    recipe=(("rewind_iteration", K), ("instability", True)),
)

if __name__ == "__main__":
    sys.exit(main(DEFAULTS))
