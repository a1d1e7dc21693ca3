"""Every mode as right as the default one: baseline densities, late rewinding, diverged rounds, GPU numerics,
the whole recipe on the command line. Trajectories run in-process, without Ray."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from rounds_helpers import early_stop, masks, run_all, trained

from lth_ray.cli.trajectory import main as trajectory_main
from lth_ray.core.engine import numerics
from lth_ray.core.engine.cohort import Cohort
from lth_ray.core.engine.trajectory import Trajectory, cohort_members
from lth_ray.core.options.resolve import from_preset
from lth_ray.core.spec.config import ConfigError
from lth_ray.core.store.rounds import RoundStore
from lth_ray.distributed.grid import cohorts
from lth_ray.results import thesis
from lth_ray.results.experiment import StoredRounds, TrialResult
from lth_ray.results.export import write_export

SMALL = dict(iterations=120, eval_every=40, rounds=2)


@pytest.fixture(autouse=True)
def default_numerics():
    """A test that changes torch's process-wide numerics must not leak them into the next test."""
    yield
    numerics.configure("fp32", False)


def small(**kw):
    return from_preset("lenet", dataset="mnist", **{**SMALL, **kw})


def stored_trial(cfg, results: dict, folder, trial_id="t_00000") -> TrialResult:
    """A trial as the exporter sees it: its rounds written to round files in `folder`."""
    store = RoundStore.at(str(folder / trial_id / "rounds"))
    for r in sorted(results):
        store.write_round(results[r])
    return TrialResult(trial_id, "TERMINATED", str(folder / trial_id), cfg, StoredRounds(store))


# ------------------------------------------------------------------ 1. baselines at the ticket's density


@pytest.mark.parametrize("pruning", ["layerwise", "global"])
@pytest.mark.parametrize("arch", ["lenet", pytest.param("conv2", marks=pytest.mark.e2e)])
def test_every_baseline_has_the_tickets_density_at_every_round(arch, pruning, split, cifar_split, tmp_path):
    data = cifar_split if arch == "conv2" else split
    base = from_preset(arch, dataset=data.dataset, iterations=2, eval_every=1, rounds=3, pruning=pruning)
    cohort = Cohort(cohort_members(base, [0], ["random-prune", "reinit"]), data)
    rounds = list(cohort.run_results())
    ticket = {r: rounds[r][0] for r in range(4)}
    for i, method in ((1, "random-prune"), (2, "reinit")):
        b = {r: rounds[r][i] for r in range(1, 4)}
        for r in range(1, 4):
            assert b[r].record["method"] == method
            mine, theirs = masks(b[r]), masks(ticket[r])
            assert sum(int(m.sum()) for m in mine.values()) == sum(int(m.sum()) for m in theirs.values())
            assert b[r].record["sparsity"] == ticket[r].record["sparsity"]
            if pruning == "layerwise":  # ... and under layer-wise pruning every layer's count too
                assert {n: int(m.sum()) for n, m in mine.items()} == {n: int(m.sum()) for n, m in theirs.items()}
        if method == "random-prune":
            assert not torch.equal(masks(b[3])["fc.0"], masks(ticket[3])["fc.0"])
    if pruning == "global":  # the random masks are not forced to the ticket's per-layer split
        layers = ticket[3].record["layer_sparsity"]
        assert len({round(v, 3) for v in layers.values()}) > 1


def test_global_random_pruning_is_uniform_over_all_prunable_weights(split):
    """Each layer keeps about the global density: the survivors are drawn over all weights at once."""
    rec = Trajectory(small(method="random-prune", pruning="global", rounds=3, iterations=40), split).run()[-1]
    assert rec["layer_sparsity"]["fc.0"] == pytest.approx(rec["sparsity"], abs=0.01)
    assert rec["layer_sparsity"]["out"] != pytest.approx(0.9**3, abs=1e-9)  # not the layer-wise out rate


# ------------------------------------------------------------------ 2. late rewinding


