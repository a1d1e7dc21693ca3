"""Runnable sweep modules: `python -m sweeps.lenet_mnist`, `python -m sweeps.conv_cifar10`."""
