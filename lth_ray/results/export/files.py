"""The export's file primitives: the manifest's name, the format number, and create-only writes.

Every file of an export is created under a new name (O_EXCL) in a folder built for it, so no writer ever
overwrites one; `publish` then puts the whole folder in place, or nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable

MANIFEST = "export.json"
EXPORT_FORMAT = 1


def _write_new(path: str, write: Callable) -> None:
    """Create `path` (never overwrite: O_EXCL) and fill it with `write(binary file)`."""
    with open(path, "xb") as f:
        write(f)


def _write_json(path: str, obj, indent: int | None = 2) -> None:
    _write_new(path, lambda f: f.write(json.dumps(obj, indent=indent).encode()))
