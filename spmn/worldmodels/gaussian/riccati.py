"""Exact Bellman updates over quadratic values for the continuous world model.

Values are quadratics in augmented coordinates: ``V(x) = [x; 1]ᵀ H [x; 1]`` (expected discounted
reward). With the learned conditional ``x' | z ~ N(F z + f, W)``, ``z = [x; u]``, and a quadratic
reward ``r(z) = [z; 1]ᵀ G [z; 1]``, one Bellman update is closed form:

    Q(z) = [z; 1]ᵀ M [z; 1],  M = G + γ Tᵀ H T + γ tr(H_xx W) e eᵀ,  T = [[F, f], [0, 1]],
    u*(x) = −K̃ [x; 1],  K̃ = M_uu⁻¹ M_uy,  H' = M_yy − M_yu M_uu⁻¹ M_uy   (y = [x; 1]),

the discounted Riccati recursion (with the affine terms an offset f or a linear reward bring).
``value_iteration`` iterates it from ``H = 0``; ``policy_iteration`` then evaluates the greedy
gain exactly (a Stein equation: ``H = SᵀGS + γ (TS)ᵀ H (TS) + γ tr(H_xx W) e eᵀ``) and improves
it until the gain is a fixed point (Hewer's algorithm), which reaches the Riccati solution to
rounding. Mixtures: :mod:`spmn.worldmodels.gaussian.grid`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import scipy.linalg as sla
from numpy.typing import ArrayLike

from ...errors import SolverError
from ..solution import check_step, state_rows


@dataclass(frozen=True, eq=False)
class LinearDynamics:
    """``x' = A x + B u + offset + w``, ``w ~ N(0, W)``: the conditional of a joint Gaussian."""

    A: np.ndarray
    B: np.ndarray
    offset: np.ndarray
    W: np.ndarray


@dataclass(frozen=True, eq=False)
class GaussianSolution:
    """A solved continuous world model.

    ``P, p, c`` give the optimal discounted *cost* ``cost(x) = xᵀPx + pᵀx + c = −V(x)`` (so they
    compare directly with :meth:`LinearGaussianSystem.lqr`); ``K, k`` the policy
    ``u = −K x − k`` (None for a mixture, whose policy is the max over the action grid);
    ``H`` the value ``V(x) = [x; 1]ᵀ H [x; 1]``; ``noise_cost = tr(W P)``; ``residual`` the
    sup-norm Bellman residual of ``H``; ``M`` the Q-function ``Q(x, u) = [x; u; 1]ᵀ M [x; u; 1]``. For a mixture (``method="grid"``) P, p, c and H are
    the quadratic part of the fitted value (see :mod:`spmn.worldmodels.gaussian.grid`), ``value`` the
    whole of it and ``residual`` the projection residual at the anchor states.
    """

    P: np.ndarray
    p: np.ndarray
    c: float
    K: np.ndarray | None
    k: np.ndarray | None
    H: np.ndarray
    gamma: float
    iterations: int
    residual: float
    method: str
    noise_cost: float = float("nan")
    M: np.ndarray | None = field(default=None, repr=False)
    state_names: list[str] | None = None
    action_grid: np.ndarray | None = field(default=None, repr=False)
    _q: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = field(default=None, repr=False)
    _policy: Callable[[np.ndarray], np.ndarray] | None = field(default=None, repr=False)
    _value: Callable[[np.ndarray], np.ndarray] | None = field(default=None, repr=False)

    @property
    def values(self) -> np.ndarray:
        """The value's representation: ``H`` of ``V(x) = [x; 1]ᵀ H [x; 1]`` (the quadratic
        part for a grid solution)."""
        return self.H

    @property
    def horizon(self) -> None:
        """Always None: the continuous model is solved for a discounted infinite horizon."""
        return None

    def _x(self, x: ArrayLike, t: int = 0) -> tuple[np.ndarray, bool]:
        check_step(t, None)
        n = self.P.shape[0]
        X, one = state_rows(x, self.state_names or [f"x{i}" for i in range(n)])
        return np.asarray(X, dtype=np.float64), one

    def cost(self, x: ArrayLike, t: int = 0) -> float | np.ndarray:
        """Optimal expected discounted cost ``xᵀPx + pᵀx + c`` (a float for one state)."""
        X, one = self._x(x, t)
        if self._value is not None:
            out = -self._value(X)
        else:
            out = np.einsum("ri,ij,rj->r", X, self.P, X) + X @ self.p + self.c
        return float(out[0]) if one else out

    def value(self, x: ArrayLike, t: int = 0) -> float | np.ndarray:
        """Optimal expected discounted reward ``V(x) = −cost(x)``."""
        out = self.cost(x, t)
        return -out

    def policy(self, x: ArrayLike, t: int = 0) -> np.ndarray:
        """Optimal action(s): ``−K x − k`` (rows, m), or (m,) for one state."""
        X, one = self._x(x, t)
        U = self._policy(X) if self._policy is not None else -(X @ self.K.T) - self.k
        return U[0] if one else U

    def q(self, x: ArrayLike, t: int = 0, actions: ArrayLike | None = None) -> np.ndarray:
        """``Q(x, u)`` for each state (rows) and candidate action (columns): ``actions`` (k, m)
        gives the candidates; by default the action grid of a grid solution, the greedy action
        of a closed-form one (then ``Q(x, π(x)) = V(x)``). (k,) for one state."""
        X, one = self._x(x, t)
        if actions is None:
            if self._q is not None and self.action_grid is not None:
                out = self._q(X, self.action_grid)
            else:
                out = self._q_at(X, self.policy(X)[:, None, :])
        else:
            m = self.K.shape[0] if self.K is not None else self.action_grid.shape[1]
            U = np.asarray(actions, dtype=np.float64).reshape(-1, m)
            out = self._q(X, U) if self._q is not None else \
                self._q_at(X, np.broadcast_to(U, (X.shape[0], *U.shape)))
        return out[0] if one else out

    def _q_at(self, X: np.ndarray, U: np.ndarray) -> np.ndarray:
        """``[x; u; 1]ᵀ M [x; u; 1]`` for X (rows, n) and U (rows, k, m)."""
        r, k = U.shape[0], U.shape[1]
        Z = np.concatenate([np.repeat(X[:, None, :], k, axis=1), U, np.ones((r, k, 1))], axis=2)
        return np.einsum("rki,ij,rkj->rk", Z, self.M, Z)


