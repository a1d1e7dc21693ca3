"""Pruning at initialization: scorers by name (Frankle et al. 2021's baselines), one file each. Plain PyTorch.

- `magnitude-init`: |w| at initialization.
- `snip` (Lee et al. 2019): |g * w| over `score_batches` training batches.
- `grasp` (Wang et al. 2020): w * (H g), the logits divided by a temperature of 200.
- `synflow` (Tanaka et al. 2020): data-free and iterative, 100 prunings on an exponential schedule.

Adding a scorer is one file and one `register_scorer` call (see docs/extending.md); an
unknown name is an error listing the known ones.
"""

from __future__ import annotations

from lth_ray.core.pruning.scoring import grasp, magnitude_init, snip, synflow
from lth_ray.core.pruning.scoring.base import Scorer, keep_top  # noqa: F401
from lth_ray.core.pruning.scoring.grasp import GRASP_TEMPERATURE, grasp_scores  # noqa: F401
from lth_ray.core.pruning.scoring.magnitude_init import magnitude_scores  # noqa: F401
from lth_ray.core.pruning.scoring.snip import snip_scores  # noqa: F401
from lth_ray.core.pruning.scoring.synflow import SYNFLOW_ITERATIONS, synflow_masks  # noqa: F401
from lth_ray.core.spec.config import ConfigError
from lth_ray.core.spec.errors import refuse_taken, registered

SCORERS: dict[str, Scorer] = {}


def register_scorer(scorer: Scorer) -> Scorer:
    """Make a scorer known by its name (a pruning-at-init method of that name then uses it)."""
    refuse_taken(SCORERS, scorer.name, "scorer")
    if (scorer.score is None) == (scorer.masks is None):
        raise ConfigError(f"scorer {scorer.name!r} must give exactly one of score or masks")
    SCORERS[scorer.name] = scorer
    return scorer


def scorer(name: str) -> Scorer:
    return registered(SCORERS, name, "scorer")


for _module in (snip, grasp, synflow, magnitude_init):  # AT_INIT's order (the methods' numbers follow it)
    register_scorer(_module.SCORER)
