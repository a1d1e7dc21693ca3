"""How many examples evaluation takes at once: sized from a memory budget, not from the split's size.

Evaluating a whole split in one go costs memory in proportion to the examples in flight: a convolution's
input, its output and, on a CPU, its im2col buffer per example, for every member the stacked model evaluates
together. On the CPU, Conv-2 needs about 2.4 MB per 32x32 image in its second convolution alone (64 x 9 x 32 x
32 floats), so chunks of 5000 / members images would peak at 4.9 GB for a cohort of two. cuDNN's implicit-GEMM
convolutions hold no im2col buffer, so a GPU's estimate leaves it out. The chunk is the largest that keeps the
estimate within the budget:

- the default is fixed per device type (`DEFAULT_EVAL_MEMORY_MB` on a CPU, `DEFAULT_GPU_EVAL_MEMORY_MB` on a
  GPU), never the free memory at start: the chunk sets the rounding of the summed losses, so a budget read from
  the free memory would make two runs of one config differ with other processes and with what the allocator
  kept from an earlier trial;
- `--eval-memory MiB` sets it on both CLIs.

The chunk only changes float rounding of the summed losses, never which examples are seen. Evaluation of
the cohort, the instability paths and scoring at initialization all use it. Plain PyTorch, no Ray.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from lth_ray.core.spec.memory import DEFAULT_EVAL_MEMORY_MB, DEFAULT_GPU_EVAL_MEMORY_MB

MAX_CHUNK = 5000  # never more at once than before budgets (the fc nets' numbers stay as they were)


def budget_bytes(device: torch.device, eval_memory_mb: int | None) -> int:
    """The budget in bytes: the user's, else the device type's fixed default."""
    if eval_memory_mb is not None:
        return int(eval_memory_mb) << 20
    return (DEFAULT_GPU_EVAL_MEMORY_MB if device.type == "cuda" else DEFAULT_EVAL_MEMORY_MB) << 20


def example_bytes(template: nn.Module, in_shape, element_size: int, im2col: bool = True) -> tuple[int, int]:
    """(transient, kept) bytes per example of one member's forward pass: `transient` is the largest of the
    conv layers' input + im2col buffer + output, the latter two counted twice (freed layer by layer), `kept`
    what the stacked model holds per member until the logits (the flattened conv output and every fc
    activation). `im2col`: the convolutions build a column buffer (the CPU's kernels; not cuDNN's)."""
    conv = getattr(template, "conv", None)
    if not isinstance(conv, nn.Sequential):
        return _traced_example_bytes(template, in_shape, element_size, im2col)
    channels, side = in_shape[0], in_shape[1]
    transient = 0
    for module in conv:
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            size_in, col = channels * side * side, channels * k * side * side if im2col else 0
            channels = module.out_channels
            # CPU kernels hold the columns and the output twice (a GEMM layout, then NCHW), measured on Conv-2
            transient = max(transient, size_in + 2 * col + 2 * channels * side * side)
        elif isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
            side //= 2
    kept = channels * side * side if transient else math.prod(in_shape)
    kept += sum(m.out_features for m in template.modules() if isinstance(m, nn.Linear))
    return transient * element_size, kept * element_size


def _traced_example_bytes(template: nn.Module, in_shape, element_size: int, im2col: bool) -> tuple[int, int]:
    """The same estimate for any registered net (a ResNet's convolutions are not one sequence): every
    convolution's input and output sizes from a forward pass on the 'meta' device (no memory, no compute);
    `kept` the two largest activations (a residual block holds its input beside its output) and the logits."""
    sizes: list[tuple[int, int, int]] = []

    def record(module, inputs, output):
        k = module.kernel_size[0] * module.kernel_size[1] if im2col else 0
        sizes.append((inputs[0][0].numel(), inputs[0][0].numel() * k, output[0].numel()))  # in, im2col, out

    hooks = [m.register_forward_hook(record) for m in template.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            on_meta = next(template.parameters()).device.type == "meta"
            model = template if on_meta else copy.deepcopy(template).to("meta")  # never the caller's weights
            model(torch.empty((1, *in_shape), device="meta"))
    finally:
        for h in hooks:
            h.remove()
    transient = max((i + 2 * col + 2 * o for i, col, o in sizes), default=0)
    largest = sorted((o for _, _, o in sizes), reverse=True)[:2]
    kept = sum(largest) if sizes else math.prod(in_shape)
    kept += sum(m.out_features for m in template.modules() if isinstance(m, nn.Linear))
    return transient * element_size, kept * element_size


def eval_chunk(template: nn.Module, in_shape, members: int, element_size: int, budget: int, grouped: bool) -> int:
    """Examples per evaluation chunk for `members` stacked members within `budget` bytes. `grouped`: the
    members' convolutions run at once, as cuDNN kernels without im2col buffers (CUDA); otherwise one member at a
    time (CPU)."""
    transient, kept = example_bytes(template, in_shape, element_size, im2col=not grouped)
    per_example = members * (transient + kept) if grouped else transient + members * kept
    return max(1, min(MAX_CHUNK, budget // max(per_example, 1)))
