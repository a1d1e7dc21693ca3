"""One IMP trajectory: train, evaluate, prune, rewind, round after round. Plain PyTorch, no Ray.

The trajectory's whole state is a plain dict of tensors, numbers and strings (`Trajectory.state`), saved
after each round; a trajectory rebuilt from it continues exactly where it stopped. Every random draw comes
from a generator seeded by (seed, purpose, round), so a round's result depends only on that state: a
resumed trajectory reproduces an uninterrupted one bitwise on the CPU.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from . import maskstore, numerics
from .config import PRECISIONS, PRESETS, ConfigError, TrajectoryConfig, from_preset, parse_numbers, parse_plan
from .data import DataError, Split, epoch_batches, load_split
from .interpolation import evaluate_path
from .models import build_model, in_shape_of, prunable_layers
from .pruning import (alive_after, compact, dense_masks, density, expand, global_magnitude_prune,
                      global_random_prune, layer_density, layer_rates, magnitude_prune, magnitude_prune_to,
                      pack_masks, random_prune, unpack_masks)
from .rounds import RoundResult, RoundStore

STATE_FORMAT = 2  # 1: lth_ray 0.1.0 (every round's weights and masks in one growing state)
METRICS = ("train_loss", "val_loss", "val_acc", "test_loss", "test_acc")
# Purposes of the seeded random streams (never reuse a number for another purpose).
STREAM_INIT, STREAM_DATA, STREAM_RANDOM_PRUNE, STREAM_REINIT, STREAM_COPY_DATA = 0, 1, 2, 3, 4


def generator(seed: int, stream: int, round_: int = 0) -> torch.Generator:
    """An independent CPU generator for (seed, purpose, round)."""
    value = int(np.random.SeedSequence([seed, stream, round_]).generate_state(1, dtype=np.uint64)[0])
    return torch.Generator().manual_seed(value)


def resolve_device(requested: str) -> torch.device:
    """'auto' takes the GPU Ray (or the user) made visible, else the CPU; 'cuda' without a GPU is an error."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' requested but no CUDA device is available; use cpu or auto")
    if requested in ("cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda", 0)
    return torch.device("cpu")


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
    """Mean loss and accuracy over a whole split, as device scalars (no host sync)."""
    loss = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device)
    for start in range(0, len(x), chunk):
        with numerics.autocast(precision, x.device):
            logits = model(x[start:start + chunk])
        target = y[start:start + chunk]
        loss += F.cross_entropy(logits, target, reduction="sum")
        correct += (logits.argmax(1) == target).sum()
    return loss / len(x), correct / len(x)


