"""The IMP engine: a cohort of trajectories trained in lockstep as one vectorized model. Plain PyTorch, no Ray.

A cohort is S seeds x (a ticket and the members that ride with it), sharing one recipe (plan, data set,
iterations, batch size, learning rate, prune rates, rewinding, numerics). Each member keeps its own
initialization, mask, data order, optimizer state, evaluation history and early stop: per member the math is
exactly one trajectory of the protocol. A lone trajectory is a cohort of one (`trajectory.Trajectory`).

Round by round, every member's method (`lth_ray.core.methods`) picks its mask on the host, the ticket first
(its re-init baseline takes the ticket's round-r mask from memory); then all members of the round train
together (`training.Lockstep`): members that start later (under late rewinding the ticket trains k -> T, its
re-init 0 -> T) stay frozen until their first iteration. Instability copies of a ticket are members of the
round too, with their own data order (`instability`).

The cohort's state is a list of member states (`state.MemberState`); a cohort rebuilt from it continues
exactly where it stopped, bitwise on the CPU.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

import torch

from lth_ray.core.data.loading import Split
from lth_ray.core.engine import numerics
from lth_ray.core.engine.budget import budget_bytes, eval_chunk
from lth_ray.core.engine.evaluation import evaluate_stacked
from lth_ray.core.engine.instability import instability_record, statistics_batches
from lth_ray.core.engine.planning import RoundPlanner
from lth_ray.core.engine.records import RoundResult, round_record
from lth_ray.core.engine.state import check_cohort, check_state, cohort_state, finished, initial_state
from lth_ray.core.engine.training import Lockstep, Participant
from lth_ray.core.engine.weights import build_net, initial_weights
from lth_ray.core.methods import method_of
from lth_ray.core.methods.member import is_ticket
from lth_ray.core.models.cost import layer_costs, param_count, round_cost
from lth_ray.core.models.registry import model_entry, model_of
from lth_ray.core.models.stacked import StackedNet
from lth_ray.core.pruning.dynamics import mask_distance, sign_flips
from lth_ray.core.pruning.masks import compact, expand, layer_rates, pack_masks, unpack_masks
from lth_ray.core.spec.config import ConfigError, TrajectoryConfig
from lth_ray.core.spec.state import MemberState


class Cohort:
    """Drives the rounds of a cohort; `states` is what continuing needs, and nothing more."""

    def __init__(
        self,
        members: Sequence[TrajectoryConfig],
        split: Split,
        states: Sequence[dict | None] | None = None,
        progress: Callable[[int, int], None] | None = None,
        eval_memory_mb: int | None = None,
        tickets_elsewhere: bool = False,  # a branch's: its states carry what members take from their tickets
    ):
        self.configs = check_cohort(members, tickets_elsewhere)
        self.recipe = cfg = self.configs[0]
        self.dtype = numerics.dtype(cfg.precision)
        if split.x_train.dtype != self.dtype:  # fp64: the data in float64 too (a copy; the caller's is shared)
            split = dataclasses.replace(
                split, **{k: getattr(split, k).to(self.dtype) for k in ("x_train", "x_val", "x_test")}
            )
        self.split, self.device = split, split.x_train.device
        self.numerics = numerics.configure(cfg.precision, cfg.deterministic)
        self.budget = budget_bytes(self.device, eval_memory_mb)  # evaluation, scoring and instability paths
        self.template = build_net(cfg, split.in_shape, device="meta")
        model = model_entry(model_of(cfg))  # how its nets are built, stacked and pruned
        self.kinds = pruned_layers(model.prunable(self.template), cfg)
        self.costs, self.params = layer_costs(self.template, split.in_shape), param_count(self.template)
        self.rates = layer_rates(self.kinds, cfg.prune_rate_conv, cfg.prune_rate_fc)
        param_keys = [k for k, _ in self.template.named_parameters()]
        self.lockstep = Lockstep(
            stacked_model(model, self.template, self.device, cfg.precision),
            split,
            cfg,
            self.dtype,
            param_keys,
            list(self.template.state_dict()),
            list(self.kinds),
            lambda *a: self._evaluate(*a),
            progress,
            split.x_train.amin(dim=(0, 2, 3)) if cfg.augment != "none" else None,
        )
        self.inits = [self._cast(initial_weights(c, split.in_shape)) for c in self.configs]  # from the seeds
        given = list(states) if states is not None else [None] * len(self.configs)
        if len(given) != len(self.configs):
            raise ValueError(f"{len(given)} member states for a cohort of {len(self.configs)}")
        begun = [initial_state(c) if s is None else s for c, s in zip(self.configs, given)]
        for s, c in zip(begun, self.configs):
            check_state(s, c)
        self.members = [MemberState.from_dict(s) for s in begun]
        # the round whose mask each member's state holds (its latest): a mask distance needs round r - 1's
        self.mask_rounds: list[int | None] = [m.next_round - 1 if m.masks is not None else None for m in self.members]
        self.planner = RoundPlanner(
            self.configs,
            self.members,
            self.inits,
            self.kinds,
            self.rates,
            split,
            self.dtype,
            self.eval_chunk,
            self._cast,
        )
        self._single: torch.nn.Module | None = None
        self._chunks: dict[int, int] = {}  # eval_chunk by members: a ResNet's estimate traces a forward pass
        self.last_trained: dict[int, dict] = {}
        check_score_batches(self.configs, len(split.x_train) // cfg.batch_size)

    def _cast(self, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Floating tensors in the cohort's dtype (float64 under precision fp64; integer buffers as they are)."""
        return {k: v.to(self.dtype) if v.is_floating_point() else v for k, v in weights.items()}

    # ------------------------------------------------------------------ progress
    @property
    def states(self) -> list[dict]:
        """The member states as checkpoints store them (plain dicts, format 2)."""
        return [m.to_dict() for m in self.members]

    @property
    def state(self) -> dict:
        return cohort_state(self.states)

    def finished(self, i: int) -> bool:
        return finished(self.members[i], self.configs[i])

    @property
    def done(self) -> bool:
        return all(self.finished(i) for i in range(len(self.configs)))

    @property
    def next_round(self) -> int:
        """The round the next `run_round` runs: the lowest next round of an unfinished member."""
        return min(
            (m.next_round for i, m in enumerate(self.members) if not self.finished(i)),
            default=max(c.rounds for c in self.configs) + 1,
        )

    def rewind(self, i: int) -> dict[str, torch.Tensor]:
        """The weights member i's rounds >= 1 start from: its init, or under late rewinding its weights at k."""
        return self.planner.rewind(i)

    def ladder_count(self, r: int) -> int:
        """Prunable weights every method keeps in round r (the ticket's count)."""
        return self.planner.ladder_count(r)

    def run_results(self):
        """Every remaining round's {member index: RoundResult}, one round at a time."""
        while not self.done:
            yield self.run_round()

    # ------------------------------------------------------------------ one round
    def run_round(self) -> dict[int, RoundResult]:
        """Run the next round for every member due there; {member index: what its round leaves behind}."""
        if self.done:
            raise RuntimeError("cohort is finished")
        r, began = self.next_round, time.perf_counter()
        produced: dict[int, dict] = {}  # rewind points handed out this round (written once, with the round)
        parts = self.planner.participants(r, produced)
        copies = self.planner.copies(r, parts)
        ready = [c for c in copies if c.start is not None]
        self.lockstep.train(r, parts + ready)
        later = [c for c in copies if c.start is None]  # the dense pair under late rewinding starts at W_k
        if later:
            for c in later:
                c.start = next(p for p in parts if p.member == c.member and not p.replay).out["rewind"]
            self.lockstep.train(r, later)
        parts = [p for p in parts if not p.replay]
        self.last_trained = {p.member: p.out["trained"] for p in parts}  # dense, as trained (for inspection)
        seconds = time.perf_counter() - began
        return {
            p.member: self._finish(r, p, next((c for c in copies if c.member == p.member), None), seconds, produced)
            for p in parts
        }

    def _finish(
        self, r: int, p: Participant, copy: Participant | None, seconds: float, produced: dict[int, dict]
    ) -> RoundResult:
        """Member p's round r, recorded and folded into its state."""
        i, cfg, state = p.member, self.configs[p.member], self.members[p.member]
        record = round_record(cfg, r, p.masks, p.out["history"], seconds, p.out["steps"], self.device)
        previous = unpack_masks(state.masks) if state.masks is not None and self.mask_rounds[i] == r - 1 else None
        record.update(anatomy(p, previous), cost=round_cost(self.costs, p.masks, self.params))
        if p.out.get("rewind") is not None:
            produced[i] = state.rewind = p.out["rewind"]
        if copy is not None:
            record["instability"] = linear_path(
                self, r, cfg, p.out["device_weights"], copy.out["device_weights"], p.masks
            )
        if cfg.successive and is_ticket(cfg) and previous is not None and state.trained is not None:
            before = {k: v.to(self.device) for k, v in expand(state.trained, previous).items()}
            record["successive"] = linear_path(self, r, cfg, before, p.out["device_weights"], p.masks)
        packed, trained = pack_masks(p.masks), compact(p.out["trained"], p.masks)
        state.masks, state.trained = packed, trained
        if r == 0 and method_of(cfg.method).keeps_dense_trained:
            state.dense_trained = trained
        state.next_round, self.mask_rounds[i] = r + 1, r
        if record["diverged"]:
            state.diverged_round = r
        if state.ticket_masks:  # handed over by a resume; used now
            state.ticket_masks.pop(r, None)
        es = p.out.get("early_stop")
        return RoundResult(record, packed, trained, None if es is None else compact(es, p.masks), produced.get(i))

    # ------------------------------------------------------------------ evaluation
    def eval_chunk(self, members: int) -> int:
        """Examples evaluated at once for `members` stacked members, within the memory budget (`budget`)."""
        if members not in self._chunks:
            self._chunks[members] = eval_chunk(
                self.template,
                self.split.in_shape,
                members,
                self.dtype.itemsize,
                self.budget,
                grouped=self.device.type == "cuda",
            )
        return self._chunks[members]

    def _evaluate(self, tensors, x: torch.Tensor, y: torch.Tensor, members: int):
        """Mean loss and accuracy of every member over a whole split, as (P,) device tensors (no host sync)."""
        return evaluate_stacked(
            self.lockstep.net, tensors, x, y, members, self.eval_chunk(members), self.recipe.precision, self.dtype
        )


