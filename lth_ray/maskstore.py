"""Where an IMP ticket publishes each round's mask and its random re-init baseline picks it up.

A store is a folder or any pyarrow filesystem URI (file://, s3://, gs://), so a ticket and its baseline can
run on different nodes. Files are written atomically (temporary name, then move) and never rewritten.
"""
from __future__ import annotations

import io
import time

import torch
from pyarrow import fs as pafs


def _resolve(store: str) -> tuple[pafs.FileSystem, str]:
    return pafs.FileSystem.from_uri(store) if "://" in store else (pafs.LocalFileSystem(), store)


def _name(round_: int) -> str:
    return f"round_{round_:03d}.masks.pt"


def publish(store: str, round_: int, packed: dict) -> None:
    """Write round `round_`'s bit-packed masks unless they are there already (a resumed ticket)."""
    fs, root = _resolve(store)
    path = f"{root}/{_name(round_)}"
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        return
    fs.create_dir(root, recursive=True)
    buf = io.BytesIO()
    torch.save(packed, buf)
    tmp = f"{path}.tmp-{time.time_ns()}"
    with fs.open_output_stream(tmp) as f:
        f.write(buf.getvalue())
    fs.move(tmp, path)


def fetch(store: str, round_: int, timeout_s: float = 24 * 3600, poll_s: float = 2.0) -> dict:
    """Round `round_`'s packed masks, waiting (up to `timeout_s`) for the ticket to publish them."""
    fs, root = _resolve(store)
    path = f"{root}/{_name(round_)}"
    deadline = time.monotonic() + timeout_s
    while fs.get_file_info(path).type == pafs.FileType.NotFound:
        if time.monotonic() > deadline:
            raise TimeoutError(f"mask of round {round_} did not appear in {store} within {timeout_s:.0f}s")
        time.sleep(poll_s)
    with fs.open_input_stream(path) as f:
        return torch.load(io.BytesIO(f.read()), weights_only=True)
