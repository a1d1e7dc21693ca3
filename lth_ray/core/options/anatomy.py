"""The options that ask what a ticket is made of (Zhou et al. 2019; Paul et al. 2023): its mask criterion, what
its pruned weights hold while training, and the barrier between consecutive rounds. Part of `recipe.RECIPE`."""

from __future__ import annotations

from lth_ray.core.options.option import MEASURE, PRUNE, Option
from lth_ray.core.pruning.criteria import CRITERIA
from lth_ray.core.spec.config import TrajectoryConfig
from lth_ray.core.spec.training import PRUNED_WEIGHTS


def criterion_names() -> tuple[str, ...]:
    """The criteria registry's names, now."""
    return tuple(CRITERIA)


ANATOMY = (
    Option(
        "--criterion",
        "the mask criterion the tickets prune by (Zhou et al. 2019), a score from the rewind point w_i and the "
        "trained weights w_f: large_final is |w_f| (IMP's), magnitude_increase |w_f| - |w_i|, movement |w_f - w_i| "
        "(docs: what a ticket is made of); per layer, or over all layers under --pruning global",
        PRUNE,
        registry=criterion_names,
        grid=True,
        shown=TrajectoryConfig.criterion,
    ),
    Option(
        "--pruned-weights",
        "what pruned weights hold while a subnetwork trains: zero, or frozen-init (frozen at their value in the "
        "round's start weights: Zhou et al. 2019's mask-0 freezing)",
        PRUNE,
        choices=PRUNED_WEIGHTS,
        grid=True,
        shown=TrajectoryConfig.pruned_weights,
    ),
    Option(
        "--successive",
        "per round r >= 1 of each ticket, the error barrier on the linear path from round r - 1's trained "
        "weights under round r's mask to round r's (Paul et al. 2023), with --instability-points and "
        "--instability-bn",
        MEASURE,
        action="store_true",
    ),
)
