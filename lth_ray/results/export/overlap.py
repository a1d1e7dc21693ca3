"""How much the masks of different seeds overlap at the same round: `seed_jaccard`, computed at export.

For each member and round, the mean Jaccard overlap |A and B| / |A or B| (`lth_ray.core.pruning.dynamics.jaccard`)
of its mask with the masks of the members of the same trajectory but another seed (the same key but for its
`-s<seed>` suffix, in the same branch), at that round: overall (every prunable weight pooled) and per layer.
A member with no other seed has none. Each mask is read once, from the round files, one round of one trajectory
at a time; a trajectory run with a single seed reads nothing.
"""

from __future__ import annotations

import math
from itertools import combinations

from lth_ray.core.pruning.dynamics import jaccard
from lth_ray.results.experiment import TrialResult

Overlap = tuple[float | None, dict[str, float | None]]  # (overall, per layer), as `jaccard` gives them


def seedless_key(t: TrialResult) -> tuple[str, str]:
    """What seeds of one trajectory share: the branch and the key without its `-s<seed>` suffix."""
    key = t.config.key
    suffix = f"-s{t.config.seed}"
    return t.branch, key[: -len(suffix)] if key.endswith(suffix) else key


def _mean(values) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None


def seed_jaccard(trials: list[TrialResult]) -> dict[tuple[str, int], Overlap]:
    """{(trial id, round): (mean overall Jaccard, {layer: mean Jaccard})} over the member's other seeds at that
    round; members and rounds without another seed are absent."""
    families: dict[tuple[str, str], list[TrialResult]] = {}
    for t in trials:
        if t.rounds is not None and t.records:
            families.setdefault(seedless_key(t), []).append(t)
    out: dict[tuple[str, int], Overlap] = {}
    for members in families.values():
        if len({t.config.seed for t in members}) < 2:
            continue
        for r in sorted({r for t in members for r in t.rounds_done}):
            having = [t for t in members if r in t.rounds_done]
            if len({t.config.seed for t in having}) < 2:
                continue
            masks = {t.trial_id: t.rounds.masks(r) for t in having if t.rounds is not None}
            pairs: dict[str, list[Overlap]] = {t.trial_id: [] for t in having}
            for a, b in combinations(having, 2):
                if a.config.seed != b.config.seed:
                    both = jaccard(masks[a.trial_id], masks[b.trial_id])
                    pairs[a.trial_id].append(both)
                    pairs[b.trial_id].append(both)
            for trial_id, overlaps in pairs.items():
                if overlaps:
                    layers = dict.fromkeys(name for _, per_layer in overlaps for name in per_layer)
                    out[(trial_id, r)] = (
                        _mean(o for o, _ in overlaps),
                        {n: _mean(per_layer.get(n) for _, per_layer in overlaps) for n in layers},
                    )
    return out
