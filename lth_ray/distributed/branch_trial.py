"""One branch cohort as one Ray Tune trial: its members' states from the trunk ticket's round files and its own,
the chosen rounds, each member's round files written once (`lth_ray.core.branches.run`).

A branch trial needs no checkpoint: on a restart it reads its own round files again and runs the rounds not all
of its members finished. The trunk's files are only read.
"""

from __future__ import annotations

import os

import torch
from ray import tune

from lth_ray.core.branches.run import branch_states, run_branch
from lth_ray.core.engine.cohort import Cohort
from lth_ray.core.engine.trajectory import resolve_device, summary
from lth_ray.core.spec.config import TrajectoryConfig
from lth_ray.core.store.rounds import RoundStore
from lth_ray.distributed.trainable import _cached_split, _require_usable_gpu
from lth_ray.results.experiment import member_rounds_path


def run_branch_trial(config: dict) -> None:
    """Tune function trainable. `config` = {"cohort": [member dicts], "branch": {"experiment", "rounds",
    "tickets": {member key: {"rounds": the ticket's round folder inside the experiment, "ref", "dataset"}}, ...},
    "threads", "download"}."""
    members = [TrajectoryConfig.from_dict(d) for d in config["cohort"]]
    branch = config["branch"]
    torch.set_num_threads(int(config.get("threads", 1)))
    device = resolve_device(members[0].device)
    _require_usable_gpu(members[0].device, device)
    storage = tune.get_context().get_storage()
    fs, trial_path = storage.storage_filesystem, storage.trial_fs_path
    stores = [RoundStore(fs, member_rounds_path(trial_path, m.key)) for m in members]
    experiment = str(branch["experiment"]).rstrip("/")
    tickets = {m.seed: RoundStore.at(f"{experiment}/{branch['tickets'][m.key]['rounds']}") for m in members}
    states, left = branch_states(members, branch["rounds"], stores, tickets)
    split = _cached_split(members[0].dataset, members[0].data_root, str(device), bool(config.get("download", False)))
    cohort = Cohort(members, split, states, eval_memory_mb=config.get("eval_memory_mb"), tickets_elsewhere=True)
    total = len(left) * len(members)
    trunk_dataset = branch["tickets"][members[0].key].get("dataset")  # the trunk's: another class count?
    rounds = run_branch(cohort, left, tickets, bool(branch.get("reinit_output")), trunk_dataset)
    for done, results in enumerate(rounds, start=1):
        for i, result in results.items():
            stores[i].write_round(result)
        lead = min(results)
        tune.report(
            {
                **summary(results[lead].record, members[lead].seed),
                "members": len(members),
                "rounds_done": done * len(members),
                "rounds_total": total,
                "device": str(device),
                "pid": os.getpid(),
            }
        )
    del cohort
    if device.type == "cuda":
        torch.cuda.empty_cache()
