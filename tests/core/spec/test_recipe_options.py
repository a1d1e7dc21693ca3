"""The modern recipe on both command lines: every new option reaches its config field, lengths in epochs become
the data set's iterations, bad recipes are one `error:` line, the deeper nets' presets carry OpenLTH's and the LTH
paper's numbers, the registries give the choices, and the Frankle et al. 2020 sweep plans its grid. Nothing here
trains or starts Ray."""

from __future__ import annotations

import argparse

import pytest
import torch

from lth_ray.cli import trajectory as trajectory_cli
from lth_ray.core.data.registry import DATASETS, dataset_entry
from lth_ray.core.methods import METHODS
from lth_ray.core.methods.member import is_ticket
from lth_ray.core.models.registry import MODELS, model_entry
from lth_ray.core.options.parsing import check_choices
from lth_ray.core.options.recipe import RECIPE
from lth_ray.core.options.resolve import from_preset, iterations_per_epoch
from lth_ray.core.spec.config import ConfigError, TrajectoryConfig
from lth_ray.core.spec.presets import PLAN_NETS, PRESETS
from lth_ray.distributed import sweep as sweep_cli
from sweeps import frankle2020
from sweeps.deep_cifar10 import DEFAULTS as DEEP
from sweeps.lenet_mnist import DEFAULTS as LENET

CIFAR_EPOCH = (50_000 - 5_000) // 128  # 351 iterations at batch 128


def trajectory_config(*argv: str) -> TrajectoryConfig:
    (config,) = trajectory_cli.members_from_args(trajectory_cli.build_parser().parse_args(list(argv)))
    return config


def sweep_tickets(*argv: str, defaults=DEEP) -> list[TrajectoryConfig]:
    args = sweep_cli.build_parser(defaults).parse_args(
        ["--storage", "/tmp/lth-recipe", "--name", "n", "--baselines", "none", "--seeds", "1", *argv]
    )
    return [t for t in sweep_cli.spec_from_args(args, defaults).trajectories if is_ticket(t)]


RECIPE_OPTIONS = [
    (["--optimizer", "adam", "--momentum", "0"], "optimizer", "adam"),
    (["--momentum", "0.5"], "momentum", 0.5),
    (["--nesterov"], "nesterov", True),
    (["--weight-decay", "5e-4"], "weight_decay", 5e-4),
    (["--milestones", "40ep,60ep"], "milestones", (40 * CIFAR_EPOCH, 60 * CIFAR_EPOCH)),
    (["--milestones", "1000,2000it"], "milestones", (1000, 2000)),
    (["--milestones", "none"], "milestones", ()),
    (["--gamma", "0.2"], "gamma", 0.2),
    (["--warmup", "10000it"], "warmup", 10_000),
    (["--warmup", "2ep"], "warmup", 2 * CIFAR_EPOCH),
    (["--augment", "none"], "augment", "none"),
    (["--prune-ignore", "fc,blocks.3.shortcut.0"], "prune_ignore", ("fc", "blocks.3.shortcut.0")),
    (["--prune-ignore", "none"], "prune_ignore", ()),
    (["--instability-bn", "recompute"], "instability_bn", "recompute"),
    (["--iterations", "80ep", "--milestones", "40ep"], "iterations", 80 * CIFAR_EPOCH),
    (["--iterations", "30000it", "--milestones", "20000"], "iterations", 30_000),
    (["--rewind-iteration", "2000"], "rewind_iteration", 2000),
    (["--rewind-iteration", "500it"], "rewind_iteration", 500),
]


@pytest.mark.parametrize("argv, field, value", RECIPE_OPTIONS)
def test_every_recipe_option_reaches_its_field_in_both_clis(argv, field, value):
    one = trajectory_config("--arch", "resnet20", *argv)
    (ticket,) = sweep_tickets("--arch", "resnet20", *argv)
    assert getattr(one, field) == value and getattr(ticket, field) == value
    assert one.to_dict() == ticket.to_dict()
    assert type(getattr(one, field)) is type(value)  # tuples stay tuples: the config compares equal to itself


