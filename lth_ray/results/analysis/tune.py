"""The bridge to Ray Tune's own `ExperimentAnalysis`, for code that wants Tune's API on a finished sweep.

The only place under `lth_ray.results` that imports `ray`, and only when called.
"""

from __future__ import annotations

from pathlib import Path


def tune_analysis(experiment: str | Path):
    """Ray Tune's own `ExperimentAnalysis` of a sweep, for Tune's API (`dataframe()`, `get_best_trial`, ...).

    It unpickles the blobs in Tune's snapshot, which runs their author's code: use it only on experiments you
    trust. `load_experiment` reads the same trials as data and is what the report and notebook use.
    """
    from ray.tune import ExperimentAnalysis

    from lth_ray.results.experiment import filesystem_and_path

    fs, path = filesystem_and_path(str(experiment))
    return ExperimentAnalysis(path, storage_filesystem=fs)
