"""Exact Bellman updates over the regions of the continuous world model, and its Solution.

With the landing matrices ``P_a`` (:func:`~.leaves.landing`), the continuation probability
``c = 1 − p_end`` and the mean reward ``R``, the region model is a finite MDP over regions:

    Q(k, a) = R(k, a) + γ c(k, a) Σ_j P_a(k, j) V(j),      V(k) = max_a Q(k, a)

(ties: the lowest action index, as the max node's rule). ``policy_iteration`` evaluates each
policy by an exact sparse linear solve (SuperLU) and improves it until it is stable;
``value_iteration`` stops when the sup-norm change is below ``tol (1 − γ) / (2 γ)``, which bounds
the distance to the fixed point by ``tol``; a finite horizon is backward induction from
``V_H = 0``. These values and policies are exact for the piecewise model; the approximation is
the region model itself (a state's value is its region's).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ...errors import SolverError
from ..solution import check_step, state_rows

DENSE = 0.1  # landing matrices with more nonzeros than this fraction are solved densely


def _backup(P, R: np.ndarray, C: np.ndarray, gamma: float, V: np.ndarray) -> np.ndarray:
    if isinstance(P, np.ndarray):  # dense (A, K, K)
        return R + gamma * C * (P @ V).T
    return R + gamma * C * np.stack([Pa @ V for Pa in P], axis=1)


def _evaluate(P, pol: np.ndarray, R: np.ndarray, C: np.ndarray, gamma: float) -> np.ndarray:
    """V of policy ``pol``: the exact solution of ``(I − γ diag(c_π) P_π) V = R_π``."""
    K = R.shape[0]
    rows = np.arange(K)
    if isinstance(P, np.ndarray):
        lhs = -gamma * C[rows, pol][:, None] * P[pol, rows]
        lhs[rows, rows] += 1.0
        return np.linalg.solve(lhs, R[rows, pol])
    M = _policy_matrix(P, pol)
    lhs = sp.identity(K, format="csc") - gamma * sp.diags(C[rows, pol]) @ M
    return spla.spsolve(lhs.tocsc(), R[rows, pol])


def solve_regions(P: list[sp.csr_matrix], R: np.ndarray, C: np.ndarray, gamma: float,
                  horizon: int | None, method: str, tol: float, max_iter: int = 100_000):
    """``(values, policy, q, iterations, residual)`` of the region MDP (module docstring)."""
    g = float(gamma)
    K, A = R.shape
    if sum(Pa.nnz for Pa in P) > DENSE * K * K * A:  # nearly dense: dense LU is faster
        P = np.stack([Pa.toarray() for Pa in P])
    if horizon is not None:
        H = int(horizon)
        if H < 1:
            raise SolverError(f"horizon must be >= 1, got {horizon}")
        if not 0.0 < g <= 1.0:
            raise SolverError(f"discount gamma={gamma!r} must lie in (0, 1] for a finite horizon")
        V = np.zeros((H + 1, K))
        Q = np.zeros((H, K, A))
        for t in range(H - 1, -1, -1):
            Q[t] = _backup(P, R, C, g, V[t + 1])
            V[t] = Q[t].max(axis=1)
        return V, Q.argmax(axis=2), Q, H, 0.0
    if not 0.0 < g < 1.0:
        raise SolverError(f"discount gamma={gamma!r} must lie in (0, 1) for an infinite horizon")
    if method == "value_iteration":
        V = np.zeros(K)
        stop = tol * (1.0 - g) / (2.0 * g)
        for it in range(1, max_iter + 1):
            Q = _backup(P, R, C, g, V)
            Vn = Q.max(axis=1)
            diff = float(np.abs(Vn - V).max())
            V = Vn
            if diff <= stop:
                break
        else:
            raise SolverError(f"value iteration did not converge in {max_iter} iterations")
    elif method == "policy_iteration":
        pol = R.argmax(axis=1)
        rows = np.arange(K)
        for it in range(1, max_iter + 1):
            V = _evaluate(P, pol, R, C, g)
            Q = _backup(P, R, C, g, V)
            best = Q.argmax(axis=1)
            # change an action only where it improves by more than rounding
            gain = Q[rows, best] - Q[rows, pol]
            better = gain > 1e-12 * np.maximum(1.0, np.abs(V))
            if not better.any():
                break
            pol = np.where(better, best, pol)
        else:
            raise SolverError(f"policy iteration did not converge in {max_iter} iterations")
    else:
        raise SolverError(f"unknown method {method!r}: 'policy_iteration' or 'value_iteration'")
    Q = _backup(P, R, C, g, V)
    V = Q.max(axis=1)
    residual = float(np.abs(_backup(P, R, C, g, V).max(axis=1) - V).max())
    return V, Q.argmax(axis=1), Q, it, residual


def _policy_matrix(P: list[sp.csr_matrix], pol: np.ndarray) -> sp.csr_matrix:
    """Row k of ``P[pol[k]]`` for every k."""
    out = sp.csr_matrix(P[0].shape)
    for a in range(len(P)):
        mask = (pol == a).astype(float)
        if mask.any():
            out = out + sp.diags(mask) @ P[a]
    return out.tocsr()


@dataclass(frozen=True, eq=False)
class ContinuousSolution:
    """A solved :class:`~.model.ContinuousWorldModel`: per-region values, policy and Q, and the
    :class:`~spmn.worldmodels.solution.SolutionProtocol` lookups by state (a state's value and
    action are its region's; a state outside the logged range is answered by the region whose
    box holds it, the nearest region, never NaN)."""

    model: Any
    values: np.ndarray        # (K,) or (H+1, K)
    region_policy: np.ndarray  # action index per region (K,) or (H, K)
    region_q: np.ndarray      # (K, A) or (H, K, A)
    gamma: float
    horizon: int | None
    iterations: int
    residual: float
    method: str

    def _rows(self, states, t):
        X, one = state_rows(states, self.model.state_names_)
        t = check_step(t, self.horizon)
        return self.model.regions(X), one, t

    def value(self, states, t: int = 0):
        """V_t of each state (its region's value)."""
        k, one, t = self._rows(states, t)
        V = self.values[t] if self.horizon is not None else self.values
        out = V[k]
        return float(out[0]) if one else out

    def policy(self, states, t: int = 0):
        """Greedy action per state: the action code, or the action-grid value (a row of
        values when the grid has several action columns)."""
        k, one, t = self._rows(states, t)
        pol = self.region_policy[t] if self.horizon is not None else self.region_policy
        out = self.model.action_values(pol[k])
        return out[0] if one else out

    def q(self, states, t: int = 0, actions: Any = None) -> np.ndarray:
        """``Q_t(s, a)`` per state (rows) and candidate action (columns): by default every
        action of the model (codes 0..A-1, or the action grid in order); ``actions`` picks
        candidates among them (codes, or grid values). (A,) for one state."""
        k, one, t = self._rows(states, t)
        Q = self.region_q[t] if self.horizon is not None else self.region_q
        cols = slice(None) if actions is None else self.model.action_index(actions)
        out = Q[k][:, cols]
        return out[0] if one else out
