"""A trajectory's round files: each finished round written once, atomically, on any pyarrow filesystem.

    <trial>/rounds/round_003/masks.pt        bit-packed masks
    <trial>/rounds/round_003/trained.pt      the trained weights, masked layers as alive values only
    <trial>/rounds/round_003/early_stop.pt   the early-stop weights, likewise (when kept)
    <trial>/rounds/round_003/record.json     the record with its histories, and every file's size: LAST
    <trial>/rounds/rewind.pt                 the rewind point (late rewinding only; the init is rebuilt)

A round counts only when its `record.json` exists and every file it lists has the listed size: a round torn by
a crash (some files written, no record; or a file lost later) is never read as complete, and resuming
recomputes it. Every file is written under a temporary name and moved into place, so a reader sees it whole
or not at all (on S3 each object appears whole when its upload completes). Plain PyTorch and pyarrow: no Ray.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from pathlib import Path, PurePosixPath

import torch
from pyarrow import fs as pafs

from lth_ray.core.engine.records import RoundResult
from lth_ray.core.pruning.masks import expand, unpack_masks

ROUND_FORMAT = 2
RECORD, MASKS, TRAINED, EARLY_STOP, REWIND = "record.json", "masks.pt", "trained.pt", "early_stop.pt", "rewind.pt"


def resolve(where: str) -> tuple[pafs.FileSystem, str]:
    """A folder or pyarrow URI (file://, s3://, gs://) as (filesystem, path)."""
    if "://" in str(where):
        return pafs.FileSystem.from_uri(str(where))
    return pafs.LocalFileSystem(), str(Path(where).expanduser().resolve())


def _round_dir(r: int) -> str:
    return f"round_{r:03d}"


def _torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


class RoundStore:
    """The round files of one trajectory under `root` on `fs`."""

    def __init__(self, fs: pafs.FileSystem, root: str):
        self.fs, self.root = fs, root.rstrip("/")

    @classmethod
    def at(cls, where: str) -> RoundStore:
        return cls(*resolve(where))

    # ------------------------------------------------------------------ writing
    def _put(self, path: str, data: bytes) -> None:
        """Write `data` to `path` atomically: a temporary name beside it, then a move."""
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        with self.fs.open_output_stream(tmp) as f:
            f.write(data)
        self.fs.move(tmp, path)

    def write_round(self, result: RoundResult) -> None:
        """The round's artifacts, then its record (listing their sizes) last. A round recomputed after a crash
        replaces what a torn earlier attempt left."""
        r = result.record["round"]
        folder = f"{self.root}/{_round_dir(r)}"
        self.fs.create_dir(folder, recursive=True)
        if result.rewind is not None:
            self._put(f"{self.root}/{REWIND}", _torch_bytes(result.rewind))
        files = {MASKS: _torch_bytes(result.masks), TRAINED: _torch_bytes(result.trained)}
        if result.early_stop is not None:
            files[EARLY_STOP] = _torch_bytes(result.early_stop)
        for name, data in files.items():
            self._put(f"{folder}/{name}", data)
        record = {
            "format": ROUND_FORMAT,
            "written_at": time.time(),
            "files": {name: len(data) for name, data in files.items()},
            "record": result.record,
        }
        self._put(f"{folder}/{RECORD}", json.dumps(record).encode())

    # ------------------------------------------------------------------ reading
    def _get(self, path: str) -> bytes:
        with self.fs.open_input_stream(path) as f:
            return f.read()

    def _load(self, path: str):
        return torch.load(io.BytesIO(self._get(path)), map_location="cpu", weights_only=True)

    def _entry(self, r: int) -> dict | None:
        try:
            entry = json.loads(self._get(f"{self.root}/{_round_dir(r)}/{RECORD}"))
        except (FileNotFoundError, OSError, ValueError):
            return None
        return entry if entry.get("format") == ROUND_FORMAT else None

    def round_numbers(self) -> list[int]:
        """Every round with a folder (complete or not)."""
        selector = pafs.FileSelector(self.root, allow_not_found=True)
        out = []
        for info in self.fs.get_file_info(selector):
            name = info.path.rstrip("/").rsplit("/", 1)[-1]
            if info.type == pafs.FileType.Directory and name.startswith("round_") and name[6:].isdigit():
                out.append(int(name[6:]))
        return sorted(out)

    def check(self, r: int) -> tuple[dict | None, str | None]:
        """(round r's record, None) when the round is complete; else (None, why): no record, or a file it
        lists missing or torn. One read of the record, one listing of the folder."""
        entry = self._entry(r)
        if entry is None:
            return None, f"round {r}: no readable {RECORD} (torn or never finished)"
        folder = f"{self.root}/{_round_dir(r)}"
        sizes = {
            PurePosixPath(i.path).name: i.size
            for i in self.fs.get_file_info(pafs.FileSelector(folder))
            if i.type == pafs.FileType.File
        }
        for name, size in entry["files"].items():
            if name not in sizes:
                return None, f"round {r}: {name} is missing"
            if sizes[name] != size:
                return None, f"round {r}: {name} is torn ({sizes[name]} of {size} bytes)"
        return entry["record"], None

    def problem(self, r: int) -> str | None:
        """Why round r is not complete (None when it is)."""
        return self.check(r)[1]

    def complete_prefix(self, first_round: int) -> list[int]:
        """The complete rounds first_round, first_round + 1, ... up to the first gap (what a resume keeps)."""
        done, r = [], first_round
        present = set(self.round_numbers())
        while r in present and self.problem(r) is None:
            done.append(r)
            r += 1
        return done

    def record(self, r: int) -> dict:
        entry = self._entry(r)
        if entry is None:
            raise FileNotFoundError(f"round {r} has no record under {self.root}")
        return entry["record"]

    def packed_masks(self, r: int) -> dict:
        return self._load(f"{self.root}/{_round_dir(r)}/{MASKS}")

    def masks(self, r: int) -> dict[str, torch.Tensor]:
        return unpack_masks(self.packed_masks(r))

    def compact_trained(self, r: int) -> dict:
        return self._load(f"{self.root}/{_round_dir(r)}/{TRAINED}")

    def trained(self, r: int, masks=None) -> dict[str, torch.Tensor]:
        """Round r's trained weights, dense."""
        return expand(self.compact_trained(r), self.masks(r) if masks is None else masks)

    def early_stop(self, r: int, masks=None) -> dict[str, torch.Tensor] | None:
        """Round r's early-stop weights, dense; None when the round kept none."""
        entry = self._entry(r)
        if entry is None or EARLY_STOP not in entry["files"]:
            return None
        compact = self._load(f"{self.root}/{_round_dir(r)}/{EARLY_STOP}")
        return expand(compact, self.masks(r) if masks is None else masks)

    def rewind(self) -> dict[str, torch.Tensor] | None:
        """The rewind point written by late rewinding; None when there is none (the init is the rewind point)."""
        try:
            return self._load(f"{self.root}/{REWIND}")
        except (FileNotFoundError, OSError):
            return None
