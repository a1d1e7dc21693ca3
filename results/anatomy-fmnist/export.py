"""The anatomy runs' round files (ROUNDS/<run>/<key>, run.sh) -> one export in OUT, for `lth-ray report`."""

import sys
from pathlib import Path

from lth_ray.core.engine.trajectory import cohort_members
from lth_ray.core.options.resolve import from_preset
from lth_ray.core.store.rounds import RoundStore
from lth_ray.results.experiment import StoredRounds, TrialResult
from lth_ray.results.export import write_export

BASELINES = ["signed-constant", "reshuffle", "signed-reshuffle", "signed-reinit", "reinit", "random-prune"]


def members(run: str, seed: int):
    """The configs run.sh trained in folder `run` for `seed` (the trajectory CLI's, from the same options)."""
    base = dict(dataset="fashion-mnist", rounds=8, iterations=1000, eval_every=100, prune_rate_fc=0.3, seed=seed)
    if run == "variants":
        ticket = from_preset("lenet", **base, successive=True, instability_points=11)
        return cohort_members(ticket, [seed], BASELINES)
    if run == "frozen":
        return [from_preset("lenet", **base, pruned_weights="frozen-init")]
    return [from_preset("lenet", **base, criterion=run.removeprefix("criterion-"))]


rounds, out = Path(sys.argv[1]), Path(sys.argv[2])
trials = []
for run in sorted(p for p in rounds.iterdir() if p.is_dir()):
    for seed in (0, 1):
        for cfg in members(run.name, seed):
            folder = run / cfg.key
            assert folder.is_dir(), folder
            store = StoredRounds(RoundStore.at(str(folder)))
            trials.append(TrialResult(f"{run.name}-{cfg.label}-s{seed}", "TERMINATED", str(folder), cfg, store))
out.mkdir(parents=True)
write_export(trials, str(out), str(rounds), name="fmnist-anatomy")
