"""Structure and parameter learning: LearnSPN, LearnSPMN over a partial order, counts / EM."""
from __future__ import annotations

from .learnspmn import empirical_meu, learn_spmn
from .learnspn import LearnOptions, learn_spn
from .params import fit_weights, sufficient_statistics

__all__ = ["learn_spn", "learn_spmn", "fit_weights", "sufficient_statistics", "empirical_meu",
           "LearnOptions"]
