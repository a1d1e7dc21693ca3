"""The anatomy runs' lines (OUT/*.jsonl, one per member and round, run.sh) -> the markdown tables of docs/anatomy.md.

Each cell is the mean over the 2 seeds, in percent: test accuracy at the early-stop point (the thesis' measure) or
at the round's start (the supermask accuracy), by density of the prunable weights.
"""

import json
import sys
from collections import defaultdict
from pathlib import Path
from statistics import mean

out = Path(sys.argv[1] if len(sys.argv) > 1 else "results/anatomy-fmnist")
rows: dict[tuple[str, str], dict[float, list[dict]]] = defaultdict(lambda: defaultdict(list))
for path in sorted(out.glob("*.jsonl")):
    run = path.stem.removeprefix("criterion-")
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        rows[(run, rec["method"])][rec["sparsity"]].append(rec)


def table(title: str, lines: list[tuple[str, tuple[str, str]]], value) -> None:
    densities = sorted({d for _, key in lines for d in rows[key]}, reverse=True)
    print(f"\n{title}\n")
    print("| | " + " | ".join(f"{100 * d:.1f}%" for d in densities) + " |")
    print("|---|" + "---|" * len(densities))
    for label, key in lines:
        cells = [rows[key].get(d) for d in densities]
        print(f"| {label} | " + " | ".join("" if not c else value(c) for c in cells) + " |")


def pct(field):
    return lambda recs: f"{100 * mean(r[field] for r in recs):.1f}"


criteria = ["variants"] + sorted(p.stem.removeprefix("criterion-") for p in out.glob("criterion-*.jsonl"))
by_criterion = [("large_final" if c == "variants" else c, (c, "imp")) for c in criteria]
table("Test accuracy at early stop, by mask criterion", by_criterion, pct("test_acc_at_early_stop"))
table("Supermask accuracy (the masked init, before training), by mask criterion", by_criterion, pct("start_test_acc"))
methods = ["imp", "signed-constant", "reshuffle", "signed-reshuffle", "signed-reinit", "reinit", "random-prune"]
variants = [(m, ("variants", m)) for m in methods] + [("imp, frozen-init pruned weights", ("frozen", "imp"))]
table("Test accuracy at early stop, by start weights", variants, pct("test_acc_at_early_stop"))
table("Accuracy at the start (supermask accuracy), by start weights", variants, pct("start_test_acc"))
ticket = [("large_final ticket", ("variants", "imp"))]
table(
    "Successive-round error barrier (test error, points)",
    ticket,
    lambda rs: f"{100 * mean(r.get('successive_error_barrier', float('nan')) for r in rs):.2f}",
)
table("Sign-flip share of the kept weights (%)", by_criterion[:1] + variants[1:3], pct("sign_flip_share"))
