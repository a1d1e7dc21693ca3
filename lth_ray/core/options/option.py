"""One command-line option of a trajectory's recipe: its spelling, help, type, choices and default.

Every setting of `TrajectoryConfig` that a user sets has one option (`recipe.RECIPE`): one spelling, its help,
its type, its choices (the validator's own constants) and the default `--help` shows. The option's destination
is the setting's field name, and the parsed values go to `from_preset` as they are, so the recorded recipe
(`TrajectoryConfig.to_dict`) holds exactly what the command line set.

The trajectory CLI (`lth_ray.cli.trajectory`) takes one value per option. The sweep CLI
(`lth_ray.distributed.sweep_spec`) takes a comma list for the options marked `grid`, and each list is an axis of
the sweep's grid. Older spellings (`--preset`, `--archs`, `--prune-rates`, `--conv-prune-rates`, `--one-shot`)
still parse, as hidden aliases of the same destination.

The choices of --arch, --dataset, --method and --baselines are the registries' (models, data sets, methods),
read when a parser is built, so a model, data set or method registered before that is on both command lines.
Lengths (--iterations, --rewind-iteration, --milestones, --warmup) are iterations (`2000`, `2000it`) or epochs
(`80ep`); epochs become iterations of the final data set and batch size in `from_preset` (`options.resolve`).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lth_ray.core.data import registry as data_registry
from lth_ray.core.methods import registry as method_registry
from lth_ray.core.spec.config import TrajectoryConfig, parse_numbers

SCOPES = ("trajectory", "sweep")
WHAT, TRAIN, PRUNE, COHORT, MEASURE, DATA, NUMERICS = (  # the option groups of --help
    "what to train",
    "the optimizer, schedule and augmentation",
    "how to prune",
    "the cohort: seeds and baselines",
    "what to measure and keep",
    "data",
    "numerics and memory",
)
NONE = "none"  # an empty list of baselines or ablations
SETTINGS = tuple(f.name for f in dataclasses.fields(TrajectoryConfig))


def dataset_names() -> tuple[str, ...]:
    """The data registry's names, now."""
    return tuple(data_registry.DATASETS)


def method_names() -> tuple[str, ...]:
    """The method registry's names, now (built-ins first)."""
    return tuple(method_registry.METHODS)


def baseline_names() -> tuple[str, ...]:
    """The registered methods that ride with a ticket (every method but the tickets), and `none`."""
    return (*method_registry.baselines(), NONE)


def ticket_names() -> tuple[str, ...]:
    """The registered tickets (imp, one-shot, ...): a sweep's --method."""
    return method_registry.tickets()


class OptionParser(argparse.ArgumentParser):
    """argparse with the house's errors: a bad command line is one `error:` line and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"error: {message}\n")


@dataclass(frozen=True)
class Alias:
    """An old spelling of an option: it still parses, into the same destination, but --help hides it.
    `const`: a flag that stands for one value (`--one-shot` is `--method one-shot`)."""

    flag: str
    const: Any = None


@dataclass(frozen=True)
class Option:
    """One command-line option: its spelling, what it means, how its text is read and what it defaults to.

    `default` is what argparse stores when the option is absent; None means "not given": the preset's or
    `TrajectoryConfig`'s value applies, and `shown` says which in --help."""

    flag: str
    help: str
    group: str
    type: type = str  # of one value: str, int or float
    action: str = "store"  # "store", or a flag: "store_true" / "store_false"
    choices: tuple = ()  # the allowed values, or each list item's
    registry: Callable | None = None  # () -> the allowed values, read from a registry when a parser is built
    default: Any = None
    shown: Any = None  # the default as --help shows it (None: `default`, or "off" for a flag)
    grid: bool = False  # an axis of the sweep's grid: a comma list there, one value in a trajectory
    listed: bool = False  # a comma list of names everywhere (baselines, ablations; `none`: empty)
    parse: Callable | None = None  # (text, flag) -> value, after argparse: plans, seeds, rounds
    metavar: str | None = None
    into: str | None = None  # the destination when it is not the flag's name (a setting's field name)
    scopes: tuple = SCOPES
    aliases: tuple = ()

    @property
    def dest(self) -> str:
        return self.into or self.flag.lstrip("-").replace("-", "_")

    @property
    def is_flag(self) -> bool:
        return self.action != "store"

    def allowed(self) -> tuple:
        """The allowed values now: the registry's when the option has one, else `choices`."""
        return tuple(self.registry()) if self.registry is not None else self.choices

    def text_type(self, scope: str) -> Callable[[str], Any]:
        """What argparse converts the text to: one value by its type; lists and parsed text stay text."""
        return str if self.parse is not None or self.is_list(scope) else self.type

    def is_list(self, scope: str) -> bool:
        """A comma list of names or numbers in `scope`: `listed` ones always, the grid axes in the sweep."""
        return self.listed or (self.grid and scope == "sweep")


def names(text: str, flag: str) -> list[str]:
    """A comma list of names; `none` is the empty list."""
    return [t.strip() for t in str(text).split(",") if t.strip() and t.strip() != NONE]


def rounds_list(text: str, flag: str) -> tuple[int, ...]:
    return tuple(parse_numbers(text, flag, int))


def layer_names(text: str, flag: str) -> tuple[str, ...]:
    """A comma list of layer names (`fc,blocks.3.shortcut.0`); `none` is the empty list."""
    return tuple(names(text, flag))