def test_rewound_rounds_train_from_k_to_t_on_the_absolute_axis(split):
    cfg = small(rewind_iteration=40, rounds=2)
    t = Trajectory(cfg, split)
    done = [t.run_round() for _ in range(3)]
    # "steps" counts the optimizer updates really taken (the engine's per-member Adam step count)
    assert [r.record["steps"] for r in done] == [120, 80, 80]  # dense 0 -> T; rewound rounds k -> T
    dense, *pruned = [r.record for r in done]
    assert dense["iterations"] == [40, 80, 120] and (dense["start_iteration"], dense["steps"]) == (0, 120)
    for rec in pruned:
        assert rec["iterations"] == [80, 120] and (rec["start_iteration"], rec["steps"]) == (40, 80)
        assert rec["early_stop_iteration"] == rec["iterations"][rec["early_stop_index"]]
    # a rewound round starts from the weights at k, masked
    masks, start = t._mask_and_start(2)
    assert all(torch.equal(start[k], v) for k, v in t.state["rewind"].items())


def test_rewound_round_uses_the_batches_of_iterations_k_plus_1_on(split):
    """Iteration i of a round sees batch i of that round's data order, whether the round starts at 0 or k."""
    t = Trajectory(small(rewind_iteration=40), split)
    full = list(zip(range(120), t._batches(1, 0)))
    late = list(zip(range(80), t._batches(1, 40)))
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(full[40:], late))
    many = Trajectory(small(rewind_iteration=120, iterations=240, eval_every=40), split)
    per_epoch = len(split.x_train) // 60  # a rewind point past an epoch boundary
    full = [b for _, b in zip(range(200), many._batches(1, 0))]
    late = [b for _, b in zip(range(80), many._batches(1, 120))]
    assert per_epoch < 120 and all(torch.equal(a, b) for a, b in zip(full[120:], late))


