"""Real handwritten digits in MNIST's on-disk format, for a transfer result without MNIST (no download here).

scikit-learn's `load_digits` (the UCI optical-recognition digits: 1,797 8x8 images, 0..16 grey levels, shipped in
its wheel; `pip install scikit-learn` for this script only) upsampled to MNIST's 20x20 digit box, centred in 28x28,
and written as torchvision's MNIST folder (`<root>/MNIST/raw/*-ubyte`), so `--dataset mnist --data-root <root>`
loads it. MNIST holds 5,000 training examples out for validation: the 1,400 training digits are written 8 times
each, shifted by up to 2 pixels (11,200 examples: 6,200 to train on, 5,000 validation); the 397 test digits are
written once, centred, and no test digit's image is in the training file.

    .venv/bin/python results/transfer-digits/make_digits.py results/transfer-digits/data
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits

TEST, COPIES, SHIFT = 397, 8, 2


def write_idx(path: Path, array: np.ndarray) -> None:
    """MNIST's IDX format: zero, zero, dtype 0x08 (uint8), ndim, big-endian dims, raw bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def to_28(images: np.ndarray) -> np.ndarray:
    """8x8 grey levels 0..16 -> 20x20 (bilinear) in 0..255, centred in 28x28 as MNIST's digits are."""
    x = torch.from_numpy(images.astype(np.float32) / 16.0)[:, None]
    box = torch.nn.functional.interpolate(x, size=(20, 20), mode="bilinear", align_corners=False)[:, 0]
    out = np.zeros((len(images), 28, 28), dtype=np.float32)
    out[:, 4:24, 4:24] = box.clamp(0, 1).numpy()
    return np.rint(out * 255).astype(np.uint8)


def main(root: Path) -> None:
    digits = load_digits()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(digits.target))
    test, train = order[:TEST], order[TEST:]
    centred = to_28(digits.images)
    shifted, labels = [], []
    for _ in range(COPIES):
        for i in train:
            dy, dx = rng.integers(-SHIFT, SHIFT + 1, 2)
            shifted.append(np.roll(centred[i], (dy, dx), axis=(0, 1)))
            labels.append(digits.target[i])
    raw = root / "MNIST" / "raw"
    write_idx(raw / "train-images-idx3-ubyte", np.stack(shifted))
    write_idx(raw / "train-labels-idx1-ubyte", np.asarray(labels))
    write_idx(raw / "t10k-images-idx3-ubyte", centred[test])
    write_idx(raw / "t10k-labels-idx1-ubyte", digits.target[test])
    print(f"{raw}: {len(labels)} training images ({len(train)} digits x {COPIES}), {len(test)} test digits")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "results/transfer-digits/data"))
