"""spmn: exact, interpretable world models as sum-product-max networks."""
from __future__ import annotations

from .circuit import Circuit, CircuitSummary
from .compile import FlatCircuit, compile_circuit
from .errors import (BackendError, DataError, ModelFileError, NotFittedError, SchemaError,
                     SolverError, SpmnError, ValidationError)
from .io import load, save
from .nodes import Categorical, Gaussian, Histogram, Interface, Max, Product, Sum, Utility
from .schema import Schema, Variable

__version__ = "0.1.0"

__all__ = [
    "Circuit", "CircuitSummary", "FlatCircuit", "compile_circuit", "Schema", "Variable",
    "Sum", "Product", "Max", "Categorical", "Gaussian", "Histogram", "Utility", "Interface",
    "save", "load", "SpmnError", "SchemaError", "DataError", "ValidationError",
    "ModelFileError", "BackendError", "SolverError", "NotFittedError", "__version__",
]
