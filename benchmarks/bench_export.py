"""Export speed: a synthetic experiment of 100 trials x 20 rounds x 500 evaluation points, built in memory.

5 fc prune rates x 10 seeds x {imp ticket, reinit baseline}: 50 tickets of 21 levels (dense + 20 rounds) and 50
baselines of 20 levels, 500 points per level, about 1M rows of histories. Nets are small by default (fc 32-16)
so the number measures the export itself (Parquet + thesis files) rather than the disk; `--plan-fc 300,100`
gives Lenet-sized net files. Calls `write_export` directly (no Tune, no Ray) and prints one JSON line.

    python benchmarks/bench_export.py [--trials-per-method 50] [--rounds 20] [--points 500] [--plan-fc 32,16]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from lth_ray.core.engine.records import METRICS
from lth_ray.core.engine.weights import cpu_state
from lth_ray.core.methods.member import first_round
from lth_ray.core.models.plan import prunable_layers  # noqa: E402
from lth_ray.core.models.registry import build_model
from lth_ray.core.pruning.masks import density, layer_density, pack_masks  # noqa: E402
from lth_ray.core.spec.config import (
    TrajectoryConfig,  # noqa: E402
    plan_config,
)
from lth_ray.results.experiment import LegacyRounds, TrialResult  # noqa: E402
from lth_ray.results.export import histories_table, rounds_table, write_export  # noqa: E402


def fake_state(cfg: TrajectoryConfig, rng: np.random.Generator) -> dict:
    """A finished trajectory's rounds, all in memory (0.1.0's one-state layout, read through `LegacyRounds`, so
    that the benchmark times the writers, not the disk reads), with random histories and nested masks."""
    model = build_model(
        plan_config(cfg.plan_conv, cfg.plan_fc, cfg.activation),
        (1, 28, 28),
        10,
        torch.Generator().manual_seed(cfg.seed),
    )
    weights = cpu_state(model)
    layers = prunable_layers(model)
    alive = {n: torch.ones_like(weights[f"{n}.weight"], dtype=torch.bool) for n in layers}
    masks, records, early_stop = {}, [], {}
    for r in range(first_round(cfg), cfg.rounds + 1):
        if r > 0:
            alive = {n: m & (torch.rand(m.shape) > 0.2) for n, m in alive.items()}
        masks[r] = pack_masks(alive)
        values = {m: rng.random(cfg.eval_points).tolist() for m in METRICS}
        es = int(np.argmin(values["val_loss"]))
        records.append(
            {
                "round": r,
                "method": cfg.method,
                "sparsity": density(alive),
                "layer_sparsity": layer_density(alive),
                "iterations": [(k + 1) * cfg.eval_every for k in range(cfg.eval_points)],
                **values,
                "early_stop_index": es,
                "early_stop_iteration": (es + 1) * cfg.eval_every,
                **{f"{m}_at_early_stop": values[m][es] for m in METRICS},
                **{f"final_{m}": values[m][-1] for m in METRICS},
                "seconds": float(rng.random() * 60),
            }
        )
        early_stop[r] = weights
    return {
        "format": 1,
        "config": cfg.to_dict(),
        "next_round": cfg.rounds + 1,
        "init": weights,
        "rewind": weights,
        "trained": weights,
        "dense_trained": weights,
        "masks": masks,
        "records": records,
        "early_stop": early_stop,
    }


def synthetic_trials(per_method: int, rounds: int, points: int, plan_fc: tuple[int, ...]) -> list[TrialResult]:
    rng = np.random.default_rng(0)
    rates = [0.1, 0.15, 0.2, 0.25, 0.3]
    seeds = range(max(1, per_method // len(rates)))
    trials = []
    for i, (rate, seed) in enumerate((r, s) for r in rates for s in seeds):
        ticket = TrajectoryConfig(
            arch="custom",
            plan_fc=plan_fc,
            iterations=points * 100,
            eval_every=100,
            rounds=rounds,
            prune_rate_fc=rate,
            seed=seed,
            mask_store=f"/m/{rate}-{seed}",
        )
        for j, cfg in enumerate((ticket, ticket.replace(method="reinit"))):
            trial_id = f"bench_{2 * i + j:05d}"
            trials.append(
                TrialResult(
                    trial_id,
                    "TERMINATED",
                    f"/fake/{cfg.method}-{rate}-s{seed}_{trial_id}",
                    cfg.validate(),
                    LegacyRounds(fake_state(cfg, rng)),
                )
            )
    return trials


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials-per-method", type=int, default=50)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--points", type=int, default=500)
    p.add_argument("--plan-fc", default="32,16")
    a = p.parse_args()
    plan_fc = tuple(int(w) for w in a.plan_fc.split(","))
    built = time.perf_counter()
    trials = synthetic_trials(a.trials_per_method, a.rounds, a.points, plan_fc)
    built = time.perf_counter() - built
    start = time.perf_counter()
    rows = histories_table(trials, "bench").num_rows
    rounds_table(trials, "bench")
    parquet_tables = time.perf_counter() - start
    with tempfile.TemporaryDirectory(prefix="lth_ray-bench-export-") as folder:
        start = time.perf_counter()
        manifest = write_export(trials, folder, "/fake/bench")
        seconds = time.perf_counter() - start
        size = sum(f.stat().st_size for f in Path(folder).iterdir())
    print(
        json.dumps(
            {
                "trials": len(trials),
                "rounds": a.rounds,
                "points": a.points,
                "plan_fc": list(plan_fc),
                "history_rows": rows,
                "files": len(manifest["files"]) + 1,
                "export_mb": round(size / 2**20, 1),
                "seconds": round(seconds, 3),
                "parquet_tables_seconds": round(parquet_tables, 3),
                "build_inputs_seconds": round(built, 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
