"""Kalman filter through a continuous world model's conditional Gaussian.

Prediction: ``x_{t+1} | y_{0..t} ~ N(A m + B u_t + f, A P Aᵀ + W)``, the model's conditional
``p(x' | x, u)`` integrated against the filtered ``N(m, P)``. Update (Joseph form) and
log-likelihood are those of :meth:`spmn.reference.LinearGaussianSystem.kalman_filter`:
``K = P Cᵀ S⁻¹``, ``S = C P Cᵀ + V``, ``log p(y) = Σ_t log N(y_t; C m_{t|t-1}, S_t)``.
"""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ...errors import DataError, SolverError
from ...reference.linear_gaussian import KalmanResult
from .riccati import LinearDynamics

_LOG2PI = float(np.log(2.0 * np.pi))


def _mat(M, shape, name) -> np.ndarray:
    a = np.atleast_2d(np.asarray(M, dtype=np.float64))
    if a.shape != shape:
        raise DataError(f"{name} has shape {a.shape}, expected {shape}")
    if not np.all(np.isfinite(a)):
        raise DataError(f"{name} contains NaN or infinite entries")
    return a


def _psd(M: np.ndarray, name: str) -> np.ndarray:
    if np.abs(M - M.T).max(initial=0.0) > 1e-10 * max(1.0, float(np.abs(M).max(initial=0.0))):
        raise DataError(f"{name} must be symmetric")
    lam = np.linalg.eigvalsh((M + M.T) / 2)
    if lam.size and lam.min() < -1e-12 * max(1.0, float(np.abs(lam).max())):
        raise DataError(f"{name} must be positive semidefinite (smallest eigenvalue "
                        f"{lam.min():.3g})")
    return (M + M.T) / 2


def kalman_filter(dyn: LinearDynamics, y: ArrayLike, u: ArrayLike | None, C: ArrayLike | None,
                  V: ArrayLike | None, m0: ArrayLike | None = None,
                  P0: ArrayLike | None = None) -> KalmanResult:
    """Filtered and predicted means/covariances and log p(y) (see the module docstring)."""
    A, B, f, W = dyn.A, dyn.B, dyn.offset, dyn.W
    n, mdim = B.shape
    if C is None or V is None:
        raise DataError("filter needs the observation matrix C and its noise covariance V")
    Cv = np.asarray(C, dtype=np.float64)
    C = _mat(Cv.reshape(1, n) if Cv.ndim == 1 else Cv, (np.atleast_2d(Cv).shape[0], n), "C")
    p = C.shape[0]
    V = _psd(_mat(V, (p, p), "V"), "V")
    Y = np.asarray(y, dtype=np.float64)
    Y = Y.reshape(-1, 1) if Y.ndim == 1 and p == 1 else Y
    if Y.ndim != 2 or Y.shape[1] != p:
        raise DataError(f"y must have shape (T, {p}), got {np.shape(y)}")
    T = Y.shape[0]
    if u is None:
        U = np.zeros((max(T - 1, 0), mdim))
    else:
        U = np.asarray(u, dtype=np.float64)
        U = U.reshape(-1, 1) if U.ndim == 1 and mdim == 1 else U
        if U.ndim != 2 or U.shape[1] != mdim or U.shape[0] < T - 1:
            raise DataError(f"u must have shape (T-1 or T, {mdim}) = ({T - 1}, {mdim}), "
                            f"got {U.shape}")
    m = np.zeros(n) if m0 is None else np.asarray(m0, dtype=np.float64).reshape(-1)
    if m.shape != (n,):
        raise DataError(f"m0 must have shape ({n},), got {m.shape}")
    P = np.eye(n) if P0 is None else _psd(_mat(P0, (n, n), "P0"), "P0")
    means, covs = np.empty((T, n)), np.empty((T, n, n))
    pmeans, pcovs = np.empty((T, n)), np.empty((T, n, n))
    loglik, eye = 0.0, np.eye(n)
    seen = ~np.isnan(Y)
    full = seen.all(axis=1)
    At, BU = A.T, U @ B.T + f  # the conditional's mean offset for each step
    for t in range(T):
        pmeans[t], pcovs[t] = m, P
        if full[t]:
            Ct, Vt, e = C, V, Y[t] - C @ m
        elif seen[t].any():
            obs = seen[t]
            Ct, Vt = C[obs], V[np.ix_(obs, obs)]
            e = Y[t, obs] - Ct @ m
        else:
            Ct = None
        if Ct is not None:
            CP = Ct @ P
            S = CP @ Ct.T + Vt
            sign, logdet = np.linalg.slogdet(S)
            if sign <= 0 or not np.isfinite(logdet):
                raise SolverError(f"innovation covariance at t={t} is not positive "
                                  "definite")
            Si = np.linalg.inv(S)
            K = CP.T @ Si  # P Cᵀ S⁻¹
            m = m + K @ e
            IKC = eye - K @ Ct
            P = IKC @ P @ IKC.T + K @ Vt @ K.T
            loglik += -0.5 * (float(e @ Si @ e) + logdet + e.shape[0] * _LOG2PI)
        means[t], covs[t] = m, P
        if t < T - 1:
            m = A @ m + BU[t]
            P = A @ P @ At + W
            P = (P + P.T) / 2
    return KalmanResult(means, covs, pmeans, pcovs, loglik)
