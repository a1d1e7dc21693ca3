"""Seeded random streams: every random draw of a member comes from its own generator, named by purpose.

A draw depends only on (seed, purpose, round[, what it is for]), never on what else ran before it in the
process, so a resumed or re-grouped run repeats an uninterrupted one bitwise on the CPU.
"""

from __future__ import annotations

import numpy as np
import torch

# Purposes of the seeded random streams (never reuse a number for another purpose).
STREAM_INIT, STREAM_DATA, STREAM_RANDOM_PRUNE, STREAM_REINIT, STREAM_COPY_DATA, STREAM_SCORE = 0, 1, 2, 3, 4, 5
STREAM_SHUFFLE = 6
STREAM_AUGMENT, STREAM_BN_STATISTICS = 7, 8
STREAM_CRITERION, STREAM_INIT_VARIANT = 9, 10


def generator(seed: int, stream: int, round_: int = 0, *salt: int) -> torch.Generator:
    """An independent CPU generator for (seed, purpose, round[, what it is for, e.g. which method's shuffle])."""
    value = int(np.random.SeedSequence([seed, stream, round_, *salt]).generate_state(1, dtype=np.uint64)[0])
    return torch.Generator().manual_seed(value)
