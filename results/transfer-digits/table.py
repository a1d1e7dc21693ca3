"""The transfer table of docs/results.md: test accuracy at early stop per round, mean [min, max] over seeds, of
the Fashion-MNIST tickets retrained on the digits (the two retrain branches) beside the digits' own controls.

    python results/transfer-digits/table.py results/transfer-digits
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

from lth_ray.results.experiment import load_trials


def cell(values: list[float]) -> str:
    if not values:
        return ""
    pct = [100 * v for v in values]
    return f"{sum(pct) / len(pct):.2f} [{min(pct):.2f}, {max(pct):.2f}]"


def main(out: Path) -> None:
    acc: dict[tuple[str, int], list[float]] = defaultdict(list)
    density: dict[tuple[str, int], float] = {}
    for t in load_trials(str(out / "fmnist-trunk"), weights=False):
        column = f"transfer: {t.branch}" if t.branch else "trunk (Fashion-MNIST)"
        for rec in t.records:
            acc[column, rec["round"]].append(rec["test_acc_at_early_stop"])
            density[column, rec["round"]] = rec["sparsity"]
    for line in (out / "digits-own.jsonl").read_text().splitlines():
        rec = json.loads(line)
        column = f"digits: {rec['method']}"
        acc[column, rec["round"]].append(rec["test_acc_at_early_stop"])
        density[column, rec["round"]] = rec["sparsity"]
    columns = sorted({c for c, _ in acc}, key=lambda c: (not c.startswith("trunk"), not c.startswith("transfer"), c))
    rounds = sorted({r for _, r in acc})
    print("| round | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for r in rounds:
        cells = [f"{cell(acc[c, r])} ({100 * density[c, r]:.1f}%)" if (c, r) in acc else "" for c in columns]
        print(f"| {r} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "results/transfer-digits"))
