"""Planning a round: which members train, with which mask, from which weights. Plain PyTorch, no Ray.

Each member's method (`lth_ray.core.methods`) chooses its mask; the planner asks it, applies the shuffle
ablation, and picks the start point (init, rewind point W_k, or a fresh init) and the instability copies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from lth_ray.core.data.loading import Split, epoch_batches
from lth_ray.core.engine.state import finished
from lth_ray.core.engine.training import Participant
from lth_ray.core.engine.weights import build_net, fresh_weights
from lth_ray.core.methods import MemberView, method_of, method_salt
from lth_ray.core.methods.member import (
    first_round,
    is_ticket,
    mask_source,
    retrains_trained,
    round_start,
    start_of,
)
from lth_ray.core.pruning.masks import alive_after, dense_masks, expand, shuffle_within_layers, unpack_masks
from lth_ray.core.spec.config import TrajectoryConfig
from lth_ray.core.spec.state import MemberState
from lth_ray.core.spec.streams import STREAM_COPY_DATA, STREAM_DATA, STREAM_SCORE, STREAM_SHUFFLE, generator


class RoundPlanner:
    """Chooses the participants of a cohort's rounds from the members' states (which it reads, never writes,
    except for handing a rider its ticket's rewind point)."""

    def __init__(
        self,
        configs: Sequence[TrajectoryConfig],
        members: list[MemberState],
        inits: list[dict],
        kinds: dict[str, str],
        rates: dict[str, float],
        split: Split,
        dtype: torch.dtype,
        eval_chunk: Callable[[int], int],
        cast: Callable[[dict], dict],
    ):
        self.configs, self.members, self.inits = configs, members, inits
        self.kinds, self.rates, self.split, self.dtype = kinds, rates, split, dtype
        self.device = split.x_train.device
        self.eval_chunk, self.cast = eval_chunk, cast
        self.scores: dict[tuple, dict] = {}  # scores (masks, for SynFlow) at init by (method, seed, ...)
        # member -> layers drawn fresh (a retrain branch's output layer, `branches.run.fresh_output`): they replace
        # those layers in every start point, and a mask that does not fit one (another class count) is dense there
        self.fresh: dict[int, dict[str, torch.Tensor]] = {}

    def finished(self, i: int) -> bool:
        return finished(self.members[i], self.configs[i])

    def rewind(self, i: int) -> dict[str, torch.Tensor]:
        """The weights member i's rounds >= 1 start from: its init, or under late rewinding its weights at k."""
        if self.configs[i].rewind_iteration == 0:
            return self.inits[i]
        rewind = self.members[i].rewind
        assert rewind is not None, "late rewinding keeps the weights at k once they exist"
        return rewind

    def ticket_of(self, i: int) -> int | None:
        seed = self.configs[i].seed
        return next((j for j, c in enumerate(self.configs) if c.seed == seed and is_ticket(c)), None)

    def _ticket(self, i: int) -> int:
        """Member i's ticket, which `check_cohort` made sure is in the cohort wherever it is needed."""
        t = self.ticket_of(i)
        if t is None:
            raise ValueError(f"member {i} ({self.configs[i].key}) has no ticket in its cohort")
        return t

    def participants(self, r: int, produced: dict[int, dict]) -> list[Participant]:
        """The members due in round r with their masks and starts, tickets first (re-init and the ticket's
        shuffle read their masks), and the members replaying round r (`_replays`)."""
        due = [i for i, m in enumerate(self.members) if not self.finished(i) and m.next_round == r]
        replay = [i for i in replays(self.configs, self.members, r) if i not in due]
        parts, chosen = [], {}
        for i in sorted(due + replay, key=lambda i: (not is_ticket(self.configs[i]), i)):
            cfg, state = self.configs[i], self.members[i]
            if i in replay:  # finished round r before a crash: trains again beside the others, result unused
                assert state.masks is not None, "a replayed round follows a finished one"
                chosen[i] = masks = unpack_masks(state.masks)
                parts.append(
                    Participant(
                        i,
                        cfg.seed,
                        masks,
                        self.start_of(i, r, masks),
                        round_start(cfg, r),
                        STREAM_DATA,
                        True,
                        False,
                        replay=True,
                        final_rate=final_rate(self.configs[i], r),
                    )
                )
                continue
            late = cfg.rewind_iteration > 0
            if r > 0 and late and start_of(cfg) == "rewind" and state.rewind is None:
                state.rewind = self.members[self._ticket(i)].rewind  # a rider: the ticket's W_k
                if state.rewind is not None:
                    produced[i] = state.rewind
            chosen[i] = masks = self.masks(i, r, chosen)
            capture = cfg.rewind_iteration if (r == 0 and late and state.rewind is None) else None
            parts.append(
                Participant(
                    i,
                    cfg.seed,
                    masks,
                    self.start_of(i, r, masks),
                    round_start(cfg, r),
                    STREAM_DATA,
                    True,
                    cfg.save_early_stop,
                    capture,
                    final_rate=final_rate(self.configs[i], r),
                )
            )
        return parts

    def copies(self, r: int, parts: list[Participant]) -> list[Participant]:
        """Instability copies of the round's tickets: the same mask and start, another data order. The dense
        round's pair under late rewinding starts at W_k, at iteration k (start None while W_k is unknown)."""
        copies = []
        for p in parts:
            cfg = self.configs[p.member]
            if p.replay or not cfg.measures_instability(r):
                continue
            dense_late = r == 0 and cfg.rewind_iteration > 0
            start = self.members[p.member].rewind if dense_late else p.start
            at = cfg.rewind_iteration if dense_late else p.start_iteration
            copies.append(
                Participant(
                    p.member, cfg.seed, p.masks, start, at, STREAM_COPY_DATA, False, False, final_rate=p.final_rate
                )
            )
        return copies

    def start_of(self, i: int, r: int, masks: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The weights member i's round r starts from: the init (round 0, pruning at initialization), the
        rewind point, or a fresh initialization of its own for the round (re-init and its ablations); or the
        trained weights (lr-rewind, fine-tune); as its method makes them for the round's `masks` (an init variant).
        Layers drawn fresh (`fresh`) replace theirs in each."""
        cfg = self.configs[i]
        if r > 0 and start_of(cfg) == "fresh":
            start = self.cast(fresh_weights(cfg, self.split.in_shape, r))
        elif r > 0 and retrains_trained(cfg):
            start = self.trained_start(i)
        else:
            start = self.inits[i] if r == 0 or start_of(cfg) == "init" else self.rewind(i)
        method = method_of(cfg.method)
        if r > 0 and method.transforms_start:
            chosen = self.masks(i, r, {}) if masks is None else masks
            start = method.start_weights(self.view(i), r, start, chosen)
        return {**start, **self.fresh[i]} if i in self.fresh else start

    def trained_start(self, i: int) -> dict[str, torch.Tensor]:
        """The trained weights member i's mask of the round was chosen from, where lr-rewind and fine-tune go
        on from (training masks them by the new mask): the previous round's (IMP), or the dense round's (one-shot,
        which prunes those every round). A replayed round gets its own round's: its results are unused."""
        state = self.members[i]
        if method_of(self.configs[i].method).keeps_dense_trained:
            assert state.dense_trained is not None, "one-shot keeps its dense round's trained weights"
            return expand(state.dense_trained, dense_masks(self.view(i).layer_weights()))
        assert state.trained is not None and state.masks is not None, "a round >= 1 follows a trained round"
        return expand(state.trained, unpack_masks(state.masks))

    def masks(self, i: int, r: int, chosen: dict[int, dict]) -> dict[str, torch.Tensor]:
        """Member i's mask of round r: dense in round 0; else its ticket's or its method's, then shuffled
        within each layer for the shuffle ablation (the same per-layer counts; each method its own draw)."""
        cfg = self.configs[i]
        if r == 0:
            return fit_fresh(dense_masks(self.view(i).layer_weights()), self.fresh.get(i, {}))
        if mask_source(cfg) == "ticket":
            masks = self.ticket_masks(i, r, chosen)
        else:
            masks = method_of(cfg.method).masks(self.view(i), r, invert=cfg.ablation == "invert")
        if cfg.ablation == "shuffle":
            masks = shuffle_within_layers(masks, generator(cfg.seed, STREAM_SHUFFLE, r, method_salt(cfg.method)))
        return fit_fresh(masks, self.fresh.get(i, {}))

    def mask_and_start(self, i: int, r: int, chosen: dict[int, dict]):
        """Member i's mask of round r and the weights its training starts from (for inspection and tests)."""
        masks = self.masks(i, r, chosen)
        return masks, self.start_of(i, r, masks)

    def ticket_masks(self, i: int, r: int, chosen: dict[int, dict]) -> dict[str, torch.Tensor]:
        """The round-r mask of member i's ticket: chosen this round, or (after a resume that left the ticket
        ahead) its latest mask, or one the resume (or a branch, whose ticket is in the trunk) handed over from the
        ticket's round files."""
        t = self.ticket_of(i)
        if t is not None and t in chosen:
            return chosen[t]
        if t is not None and self.members[t].next_round == r + 1:
            latest = self.members[t].masks
            assert latest is not None, "a ticket past round r has its masks"
            return unpack_masks(latest)
        given = self.members[i].ticket_masks or {}
        if r in given:
            return unpack_masks(given[r])
        raise RuntimeError(f"member {self.configs[i].key}: the ticket's round-{r} mask is not available")

    def view(self, i: int) -> MemberView:
        return MemberView(
            self.configs[i],
            self.members[i],
            self.inits[i],
            self.kinds,
            self.rates,
            self.ladder_count,
            lambda: scoring_model(self.configs[i], self.inits[i], self.split, self.dtype),
            lambda: scoring_batches(self.configs[i], self.split, self.eval_chunk(1)),
            self.split.in_shape,
            self.scores,
            self.device,
        )

    def ladder_count(self, r: int) -> int:
        """How many prunable weights the ticket keeps in round r: the sum of the per-layer counts (layer-wise
        pruning) or the global count (global pruning); the same number for every method of the cohort."""
        cfg, sizes = self.configs[0], {n: self.inits[0][f"{n}.weight"].numel() for n in self.kinds}
        if cfg.pruning == "global":
            return alive_after(sum(sizes.values()), cfg.prune_rate_fc, r)
        return sum(alive_after(size, self.rates[n], r) for n, size in sizes.items())


def fit_fresh(masks: dict[str, torch.Tensor], fresh: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The masks with a layer drawn fresh in another shape than its mask (the output layer of a ticket retrained
    on another class count) dense: the ticket has no mask for it."""
    return {
        n: torch.ones(fresh[f"{n}.weight"].shape, dtype=m.dtype, device=m.device)
        if f"{n}.weight" in fresh and fresh[f"{n}.weight"].shape != m.shape
        else m
        for n, m in masks.items()
    }


def scoring_model(config: TrajectoryConfig, init: dict[str, torch.Tensor], split: Split, dtype: torch.dtype):
    """A member's net at its initialization, on the split's device, for a scorer to use."""
    model = build_net(config, split.in_shape).to(dtype)
    model.load_state_dict(init)
    return model.to(split.x_train.device)


def scoring_batches(config: TrajectoryConfig, split: Split, chunk: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """SNIP's and GraSP's training batches: the first `score_batches` of the member's own scoring order; a
    batch larger than `chunk` (the memory budget's) is taken in pieces (the scorers' losses sum the same)."""
    gen = generator(config.seed, STREAM_SCORE, 0)
    idx = epoch_batches(len(split.x_train), config.batch_size, gen, split.x_train.device)[: config.score_batches]
    return [
        (split.x_train[b[a : a + chunk]], split.y_train[b[a : a + chunk]]) for b in idx for a in range(0, len(b), chunk)
    ]


def final_rate(config: TrajectoryConfig, r: int) -> bool:
    """Whether a member's round r trains at the schedule's final rate (fine-tuning its ticket)."""
    return r > 0 and config.retrain == "fine-tune" and retrains_trained(config)


def replays(configs: Sequence[TrajectoryConfig], members: Sequence[MemberState], r: int) -> list[int]:
    """Members that finished round r although others of the cohort did not (a crash between two members'
    round files). They train round r again beside the lagging ones, results unused, so the lagging
    members' round runs in the same company as it would have, bitwise on the CPU. (Only one round ahead:
    a member's state holds its latest mask; a member further ahead is left out, and the lagging round's
    numbers then differ from an undisturbed run by float rounding only.)"""
    return [
        i
        for i, (c, m) in enumerate(zip(configs, members))
        if m.next_round == r + 1 and first_round(c) <= r and m.diverged_round in (None, r)
    ]
