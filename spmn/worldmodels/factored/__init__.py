"""Factored world models: a dynamic Bayesian network learned from logs (one G-test tree per
next-state variable, an additive reward), solved exactly by structured value iteration on
decision diagrams or by flat value iteration over the reachable states."""
from __future__ import annotations

from .model import FactoredWorldModel
from .solved import FactoredSolution, ValueTree

__all__ = ["FactoredWorldModel", "FactoredSolution", "ValueTree"]
