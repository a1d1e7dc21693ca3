"""What a user's own files hold to extend lth_ray: a toy model and a toy data set, one registry entry each."""

import math

import numpy as np
import torch
from conftest import write_idx
from torch import nn

from lth_ray.core.branches import BranchKind
from lth_ray.core.data.formats import IDX
from lth_ray.core.data.registry import DatasetEntry
from lth_ray.core.models.functional import FunctionalStacked
from lth_ray.core.models.registry import ModelEntry


class TinyMLP(nn.Module):
    """What a user's model file holds: a module, its seeded init, its prunable layers."""

    def __init__(self, in_shape, hidden: int, num_classes: int):
        super().__init__()
        self.hidden = nn.Linear(math.prod(in_shape), hidden)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x):
        return self.head(torch.relu(self.hidden(x.flatten(1))))


@torch.no_grad()
def init_tiny(model: TinyMLP, generator: torch.Generator) -> TinyMLP:
    for layer in (model.hidden, model.head):
        layer.weight.normal_(0.0, layer.in_features**-0.5, generator=generator)
        layer.bias.zero_()
    return model


TINY = ModelEntry(
    "tiny-mlp",
    build=lambda config, in_shape, num_classes: TinyMLP(in_shape, 16, num_classes),
    init=init_tiny,
    stacked=FunctionalStacked,
    prunable=lambda model: {"hidden": "fc", "head": "out"},
)
TOY_DIGITS = DatasetEntry(
    "toy-digits",
    in_shape=(1, 8, 8),
    num_classes=4,
    train_size=240,
    test_size=40,
    folder="ToyDigits",
    format=IDX,
    validation_size=40,
)


def make_toy_digits(root):
    """Class c lights up rows 2c and 2c+1 of an 8x8 image: learnable in a few steps."""
    rng = np.random.default_rng(0)
    for prefix, n in (("train", TOY_DIGITS.train_size), ("t10k", TOY_DIGITS.test_size)):
        y = rng.integers(0, 4, n)
        x = rng.integers(0, 120, (n, 8, 8))
        for i, c in enumerate(y):
            x[i, 2 * c : 2 * c + 2] += 120
        write_idx(root / "ToyDigits" / "raw" / f"{prefix}-images-idx3-ubyte", x)
        write_idx(root / "ToyDigits" / "raw" / f"{prefix}-labels-idx1-ubyte", y)
    return root


class BothRandomBaselines(BranchKind):
    """What a user's branch file holds: a kind adding two members per ticket (random pruning and its re-init)."""

    name = "toy-random-pair"
    summary = "random pruning and its re-init ablation"

    def members(self, ticket, of=None):
        return [ticket.replace(method="random-prune"), ticket.replace(method="random-prune", ablation="reinit")]


TOY_BRANCH = BothRandomBaselines()
