"""The generic stacked forward (torch.func) against the plan nets' hand-written `StackedNet`, per training step.

For Lenet-300-100 and Conv-2, P stacked members (default 4), batch 60, float32: the time of one forward and
backward pass (the sum of the members' cross-entropies) through `StackedNet` (on a CPU: fc layers as batched
matrix products, conv layers member by member; on CUDA: grouped convolutions), through `FunctionalStacked`
vectorized (`vmap`) and member by member (`functional_call` in a loop). Each timing is the best of `--repeats`
runs of `--steps` steps after warm-up steps, the paths taking turns, all in this one process on the same
threads; the result is the ratio functional / StackedNet (above 1: the hand-written path is faster), of
wall and of CPU time. A JSON line per net is printed.

    python benchmarks/bench_stacked.py [--members 4] [--threads 2] [--device cpu] [--steps 20] [--conv-steps 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from lth_ray.core.data.registry import in_shape_of  # noqa: E402
from lth_ray.core.models.functional import FunctionalStacked  # noqa: E402
from lth_ray.core.models.registry import build_model  # noqa: E402
from lth_ray.core.models.stacked import StackedNet  # noqa: E402
from lth_ray.core.options.resolve import from_preset  # noqa: E402


def stacked_members(arch: str, members: int, device: str) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    """A meta template and P members' tensors stacked as the cohort stacks them (parameters as leaves)."""
    config = from_preset(arch)
    in_shape = in_shape_of(config.dataset)
    nets = [build_model(config, in_shape, generator=torch.Generator().manual_seed(s)) for s in range(members)]
    template = build_model(config, in_shape, device="meta")
    params = {k for k, _ in template.named_parameters()}
    tensors = {k: torch.stack([n.state_dict()[k] for n in nets]).to(device) for k in template.state_dict()}
    for k in params:
        tensors[k].requires_grad_(True)
    return template, tensors


def step_ms(paths: dict, tensors, x, y, members: int, steps: int, warmup: int, repeats: int) -> dict[str, dict]:
    """ms per forward + backward step of each path, wall and CPU (this process's, all threads), best of `repeats`
    runs of `steps` steps. The paths take turns within each repeat, so a change in the machine's load falls on
    all of them alike; CPU time is the steadier one on a shared machine (waiting for a core does not count)."""

    def run(net, n):
        for _ in range(n):
            logits = net.forward(tensors, x, members, shared=False, training=True)
            loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(members, -1).mean(1)
            for t in tensors.values():
                t.grad = None
            loss.sum().backward()
        if x.is_cuda:
            torch.cuda.synchronize()

    best = {name: {"wall": float("inf"), "cpu": float("inf")} for name in paths}
    for net in paths.values():
        run(net, warmup)
    for _ in range(repeats):
        for name, net in paths.items():
            wall, cpu = time.perf_counter(), time.process_time()
            run(net, steps)
            best[name]["wall"] = min(best[name]["wall"], time.perf_counter() - wall)
            best[name]["cpu"] = min(best[name]["cpu"], time.process_time() - cpu)
    return {name: {k: round(v / steps * 1e3, 2) for k, v in b.items()} for name, b in best.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=4)
    ap.add_argument("--batch", type=int, default=60)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per run for Lenet")
    ap.add_argument("--conv-steps", type=int, default=3, help="timed steps per run for Conv-2")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    for arch, steps in (("lenet", a.steps), ("conv2", a.conv_steps)):
        template, tensors = stacked_members(arch, a.members, a.device)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(a.members, a.batch, *in_shape_of(from_preset(arch).dataset), generator=g).to(a.device)
        y = torch.randint(0, 10, (a.members, a.batch), generator=g).to(a.device)
        paths = {
            "stacked_net": StackedNet(template),
            "vmap": FunctionalStacked(template, vectorize=True),
            "loop": FunctionalStacked(template, vectorize=False),
        }
        ms = step_ms(paths, tensors, x, y, a.members, steps, warmup=2, repeats=a.repeats)
        ratios = {
            f"{path}_over_stacked_net": {k: round(ms[path][k] / ms["stacked_net"][k], 3) for k in ("wall", "cpu")}
            for path in ("vmap", "loop")
        }
        print(
            json.dumps(
                {
                    "arch": arch,
                    "device": a.device,
                    "members": a.members,
                    "batch": a.batch,
                    "threads": a.threads,
                    "ms_per_step": ms,
                    **ratios,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
