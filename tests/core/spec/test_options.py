"""One option table, two CLIs: the trajectory's and the sweep's parsers are built from lth_ray.core.spec.options.

The same setting has the same spelling in both; every option has help, its choices and its default in --help;
a bad choice is one `error:` line; the spellings of lth_ray 0.2 still parse to the same configs; the sweep's
comma lists are its grid's axes. Nothing here trains or starts Ray.
"""

from __future__ import annotations

import argparse
import json
import os
import re

import pytest

from lth_ray.cli import trajectory as trajectory_cli
from lth_ray.core.methods.member import is_ticket
from lth_ray.core.methods.registry import baselines
from lth_ray.core.options.option import SETTINGS
from lth_ray.core.options.parsing import option
from lth_ray.core.options.recipe import RECIPE
from lth_ray.core.options.resolve import from_preset, registered_models
from lth_ray.core.spec.config import ConfigError, TrajectoryConfig
from lth_ray.core.spec.training import ADDED_DEFAULTS
from lth_ray.distributed import sweep as sweep_cli  # its command line is lth_ray.distributed.sweep_spec
from sweeps.conv_cifar10 import DEFAULTS as CONV
from sweeps.lenet_mnist import DEFAULTS as LENET


def trajectory_members(*argv: str) -> list[TrajectoryConfig]:
    return trajectory_cli.members_from_args(trajectory_cli.build_parser().parse_args(list(argv)))


def sweep_spec(*argv: str, defaults=LENET):
    args = sweep_cli.build_parser(defaults).parse_args(["--storage", "/tmp/lth-options", "--name", "n", *argv])
    return sweep_cli.spec_from_args(args, defaults)


