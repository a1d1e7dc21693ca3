"""Small readers over a trajectory's `RoundResult`s, for tests (the trajectory itself keeps no history)."""

from __future__ import annotations

from lth_ray.core.pruning.masks import expand, unpack_masks


def run_all(trajectory) -> dict:
    """Run every remaining round; {round: RoundResult}."""
    return {res.record["round"]: res for res in trajectory.run_results()}


def masks(result):
    return unpack_masks(result.masks)


def trained(result):
    return expand(result.trained, masks(result))


def early_stop(result):
    return None if result.early_stop is None else expand(result.early_stop, masks(result))


def records(results: dict) -> list[dict]:
    return [results[r].record for r in sorted(results)]
