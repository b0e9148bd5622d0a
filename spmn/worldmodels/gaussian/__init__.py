"""Linear-Gaussian world models: a circuit of multivariate Gaussian leaves, exact quadratic
values by Riccati updates (one component) or grid value iteration (mixtures)."""
from __future__ import annotations

from .model import GaussianWorldModel, transitions_from_system
from .riccati import GaussianSolution, LinearDynamics

__all__ = ["GaussianWorldModel", "GaussianSolution", "LinearDynamics", "transitions_from_system"]
