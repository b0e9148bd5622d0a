"""The circuit layer: node objects, validation, the compiler to flat arrays, the query front
and :class:`Circuit`, which ties them together (imports point down in that order)."""
from __future__ import annotations

from .circuit import Circuit, CircuitSummary
from .compile import compile_circuit
from .nodes import (
                    Categorical,
                    Gaussian,
                    Histogram,
                    Interface,
                    Leaf,
                    Max,
                    MultivariateGaussian,
                    Node,
                    Product,
                    Sum,
                    Utility,
)
from .payload import circuit_from_payload, circuit_to_payload
from .quadratic import Quadratic

__all__ = ["Circuit", "CircuitSummary", "compile_circuit", "Node", "Leaf", "Sum", "Product",
           "Max", "Categorical", "Gaussian", "Histogram", "Utility", "Interface",
           "MultivariateGaussian", "Quadratic", "circuit_to_payload", "circuit_from_payload"]
