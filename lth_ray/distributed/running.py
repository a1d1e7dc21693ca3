"""The marker a running sweep leaves in its experiment folder, so that nothing else writes there meanwhile.

Tune's own snapshot cannot say whether a sweep is running: a killed sweep's trials stay RUNNING in it too. The
sweep driver writes `<experiment>/.lth_ray-running.json` (host, process, start) when its Ray starts and removes
it when it ends; `lth-ray branch` refuses an experiment that carries one. A marker left by a driver that died
on this host (its process is gone) is stale and ignored; one from another host is trusted, and its message
says how to remove it by hand.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time

from pyarrow import fs as pafs

from lth_ray.results.experiment import filesystem_and_path

MARKER = ".lth_ray-running.json"


class Running:
    """The marker of one sweep: written on creation, removed by `clear` (with the folder, when the marker made it
    and nothing else was written there: a sweep refused after Ray started leaves no experiment behind)."""

    def __init__(self, experiment: str):
        self.fs, self.root = filesystem_and_path(experiment)
        self.path = f"{self.root}/{MARKER}"
        self.made = self.fs.get_file_info(self.root).type == pafs.FileType.NotFound
        self.fs.create_dir(self.root, recursive=True)
        mark = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}
        with self.fs.open_output_stream(self.path) as f:
            f.write(json.dumps(mark).encode())

    def clear(self) -> None:
        with contextlib.suppress(FileNotFoundError, OSError):
            self.fs.delete_file(self.path)
            if self.made and not self.fs.get_file_info(pafs.FileSelector(self.root)):
                self.fs.delete_dir(self.root)


def running_sweep(experiment: str) -> str | None:
    """What is still writing the experiment, as words for an error message; None when nothing is."""
    fs, root = filesystem_and_path(experiment)
    path = f"{root}/{MARKER}"
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return None
    try:
        with fs.open_input_stream(path) as f:
            mark = json.loads(f.read())
        host, pid, started = str(mark["host"]), int(mark["pid"]), float(mark["started"])
    except (OSError, ValueError, KeyError, TypeError):
        return f"a sweep (its marker {path} is unreadable)"
    if host == socket.gethostname() and not _alive(pid):
        return None  # its driver died here: the marker is stale
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
    return f"a sweep (process {pid} on {host}, since {since}; if it is dead, remove {path})"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
