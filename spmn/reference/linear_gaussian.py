"""Linear-Gaussian reference cases: simulation, Kalman filter, RTS smoother and (discounted) LQR.

Model: x_{t+1} = A x_t + B u_t + w_t, w_t ~ N(0, W);  y_t = C x_t + v_t, v_t ~ N(0, V), t = 0, 1, ...
LQR cost: E Σ_t γ^t (x_t' Q x_t + u_t' R u_t), optimal value x' P x + c, optimal control u = -K x.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.linalg as sla
from numpy.typing import ArrayLike

from spmn.errors import DataError, SolverError

_LOG2PI = float(np.log(2.0 * np.pi))


@dataclass(frozen=True, eq=False)
class Trajectory:
    """x (T+1, n) states x_0..x_T; u (T, m) controls; y (T, p) observations of x_0..x_{T-1} (or None)."""

    x: np.ndarray
    u: np.ndarray
    y: np.ndarray | None


@dataclass(frozen=True, eq=False)
class KalmanResult:
    """Filtered means/covs E[x_t | y_0..y_t] (T, n)/(T, n, n), predicted ones given y_0..y_{t-1}, and
    the log-likelihood log p(y_0..y_{T-1}) = Σ_t log N(y_t; C m_{t|t-1}, C P_{t|t-1} C' + V)."""

    means: np.ndarray
    covs: np.ndarray
    pred_means: np.ndarray
    pred_covs: np.ndarray
    loglik: float


@dataclass(frozen=True, eq=False)
class SmootherResult:
    """Smoothed means/covs E[x_t | y_0..y_{T-1}] (T, n)/(T, n, n), RTS gains J_t (T-1, n, n) and
    the log-likelihood of the filter pass."""

    means: np.ndarray
    covs: np.ndarray
    gains: np.ndarray
    loglik: float


@dataclass(frozen=True, eq=False)
class SteadyStateKalman:
    """Stationary filter: ``gain`` L = P C'(C P C' + V)^{-1} (update form, filterpy's K),
    ``predictor_gain`` = A L (python-control's dlqe), ``P_prior`` (the filter DARE's solution) and
    ``P_post`` = (I - L C) P_prior."""

    gain: np.ndarray
    predictor_gain: np.ndarray
    P_prior: np.ndarray
    P_post: np.ndarray


@dataclass(frozen=True, eq=False)
class LQRSolution:
    """Infinite-horizon LQR: u = -K x; value(x) = x'Px + c with c = γ tr(WP)/(1-γ) (γ < 1).

    ``noise_cost`` = tr(WP) is the per-step cost of the noise; for γ = 1 it is the long-run average
    cost, c = 0 and ``value`` is the relative (bias) value."""

    K: np.ndarray
    P: np.ndarray
    c: float
    gamma: float
    noise_cost: float

    def value(self, x: ArrayLike) -> float | np.ndarray:
        """x'Px + c for x of shape (n,), or row-wise for (N, n)."""
        x = np.asarray(x, dtype=np.float64)
        return np.einsum("...i,ij,...j->...", x, self.P, x) + self.c

    def control(self, x: ArrayLike, t: int | None = None) -> np.ndarray:
        """Optimal control -K x (t is accepted for use as a simulate policy and ignored)."""
        return -(self.K @ np.asarray(x, dtype=np.float64))


@dataclass(frozen=True, eq=False)
class FiniteHorizonLQR:
    """Riccati recursion over H steps: K (H, m, n), P (H+1, n, n), c (H+1,) with P_H = Qf, c_H = 0;
    cost-to-go from time t is x'P_t x + c_t under u_t = -K_t x_t."""

    K: np.ndarray
    P: np.ndarray
    c: np.ndarray
    gamma: float

    def value(self, x: ArrayLike, t: int = 0) -> float:
        """x'P_t x + c_t."""
        x = np.asarray(x, dtype=np.float64)
        return float(x @ self.P[t] @ x + self.c[t])

    def control(self, x: ArrayLike, t: int) -> np.ndarray:
        """-K_t x."""
        return -(self.K[t] @ np.asarray(x, dtype=np.float64))


def _mat(M: ArrayLike, name: str, shape: tuple[int | None, int | None]) -> np.ndarray:
    try:
        arr = np.atleast_2d(np.asarray(M, dtype=np.float64))
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} must be a float matrix: {exc}") from None
    if arr.ndim != 2 or any(want is not None and got != want for got, want in zip(arr.shape, shape)):
        want = tuple("*" if w is None else w for w in shape)
        raise DataError(f"{name} has shape {arr.shape}, expected {want}")
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{name} contains NaN or infinite entries")
    return arr


