"""`retrain`: the ticket (its mask of the round and its rewind point) trained under another recipe or data set:
optimizer, learning rate, schedule, length, batch, augmentation, retraining mode (`--set KEY=VALUE`), the transfer
protocol of Morcos et al. (2019). Each chosen round starts from the trunk's files of the round before; the
round's mask is the ticket's (IMP on the trunk's trained weights, with the trunk's pruning settings, which a
retrain branch cannot change). With `--reinit-output`, or whenever the data set has another class count than
the trunk's, the output layer is drawn fresh from the member's own named stream, in every start point
(`run.fresh_output`); under another class count it trains dense (the ticket has no mask of its shape). A data set
of another input shape does not fit the net: one error.
"""

from __future__ import annotations

from lth_ray.core.branches.registry import BranchKind
from lth_ray.core.data.registry import dataset_entry
from lth_ray.core.spec.config import ConfigError, TrajectoryConfig

RETRAIN_SETTINGS = (
    "dataset",
    "data_root",
    "iterations",
    "batch_size",
    "learning_rate",
    "eval_every",
    "optimizer",
    "momentum",
    "nesterov",
    "weight_decay",
    "milestones",
    "gamma",
    "warmup",
    "augment",
    "retrain",
    "retrain_iterations",
    "precision",
    "deterministic",
    "device",
    "save_early_stop",
    "pruned_weights",
)


class Retrain(BranchKind):
    name = "retrain"
    summary = "the ticket trained under another recipe or data set (--set KEY=VALUE, --reinit-output)"
    takes_settings = RETRAIN_SETTINGS

    def members(self, ticket: TrajectoryConfig, of: str | None = None) -> list[TrajectoryConfig]:
        return [ticket]

    def check(self, ticket: TrajectoryConfig, member: TrajectoryConfig) -> None:
        check_transfer(ticket, member)


def check_transfer(ticket: TrajectoryConfig, member: TrajectoryConfig) -> None:
    """The ticket's net must take the member's data: the same input shape (another class count gets a fresh
    output layer)."""
    old, new = dataset_entry(ticket.dataset), dataset_entry(member.dataset)
    if tuple(old.in_shape) != tuple(new.in_shape):
        raise ConfigError(
            f"--set dataset={member.dataset}: its inputs are {tuple(new.in_shape)}, the ticket's net takes "
            f"{tuple(old.in_shape)} ({ticket.dataset}); allowed: a data set of inputs {tuple(old.in_shape)}"
        )


RETRAIN = Retrain()
