"""The init variants as branch kinds (Zhou et al. 2019): the ticket's mask of each chosen round on its start
weights transformed (`signed-constant`, `reshuffle`, `signed-reshuffle`, `signed-reinit`; `methods.init_variants`),
trained beside each ticket of a finished trunk as the sweep's `--baselines` would have."""

from __future__ import annotations

from lth_ray.core.branches.baselines import Baseline
from lth_ray.core.methods.init_variants import VARIANTS

SUMMARIES = {
    "signed-constant": "the ticket's mask on sign(w_i) x the layer's std (Zhou et al. 2019)",
    "reshuffle": "the ticket's mask on its kept start values permuted in each layer (Zhou et al. 2019)",
    "signed-reshuffle": "the ticket's mask on its kept start magnitudes permuted, signs kept (Zhou et al. 2019)",
    "signed-reinit": "the ticket's mask on the layer's start magnitudes permuted, signs kept (Zhou et al. 2019)",
}


def init_variant_kinds() -> list[Baseline]:
    return [Baseline(name, SUMMARIES[name]) for name in VARIANTS]
