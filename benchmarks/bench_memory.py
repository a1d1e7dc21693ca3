"""Peak memory (RSS) of a Conv-2 cohort against its number of members, fp32 and fp64, on the CPU.

Each measurement runs in a fresh process (peak RSS is per process): one round of a few iterations with two
evaluations of the whole validation (5,000 images) and test splits, on a CIFAR-10-format set of 5,500 training
images written here in torchvision's layout. Evaluation is chunked by the memory budget (`lth_ray.budget`),
so the peak should stay flat as members grow, not grow with the split.

    python benchmarks/bench_memory.py [--members 1,2,4,8] [--precisions fp32,fp64] [--eval-memory MiB]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

CHILD = r"""
import json, resource, sys
import torch
from lth_ray.core.engine.cohort import Cohort
from lth_ray.core.options.resolve import from_preset
from lth_ray.core.data.loading import load_split
from lth_ray.core.engine.trajectory import cohort_members
root, members, precision, budget, instability = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
torch.set_num_threads(2)
ticket = from_preset("conv2", data_root=root, rounds=0, iterations=20, eval_every=10, precision=precision,
                     instability=instability == "1", instability_points=3)
split = load_split("cifar10", root)
cohort = Cohort(cohort_members(ticket, range(members), []), split,
                eval_memory_mb=None if budget == "default" else int(budget))
cohort.run_round()
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "chunk": cohort.eval_chunk(members), "val_images": len(split.x_val)}))
"""


def measure(root: Path, members: int, precision: str, budget: str, instability: bool) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(root), str(members), precision, budget, "1" if instability else "0"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if out.returncode != 0:
        return {"error": f"exit {out.returncode}: {out.stderr.strip().splitlines()[-1:]}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--members", default="1,2,4,8")
    p.add_argument("--precisions", default="fp32,fp64")
    p.add_argument("--eval-memory", default="default", help="MiB, or 'default'")
    p.add_argument("--instability", action="store_true", help="measure the dense pair's path too")
    a = p.parse_args()
    from conftest import make_cifar10_like

    with tempfile.TemporaryDirectory() as tmp:
        root = make_cifar10_like(Path(tmp), per_batch=1100, n_test=500)  # 5,500 training images
        for precision in a.precisions.split(","):
            for m in (int(v) for v in a.members.split(",")):
                r = measure(root, m, precision, a.eval_memory, a.instability)
                print(
                    json.dumps(
                        {"arch": "conv2", "precision": precision, "members": m, "eval_memory": a.eval_memory, **r}
                    ),
                    flush=True,
                )


if __name__ == "__main__":
    main()
