"""Every world-model kind, a module or small folder each, and the Solution protocol they share.

Importing this package registers each kind's model-file payload with :mod:`spmn.io` (one
import line per kind below: a new kind is a new module plus one line here).
"""
from __future__ import annotations

from .continuous import ContinuousSolution, ContinuousWorldModel
from .encoded import EncodedWorldModel
from .factored import FactoredWorldModel
from .gaussian import GaussianSolution, GaussianWorldModel
from .recurrent import RecurrentSolution, Template
from .solution import SolutionProtocol
from .tabular import Solution, WorldModel, compile_mdp

__all__ = ["WorldModel", "Solution", "GaussianWorldModel", "GaussianSolution",
           "EncodedWorldModel", "Template", "RecurrentSolution", "compile_mdp",
           "SolutionProtocol", "FactoredWorldModel", "ContinuousWorldModel", "ContinuousSolution"]
