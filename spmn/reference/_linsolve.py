"""Policy-evaluation linear solves: v = b + γ P_π v, i.e. (I - γ P_π) v = b, to a certified residual.

Dense small systems go to LAPACK, banded sparse ones to ``solve_banded`` (O(S·bw²), no fill-in), and
everything else to BiCGSTAB with iterative refinement, falling back to a direct solve if the ∞-norm
residual target is not met. ``I - γ P_π`` is strictly diagonally dominant for γ < 1, so every branch
is well posed and ``|v - v_π|∞ <= |residual|∞ / (1 - γ)``.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
import scipy.sparse.linalg as spla

DENSE_DIRECT_MAX = 600  # dense systems up to this size: LAPACK LU (cheaper than Krylov overhead)
BANDED_MAX_BW = 64  # sparse systems whose half-bandwidth is at most this: banded LU
RESIDUAL_RTOL = 1e-12  # certified target: |b - (I - γP)v|∞ <= RESIDUAL_RTOL * max(1, |b|∞)

METHODS = ("auto", "direct", "banded", "iterative")


def bandwidth(M: sp.csr_array) -> int:
    """Half-bandwidth max |i - j| over the stored entries of a CSR matrix (0 when empty)."""
    if M.nnz == 0:
        return 0
    rows = np.repeat(np.arange(M.shape[0]), np.diff(M.indptr))
    return int(np.abs(M.indices.astype(np.int64) - rows).max())


def _residual(Ppi, b: np.ndarray, gamma: float, x: np.ndarray) -> np.ndarray:
    return b - (x - gamma * (Ppi @ x))


def _direct(Ppi, b: np.ndarray, gamma: float) -> np.ndarray:
    S = b.shape[0]
    if isinstance(Ppi, np.ndarray):
        M = Ppi * (-gamma)
        M[np.diag_indices(S)] += 1.0
        return sla.solve(M, b, overwrite_a=True, check_finite=False)
    M = (sp.eye_array(S, format="csc") - gamma * Ppi).tocsc()
    return np.asarray(spla.spsolve(M, b), dtype=np.float64)


def _banded(Ppi: sp.csr_array, b: np.ndarray, gamma: float, bw: int) -> np.ndarray:
    S = b.shape[0]
    coo = (sp.eye_array(S, format="csr") - gamma * Ppi).tocoo()
    ab = np.zeros((2 * bw + 1, S))
    np.add.at(ab, (bw + coo.row - coo.col, coo.col), coo.data)
    return sla.solve_banded((bw, bw), ab, b, check_finite=False)


def _iterative(Ppi, b, gamma, x, target, max_refine=6):
    """BiCGSTAB on the correction equation, repeated until |residual|∞ <= target."""
    S = b.shape[0]
    op = spla.LinearOperator((S, S), matvec=lambda z: z - gamma * (Ppi @ z), dtype=np.float64)
    count = [0]

    def cb(_xk):
        count[0] += 1

    for _ in range(max_refine):
        res = _residual(Ppi, b, gamma, x)
        if np.abs(res).max() <= target:
            return x, count[0], True
        d, info = spla.bicgstab(op, res, rtol=1e-11, atol=0.0, maxiter=20 * S + 100, callback=cb)
        if info < 0 or not np.all(np.isfinite(d)):
            break
        x = x + d
    res = _residual(Ppi, b, gamma, x)
    return x, count[0], bool(np.abs(res).max() <= target)


def solve_policy_system(
    Ppi, b: np.ndarray, gamma: float, x0: np.ndarray | None = None, method: str = "auto"
) -> tuple[np.ndarray, int, float]:
    """Solve v = b + γ Ppi v; returns (v, solver iterations, |residual|∞). Ppi: dense or CSR (S, S)."""
    S = b.shape[0]
    target = RESIDUAL_RTOL * max(1.0, float(np.abs(b).max(initial=0.0)))
    dense = isinstance(Ppi, np.ndarray)
    bw = S if dense else bandwidth(Ppi)
    if method == "auto":
        if dense:
            method = "direct" if S <= DENSE_DIRECT_MAX else "iterative"
        elif bw <= BANDED_MAX_BW:
            method = "banded"
        else:
            method = "direct" if S <= DENSE_DIRECT_MAX else "iterative"
    if method == "banded" and dense:
        Ppi = sp.csr_array(Ppi)
    iters = 1
    if method == "direct":
        x = _direct(Ppi, b, gamma)
    elif method == "banded":
        x = _banded(Ppi, b, gamma, bw)
    else:
        x0 = b.copy() if x0 is None else np.array(x0, dtype=np.float64)
        x, iters, ok = _iterative(Ppi, b, gamma, x0, target)
        if not ok:  # Krylov stagnated: an exact factorisation is always available
            x = _direct(Ppi, b, gamma)
            iters += 1
    res = float(np.abs(_residual(Ppi, b, gamma, x)).max(initial=0.0))
    if method != "direct" and res > target:
        x = _direct(Ppi, b, gamma)
        res = float(np.abs(_residual(Ppi, b, gamma, x)).max(initial=0.0))
    return x, iters, res
