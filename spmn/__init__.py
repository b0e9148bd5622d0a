"""spmn: exact, interpretable world models as sum-product-max networks.

The public names, nothing else. Core names load at once; the learners, world models and
reference solvers load on first use (so that ``spmn --help`` and small scripts start fast).
This module is the top of the house (``docs/architecture.md``): it may import any layer, and no
module of the package imports it.
"""
from __future__ import annotations

import importlib
from typing import Any

from . import _cache  # noqa: F401  first: Numba's cache goes to a user folder, not the package
from . import io as _io
from ._version import __version__
from .circuit.circuit import Circuit, CircuitSummary
from .circuit.compile import compile_circuit
from .circuit.nodes import (
    Categorical,
    Gaussian,
    Histogram,
    Interface,
    Max,
    MultivariateGaussian,
    Product,
    Sum,
    Utility,
)
from .circuit.payload import circuit_from_payload as _circuit_kind  # noqa: F401  registers "circuit"
from .errors import (
    BackendError,
    DataError,
    ModelFileError,
    NotFittedError,
    SchemaError,
    SolverError,
    SpmnError,
    ValidationError,
)
from .flat import FlatCircuit
from .io import load, save
from .schema import Schema, Variable


def _register_world_models() -> None:
    """io's discovery hook: the world-model package registers every kind it holds."""
    from . import worldmodels  # noqa: F401


_io.add_discovery(_register_world_models)

_LAZY = {
    "Template": "spmn.worldmodels.recurrent", "RecurrentSolution": "spmn.worldmodels.recurrent",
    "compile_mdp": "spmn.worldmodels.tabular.compile_mdp",
    "WorldModel": "spmn.worldmodels.tabular.model", "Solution": "spmn.worldmodels.tabular.model",
    "SolutionProtocol": "spmn.worldmodels.solution",
    "learn_spn": "spmn.learn", "learn_spmn": "spmn.learn", "read_table": "spmn.data",
    "reference": "spmn.reference", "kernels": "spmn.kernels",
    "GaussianWorldModel": "spmn.worldmodels.gaussian.model", "Quadratic": "spmn.circuit.quadratic",
    "EncodedWorldModel": "spmn.worldmodels.encoded",
    "FactoredWorldModel": "spmn.worldmodels.factored.model",
    "ContinuousWorldModel": "spmn.worldmodels.continuous.model",
}

__all__ = [
    "Circuit", "CircuitSummary", "FlatCircuit", "compile_circuit", "Schema", "Variable",
    "Sum", "Product", "Max", "Categorical", "Gaussian", "Histogram", "Utility", "Interface",
    "MultivariateGaussian",
    "save", "load", "SpmnError", "SchemaError", "DataError", "ValidationError",
    "ModelFileError", "BackendError", "SolverError", "NotFittedError", "__version__", *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        mod = importlib.import_module(_LAZY[name])
        value = mod if mod.__name__ == f"spmn.{name}" else getattr(mod, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'spmn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