def _psd(M: np.ndarray, name: str, strict: bool = False) -> np.ndarray:
    if M.shape[0] != M.shape[1] or not np.allclose(M, M.T, rtol=1e-10, atol=1e-12):
        raise DataError(f"{name} must be a symmetric square matrix")
    lam = np.linalg.eigvalsh((M + M.T) / 2) if M.size else np.zeros(0)
    floor = 1e-12 * max(1.0, float(np.abs(lam).max(initial=0.0)))
    if lam.size and (lam.min() <= 0 if strict else lam.min() < -floor):
        kind = "positive definite" if strict else "positive semidefinite"
        raise DataError(f"{name} must be {kind} (smallest eigenvalue {lam.min():.3g})")
    return (M + M.T) / 2


def _sqrt_psd(M: np.ndarray) -> np.ndarray:
    """L with L L' = M for a PSD M (eigen-decomposition, so singular M is fine)."""
    lam, U = np.linalg.eigh(M)
    return U * np.sqrt(np.clip(lam, 0.0, None))


class LinearGaussianSystem:
    """x_{t+1} = A x_t + B u_t + w_t, w ~ N(0, W); optional y_t = C x_t + v_t, v ~ N(0, V).

    B may be None (no control); 1-D B is a single input column and 1-D C a single output row.
    """

    def __init__(self, A: ArrayLike, B: ArrayLike | None, W: ArrayLike, C: ArrayLike | None = None,
                 V: ArrayLike | None = None) -> None:
        self.A = _mat(A, "A", (None, None))
        n = self.A.shape[0]
        if self.A.shape != (n, n):
            raise DataError(f"A must be square, got shape {self.A.shape}")
        if B is None:
            self.B = np.zeros((n, 0))
        else:
            Bv = np.asarray(B, dtype=np.float64)
            self.B = _mat(Bv.reshape(n, 1) if Bv.ndim == 1 else Bv, "B", (n, None))
        self.W = _psd(_mat(W, "W", (n, n)), "W")
        if C is None:
            if V is not None:
                raise DataError("V (observation noise) given without C (observation matrix)")
            self.C, self.V = None, None
        else:
            Cv = np.asarray(C, dtype=np.float64)
            self.C = _mat(Cv.reshape(1, n) if Cv.ndim == 1 else Cv, "C", (None, n))
            if V is None:
                raise DataError("C given without V: the observation noise covariance is required")
            p = self.C.shape[0]
            self.V = _psd(_mat(V, "V", (p, p)), "V")

    @property
    def n(self) -> int:
        """State dimension."""
        return self.A.shape[0]

    @property
    def m(self) -> int:
        """Control dimension (0 without B)."""
        return self.B.shape[1]

    # ------------------------------------------------------------------ simulation
    def simulate(self, x0: ArrayLike, u: ArrayLike | Callable[..., ArrayLike] | None = None,
                 T: int | None = None, seed: int | np.random.Generator | None = None) -> Trajectory:
        """Sample x_0 = x0, x_{t+1} = A x_t + B u_t + w_t and y_t = C x_t + v_t for t < T.

        u: controls (T, m), a policy ``u(x, t) -> (m,)`` (e.g. ``LQRSolution.control``), or None (zero).
        """
        rng = np.random.default_rng(seed)
        x0 = np.asarray(x0, dtype=np.float64).reshape(-1)
        if x0.shape != (self.n,):
            raise DataError(f"x0 must have shape ({self.n},), got {x0.shape}")
        policy = u if callable(u) else None
        if policy is None and u is not None:
            U = np.asarray(u, dtype=np.float64)
            U = U.reshape(-1, 1) if U.ndim == 1 and self.m == 1 else U
            if U.ndim != 2 or U.shape[1] != self.m or (T is not None and U.shape[0] != T):
                raise DataError(f"u must have shape (T, {self.m}), got {U.shape}")
            T = U.shape[0]
        if T is None or int(T) < 0:
            raise DataError("simulate needs T >= 0 (or a control array u of length T)")
        T = int(T)
        if u is None:
            U = np.zeros((T, self.m))
        elif policy is not None:
            U = np.zeros((T, self.m))
        Lw = _sqrt_psd(self.W)
        x = np.empty((T + 1, self.n))
        x[0] = x0
        noise = rng.standard_normal((T, self.n)) @ Lw.T
        for t in range(T):
            if policy is not None:
                ut = np.asarray(policy(x[t], t), dtype=np.float64).reshape(-1)
                if ut.shape != (self.m,):
                    raise DataError(f"policy returned shape {ut.shape}, expected ({self.m},)")
                U[t] = ut
            x[t + 1] = self.A @ x[t] + self.B @ U[t] + noise[t]
        y = None
        if self.C is not None:
            y = x[:T] @ self.C.T + rng.standard_normal((T, self.C.shape[0])) @ _sqrt_psd(self.V).T
        return Trajectory(x, U, y)

    # ------------------------------------------------------------------ filtering and smoothing
    def _filter_inputs(self, y, u, m0, P0):
        if self.C is None:
            raise SolverError("this system has no observation model (C, V): nothing to filter")
        Y = np.asarray(y, dtype=np.float64)
        p = self.C.shape[0]
        Y = Y.reshape(-1, 1) if Y.ndim == 1 and p == 1 else Y
        if Y.ndim != 2 or Y.shape[1] != p:
            raise DataError(f"y must have shape (T, {p}), got {np.shape(y)}")
        T = Y.shape[0]
        if u is None:
            U = np.zeros((max(T - 1, 0), self.m))
        else:
            U = np.asarray(u, dtype=np.float64)
            U = U.reshape(-1, 1) if U.ndim == 1 and self.m == 1 else U
            if U.ndim != 2 or U.shape[1] != self.m or U.shape[0] < T - 1:
                raise DataError(f"u must have shape (T-1 or T, {self.m}) = ({T - 1}, {self.m}), "
                                f"got {U.shape}")
        m0 = np.zeros(self.n) if m0 is None else np.asarray(m0, dtype=np.float64).reshape(-1)
        P0 = np.eye(self.n) if P0 is None else _psd(_mat(P0, "P0", (self.n, self.n)), "P0")
        if m0.shape != (self.n,):
            raise DataError(f"m0 must have shape ({self.n},), got {m0.shape}")
        return Y, U, m0, P0

    def kalman_filter(self, y: ArrayLike, u: ArrayLike | None = None, m0: ArrayLike | None = None,
                      P0: ArrayLike | None = None) -> KalmanResult:
        """Filter with prior x_0 ~ N(m0, P0) (default N(0, I)); u[t] drives x_{t+1}; NaN in y = missing.

        Update: K = P C' S^{-1}, S = C P C' + V, m += K (y - C m), P = (I-KC) P (I-KC)' + K V K' (Joseph).
        """
        Y, U, m, P = self._filter_inputs(y, u, m0, P0)
        T, n = Y.shape[0], self.n
        means, covs = np.empty((T, n)), np.empty((T, n, n))
        pmeans, pcovs = np.empty((T, n)), np.empty((T, n, n))
        loglik, eye = 0.0, np.eye(n)
        for t in range(T):
            pmeans[t], pcovs[t] = m, P
            obs = ~np.isnan(Y[t])
            if obs.any():
                Ct, Vt = self.C[obs], self.V[np.ix_(obs, obs)]
                e = Y[t, obs] - Ct @ m
                S = Ct @ P @ Ct.T + Vt
                try:
                    cf = sla.cho_factor(S, lower=True)
                except np.linalg.LinAlgError:
                    raise SolverError(f"innovation covariance at t={t} is not positive definite") from None
                K = sla.cho_solve(cf, Ct @ P).T
                m = m + K @ e
                IKC = eye - K @ Ct
                P = IKC @ P @ IKC.T + K @ Vt @ K.T
                P = (P + P.T) / 2
                z = sla.solve_triangular(cf[0], e, lower=True)
                logdet = 2.0 * float(np.log(np.diag(cf[0])).sum())
                loglik += -0.5 * (float(z @ z) + logdet + obs.sum() * _LOG2PI)
            means[t], covs[t] = m, P
            if t < T - 1:
                m = self.A @ m + self.B @ U[t]
                P = self.A @ P @ self.A.T + self.W
                P = (P + P.T) / 2
        return KalmanResult(means, covs, pmeans, pcovs, loglik)

    def rts_smoother(self, y: ArrayLike, u: ArrayLike | None = None, m0: ArrayLike | None = None,
                     P0: ArrayLike | None = None) -> SmootherResult:
        """Rauch-Tung-Striebel smoother (same prior and u conventions as :meth:`kalman_filter`):
        J_t = P_{t|t} A' P_{t+1|t}^{-1}, m_t^s = m_{t|t} + J_t (m_{t+1}^s - m_{t+1|t})."""
        f = self.kalman_filter(y, u, m0, P0)
        T, n = f.means.shape
        ms, Ps = f.means.copy(), f.covs.copy()
        J = np.empty((max(T - 1, 0), n, n))
        for t in range(T - 2, -1, -1):
            Pp = f.pred_covs[t + 1]
            AP = self.A @ f.covs[t]
            try:
                J[t] = sla.solve(Pp, AP, assume_a="pos").T
            except (np.linalg.LinAlgError, ValueError):
                J[t] = (np.linalg.pinv(Pp) @ AP).T
            ms[t] = f.means[t] + J[t] @ (ms[t + 1] - f.pred_means[t + 1])
            Pt = f.covs[t] + J[t] @ (Ps[t + 1] - Pp) @ J[t].T
            Ps[t] = (Pt + Pt.T) / 2
        return SmootherResult(ms, Ps, J, f.loglik)

    def steady_state_kalman(self) -> SteadyStateKalman:
        """Stationary filter from the DARE P = A P A' - A P C'(C P C' + V)^{-1} C P A' + W."""
        if self.C is None:
            raise SolverError("this system has no observation model (C, V)")
        try:
            P = sla.solve_discrete_are(self.A.T, self.C.T, self.W, self.V)
        except (np.linalg.LinAlgError, ValueError) as exc:
            raise SolverError(f"filter Riccati equation has no stabilising solution "
                              f"((A, C) not detectable?): {exc}") from None
        P = (P + P.T) / 2
        L = sla.solve(self.C @ P @ self.C.T + self.V, self.C @ P, assume_a="pos").T
        Ppost = (np.eye(self.n) - L @ self.C) @ P
        return SteadyStateKalman(L, self.A @ L, P, (Ppost + Ppost.T) / 2)

    # ------------------------------------------------------------------ control
    def _cost_mats(self, Q, R):
        if self.m == 0:
            raise SolverError("LQR needs a control matrix B with at least one column")
        Qm = _psd(_mat(Q, "Q", (self.n, self.n)), "Q")
        Rm = _psd(_mat(R, "R", (self.m, self.m)), "R", strict=True)
        return Qm, Rm

    def lqr(self, Q: ArrayLike, R: ArrayLike, gamma: float = 1.0) -> LQRSolution:
        """Discounted LQR via solve_discrete_are(√γA, √γB, Q, R): K = (R + γB'PB)^{-1} γB'PA."""
        g = float(gamma)
        if not 0.0 < g <= 1.0:
            raise SolverError(f"LQR discount gamma={gamma!r} is outside (0, 1]")
        Qm, Rm = self._cost_mats(Q, R)
        sg = np.sqrt(g)
        try:
            P = sla.solve_discrete_are(sg * self.A, sg * self.B, Qm, Rm)
        except (np.linalg.LinAlgError, ValueError) as exc:
            raise SolverError(f"control Riccati equation has no stabilising solution "
                              f"((√γA, √γB) not stabilisable?): {exc}") from None
        P = (P + P.T) / 2
        BP = self.B.T @ P
        K = sla.solve(Rm + g * BP @ self.B, g * BP @ self.A, assume_a="pos")
        noise = float(np.trace(self.W @ P))
        c = g * noise / (1.0 - g) if g < 1.0 else 0.0
        return LQRSolution(K, P, c, g, noise)

    def lqr_finite_horizon(self, Q: ArrayLike, R: ArrayLike, H: int, Qf: ArrayLike | None = None,
                           gamma: float = 1.0) -> FiniteHorizonLQR:
        """P_t = Q + γA'P_{t+1}A - γA'P_{t+1}B K_t, K_t = (R + γB'P_{t+1}B)^{-1} γB'P_{t+1}A,
        c_t = γ (c_{t+1} + tr(W P_{t+1})), from P_H = Qf (default Q), c_H = 0."""
        g = float(gamma)
        if not 0.0 < g <= 1.0:
            raise SolverError(f"LQR discount gamma={gamma!r} is outside (0, 1]")
        H = int(H)
        if H < 0:
            raise SolverError(f"horizon H must be >= 0, got {H}")
        Qm, Rm = self._cost_mats(Q, R)
        Qf = Qm if Qf is None else _psd(_mat(Qf, "Qf", (self.n, self.n)), "Qf")
        n, m = self.n, self.m
        K, P, c = np.empty((H, m, n)), np.empty((H + 1, n, n)), np.zeros(H + 1)
        P[H] = Qf
        for t in range(H - 1, -1, -1):
            Pn = P[t + 1]
            BP = self.B.T @ Pn
            K[t] = sla.solve(Rm + g * BP @ self.B, g * BP @ self.A, assume_a="pos")
            Pt = Qm + g * self.A.T @ Pn @ (self.A - self.B @ K[t])
            P[t] = (Pt + Pt.T) / 2
            c[t] = g * (c[t + 1] + float(np.trace(self.W @ Pn)))
        return FiniteHorizonLQR(K, P, c, g)