def visible(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The options --help shows, by flag (hidden aliases and -h left out)."""
    return {
        flag: a
        for a in parser._actions
        if a.help != argparse.SUPPRESS and a.dest != "help"
        for flag in a.option_strings
    }


PARSERS = {
    "trajectory": trajectory_cli.build_parser(),
    "lenet_mnist": sweep_cli.build_parser(LENET),
    "conv_cifar10": sweep_cli.build_parser(CONV),
}


def test_every_setting_of_the_recipe_has_one_option_and_both_clis_spell_it_alike():
    dests = {o.dest for o in RECIPE}
    assert set(SETTINGS) - dests == {"ablation"}  # each member's ablation comes from the cohort's --ablations
    trajectory, sweep = visible(PARSERS["trajectory"]), visible(PARSERS["lenet_mnist"])
    for o in RECIPE:
        for scope, flags in (("trajectory", trajectory), ("sweep", sweep)):
            if scope in o.scopes:
                assert flags[o.flag].dest == o.dest, (scope, o.flag)
    shared = {o.flag for o in RECIPE if o.scopes == ("trajectory", "sweep")}
    assert shared <= set(trajectory) & set(sweep)
    assert {f for f in trajectory if f not in sweep} == {"--seed", "--threads", "--rounds-dir", "--save-state"}
    assert "--preset" not in trajectory and "--prune-rates" not in sweep and "--one-shot" not in sweep


def test_the_baselines_choices_are_the_registrys():
    assert option("baselines").allowed() == (*baselines(), "none")
    at_init = ("snip", "grasp", "synflow", "magnitude-init")
    variants = ("signed-constant", "reshuffle", "signed-reshuffle", "signed-reinit")
    assert baselines() == ("reinit", "random-prune", *at_init, *variants)


@pytest.mark.parametrize("name", PARSERS)
def test_every_option_has_help_its_choices_and_its_default_shown(name):
    parser = PARSERS[name]
    text = re.sub(r"-\n\s+", "-", parser.format_help())  # argparse may wrap a name at its hyphen
    for flag, action in visible(parser).items():
        assert action.help and action.help.strip() and "(default: " in action.help, flag
        assert "(default: None)" not in action.help, flag
    for o in RECIPE:
        if o.choices and o.flag in visible(parser) and o.dest not in ("arch", "dataset", "method"):
            assert all(c in text for c in o.choices), o.flag
    assert "--prune-rates" not in text and "--conv-prune-rates" not in text


def test_a_sweep_module_shows_its_own_archs_data_sets_and_defaults():
    conv = visible(PARSERS["conv_cifar10"])
    assert "conv2, conv4, conv6" in conv["--arch"].help and "(default: conv2,conv4,conv6)" in conv["--arch"].help
    assert conv["--dataset"].metavar == "{cifar10}" and conv["--method"].metavar == "{imp,one-shot}"
    assert "(default: 3)" in conv["--seeds"].help and "(default: reinit,random-prune)" in conv["--baselines"].help
    lenet = visible(PARSERS["lenet_mnist"])
    assert lenet["--dataset"].metavar == "{mnist,fashion-mnist}" and "(default: mnist)" in lenet["--dataset"].help
    assert "(default: 0.0012)" not in lenet["--learning-rate"].help  # preset-dependent: named per preset
    assert "lenet 0.0012" in lenet["--learning-rate"].help


@pytest.mark.parametrize(
    "argv, line",
    [
        (["--device", "tpu"], "error: --device='tpu' is unknown; allowed: auto, cpu, cuda"),
        (["--pruning", "random"], "error: --pruning='random' is unknown; allowed: layerwise, global"),
        (["--activation", "gelu"], "error: --activation='gelu' is unknown; allowed: relu, tanh"),
        (["--precision", "fp16"], "error: --precision='fp16' is unknown; allowed: fp32, tf32, bf16, fp64"),
        (
            ["--arch", "conv9"],
            "error: --arch='conv9' is unknown; allowed: lenet, conv2, conv4, conv6, resnet20, "
            "resnet20-lth, resnet20-lth-warmup, vgg16, vgg19, vgg19-lth, vgg19-lth-warmup, "
            + ", ".join(m for m in registered_models() if m.startswith("cifar_")),
        ),  # the presets, then every registered model
        # the cohort's lists are checked where its members are made (lth_ray.core.engine.trajectory.cohort_members)
        (["--ablations", "shuffle,flip"], "error: ablation 'flip' is unknown; allowed: shuffle, reinit, invert"),
        (
            ["--baselines", "snip,lottery"],
            "error: baseline 'lottery' is unknown; allowed: reinit, random-prune, snip, grasp, synflow, "
            "magnitude-init, signed-constant, reshuffle, signed-reshuffle, signed-reinit",
        ),
    ],
)
def test_a_bad_choice_is_one_error_line_in_the_trajectory_cli(argv, line, capsys):
    assert trajectory_cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.splitlines() == [line]


@pytest.mark.parametrize(
    "argv, line",
    [
        (["--device", "tpu"], "error: --device='tpu' is unknown; allowed: auto, cpu, cuda"),
        (["--archs", "conv2,lenet"], "error: --arch: 'lenet' is not allowed here; allowed: conv2, conv4, conv6"),
        (["--dataset", "mnist"], "error: --dataset='mnist' is not allowed here; allowed: cifar10"),
        (["--method", "snip"], "error: --method='snip' is not allowed here; allowed: imp, one-shot"),
        (
            ["--baselines", "lottery"],
            "error: --baselines: 'lottery' is unknown; allowed: reinit, random-prune, snip, "
            "grasp, synflow, magnitude-init, signed-constant, reshuffle, signed-reshuffle, signed-reinit, none",
        ),
        (["--track", "neptune"], "error: --track='neptune' is unknown; allowed: none, wandb, mlflow"),
    ],
)
def test_a_bad_choice_is_one_error_line_in_the_sweep_cli(argv, line, capsys, tmp_path):
    assert sweep_cli.main(CONV, ["--storage", str(tmp_path), "--name", "n", "--dry-run", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.splitlines() == [line]
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--eval-every", "many"], "error: argument --eval-every: invalid int value: 'many'"),
        (["--learning-rate", "1e-3,2e-3"], "error: argument --learning-rate: invalid float value: '1e-3,2e-3'"),
        (["--no-such-option"], "error: unrecognized arguments: --no-such-option"),
    ],
)
def test_argparse_errors_are_one_line_too(argv, fragment, capsys):
    with pytest.raises(SystemExit) as exit_:
        trajectory_cli.build_parser().parse_args(argv)
    assert exit_.value.code == 2 and capsys.readouterr().err.splitlines() == [fragment]


def test_the_old_spellings_parse_to_the_same_configs():
    old = trajectory_members("--preset", "conv2", "--one-shot", "--prune-rates", "0.3", "--conv-prune-rates", "0.2")
    new = trajectory_members(
        "--arch", "conv2", "--method", "one-shot", "--prune-rate-fc", "0.3", "--prune-rate-conv", "0.2"
    )
    assert [m.to_dict() for m in old] == [m.to_dict() for m in new]
    assert (new[0].arch, new[0].method, new[0].prune_rate_fc, new[0].prune_rate_conv) == ("conv2", "one-shot", 0.3, 0.2)
    old_sweep = sweep_spec(
        "--archs",
        "conv2,conv4",
        "--prune-rates",
        "0.1,0.2",
        "--conv-prune-rates",
        "0.1,0.15",
        "--one-shot",
        defaults=CONV,
    )
    new_sweep = sweep_spec(
        "--arch",
        "conv2,conv4",
        "--prune-rate-fc",
        "0.1,0.2",
        "--prune-rate-conv",
        "0.1,0.15",
        "--method",
        "one-shot",
        defaults=CONV,
    )
    assert old_sweep == new_sweep and {t.method for t in new_sweep.trajectories} == {
        "one-shot",
        "reinit",
        "random-prune",
    }


def test_the_same_command_line_gives_the_same_recipe_in_both_clis():
    argv = [
        "--arch",
        "lenet",
        "--dataset",
        "fashion-mnist",
        "--iterations",
        "1000",
        "--eval-every",
        "50",
        "--rounds",
        "3",
        "--learning-rate",
        "0.002",
        "--batch-size",
        "30",
        "--prune-rate-fc",
        "0.3",
        "--pruning",
        "global",
        "--rewind-iteration",
        "100",
        "--activation",
        "tanh",
        "--precision",
        "fp64",
        "--deterministic",
        "--instability",
        "--instability-rounds",
        "0,2",
        "--instability-points",
        "5",
        "--device",
        "cpu",
        "--no-early-stop-weights",
        "--plan-fc",
        "50,20",
        "--seeds",
        "2",
        "--data-root",
        "/data",
    ]
    (ticket0, ticket1) = trajectory_members(*argv)
    spec = sweep_spec(*argv, "--baselines", "none")
    assert [t.to_dict() for t in spec.trajectories] == [ticket0.to_dict(), ticket1.to_dict()]
    assert ticket0.arch == "fc50-20" and ticket0.instability_rounds == (0, 2) and not ticket0.save_early_stop


def test_the_recorded_recipe_is_the_presets_with_what_the_command_line_set():
    (default,) = trajectory_members()
    # the modern recipe's settings are recorded only where they differ from their defaults (0.2's configs)
    assert default == from_preset("lenet") and list(default.to_dict()) == [
        s for s in SETTINGS if s not in ADDED_DEFAULTS
    ]
    (conv,) = trajectory_members("--arch", "conv4", "--seed", "3", "--rounds", "5", "--method", "snip")
    assert conv.to_dict() == from_preset("conv4", seed=3, rounds=5, method="snip").to_dict()
    (ticket,) = sweep_spec("--seeds", "1").trajectories
    assert ticket.to_dict() == from_preset("lenet", seed=0).to_dict()


def test_the_sweeps_comma_lists_are_the_grids_axes():
    spec = sweep_spec(
        "--prune-rate-fc", "0.1,0.2,0.3", "--learning-rate", "1e-3,2e-3", "--seeds", "2", "--prune-rate-conv", "0.1,0.5"
    )  # Lenet has no conv layers: no conv axis
    assert len(spec.trajectories) == 3 * 2 * 2
    assert {(t.prune_rate_fc, t.learning_rate, t.seed) for t in spec.trajectories} == {
        (p, lr, s) for p in (0.1, 0.2, 0.3) for lr in (1e-3, 2e-3) for s in (0, 1)
    }
    conv = sweep_spec(
        "--arch",
        "conv2,conv6",
        "--prune-rate-conv",
        "0.1,0.2",
        "--batch-size",
        "60,120",
        "--rewind-iteration",
        "0,500",
        "--seeds",
        "1",
        "--baselines",
        "reinit",
        defaults=CONV,
    )
    tickets = [t for t in conv.trajectories if is_ticket(t)]
    assert len(tickets) == 2 * 2 * 2 * 2 and len(conv.trajectories) == 2 * len(tickets)
    assert {t.arch for t in tickets} == {"conv2", "conv6"} and {t.rewind_iteration for t in tickets} == {0, 500}


def test_track_is_carried_into_the_spec():
    assert sweep_spec().track == "none"
    assert sweep_spec("--track", "mlflow").track == "mlflow"


def test_resume_without_a_name_continues_the_newest_unfinished_sweep(tmp_path):
    args = sweep_cli.build_parser(LENET).parse_args(["--resume", "--storage", str(tmp_path)])
    assert args.resume and args.name is None  # legal at parse time
    with pytest.raises(ConfigError, match=f"^no unfinished sweep in {tmp_path}; give --name$"):
        sweep_cli.spec_from_args(args, LENET)
    for name, mtime in (("older", 1000), ("newer", 2000)):  # Tune's files as a killed driver leaves them
        (tmp_path / name).mkdir()
        (tmp_path / name / "tuner.pkl").write_bytes(b"")
        snapshot = tmp_path / name / "experiment_state-2026-01-01_00-00-00.json"
        snapshot.write_text(json.dumps({"trial_data": []}))
        os.utime(snapshot, (mtime, mtime))
    spec = sweep_cli.spec_from_args(args, LENET)
    assert spec.resume and spec.name == "newer" and spec.experiment == str(tmp_path / "newer")
