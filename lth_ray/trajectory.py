"""One IMP trajectory (a cohort of one), its states and round-file resumes, and the trajectory CLI. No Ray.

The engine is `cohort.Cohort`: a lone trajectory is a cohort of one member, and `Trajectory` is its
simple face. A trajectory's whole state is a small plain dict of tensors, numbers and strings
(`Trajectory.state`), saved after each round; a trajectory rebuilt from it continues exactly where it stopped.
Every random draw comes from a generator seeded by (seed, purpose, round), so a round's result depends only
on that state: a resumed trajectory reproduces an uninterrupted one bitwise on the CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Callable, Sequence

import torch

from . import numerics
from .cohort import COHORT_FORMAT, STREAM_DATA, Cohort, check_state, finished, generator, initial_state
# The engine's vocabulary, re-exported for the Python API (`from lth_ray.trajectory import ...` keeps working).
from .cohort import (METRICS, STATE_FORMAT, STREAM_COPY_DATA, cohort_state, cpu_state, diverged,  # noqa: F401
                     early_stop_index, evaluate, initial_weights)
from .budget import DEFAULT_EVAL_MEMORY_MB, MIN_EVAL_MEMORY_MB
from .config import (ABLATIONS, AT_INIT, PRECISIONS, PRESETS, TICKETS, ConfigError, TrajectoryConfig, from_preset,
                     parse_numbers, parse_plan, parse_seeds)
from .data import DataError, Split, load_split
from .rounds import RoundResult, RoundStore

BASELINES = ("reinit", "random-prune") + AT_INIT


def ablated(method: str, ablations: Sequence[str]) -> list[tuple[str, str]]:
    """(method, ablation) of each ablation that applies to `method`: all of ABLATIONS to the ticket (its re-init
    ablation is the `reinit` baseline) and to every pruning-at-init method; shuffle and re-init to random
    pruning (it has no scores to invert); none to `reinit`, itself an ablation."""
    for a in ablations:
        if a not in ABLATIONS:
            raise ConfigError(f"ablation {a!r} is unknown; allowed: {', '.join(ABLATIONS)}")
    if method == "reinit":
        return []
    if method in TICKETS:
        return [("reinit", "") if a == "reinit" else (method, a) for a in ablations]
    return [(method, a) for a in ablations if not (method == "random-prune" and a == "invert")]


def resolve_device(requested: str) -> torch.device:
    """'auto' takes the GPU Ray (or the user) made visible, else the CPU; 'cuda' without a GPU is an error."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' requested but no CUDA device is available; use cpu or auto")
    if requested in ("cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda", 0)
    return torch.device("cpu")


def cohort_members(ticket: TrajectoryConfig, seeds: Sequence[int], baselines: Sequence[str],
                   ablations: Sequence[str] = ()) -> list[TrajectoryConfig]:
    """A cohort's members in their order: the ticket of every seed, then each baseline of every seed, then the
    ablations (`ablated`) of the ticket and of each baseline, without duplicates (`--baselines reinit` and
    `--ablations reinit` name the same member).

    Baselines keep the early-stop weights only when asked (`save_early_stop` of the ticket is for tickets) and
    measure no instability (a ticket's property)."""
    for b in baselines:
        if b not in BASELINES:
            raise ConfigError(f"baseline {b!r} is unknown; allowed: {', '.join(BASELINES)}")
    methods = [(b, "") for b in baselines]
    for method in [ticket.method] + list(baselines):
        methods += [m for m in ablated(method, ablations) if m not in methods]
    tickets = [ticket.replace(seed=s) for s in seeds]
    riders = [t.replace(method=m, ablation=a, instability=False, instability_rounds=())
              for m, a in methods for t in tickets]
    return tickets + riders


