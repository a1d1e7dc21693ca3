"""How a branch's cohort runs from its trunk's round files: its rounds, its states, the rounds it skips. No Ray.

A branch trains its members at chosen rounds only. A member whose round-r mask needs no earlier round of its own
(re-init and the shuffle take the ticket's mask of the round, which the ticket's files hold; random pruning
redraws its chain from its own named streams; pruning at init scores the init) skips the other rounds; a
member that prunes its own trained weights (the ticket's inversion) runs every round up to the last one asked
for. Every draw comes from the member's own streams, so a member added by a branch repeats, bitwise on the CPU,
the same member trained beside its ticket in the sweep (when evaluation takes the same chunks).

Resuming needs no checkpoint: a round every member has complete files of is done; the others run again (a round
one member finished before a crash is recomputed for all, so the company, and the numbers, stay the same).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from lth_ray.core.data.registry import dataset_entry
from lth_ray.core.engine.cohort import Cohort
from lth_ray.core.engine.records import RoundResult
from lth_ray.core.engine.state import initial_state
from lth_ray.core.engine.weights import fresh_weights, initial_weights
from lth_ray.core.methods import method_of
from lth_ray.core.methods.member import first_round, is_ticket, mask_source, start_of
from lth_ray.core.models.registry import model_entry, model_of
from lth_ray.core.pruning.masks import pack_masks
from lth_ray.core.spec.config import ConfigError, TrajectoryConfig
from lth_ray.core.store.resume import state_from_rounds
from lth_ray.core.store.rounds import RoundStore


def parse_rounds(text: str) -> tuple[int, ...]:
    """'1,3-5' -> (1, 3, 4, 5); anything else is one line saying what is allowed."""
    rounds: set[int] = set()
    for part in text.split(","):
        a, dash, b = part.strip().partition("-")
        try:
            lo, hi = int(a), int(b) if dash else int(a)
        except ValueError:
            raise ConfigError(f"--rounds {text!r} is not allowed; give round numbers and ranges, e.g. 1,3-5") from None
        if lo < 0 or hi < lo:
            raise ConfigError(f"--rounds {text!r}: {part.strip()!r} is not a round or a rising range; e.g. 1,3-5")
        rounds.update(range(lo, hi + 1))
    return tuple(sorted(rounds))


def rounds_label(rounds: Sequence[int]) -> str:
    """(1, 3, 4, 5) -> '1,3-5': how a branch's folder names its rounds."""
    runs: list[list[int]] = []
    for r in sorted(rounds):
        if runs and r == runs[-1][-1] + 1:
            runs[-1].append(r)
        else:
            runs.append([r])
    return ",".join(str(a[0]) if len(a) == 1 else f"{a[0]}-{a[-1]}" for a in runs)


def skips_rounds(config: TrajectoryConfig) -> bool:
    """Whether the member's round-r mask needs no earlier round of its own (see the module's docstring); the
    ticket itself (the instability kind) starts each chosen round from the trunk's files of the round before."""
    return mask_source(config) == "ticket" or not method_of(config.method).is_ticket or is_ticket(config)


def rounds_to_run(config: TrajectoryConfig, chosen: Sequence[int]) -> list[int]:
    """The rounds a member trains for the chosen ones: those of them it has, or every round up to the last."""
    first = first_round(config)
    if skips_rounds(config):
        return [r for r in sorted(chosen) if r >= first]
    return list(range(first, max(chosen) + 1))


def branch_states(
    members: Sequence[TrajectoryConfig],
    chosen: Sequence[int],
    stores: Sequence[RoundStore],
    tickets: dict[int, RoundStore],
) -> tuple[list[dict], list[int]]:
    """(the members' states, the rounds left to run), from the members' own round files and their tickets'
    (`tickets`: seed -> the trunk ticket's round files). A member taking its ticket's masks gets them for the
    rounds left; a rider under late rewinding gets the ticket's rewind point."""
    plans = {tuple(rounds_to_run(m, chosen)) for m in members}
    if len(plans) != 1:
        raise ConfigError("a branch's cohort must run the same rounds for every member")
    plan = list(plans.pop())
    done = [r for r in plan if all(s.problem(r) is None for s in stores)]
    if all(skips_rounds(m) for m in members):
        left, states = [r for r in plan if r not in done], [initial_state(m) for m in members]
    else:  # every round in order: continue after the rounds all members finished
        n = next((k for k, r in enumerate(plan) if r not in done), len(plan))
        left = plan[n:]
        rebuilt = [state_from_rounds(m, s, plan[n - 1]) if n else None for m, s in zip(members, stores)]
        if any(s is None for s in rebuilt):  # nothing done yet, or a lost rewind point: start over, all together
            left, rebuilt = plan, [initial_state(m) for m in members]
        states = [s for s in rebuilt if s is not None]
    for m, state in zip(members, states):
        ticket = tickets[m.seed]
        if mask_source(m) == "ticket":
            state["ticket_masks"] = {r: ticket.packed_masks(r) for r in left}
        if start_of(m) == "rewind" and m.rewind_iteration > 0 and (first_round(m) == 1 or is_ticket(m)):
            state["rewind"] = ticket.rewind()
    return states, left


