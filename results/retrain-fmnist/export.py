"""The retraining-mode runs' round files (ROUNDS/<mode>[-t<t>]/<key>) -> an export in OUT, for `lth-ray report`."""

import re
import sys
from pathlib import Path

from lth_ray.core.options.resolve import from_preset
from lth_ray.core.store.rounds import RoundStore
from lth_ray.results.experiment import StoredRounds, TrialResult
from lth_ray.results.export import write_export

rounds, out = Path(sys.argv[1]), Path(sys.argv[2])
trials = []
for folder in sorted(p for p in rounds.glob("*/*") if p.is_dir()):
    mode, t = re.fullmatch(r"(.+?)(?:-t(\d+))?", folder.parent.name).groups()
    seed = int(folder.name.rsplit("-s", 1)[1])
    cfg = from_preset(
        "lenet",
        dataset="fashion-mnist",
        rounds=7,
        iterations=2000,
        milestones=(1000, 1500),
        retrain=mode,
        retrain_iterations=int(t or 0),
        seed=seed,
    )
    assert cfg.key == folder.name, (cfg.key, folder.name)
    trials.append(
        TrialResult(
            f"{folder.parent.name}-s{seed}", "TERMINATED", str(folder), cfg, StoredRounds(RoundStore.at(str(folder)))
        )
    )
out.mkdir(parents=True)
write_export(trials, str(out), str(rounds), name="fmnist-retrain")
