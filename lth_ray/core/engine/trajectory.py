"""One IMP trajectory: a cohort of one, with a simple face; and how a cohort's members are composed. No Ray.

The engine is `cohort.Cohort`: a lone trajectory is a cohort of one member, and `Trajectory` is its
simple face. A trajectory's whole state is a small plain dict of tensors, numbers and strings
(`Trajectory.state`), saved after each round; a trajectory rebuilt from it continues exactly where it stopped.
Every random draw comes from a generator seeded by (seed, purpose, round), so a round's result depends only
on that state: a resumed trajectory reproduces an uninterrupted one bitwise on the CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from lth_ray.core.data.loading import Split
from lth_ray.core.engine.cohort import Cohort
from lth_ray.core.engine.records import RoundResult
from lth_ray.core.engine.training import batch_indices
from lth_ray.core.methods import method_of
from lth_ray.core.methods import registry as method_registry
from lth_ray.core.methods.member import check_trajectory
from lth_ray.core.spec.config import ABLATIONS, ConfigError, TrajectoryConfig
from lth_ray.core.spec.streams import STREAM_DATA, generator


def ablated(method: str, ablations: Sequence[str]) -> list[tuple[str, str]]:
    """(method, ablation) of each ablation that applies to `method` (its method's `ablations`): all of
    ABLATIONS to the ticket (its re-init ablation is the `reinit` baseline) and to every pruning-at-init
    method; shuffle and re-init to random pruning (it has no scores to invert); none to `reinit`, itself an
    ablation."""
    for a in ablations:
        if a not in ABLATIONS:
            raise ConfigError(f"ablation {a!r} is unknown; allowed: {', '.join(ABLATIONS)}")
    policy = method_of(method)
    if policy.is_ticket:
        return [("reinit", "") if a == "reinit" else (method, a) for a in ablations]
    return [(method, a) for a in ablations if a in policy.ablations]


def resolve_device(requested: str) -> torch.device:
    """'auto' takes the GPU Ray (or the user) made visible, else the CPU; 'cuda' without a GPU is an error."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' requested but no CUDA device is available; use cpu or auto")
    if requested in ("cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda", 0)
    return torch.device("cpu")


def cohort_members(
    ticket: TrajectoryConfig, seeds: Sequence[int], baselines: Sequence[str], ablations: Sequence[str] = ()
) -> list[TrajectoryConfig]:
    """A cohort's members in their order: the ticket of every seed, then each baseline of every seed, then the
    ablations (`ablated`) of the ticket and of each baseline, without duplicates (`--baselines reinit` and
    `--ablations reinit` name the same member).

    Baselines keep the early-stop weights only when asked (`save_early_stop` of the ticket is for tickets) and
    measure no instability (a ticket's property)."""
    for b in baselines:
        if b not in method_registry.baselines():
            raise ConfigError(f"baseline {b!r} is unknown; allowed: {', '.join(method_registry.baselines())}")
    methods = [(b, "") for b in baselines]
    for method in [ticket.method] + list(baselines):
        methods += [m for m in ablated(method, ablations) if m not in methods]
    tickets = [ticket.replace(seed=s) for s in seeds]
    riders = [
        t.replace(method=m, ablation=a, instability=False, instability_rounds=()) for m, a in methods for t in tickets
    ]
    return tickets + riders


class Trajectory:
    """One trajectory, trained as a cohort of one: `state` is what continuing needs, and nothing more.

    The state's size does not grow with the round: the rewind point (under late rewinding; otherwise the
    init, rebuilt from the seed), the current mask (bit-packed) and trained weights (alive values only), the
    dense trained weights for one-shot, and the round counter. Each finished round is handed back as a
    `RoundResult` for the caller to persist (`rounds.RoundStore`); the trajectory keeps none of it.
    """

    def __init__(
        self,
        config: TrajectoryConfig,
        split: Split,
        state: dict | None = None,
        progress: Callable[[int, int], None] | None = None,
    ):
        self.config = check_trajectory(config)
        self.split = split
        self.cohort = Cohort([self.config], split, [state], progress)

    @property
    def state(self) -> dict:
        return self.cohort.states[0]

    @property
    def next_round(self) -> int:
        return self.state["next_round"]

    @property
    def done(self) -> bool:
        """Every round ran, or a round diverged (later rounds would start from non-finite weights)."""
        return self.cohort.done

    @property
    def init(self) -> dict[str, torch.Tensor]:
        return self.cohort.inits[0]

    @property
    def rewind(self) -> dict[str, torch.Tensor]:
        """The weights rounds >= 1 start from: the init, or under late rewinding the weights at iteration k."""
        return self.cohort.rewind(0)

    def run_round(self) -> RoundResult:
        return self.cohort.run_round()[0]

    def _mask_and_start(self, r: int):
        """Round r's mask and start weights as the engine would choose them now (for inspection)."""
        return self.cohort.planner.mask_and_start(0, r, {})

    def _batches(self, r: int, start: int, stream: int = STREAM_DATA):
        """Round r's batch indices for iterations start+1, start+2, ... (the engine's own order)."""
        c, gens = self.cohort, [generator(self.config.seed, stream, r)]
        for _, idx in batch_indices(c.split, self.config.batch_size, gens, start, c.device):
            yield idx[0]

    def run(self) -> list[dict]:
        """Every remaining round; returns their records (the Python API's simple path)."""
        return [result.record for result in self.run_results()]

    def run_results(self):
        """Every remaining round's `RoundResult`, one at a time."""
        while not self.done:
            yield self.run_round()


def summary(record: dict, seed: int | None = None) -> dict:
    """The one-line view of a finished round (what the CLI prints and Tune reports)."""
    return {
        "round": record["round"],
        "method": record["method"],
        **({"seed": seed} if seed is not None else {}),
        "sparsity": round(record["sparsity"], 6),
        "early_stop_iteration": record["early_stop_iteration"],
        "val_acc_at_early_stop": record["val_acc_at_early_stop"],
        "test_acc_at_early_stop": record["test_acc_at_early_stop"],
        "final_val_acc": record["final_val_acc"],
        "final_test_acc": record["final_test_acc"],
        "diverged": record["diverged"],
        "seconds": round(record["seconds"], 3),
        **(
            {k: v for k, v in record["instability"].items() if k in SUMMARY_BARRIERS} if "instability" in record else {}
        ),
        **{k: record[k] for k in SUMMARY_ANATOMY if k in record},
        **({"successive_error_barrier": record["successive"]["error_barrier"]} if "successive" in record else {}),
        **({"flops": record["cost"]["flops"]} if "cost" in record else {}),
    }


# The instability numbers a round's one-line view carries (the interpolated one only under --instability-bn recompute)
SUMMARY_BARRIERS = ("error_barrier", "interpolated_error_barrier")
# What a ticket is made of (Zhou et al. 2019): its accuracy at the round's start, how far its mask moved, its signs
SUMMARY_ANATOMY = ("start_test_acc", "mask_distance", "sign_flip_share")
