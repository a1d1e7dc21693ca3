"""The generic stacked forward (torch.func): each member of a cohort is its own lone net, BatchNorm included.

In float64, P=3 members with different weights and batches: the stacked logits, the gradients of the sum of
the members' losses and the BatchNorm running statistics after each training step equal every member's lone
`nn.Module` run within 1e-9, vectorized (`vmap`) and member by member; and for the plan nets they equal the
hand-written `StackedNet`.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lth_ray.core.models.functional import FunctionalStacked
from lth_ray.core.models.registry import build_model, model_entry
from lth_ray.core.models.stacked import StackedNet
from lth_ray.core.spec.config import ConfigError, TrajectoryConfig

P, N, CLASSES, TOL = 3, 5, 3, 1e-9


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 7), nn.ReLU(), nn.Linear(7, CLASSES))


def conv_bn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 3 * 3, CLASSES),
    )


TOYS = {"mlp": (mlp, (12,)), "conv-bn": (conv_bn, (2, 6, 6))}


def lone_nets(make, seed=0) -> list[nn.Module]:
    """P members with different weights and (for BatchNorm) different running statistics."""
    nets = []
    for p in range(P):
        torch.manual_seed(seed + p)
        net = make().double()
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.data.uniform_(0.5, 1.5), m.bias.data.normal_(), m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
        nets.append(net)
    return nets


def stack(nets: list[nn.Module]) -> dict[str, torch.Tensor]:
    """The cohort's layout: every state_dict tensor stacked on a leading member axis, parameters as leaves."""
    params = {k for k, _ in nets[0].named_parameters()}
    out = {}
    for k in nets[0].state_dict():
        t = torch.stack([n.state_dict()[k] for n in nets]).clone()
        out[k] = t.requires_grad_(True) if k in params else t
    return out


def member_losses(logits, y):
    return F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(P, -1).mean(1)


def sgd_step(tensors_or_nets, lr=0.1):
    with torch.no_grad():
        for t in tensors_or_nets:
            if t.grad is not None:
                t -= lr * t.grad
                t.grad = None


def assert_close(a, b):
    assert a.shape == b.shape and (a.double() - b.double()).abs().max().item() <= TOL


@pytest.mark.parametrize("vectorize", [True, False], ids=["vmap", "loop"])
@pytest.mark.parametrize("toy", sorted(TOYS))
def test_each_member_equals_its_lone_run(toy, vectorize):
    make, in_shape = TOYS[toy]
    nets = lone_nets(make)
    tensors = stack(nets)
    with torch.device("meta"):
        template = make()
    stacked = FunctionalStacked(template, vectorize=vectorize)
    g = torch.Generator().manual_seed(1)
    for _step in range(2):  # the second step sees the first step's weights and BatchNorm statistics
        x = torch.randn(P, N, *in_shape, generator=g, dtype=torch.float64)
        y = torch.randint(0, CLASSES, (P, N), generator=g)
        logits = stacked.forward(tensors, x, P, shared=False, training=True)
        member_losses(logits, y).sum().backward()
        for p, net in enumerate(nets):
            net.train()
            lone = net(x[p])
            F.cross_entropy(lone, y[p]).backward()
            assert_close(logits[p].detach(), lone.detach())
            for k, param in net.named_parameters():
                assert_close(tensors[k].grad[p], param.grad)
            for k, buf in net.named_buffers():
                assert_close(tensors[k][p], buf)
        sgd_step(tensors.values())
        for net in nets:
            sgd_step(net.parameters())
    x = torch.randn(N, *in_shape, generator=g, dtype=torch.float64)
    with torch.no_grad():
        before = {k: t.clone() for k, t in tensors.items()}
        shared = stacked.forward(tensors, x, P, shared=True, training=False)
    for p, net in enumerate(nets):
        net.eval()
        assert_close(shared[p], net(x).detach())
    assert all(torch.equal(before[k], tensors[k]) for k in tensors)  # evaluation leaves the statistics alone


PLANS = {"lenet-like": ((), (20, 10), (1, 8, 8)), "conv-8B": ((4, "8B", "M"), (16,), (3, 8, 8))}


@pytest.mark.parametrize("vectorize", [True, False], ids=["vmap", "loop"])
@pytest.mark.parametrize("plan", sorted(PLANS))
def test_functional_equals_stacked_net_on_plan_nets(plan, vectorize):
    plan_conv, plan_fc, in_shape = PLANS[plan]
    config = TrajectoryConfig(arch="custom", plan_conv=plan_conv, plan_fc=plan_fc)
    nets = [build_model(config, in_shape, generator=torch.Generator().manual_seed(s)).double() for s in range(P)]
    for net in nets:  # running statistics away from their init, so that using them is checked too
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(), m.running_var.uniform_(0.5, 2.0)
    template = build_model(config, in_shape, device="meta")
    assert isinstance(model_entry("plan").stacked(template), StackedNet)
    ours, theirs = stack(nets), stack(nets)
    functional, hand_written = FunctionalStacked(template, vectorize=vectorize), StackedNet(template)
    g = torch.Generator().manual_seed(2)
    for _ in range(2):
        x = torch.randn(P, N, *in_shape, generator=g, dtype=torch.float64)
        y = torch.randint(0, 10, (P, N), generator=g)
        a = functional.forward(ours, x, P, shared=False, training=True)
        b = hand_written.forward(theirs, x, P, shared=False, training=True)
        assert_close(a.detach(), b.detach())
        member_losses(a, y).sum().backward()
        member_losses(b, y).sum().backward()
        for k in ours:
            assert_close(
                ours[k].grad if ours[k].requires_grad else ours[k],
                theirs[k].grad if theirs[k].requires_grad else theirs[k],
            )
        sgd_step(ours.values()), sgd_step(theirs.values())
    x = torch.randn(N, *in_shape, generator=g, dtype=torch.float64)
    with torch.no_grad():
        assert_close(
            functional.forward(ours, x, P, shared=True, training=False),
            hand_written.forward(theirs, x, P, shared=True, training=False),
        )


def test_a_missing_tensor_and_a_random_layer_are_refused():
    with torch.device("meta"):
        template = conv_bn()
    tensors = stack(lone_nets(conv_bn))
    del tensors["1.num_batches_tracked"]
    with pytest.raises(RuntimeError, match="num_batches_tracked"):
        FunctionalStacked(template, vectorize=False).forward(tensors, torch.zeros(P, N, 2, 6, 6), P, False, True)
    with pytest.raises(ConfigError, match="Dropout"):
        FunctionalStacked(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)))