class Trajectory:
    """One trajectory, trained as a cohort of one: `state` is what continuing needs, and nothing more.

    The state's size does not grow with the round: the rewind point (under late rewinding; otherwise the
    init, rebuilt from the seed), the current mask (bit-packed) and trained weights (alive values only), the
    dense trained weights for one-shot, and the round counter. Each finished round is handed back as a
    `RoundResult` for the caller to persist (`rounds.RoundStore`); the trajectory keeps none of it.
    """

    def __init__(self, config: TrajectoryConfig, split: Split, state: dict | None = None,
                 progress: Callable[[int, int], None] | None = None):
        self.config = config.validate()
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
        return self.cohort._mask_and_start(0, r, {})

    def _batches(self, r: int, start: int, stream: int = STREAM_DATA):
        """Round r's batch indices for iterations start+1, start+2, ... (the engine's own order)."""
        for _, idx in self.cohort._batch_indices([generator(self.config.seed, stream, r)], start):
            yield idx[0]

    def run(self) -> list[dict]:
        """Every remaining round; returns their records (the Python API's simple path)."""
        return [result.record for result in self.run_results()]

    def run_results(self):
        """Every remaining round's `RoundResult`, one at a time."""
        while not self.done:
            yield self.run_round()


# ------------------------------------------------------------------ resuming from round files

def state_from_rounds(config: TrajectoryConfig, store: RoundStore, last: int) -> dict | None:
    """The state after round `last`, rebuilt from complete round files (None: they cannot rebuild it)."""
    rewind = store.rewind() if config.rewind_iteration else None
    if config.rewind_iteration and rewind is None and config.start == "rewind":
        return None  # the rewind point is lost: start over rather than guess
    state = initial_state(config)
    state.update(next_round=last + 1, diverged_round=last if store.record(last).get("diverged") else None,
                 rewind=rewind, masks=store.packed_masks(last), trained=store.compact_trained(last),
                 dense_trained=store.compact_trained(0) if config.method == "one-shot" and config.first_round == 0
                 else None)
    return state


def resume_state(config: TrajectoryConfig, store: RoundStore, checkpoint: dict | None) -> dict | None:
    """Where a trajectory continues: right after the longest run of complete round files.

    The checkpoint is used as it is when it ends exactly there. Otherwise the round files decide: rounds
    finished after the last checkpoint Tune registered are kept (never recomputed), and a round whose files
    are missing or torn is recomputed, with every round after it (they depend on it). None: start afresh.
    """
    if checkpoint is not None:
        check_state(checkpoint, config)
    done = store.complete_prefix(config.first_round)
    if not done:
        return None
    if checkpoint is not None and checkpoint["next_round"] == done[-1] + 1:
        return checkpoint
    return state_from_rounds(config, store, done[-1])


def resume_cohort(configs: Sequence[TrajectoryConfig], stores: Sequence[RoundStore],
                  checkpoint: dict | None) -> list[dict | None]:
    """Every member's state to continue from (`resume_state`, member by member: a crash between two members'
    round files leaves them a round apart, and each continues where its own files end). A re-init member left
    more than a round behind its ticket gets the ticket's masks of the rounds in between from the ticket's
    round files (the ticket's state holds only its latest); so does the ticket's shuffle ablation."""
    members = member_states(checkpoint, len(configs))
    states = [resume_state(c, s, m) for c, s, m in zip(configs, stores, members)]
    for i, c in enumerate(configs):
        if c.mask_source != "ticket":
            continue
        t = next(j for j, d in enumerate(configs) if d.seed == c.seed and d.is_ticket)
        mine = states[i]["next_round"] if states[i] else c.first_round
        theirs = states[t]["next_round"] if states[t] else configs[t].first_round
        if theirs > mine + 1 and not finished(states[i], c):
            states[i] = states[i] or initial_state(c)
            states[i]["ticket_masks"] = {r: stores[t].packed_masks(r) for r in range(mine, theirs - 1)}
    return states


def member_states(checkpoint: dict | None, members: int) -> list[dict | None]:
    """The member states of a checkpoint: a cohort's (format 3), or one trajectory's (format 2)."""
    if checkpoint is None:
        return [None] * members
    if checkpoint.get("format") == COHORT_FORMAT:
        states = list(checkpoint["members"])
        if len(states) != members:
            raise ValueError(f"checkpoint holds {len(states)} members, the cohort has {members}")
        return states
    if members != 1:
        raise ValueError(f"a single trajectory's checkpoint cannot continue a cohort of {members}")
    return [checkpoint]


# ------------------------------------------------------------------ state files

