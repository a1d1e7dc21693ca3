"""lth_ray: Iterative Magnitude Pruning (Frankle & Carbin 2019) as Ray Tune sweeps.

The names below are the public API and the compatibility surface: code that imports them from `lth_ray` keeps
working across releases, while the modules behind them may move. Each is imported on first use, so
`import lth_ray` loads neither torch nor Ray.

    config = lth_ray.from_preset("lenet", rounds=5)
    lth_ray.Trajectory(config, split).run()
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.4.0"

# name -> the module that defines it
_API = {
    "ConfigError": "lth_ray.core.spec.errors",
    "TrajectoryConfig": "lth_ray.core.spec.config",
    "from_preset": "lth_ray.core.options.resolve",
    "Cohort": "lth_ray.core.engine.cohort",
    "Trajectory": "lth_ray.core.engine.trajectory",
    "cohort_members": "lth_ray.core.engine.trajectory",
    "ModelEntry": "lth_ray.core.models.registry",
    "register_model": "lth_ray.core.models.registry",
    "DatasetEntry": "lth_ray.core.data.registry",
    "register_dataset": "lth_ray.core.data.registry",
    "Scorer": "lth_ray.core.pruning.scoring.base",
    "register_scorer": "lth_ray.core.pruning.scoring",
    "MemberMethod": "lth_ray.core.methods.registry",
    "register_method": "lth_ray.core.methods.registry",
    "BranchKind": "lth_ray.core.branches.registry",
    "register_branch": "lth_ray.core.branches.registry",
    "load_experiment": "lth_ray.results.analysis.frames",
    "load_export": "lth_ray.results.analysis.frames",
    "export_experiment": "lth_ray.results.export.publish",
}

__all__ = ["__version__", *_API]

if TYPE_CHECKING:
    from lth_ray.core.branches.registry import BranchKind, register_branch
    from lth_ray.core.data.registry import DatasetEntry, register_dataset
    from lth_ray.core.engine.cohort import Cohort
    from lth_ray.core.engine.trajectory import Trajectory, cohort_members
    from lth_ray.core.methods.registry import MemberMethod, register_method
    from lth_ray.core.models.registry import ModelEntry, register_model
    from lth_ray.core.options.resolve import from_preset
    from lth_ray.core.pruning.scoring import register_scorer
    from lth_ray.core.pruning.scoring.base import Scorer
    from lth_ray.core.spec.config import TrajectoryConfig
    from lth_ray.core.spec.errors import ConfigError
    from lth_ray.results.analysis.frames import load_experiment, load_export
    from lth_ray.results.export.publish import export_experiment


def __getattr__(name: str) -> Any:
    """The public name `name`, imported from its module on first use (PEP 562)."""
    if name not in _API:
        raise AttributeError(f"module 'lth_ray' has no attribute {name!r}; public: {', '.join(__all__)}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