def test_the_thesis_nets_take_the_recipe_too():
    argv = [
        "--arch",
        "lenet",
        "--optimizer",
        "sgd",
        "--momentum",
        "0.9",
        "--nesterov",
        "--weight-decay",
        "1e-4",
        "--milestones",
        "20000,30000",
        "--gamma",
        "0.5",
        "--warmup",
        "1000",
        "--iterations",
        "40000",
    ]
    one = trajectory_config(*argv)
    (ticket,) = sweep_tickets(*argv, defaults=LENET)
    assert one.to_dict() == ticket.to_dict()
    assert (one.optimizer, one.momentum, one.nesterov, one.weight_decay, one.milestones, one.gamma, one.warmup) == (
        "sgd",
        0.9,
        True,
        1e-4,
        (20_000, 30_000),
        0.5,
        1000,
    )


@pytest.mark.parametrize(
    "argv, dataset, batch",
    [
        (["--arch", "lenet"], "mnist", 60),
        (["--arch", "lenet", "--dataset", "fashion-mnist", "--batch-size", "100"], "fashion-mnist", 100),
        (["--arch", "conv2"], "cifar10", 60),
        (["--arch", "resnet20", "--milestones", "none"], "cifar10", 128),
        (["--arch", "resnet20", "--batch-size", "64", "--milestones", "none"], "cifar10", 64),
    ],
)
def test_an_epoch_is_the_data_sets_training_examples_after_the_validation_split_per_batch(argv, dataset, batch):
    entry = dataset_entry(dataset)
    per_epoch = (entry.train_size - entry.validation_size) // batch
    assert iterations_per_epoch(dataset, batch) == per_epoch
    config = trajectory_config(*argv, "--iterations", "80ep", "--eval-every", "1")
    assert config.iterations == 80 * per_epoch and config.to_dict()["iterations"] == 80 * per_epoch


