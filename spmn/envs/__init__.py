"""Data sources: pixel observations of tabular MDPs and MiniGrid tasks for the encoder bridge,
RDDL domains (pyRDDLGym, optional extra ``spmn[rddl]``) as logged data, simulators and exact MDPs,
and Minari datasets (:mod:`spmn.envs.minari`, optional extra ``spmn[minari]``)."""
from __future__ import annotations

from .minigrid import MiniGridTask
from .pixels import Corruption, GridRenderer, GymRenderer, PixelMDP, gridworld
from .rddl import MonteCarloValue, RDDLDomain, evaluate_policy, log_transitions, validate_columns
from .rddl_exact import ExactRDDL, compile_exact

__all__ = ["Corruption", "ExactRDDL", "GridRenderer", "GymRenderer", "MiniGridTask",
           "MonteCarloValue", "PixelMDP", "RDDLDomain", "gridworld", "compile_exact", "evaluate_policy", "log_transitions", "validate_columns"]
