"""Linear paths between two trained copies of a subnetwork, and their error barrier (instability).

Frankle et al. 2020 ("Linear Mode Connectivity and the Lottery Ticket Hypothesis"): two copies trained from
the same weights with different data orders are *stable* when the error along the straight line between them,
theta(a) = (1 - a) theta_1 + a theta_2, never rises much above the endpoints' mean. Plain PyTorch: no Ray.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from lth_ray.core.engine.evaluation import evaluate
from lth_ray.core.pruning.masks import Masks
from lth_ray.core.spec.streams import STREAM_BN_STATISTICS, generator


def path_weights(
    a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], alpha: float, masks: Masks
) -> dict[str, torch.Tensor]:
    """theta(alpha) = (1 - alpha) a + alpha b for every float tensor (weights, biases, BatchNorm statistics
    alike), integer buffers taken from `a`; masked layers stay exactly zero where pruned, all along the path."""
    out = {}
    for key, x in a.items():
        y = b[key]
        value = torch.lerp(x, y, alpha) if x.is_floating_point() else x.clone()
        layer, _, leaf = key.rpartition(".")
        if leaf == "weight" and layer in masks:
            value = value * masks[layer].to(value.device, value.dtype)
        out[key] = value
    return out


def barrier(values) -> float:
    """The barrier of a path: the maximum minus the mean of the two endpoints (0 for a flat path)."""
    v = np.asarray(values, dtype=np.float64)
    return float(v.max() - (v[0] + v[-1]) / 2)


def evaluate_path(model, a: dict, b: dict, masks: Masks, split, points: int, evaluate, prepare=None) -> dict:
    """Error and loss on the validation and test sets at `points` evenly spaced alphas in [0, 1] (both ends
    included), and the barriers (test set: the paper's instability). `evaluate(model, x, y)` gives the mean
    loss and accuracy of the loaded model; `prepare(model)`, if given, runs on each point's net before it is
    evaluated (re-estimating BatchNorm statistics); the model is left at theta_1's weights."""
    alphas = np.linspace(0.0, 1.0, points).tolist()
    measured: list[torch.Tensor] = []  # each point's (val loss, val acc, test loss, test acc), on the device
    model.eval()
    for alpha in alphas:
        model.load_state_dict(path_weights(a, b, alpha, masks))
        if prepare is not None:
            prepare(model)
        val, test = (evaluate(model, x, y) for x, y in ((split.x_val, split.y_val), (split.x_test, split.y_test)))
        measured.append(torch.stack([*val, *test]))
    model.load_state_dict(a)
    model.train()
    rows = torch.stack(measured).cpu().tolist()  # the path's one host read: the GPU's queue never drains per point
    curves = {
        "val_loss": [r[0] for r in rows],
        "val_error": [1.0 - r[1] for r in rows],
        "test_loss": [r[2] for r in rows],
        "test_error": [1.0 - r[3] for r in rows],
    }
    return {
        "alphas": alphas,
        **curves,
        "error_barrier": barrier(curves["test_error"]),
        "loss_barrier": barrier(curves["test_loss"]),
        "val_error_barrier": barrier(curves["val_error"]),
        "val_loss_barrier": barrier(curves["val_loss"]),
    }


BN_BATCHES = 20  # training batches that re-estimate a path point's BatchNorm statistics (`recompute`)


def statistics_batches(split, seed: int, r: int, batch: int, device) -> list[torch.Tensor]:
    """The training batches whose BatchNorm statistics each path point recomputes (`instability_bn='recompute'`):
    the first BN_BATCHES batches of round r's own seeded order of the training set."""
    order = torch.randperm(len(split.x_train), generator=generator(seed, STREAM_BN_STATISTICS, r))
    return [
        split.x_train[order[a : a + batch].to(device)] for a in range(0, min(len(order), BN_BATCHES * batch), batch)
    ]


@torch.no_grad()
def recompute_batchnorm(model, batches) -> None:
    """The net's own BatchNorm statistics (REPAIR's reset, Jordan et al. 2022): reset, then the exact mean of
    the batches' statistics, in train mode; left in eval mode. Batch i weighs in with momentum 1 / (i + 1), the
    cumulative average torch takes with momentum None, without reading each layer's batch count back from the
    device at every batch."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
    model.train()
    for i, x in enumerate(batches):
        for m in norms:
            m.momentum = 1.0 / (i + 1)
        model(x)
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    model.eval()


def instability_record(
    model, a: dict, b: dict, masks: Masks, split, points: int, chunk: int, precision: str, statistics=None
) -> dict:
    """The instability record of a ticket (weights `a`) and its copy (`b`): the path's errors and its barrier,
    each point evaluated `chunk` examples at a time, and the seconds it took. `statistics`: training batches
    that re-estimate each point's BatchNorm statistics (`--instability-bn recompute`); None interpolates them
    like the weights."""
    began = time.perf_counter()

    def measure(net, x, y):
        return evaluate(net, x, y, chunk=chunk, precision=precision)

    prepare = None if statistics is None else (lambda net: recompute_batchnorm(net, statistics))
    device_masks = {n: m.to(split.x_train.device) for n, m in masks.items()}
    path = evaluate_path(model, a, b, device_masks, split, points, measure, prepare)
    return {**path, "seconds": time.perf_counter() - began}
