"""Trials -> the thesis' groups: the tickets of one configuration (nets = seeds) and the baselines that ride
with them. Only the thesis' plan nets have a thesis format; a registered model's trials live in Parquet alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lth_ray.core.methods.member import is_ticket
from lth_ray.core.models.plan_nets import PLAN_MODELS
from lth_ray.core.models.registry import model_of
from lth_ray.core.spec.config import ConfigError
from lth_ray.results.experiment import TrialResult
from lth_ray.results.schema import RECIPE, recipe_cell


@dataclass
class Group:
    """The trials that make one thesis experiment: tickets of one setting (nets = seeds) and their baselines."""

    key: tuple
    tickets: list[TrialResult] = field(default_factory=list)
    reinit: list[TrialResult] = field(default_factory=list)
    random_prune: list[TrialResult] = field(default_factory=list)
    others: list[TrialResult] = field(default_factory=list)  # pruning at init, ablations: in Parquet only

    @property
    def config(self):
        return self.tickets[0].config


def thesis_net(config) -> str | None:
    """The thesis' name of the net `config` trains ("Conv" or "Lenet"), or None when it is not one of the
    thesis' plan nets (a registered model: the thesis' files would load it as another net)."""
    try:
        if model_of(config) not in PLAN_MODELS:
            return None
    except ConfigError:  # a model registered where the trial ran, not here: not a plan net either
        return None
    return "Conv" if config.plan_conv else "Lenet"


def parquet_only_notes(trials: list[TrialResult]) -> list[str]:
    """One line per arch whose trials get no thesis files (export.json's `notes`, printed by the export)."""
    archs = sorted({t.config.arch for t in trials if thesis_net(t.config) is None})
    return [
        f"the thesis' format is for the thesis' plan nets (Lenet, Conv-2/4/6); {arch} trials are in the "
        "Parquet tables only"
        for arch in archs
    ]


def recipe(c) -> dict:
    """The modern recipe's settings of a config (lists as lists), for the sidecar."""
    values = {name: getattr(c, name) for name, _ in RECIPE}
    return {name: list(v) if isinstance(v, tuple) else v for name, v in values.items()}


def _setting(c) -> tuple:
    """Everything that must agree between the nets of one thesis experiment (not seed, not method)."""
    return (
        c.arch,
        tuple(c.plan_conv),
        tuple(c.plan_fc),
        c.dataset,
        c.pruning,
        float(c.prune_rate_fc),
        float(c.prune_rate_conv),
        c.rewind_iteration,
        c.activation,
        c.iterations,
        c.eval_every,
        c.batch_size,
        float(c.learning_rate),
        c.rounds,
        c.precision,
        c.deterministic,
        *(recipe_cell(v) for v in recipe(c).values()),
    )


def group_trials(trials: list[TrialResult]) -> list[Group]:
    """Tickets grouped by setting and method; a reinit joins the group of the ticket it took its masks from
    (same `ticket_ref`), a random-prune baseline every ticket group of its setting; every other member of the
    setting (pruning at init, ablations) is listed by its label in the sidecar (its rows are in Parquet)."""
    groups: dict[tuple, Group] = {}
    for t in trials:
        if is_ticket(t.config):
            key = _setting(t.config) + (t.config.method,)
            groups.setdefault(key, Group(key)).tickets.append(t)
    for t in trials:
        for g in groups.values():
            same = _setting(t.config) == g.key[:-1]
            if t.config.label == "reinit" and same and t.ticket_ref in {x.ticket_ref for x in g.tickets}:
                g.reinit.append(t)
            elif t.config.label == "random-prune" and same:
                g.random_prune.append(t)
            elif not is_ticket(t.config) and t.config.label not in ("reinit", "random-prune") and same:
                g.others.append(t)
    return [groups[k] for k in sorted(groups, key=repr)]
