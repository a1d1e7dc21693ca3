"""`lth-ray export <experiment> [--out DIR] [--force]`: the export's command line.

A folder that cannot be read or written is one `error:` line and exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from lth_ray.core.spec.config import ConfigError
from lth_ray.results.experiment import ExperimentError
from lth_ray.results.export.publish import ExportError, export_experiment


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lth-ray export", description="Export a Tune experiment to Parquet and the thesis' file format."
    )
    p.add_argument("experiment", help="the experiment folder (or a pyarrow URI such as file:// or s3://)")
    p.add_argument("--out", help="export folder (default: <experiment>/export)")
    p.add_argument("--force", action="store_true", help="replace an existing export")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        out = export_experiment(a.experiment, a.out, a.force)
    except (ExperimentError, ExportError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: {err.filename or a.experiment}: {err.strerror or err}", file=sys.stderr)
        return 2
    print(f"exported {a.experiment} to {out}")
    return 0
