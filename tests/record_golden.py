"""Record the golden numbers: `python tests/record_golden.py [case ...]` writes tests/data/golden/<case>.json.

Run it on the code whose numbers are the reference (they were recorded on commit bcb7175, before issue 21's
refactor), never to make a failing `tests/test_no_number_change.py` pass: a difference there is a changed
number, to be explained, not re-recorded. Each file is written under a temporary name and moved into place.
The repository this script sits in comes first on sys.path, so its `lth_ray` is the one recorded (not an
editable install elsewhere).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import golden_cases as G  # noqa: E402

import lth_ray  # noqa: E402


def commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "lth_ray"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(names: list[str]) -> int:
    unknown = [n for n in names if n not in G.CASES]
    if unknown:
        print(f"error: unknown case(s) {unknown}; allowed: {', '.join(G.CASES)}", file=sys.stderr)
        return 2
    if not Path(lth_ray.__file__).resolve().is_relative_to(ROOT):
        print(f"error: lth_ray resolves to {lth_ray.__file__}, not to {ROOT}", file=sys.stderr)
        return 2
    G.GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    meta = {"commit": commit(), "lth_ray": lth_ray.__version__, "environment": G.environment()}
    print(f"recording with {lth_ray.__file__} (commit {meta['commit']})")
    for name in names or list(G.CASES):
        began = time.perf_counter()
        output = G.run_case(name)
        again = json.loads(json.dumps(output))
        assert G.same(output, again), f"{name}: does not round-trip through JSON: {G.first_difference(output, again)}"
        path = G.GOLDEN_DIR / f"{name}.json"
        write_atomically(path, json.dumps({"meta": meta, "output": output}, indent=1) + "\n")
        print(
            f"{name}: {len(output['keys'])} members, {len(output['rounds'])} rounds, "
            f"{time.perf_counter() - began:.2f} s -> {path.relative_to(ROOT)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