def linear_path(cohort: Cohort, r: int, cfg: TrajectoryConfig, a: dict, b: dict, masks: dict) -> dict:
    """The linear path from weights `a` to `b` under `masks` (device state dicts): a ticket and its copy (same
    start, another data order: instability), or round r - 1's trained ticket under round r's mask and round
    r's (successive rounds, Paul et al. 2023). Under `instability_bn='recompute'` each point's BatchNorm
    statistics are its own, from training batches, and the record also holds the barriers with interpolated
    statistics."""
    if cohort._single is None:
        cohort._single = build_net(cohort.recipe, cohort.split.in_shape, device=cohort.device).to(cohort.dtype)
    statistics = None
    if cfg.instability_bn == "recompute":
        batch = min(cfg.batch_size, cohort.eval_chunk(1))
        statistics = statistics_batches(cohort.split, cfg.seed, r, batch, cohort.device)
    ends = (
        cohort._single,
        a,
        b,
        masks,
        cohort.split,
        cfg.instability_points,
        cohort.eval_chunk(1),
        cohort.recipe.precision,
    )
    record = instability_record(*ends, statistics)
    if statistics is not None:  # the interpolated statistics' barriers beside, for comparison (same pair)
        plain = instability_record(*ends)
        record.update(
            interpolated_error_barrier=plain["error_barrier"], interpolated_loss_barrier=plain["loss_barrier"]
        )
    return record


