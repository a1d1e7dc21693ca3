"""What a member's method decides about its trajectory, asked of the method: the config itself is plain data.

Whether a member is a ticket, where its rounds start, where its mask comes from and its first round all follow
from its method (`method_of(config.method)`) and its ablation. The checks of a config that need a registry (its
data set, model and method) or its method's facts are here too; `TrajectoryConfig.validate` checks the rest.
"""

from __future__ import annotations

from lth_ray.core.data import registry as data_registry
from lth_ray.core.methods.registry import method_of
from lth_ray.core.models import registry as model_registry
from lth_ray.core.pruning.criteria import CRITERIA
from lth_ray.core.spec.config import ConfigError, TrajectoryConfig, check_choice, plan_label
from lth_ray.core.spec.training import retrain_length


def is_ticket(config: TrajectoryConfig) -> bool:
    """The ticket itself (imp or one-shot, no ablation): the member others of its seed take masks from."""
    return method_of(config.method).is_ticket and not config.ablation


def ticket_kind(config: TrajectoryConfig) -> bool:
    """Whether the member's method finds tickets (imp, one-shot), ablated or not."""
    return method_of(config.method).is_ticket


def start_of(config: TrajectoryConfig) -> str:
    """Where rounds >= 1 start training: 'rewind' (the init, or under late rewinding the ticket's weights at k),
    'init' (pruning at initialization: the init at iteration 0) or 'fresh' (a new initialization)."""
    return "fresh" if config.ablation == "reinit" else method_of(config.method).start


def mask_source(config: TrajectoryConfig) -> str:
    """'ticket': the member's mask is its ticket's of the round (re-init, the ticket's shuffle), else 'own'."""
    method = method_of(config.method)
    shuffled_ticket = method.is_ticket and config.ablation == "shuffle"
    return "ticket" if method.takes_ticket_masks or shuffled_ticket else "own"


def first_round(config: TrajectoryConfig) -> int:
    """Baselines have no dense round of their own: they start at round 1. A ticket with inverted scores is a
    trajectory of its own (each round prunes its own trained weights, highest |w| first)."""
    return 0 if method_of(config.method).is_ticket and config.ablation in ("", "invert") else 1


def retrains_trained(config: TrajectoryConfig) -> bool:
    """Whether the member's rounds >= 1 go on from the trained weights its mask was chosen from (lr-rewind and
    fine-tune, Renda et al. 2020): a ticket with a dense round of its own (imp, one-shot, their inverted
    ablation). Every other member starts from an initialization or the rewind point, as under weight rewinding:
    a retraining mode is how the ticket is retrained."""
    return config.retrain != "weight-rewind" and ticket_kind(config) and first_round(config) == 0


def round_start(config: TrajectoryConfig, round_: int) -> int:
    """The first iteration of round `round_`: 0 for the dense round, for a fresh initialization and for the
    methods that prune the initialization; T - t for a retrained ticket (`retrains_trained`); else the rewind
    point."""
    if round_ > 0 and retrains_trained(config):
        return config.iterations - retrain_length(config)
    return 0 if round_ == 0 or start_of(config) != "rewind" else config.rewind_iteration


def eval_iterations(config: TrajectoryConfig, round_: int) -> list[int]:
    """The absolute iterations at which round `round_` is evaluated (multiples of eval_every after its start)."""
    first = round_start(config, round_) + config.eval_every
    return list(range(first, config.iterations + 1, config.eval_every))


def needs_ticket(config: TrajectoryConfig) -> bool:
    """Whether a member must share its ticket's cohort: it takes the ticket's masks (re-init, the ticket's
    shuffle) or, being a rider without a dense round under late rewinding, the ticket's rewind point. Every other
    member (random pruning from the init, pruning at init and its ablations, the ticket's inversion) can train
    in a cohort of its own."""
    late_rider = start_of(config) == "rewind" and first_round(config) == 1 and config.rewind_iteration > 0
    return mask_source(config) == "ticket" or late_rider


def check_member(c: TrajectoryConfig) -> None:
    """The settings that depend on the member's method: its ablation, its rounds and instability."""
    method = method_of(c.method)  # unknown: an error listing the registered methods
    if c.ablation and c.method == "reinit":
        raise ConfigError("method='reinit' is itself the ticket's re-init ablation; it takes no ablation")
    if c.ablation == "reinit" and method.is_ticket:
        raise ConfigError(
            f"the {c.method} ticket's re-init ablation is the baseline 'reinit' "
            f"(method='reinit'), not ablation='reinit'"
        )
    if c.ablation == "invert" and c.method == "random-prune":
        raise ConfigError(
            "ablation='invert' is not allowed for random-prune: random pruning has no scores "
            "to invert; allowed: shuffle, reinit"
        )
    if c.ablation and not method.is_ticket and c.ablation not in method.ablations:
        raise ConfigError(
            f"ablation={c.ablation!r} is not allowed for {c.method}; allowed: {', '.join(method.ablations) or 'none'}"
        )
    first = first_round(c)
    if first == 1 and c.rounds < 1:
        raise ConfigError(f"method={c.method!r} needs rounds >= 1 (baselines have no dense round)")
    for r in c.instability_rounds:
        if not first <= r <= c.rounds:
            raise ConfigError(f"instability round {r!r} is outside the trajectory; allowed: {first}..{c.rounds}")
    if c.instability and (not method.is_ticket or c.ablation):
        raise ConfigError(f"instability is measured on tickets (imp, one-shot), not {c.label!r}")


def check_arch(c: TrajectoryConfig) -> None:
    """The net is a registered model (the thesis' plan nets among them) or a custom plan named by its label."""
    label = plan_label(c.plan_conv, c.plan_fc)
    if c.arch not in ("custom", label) and c.arch not in model_registry.MODELS:
        raise ConfigError(
            f"arch={c.arch!r} is unknown; allowed: a registered model "
            f"({', '.join(m for m in model_registry.MODELS if m != 'plan')}) or the plan's label {label!r}"
        )


def check_trajectory(c: TrajectoryConfig) -> TrajectoryConfig:
    """Every check of a config: its own settings (`validate`), its net and data set in their registries, and
    what its method allows. Returns the config."""
    c.validate()
    check_arch(c)
    check_choice("dataset", c.dataset, data_registry.DATASETS)
    check_choice("criterion", c.criterion, CRITERIA)
    check_member(c)
    return c
