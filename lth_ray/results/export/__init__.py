"""Tune experiment folder -> Parquet histories + the thesis' files, written once and atomically.

    lth-ray export <experiment dir or URI> [--out DIR] [--force]

Reading (`export_experiment`) is kept apart from writing (`write_export`, which takes trials already in
memory), so the writers can be benchmarked and tested without Tune. Everything is built in a temporary folder
next to the target and renamed into place: a crash never leaves half an export, and without `--force` an
existing export is never touched. Trials that errored or stopped early export the rounds they finished; what
is missing is printed and recorded in `export.json` and in each group's `-lth_ray.json` sidecar.

One job per module: `parquet` (the tables), `overlap` (the seeds' mask overlap), `thesis_groups` and
`thesis_files` (the thesis' format), `folder` (one export folder and its manifest), `publish` (putting it in
place, locally or on a bucket), `command` (the command line); `files` holds the create-only writes they share.
This module names their public API in one place.
"""

from lth_ray.results.export.command import build_parser, main
from lth_ray.results.export.files import EXPORT_FORMAT, MANIFEST
from lth_ray.results.export.folder import write_export
from lth_ray.results.export.overlap import seed_jaccard
from lth_ray.results.export.parquet import (
    cost_layer_names,
    histories_table,
    instability_table,
    interpolation_table,
    layer_names,
    rounds_table,
    successive_interpolation_table,
    successive_table,
    trajectory_name,
    trial_identity,
)
from lth_ray.results.export.publish import ExportError, _upload, export_experiment, export_files
from lth_ray.results.export.thesis_files import (
    THESIS_METRICS,
    history_arrays,
    thesis_specs,
    thesis_state,
    write_group,
    write_thesis_groups,
)
from lth_ray.results.export.thesis_groups import Group, group_trials
