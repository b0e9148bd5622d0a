"""The house by layer: every import under ``spmn/`` (module level, inside functions and under
``if TYPE_CHECKING``) is parsed with ``ast``; the suite fails on any import circle and on any
import from a lower layer to a higher one (``docs/architecture.md`` lists the layers)."""
from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1] / "spmn"

#: Layers, bottom first: a module may import its own layer and those below, never above.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("spmn.errors", "spmn._version", "spmn._progress", "spmn._cache",
                    "spmn.schema", "spmn.flat", "spmn.gaussian", "spmn.data", "spmn.io")),
    ("reference", ("spmn.reference",)),
    ("kernels", ("spmn.kernels",)),
    ("circuit", ("spmn.circuit",)),
    ("learn", ("spmn.learn",)),
    ("data sources", ("spmn.envs", "spmn.encoders")),
    ("world models", ("spmn.worldmodels",)),
    ("application", ("spmn.cli", "spmn.plots")),
    ("public names", ("spmn",)),
]
#: What the reference solvers may import of spmn: only the errors (besides numpy/scipy).
REFERENCE_MAY_IMPORT = {"spmn.errors"}


def _modules() -> dict[str, Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        parts = p.relative_to(ROOT.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


MODULES = _modules()


def _owner(name: str) -> str | None:
    """The module (or package) of ``MODULES`` that ``name`` denotes or lies in."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> set[str]:
    """Every spmn module that ``module`` imports, wherever the import statement stands."""
    path = MODULES[module]
    is_pkg = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_pkg else 0)]
                src = ".".join(base + ([node.module] if node.module else []))
            else:
                src = node.module or ""
            subs = [f"{src}.{a.name}" for a in node.names if f"{src}.{a.name}" in MODULES]
            # "from pkg import mod" imports the module; "from pkg import name" the package
            targets = subs if len(subs) == len(node.names) else [src, *subs]
        else:
            continue
        for t in targets:
            if t.split(".")[0] == "spmn":
                owner = _owner(t)
                if owner and owner != module:
                    found.add(owner)
    return found


def import_graph() -> nx.DiGraph:
    g = nx.DiGraph()
    for m in MODULES:
        g.add_node(m)
        g.add_edges_from((m, t) for t in imports_of(m))
    return g


def layer_of(module: str) -> int:
    best, rank = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, rank = len(p), i
    assert rank is not None, f"{module} is in no layer: add it to LAYERS and docs/architecture.md"
    return rank


def test_every_module_has_a_layer():
    for m in MODULES:
        layer_of(m)


def test_no_import_circle():
    cycles = [sorted(c) for c in nx.strongly_connected_components(import_graph()) if len(c) > 1]
    assert not cycles, f"import circles: {cycles}"


def test_imports_point_down():
    upward = [(a, b) for a, b in import_graph().edges if layer_of(b) > layer_of(a)]
    assert not upward, "imports from a lower layer to a higher one: " + ", ".join(
        f"{a} ({LAYERS[layer_of(a)][0]}) -> {b} ({LAYERS[layer_of(b)][0]})" for a, b in upward)


def test_reference_solvers_import_only_numpy_scipy_and_errors():
    for m in MODULES:
        if m.startswith("spmn.reference"):
            bad = {t for t in imports_of(m) if not t.startswith("spmn.reference")} \
                - REFERENCE_MAY_IMPORT
            assert not bad, f"{m} imports {sorted(bad)}"


def test_kernels_know_only_flat_arrays():
    allowed = {"spmn.flat", "spmn.gaussian", "spmn.errors", "spmn._progress"}
    for m in MODULES:
        if m.startswith("spmn.kernels"):
            bad = {t for t in imports_of(m) if not t.startswith("spmn.kernels")} - allowed
            assert not bad, f"{m} imports {sorted(bad)}"


def test_io_knows_no_model_kind():
    assert imports_of("spmn.io") <= {"spmn.errors", "spmn._version"}


@pytest.mark.parametrize("src, expected", [
    ("from . import nodes as N", {"spmn.circuit.nodes"}),
    ("def f():\n    from ..io import save\n", {"spmn.io"}),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .circuit import Circuit\n",
     {"spmn.circuit.circuit"}),
    ("import spmn.worldmodels.tabular.model", {"spmn.worldmodels.tabular.model"}),
    ("from .. import kernels", {"spmn.kernels"}),
    ("from ..schema import Schema", {"spmn.schema"}),
])
def test_the_parser_sees_every_kind_of_import(tmp_path, monkeypatch, src, expected):
    """The checker itself: function-level, TYPE_CHECKING, relative and absolute imports."""
    p = tmp_path / "probe.py"
    p.write_text(src)
    monkeypatch.setitem(MODULES, "spmn.circuit.probe", p)
    assert imports_of("spmn.circuit.probe") == expected


def test_a_planted_circle_is_found(tmp_path, monkeypatch):
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("def f():\n    from . import b\n")
    b.write_text("from .a import f\n")
    monkeypatch.setitem(MODULES, "spmn.circuit.a", a)
    monkeypatch.setitem(MODULES, "spmn.circuit.b", b)
    cycles = [c for c in nx.strongly_connected_components(import_graph()) if len(c) > 1]
    assert {"spmn.circuit.a", "spmn.circuit.b"} in cycles