def save_state(state: dict, path: str | os.PathLike) -> None:
    """Atomic torch.save: a crash mid-write never leaves a half-written state file behind."""
    tmp = f"{path}.tmp-{os.getpid()}"
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_state(path: str | os.PathLike) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def summary(record: dict, seed: int | None = None) -> dict:
    """The one-line view of a finished round (what the CLI prints and Tune reports)."""
    return {"round": record["round"], "method": record["method"], **({"seed": seed} if seed is not None else {}),
            "sparsity": round(record["sparsity"], 6),
            "early_stop_iteration": record["early_stop_iteration"],
            "val_acc_at_early_stop": record["val_acc_at_early_stop"],
            "test_acc_at_early_stop": record["test_acc_at_early_stop"],
            "final_val_acc": record["final_val_acc"], "final_test_acc": record["final_test_acc"],
            "diverged": record["diverged"], "seconds": round(record["seconds"], 3),
            **({"error_barrier": record["instability"]["error_barrier"]} if "instability" in record else {})}


# ------------------------------------------------------------------ CLI

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lth_ray.trajectory",
                                description="Run an IMP trajectory (or a cohort: several seeds, with baselines) "
                                            "without Ray; one JSON line per member and round.")
    p.add_argument("--preset", default="lenet", help=f"one of {', '.join(PRESETS)}")
    p.add_argument("--dataset", help="mnist, fashion-mnist or cifar10 (default: the preset's)")
    p.add_argument("--data-root", help="folder holding the data set in torchvision's layout")
    p.add_argument("--download", action="store_true", help="let torchvision download a missing data set")
    p.add_argument("--rounds", type=int, default=None, help="pruning rounds after the dense round 0")
    p.add_argument("--iterations", type=int, help="training iterations per round (default: the preset's)")
    p.add_argument("--learning-rate", type=float, default=None, help="Adam's learning rate (default: the preset's)")
    p.add_argument("--batch-size", type=int, default=None, help="default: the preset's (60)")
    p.add_argument("--plan-fc", default=None, help="hidden fc widths, e.g. 300,100 (default: the preset's)")
    p.add_argument("--plan-conv", default=None, help="conv plan in the thesis' tokens, e.g. 64,64,M")
    p.add_argument("--eval-every", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--seeds", help="a cohort of seeds: a count N (0..N-1) or a comma list (replaces --seed)")
    p.add_argument("--baselines", default="", help="comma list of reinit, random-prune, snip, grasp, synflow, "
                                                      "magnitude-init: members riding with each seed's ticket")
    p.add_argument("--ablations", default="", help="comma list of shuffle, reinit, invert: sanity checks of the "
                                                      "ticket's and each baseline's masks (Frankle et al. 2021)")
    p.add_argument("--prune-rate-fc", type=float, default=None)
    p.add_argument("--prune-rate-conv", type=float, default=None)
    p.add_argument("--pruning", default=None, help="layerwise or global")
    p.add_argument("--method", default=None, help="the ticket: imp or one-shot (random-prune, snip, grasp, synflow, "
                                                   "magnitude-init alone also run)")
    p.add_argument("--score-batches", type=int, default=None,
                   help="SNIP's and GraSP's training batches for their scores (1)")
    p.add_argument("--rewind-iteration", type=int, default=None,
                   help="late rewinding to iteration k (a multiple of --eval-every below --iterations)")
    p.add_argument("--activation", default=None, help="relu or tanh")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--precision", default="fp32", help=f"{', '.join(PRECISIONS)} (GPU arithmetic; default fp32)")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic kernels (bitwise reruns and resumes on a GPU; slower)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--eval-memory", type=int, default=None, metavar="MiB",
                   help="memory budget of evaluation, scoring at init and instability paths (default: "
                        f"{DEFAULT_EVAL_MEMORY_MB} MiB on a CPU, half the free memory on a GPU)")
    p.add_argument("--instability", action="store_true",
                   help="per round, train a second copy (another data order) and measure the linear path's barrier")
    p.add_argument("--instability-rounds", default=None, help="comma list of rounds to measure (default: all)")
    p.add_argument("--instability-points", type=int, default=None, help="points on the path, ends included (31)")
    p.add_argument("--rounds-dir", help="write every finished round's files here (folder or URI; see lth_ray.rounds); "
                                        "a cohort of several members writes one subfolder per member key")
    p.add_argument("--save-state", help="write the cohort's state here after every round")
    p.add_argument("--resume", help="continue from a state file written by --save-state")
    return p


