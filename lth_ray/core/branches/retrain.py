"""`retrain`: the ticket (its mask of the round and its rewind point) trained under another recipe or data set:
optimizer, learning rate, schedule, length, batch, augmentation, retraining mode (`--set KEY=VALUE`), the transfer
protocol of Morcos et al. (2019). Each chosen round starts from the trunk's files of the round before; the
round's mask is the ticket's (IMP on the trunk's trained weights, with the trunk's pruning settings, which a
retrain branch cannot change). With `--reinit-output` the output layer is drawn fresh (its own named stream).
A data set of another input shape does not fit the net; one of another class count is not supported yet.
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
    """The ticket's net must take the member's data: the same input shape and class count."""
    old, new = dataset_entry(ticket.dataset), dataset_entry(member.dataset)
    if tuple(old.in_shape) != tuple(new.in_shape):
        raise ConfigError(
            f"--set dataset={member.dataset}: its inputs are {tuple(new.in_shape)}, the ticket's net takes "
            f"{tuple(old.in_shape)} ({ticket.dataset}); allowed: a data set of inputs {tuple(old.in_shape)}"
        )
    if old.num_classes != new.num_classes:
        raise ConfigError(
            f"--set dataset={member.dataset}: {new.num_classes} classes, the ticket's net has {old.num_classes}; "
            "a retrain branch to another class count is not supported yet"
        )


RETRAIN = Retrain()
