"""The fast tier's guard: a test not marked `ray` that starts or joins a Ray cluster fails, loudly.

conftest.py installs it in the pytest process for each such test (`forbid`), and puts this folder first on
PYTHONPATH with `LTH_RAY_FORBID_RAY` set, so that Python imports this file as `sitecustomize` in every
subprocess the test starts (a sweep CLI, `make demo`, `ray start`). Once `ray` is imported there, `ray.init`
and the start of a Ray node raise, and the violation is appended to the file `LTH_RAY_FORBID_RAY` names: the
test fails at teardown even when it expected its subprocess to fail. Importing `ray` stays allowed (the
planner and the option tables use it without a cluster), and this file imports nothing heavy.
"""

from __future__ import annotations

import importlib.abc
import os
import sys

ENV = "LTH_RAY_FORBID_RAY"  # "<test id>\t<violations file>"


def _refuse(test: str, log: str, what: str):
    message = f"{test} is not marked `ray` but {what}; mark it @pytest.mark.ray (the fast tier runs without Ray)"
    with open(log, "a") as f:
        f.write(f"{message} (pid {os.getpid()}: {' '.join(sys.argv)[:200]})\n")
    raise RuntimeError(message)


def patch(ray_module, test: str, log: str) -> list[tuple[object, str, object]]:
    """Make `ray.init` and every Ray node start raise; returns (owner, name, original) to undo it."""
    import ray._private.node as node
    import ray._private.worker as worker

    def init(*args, **kwargs):
        _refuse(test, log, f"calls ray.init(address={kwargs.get('address', args[0] if args else None)!r})")

    original_node_init = node.Node.__init__

    def node_init(self, *args, **kwargs):
        _refuse(test, log, "starts or joins a Ray node (ray.cluster_utils.Cluster, `ray start`, ray.init)")

    undo = [
        (ray_module, "init", ray_module.init),
        (worker, "init", worker.init),
        (node.Node, "__init__", original_node_init),
    ]
    ray_module.init = worker.init = init
    node.Node.__init__ = node_init
    return undo


class _PatchRayOnImport(importlib.abc.MetaPathFinder):
    """Patches `ray` right after its first import, so that a process that never imports Ray pays nothing."""

    def __init__(self, test: str, log: str):
        self.test, self.log, self.undo = test, log, []

    def find_spec(self, fullname, path, target=None):
        if fullname != "ray":
            return None
        sys.meta_path.remove(self)
        try:
            import importlib.util

            spec = importlib.util.find_spec("ray")
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return None
        loader, finder = spec.loader, self

        class Loader(importlib.abc.Loader):
            def create_module(self, spec):
                return loader.create_module(spec)

            def exec_module(self, module):
                loader.exec_module(module)
                finder.undo = patch(module, finder.test, finder.log)

            def __getattr__(self, name):
                return getattr(loader, name)

        spec.loader = Loader()
        return spec


def forbid(test: str, log: str) -> _PatchRayOnImport | list:
    """Refuse Ray in this process: patch it now if imported, else on import. Returns what `allow` undoes."""
    if "ray" in sys.modules:
        return patch(sys.modules["ray"], test, log)
    finder = _PatchRayOnImport(test, log)
    sys.meta_path.insert(0, finder)
    return finder


def allow(undo: _PatchRayOnImport | list) -> None:
    if isinstance(undo, _PatchRayOnImport):
        if undo in sys.meta_path:
            sys.meta_path.remove(undo)
        undo = undo.undo
    for owner, name, original in undo:
        setattr(owner, name, original)


if os.environ.get(ENV) and __name__ == "sitecustomize":
    forbid(*os.environ[ENV].split("\t", 1))