def test_baselines_under_late_rewinding(split):
    """random-prune starts from the ticket's rewind point (k -> T); re-init draws a fresh init (0 -> T). In one
    cohort the ticket stays frozen, its Adam steps uncounted, while its re-init trains iterations 1..k."""
    cfg = small(rewind_iteration=40, rounds=1)
    cohort = Cohort(cohort_members(cfg, [0], ["random-prune", "reinit"]), split)
    dense, pruned = cohort.run_results()
    rp, reinit = pruned[1].record, pruned[2].record
    for k, v in cohort.states[0]["rewind"].items():  # the ticket's rewind point, handed over and written once
        assert torch.equal(cohort.states[1]["rewind"][k], v) and torch.equal(pruned[1].rewind[k], v)
    assert rp["iterations"] == [80, 120] and (rp["start_iteration"], rp["steps"]) == (40, 80)
    assert reinit["iterations"] == [40, 80, 120] and (reinit["start_iteration"], reinit["steps"]) == (0, 120)
    alone = Trajectory(cfg, split).run()  # the frozen wait changed nothing for the ticket
    assert pruned[0].record["steps"] == 80
    for key in ("val_loss", "test_acc", "train_loss"):
        assert pruned[0].record[key] == pytest.approx(alone[1][key], rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("k, why", [(50, "multiple of eval_every=40"), (120, "[0, iterations=120)"), (-40, "multiple")])
def test_rewind_iteration_must_be_a_multiple_of_eval_every_below_t(k, why):
    with pytest.raises(ConfigError, match=r"rewind_iteration=.*" + why.replace("[", r"\[").replace(")", r"\)")):
        small(rewind_iteration=k)


def test_rewound_rounds_sit_at_their_iterations_in_the_thesis_arrays(split, tmp_path):
    cfg = small(rewind_iteration=40, rounds=1)
    results = run_all(Trajectory(cfg, split))
    out = tmp_path / "export"
    out.mkdir()
    manifest = write_export([stored_trial(cfg, results, tmp_path)], str(out), "/x")
    prefix = str(out / manifest["groups"][0]["prefix"])
    h = thesis.get_experiment_histories_from_file(prefix)
    assert h.val_loss.shape == (1, 2, 3)
    assert np.isnan(h.val_loss[0, 1, 0])  # iteration 40: the rewound round did not train there
    assert h.val_loss[0, 1, 1:].tolist() == results[1].record["val_loss"]
    es = torch.load(f"{prefix}-early-stop0.pth", weights_only=True)
    assert es["indices"][1] == results[1].record["early_stop_iteration"] - 1
    net = torch.load(f"{prefix}-net0.pth", weights_only=True)  # weight_init is the rewind point, not the init
    assert torch.equal(net["fc.0.weight_init"], results[0].rewind["fc.0.weight"])
    rounds = pq.read_table(out / "rounds.parquet").to_pandas().set_index("round")
    assert rounds.loc[1, "start_iteration"] == 40 and rounds.loc[1, "steps"] == 80
    assert rounds.loc[1, "early_stop_iteration"] in (80, 120)
    sidecar = json.loads(open(f"{prefix}-lth_ray.json").read())
    assert any("late rewinding" in n for n in sidecar["notes"])


# ------------------------------------------------------------------ 3. diverged rounds


def test_a_diverging_learning_rate_is_marked_and_stops_the_trajectory(split, tmp_path):
    cfg = small(learning_rate=1e11, rounds=3)
    t = Trajectory(cfg, split)
    results = run_all(t)
    assert t.done and len(results) == 1
    rec = results[0].record
    assert rec["diverged"] and rec["early_stop_index"] is None and rec["early_stop_iteration"] is None
    assert math.isnan(rec["test_acc_at_early_stop"])
    assert t.state["diverged_round"] == 0 and results[0].early_stop is None  # index and weights agree
    out = tmp_path / "export"
    out.mkdir()
    manifest = write_export([stored_trial(cfg, results, tmp_path)], str(out), "/x")
    assert any("diverged" in line for line in manifest["missing"])
    assert manifest["trials"][0]["diverged_round"] == 0
    rounds = pq.read_table(out / "rounds.parquet").to_pandas()
    assert rounds["diverged"].tolist() == [True] and rounds["early_stop_iteration"].isna().all()


def test_non_finite_evaluations_are_never_the_early_stop_point(split, monkeypatch):
    """A NaN validation loss (which np.argmin would pick) is skipped, and the kept weights are the ones at
    the finite minimum: they equal a run cut at the early-stop iteration."""
    real, calls = Cohort._evaluate, []

    def nan_at_second_validation(self, tensors, x, y, members):
        loss, acc = real(self, tensors, x, y, members)
        calls.append(x is split.x_val)
        if x is split.x_val and sum(calls) == 3:  # the first is the round's start (supermask accuracy)
            loss = loss * float("nan")
        return loss, acc

    monkeypatch.setattr(Cohort, "_evaluate", nan_at_second_validation)
    t = Trajectory(small(rounds=0, iterations=200), split)
    result = t.run_round()
    rec = result.record
    assert math.isnan(rec["val_loss"][1]) and rec["diverged"]
    finite = [v if i != 1 else math.inf for i, v in enumerate(rec["val_loss"])]
    assert rec["early_stop_index"] == int(np.argmin(finite)) != 1
    monkeypatch.setattr(Cohort, "_evaluate", real)
    cut = Trajectory(small(rounds=0, iterations=rec["early_stop_iteration"]), split)
    for k, v in trained(cut.run_round()).items():
        assert torch.equal(early_stop(result)[k], v)


# ------------------------------------------------------------------ 4. numerics


def test_precision_and_determinism_reach_torch(split):
    Trajectory(small(precision="tf32"), split)
    assert torch.backends.cuda.matmul.fp32_precision == "tf32"
    assert torch.backends.cudnn.conv.fp32_precision == "tf32"
    assert not torch.are_deterministic_algorithms_enabled()
    t = Trajectory(small(deterministic=True), split)
    assert torch.backends.cuda.matmul.fp32_precision == "ieee"  # fp32: TF32 off for matmuls ...
    assert torch.backends.cudnn.conv.fp32_precision == "ieee"  # ... and for convolutions
    assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
    assert t.cohort.numerics["cublas_workspace_config"] == numerics.CUBLAS_WORKSPACE
    Trajectory(small(), split)  # the next trajectory in a reused worker gets its own settings back
    assert not torch.are_deterministic_algorithms_enabled()


@pytest.mark.parametrize("precision", ["fp32", "tf32", "bf16", "fp64"])
@pytest.mark.parametrize("deterministic", [False, True])
def test_configure_leaves_every_flag_readable_and_consistent(precision, deterministic):
    """torch.compile's convolution templates read the legacy TF32 flag, which raises when only the new
    precision API was set; deterministic runs skip the NaN fill of fresh memory (no determinism gained) and
    let cuDNN autotune only when not deterministic."""
    got = numerics.configure(precision, deterministic)
    tf32 = precision == "tf32"
    assert torch.backends.cudnn.allow_tf32 is tf32 and torch.backends.cuda.matmul.allow_tf32 is tf32
    assert torch.backends.cudnn.conv.fp32_precision == torch.backends.cuda.matmul.fp32_precision
    assert torch.backends.cudnn.conv.fp32_precision == ("tf32" if tf32 else "ieee")
    assert torch.utils.deterministic.fill_uninitialized_memory is False
    assert torch.backends.cudnn.benchmark is (not deterministic) and got["cudnn_benchmark"] is (not deterministic)
    numerics.configure("fp32", False)


def test_the_cublas_workspace_is_set_when_the_engine_is_imported():
    """Before any trial of a reused worker touches CUDA (cuBLAS reads it once per process), deterministic
    or not."""
    code = "import os; import lth_ray.core.engine.numerics as n; print(os.environ['CUBLAS_WORKSPACE_CONFIG'])"
    env = {k: v for k, v in os.environ.items() if k != "CUBLAS_WORKSPACE_CONFIG"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == numerics.CUBLAS_WORKSPACE


def test_bf16_autocasts_the_forward_pass_and_is_recorded(split, tmp_path):
    fp32 = Trajectory(small(rounds=0), split)
    bf16_cfg = small(rounds=0, precision="bf16", deterministic=True)
    bf16 = Trajectory(bf16_cfg, split)
    a, bf16_results = fp32.run()[0], run_all(bf16)
    b = bf16_results[0].record
    assert a["val_loss"] != b["val_loss"]  # another arithmetic: the run is not silently fp32
    again = Trajectory(bf16_cfg, split).run()[0]
    assert again["val_loss"] == b["val_loss"]  # reproducible on the CPU
    out = tmp_path / "export"
    out.mkdir()
    manifest = write_export([stored_trial(bf16_cfg, bf16_results, tmp_path)], str(out), "/x")
    rounds = pq.read_table(out / "rounds.parquet").to_pandas()
    assert rounds["precision"].tolist() == ["bf16"] and rounds["deterministic"].tolist() == [True]
    sidecar = json.loads((out / f"{manifest['groups'][0]['prefix']}-lth_ray.json").read_text())
    assert (sidecar["precision"], sidecar["deterministic"]) == ("bf16", True)
    assert bf16_cfg.key.endswith("-bf16-det-s0")


def test_specs_device_name_comes_from_the_round_records(split, tmp_path):
    cfg = small(rounds=1)
    results = run_all(Trajectory(cfg, split))
    for res in results.values():  # as a GPU run records them
        res.record["device"], res.record["device_name"] = "cuda:0", "NVIDIA H100 80GB HBM3"
    out = tmp_path / "export"
    out.mkdir()
    manifest = write_export(
        [stored_trial(cfg, results, tmp_path)], str(out), "/x", last_results={"t_00000": {"device": "cpu"}}
    )
    specs = json.loads((out / f"{manifest['groups'][0]['prefix']}-specs.json").read_text())
    assert (specs["device"], specs["device_name"]) == ("cuda:0", "NVIDIA H100 80GB HBM3")


# ------------------------------------------------------------------ 6. the whole recipe on the command line


def run_cli(capsys, *argv):
    code = trajectory_main(list(argv))
    out = capsys.readouterr()
    return code, [json.loads(line) for line in out.out.splitlines()], out.err


def test_trajectory_cli_takes_the_whole_recipe(tiny_mnist, capsys):
    code, lines, _ = run_cli(
        capsys,
        "--dataset",
        "mnist",
        "--data-root",
        str(tiny_mnist),
        "--rounds",
        "1",
        "--iterations",
        "60",
        "--eval-every",
        "20",
        "--learning-rate",
        "0.002",
        "--batch-size",
        "30",
        "--plan-fc",
        "50,20",
        "--rewind-iteration",
        "20",
    )
    assert code == 0 and [x["round"] for x in lines] == [0, 1]
    cfg = from_preset(
        "lenet",
        dataset="mnist",
        rounds=1,
        iterations=60,
        eval_every=20,
        learning_rate=0.002,
        batch_size=30,
        plan_fc=(50, 20),
        rewind_iteration=20,
    )
    assert cfg.arch == "fc50-20" and cfg.key == "fc50-20-mnist-imp-layerwise-fc0.2-rw20-lr0.002-b30-s0"
    assert from_preset("conv2", plan_conv=("64", "M")).arch == "conv64-M_fc256-256"


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--learning-rate", "-1"], "learning_rate=-1.0"),
        (["--batch-size", "0"], "batch_size=0"),
        (["--plan-fc", "300,x"], "--plan-fc='300,x'"),
        (["--plan-conv", "64,Q"], "plan token 'Q'"),
        (["--precision", "fp16"], "precision='fp16'"),
        (["--rewind-iteration", "30"], "rewind_iteration=30"),
    ],
)
def test_bad_recipe_values_are_one_error_line(argv, needle, tiny_mnist, capsys):
    code, _, err = run_cli(capsys, "--dataset", "mnist", "--data-root", str(tiny_mnist), *argv)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and needle in err


