"""The IMP engine: a cohort of trajectories trained in lockstep as one vectorized model. Plain PyTorch, no Ray.

A cohort is S seeds x (a ticket and the baselines that ride with it), sharing one recipe (plan, data set,
iterations, batch size, learning rate, prune rates, rewinding, numerics). Each member keeps its own
initialization, mask, data order, optimizer state, evaluation history and early stop: per member the math is
exactly one trajectory of the protocol. A lone trajectory is a cohort of one (`trajectory.Trajectory`).

Round by round, every member picks its mask and start point on the host (the ticket first: its re-init
baseline takes the ticket's round-r mask from memory), then all members of the round train together
(`stacked`): members that start later (under late rewinding the ticket trains k -> T, its re-init 0 -> T)
stay frozen until their first iteration, with their own Adam step counts. Instability copies of a ticket
are members of the round too, with their own data order.

The cohort's state is a list of member states (`trajectory.initial_state`'s small dict each); a cohort
rebuilt from it continues exactly where it stopped, bitwise on the CPU.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from lth_ray.core.engine import numerics
from lth_ray.core.engine.budget import budget_bytes, eval_chunk
from lth_ray.core.spec.config import AT_INIT, METHODS, TICKETS, ConfigError, TrajectoryConfig
from lth_ray.core.data.loading import Split, epoch_batches
from lth_ray.core.engine.instability import evaluate_path
from lth_ray.core.models.plan import build_model, prunable_layers
from lth_ray.core.pruning.masks import (alive_after, compact, dense_masks, density, expand, global_magnitude_prune,
                      global_random_prune, layer_density, layer_rates, magnitude_prune, magnitude_prune_to,
                      pack_masks, random_prune, shuffle_within_layers, unpack_masks)
from lth_ray.core.store.rounds import RoundResult
from lth_ray.core.pruning.scoring import grasp_scores, keep_top, magnitude_scores, snip_scores, synflow_masks
from lth_ray.core.models.stacked import StackedNet

COHORT_FORMAT = 3  # a list of member states (each of trajectory state format 2)
STATE_FORMAT = 2   # one member's state; 1 was lth_ray 0.1.0 (every round's weights in one growing state)
METRICS = ("train_loss", "val_loss", "val_acc", "test_loss", "test_acc")
# Purposes of the seeded random streams (never reuse a number for another purpose).
STREAM_INIT, STREAM_DATA, STREAM_RANDOM_PRUNE, STREAM_REINIT, STREAM_COPY_DATA, STREAM_SCORE = 0, 1, 2, 3, 4, 5
STREAM_SHUFFLE = 6
# Settings a member may have of its own; every other setting is the cohort's recipe, shared by all.
MEMBER_FIELDS = ("seed", "method", "ablation", "save_early_stop", "instability", "instability_rounds",
                 "instability_points", "score_batches")


def generator(seed: int, stream: int, round_: int = 0, *salt: int) -> torch.Generator:
    """An independent CPU generator for (seed, purpose, round[, what it is for, e.g. which method's shuffle])."""
    value = int(np.random.SeedSequence([seed, stream, round_, *salt]).generate_state(1, dtype=np.uint64)[0])
    return torch.Generator().manual_seed(value)


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def early_stop_index(val_loss) -> int | None:
    """The thesis' early-stopping point: the first evaluation with minimum validation loss.

    Non-finite losses (a diverged run) are never the early-stop point; None when no evaluation is finite.
    """
    values = np.asarray(val_loss, dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return None
    return int(np.argmin(np.where(finite, values, np.inf)))


def diverged(record_or_values: dict) -> bool:
    """A round diverged when any of its losses went NaN or infinite."""
    return not all(np.isfinite(record_or_values[m]).all() for m in ("train_loss", "val_loss", "test_loss"))


@torch.inference_mode()
def evaluate(model, x: torch.Tensor, y: torch.Tensor, chunk: int = 5000,
             precision: str = "fp32") -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss and accuracy of one (unstacked) model over a whole split, as device scalars (no host sync)."""
    loss = torch.zeros((), device=x.device, dtype=x.dtype)
    correct = torch.zeros((), device=x.device, dtype=x.dtype)
    for start in range(0, len(x), chunk):
        with numerics.autocast(precision, x.device):
            logits = model(x[start:start + chunk])
        target = y[start:start + chunk]
        loss += F.cross_entropy(logits.to(x.dtype), target, reduction="sum")
        correct += (logits.argmax(1) == target).sum()
    return loss / len(x), correct / len(x)


# ------------------------------------------------------------------ member states

def initial_state(config: TrajectoryConfig) -> dict:
    """The state of a trajectory before its first round."""
    return {"format": STATE_FORMAT, "config": config.to_dict(), "next_round": config.first_round,
            "diverged_round": None, "rewind": None, "masks": None, "trained": None, "dense_trained": None}


def check_state(state: dict, config: TrajectoryConfig) -> None:
    """Refuse a state of another format (naming the version that wrote it) or of another config."""
    if state.get("format") != STATE_FORMAT:
        raise ValueError(f"trajectory state format {state.get('format')} (lth_ray 0.1.0) cannot be continued by "
                         f"this version (format {STATE_FORMAT}); finish it with lth_ray 0.1.0, or export and "
                         "analyse it as it is (both read the old format)")
    if state.get("config") != config.to_dict():
        raise ValueError("trajectory state belongs to another config; refusing to resume from it")


def finished(state: dict | None, config: TrajectoryConfig) -> bool:
    """A trajectory is finished when every round ran or a round diverged (it stops there, by design)."""
    if not state:
        return False
    return state["next_round"] > config.rounds or state.get("diverged_round") is not None


def cohort_state(states: Sequence[dict]) -> dict:
    """What a cohort checkpoint holds: its member states, and a progress count that only grows (the number
    of rounds its members have finished), by which the newest of several checkpoints is chosen."""
    return {"format": COHORT_FORMAT, "progress": sum(s["next_round"] for s in states), "members": list(states)}


def check_cohort(members: Sequence[TrajectoryConfig]) -> tuple[TrajectoryConfig, ...]:
    """The members, validated: one recipe, distinct members, and every baseline's ticket present when the
    baseline needs it (re-init and the ticket's shuffle take the ticket's masks; a member starting from the
    rewind point without a dense round of its own, under late rewinding, the ticket's rewind point)."""
    members = tuple(m.validate() for m in members)
    if not members:
        raise ConfigError("a cohort needs at least one member")
    recipe = recipe_of(members[0])
    for m in members[1:]:
        if recipe_of(m) != recipe:
            diff = sorted(k for k, v in recipe_of(m).items() if recipe[k] != v)
            raise ConfigError(f"cohort members must share one recipe; {m.key} differs in {', '.join(diff)}")
    keys = [m.key for m in members]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"a cohort lists the same member twice: {sorted(k for k in keys if keys.count(k) > 1)[0]}")
    tickets = {m.seed for m in members if m.is_ticket}
    kinds = {m.method for m in members if m.method in TICKETS}
    if len(kinds) > 1:
        raise ConfigError("a cohort holds one kind of ticket (imp or one-shot), not both")
    for m in members:
        if needs_ticket(m) and m.seed not in tickets:
            why = "its masks" if m.mask_source == "ticket" else "its rewind point"
            kind = m.method if m.method in TICKETS else "imp"
            raise ConfigError(f"baseline {m.key} needs its ticket (seed {m.seed}, {kind}) in the same "
                              f"cohort for {why}; add it, e.g. --method {kind} --baselines {m.label}")
    return members


def needs_ticket(config: TrajectoryConfig) -> bool:
    """Whether a member must share its ticket's cohort: it takes the ticket's masks (re-init, the ticket's
    shuffle) or, being a rider without a dense round under late rewinding, the ticket's rewind point. Every other
    member (random pruning from the init, pruning at init and its ablations, the ticket's inversion) can train
    in a cohort of its own."""
    return config.mask_source == "ticket" or (config.start == "rewind" and config.first_round == 1
                                              and config.rewind_iteration > 0)


def recipe_of(config: TrajectoryConfig) -> dict:
    return {k: v for k, v in config.to_dict().items() if k not in MEMBER_FIELDS}


@dataclass
class Participant:
    """One model trained in a round: a member's subnetwork, or an instability copy of it."""
    member: int
    masks: dict[str, torch.Tensor]
    start: dict[str, torch.Tensor]  # the weights training starts from (CPU)
    start_iteration: int
    stream: int
    evaluating: bool
    keep_es: bool
    capture_at: int | None = None
    replay: bool = False  # trained only so that the cohort's company (and float rounding) is the original's
    out: dict = field(default_factory=dict)  # what training produced: history, trained, early_stop, rewind


class Cohort:
    """Drives the rounds of a cohort; `states` is what continuing needs, and nothing more."""

    def __init__(self, members: Sequence[TrajectoryConfig], split: Split, states: Sequence[dict | None] | None = None,
                 progress: Callable[[int, int], None] | None = None, eval_memory_mb: int | None = None):
        self.configs = check_cohort(members)
        self.recipe = self.configs[0]
        self.dtype = numerics.dtype(self.recipe.precision)
        if split.x_train.dtype != self.dtype:  # fp64: the data in float64 too (a copy; the caller's is shared)
            split = dataclasses.replace(split, **{k: getattr(split, k).to(self.dtype)
                                                  for k in ("x_train", "x_val", "x_test")})
        self.split = split
        self.device = split.x_train.device
        self.numerics = numerics.configure(self.recipe.precision, self.recipe.deterministic)
        self.budget = budget_bytes(self.device, eval_memory_mb)  # evaluation, scoring and instability paths
        self.progress = progress
        cfg = self.recipe
        self.template = build_model(cfg.plan_conv, cfg.plan_fc, split.in_shape, cfg.activation, device="meta")
        self.net = StackedNet(self.template)
        self.kinds = prunable_layers(self.template)
        self.rates = layer_rates(self.kinds, cfg.prune_rate_conv, cfg.prune_rate_fc)
        self.param_keys = [k for k, _ in self.template.named_parameters()]
        self.state_keys = list(self.template.state_dict().keys())
        # rebuilt from the seeds, never stored
        self.inits = [self._cast(initial_weights(c, split.in_shape)) for c in self.configs]
        states = list(states) if states is not None else [None] * len(self.configs)
        if len(states) != len(self.configs):
            raise ValueError(f"{len(states)} member states for a cohort of {len(self.configs)}")
        self.states = [initial_state(c) if s is None else s for c, s in zip(self.configs, states)]
        for s, c in zip(self.states, self.configs):
            check_state(s, c)
        self._single = None
        self._scores: dict[tuple, dict] = {}  # scores (masks, for SynFlow) at init by (method, seed, ...)
        per_epoch = len(split.x_train) // self.recipe.batch_size
        for c in self.configs:
            if c.method in ("snip", "grasp") and c.score_batches > per_epoch:
                raise ConfigError(f"score_batches={c.score_batches} exceeds one epoch of {per_epoch} batches of "
                                  f"{self.recipe.batch_size}; allowed: 1..{per_epoch}")
        self.last_trained: dict[int, dict] = {}

    def _cast(self, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Floating tensors in the cohort's dtype (float64 under precision fp64; integer buffers as they are)."""
        return {k: v.to(self.dtype) if v.is_floating_point() else v for k, v in weights.items()}

    # ------------------------------------------------------------------ progress
    @property
    def state(self) -> dict:
        return cohort_state(self.states)

    def finished(self, i: int) -> bool:
        return finished(self.states[i], self.configs[i])

    @property
    def done(self) -> bool:
        return all(self.finished(i) for i in range(len(self.configs)))

    @property
    def next_round(self) -> int:
        """The round the next `run_round` runs: the lowest next round of an unfinished member."""
        return min((s["next_round"] for i, s in enumerate(self.states) if not self.finished(i)),
                   default=max(c.rounds for c in self.configs) + 1)

    def rewind(self, i: int) -> dict[str, torch.Tensor]:
        """The weights member i's rounds >= 1 start from: its init, or under late rewinding its weights at k."""
        return self.inits[i] if self.configs[i].rewind_iteration == 0 else self.states[i]["rewind"]

    def ticket_of(self, i: int) -> int | None:
        seed = self.configs[i].seed
        return next((j for j, c in enumerate(self.configs) if c.seed == seed and c.is_ticket), None)

    # ------------------------------------------------------------------ one round
    def run_round(self) -> dict[int, RoundResult]:
        """Run the next round for every member due there; {member index: what its round leaves behind}."""
        if self.done:
            raise RuntimeError("cohort is finished")
        r = self.next_round
        due = [i for i, s in enumerate(self.states) if not self.finished(i) and s["next_round"] == r]
        replay = [i for i in self._replays(r) if i not in due]
        began = time.perf_counter()
        parts, produced = [], {}
        chosen: dict[int, dict] = {}
        for i in sorted(due + replay, key=lambda i: (not self.configs[i].is_ticket, i)):  # tickets first: re-init
            cfg, state = self.configs[i], self.states[i]                              # and shuffle read their masks
            if i in replay:  # finished round r before a crash: trains again beside the others, result unused
                masks, start = unpack_masks(state["masks"]), self._start_of(i, r)
                chosen[i] = masks
                parts.append(Participant(i, masks, start, cfg.round_start(r), STREAM_DATA, True, False, replay=True))
                continue
            late = cfg.rewind_iteration > 0
            if r > 0 and late and cfg.start == "rewind" and state["rewind"] is None:
                ticket = self.ticket_of(i)  # a rider without a dense round: the ticket's rewind point
                produced[i] = state["rewind"] = self.states[ticket]["rewind"]
            masks, start = self._mask_and_start(i, r, chosen)
            chosen[i] = masks
            capture = cfg.rewind_iteration if (r == 0 and late and state["rewind"] is None) else None
            parts.append(Participant(i, masks, start, cfg.round_start(r), STREAM_DATA, True,
                                     cfg.save_early_stop, capture))
        copies, later = [], []  # instability copies: trained beside the others, or from W_k once it is known
        for p in parts:
            cfg = self.configs[p.member]
            if not cfg.measures_instability(r):
                continue
            dense_late = r == 0 and cfg.rewind_iteration > 0  # the dense pair starts at W_k, at iteration k
            start = self.states[p.member]["rewind"] if dense_late else p.start
            at = cfg.rewind_iteration if dense_late else p.start_iteration
            copy = Participant(p.member, p.masks, start, at, STREAM_COPY_DATA, False, False)
            (copies if start is not None else later).append(copy)
        self._train(r, parts + copies)
        if later:
            for c in later:
                c.start = next(p for p in parts if p.member == c.member and not p.replay).out["rewind"]
            self._train(r, later)
            copies += later
        seconds = time.perf_counter() - began
        results = {}
        parts = [p for p in parts if not p.replay]
        self.last_trained = {p.member: p.out["trained"] for p in parts}  # dense, as trained (for inspection)
        for p in parts:
            i, cfg, state = p.member, self.configs[p.member], self.states[p.member]
            record = self._record(i, r, p.masks, p.out["history"], seconds, p.out["steps"])
            if p.out.get("rewind") is not None:
                produced[i] = state["rewind"] = p.out["rewind"]
            copy = next((c for c in copies if c.member == i), None)
            if copy is not None:
                record["instability"] = self._instability(p, copy)
            packed = pack_masks(p.masks)
            trained = compact(p.out["trained"], p.masks)
            state["masks"], state["trained"] = packed, trained
            if r == 0 and cfg.method == "one-shot":
                state["dense_trained"] = trained
            state["next_round"] = r + 1
            if record["diverged"]:
                state["diverged_round"] = r
            if "ticket_masks" in state:  # handed over by a resume; used now
                state["ticket_masks"].pop(r, None)
                if not state["ticket_masks"]:
                    del state["ticket_masks"]
            es = p.out.get("early_stop")
            results[i] = RoundResult(record, packed, trained, None if es is None else compact(es, p.masks),
                                     produced.get(i))
        return results

    def run_results(self):
        """Every remaining round's {member index: RoundResult}, one round at a time."""
        while not self.done:
            yield self.run_round()

    def _replays(self, r: int) -> list[int]:
        """Members that finished round r although others of the cohort did not (a crash between two members'
        round files). They train round r again beside the lagging ones, results unused, so the lagging
        members' round runs in the same company as it would have, bitwise on the CPU. (Only one round ahead:
        a member's state holds its latest mask; a member further ahead is left out, and the lagging round's
        numbers then differ from an undisturbed run by float rounding only.)"""
        return [i for i, (c, s) in enumerate(zip(self.configs, self.states))
                if s["next_round"] == r + 1 and c.first_round <= r
                and s.get("diverged_round") in (None, r)]

    def _start_of(self, i: int, r: int) -> dict[str, torch.Tensor]:
        """The weights member i's round r starts from: the init (round 0, pruning at initialization), the
        rewind point, or a fresh initialization of its own for the round (re-init and its ablations)."""
        cfg = self.configs[i]
        if r > 0 and cfg.start == "fresh":
            return self._cast(cpu_state(build_model(cfg.plan_conv, cfg.plan_fc, self.split.in_shape, cfg.activation,
                                                    generator(cfg.seed, STREAM_REINIT, r))))
        return self.inits[i] if r == 0 or cfg.start == "init" else self.rewind(i)

    def _mask_and_start(self, i: int, r: int, chosen: dict[int, dict]):
        """Member i's mask of round r and the weights its training starts from (`chosen`: this round's masks
        of the members already planned, tickets first)."""
        cfg = self.configs[i]
        if r == 0:
            return dense_masks(self._layer_init(i)), self.inits[i]
        masks = self._source_masks(i, r, chosen)
        if cfg.ablation == "shuffle":  # the same per-layer counts, at random places; each method its own draw
            masks = shuffle_within_layers(masks, generator(cfg.seed, STREAM_SHUFFLE, r, METHODS.index(cfg.method)))
        return masks, self._start_of(i, r)

    def _layer_init(self, i: int) -> dict[str, torch.Tensor]:
        return _layer_weights(self.inits[i], self.kinds)

    def _source_masks(self, i: int, r: int, chosen: dict[int, dict]) -> dict[str, torch.Tensor]:
        """Member i's round-r mask before a shuffle: its ticket's, its pruning-at-init method's, random
        pruning's, or its own IMP / one-shot step (with inverted scores for the ticket's inversion)."""
        cfg, s = self.configs[i], self.states[i]
        if cfg.mask_source == "ticket":
            return self._ticket_masks(i, r, chosen)
        if cfg.method in AT_INIT:  # the initialization pruned to the ticket's round-r count, trained 0 -> T
            return self._at_init_masks(i, r)
        if cfg.method == "random-prune":  # the ticket's count (per layer, or in total under global pruning)
            return self._random_masks(i, r)
        invert = cfg.ablation == "invert"
        weights = self._layer_init(i)
        if cfg.method == "one-shot":
            dense = _layer_weights(expand(s["dense_trained"], dense_masks(weights)), self.kinds)
            ones = dense_masks(dense)
            if cfg.pruning == "global":
                total = sum(m.numel() for m in ones.values())
                return global_magnitude_prune(dense, ones, count=total - alive_after(total, cfg.prune_rate_fc, r),
                                              invert=invert)
            targets = {n: alive_after(m.numel(), self.rates[n], r) for n, m in ones.items()}
            return magnitude_prune_to(dense, ones, targets, invert=invert)
        previous = dense_masks(weights) if r == 1 else unpack_masks(s["masks"])
        trained = _layer_weights(expand(s["trained"], previous), self.kinds)
        if cfg.pruning == "global":
            return global_magnitude_prune(trained, previous, rate=cfg.prune_rate_fc, invert=invert)
        return magnitude_prune(trained, previous, self.rates, invert=invert)

    def _random_masks(self, i: int, r: int) -> dict[str, torch.Tensor]:
        """Random pruning's round-r mask: round by round from the dense mask, each round's draw its own stream.
        The random-prune member continues from its latest mask (round r - 1's); its ablations redo the (cheap)
        chain."""
        cfg = self.configs[i]
        own = cfg.ablation == "" and r > cfg.first_round
        masks = unpack_masks(self.states[i]["masks"]) if own else dense_masks(self._layer_init(i))
        for q in range(r if own else 1, r + 1):
            draw = generator(cfg.seed, STREAM_RANDOM_PRUNE, q)
            masks = (global_random_prune(masks, cfg.prune_rate_fc, draw) if cfg.pruning == "global"
                     else random_prune(masks, self.rates, draw))
        return masks

    def ladder_count(self, r: int) -> int:
        """How many prunable weights the ticket keeps in round r: the sum of the per-layer counts (layer-wise
        pruning) or the global count (global pruning); the same number for every method of the cohort."""
        cfg, sizes = self.recipe, {n: self.inits[0][f"{n}.weight"].numel() for n in self.kinds}
        if cfg.pruning == "global":
            return alive_after(sum(sizes.values()), cfg.prune_rate_fc, r)
        return sum(alive_after(size, self.rates[n], r) for n, size in sizes.items())

    def _at_init_masks(self, i: int, r: int) -> dict[str, torch.Tensor]:
        """Member i's mask of round r by its pruning-at-initialization method, kept to the ticket's count (the
        inversion ablation: the lowest scores kept). Scores are shared by the members of one seed and method."""
        cfg = self.configs[i]
        ones = dense_masks(self._layer_init(i))
        keep, invert = self.ladder_count(r), cfg.ablation == "invert"
        if cfg.method == "synflow":  # iterative: its schedule ends at this round's count, so redone per round
            key = ("synflow", cfg.seed, r, invert)
            if key not in self._scores:
                self._scores = {k: v for k, v in self._scores.items() if k[0] != "synflow" or k[2] == r}
                masks = synflow_masks(self._scoring_model(i), self.kinds, self.split.in_shape, keep, invert=invert)
                self._scores[key] = {n: m.cpu() for n, m in masks.items()}
            return self._scores[key]
        key = (cfg.method, cfg.seed, cfg.score_batches)  # scores at init do not depend on the round
        if key not in self._scores:
            model = self._scoring_model(i)
            if cfg.method in ("snip", "grasp"):
                gen = generator(cfg.seed, STREAM_SCORE, 0)
                idx = epoch_batches(len(self.split.x_train), cfg.batch_size, gen, self.device)[:cfg.score_batches]
                chunk = self.eval_chunk(1)  # a batch larger than the budget is scored in pieces (the same sum)
                batches = [(self.split.x_train[b[a:a + chunk]], self.split.y_train[b[a:a + chunk]])
                           for b in idx for a in range(0, len(b), chunk)]
                scores = (snip_scores if cfg.method == "snip" else grasp_scores)(model, self.kinds, batches)
            else:
                scores = magnitude_scores(model, self.kinds)
            self._scores[key] = {n: v.cpu() for n, v in scores.items()}
        return keep_top(self._scores[key], ones, keep, invert)

    def _scoring_model(self, i: int) -> torch.nn.Module:
        """Member i's net at its initialization, on the cohort's device, for a scorer to use."""
        cfg = self.configs[i]
        model = build_model(cfg.plan_conv, cfg.plan_fc, self.split.in_shape, cfg.activation).to(self.dtype)
        model.load_state_dict(self.inits[i])
        return model.to(self.device)

    def _ticket_masks(self, i: int, r: int, chosen: dict[int, dict]) -> dict[str, torch.Tensor]:
        """The round-r mask of member i's ticket: chosen this round, or (after a resume that left the ticket
        ahead) its latest mask, or one the resume handed over from the ticket's round files."""
        t = self.ticket_of(i)
        if t in chosen:
            return chosen[t]
        if self.states[t]["next_round"] == r + 1:
            return unpack_masks(self.states[t]["masks"])
        given = self.states[i].get("ticket_masks") or {}
        if r in given:
            return unpack_masks(given[r])
        raise RuntimeError(f"member {self.configs[i].key}: the ticket's round-{r} mask is not available")

    # ------------------------------------------------------------------ training, vectorized
    def _train(self, r: int, parts: list[Participant]) -> None:
        """Train every participant's masked net from its start over its iterations start+1..T in lockstep on
        the absolute iteration axis, evaluating at the multiples of `eval_every` after its start.

        Participants are grouped by the iteration their round starts at; each group's parameters are stacked
        leaf tensors (concatenated into the vectorized model only when the round has several groups), under one
        fused `torch.optim.Adam`: its step count is per group, hence per member (the protocol's optimizer,
        exactly), and a group that has not started yet simply has no gradient, so Adam leaves its weights,
        moments and step count as they are."""
        cfg, split, dev = self.recipe, self.split, self.device
        parts.sort(key=lambda p: p.start_iteration)  # groups of equal start are contiguous (stable: order kept)
        P = len(parts)
        group_starts = sorted({p.start_iteration for p in parts})
        groups = [[p for p in parts if p.start_iteration == s] for s in group_starts]
        leaves = [{k: torch.stack([p.start[k] for p in g]).to(dev).requires_grad_(True) for k in self.param_keys}
                  for g in groups]
        buffers = {k: torch.stack([p.start[k] for p in parts]).to(dev) for k in self.state_keys
                   if k not in self.param_keys}  # BatchNorm statistics, updated in place by the forward pass
        layer_keys = [f"{n}.weight" for n in self.kinds]
        weights = [leaves[g][k] for g in range(len(groups)) for k in layer_keys]
        masks = [torch.stack([p.masks[n] for p in group]).to(dev, self.dtype) for group in groups for n in self.kinds]
        sparse = any(not bool(p.masks[n].all()) for p in parts for n in self.kinds)
        if sparse:
            with torch.no_grad():
                torch._foreach_mul_(weights, masks)
        optimizer = torch.optim.Adam([t for group in leaves for t in group.values()], lr=cfg.learning_rate,
                                     fused=dev.type in ("cuda", "cpu", "mps"))

        def stacked() -> dict[str, torch.Tensor]:
            if len(leaves) == 1:
                return {**leaves[0], **buffers}
            return {**{k: torch.cat([group[k] for group in leaves]) for k in self.param_keys}, **buffers}

        starts = [p.start_iteration for p in parts]
        first, stop, batch = min(starts), cfg.iterations, cfg.batch_size
        gens = [generator(self.configs[p.member].seed, p.stream, r) for p in parts]
        evaluating = any(p.evaluating for p in parts)
        keep_es = torch.tensor([p.keep_es for p in parts], device=dev)
        any_es = bool(keep_es.any())
        running = torch.zeros(P, device=dev, dtype=self.dtype)
        points: list[torch.Tensor] = []
        point_iters: list[int] = []
        best_loss = torch.full((P,), float("inf"), device=dev, dtype=self.dtype)
        best = {k: t.detach().clone() for k, t in stacked().items()} if any_es else None
        captures = {p.capture_at for p in parts if p.capture_at is not None}
        captured: dict[int, dict] = {}
        masks_by_flags: dict[tuple, torch.Tensor] = {}
        for it, idx in self._batch_indices(gens, first):
            if it == stop:
                break
            waiting = [q for q, s in enumerate(starts) if s > it]  # participants whose round starts later
            if waiting:
                flags = tuple(s <= it for s in starts)  # changes only where a group starts: made once each
                started = masks_by_flags.get(flags)
                if started is None:
                    started = masks_by_flags[flags] = torch.tensor(flags, device=dev)
                kept = {k: b.clone() for k, b in buffers.items()}
            optimizer.zero_grad(set_to_none=True)
            with numerics.autocast(cfg.precision, dev):
                logits = self.net.forward(stacked(), split.x_train[idx], P, shared=False, training=True)
            losses = F.cross_entropy(logits.to(self.dtype).flatten(0, 1), split.y_train[idx].flatten(),
                                     reduction="none").view(P, batch).mean(1)
            losses.sum().backward()  # member q's gradient depends on member q's loss only
            for g, start in enumerate(group_starts):
                if start > it:
                    for t in leaves[g].values():
                        t.grad = None  # not started: no update, no moment, no step
            optimizer.step()
            with torch.no_grad():
                if waiting:
                    for k, old in kept.items():  # BatchNorm statistics of members not yet started stay put
                        buffers[k].copy_(torch.where(started.view((-1,) + (1,) * (old.dim() - 1)), buffers[k], old))
                if sparse:
                    torch._foreach_mul_(weights, masks)  # pruned weights stay exactly zero
                running += torch.where(started, losses.detach(), 0.0) if waiting else losses.detach()
            done = it + 1
            if done in captures:
                captured[done] = {k: t.detach().to("cpu", copy=True) for k, t in stacked().items()}
            if done % cfg.eval_every == 0 and evaluating:
                with torch.no_grad():
                    now = stacked()
                val_loss, val_acc = self._evaluate(now, split.x_val, split.y_val, P)
                test_loss, test_acc = self._evaluate(now, split.x_test, split.y_test, P)
                points.append(torch.stack([running / cfg.eval_every, val_loss, val_acc, test_loss, test_acc], 1))
                point_iters.append(done)
                running = torch.zeros(P, device=dev, dtype=self.dtype)
                if any_es:  # keep each member's weights at its lowest finite validation loss, without a host sync
                    mine = torch.tensor([s < done for s in starts], device=dev) & keep_es
                    better = mine & torch.isfinite(val_loss) & (val_loss < best_loss)
                    best_loss = torch.where(better, val_loss, best_loss)
                    with torch.no_grad():
                        for k, b in best.items():
                            b.copy_(torch.where(better.view((-1,) + (1,) * (b.dim() - 1)), now[k], b))
                if self.progress:
                    self.progress(r, done)
        history = torch.stack(points).to("cpu", torch.float64).numpy() if points else None
        with torch.no_grad():
            last = stacked()
        final = {k: t.detach().to("cpu") for k, t in last.items()}
        found = torch.isfinite(best_loss).cpu().tolist()
        best_cpu = {k: b.to("cpu") for k, b in best.items()} if any_es else None
        for q, p in enumerate(parts):
            group = leaves[group_starts.index(p.start_iteration)]
            step = optimizer.state.get(group[self.param_keys[0]], {}).get("step")
            p.out["steps"] = 0 if step is None else int(step)  # the optimizer updates really taken
            p.out["trained"] = {k: final[k][q].clone() for k in self.state_keys}
            p.out["device_weights"] = {k: last[k][q].detach() for k in self.state_keys}
            if p.evaluating:
                rows = [e for e, it in enumerate(point_iters) if it > p.start_iteration]
                p.out["history"] = history[rows, q, :]
            if p.keep_es and found[q]:
                p.out["early_stop"] = {k: best_cpu[k][q].clone() for k in self.state_keys}
            if p.capture_at is not None:
                p.out["rewind"] = {k: captured[p.capture_at][k][q].clone() for k in self.state_keys}

    def _batch_indices(self, gens: list[torch.Generator], first: int):
        """(it, the (P, batch) indices of iteration it + 1) for it = first, first + 1, ...: batch i of each
        participant's data order (its generator's epochs of shuffled indices, partial batch dropped) is used
        at iteration i, so a round rewound to k sees exactly what iterations k+1.. of that order hold."""
        n, batch = len(self.split.x_train), self.recipe.batch_size
        per_epoch = n // batch
        for _ in range(first // per_epoch):  # advance every order to the epoch holding iteration first + 1
            for g in gens:
                torch.randperm(n, generator=g)
        it = first
        while True:
            perms = torch.stack([torch.randperm(n, generator=g)[:per_epoch * batch] for g in gens])
            perms = perms.view(len(gens), per_epoch, batch).to(self.device, non_blocking=True)
            for j in range(it % per_epoch, per_epoch):
                yield it, perms[:, j]
                it += 1

    def eval_chunk(self, members: int) -> int:
        """Examples evaluated at once for `members` stacked members, within the memory budget (`budget`)."""
        return eval_chunk(self.template, self.split.in_shape, members, self.dtype.itemsize, self.budget,
                          grouped=self.device.type == "cuda")

    @torch.inference_mode()
    def _evaluate(self, tensors, x: torch.Tensor, y: torch.Tensor, members: int):
        """Mean loss and accuracy of every member over a whole split, as (P,) device tensors (no host sync)."""
        chunk = self.eval_chunk(members)
        loss = torch.zeros(members, device=x.device, dtype=self.dtype)
        correct = torch.zeros(members, device=x.device, dtype=self.dtype)
        for start in range(0, len(x), chunk):
            xs, target = x[start:start + chunk], y[start:start + chunk]
            with numerics.autocast(self.recipe.precision, x.device):
                logits = self.net.forward(tensors, xs, members, shared=True, training=False)
            loss += F.cross_entropy(logits.to(self.dtype).flatten(0, 1), target.repeat(members),
                                    reduction="none").view(members, -1).sum(1)
            correct += (logits.argmax(2) == target).sum(1)
        return loss / len(x), correct / len(x)

    def _instability(self, ticket: Participant, copy: Participant) -> dict:
        """The linear path between a ticket's trained weights and its copy's (same start, another data order)."""
        began = time.perf_counter()
        if self._single is None:
            cfg = self.recipe
            self._single = build_model(cfg.plan_conv, cfg.plan_fc, self.split.in_shape, cfg.activation,
                                       device=self.device).to(self.dtype)

        chunk = self.eval_chunk(1)

        def measure(model, x, y):
            return evaluate(model, x, y, chunk=chunk, precision=self.recipe.precision)
        masks = {n: m.to(self.device) for n, m in ticket.masks.items()}
        path = evaluate_path(self._single, ticket.out["device_weights"], copy.out["device_weights"], masks,
                             self.split, self.configs[ticket.member].instability_points, measure)
        return {**path, "seconds": time.perf_counter() - began}

    def _record(self, i: int, r: int, masks, history: np.ndarray, seconds: float, steps: int) -> dict:
        cfg = self.configs[i]
        values = {name: history[:, k].tolist() for k, name in enumerate(METRICS)}
        iterations = cfg.eval_iterations(r)
        assert len(iterations) == len(history)
        es = early_stop_index(values["val_loss"])
        return {"round": r, "method": cfg.label, "sparsity": density(masks),
                "layer_sparsity": layer_density(masks), "iterations": iterations, **values,
                "early_stop_index": es, "early_stop_iteration": None if es is None else iterations[es],
                **{f"{m}_at_early_stop": math.nan if es is None else values[m][es] for m in METRICS},
                **{f"final_{m}": values[m][-1] for m in METRICS},
                "diverged": diverged(values), "start_iteration": cfg.round_start(r),
                "steps": steps, "seconds": seconds, "device": str(self.device),
                "device_name": device_name(self.device)}


def initial_weights(config: TrajectoryConfig, in_shape=None) -> dict[str, torch.Tensor]:
    """The trajectory's initialisation, rebuilt from its seed (never stored: it is the seed's to give)."""
    from lth_ray.core.models.plan import in_shape_of
    return cpu_state(build_model(config.plan_conv, config.plan_fc, in_shape or in_shape_of(config.dataset),
                                 config.activation, generator(config.seed, STREAM_INIT)))


def _layer_weights(state: dict[str, torch.Tensor], kinds: dict[str, str]) -> dict[str, torch.Tensor]:
    return {n: state[f"{n}.weight"] for n in kinds}
