"""The deeper nets on CIFAR-10: `python -m sweeps.deep_cifar10 --num-gpus 8 [options]` (see --help).

The default grid is Frankle & Carbin's section 5: VGG-19 and ResNet-20 (the paper's "Resnet-18") at the paper's
learning rate 0.1 and with warmup (presets vgg19-lth, vgg19-lth-warmup, resnet20-lth, resnet20-lth-warmup: SGD
with momentum 0.9, weight decay 1e-4, flips and pad-crops, global pruning of 20% of the conv weights per round,
the output layer and ResNet-20's 1x1 shortcuts dense), each ticket with its random re-initialization, two seeds
(on 8 GPUs every trial starts at once; VGG-19's seeds set the wall time). Without warmup the paper finds no
winning tickets at rate 0.1; with it, it does. `--arch resnet20,vgg16` runs OpenLTH's defaults instead; any
registered cifar_resnet_* / cifar_vgg_* is allowed.
"""

import sys

from lth_ray.core.options.resolve import registered_models
from lth_ray.core.spec.presets import PLAN_NETS, PRESETS
from lth_ray.distributed.sweep import main
from lth_ray.distributed.sweep_spec import SweepDefaults

OPENLTH_MODELS = tuple(m for m in registered_models() if m.startswith(("cifar_resnet_", "cifar_vgg_")))
LTH_SECTION_5 = "vgg19-lth,vgg19-lth-warmup,resnet20-lth,resnet20-lth-warmup"
DEFAULTS = SweepDefaults(
    prog="sweeps.deep_cifar10",
    archs=(*(p for p in PRESETS if p not in PLAN_NETS), *OPENLTH_MODELS),
    datasets=("cifar10",),
    seeds="2",
    baselines="reinit",
    recipe=(("arch", LTH_SECTION_5),),
)

if __name__ == "__main__":
    sys.exit(main(DEFAULTS))