def pruned_layers(prunable: dict[str, str], config: TrajectoryConfig) -> dict[str, str]:
    """The layers the cohort prunes: the model's prunable layers but those `prune_ignore` leaves dense (OpenLTH's
    `pruning_layers_to_ignore`); an ignored name the model does not have is an error listing the ones it has."""
    for name in config.prune_ignore:
        if name not in prunable:
            raise ConfigError(
                f"prune_ignore: {name!r} is not a prunable layer of {config.arch}; allowed: {', '.join(prunable)}"
            )
    return {n: kind for n, kind in prunable.items() if n not in config.prune_ignore}


def stacked_model(model, template: torch.nn.Module, device: torch.device, precision: str):
    """The cohort's stacked forward; a plan net's grouped convolutions run channels-last on a GPU under tf32 and
    bf16, whose tensor-core kernels want NHWC (fp32 with TF32 off, and the CPU, keep NCHW)."""
    stacked = model.stacked(template)
    if isinstance(stacked, StackedNet):
        stacked.channels_last = device.type == "cuda" and precision in ("tf32", "bf16")
    return stacked


def check_score_batches(configs: Sequence[TrajectoryConfig], per_epoch: int) -> None:
    """A scorer's training batches come from one epoch: at most `per_epoch` of them."""
    for c in configs:
        if method_of(c.method).scores_from_data and c.score_batches > per_epoch:
            raise ConfigError(
                f"score_batches={c.score_batches} exceeds one epoch of {per_epoch} batches of "
                f"{c.batch_size}; allowed: 1..{per_epoch}"
            )


def anatomy(p: Participant, previous: dict | None) -> dict:
    """A round's record fields on what its subnetwork is made of: its accuracy at the start weights with its mask
    (before any training: Zhou et al.'s supermask accuracy for an untrained start), the mask's distance to the
    member's previous round's (None without one), and the share of kept weights whose sign training flipped."""
    val_loss, val_acc, test_loss, test_acc = p.out["start_metrics"]
    distance, layer_distance = mask_distance(previous, p.masks) if previous is not None else (None, None)
    assert p.start is not None, "a finished participant had its start weights"
    flips, layer_flips = sign_flips(p.start, p.out["trained"], p.masks)
    return {
        "start_val_loss": val_loss,
        "start_val_acc": val_acc,
        "start_test_loss": test_loss,
        "start_test_acc": test_acc,
        "mask_distance": distance,
        "layer_mask_distance": layer_distance,
        "sign_flip_share": flips,
        "layer_sign_flip_share": layer_flips,
    }
