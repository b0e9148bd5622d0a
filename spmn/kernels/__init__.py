"""Backend registry: the same passes over a FlatCircuit in several implementations.

A backend is a module exposing ``log_likelihood(flat, X)``, ``meu(flat, X, values)``,
``policy(flat, X, values)``, ``mpe(flat, X)`` and ``sample(flat, X, u, z, values)`` with the
semantics of :mod:`spmn.kernels.reference` (the oracle). ``get(None)`` returns the fastest one
that is built; there is no global switch: callers pass ``backend=`` per query.

Imported from a source checkout (``setup.py`` and ``csrc/`` beside the package) whose Cython
extension is not built, as when Python starts in the repository root after ``pip install .``,
the package says so once (a :class:`~spmn.errors.BuildWarning` with the command that builds it)
instead of silently running without the Cython backend.
"""
from __future__ import annotations

import importlib
import importlib.util
import warnings
from pathlib import Path
from types import ModuleType

from ..errors import BackendError, BuildWarning

#: Known backends, fastest first.
BACKENDS = ("cython", "numba", "reference")
_MODULES = {"cython": "spmn.kernels.cython", "numba": "spmn.kernels.numba",
            "reference": "spmn.kernels.reference"}
_cache: dict[str, ModuleType | None] = {}
_hinted = False


def _source_checkout() -> Path | None:
    """The repository root when spmn is imported from its source tree, else None."""
    root = Path(__file__).resolve().parents[2]
    if (root / "setup.py").is_file() and (root / "csrc").is_dir():
        return root
    return None


def _build_hint(detail: str = "") -> None:
    """Warn, once per process, that a source checkout runs without its Cython extension."""
    global _hinted
    root = _source_checkout()
    if _hinted or root is None:
        return
    _hinted = True
    warnings.warn(BuildWarning(
        f"spmn is imported from its source folder {root}, where the Cython extension "
        f"spmn.kernels._ckernels is not built{detail}: the Cython backend is unavailable and "
        f"the slower Numba backend stands in. Build it in place with `pip install -e .` (or "
        f"`python setup.py build_ext --inplace`) in {root}; or, to use a copy installed with "
        f"`pip install .`, run Python from a folder outside the repository."), stacklevel=3)


def _load(name: str) -> ModuleType | None:
    if name not in _cache:
        try:
            _cache[name] = importlib.import_module(_MODULES[name])
        except ImportError as exc:
            _cache[name] = None
            if name == "cython":
                _build_hint(f" (importing it failed: {exc})")
    return _cache[name]


def available() -> list[str]:
    """Backends built and importable on this machine, fastest first."""
    return [b for b in BACKENDS if _load(b) is not None]


def get(name: str | None = None) -> ModuleType:
    """The backend module called ``name`` (None: the fastest available)."""
    if name is None:
        for b in BACKENDS:
            mod = _load(b)
            if mod is not None:
                return mod
    if name not in _MODULES:
        raise BackendError(f"unknown backend {name!r}; choose one of {list(BACKENDS)}")
    mod = _load(name)
    if mod is None:
        raise BackendError(f"backend {name!r} is not built on this machine; available: {available()}")
    return mod


if _source_checkout() is not None and importlib.util.find_spec(f"{__name__}._ckernels") is None:
    _build_hint()
