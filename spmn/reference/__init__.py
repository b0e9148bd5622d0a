"""Exactly solvable reference cases: tabular MDPs (Gymnasium's toy-text included) and
linear-Gaussian systems (Kalman filter, RTS smoother, LQR). Imports only numpy and scipy."""
from spmn.reference.generators import random_mdp
from spmn.reference.linear_gaussian import (
    FiniteHorizonLQR,
    KalmanResult,
    LinearGaussianSystem,
    LQRSolution,
    SmootherResult,
    SteadyStateKalman,
    Trajectory,
)
from spmn.reference.tabular import MDPSolution, TabularMDP

__all__ = [
    "FiniteHorizonLQR",
    "KalmanResult",
    "LinearGaussianSystem",
    "LQRSolution",
    "MDPSolution",
    "SmootherResult",
    "SteadyStateKalman",
    "TabularMDP",
    "Trajectory",
    "random_mdp",
]
