"""`random-prune`: weights removed at random to the ticket's count, round by round, trained from the ticket's
rewind point; layer-wise or global as the trunk prunes (`--pruning` of the sweep). Frankle & Carbin's random
pruning baseline."""

from __future__ import annotations

from lth_ray.core.branches.baselines import Baseline

RANDOM_PRUNE = Baseline("random-prune", "random pruning to the ticket's count (layer-wise or global, as the trunk)")
