"""Backend registry: the same passes over a FlatCircuit in several implementations.

A backend is a module exposing ``log_likelihood(flat, X)``, ``meu(flat, X, values)``,
``policy(flat, X, values)``, ``mpe(flat, X)`` and ``sample(flat, X, u, z, values)`` with the
semantics of :mod:`spmn.kernels.reference` (the oracle). ``get(None)`` returns the fastest one
that is built; there is no global switch: callers pass ``backend=`` per query.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import BackendError

#: Known backends, fastest first.
BACKENDS = ("cython", "numba", "reference")
_MODULES = {"cython": "spmn.kernels.cython", "numba": "spmn.kernels.numba",
            "reference": "spmn.kernels.reference"}
_cache: dict[str, ModuleType | None] = {}


def _load(name: str) -> ModuleType | None:
    if name not in _cache:
        try:
            _cache[name] = importlib.import_module(_MODULES[name])
        except ImportError:
            _cache[name] = None
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
