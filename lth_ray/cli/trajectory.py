"""`python -m lth_ray.trajectory` / `lth-ray trajectory`: one trajectory or one cohort, without Ray.

One JSON line per member and round on stdout; a bad option is one `error:` line and exit status 2.
"""
from __future__ import annotations

import argparse
import json
import sys

import torch

from lth_ray.core.data.loading import DataError, load_split
from lth_ray.core.engine import numerics
from lth_ray.core.engine.budget import DEFAULT_EVAL_MEMORY_MB, MIN_EVAL_MEMORY_MB
from lth_ray.core.engine.cohort import Cohort
from lth_ray.core.engine.trajectory import cohort_members, resolve_device, summary
from lth_ray.core.spec.config import (PRECISIONS, PRESETS, ConfigError, TrajectoryConfig, from_preset, parse_numbers,
                                      parse_plan, parse_seeds)
from lth_ray.core.store.resume import load_state, member_states, save_state
from lth_ray.core.store.rounds import RoundStore


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