def test_a_presets_epochs_follow_the_final_data_set_and_batch_size():
    assert from_preset("resnet20").iterations == 160 * 351 == 56_160
    assert from_preset("resnet20", batch_size=64).iterations == 160 * 703
    fashion = from_preset("resnet20", dataset="fashion-mnist")
    assert fashion.iterations == 160 * (55_000 // 128) and fashion.milestones == (80 * 429, 120 * 429)


BAD_RECIPES = [
    (["--arch", "resnet20", "--iterations", "100ep"], "error: milestone 42120 is past the end of training"),
    (["--iterations", "1000", "--warmup", "2000"], "error: warmup=2000 is not shorter than training"),
    (["--optimizer", "adam", "--momentum", "0.9"], "error: momentum=0.9 is not allowed with optimizer='adam'"),
    (["--iterations", "many"], "error: --iterations='many' is not a length"),
    (["--milestones", "80ep,later"], "error: --milestones='later' is not a length"),
    (["--optimizer", "rmsprop"], "'rmsprop' is unknown; allowed: adam, sgd"),
    (["--arch", "vgg16", "--plan-fc", "100"], "error: plan_fc=[100] is not allowed with arch='vgg16'"),
]


@pytest.mark.parametrize("argv, start", BAD_RECIPES)
def test_a_bad_recipe_is_one_error_line_in_the_trajectory_cli(argv, start, capsys):
    assert trajectory_cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1
    assert captured.err.startswith(start) or captured.err.startswith("error: ") and start in captured.err


@pytest.mark.parametrize("argv, start", BAD_RECIPES)
def test_a_bad_recipe_is_one_error_line_in_the_sweep_cli(argv, start, capsys, tmp_path):
    defaults = DEEP if argv[:2] in (["--arch", "resnet20"], ["--arch", "vgg16"]) else LENET
    assert sweep_cli.main(defaults, ["--storage", str(tmp_path), "--name", "n", "--dry-run", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1
    assert captured.err.startswith(start) or captured.err.startswith("error: ") and start in captured.err
    assert not list(tmp_path.iterdir())


def test_openlths_defaults():
    for name, model in (("resnet20", "cifar_resnet_20"), ("vgg16", "cifar_vgg_16")):
        c = from_preset(name)
        assert c.arch == model and c.dataset == "cifar10" and (c.plan_conv, c.plan_fc) == ((), ())
        assert (c.optimizer, c.learning_rate, c.momentum, c.nesterov, c.weight_decay) == ("sgd", 0.1, 0.9, False, 1e-4)
        assert (c.batch_size, c.iterations, c.milestones, c.gamma, c.warmup) == (
            128,
            160 * CIFAR_EPOCH,
            (80 * CIFAR_EPOCH, 120 * CIFAR_EPOCH),
            0.1,
            0,
        )
        assert (c.pruning, c.prune_rate_fc, c.augment) == ("global", 0.2, "flip-crop")
        assert from_preset(model) == c  # OpenLTH's own name gives its defaults
    assert from_preset("resnet20").prune_ignore == ()  # OpenLTH's ResNets prune every layer
    assert from_preset("vgg16").prune_ignore == ("fc",)
    with torch.device("meta"):  # the name is the VGG's output layer
        vgg = model_entry("cifar_vgg_16").build(from_preset("vgg16"), (3, 32, 32), 10)
    assert model_entry("cifar_vgg_16").prunable(vgg)["fc"] == "out"
    assert from_preset("cifar_resnet_56").arch == "cifar_resnet_56"  # any depth: its family's defaults
    assert from_preset("cifar_vgg_11").prune_ignore == ("fc",)


def test_the_lth_papers_section_5_variants():
    resnet, warm = from_preset("resnet20-lth"), from_preset("resnet20-lth-warmup")
    assert (resnet.iterations, resnet.milestones, resnet.learning_rate, resnet.warmup) == (
        30_000,
        (20_000, 25_000),
        0.1,
        0,
    )
    assert (warm.iterations, warm.milestones, warm.learning_rate, warm.warmup) == (
        30_000,
        (20_000, 25_000),
        0.03,
        20_000,
    )
    assert resnet.prune_ignore == ("fc", "blocks.3.shortcut.0", "blocks.6.shortcut.0")
    with torch.device("meta"):  # the two 1x1 downsampling shortcuts of ResNet-20 are those layers
        net = model_entry("cifar_resnet_20").build(resnet, (3, 32, 32), 10)
    kinds = model_entry("cifar_resnet_20").prunable(net)
    assert all(name in kinds for name in resnet.prune_ignore)
    assert [n for n in kinds if "shortcut" in n] == ["blocks.3.shortcut.0", "blocks.6.shortcut.0"]
    vgg, vgg_warm = from_preset("vgg19-lth"), from_preset("vgg19-lth-warmup")
    assert vgg.arch == "cifar_vgg_19" and vgg.batch_size == 64 and vgg.iterations == 112_480
    assert vgg.milestones == (80 * 703, 120 * 703) and vgg.learning_rate == 0.1 and vgg.warmup == 0
    assert vgg_warm.warmup == 10_000 and vgg_warm.learning_rate == 0.1 and vgg_warm.prune_ignore == ("fc",)
    for c in (resnet, warm, vgg, vgg_warm):
        assert (c.optimizer, c.momentum, c.weight_decay, c.augment, c.pruning, c.prune_rate_fc) == (
            "sgd",
            0.9,
            1e-4,
            "flip-crop",
            "global",
            0.2,
        )


def test_a_preset_switched_to_adam_drops_its_momentum_unless_asked():
    assert (
        from_preset("resnet20", optimizer="adam").momentum,
        trajectory_config("--arch", "vgg16", "--optimizer", "adam").momentum,
    ) == (0.0, 0.0)
    with pytest.raises(ConfigError, match="momentum=0.9 is not allowed with optimizer='adam'"):
        from_preset("resnet20", optimizer="adam", momentum=0.9)


def test_the_thesis_presets_are_unchanged():
    for name in PLAN_NETS:
        p = PRESETS[name]
        config = from_preset(name)
        assert config == TrajectoryConfig(
            arch=p.name,
            plan_conv=p.plan_conv,
            plan_fc=p.plan_fc,
            dataset=p.dataset,
            iterations=p.iterations,
            batch_size=p.batch_size,
            learning_rate=p.learning_rate,
            prune_rate_conv=p.prune_rate_conv,
            prune_rate_fc=p.prune_rate_fc,
        )
        assert (config.optimizer, config.augment, config.milestones, config.warmup) == ("adam", "none", (), 0)
        assert not {"optimizer", "augment", "milestones", "warmup", "momentum"} & set(config.to_dict())
    assert PLAN_NETS == ("lenet", "conv2", "conv4", "conv6")


def action(parser: argparse.ArgumentParser, flag: str) -> argparse.Action:
    return next(a for a in parser._actions if flag in a.option_strings)


def test_the_choices_are_the_registries_when_the_parser_is_built(monkeypatch):
    for name in ("resnet20", "vgg19-lth-warmup", "cifar_resnet_20", "cifar_vgg_16"):
        assert name in action(trajectory_cli.build_parser(), "--arch").help
    monkeypatch.setitem(MODELS, "tiny-net", MODELS["plan"])
    monkeypatch.setitem(DATASETS, "tiny-set", DATASETS["mnist"])
    monkeypatch.setitem(METHODS, "tiny-method", METHODS["random-prune"])  # not a ticket: a baseline
    parser = trajectory_cli.build_parser()
    assert "tiny-net" in action(parser, "--arch").help
    assert action(parser, "--dataset").metavar == "{mnist,fashion-mnist,cifar10,tiny-set}"
    assert "tiny-method}" in action(parser, "--method").metavar
    assert "signed-reinit, tiny-method, none" in action(parser, "--baselines").help
    check_choices(
        parser.parse_args(["--dataset", "tiny-set", "--arch", "tiny-net", "--baselines", "tiny-method"]),
        RECIPE,
        "trajectory",
    )  # known now: no error


def test_the_recipes_grid_axes():
    tickets = sweep_tickets(
        "--arch",
        "lenet",
        "--optimizer",
        "adam,sgd",
        "--weight-decay",
        "0,1e-4",
        "--warmup",
        "0,1ep",
        "--eval-every",
        "4",
        "--rewind-iteration",
        "0,1ep",
        defaults=LENET,
    )
    epoch = 55_000 // 60
    assert len(tickets) == 2 * 2 * 2 * 2
    assert {(t.optimizer, t.weight_decay, t.warmup, t.rewind_iteration) for t in tickets} == {
        (o, wd, w, k) for o in ("adam", "sgd") for wd in (0.0, 1e-4) for w in (0, epoch) for k in (0, epoch)
    }
    archs = sweep_tickets("--arch", "resnet20,vgg16,resnet20-lth", "--augment", "none,flip-crop")
    assert {(t.arch, t.augment) for t in archs} == {
        (a, aug) for a in ("cifar_resnet_20", "cifar_vgg_16") for aug in ("none", "flip-crop")
    }
    assert len(archs) == 6


def test_frankle2020_plans_resnet20_and_vgg16_at_four_rewind_points_with_instability(capsys, tmp_path):
    argv = ["--num-gpus", "8", "--dry-run", "--storage", str(tmp_path), "--name", "f"]
    spec = sweep_cli.spec_from_args(sweep_cli.build_parser(frankle2020.DEFAULTS).parse_args(argv), frankle2020.DEFAULTS)
    tickets = [t for t in spec.trajectories if is_ticket(t)]
    assert {(t.arch, t.rewind_iteration) for t in tickets} == {
        (a, k) for a in ("cifar_resnet_20", "cifar_vgg_16") for k in (0, 100, 500, 2000)
    }
    assert all(t.instability for t in tickets) and {t.seed for t in tickets} == {0, 1, 2}
    assert {t.label for t in spec.trajectories} == {"imp", "reinit", "random-prune"}
    assert all(
        t
        == from_preset(
            {"cifar_resnet_20": "resnet20", "cifar_vgg_16": "vgg16"}[t.arch],
            rewind_iteration=t.rewind_iteration,
            instability=True,
            seed=t.seed,
        )
        for t in tickets
    )
    assert sweep_cli.main(frankle2020.DEFAULTS, argv) == 0
    out = capsys.readouterr().out
    trials = [line for line in out.splitlines() if line.startswith("  ")]
    for arch in ("cifar_resnet_20", "cifar_vgg_16"):
        assert any(line.startswith(f"  {arch}-cifar10-imp-global-fc0.2-lr0.1") for line in trials)  # k = 0
        for k in (100, 500, 2000):
            assert any(line.startswith(f"  {arch}-cifar10-imp-global-fc0.2-rw{k}-") for line in trials), (arch, k)
    assert "plan: " in out and "for 8 GPUs" in out and "GPUs: 8 of 8 busy at start" in out
    assert not list(tmp_path.iterdir())
