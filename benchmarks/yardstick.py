"""The yardstick: a training step as the thesis code and OpenLTH take it, written plainly.

lth_ray's speed is reported as a ratio to this loop, run on the same machine in the same session
(`bench_train_step.py`). It is what a careful user would write without lth_ray: a torchvision data set whose
images are converted and normalised one sample at a time behind a shuffling `DataLoader` (batch 60, the last
partial batch dropped), the thesis' plan nets with Glorot-normal weights, masks held by
`torch.nn.utils.prune` (a forward pre-hook multiplies every weight by its mask), and a plain `torch.optim.Adam`
at 1.2e-3. Nothing here is lth_ray's code.

    python benchmarks/yardstick.py --arch lenet --dataset fashion-mnist --root DIR [--iters 1000] [--threads 2]
    python benchmarks/yardstick.py --arch conv2 --dataset fake-cifar10 [--iters 200]

`--root` holds torchvision's layout (DIR/FashionMNIST/raw/*-ubyte, ...). The `fake-` data sets are
`torchvision.datasets.FakeData` of the real one's shape: PIL images per sample, as CIFAR10 hands them out.
Prints one JSON line: {"arch", "dataset", "iters", "ms_per_iter", "iters_per_s"}.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn
from torch.nn.utils import prune
from torchvision import datasets, transforms

# the thesis' plans: conv tokens (width of a 3x3 conv, or "M" for a 2x2 max-pool), then the hidden fc widths
PLANS = {
    "lenet": ((), (300, 100)),
    "conv2": ((64, 64, "M"), (256, 256)),
    "conv4": ((64, 64, "M", 128, 128, "M"), (256, 256)),
    "conv6": ((64, 64, "M", 128, 128, "M", 256, 256, "M"), (256, 256)),
}
# name -> (torchvision class or None for FakeData, shape, per-channel mean, per-channel std)
DATASETS = {
    "mnist": (datasets.MNIST, (1, 28, 28), (0.1307,), (0.3081,)),
    "fashion-mnist": (datasets.FashionMNIST, (1, 28, 28), (0.2860,), (0.3530,)),
    "cifar10": (datasets.CIFAR10, (3, 32, 32), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "fake-mnist": (None, (1, 28, 28), (0.5,), (0.25,)),
    "fake-cifar10": (None, (3, 32, 32), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
}
BATCH = 60
LEARNING_RATE = 1.2e-3


def plan_net(arch: str, shape: tuple[int, int, int], classes: int = 10) -> nn.Sequential:
    """The plan net, every conv and linear weight behind a `torch.nn.utils.prune` mask of ones."""
    convs, hidden = PLANS[arch]
    channels, side = shape[0], shape[1]
    layers: list[nn.Module] = []
    for token in convs:
        if token == "M":
            layers.append(nn.MaxPool2d(2))
            side //= 2
        else:
            layers += [nn.Conv2d(channels, token, kernel_size=3, padding=1), nn.ReLU()]
            channels = token
    layers.append(nn.Flatten())
    width = channels * side * side
    for units in hidden:
        layers += [nn.Linear(width, units), nn.ReLU()]
        width = units
    layers.append(nn.Linear(width, classes))
    net = nn.Sequential(*layers)
    for layer in net:
        if isinstance(layer, nn.Conv2d | nn.Linear):
            nn.init.xavier_normal_(layer.weight)
            prune.custom_from_mask(layer, "weight", torch.ones_like(layer.weight))
    return net


def training_set(name: str, root: str) -> tuple[torch.utils.data.Dataset, tuple[int, int, int]]:
    """The training images, converted and normalised per sample as they are drawn."""
    source, shape, mean, std = DATASETS[name]
    per_sample = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])
    if source is None:
        return datasets.FakeData(size=50_000, image_size=shape, num_classes=10, transform=per_sample), shape
    return source(root, train=True, download=False, transform=per_sample), shape


def ms_per_iter(arch: str, data: torch.utils.data.Dataset, shape, iters: int, warmup: int, workers: int) -> float:
    """Milliseconds per training step over `iters` steps, after `warmup` untimed ones (epochs roll over)."""
    loader = torch.utils.data.DataLoader(data, batch_size=BATCH, shuffle=True, drop_last=True, num_workers=workers)
    net = plan_net(arch, shape)
    optimizer = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE)
    loss_of = nn.CrossEntropyLoss()
    step, started = 0, 0.0
    while step < warmup + iters:
        for images, labels in loader:
            if step == warmup:
                started = time.perf_counter()
            optimizer.zero_grad()
            loss_of(net(images), labels).backward()
            optimizer.step()
            step += 1
            if step == warmup + iters:
                break
    return (time.perf_counter() - started) / iters * 1e3


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="lenet", choices=sorted(PLANS))
    parser.add_argument("--dataset", default="fashion-mnist", choices=sorted(DATASETS))
    parser.add_argument("--root", default="data", help="torchvision's layout of the data set")
    parser.add_argument("--iters", type=int, default=1000, help="timed steps")
    parser.add_argument("--warmup", type=int, default=50, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    data, shape = training_set(args.dataset, args.root)
    ms = ms_per_iter(args.arch, data, shape, args.iters, args.warmup, args.workers)
    out = {"arch": args.arch, "dataset": args.dataset, "iters": args.iters, "ms_per_iter": round(ms, 4)}
    print(json.dumps({**out, "iters_per_s": round(1e3 / ms, 2)}))


if __name__ == "__main__":
    main()
