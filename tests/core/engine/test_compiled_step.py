"""The compiled training step (`compile_step`) gives the eager step's numbers within float rounding on the CPU.

torch.compile fuses the forward pass, the optimizer's multi-tensor update and the mask into other kernels, so
the rounding differs; what must not differ is the arithmetic: the same batches, learning rates, masks, Adam
step counts and early stops. The tolerance (`TOLERANCE`, relative on the losses, absolute on the weights) is
about 10x the differences measured here after 40 fp32 steps (2e-6 with Adam, 1e-7 with SGD); a wrong schedule,
a mask not applied or a group updated before its start moves them by 1e-3 or more. Each case compiles for
about 20 s on a 2-core CPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lth_ray.core.engine.cohort import Cohort
from lth_ray.core.engine.training import optimizer_for
from lth_ray.core.engine.trajectory import cohort_members
from lth_ray.core.options.resolve import from_preset

TOLERANCE = 2e-5
RECIPES = {
    # Adam under late rewinding: a re-init starting at 0 beside the ticket starting at 20 (two start groups)
    "adam-late-rewind": dict(rewind_iteration=20),
    # SGD with momentum, weight decay and a step schedule (the rate a tensor the compiled step reads)
    "sgd-schedule": dict(optimizer="sgd", learning_rate=0.05, momentum=0.9, weight_decay=1e-4, milestones=(20,)),
}


def rounds_of(split, compiled: bool, recipe: dict) -> list:
    ticket = from_preset(
        "lenet",
        plan_fc=(30,),
        rounds=1,
        iterations=40,
        eval_every=20,
        prune_rate_fc=0.5,
        compile_step=compiled,
        **recipe,
    )
    return list(Cohort(cohort_members(ticket, [0, 1], ["reinit"]), split).run_results())


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_the_compiled_step_matches_the_eager_step(split, recipe):
    eager, compiled = (rounds_of(split, c, RECIPES[recipe]) for c in (False, True))
    assert [sorted(r) for r in eager] == [sorted(r) for r in compiled]
    for a_round, b_round in zip(eager, compiled):
        for member, a in a_round.items():
            b = b_round[member]
            assert a.record["steps"] == b.record["steps"] and a.record["sparsity"] == b.record["sparsity"]
            for metric in ("train_loss", "val_loss", "test_loss"):
                x, y = np.asarray(a.record[metric]), np.asarray(b.record[metric])
                assert np.allclose(x, y, rtol=TOLERANCE, atol=0), (member, metric, x, y)
            assert a.record["early_stop_iteration"] == b.record["early_stop_iteration"]
            for k in a.trained:
                assert torch.allclose(a.trained[k], b.trained[k], rtol=0, atol=TOLERANCE), (member, k)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_each_parameter_group_of_the_compiled_step_has_its_own_rate(optimizer):
    """The rate is a tensor the schedule fills in place; torch would share one tensor between groups, so a
    fine-tuned ticket's final rate and a baseline's scheduled rate would overwrite each other."""
    recipe = from_preset("lenet", optimizer=optimizer, compile_step=True)
    leaves = [{"w": torch.zeros(2, requires_grad=True)}, {"w": torch.zeros(2, requires_grad=True)}]
    groups = optimizer_for(leaves, recipe, torch.device("cpu"), compiled=True, grouped=True).param_groups
    assert len(groups) == 2 and groups[0]["lr"] is not groups[1]["lr"]
    groups[0]["lr"].fill_(0.5)
    assert float(groups[1]["lr"]) == float(torch.tensor(recipe.learning_rate))