def skip_to(cohort: Cohort, r: int, tickets: dict[int, RoundStore]) -> None:
    """Every unfinished member moved on to round r without training the rounds before it; a member whose next
    mask grows from its latest (random pruning) keeps the mask it would have drawn in each round skipped; the
    ticket itself takes the trunk's state after round r - 1 (`tickets`: seed -> the trunk ticket's files)."""
    for i, (config, state) in enumerate(zip(cohort.configs, cohort.members)):
        if cohort.finished(i):
            continue
        if is_ticket(config) and r >= 1:
            trunk = tickets[config.seed]
            state.masks, state.trained = trunk.packed_masks(r - 1), trunk.compact_trained(r - 1)
            if method_of(config.method).keeps_dense_trained:
                state.dense_trained = trunk.compact_trained(0)
            state.next_round, cohort.mask_rounds[i] = r, r - 1
            continue
        for q in range(state.next_round, r):
            if mask_source(config) == "own" and start_of(config) != "init" and q >= 1:
                state.masks, cohort.mask_rounds[i] = pack_masks(cohort.planner.masks(i, q, {})), q
        state.next_round = max(state.next_round, r)


def fresh_output(cohort: Cohort, trunk_dataset: str | None = None) -> None:
    """Every member's output layer drawn fresh from the member's own stream (the re-init stream's round 0, which
    no re-init member draws), in place of the ticket's in every start point: its init, its rewind point and, under
    lr-rewind and fine-tune, its trained weights (Morcos et al. 2019's transfer). Under another class count than
    the trunk's (`trunk_dataset`) the layer has the new shape and no ticket mask (it trains dense), and the rest of
    the net starts from the trunk ticket's init; its masks are chosen on the trunk's shapes."""
    model = model_entry(model_of(cohort.recipe))
    outputs = [name for name, kind in model.prunable(cohort.template).items() if kind == "out"]
    if not outputs:
        raise ConfigError(f"{cohort.recipe.arch} has no output layer the model names (kind 'out') to draw fresh")
    for i, config in enumerate(cohort.configs):
        fresh = cohort._cast(fresh_weights(config, cohort.split.in_shape, 0))
        cohort.planner.fresh[i] = {k: v for k, v in fresh.items() if any(k.startswith(f"{o}.") for o in outputs)}
        if trunk_dataset is not None and classes_differ(config, trunk_dataset):
            trunk = config.replace(dataset=trunk_dataset)
            cohort.inits[i] = cohort._cast(initial_weights(trunk, cohort.split.in_shape))


def classes_differ(config: TrajectoryConfig, trunk_dataset: str) -> bool:
    """Whether the member's data set has another class count than the trunk's."""
    return dataset_entry(config.dataset).num_classes != dataset_entry(trunk_dataset).num_classes


def run_branch(
    cohort: Cohort,
    rounds: Sequence[int],
    tickets: dict[int, RoundStore],
    reinit_output: bool = False,
    trunk_dataset: str | None = None,
) -> Iterator[dict[int, RoundResult]]:
    """The branch's rounds, one at a time: {member index: its round's result}, for the caller to write. The
    output layer is drawn fresh with `reinit_output`, or when the members' data set has another class count than
    the trunk's (`trunk_dataset`)."""
    if reinit_output or (trunk_dataset is not None and classes_differ(cohort.recipe, trunk_dataset)):
        fresh_output(cohort, trunk_dataset)
    for r in rounds:
        skip_to(cohort, r, tickets)
        if cohort.done:
            return
        yield cohort.run_round()
