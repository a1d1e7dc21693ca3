"""Trials in memory -> the thesis' files, one group of tickets (nets = seeds) at a time.

Per group: `-histories.npz`, `-net<n>.pth`, `-early-stop<n>.pth`, the baselines' `-random-histories<n>.npz`
and `-random-prune-histories<n>.npz`, `-specs.json` (the thesis' 18 keys, its order), and the `-lth_ray.json`
sidecar that old readers never open. The names and layouts are `lth_ray.results.thesis`'s.

The format holds the thesis' plan nets only (Lenet, Conv-2/4/6 and custom plans): a registered model such as
a CIFAR ResNet or VGG has other modules, which the thesis' loader would rebuild as the wrong net, so its
trials get no thesis files (`parquet_only_notes` says so) and live in the Parquet tables alone.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Sequence
from typing import TypedDict

import numpy as np
import torch

from lth_ray import __version__
from lth_ray.core.spec.config import TrajectoryConfig
from lth_ray.core.spec.training import retrain_length
from lth_ray.results import thesis
from lth_ray.results.experiment import TrialResult
from lth_ray.results.export.files import EXPORT_FORMAT, _write_json, _write_new
from lth_ray.results.export.thesis_groups import Group, group_trials, recipe, thesis_net
from lth_ray.results.schema import RECIPE_DEFAULTS, recipe_cell

THESIS_METRICS = ("train_loss", "val_loss", "val_acc", "test_acc")
# The Parquet tables of the linear paths, as the sidecar names them.
EXTRA_TABLES = {
    "instability.parquet": "instability: Frankle et al. 2020",
    "interpolation.parquet": "instability: Frankle et al. 2020",
    "successive.parquet": "successive rounds' barrier: Paul et al. 2023",
    "successive_interpolation.parquet": "successive rounds' barrier: Paul et al. 2023",
}


class GroupFiles(TypedDict):
    """What `write_group` wrote for one group and what it says of it (export.json's `groups`); "unexported" is
    what no trial-level line of the manifest already says (baselines without a net, a group without files)."""

    prefix: str
    files: list[str]
    unexported: list[str]
    notes: list[str]
    missing: list[str]


def write_thesis_groups(
    trials: list[TrialResult],
    folder: str,
    experiment: str,
    last_results: dict[str, dict],
    now: float,
    extra_tables: Sequence[str] = (),
) -> list[GroupFiles]:
    """Write every group's thesis files (of the thesis' plan nets only: the rest are `parquet_only_notes`');
    returns per group its prefix, files, notes and what is missing."""
    taken: set[str] = set()
    done = []
    for g in group_trials([t for t in trials if thesis_net(t.config)]):
        done.append(write_group(g, folder, experiment, last_results, now, taken, list(extra_tables)))
    return done


def _prefix(g: Group, nets: list[TrialResult], last_results: dict, now: float, taken: set[str]) -> tuple[str, int]:
    """`{time}-{net}-{dataset}` with time = when the group's last trial reported; +1 s per clash."""
    members = nets + g.reinit + g.random_prune
    stamps = [last_results.get(t.tune_trial_id, {}).get("timestamp") for t in members]
    finished = max((s for s in stamps if s is not None), default=now)
    net = thesis_net(g.config)
    shift = 0
    while True:
        stamp = time.strftime(thesis.TIME_FORMAT, time.localtime(finished + shift))
        prefix = f"{stamp}-{net}-{thesis.DATASET_NAMES[g.config.dataset]}"
        if prefix not in taken:
            taken.add(prefix)
            return prefix, shift
        shift += 1


def _levels(t: TrialResult) -> dict[int, dict]:
    return {rec["round"]: rec for rec in t.records}


def history_arrays(trials: list[TrialResult], levels: list[int], length: int) -> tuple[dict[str, np.ndarray], bool]:
    """The thesis arrays (trials, levels, L) with NaN where a level or point is missing; and whether padded.

    Point k of a level is iteration (k + 1) * plot_step on the absolute axis, so a round rewound to
    iteration k starts its values at index k / plot_step and is NaN before (it did not train there)."""
    out: dict[str, np.ndarray] = {
        m: np.full((len(trials), len(levels), length), np.nan, dtype=np.float64) for m in THESIS_METRICS
    }
    sparsity = np.full(len(levels), np.nan, dtype=np.float64)
    padded = False
    for i, t in enumerate(trials):
        recs = _levels(t)
        for j, r in enumerate(levels):
            if r not in recs:
                padded = True
                continue
            at = np.asarray(recs[r]["iterations"]) // trials[i].config.eval_every - 1
            keep = at < length
            for m in THESIS_METRICS:
                out[m][i, j, at[keep]] = np.asarray(recs[r][m], dtype=np.float64)[keep]
            padded |= int(keep.sum()) < length
            if np.isnan(sparsity[j]):
                sparsity[j] = round(recs[r]["sparsity"], 4)
    out["sparsity"] = sparsity
    return out, padded


def _savez(path: str, arrays: dict) -> None:
    _write_new(path, lambda f: np.savez(f, **{k: arrays[k] for k in thesis.HISTORY_KEYS}))


def thesis_state(
    weights: dict[str, torch.Tensor], masks: dict[str, torch.Tensor], rewind: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """A state_dict in torch.nn.utils.prune's layout (+ the thesis' weight_init) for every masked layer."""
    out: dict[str, torch.Tensor] = {}

    def cpu(t: torch.Tensor) -> torch.Tensor:
        t = t.detach().to("cpu")
        return (t.to(torch.float32) if t.is_floating_point() else t).contiguous().clone()

    for key, value in weights.items():
        module, _, leaf = key.rpartition(".")
        if module not in masks:
            out[key] = cpu(value)  # BatchNorm parameters and buffers, as they are
        elif leaf == "weight":
            if f"{module}.bias" in weights:
                out[f"{module}.bias"] = cpu(weights[f"{module}.bias"])
            out[f"{module}.weight_orig"] = cpu(value)
            out[f"{module}.weight_init"] = cpu(rewind[key])
            out[f"{module}.weight_mask"] = masks[module].to(torch.float32).contiguous()
    return out


def write_group(
    g: Group,
    folder: str,
    experiment: str,
    last_results: dict,
    now: float,
    taken: set[str],
    extra_tables: Sequence[str] = (),
) -> GroupFiles:
    """One thesis experiment: histories, net and early-stop files, baseline histories, specs, sidecar."""
    cfg = g.config
    nets = sorted((t for t in g.tickets if t.records), key=lambda t: t.config.seed)
    prefix, shift = _prefix(g, nets, last_results, now, taken)
    info: GroupFiles = {
        "prefix": prefix,
        "files": [],
        "unexported": [],
        "notes": [f"prefix time shifted by {shift} s to avoid a name clash with another group"] if shift else [],
        "missing": [
            f"ticket seed {t.config.seed} (trial {t.trial_id}) has no finished round: not a net here"
            for t in g.tickets
            if t not in nets
        ],
    }
    if not nets:
        _unexported(info, "no ticket finished a round: no thesis files written")
        return info
    levels = list(range(cfg.rounds + 1))
    arrays, padded = history_arrays(nets, levels, cfg.eval_points)
    if padded:
        info["notes"].append("some nets lack levels or points: those entries are NaN (padded, never cut)")
    if cfg.rewind_iteration:
        info["notes"].append(
            f"late rewinding: levels >= 1 train from iteration {cfg.rewind_iteration} to "
            f"{cfg.iterations} on the absolute axis, so their first "
            f"{cfg.rewind_iteration // cfg.eval_every} points are NaN (not trained there); use "
            "nan-aware argmin (lth_ray.results.analysis.early_stop_indices) for early stop"
        )
    if cfg.retrain != "weight-rewind":
        start = cfg.iterations - retrain_length(cfg)
        info["notes"].append(
            f"retrain={cfg.retrain}: levels >= 1 go on from the trained weights their mask was chosen from, not "
            f"from weight_init, and train iterations {start + 1}..{cfg.iterations}"
            + (" at the schedule's final rate" if cfg.retrain == "fine-tune" else "")
            + (f"; their first {start // cfg.eval_every} points are NaN" if start else "")
        )
    if any(t.diverged_round is not None for t in nets):
        info["notes"].append(
            "nets "
            + ", ".join(f"{n} (level {t.diverged_round})" for n, t in enumerate(nets) if t.diverged_round is not None)
            + " diverged: a loss went NaN or infinite there and the trajectory stopped"
        )
    _savez(os.path.join(folder, thesis.histories_path(prefix)), arrays)
    info["files"].append(thesis.histories_path(prefix))
    net_info = [_write_net(t, n, prefix, levels, folder, info, last_results) for n, t in enumerate(nets)]
    baselines = {
        method: _write_baselines(method, trials, nets, prefix, name_of, folder, info)
        for method, trials, name_of in (
            ("reinit", g.reinit, thesis.random_histories_path),
            ("random-prune", g.random_prune, thesis.random_prune_histories_path),
        )
    }
    specs = thesis_specs(cfg, nets, net_info, info["notes"])
    changed = {k: v for k, v in recipe(cfg).items() if recipe_cell(v) != RECIPE_DEFAULTS[k]}
    if changed:
        info["notes"].append(
            "trained with " + ", ".join(f"{k}={v}" for k, v in changed.items()) + ": the "
            "thesis' specs have no keys for it (its code trains with Adam at a constant rate); "
            "the sidecar's recipe records it"
        )
    _write_json(os.path.join(folder, thesis.specs_path(prefix)), specs, indent=None)  # compact, as the thesis
    info["files"] += [thesis.specs_path(prefix), thesis.sidecar_path(prefix)]
    sidecar = {
        "format": EXPORT_FORMAT,
        "lth_ray_version": __version__,
        "experiment": experiment,
        "arch": cfg.arch,
        "dataset": cfg.dataset,
        "activation": cfg.activation,
        "method": cfg.method,
        "pruning": cfg.pruning,
        "prune_rate_fc": float(cfg.prune_rate_fc),
        "prune_rate_conv": float(cfg.prune_rate_conv),
        "prune_rate_out": float(cfg.prune_rate_out),
        "rounds": cfg.rounds,
        "iterations": cfg.iterations,
        "eval_every": cfg.eval_every,
        "eval_points": cfg.eval_points,
        "batch_size": cfg.batch_size,
        "learning_rate": float(cfg.learning_rate),
        "rewind_iteration": cfg.rewind_iteration,
        "precision": cfg.precision,
        "deterministic": cfg.deterministic,
        "recipe": recipe(cfg),
        "seeds": [t.config.seed for t in nets],
        "trial_ids": [t.trial_id for t in nets],
        "nets": net_info,
        "baselines": baselines,
        "duration_seconds": _seconds(nets),
        "padded": padded,
        "time_shift_s": shift,
        "files": info["files"],
        "missing": info["missing"],
        "notes": info["notes"],
        "other_methods": _other_methods(g),
        "extra_tables": {
            name: f"Parquet beside the thesis files ({EXTRA_TABLES.get(name, name)}); the thesis files are unchanged"
            for name in extra_tables
        },
        "layout": {
            "early_stop": "state_dicts per level in the -net<n>.pth layout (weight_orig/init/mask)",
            "random-prune": "-random-prune-histories<n>.npz: lth_ray's random-pruning baseline of net n, "
            "same arrays and shapes as -random-histories<n>.npz (levels 1..prune_count)",
        },
    }
    _write_json(os.path.join(folder, thesis.sidecar_path(prefix)), sidecar)
    return info


def _other_methods(g: Group) -> dict[str, dict]:
    """The group's members the thesis layout has no file for, by label: where to find them."""
    out: dict[str, dict] = {}
    for t in sorted(g.others, key=lambda t: (t.config.label, t.config.seed)):
        entry = out.setdefault(
            t.config.label,
            {"seeds": [], "trial_ids": [], "where": "Parquet (rounds, histories) rows with method = this label"},
        )
        entry["seeds"].append(t.config.seed)
        entry["trial_ids"].append(t.trial_id)
    return out


def _seconds(nets: list[TrialResult]) -> float:
    return sum(r["seconds"] for t in nets for r in t.records)


def _write_net(
    t: TrialResult, n: int, prefix: str, levels: list[int], folder: str, info: GroupFiles, last_results: dict
) -> dict:
    """`-net<n>.pth` (the last finished level) and `-early-stop<n>.pth`; returns the sidecar's entry."""
    recs = _levels(t)
    last = max(recs)
    rewind = t.rewind()
    assert t.rounds is not None  # a net has finished rounds
    masks = t.rounds.masks(last)
    trained = t.rounds.trained(last, masks)
    assert trained is not None, f"trial {t.trial_id}: no trained weights of its last round {last}"
    state = thesis_state(trained, masks, rewind)
    _write_new(os.path.join(folder, thesis.net_path(prefix, n)), functools.partial(torch.save, state))
    del state
    info["files"].append(thesis.net_path(prefix, n))
    if last != levels[-1]:
        info["notes"].append(
            f"net {n} (seed {t.config.seed}) stopped at level {last} of {levels[-1]}: -net{n}.pth holds level {last}"
        )
    wrote_es = _write_early_stop(t, prefix, n, levels, folder, rewind)
    if wrote_es:
        info["files"].append(thesis.early_stop_path(prefix, n))
    device, device_name = _device(last_results, t)
    return {
        "n": n,
        "seed": t.config.seed,
        "trial_id": t.trial_id,
        "status": t.status,
        "complete": t.complete,
        "diverged_level": t.diverged_round,
        "levels": sorted(recs),
        "net_file_level": last,
        "early_stop_file": wrote_es,
        "device": device,
        "device_name": device_name,
    }


def thesis_specs(cfg: TrajectoryConfig, nets: list[TrialResult], net_info: list[dict], notes: list[str]) -> dict:
    """The 18 keys of `-specs.json`, in the thesis' order; caveats for old readers go to `notes`."""
    devices = [d["device"] for d in net_info]
    device = max(set(devices), key=devices.count)
    if len(set(devices)) > 1:
        notes.append(f"nets ran on different devices {sorted(set(devices))}; specs name the most common")
    net = thesis_net(cfg)
    assert net is not None  # only the thesis' plan nets are grouped (`write_thesis_groups`)
    specs = {
        "net": net,
        "plan_conv": list(cfg.plan_conv),
        "plan_fc": list(cfg.plan_fc),
        "net_count": len(nets),
        "dataset": thesis.DATASET_NAMES[cfg.dataset],
        "epoch_count": thesis.epoch_count(cfg.dataset, cfg.iterations, cfg.batch_size),
        "learning_rate": float(cfg.learning_rate),
        "plot_step": cfg.eval_every,
        "verbosity": 0,
        "prune_method": thesis.PRUNE_METHODS[cfg.pruning],
        "prune_count": cfg.rounds,
        "prune_rate_conv": float(cfg.prune_rate_conv),
        "prune_rate_fc": float(cfg.prune_rate_fc),
        "duration": thesis.format_duration(_seconds(nets)),
        "device": device,
        "device_name": next(d["device_name"] for d in net_info if d["device"] == device),
        "save_early_stop": all(d["early_stop_file"] for d in net_info),
        "experiment_name": thesis.EXPERIMENT_NAMES[cfg.method],
    }
    assert tuple(specs) == thesis.SPEC_KEYS
    if cfg.activation != thesis.THESIS_ACTIVATION[net] or cfg.dataset not in ("mnist", "cifar10"):
        notes.append(
            f"trained with {cfg.activation} on {cfg.dataset}: the thesis' own loader rebuilds {net} "
            f"with {thesis.THESIS_ACTIVATION[net]} and knows only MNIST and CIFAR-10, so these nets load "
            "there but compute another function; lth_ray.results.thesis.get_models_from_files rebuilds them right"
        )
    return specs


def _device(last_results: dict, t: TrialResult) -> tuple[str, str]:
    """(device, device name) the trial's rounds ran on, as its round records say (the GPU's name, e.g.
    "NVIDIA H100 80GB HBM3", not "cuda:0"); the most common one when a restart moved it. Tune's last
    result is the fallback for records without them."""
    pairs = [(rec.get("device"), rec.get("device_name")) for rec in t.records]
    pairs = [(d, n) for d, n in pairs if d and n]
    if pairs:
        device, name = max(set(pairs), key=pairs.count)
        return str(device), str(name)
    last = last_results.get(t.tune_trial_id, {})
    device = last.get("device") or "cpu"
    return str(device), str(last.get("device_name") or device)


def _write_early_stop(t: TrialResult, prefix: str, n: int, levels: list[int], folder: str, rewind: dict) -> bool:
    """`-early-stop<n>.pth` as plain containers; False (nothing written) when the trial kept none. The levels
    are read round file by round file (one trial's levels at a time are in memory)."""
    recs = _levels(t)
    assert t.rounds is not None  # a net has finished rounds
    state_dicts: list[dict[str, torch.Tensor] | None] = []
    indices: list[int] = []
    for r in levels:
        masks = t.rounds.masks(r) if r in recs else None
        saved = t.rounds.early_stop(r, masks) if masks is not None else None
        if masks is None or saved is None or recs[r]["early_stop_iteration"] is None:
            state_dicts.append(None)
            indices.append(-1)
            continue
        state_dicts.append(thesis_state(saved, masks, rewind))
        indices.append(recs[r]["early_stop_iteration"] - 1)  # the thesis' 0-based iteration
    if all(sd is None for sd in state_dicts):
        return False
    _write_new(
        os.path.join(folder, thesis.early_stop_path(prefix, n)),
        lambda f: torch.save({"state_dicts": state_dicts, "indices": indices}, f),
    )
    return True


def _unexported(info: GroupFiles, line: str) -> None:
    info["missing"].append(line)
    info["unexported"].append(line)


def _write_baselines(
    method: str,
    trials: list[TrialResult],
    nets: list[TrialResult],
    prefix: str,
    name_of: Callable[[str, int], str],
    folder: str,
    info: GroupFiles,
) -> list[dict]:
    """Per net n, its baseline's histories for levels 1..prune_count in shape (1, prune_count, L)."""
    seeds = [t.config.seed for t in nets]
    written = []
    for b in sorted(trials, key=lambda t: t.config.seed):
        if b.config.seed not in seeds:
            _unexported(
                info,
                f"{method} baseline seed {b.config.seed} (trial {b.trial_id}): its ticket is not "
                "among the nets, so it is only in the Parquet files",
            )
            continue
        if not b.records:
            info["missing"].append(f"{method} baseline seed {b.config.seed} (trial {b.trial_id}) has no finished round")
            continue
        n = seeds.index(b.config.seed)
        arrays, padded = history_arrays([b], list(range(1, b.config.rounds + 1)), b.config.eval_points)
        name = name_of(prefix, n)
        _savez(os.path.join(folder, name), arrays)
        info["files"].append(name)
        if padded:
            info["notes"].append(f"{name}: missing levels or points are NaN (padded)")
        written.append(
            {
                "n": n,
                "seed": b.config.seed,
                "trial_id": b.trial_id,
                "file": name,
                "levels": sorted(_levels(b)),
                "complete": b.complete,
            }
        )
    return written