class Trajectory:
    """Drives the rounds of one trajectory; `state` is what continuing needs, and nothing more.

    The state's size does not grow with the round: the rewind point (under late rewinding; otherwise the
    init, rebuilt from the seed), the current mask (bit-packed) and trained weights (alive values only), the
    dense trained weights for one-shot, and the round counter. Each finished round is handed back as a
    `RoundResult` for the caller to persist (`rounds.RoundStore`); the trajectory keeps none of it.
    """

    def __init__(self, config: TrajectoryConfig, split: Split, state: dict | None = None,
                 progress: Callable[[int, int], None] | None = None):
        self.config = config.validate()
        self.split = split
        self.device = split.x_train.device
        self.numerics = numerics.configure(config.precision, config.deterministic)
        self.progress = progress
        self.model = build_model(config.plan_conv, config.plan_fc, split.in_shape, config.activation,
                                 generator(config.seed, STREAM_INIT), self.device)
        self.init = cpu_state(self.model)  # rebuilt from the seed, never stored
        self.kinds = prunable_layers(self.model)
        self.rates = layer_rates(self.kinds, config.prune_rate_conv, config.prune_rate_fc)
        if state is None:
            state = initial_state(config)
        check_state(state, config)
        self.state = state

    @property
    def next_round(self) -> int:
        return self.state["next_round"]

    @property
    def done(self) -> bool:
        """Every round ran, or a round diverged (later rounds would start from non-finite weights)."""
        return finished(self.state, self.config)

    @property
    def rewind(self) -> dict[str, torch.Tensor]:
        """The weights rounds >= 1 start from: the init, or under late rewinding the weights at iteration k."""
        return self.init if self.config.rewind_iteration == 0 else self.state["rewind"]

    # ------------------------------------------------------------------ one round
    def run_round(self) -> RoundResult:
        """Choose this round's mask and start point, train, record; returns what the round leaves behind."""
        if self.done:
            raise RuntimeError("trajectory is finished")
        r, cfg, state = self.next_round, self.config, self.state
        late = cfg.rewind_iteration > 0
        produced = None
        if r > 0 and late and cfg.method != "reinit" and state["rewind"] is None:
            produced = state["rewind"] = self._rewind_point()  # a baseline without a dense round of its own
        masks, start = self._mask_and_start(r)
        packed = pack_masks(masks)
        if cfg.mask_store and cfg.method in ("imp", "one-shot"):
            maskstore.publish(cfg.mask_store, r, packed)
        self.model.load_state_dict(start)
        capture = cfg.rewind_iteration if (r == 0 and late and state["rewind"] is None) else None
        began = time.perf_counter()
        history, es_state, rewind = self._train(r, masks, cfg.round_start(r), capture)
        record = self._record(r, masks, history, time.perf_counter() - began)
        if rewind is not None:
            produced = state["rewind"] = rewind
        trained = compact(cpu_state(self.model), masks)
        state["masks"], state["trained"] = packed, trained
        if r == 0 and cfg.method == "one-shot":
            state["dense_trained"] = trained
        if cfg.measures_instability(r):
            record["instability"] = self._instability(r, masks, start)
        state["next_round"] = r + 1
        if record["diverged"]:
            state["diverged_round"] = r
        return RoundResult(record, packed, trained, None if es_state is None else compact(es_state, masks),
                           produced)

    def run(self) -> list[dict]:
        """Every remaining round; returns their records (the Python API's simple path)."""
        return [result.record for result in self.run_results()]

    def run_results(self):
        """Every remaining round's `RoundResult`, one at a time."""
        while not self.done:
            yield self.run_round()

    def _instability(self, r: int, masks, start: dict[str, torch.Tensor]) -> dict:
        """Train a second copy of this round's subnetwork from the same start with another data order, then
        evaluate the linear path between the two trained copies (the model is left at the first copy)."""
        cfg = self.config

        def weights():  # on the trial's device: no round trip through the host
            return {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        first, began = weights(), time.perf_counter()
        self.model.load_state_dict(start)
        self._train(r, masks, cfg.round_start(r), None, stream=STREAM_COPY_DATA, evaluate_points=False)
        second = weights()

        def measure(model, x, y):
            return evaluate(model, x, y, precision=cfg.precision)
        path = evaluate_path(self.model, first, second, {n: m.to(self.device) for n, m in masks.items()},
                             self.split, cfg.instability_points, measure)
        return {**path, "seconds": time.perf_counter() - began}

    def _rewind_point(self) -> dict[str, torch.Tensor]:
        """The weights at iteration k of the dense round 0, for a baseline that trains no round 0 itself.

        Same init, same round-0 data order, fresh Adam: on the CPU bitwise the ticket's rewind point.
        """
        self.model.load_state_dict(self.init)
        ones = dense_masks({n: m.weight for n, m in self.model.named_modules() if n in self.kinds})
        _, _, rewind = self._train(0, ones, 0, self.config.rewind_iteration, stop=self.config.rewind_iteration)
        return rewind

    def _mask_and_start(self, r: int):
        """The mask of round r and the weights training starts from (the rewind point, or a fresh init)."""
        cfg, s = self.config, self.state
        weights = {n: m.weight for n, m in self.model.named_modules() if n in self.kinds}
        previous = dense_masks(weights) if r == cfg.first_round else unpack_masks(s["masks"])
        if cfg.method == "reinit":
            masks = unpack_masks(maskstore.fetch(cfg.mask_store, r))
            fresh = build_model(cfg.plan_conv, cfg.plan_fc, self.split.in_shape, cfg.activation,
                                generator(cfg.seed, STREAM_REINIT, r))
            return masks, cpu_state(fresh)
        if r == 0:
            return previous, self.init
        if cfg.method == "random-prune":  # the ticket's count (per layer, or in total under global pruning)
            draw = generator(cfg.seed, STREAM_RANDOM_PRUNE, r)
            masks = (global_random_prune(previous, cfg.prune_rate_fc, draw) if cfg.pruning == "global"
                     else random_prune(previous, self.rates, draw))
            return masks, self.rewind
        if cfg.method == "one-shot":
            dense = _layer_weights(expand(s["dense_trained"], dense_masks(weights)), self.kinds)
            ones = dense_masks(dense)
            if cfg.pruning == "global":
                total = sum(m.numel() for m in ones.values())
                masks = global_magnitude_prune(dense, ones, count=total - alive_after(total, cfg.prune_rate_fc, r))
            else:
                targets = {n: alive_after(m.numel(), self.rates[n], r) for n, m in ones.items()}
                masks = magnitude_prune_to(dense, ones, targets)
            return masks, self.rewind
        trained = _layer_weights(expand(s["trained"], previous), self.kinds)
        if cfg.pruning == "global":
            masks = global_magnitude_prune(trained, previous, rate=cfg.prune_rate_fc)
        else:
            masks = magnitude_prune(trained, previous, self.rates)
        return masks, self.rewind

    def _batches(self, r: int, start: int, stream: int = STREAM_DATA):
        """Round r's batch indices for iterations start+1, start+2, ...: batch i of the round's data order is
        used at iteration i, so a round rewound to k sees exactly what iterations k+1.. of that order hold.
        The instability copy draws its own order (`STREAM_COPY_DATA`)."""
        cfg, n = self.config, len(self.split.x_train)
        data_gen = generator(cfg.seed, stream, r)
        skip_epochs, offset = divmod(start, n // cfg.batch_size)
        for _ in range(skip_epochs):
            torch.randperm(n, generator=data_gen)  # advance the stream exactly as epoch_batches would
        while True:
            yield from epoch_batches(n, cfg.batch_size, data_gen, self.device)[offset:]
            offset = 0

    def _train(self, r: int, masks: dict[str, torch.Tensor], start: int, capture_at: int | None,
               stop: int | None = None, stream: int = STREAM_DATA, evaluate_points: bool = True):
        """Train the masked net from the loaded weights over iterations start+1..stop (default: `iterations`),
        evaluating at the multiples of `eval_every`; the iteration axis is absolute (a rewound round starts at
        the rewind point). A `stop` short of the end only captures weights: no evaluation, no history."""
        cfg, split, model = self.config, self.split, self.model
        stop = cfg.iterations if stop is None else stop
        evaluating = stop == cfg.iterations and evaluate_points
        modules = dict(model.named_modules())
        weights = [modules[n].weight for n in self.kinds]
        mask_values = [masks[n].to(self.device, torch.float32) for n in self.kinds]
        sparse = any(not bool(m.all()) for m in masks.values())
        with torch.no_grad():
            if sparse:
                torch._foreach_mul_(weights, mask_values)
        fused = self.device.type in ("cuda", "cpu")
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate, fused=fused)
        running = torch.zeros((), device=self.device)
        points: list[torch.Tensor] = []
        keep_es = cfg.save_early_stop and evaluating
        best_loss = torch.full((), float("inf"), device=self.device)
        best = [t.detach().clone() for t in model.state_dict().values()] if keep_es else None
        rewind = None
        it, precision = start, cfg.precision
        model.train()
        for idx in self._batches(r, start, stream):
            if it == stop:
                break
            with numerics.autocast(precision, self.device):
                loss = F.cross_entropy(model(split.x_train[idx]), split.y_train[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if sparse:
                with torch.no_grad():
                    torch._foreach_mul_(weights, mask_values)  # pruned weights stay exactly zero
            running += loss.detach()
            it += 1
            if it == capture_at:
                rewind = cpu_state(model)
            if evaluating and it % cfg.eval_every == 0:
                model.eval()
                val_loss, val_acc = evaluate(model, split.x_val, split.y_val, precision=precision)
                test_loss, test_acc = evaluate(model, split.x_test, split.y_test, precision=precision)
                model.train()
                points.append(torch.stack([running / cfg.eval_every, val_loss, val_acc, test_loss, test_acc]))
                running = torch.zeros((), device=self.device)
                if keep_es:  # keep the weights at the lowest finite validation loss, without a host sync
                    better = torch.isfinite(val_loss) & (val_loss < best_loss)
                    best_loss = torch.where(better, val_loss, best_loss)
                    with torch.no_grad():
                        for b, t in zip(best, model.state_dict().values()):
                            b.copy_(torch.where(better, t, b))
                if self.progress:
                    self.progress(r, it)
        if not evaluating:
            return None, None, rewind
        history = torch.stack(points).to("cpu", torch.float64).numpy()
        found = keep_es and bool(torch.isfinite(best_loss))  # a round with no finite evaluation keeps none
        es_state = {k: b.to("cpu") for k, b in zip(model.state_dict().keys(), best)} if found else None
        return history, es_state, rewind

    def _record(self, r: int, masks, history: np.ndarray, seconds: float) -> dict:
        cfg = self.config
        values = {name: history[:, i].tolist() for i, name in enumerate(METRICS)}
        iterations = cfg.eval_iterations(r)
        assert len(iterations) == len(history)
        es = early_stop_index(values["val_loss"])
        return {"round": r, "method": cfg.method, "sparsity": density(masks),
                "layer_sparsity": layer_density(masks), "iterations": iterations, **values,
                "early_stop_index": es, "early_stop_iteration": None if es is None else iterations[es],
                **{f"{m}_at_early_stop": math.nan if es is None else values[m][es] for m in METRICS},
                **{f"final_{m}": values[m][-1] for m in METRICS},
                "diverged": diverged(values), "start_iteration": cfg.round_start(r),
                "steps": cfg.iterations - cfg.round_start(r), "seconds": seconds, "device": str(self.device),
                "device_name": device_name(self.device)}


def initial_weights(config: TrajectoryConfig) -> dict[str, torch.Tensor]:
    """The trajectory's initialisation, rebuilt from its seed (never stored: it is the seed's to give)."""
    return cpu_state(build_model(config.plan_conv, config.plan_fc, in_shape_of(config.dataset), config.activation,
                                 generator(config.seed, STREAM_INIT)))


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


def state_from_rounds(config: TrajectoryConfig, store: RoundStore, last: int) -> dict | None:
    """The state after round `last`, rebuilt from complete round files (None: they cannot rebuild it)."""
    rewind = store.rewind() if config.rewind_iteration else None
    if config.rewind_iteration and rewind is None and not (config.method == "reinit"):
        return None  # the rewind point is lost: start over rather than guess
    state = initial_state(config)
    state.update(next_round=last + 1, diverged_round=last if store.record(last).get("diverged") else None,
                 rewind=rewind, masks=store.packed_masks(last), trained=store.compact_trained(last),
                 dense_trained=store.compact_trained(0) if config.method == "one-shot" else None)
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


def finished(state: dict | None, config: TrajectoryConfig) -> bool:
    """A trajectory is finished when every round ran or a round diverged (it stops there, by design)."""
    if not state:
        return False
    return state["next_round"] > config.rounds or state.get("diverged_round") is not None


def _layer_weights(state: dict[str, torch.Tensor], kinds: dict[str, str]) -> dict[str, torch.Tensor]:
    return {n: state[f"{n}.weight"] for n in kinds}


# ------------------------------------------------------------------ state files

def save_state(state: dict, path: str | os.PathLike) -> None:
    """Atomic torch.save: a crash mid-write never leaves a half-written state file behind."""
    tmp = f"{path}.tmp-{os.getpid()}"
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_state(path: str | os.PathLike) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def summary(record: dict) -> dict:
    """The one-line view of a finished round (what the CLI prints and Tune reports)."""
    return {"round": record["round"], "method": record["method"], "sparsity": round(record["sparsity"], 6),
            "early_stop_iteration": record["early_stop_iteration"],
            "val_acc_at_early_stop": record["val_acc_at_early_stop"],
            "test_acc_at_early_stop": record["test_acc_at_early_stop"],
            "final_val_acc": record["final_val_acc"], "final_test_acc": record["final_test_acc"],
            "diverged": record["diverged"], "seconds": round(record["seconds"], 3),
            **({"error_barrier": record["instability"]["error_barrier"]} if "instability" in record else {})}


# ------------------------------------------------------------------ CLI

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lth_ray.trajectory",
                                description="Run one IMP trajectory without Ray; one JSON line per round.")
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
    p.add_argument("--prune-rate-fc", type=float, default=None)
    p.add_argument("--prune-rate-conv", type=float, default=None)
    p.add_argument("--pruning", default=None, help="layerwise or global")
    p.add_argument("--method", default=None, help="imp, random-prune or one-shot")
    p.add_argument("--rewind-iteration", type=int, default=None,
                   help="late rewinding to iteration k (a multiple of --eval-every below --iterations)")
    p.add_argument("--activation", default=None, help="relu or tanh")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--precision", default="fp32", help=f"{', '.join(PRECISIONS)} (GPU arithmetic; default fp32)")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic kernels (bitwise reruns and resumes on a GPU; slower)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--instability", action="store_true",
                   help="per round, train a second copy (another data order) and measure the linear path's barrier")
    p.add_argument("--instability-rounds", default=None, help="comma list of rounds to measure (default: all)")
    p.add_argument("--instability-points", type=int, default=None, help="points on the path, ends included (31)")
    p.add_argument("--rounds-dir", help="write every finished round's files here (folder or URI; see lth_ray.rounds)")
    p.add_argument("--save-state", help="write the trajectory state here after every round")
    p.add_argument("--resume", help="continue from a state file written by --save-state")
    return p


def config_from_args(a: argparse.Namespace) -> TrajectoryConfig:
    return from_preset(a.preset, dataset=a.dataset, data_root=a.data_root, rounds=a.rounds,
                       iterations=a.iterations, eval_every=a.eval_every, seed=a.seed,
                       learning_rate=a.learning_rate, batch_size=a.batch_size,
                       plan_fc=None if a.plan_fc is None else parse_plan(a.plan_fc, "--plan-fc"),
                       plan_conv=None if a.plan_conv is None else parse_plan(a.plan_conv, "--plan-conv"),
                       prune_rate_fc=a.prune_rate_fc, prune_rate_conv=a.prune_rate_conv, pruning=a.pruning,
                       method=a.method, rewind_iteration=a.rewind_iteration, activation=a.activation,
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
            raise ConfigError("method='reinit' needs a ticket's masks: run it through a sweep (--baselines reinit)")
        if a.threads:
            torch.set_num_threads(a.threads)
        numerics.configure(config.precision, config.deterministic)  # before any CUDA work (cuBLAS workspace)
        device = resolve_device(config.device)
        split = load_split(config.dataset, config.data_root, device, download=a.download)
        state = load_state(a.resume) if a.resume else None
        trajectory = Trajectory(config, split, state, progress=_progress_bar(config))
    except (ConfigError, DataError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    store = RoundStore.at(a.rounds_dir) if a.rounds_dir else None
    while not trajectory.done:
        result = trajectory.run_round()
        if store is not None:
            store.write_round(result)
        if a.save_state:
            save_state(trajectory.state, a.save_state)
        print(json.dumps(summary(result.record)), flush=True)
    if trajectory.state["diverged_round"] is not None:
        print(f"note: round {trajectory.state['diverged_round']} diverged (a loss went NaN or infinite); the "
              "trajectory stops there: later rounds would prune non-finite weights", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
