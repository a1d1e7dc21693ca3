"""A Tune experiment -> its export, published all at once; and how readers find a published export's files.

The export is built in a temporary folder, then renamed into place on a local disk, or on a bucket copied
under a fresh version prefix and switched by one object (`export.json`). A crash never leaves half an
export, and without `force` an existing export is never touched.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import PurePosixPath

from pyarrow import fs as pafs

from lth_ray.results.experiment import filesystem_and_path, load_trials, open_analysis
from lth_ray.results.export.files import MANIFEST
from lth_ray.results.export.folder import write_export


class ExportError(ValueError):
    """The export cannot be written where asked; the message names the folder."""


def export_experiment(
    experiment: str, out: str | None = None, force: bool = False, report: Callable[[str], None] | None = None
) -> str:
    """Export `experiment` (folder or URI) to `out` (default `<experiment>/export`); returns `out`. What is
    missing is reported as `warning:` lines, trials in the Parquet tables only as `note:` lines."""
    report = report or (lambda line: print(line, file=sys.stderr))
    out = out or f"{str(experiment).rstrip('/')}/export"
    out_fs, out_path = filesystem_and_path(out)
    local = isinstance(out_fs, pafs.LocalFileSystem)
    _check_target(out_fs, out_path, force)  # before the (slow) read: fail fast, touch nothing
    analysis = open_analysis(experiment)
    trials = load_trials(experiment, analysis)
    last_results = {t.trial_id: dict(t.last_result or {}) for t in analysis.trials}
    name = PurePosixPath(str(experiment).rstrip("/")).name
    if local:
        parent = os.path.dirname(out_path)
        os.makedirs(parent, exist_ok=True)
        tmp = os.path.join(parent, f".{os.path.basename(out_path)}.tmp-{uuid.uuid4().hex}")
        os.mkdir(tmp)  # (not mkdtemp: its 0700 would stay on the export)
        try:
            manifest = write_export(trials, tmp, str(experiment), name, last_results)
            _swap_into_place(tmp, out_path, force)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    else:  # cloud storage: build locally, then copy (not atomic there; the manifest is copied last)
        with tempfile.TemporaryDirectory(prefix="lth_ray-export-") as tmp:
            manifest = write_export(trials, tmp, str(experiment), name, last_results)
            _upload(tmp, out_fs, out_path, force)
    for line in manifest["missing"]:
        report(f"warning: {line}")
    for line in manifest["notes"]:
        report(f"note: {line}")
    return out_path if local else out


def _check_target(fs: pafs.FileSystem, path: str, force: bool) -> None:
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        return
    if info.type != pafs.FileType.Directory:
        raise ExportError(f"{path} exists and is not a folder; choose another --out")
    entries = fs.get_file_info(pafs.FileSelector(path))
    if not entries:
        return
    if not force:
        raise ExportError(f"export folder {path} already exists; pass --force to replace it")
    if fs.get_file_info(f"{path}/{MANIFEST}").type != pafs.FileType.File:
        raise ExportError(f"{path} is not an lth_ray export (no {MANIFEST}); refusing to replace it")


def _swap_into_place(tmp: str, out: str, force: bool) -> None:
    if not os.path.exists(out):
        os.rename(tmp, out)
        return
    _check_target(pafs.LocalFileSystem(), out, force)  # still ours to replace?
    old = os.path.join(os.path.dirname(out), f".{os.path.basename(out)}.old-{uuid.uuid4().hex}")
    os.rename(out, old)
    os.rename(tmp, out)
    shutil.rmtree(old)


def _upload(tmp: str, fs: pafs.FileSystem, path: str, force: bool) -> None:
    """Publish a built export on cloud storage so that it becomes visible all at once.

    Objects cannot be renamed as a group, so the files go under a fresh version prefix first, then ONE
    object, `export.json`, names that version: readers trust only the manifest (`export_files`), so an upload
    cut short is never read as an export, and the previous export stays readable until the new manifest
    replaces it. Older versions are deleted last.
    """
    _check_target(fs, path, force)
    version = f"v-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    fs.create_dir(f"{path}/{version}", recursive=True)
    for name in sorted(os.listdir(tmp)):
        if name != MANIFEST:
            pafs.copy_files(
                os.path.join(tmp, name),
                f"{path}/{version}/{name}",
                source_filesystem=pafs.LocalFileSystem(),
                destination_filesystem=fs,
            )
    with open(os.path.join(tmp, MANIFEST)) as f:
        manifest = json.load(f)
    manifest["version"] = version
    staged = f"{path}/{MANIFEST}.tmp-{uuid.uuid4().hex}"
    with fs.open_output_stream(staged) as f:
        f.write(json.dumps(manifest, indent=2).encode())
    fs.move(staged, f"{path}/{MANIFEST}")  # the switch: one object
    for info in fs.get_file_info(pafs.FileSelector(path)):
        name = PurePosixPath(info.path).name
        if name in (MANIFEST, version):
            continue
        if info.type == pafs.FileType.Directory:
            fs.delete_dir(info.path)
        else:
            fs.delete_file(info.path)


def export_files(export: str) -> tuple[pafs.FileSystem, str, dict | None]:
    """(filesystem, folder holding the export's files, manifest or None) of a local or cloud export: a cloud
    export's files live under the version its manifest names."""
    fs, path = filesystem_and_path(export)
    try:
        with fs.open_input_stream(f"{path}/{MANIFEST}") as f:
            manifest = json.loads(f.read())
    except (FileNotFoundError, OSError, ValueError):
        return fs, path, None
    version = manifest.get("version")
    return fs, (f"{path}/{version}" if version else path), manifest