def config_from_args(a: argparse.Namespace) -> TrajectoryConfig:
    return from_preset(a.preset, dataset=a.dataset, data_root=a.data_root, rounds=a.rounds,
                       iterations=a.iterations, eval_every=a.eval_every, seed=a.seed,
                       learning_rate=a.learning_rate, batch_size=a.batch_size,
                       plan_fc=None if a.plan_fc is None else parse_plan(a.plan_fc, "--plan-fc"),
                       plan_conv=None if a.plan_conv is None else parse_plan(a.plan_conv, "--plan-conv"),
                       prune_rate_fc=a.prune_rate_fc, prune_rate_conv=a.prune_rate_conv, pruning=a.pruning,
                       method=a.method, score_batches=a.score_batches, rewind_iteration=a.rewind_iteration,
                       activation=a.activation,
                       device=a.device, precision=a.precision, deterministic=a.deterministic,
                       instability=a.instability or None, instability_points=a.instability_points,
                       instability_rounds=None if a.instability_rounds is None
                       else tuple(parse_numbers(a.instability_rounds, "--instability-rounds", int)))


def _progress_bar(config: TrajectoryConfig):
    """A tqdm bar per round on an interactive stderr (the JSON lines on stdout stay clean)."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm
    bars: dict[int, tqdm] = {}

    def update(round_: int, iteration: int) -> None:
        if round_ not in bars:  # one bar per round (not one per call, as setdefault's argument would make)
            bars[round_] = tqdm(total=config.iterations, desc=f"round {round_}", unit="it", file=sys.stderr,
                                leave=False)
        bar = bars[round_]
        bar.update(iteration - bar.n)
        if iteration >= config.iterations:
            bar.close()
    return update


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        if a.rounds is None:
            a.rounds = 20
        config = config_from_args(a)
        if config.method == "reinit":
            raise ConfigError("method='reinit' rides with its ticket: use --method imp --baselines reinit")
        seeds = parse_seeds(a.seeds, "--seeds") if a.seeds else [config.seed]
        baselines = [b.strip() for b in a.baselines.split(",") if b.strip()]
        ablations = [b.strip() for b in a.ablations.split(",") if b.strip()]
        members = (cohort_members(config, seeds, baselines, ablations) if baselines or ablations or a.seeds
                   else [config])
        if a.threads:
            torch.set_num_threads(a.threads)
        if a.eval_memory is not None and a.eval_memory < MIN_EVAL_MEMORY_MB:
            raise ConfigError(f"--eval-memory={a.eval_memory} is too small; allowed: >= {MIN_EVAL_MEMORY_MB} (MiB)")
        numerics.configure(config.precision, config.deterministic)  # before any CUDA work (cuBLAS workspace)
        device = resolve_device(config.device)
        split = load_split(config.dataset, config.data_root, device, download=a.download)
        states = member_states(load_state(a.resume), len(members)) if a.resume else None
        cohort = Cohort(members, split, states, progress=_progress_bar(config), eval_memory_mb=a.eval_memory)
    except (ConfigError, DataError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    stores = None
    if a.rounds_dir:
        stores = [RoundStore.at(a.rounds_dir if len(members) == 1 else f"{a.rounds_dir.rstrip('/')}/{m.key}")
                  for m in members]
    while not cohort.done:
        results = cohort.run_round()
        for i, result in results.items():
            if stores is not None:
                stores[i].write_round(result)
        if a.save_state:
            save_state(cohort.state, a.save_state)
        for i, result in results.items():
            print(json.dumps(summary(result.record, members[i].seed)), flush=True)
    for c, s in zip(members, cohort.states):
        if s["diverged_round"] is not None:
            print(f"note: {c.key}: round {s['diverged_round']} diverged (a loss went NaN or infinite); the "
                  "trajectory stops there: later rounds would prune non-finite weights", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
