"""Branch kinds (one file each): the members a branch adds beside a finished trunk's tickets, by name.

Registered in a fixed order: the re-init baseline, random pruning, one pruning-at-init kind per scorer, then the
shuffle and invert ablations (`reinit` with `--of` is the re-init ablation of a baseline), instability, retrain and
the init variants (Zhou et al. 2019).
"""

from __future__ import annotations

from lth_ray.core.branches.at_init import at_init_kinds
from lth_ray.core.branches.init_variants import init_variant_kinds
from lth_ray.core.branches.instability import INSTABILITY
from lth_ray.core.branches.invert import INVERT
from lth_ray.core.branches.random_prune import RANDOM_PRUNE
from lth_ray.core.branches.registry import BRANCHES, BranchKind, branch_members, branch_of, register_branch
from lth_ray.core.branches.reinit import REINIT
from lth_ray.core.branches.retrain import RETRAIN
from lth_ray.core.branches.shuffle import SHUFFLE

__all__ = ["BRANCHES", "BranchKind", "branch_members", "branch_of", "register_branch"]

for _kind in (REINIT, RANDOM_PRUNE, *at_init_kinds(), SHUFFLE, INVERT, INSTABILITY, RETRAIN, *init_variant_kinds()):
    register_branch(_kind)
