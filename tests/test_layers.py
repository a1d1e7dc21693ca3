"""The layers' rules, read from the source: which layer may import which, and how big a module or class may be.

    lth_ray/core/         plain PyTorch: never `ray`, never a layer above it; inside it the folders keep an
                          order, spec < data, models, pruning < methods < options, engine < store < branches
                          (CORE_ORDER)
    lth_ray/distributed/  everything that knows Ray; never the command lines
    lth_ray/results/      files in, files out; never the trainable (results read what trials wrote)
    lth_ray/cli/, sweeps/ the command lines, on top

The import rules parse every module (ast), so a forbidden import is found even inside a function or in a
module nothing imports yet. One test also imports the core (and the results) in a fresh interpreter and looks
for `ray` in sys.modules, which catches what parsing cannot: an allowed library that pulls in Ray itself.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ROOT

PACKAGE = ROOT / "lth_ray"
MAX_MODULE_LINES = 450
MAX_CLASS_LINES = 200


@dataclass(frozen=True)
class Module:
    name: str  # dotted, e.g. lth_ray.core.engine.cohort (a package is its __init__)
    path: Path

    @property
    def where(self) -> str:
        return str(self.path.relative_to(ROOT))


def package_modules() -> list[Module]:
    modules = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        modules.append(Module(".".join(parts[:-1] if parts[-1] == "__init__" else parts), path))
    return modules


MODULES = package_modules()
MODULE_NAMES = {m.name for m in MODULES}


def _from_base(module: Module, node: ast.ImportFrom) -> str:
    """The module a `from ... import` reads from, relative imports resolved against `module`."""
    if not node.level:
        return node.module
    package = module.name.split(".") if module.path.name == "__init__.py" else module.name.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_in(source: str, module: Module) -> list[tuple[int, str]]:
    """(line, imported module) of every import in `source` (the text of `module`), at any depth: `import a.b`,
    `from a import b` (as `a.b` when that is a module of the package, else `a`), relative imports resolved,
    and importlib.import_module("a.b")."""
    found = []
    for node in ast.walk(ast.parse(source, filename=str(module.path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _from_base(module, node)
            submodules = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULE_NAMES]
            found += [(node.lineno, name) for name in submodules or [base]]
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "__import__")
        ):
            found.append((node.lineno, node.args[0].value))
    return sorted(found)


def imports(module: Module) -> list[tuple[int, str]]:
    return imports_in(module.path.read_text(), module)


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


# The top-level lth_ray/<name>.py files (Tune's pickled names, the old command spellings) point into the layers
# for old pickles and scripts; the core never reaches anything through them.
SHIMS = tuple(m.name for m in MODULES if m.name.count(".") == 1 and m.path.parent == PACKAGE)

# layer -> (what it must not import, why)
RULES = {
    "lth_ray.core": (
        ("ray", "lth_ray.distributed", "lth_ray.results", "lth_ray.cli", "sweeps") + SHIMS,
        "the core is plain PyTorch and below every other layer",
    ),
    "lth_ray.results": (
        ("lth_ray.distributed.trainable", "lth_ray.trainable", "lth_ray.cli", "sweeps"),
        "results read the files trials wrote; they never run or import the trainable",
    ),
    "lth_ray.distributed": (("lth_ray.cli", "sweeps"), "the distributed layer is below the command lines"),
}


def violations(layer: str) -> list[str]:
    forbidden, why = RULES[layer]
    lines = []
    for module in (m for m in MODULES if within(m.name, layer)):
        for line, name in imports(module):
            bad = next((f for f in forbidden if within(name, f)), None)
            if bad:
                lines.append(f"{module.where}:{line} imports {name} ({layer} must not import {bad}: {why})")
    return lines


# The core's folders in order, lowest first: a folder imports only folders of lower ranks and itself, never a
# sibling of its own rank or anything above it, not even inside a function. `spec` is plain data; `options`
# (presets resolved against the registries, the command lines' options) sits beside the engine.
CORE_ORDER: tuple[tuple[str, ...], ...] = (
    ("spec", "faults"),
    ("data", "models", "pruning"),
    ("methods",),
    ("options", "engine"),
    ("store",),
    ("branches",),
)


def core_folder(name: str) -> str | None:
    """`engine` for lth_ray.core.engine.cohort; None for lth_ray.core itself and for anything outside it."""
    parts = name.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["lth_ray", "core"] else None


def core_order_violations(graph: dict[str, list[tuple[int, str]]], order=CORE_ORDER) -> list[str]:
    """Every import in `graph` (module -> (line, imported module)) that breaks `order`."""
    rank = {folder: i for i, folders in enumerate(order) for folder in folders}
    lines = []
    for module, imported in sorted(graph.items()):
        mine = core_folder(module)
        if mine is None:
            continue
        assert mine in rank, f"{module}: folder {mine!r} has no place in the core's order; add it to CORE_ORDER"
        for line, name in imported:
            theirs = core_folder(name)
            if name == "lth_ray.core" or (theirs is not None and theirs != mine and rank.get(theirs, 99) >= rank[mine]):
                lines.append(f"{module}:{line} imports {name} ({mine} is below or beside {theirs or 'the core'})")
    return lines


def core_graph() -> dict[str, list[tuple[int, str]]]:
    return {m.name: imports(m) for m in MODULES if within(m.name, "lth_ray.core")}


def test_the_cores_folders_import_only_lower_ones():
    assert core_order_violations(core_graph()) == [], "\n".join(core_order_violations(core_graph()))


@pytest.mark.parametrize(
    "module, imported, breaks",
    [
        ("lth_ray.core.spec.config", "lth_ray.core.methods.registry", True),  # up
        ("lth_ray.core.methods.registry", "lth_ray.core.engine.state", True),  # up
        ("lth_ray.core.engine.cohort", "lth_ray.core.store.rounds", True),  # up
        ("lth_ray.core.models.plan", "lth_ray.core.data.registry", True),  # beside
        ("lth_ray.core.engine.cohort", "lth_ray.core.options.resolve", True),  # beside
        ("lth_ray.core.data.loading", "lth_ray.core", True),  # the package root is every folder
        ("lth_ray.core.store.resume", "lth_ray.core.engine.state", False),  # down
        ("lth_ray.core.methods.member", "lth_ray.core.models.registry", False),  # down
        ("lth_ray.core.engine.cohort", "lth_ray.core.engine.records", False),  # within
        ("lth_ray.core.spec.streams", "torch", False),  # not the core
    ],
)
def test_the_order_check_finds_an_import_up_or_beside(module, imported, breaks):
    """A planted import in a synthetic graph, at any depth (`imports_in` sees function-level imports too)."""
    assert bool(core_order_violations({module: [(1, imported)]})) == breaks


def test_a_planted_function_level_import_breaks_the_order():
    source = "def f():\n    from lth_ray.core.engine.cohort import Cohort\n"
    module = Module("lth_ray.core.methods.example", PACKAGE / "core" / "methods" / "example.py")  # never written
    graph = {module.name: imports_in(source, module)}
    assert core_order_violations(graph) == [
        "lth_ray.core.methods.example:2 imports lth_ray.core.engine.cohort (methods is below or beside engine)"
    ]


@pytest.mark.parametrize("layer", list(RULES))
def test_a_layer_never_imports_what_its_rule_forbids(layer):
    assert any(within(m.name, layer) for m in MODULES), f"no modules under {layer}"
    assert violations(layer) == [], "\n".join(violations(layer))


def test_the_scan_sees_every_kind_of_import():
    """Imports inside functions, relative ones, `from package import module` and import_module all count."""
    source = (
        "def f():\n    import ray.tune\n"
        "from ...distributed import trainable\n"
        "from .. import engine\n"
        "importlib.import_module('lth_ray.cli')\n"
        "from lth_ray import __version__\n"
    )
    module = Module("lth_ray.core.store.example", PACKAGE / "core" / "store" / "example.py")  # never written
    assert imports_in(source, module) == [
        (2, "ray.tune"),
        (3, "lth_ray.distributed.trainable"),
        (4, "lth_ray.core.engine"),
        (5, "lth_ray.cli"),
        (6, "lth_ray"),
    ]
    assert within("ray.tune", "ray") and not within("rayleigh", "ray")


@pytest.mark.parametrize("layer", ["lth_ray.core", "lth_ray.results"])
def test_importing_a_layer_does_not_load_ray(layer):
    """Import every module of the layer in a fresh interpreter: nothing it pulls in, directly or not, loads Ray."""
    names = [m.name for m in MODULES if within(m.name, layer) and not m.name.endswith("__main__")]
    code = (
        "import importlib, json, sys\n"
        "first = None\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "    if first is None and 'ray' in sys.modules:\n"
        "        first = name\n"
        "print(json.dumps(first))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    first = json.loads(out.stdout.strip().splitlines()[-1])
    assert first is None, f"importing {first} loads ray ({layer} must not, not even through a library)"


def test_no_module_over_450_lines():
    long = [
        f"{m.where}: {n} lines (at most {MAX_MODULE_LINES})"
        for m in MODULES
        if (n := len(m.path.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    assert long == [], "\n".join(long)


def test_no_class_over_200_lines():
    long = []
    for m in MODULES:
        for node in ast.walk(ast.parse(m.path.read_text(), filename=str(m.path))):
            if isinstance(node, ast.ClassDef) and (n := node.end_lineno - node.lineno + 1) > MAX_CLASS_LINES:
                long.append(f"{m.where}:{node.lineno} class {node.name}: {n} lines (at most {MAX_CLASS_LINES})")
    assert long == [], "\n".join(long)


# The public names of the export and analysis packages (what their modules defined before they became packages):
# every one stays importable from the package.
OLD_NAMES = {
    "lth_ray.results.export": [
        "MANIFEST",
        "EXPORT_FORMAT",
        "THESIS_METRICS",
        "ExportError",
        "export_experiment",
        "export_files",
        "write_export",
        "trajectory_name",
        "trial_identity",
        "histories_table",
        "instability_table",
        "interpolation_table",
        "layer_names",
        "rounds_table",
        "Group",
        "group_trials",
        "write_thesis_groups",
        "history_arrays",
        "thesis_state",
        "write_group",
        "thesis_specs",
        "build_parser",
        "main",
    ],
    "lth_ray.results.analysis": [
        "CONFIG",
        "GROUP",
        "PAPER_BASELINES",
        "OWN_DENSE_ROUND",
        "FAMILIES",
        "SUMMARY_METRICS",
        "RUNNING",
        "TRIAL_IDENTITY",
        "TRIAL_COLUMNS",
        "Experiment",
        "load_experiment",
        "tune_analysis",
        "load_export",
        "OLD_EXPORT_DEFAULTS",
        "early_stop_indices",
        "values_at",
        "early_stop",
        "summarise",
        "winning_ticket",
        "missing",
        "config_labels",
        "matching",
        "by_configuration",
        "STABLE_BARRIER",
        "stable_and_matching",
        "plot_instability_vs_sparsity",
        "plot_interpolation",
        "ticket_method",
        "ladder_ticks",
        "sparsity_axis",
        "plot_vs_sparsity",
        "ABLATION_STYLES",
        "split_label",
        "has_other_methods",
        "method_order",
        "methods_table",
        "plot_methods_vs_sparsity",
        "plot_accuracy_vs_sparsity",
        "plot_early_stop_vs_sparsity",
        "select_rounds",
        "plot_history",
        "plot_layer_sparsity",
        "mask_image",
        "plot_mask",
        "TICKETS",
        "METRICS",
    ],
}


@pytest.mark.parametrize("module", list(OLD_NAMES))
def test_the_packages_keep_their_public_names(module):
    import importlib

    package = importlib.import_module(module)
    assert [n for n in OLD_NAMES[module] if not hasattr(package, n)] == []


# Top-level modules besides the public API: Tune's pickles name two, and four are the old spellings of commands.
PICKLED = {"lth_ray.trainable": ["run_trial"], "lth_ray.sweep": ["_trial_name", "_trial_dirname"]}
OLD_COMMANDS = {
    "lth_ray.report": "report",
    "lth_ray.export": "export",
    "lth_ray.trajectory": "trajectory",
    "lth_ray.cluster_config": "check-cluster",
}


def test_the_top_level_holds_only_the_api_the_pickled_names_and_the_old_commands():
    assert set(SHIMS) == set(PICKLED) | set(OLD_COMMANDS)


@pytest.mark.parametrize("module", list(PICKLED))
def test_tunes_pickled_names_resolve(module):
    import importlib

    assert all(callable(getattr(importlib.import_module(module), n)) for n in PICKLED[module])


@pytest.mark.parametrize("module", list(OLD_COMMANDS))
def test_an_old_command_spelling_still_runs_and_warns(module):
    out = subprocess.run(
        [sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith(f"usage: lth-ray {OLD_COMMANDS[module]}"), out.stdout
    assert f"DeprecationWarning: python -m {module} is deprecated; use: lth-ray {OLD_COMMANDS[module]}" in out.stderr


def test_the_public_api_resolves_without_loading_torch_or_ray():
    code = (
        "import json, sys, lth_ray\n"
        "light = sorted({'torch', 'ray'} & set(sys.modules))\n"
        "missing = [n for n in lth_ray.__all__ if getattr(lth_ray, n, None) is None]\n"
        "print(json.dumps([light, missing, 'ray' in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [[], [], False]
