"""GPU numerics of a trajectory, chosen explicitly and recorded: fp32 / TF32 / bf16 and deterministic kernels.

This torch build runs cuDNN convolutions in TF32 by default on Ampere and later, and several cuDNN / cuBLAS
kernels are not deterministic: left alone, a "float32" result on a GPU is neither the paper's arithmetic nor
repeatable. The flags are process-wide in torch, so `configure` sets every one of them on each call: a
reused Ray worker never carries the previous trial's numerics over.

cuBLAS reads its workspace setting once, when a process first uses it; a reused worker whose earlier trial
already ran on the GPU would ignore a later change. So the setting is put in the environment when this module
is imported (before any trial of the process touches CUDA), for every run, deterministic or not: every trial
of every process then runs with the same cuBLAS workspace (a Ray worker imports this module with the
trainable, before its first trial).
"""

from __future__ import annotations

import contextlib
import os

import torch

# cuBLAS needs a fixed workspace for deterministic results; it must be set before the first cuBLAS call.
CUBLAS_WORKSPACE = ":4096:8"
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)


def configure(precision: str, deterministic: bool) -> dict:
    """Set torch's fp32 matmul/conv precision and determinism for `precision` ('fp32', 'tf32', 'bf16', 'fp64').

    fp32 and bf16 keep full-precision fp32 matmuls and convolutions (bf16 only autocasts the forward pass,
    see `autocast`); tf32 allows TensorFloat-32; fp64 trains in float64 (`dtype`). Returns the settings as
    torch reports them.
    """
    fp32 = "tf32" if precision == "tf32" else "ieee"
    # the legacy flags first, then the new ones: set the other way round (or the new ones alone), reading
    # `torch.backends.cudnn.allow_tf32` raises, and torch.compile's convolution templates read it
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = fp32 == "tf32"
    torch.backends.cudnn.fp32_precision = fp32
    torch.backends.cudnn.conv.fp32_precision = fp32  # type: ignore[attr-defined]
    torch.backends.cudnn.rnn.fp32_precision = fp32  # type: ignore[attr-defined]
    torch.backends.cuda.matmul.fp32_precision = fp32
    if deterministic:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE
    torch.use_deterministic_algorithms(deterministic)
    # deterministic kernels give the same numbers without NaN-filling fresh memory first (an extra kernel per
    # allocation: +33% launches on a Lenet step, +110% on a vmapped ResNet-20's)
    torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]
    torch.backends.cudnn.deterministic = deterministic
    # autotuning picks kernels by timing (a source of variation): only when the run need not be deterministic
    torch.backends.cudnn.benchmark = not deterministic
    return settings()


def settings() -> dict:
    """The numerics torch will use now (what a result records)."""
    return {
        "matmul_fp32_precision": torch.backends.cuda.matmul.fp32_precision,
        "conv_fp32_precision": torch.backends.cudnn.conv.fp32_precision,  # type: ignore[attr-defined]
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG", ""),
    }


def dtype(precision: str) -> torch.dtype:
    """The dtype of weights and data: float64 for 'fp64', else float32."""
    return torch.float64 if precision == "fp64" else torch.float32


def autocast(precision: str, device: torch.device):
    """bf16 mixed precision for forward passes (weights, optimizer and masks stay fp32); else a no-op."""
    if precision != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
