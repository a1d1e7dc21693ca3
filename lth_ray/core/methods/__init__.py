"""Member policies: where each method's mask comes from and where its training starts (one file each).

The built-in methods are registered here in a fixed order (their numbers in the random streams):
the ticket (`imp`), its re-init baseline, random pruning, the one-shot ticket, one pruning-at-init method per
built-in scorer, then the init variants (Zhou et al. 2019). Ablations (shuffle, reinit, invert) apply to any
method that allows them.
"""

from __future__ import annotations

from lth_ray.core.methods.at_init import PruneAtInit
from lth_ray.core.methods.imp import IterativeMagnitude
from lth_ray.core.methods.init_variants import init_variants
from lth_ray.core.methods.one_shot import OneShot
from lth_ray.core.methods.random_prune import RandomPrune
from lth_ray.core.methods.registry import METHODS, MemberMethod, MemberView, method_of, method_salt, register_method
from lth_ray.core.methods.reinit import Reinit
from lth_ray.core.pruning.scoring import SCORERS

__all__ = ["METHODS", "MemberMethod", "MemberView", "PruneAtInit", "method_of", "method_salt", "register_method"]

for _method in (IterativeMagnitude(), Reinit(), RandomPrune(), OneShot(), *map(PruneAtInit, SCORERS), *init_variants()):
    register_method(_method)
