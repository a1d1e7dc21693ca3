"""The modern recipe in the engine: SGD with momentum, weight decay and a step schedule with warmup on the
absolute iteration axis, on-device flips and pad-crops from each member's own stream, layers left dense by
global pruning, and BatchNorm statistics re-estimated along the instability path.

Each is checked against a plain PyTorch reference or a hand computation, and for cohorts, member by member
against lone runs in fp64.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from lth_ray.core.engine.cohort import Cohort
from lth_ray.core.engine.instability import recompute_batchnorm
from lth_ray.core.engine.training import batch_indices, flip_crop
from lth_ray.core.engine.trajectory import Trajectory, cohort_members
from lth_ray.core.engine.weights import build_net, initial_weights
from lth_ray.core.options.resolve import from_preset
from lth_ray.core.pruning.masks import alive_after, expand, unpack_masks
from lth_ray.core.spec.config import ConfigError
from lth_ray.core.spec.streams import STREAM_DATA, generator
from lth_ray.core.spec.training import learning_rate_at

SGD = dict(
    optimizer="sgd", momentum=0.9, weight_decay=1e-3, learning_rate=0.05, milestones=(30, 50), gamma=0.1, warmup=20
)


def small(**kw):
    base = dict(plan_fc=(16,), iterations=60, eval_every=20, batch_size=20, rounds=1, precision="fp64")
    return from_preset("lenet", **{**base, **kw})


def test_the_schedule_is_openlths_on_the_absolute_axis():
    cfg = small(**SGD)
    lrs = [learning_rate_at(cfg, it) for it in range(60)]
    assert lrs[0] == 0.0 and lrs[10] == pytest.approx(0.05 * 10 / 20) and lrs[20] == pytest.approx(0.05)
    assert lrs[29] == pytest.approx(0.05) and lrs[30] == pytest.approx(0.005) and lrs[50] == pytest.approx(0.0005)


def test_a_dense_sgd_round_equals_a_plain_pytorch_loop(split):
    """Round 0 under SGD + momentum + weight decay + warmup + milestones is exactly torch.optim.SGD over the
    member's own batches, with the learning rate set before each update as OpenLTH's LambdaLR would."""
    cfg = small(**SGD)
    t = Trajectory(cfg, split)
    result = t.run_round()
    x, y = split.x_train.double(), split.y_train
    model = build_net(cfg, split.in_shape).double()
    model.load_state_dict(initial_weights(cfg, split.in_shape))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    for it, idx in batch_indices(split, 20, [generator(cfg.seed, STREAM_DATA, 0)], 0, "cpu"):
        if it == 60:
            break
        for g in opt.param_groups:
            g["lr"] = 0.05 * (0.1 ** sum(m <= it for m in (30, 50))) * min(1.0, it / 20)
        opt.zero_grad()
        F.cross_entropy(model(x[idx[0]]), y[idx[0]]).backward()
        opt.step()
    trained = expand(result.trained, unpack_masks(result.masks))
    for k, v in model.state_dict().items():
        assert torch.allclose(trained[k], v, rtol=0, atol=1e-9), k
    assert result.record["steps"] == 60


def test_sgd_cohort_members_equal_their_lone_runs_under_late_rewinding(split):
    """Per member: momentum, the schedule's position (a ticket rewound to k resumes it at k, its re-init starts
    at 0) and augmentation are its own."""
    ticket = small(**SGD, rounds=2, rewind_iteration=20, augment="flip-crop")
    members = cohort_members(ticket, [0, 1], ["reinit", "random-prune"])
    together = list(Cohort(members, split).run_results())
    for i, m in enumerate(members[:2]):
        alone = list(Trajectory(m, split).run_results())
        for r, result in enumerate(alone):
            a, b = together[r][i].record, result.record
            for metric in ("train_loss", "val_loss", "test_acc"):
                assert max(abs(p - q) for p, q in zip(a[metric], b[metric])) < 1e-9, (m.key, r, metric)
    assert together[1][0].record["start_iteration"] == 20 and together[1][2].record["start_iteration"] == 0


def test_flip_crop_moves_pixels_and_pads_with_the_fill():
    x = torch.arange(2 * 3 * 1 * 5 * 5, dtype=torch.float64).view(2, 3, 1, 5, 5)
    fill = torch.tensor([-7.0], dtype=torch.float64)
    keep = torch.full((2, 3, 2), 4)
    assert torch.equal(flip_crop(x, torch.zeros(2, 3, dtype=torch.bool), keep, fill), x)  # centred: identity
    assert torch.equal(flip_crop(x, torch.ones(2, 3, dtype=torch.bool), keep, fill), x.flip(-1))
    corner = flip_crop(x, torch.zeros(2, 3, dtype=torch.bool), torch.zeros(2, 3, 2, dtype=torch.long), fill)
    assert (corner[..., :4, :] == -7).all() and (corner[..., :, :4] == -7).all()  # shifted down-right by 4
    assert torch.equal(corner[..., 4, 4], x[..., 0, 0])


def test_augmentation_is_reproducible_and_changes_training(split):
    cfg = small(augment="flip-crop")
    a, b = Trajectory(cfg, split).run_round(), Trajectory(cfg, split).run_round()
    plain = Trajectory(small(), split).run_round()
    assert a.record["train_loss"] == b.record["train_loss"]
    assert a.record["train_loss"] != plain.record["train_loss"]


def test_global_pruning_leaves_ignored_layers_dense(split):
    cfg = small(pruning="global", prune_ignore=("out",), rounds=2)
    rounds = list(Trajectory(cfg, split).run_results())
    masks = unpack_masks(rounds[2].masks)
    assert set(masks) == {"fc.0"}  # the output layer is not a pruning target at all
    assert int(masks["fc.0"].sum()) == alive_after(784 * 16, 0.2, 2)  # the ladder over the pruned layers only
    with pytest.raises(ConfigError, match="prune_ignore: 'fc' is not a prunable layer of .*allowed: fc.0, out"):
        Cohort([small(pruning="global", prune_ignore=("fc",))], split)


def test_recompute_gives_each_point_its_own_batchnorm_statistics(cifar_split):
    cfg = from_preset("conv2", plan_conv=("4B", "M"), plan_fc=(8,), precision="fp64")
    model = build_net(cfg, cifar_split.in_shape).double()
    batch = cifar_split.x_train[:30].double()
    recompute_batchnorm(model, [batch[:10], batch[10:30]])
    conv = model.conv[0](batch)  # the first conv's output feeds the BatchNorm
    bn = model.conv[1]
    mean = (conv[:10].mean((0, 2, 3)) + conv[10:30].mean((0, 2, 3))) / 2  # momentum None: the batches' mean
    assert torch.allclose(bn.running_mean, mean, atol=1e-12) and not bn.training


@pytest.mark.parametrize("mode", ["interpolate", "recompute"])
def test_instability_runs_in_both_batchnorm_modes(mode, cifar_split):
    cfg = from_preset(
        "conv2",
        plan_conv=("4B", "M"),
        plan_fc=(8,),
        iterations=4,
        eval_every=2,
        batch_size=10,
        rounds=1,
        instability=True,
        instability_points=3,
        instability_bn=mode,
    )
    result = Trajectory(cfg, cifar_split).run_round()
    path = result.record["instability"]
    assert len(path["test_error"]) == 3 and math.isfinite(path["error_barrier"])
    assert ("interpolated_error_barrier" in path) == (mode == "recompute")