# ---------------------------------------------------------------------------- closed form
def _transition(F: np.ndarray, f: np.ndarray) -> np.ndarray:
    """T with [x'; 1] = T [x; u; 1] (noise apart)."""
    n = F.shape[0]
    T = np.zeros((n + 1, F.shape[1] + 1))
    T[:n, :-1] = F
    T[:n, -1] = f
    T[n, -1] = 1.0
    return T


def q_matrix(H: np.ndarray, G: np.ndarray, T: np.ndarray, W: np.ndarray,
             gamma: float) -> np.ndarray:
    """M of ``Q(z) = r(z) + γ E[V(x') | z]``: ``G + γ TᵀHT + γ tr(H_xx W) e eᵀ``."""
    n = W.shape[0]
    M = G + gamma * (T.T @ H @ T)
    M[-1, -1] += gamma * float(np.einsum("ij,ji->", H[:n, :n], W))
    return (M + M.T) / 2


def _split(n: int, m: int):
    y = np.r_[np.arange(n), n + m]
    return y, np.arange(n, n + m)


def maximize(M: np.ndarray, n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """``(H', K̃)``: the maximum over u of ``[x; u; 1]ᵀ M [x; u; 1]`` and its maximizer's gain."""
    y, u = _split(n, m)
    Muy = M[n:n + m][:, y]
    negMuu = -M[n:n + m, n:n + m]
    try:
        Lc = np.linalg.cholesky(negMuu)
    except np.linalg.LinAlgError:
        lam = float(np.linalg.eigvalsh(-negMuu).max())
        raise SolverError("the Q-function is not strictly concave in the action (largest "
                          f"eigenvalue of its action block {lam:.3g} >= 0): the reward must "
                          "penalize actions (R positive definite), or no finite maximum "
                          "exists") from None
    sol = np.linalg.solve(Lc.T, np.linalg.solve(Lc, Muy))
    Hn = M[y][:, y] + Muy.T @ sol
    return (Hn + Hn.T) / 2, -sol


def check_stabilizable(A: np.ndarray, B: np.ndarray, gamma: float) -> None:
    """PBH test on (√γA, √γB): every mode with √γ|λ| >= 1 must be reachable by the actions."""
    n = A.shape[0]
    scale = max(1.0, float(np.abs(np.hstack([A, B])).max()))
    for lam in np.linalg.eigvals(A):
        if np.sqrt(gamma) * abs(lam) < 1.0 - 1e-12:
            continue
        s = np.linalg.svd(np.hstack([lam * np.eye(n) - A, B]), compute_uv=False)
        if s[-1] <= 1e-9 * scale:
            raise SolverError(f"the learned system is not stabilizable: its mode λ = {lam:.6g} "
                              f"(√γ|λ| = {np.sqrt(gamma) * abs(lam):.6g} >= 1) cannot be "
                              "influenced by the actions, so the Riccati equation has no "
                              "stabilizing solution (discounted cost is infinite)")


def _evaluate(Kt: np.ndarray, G: np.ndarray, T: np.ndarray, W: np.ndarray,
              gamma: float) -> np.ndarray:
    """Exact value of the policy u = −K̃ [x; 1] (Stein equation plus the noise constant)."""
    n, m = W.shape[0], Kt.shape[0]
    S = np.zeros((n + m + 1, n + 1))
    S[:n, :n] = np.eye(n)
    S[n:n + m] = -Kt
    S[-1, -1] = 1.0
    Acl = T @ S
    H0 = sla.solve_discrete_lyapunov(np.sqrt(gamma) * Acl.T, S.T @ G @ S)
    H0 = (H0 + H0.T) / 2
    H0[-1, -1] += gamma * float(np.trace(H0[:n, :n] @ W)) / (1.0 - gamma)
    return H0


def _spectral_radius(Kt, F, n, gamma) -> float:
    Acl = F[:, :n] - F[:, n:] @ Kt[:, :n]
    return float(np.sqrt(gamma) * np.abs(np.linalg.eigvals(Acl)).max())


def solve_riccati(F: np.ndarray, f: np.ndarray, W: np.ndarray, G: np.ndarray, gamma: float, *,
                  method: str = "policy_iteration", tol: float = 1e-13,
                  max_iter: int = 100_000) -> GaussianSolution:
    """Optimal quadratic value of ``x' = F [x; u] + f + w``, reward ``[x; u; 1]ᵀ G [x; u; 1]``."""
    if method not in ("policy_iteration", "value_iteration"):
        raise SolverError(f"unknown method {method!r}; use 'policy_iteration', "
                          "'value_iteration' or (mixtures) 'grid'")
    g = float(gamma)
    if not 0.0 < g < 1.0:
        raise SolverError(f"discount gamma={gamma!r} must lie in (0, 1)")
    n = W.shape[0]
    m = F.shape[1] - n
    check_stabilizable(F[:, :n], F[:, n:], g)
    T = _transition(F, f)
    H = np.zeros((n + 1, n + 1))
    pi = method == "policy_iteration"
    it = 0
    while True:
        it += 1
        Hn, Kt = maximize(q_matrix(H, G, T, W, g), n, m)
        if not np.all(np.isfinite(Hn)) or np.abs(Hn).max() > 1e250:
            raise SolverError("value iteration diverged: no finite optimal value (the reward "
                              "may not be bounded above)")
        diff = float(np.abs(Hn - H).max())
        H = Hn
        if diff <= tol * max(1.0, float(np.abs(H).max())):
            break
        if pi and it % 5 == 0 and _spectral_radius(Kt, F, n, g) < 1.0:
            break  # a stabilizing gain: policy iteration takes it from here
        if it >= max_iter:
            raise SolverError(f"value iteration did not converge in {max_iter} iterations "
                              f"(last change {diff:.3g})")
    if _spectral_radius(Kt, F, n, g) >= 1.0:
        raise SolverError("the optimal policy does not stabilize the learned system (√γ-scaled "
                          "closed-loop spectral radius >= 1): the reward does not observe an "
                          "unstable mode, so there is no stabilizing Riccati solution")
    if pi:
        for _ in range(100):
            it += 1
            H = _evaluate(Kt, G, T, W, g)
            _, Kn = maximize(q_matrix(H, G, T, W, g), n, m)
            done = np.abs(Kn - Kt).max() <= 1e-15 * max(1.0, float(np.abs(Kt).max()))
            Kt = Kn
            if done:
                break
        H = _evaluate(Kt, G, T, W, g)
    Hb, _ = maximize(q_matrix(H, G, T, W, g), n, m)
    P = -H[:n, :n]
    return GaussianSolution(P=P, p=-2.0 * H[:n, n], c=-float(H[n, n]), K=Kt[:, :n].copy(),
                            k=Kt[:, n].copy(), H=H, gamma=g, iterations=it,
                            residual=float(np.abs(Hb - H).max()), method=method,
                            noise_cost=float(np.trace(W @ P)), M=q_matrix(H, G, T, W, g))
