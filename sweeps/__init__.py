"""Runnable sweep modules: `python -m sweeps.lenet_mnist`, `python -m sweeps.conv_cifar10` (the thesis' nets),
`python -m sweeps.deep_cifar10` (ResNets and VGGs: Frankle & Carbin's section 5, OpenLTH's recipes) and
`python -m sweeps.frankle2020` (Frankle et al. 2020's instability grid)."""