def test_a_preset_label_on_another_plan_is_refused():
    with pytest.raises(ConfigError, match="arch='lenet' names the preset plan"):
        small().replace(plan_fc=(10,))


def sweep_spec(*argv, module="lenet_mnist"):
    from importlib import import_module

    from lth_ray.distributed.sweep import build_parser, spec_from_args

    defaults = import_module(f"sweeps.{module}").DEFAULTS
    return spec_from_args(build_parser(defaults).parse_args(["--storage", "/tmp/x", "--name", "n", *argv]), defaults)


def test_sweep_lists_of_learning_rates_batch_sizes_and_rewind_points_are_grid_axes():
    spec = sweep_spec(
        "--seeds",
        "2",
        "--learning-rate",
        "1e-3,2e-3",
        "--batch-size",
        "60,128",
        "--rewind-iteration",
        "0,500",
        "--iterations",
        "1000",
        "--baselines",
        "reinit",
        "--precision",
        "tf32",
        "--deterministic",
    )
    tickets = [t for t in spec.trajectories if t.method == "imp"]
    assert len(tickets) == 2 * 2 * 2 * 2 and len(spec.trajectories) == 2 * len(tickets)
    assert {(t.learning_rate, t.batch_size, t.rewind_iteration) for t in tickets} == {
        (lr, b, k) for lr in (1e-3, 2e-3) for b in (60, 128) for k in (0, 500)
    }
    assert all(t.precision == "tf32" and t.deterministic for t in spec.trajectories)
    assert len({t.key for t in spec.trajectories}) == len(spec.trajectories)
    trials = cohorts(spec, 1)  # on CPUs one seed per trial: the ticket and its re-init ride together
    assert len(trials) == len(tickets) and all(
        [m.method for m in c] == ["imp", "reinit"] and c[0].seed == c[1].seed for c in trials
    )
    assert len(cohorts(spec, 2)) == len(tickets) // 2


def test_sweep_custom_plan_gets_its_own_arch_label():
    spec = sweep_spec(
        "--archs",
        "conv2",
        "--plan-conv",
        "32,M",
        "--plan-fc",
        "64",
        "--rounds",
        "1",
        "--seeds",
        "1",
        "--baselines",
        "none",
        module="conv_cifar10",
    )
    (t,) = spec.trajectories
    assert (t.arch, t.plan_conv, t.plan_fc) == ("conv32-M_fc64", (32, "M"), (64,))
    with pytest.raises(ConfigError, match="give exactly one --archs"):
        sweep_spec("--plan-conv", "32,M", module="conv_cifar10")
    with pytest.raises(ConfigError, match="--learning-rate='fast' is not a comma-separated list"):
        sweep_spec("--learning-rate", "fast")
    with pytest.raises(ConfigError, match="rewind_iteration=150"):
        sweep_spec("--rewind-iteration", "0,150", "--iterations", "1000")
