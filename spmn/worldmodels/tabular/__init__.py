"""Tabular world models: regions of discrete states, solved by exact Bellman passes of a
recurrent template (:class:`WorldModel`); :func:`compile_mdp` gives a known MDP's template;
:class:`CompiledMDP` is the reference TabularMDP with its dense exact solve compiled."""
from __future__ import annotations

from .compile_mdp import compile_mdp
from .mdp import CompiledMDP
from .model import Solution, WorldModel

__all__ = ["WorldModel", "Solution", "compile_mdp", "CompiledMDP"]
