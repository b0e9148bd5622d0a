"""Small environments made here: pixel observations of tabular MDPs for the encoder bridge, and
RDDL domains (pyRDDLGym, optional extra ``spmn[rddl]``) as logged data, simulators and exact MDPs."""
from __future__ import annotations

from .pixels import Corruption, GridRenderer, GymRenderer, PixelMDP
from .rddl import MonteCarloValue, RDDLDomain, evaluate_policy, log_transitions, validate_columns
from .rddl_exact import ExactRDDL, compile_exact

__all__ = ["Corruption", "ExactRDDL", "GridRenderer", "GymRenderer", "MonteCarloValue", "PixelMDP",
           "RDDLDomain", "compile_exact", "evaluate_policy", "log_transitions", "validate_columns"]
