"""spmn: exact, interpretable world models as sum-product-max networks.

Core names load at once; the learners, world models and reference solvers load on first use
(so that ``spmn --help`` and small scripts start fast).
"""
from __future__ import annotations

import importlib
from typing import Any

from .circuit import Circuit, CircuitSummary
from .compile import FlatCircuit, compile_circuit
from .errors import (BackendError, DataError, ModelFileError, NotFittedError, SchemaError,
                     SolverError, SpmnError, ValidationError)
from .io import load, save
from .nodes import (Categorical, Gaussian, Histogram, Interface, Max, MultivariateGaussian, Product,
                    Sum, Utility)
from .schema import Schema, Variable

__version__ = "0.1.0"

_LAZY = {
    "Template": "spmn.recurrent", "RecurrentSolution": "spmn.recurrent",
    "compile_mdp": "spmn.tabular_template",
    "WorldModel": "spmn.worldmodel", "Solution": "spmn.worldmodel",
    "learn_spn": "spmn.learn", "learn_spmn": "spmn.learn", "read_table": "spmn.data",
    "reference": "spmn.reference", "kernels": "spmn.kernels",
    "GaussianWorldModel": "spmn.continuous", "Quadratic": "spmn.quadratic",
    "EncodedWorldModel": "spmn.encoders",
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
