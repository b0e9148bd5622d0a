"""Policy-evaluation linear solves: v = b + γ P_π v, i.e. (I - γ P_π) v = b, to a checked residual.

Small dense systems go to LAPACK, banded sparse ones to ``solve_banded`` (O(S·bw²), no fill-in) and the
rest to restarted GMRES (BiCGSTAB if it stalls) with iterative refinement, falling back to an exact
factorisation if the ∞-norm residual target is missed. ``I - γ P_π`` is strictly diagonally dominant
for γ < 1, so every branch is well posed and ``|v - v_π|∞ <= |residual|∞ / (1 - γ)``.

:func:`evaluate_policy` (what the MDP solvers call) first tries :func:`deflated_richardson`, a few
matrix-vector products that reach the target on a fast-mixing P_π (a random dense MDP's) without
Krylov bookkeeping or an O(S³) factorisation, then GMRES cycles, then the solver above.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
import scipy.sparse.linalg as spla

DENSE_DIRECT_MAX = 600  # systems up to this size: LU (cheaper than Krylov overhead)
DENSE_FALLBACK_MAX = 8000  # a non-banded sparse fallback is densified up to this size (sparse LU fills in)
BANDED_MAX_BW = 64  # sparse systems of half-bandwidth <= this: banded LU
RESIDUAL_RTOL = 1e-12  # target |b - (I - γP)v|∞ <= RESIDUAL_RTOL·(1 - γ)·max(1, |v|∞), or the rounding
#                        floor; then |v - v_π|∞ <= |residual|∞ / (1 - γ) <= RESIDUAL_RTOL·max(1, |v|∞)
_EPS = np.finfo(np.float64).eps

METHODS = ("auto", "direct", "banded", "iterative")


def bandwidth(M: sp.csr_array) -> int:
    """Half-bandwidth max |i - j| over the stored entries of a CSR matrix (0 when empty)."""
    if M.nnz == 0:
        return 0
    rows = np.repeat(np.arange(M.shape[0]), np.diff(M.indptr))
    return int(np.abs(M.indices.astype(np.int64) - rows).max())


def _residual(Ppi, b: np.ndarray, gamma: float, x: np.ndarray) -> np.ndarray:
    return b - (x - gamma * (Ppi @ x))


def _norm(v: np.ndarray) -> float:
    return float(np.abs(v).max(initial=0.0))


def _target(b: np.ndarray, x: np.ndarray, gamma: float, rtol: float = RESIDUAL_RTOL) -> float:
    """rtol·(1 - γ)·max(1, |x|∞) (a relative error rtol in x), never below the rounding floor of
    b - (I - γP)x."""
    xn = _norm(x)
    return max(rtol * (1.0 - gamma) * max(1.0, xn), 32 * _EPS * (xn + _norm(b)))


def residual_target(b: np.ndarray, x: np.ndarray, gamma: float, rtol: float = RESIDUAL_RTOL) -> float:
    """The ∞-norm residual an exact solve of v = b + γ P_π v must reach at x (see ``_target``)."""
    return _target(b, x, gamma, rtol)


def is_exact(b: np.ndarray, x: np.ndarray, res: np.ndarray, gamma: float) -> bool:
    """Whether a residual res = b - (I - γP)x meets the exact-solve target."""
    return _norm(res) <= _target(b, x, gamma)


def _direct(Ppi, b: np.ndarray, gamma: float) -> np.ndarray:
    S = b.shape[0]
    if sp.issparse(Ppi) and S <= DENSE_FALLBACK_MAX and bandwidth(Ppi) > BANDED_MAX_BW:
        Ppi = Ppi.toarray()
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


def deflated_richardson(Ppi, b: np.ndarray, gamma: float, x: np.ndarray, res: np.ndarray,
                        rtol: float = RESIDUAL_RTOL, max_matvecs: int = 200,
                        w: np.ndarray | None = None) -> tuple[np.ndarray, int, np.ndarray, bool]:
    """Refinement x += M⁻¹ (b - (I - γ P_π) x) with M = I - γ w uᵀ, u = 1/S the uniform row and
    w = P_π 1 the row sums (None: all ones, a stochastic P_π).

    M⁻¹ y = y + γ mean(y) / (1 - γ mean(w)) · w (Sherman-Morrison: O(S)). With E = P_π - w uᵀ,
    E 1 = 0, and when P_π 1 = 1 the error map γ M⁻¹ E acts as γ P_π on the quotient by the
    constants: the Perron eigenvalue is removed and the error contracts by γ|λ₂(P_π)| per step,
    1e-12 in about 8 products on a random dense MDP (|λ₂| ≈ 0.03 at S = 500), where plain
    evaluation sweeps contract by γ only (zero rows of terminal states are why w is not 1).
    Every step computes the true residual; it stops at the target, or (returning ``False``) once
    a step gains less than half, e.g. on a slowly mixing P_π, where the caller's Krylov or LU path
    takes over. Returns (x, matvecs, b - (I - γ P_π) x, converged) with the best x seen.
    """
    S = b.shape[0]
    k = gamma / (1.0 - gamma * (1.0 if w is None else float(np.add.reduce(w)) / S)) / S
    rel = rtol * (1.0 - gamma)  # the target rel·max(1, |x|∞); its rounding floor is checked at the end
    rn, n = _norm(res), 0
    while rn > rel * max(1.0, _norm(x)) and n < max_matvecs:
        xn = x + res
        if w is None:
            xn += k * float(np.add.reduce(res))
        else:
            xn += (k * float(np.add.reduce(res))) * w
        res_n = Ppi @ xn
        res_n *= gamma
        res_n += b
        res_n -= xn
        n += 1
        rn_new = _norm(res_n)
        if not rn_new <= 0.5 * rn:  # too slow (or no gain, or at the rounding floor): stop
            if rn_new < rn:
                x, res, rn = xn, res_n, rn_new
            break
        x, res, rn = xn, res_n, rn_new
    return x, n, res, rn <= _target(b, x, gamma, rtol)


def _gmres_cycle(matvec, r: np.ndarray, tol2: float, m: int) -> np.ndarray:
    """One GMRES(m) cycle for M d = r from d = 0 (Arnoldi with two-pass Gram-Schmidt, Givens
    rotations); stops once the estimated |r - M d|₂ <= tol2, which bounds the ∞-norm too."""
    beta = float(np.linalg.norm(r))
    basis = np.empty((m + 1, r.shape[0]))
    basis[0] = r / beta
    H = np.zeros((m + 1, m))
    cs, sn, g = np.zeros(m), np.zeros(m), np.zeros(m + 1)
    g[0] = beta
    k = 0
    for j in range(m):
        w = matvec(basis[j])
        for _ in range(2):  # classical Gram-Schmidt, repeated once for orthogonality
            h = basis[:j + 1] @ w
            w -= basis[:j + 1].T @ h
            H[:j + 1, j] += h
        hn = float(np.linalg.norm(w))
        H[j + 1, j] = hn
        for i in range(j):  # earlier rotations on the new column
            a, c = H[i, j], H[i + 1, j]
            H[i, j], H[i + 1, j] = cs[i] * a + sn[i] * c, -sn[i] * a + cs[i] * c
        rho = float(np.hypot(H[j, j], hn))
        cs[j], sn[j] = H[j, j] / rho, hn / rho
        H[j, j], H[j + 1, j] = rho, 0.0
        g[j + 1], g[j] = -sn[j] * g[j], cs[j] * g[j]
        k = j + 1
        if abs(g[j + 1]) <= tol2 or hn <= 1e-14 * beta:  # converged, or the Krylov space is exhausted
            break
        basis[j + 1] = w / hn
    y = sla.solve_triangular(H[:k, :k], g[:k], check_finite=False)
    return basis[:k].T @ y


def _iterative(Ppi, b: np.ndarray, gamma: float, x: np.ndarray, res: np.ndarray | None,
               rtol: float) -> tuple[np.ndarray, int, np.ndarray]:
    """Refinement x += d, M d = b - M x, by GMRES(40) cycles (BiCGSTAB once they stall), each checked
    by the true residual; ``res`` = b - M x if already known. Returns (x, matvecs, b - M x)."""
    S = b.shape[0]
    count = [0]

    def matvec(z: np.ndarray) -> np.ndarray:
        count[0] += 1
        return z - gamma * (Ppi @ z)

    res = b - matvec(x) if res is None else res
    rn = _norm(res)
    use_bicgstab = False
    while rn > _target(b, x, gamma, rtol) and count[0] <= 4 * S + 400:
        target = _target(b, x, gamma, rtol)
        if use_bicgstab:
            op = spla.LinearOperator((S, S), matvec=matvec, dtype=np.float64)
            rt = min(0.5, 0.25 * target / float(np.linalg.norm(res)))
            d, _ = spla.bicgstab(op, res, rtol=rt, atol=0.0, maxiter=2 * S + 100)
        else:
            d = _gmres_cycle(matvec, res, 0.5 * target, min(40, S))
        if not np.all(np.isfinite(d)):
            break
        xn = x + d
        res_n = b - matvec(xn)
        rn_new = _norm(res_n)
        progress = rn_new < 0.5 * rn
        if rn_new < rn:
            x, res, rn = xn, res_n, rn_new
        if not progress:
            if use_bicgstab:
                break
            use_bicgstab = True
    return x, count[0], res


def solve_policy_system(Ppi, b: np.ndarray, gamma: float, x0: np.ndarray | None = None,
                        method: str = "auto", res0: np.ndarray | None = None,
                        rtol: float = RESIDUAL_RTOL) -> tuple[np.ndarray, int, np.ndarray]:
    """Solve v = b + γ Ppi v for dense or CSR Ppi (S, S); returns (v, iterations, b + γ Ppi v - v).

    iterations: 1 for a factorisation, matrix-vector products for 'iterative' (which starts from x0,
    default 0, may be handed its residual b - (I - γ Ppi) x0 as res0, and stops at the residual
    rtol·max(1, |b|∞); factorisations are exact whatever rtol).
    """
    S = b.shape[0]
    dense = isinstance(Ppi, np.ndarray)
    bw = S if dense else bandwidth(Ppi)
    if method == "auto":
        if not dense and bw <= BANDED_MAX_BW:
            method = "banded"
        else:
            method = "direct" if S <= DENSE_DIRECT_MAX else "iterative"
    if method == "banded" and dense:
        Ppi = sp.csr_array(Ppi)
        bw = bandwidth(Ppi)
    iters = 1
    if method == "direct":
        x = _direct(Ppi, b, gamma)
    elif method == "banded":
        x = _banded(Ppi, b, gamma, bw)
    else:
        if x0 is None:
            x0, res0 = np.zeros(S), b.copy()
        x, iters, res = _iterative(Ppi, b, gamma, np.array(x0, dtype=np.float64), res0, rtol)
        if _norm(res) <= _target(b, x, gamma, rtol):
            return x, iters, res
        x = _direct(Ppi, b, gamma)  # Krylov stagnated: an exact factorisation is always available
    res = _residual(Ppi, b, gamma, x)
    if method == "banded" and _norm(res) > _target(b, x, gamma):  # banded LU of an M-matrix is stable
        x = _direct(Ppi, b, gamma)
        res = _residual(Ppi, b, gamma, x)
    return x, iters, res


#: GMRES cycles tried on a small policy system before its LU (see :func:`evaluate_policy`): two
#: cost about one LU at S = 500.
KRYLOV_FIRST_CYCLES = 2
KRYLOV_MIN_S = 64  # below this an LU is cheaper than any iteration


def evaluate_policy(Ppi, b: np.ndarray, gamma: float, x0: np.ndarray | None = None,
                    method: str = "auto", res0: np.ndarray | None = None,
                    rtol: float = RESIDUAL_RTOL, rowsums: np.ndarray | None = None
                    ) -> tuple[np.ndarray, int, np.ndarray]:
    """:func:`solve_policy_system`, except that with ``method="auto"`` a system of at least
    ``KRYLOV_MIN_S`` states that is not banded first gets :func:`deflated_richardson` from ``x0``
    (default 0; ``res0`` its residual if known; ``rowsums`` P_π 1 if known, else one product
    computes it), then, for S <= ``DENSE_DIRECT_MAX``, at most
    :data:`KRYLOV_FIRST_CYCLES` GMRES cycles, each checked by its true residual; the LU runs only
    if they miss the target (larger systems go on to the solver's own GMRES refinement). A
    factorisation costs S³/3 flops whatever P_π, a matrix-vector product S² (nnz when sparse).
    Returns (x, iterations, b + γ P_π x - x) as the solver does (iterations: matrix-vector
    products unless a factorisation answered, then 1)."""
    S = b.shape[0]
    dense = isinstance(Ppi, np.ndarray)
    if method != "auto" or S < KRYLOV_MIN_S or (not dense and bandwidth(Ppi) <= BANDED_MAX_BW):
        return solve_policy_system(Ppi, b, gamma, x0, method, res0, rtol)
    count = [0]

    def matvec(z: np.ndarray) -> np.ndarray:
        count[0] += 1
        return z - gamma * (Ppi @ z)

    if x0 is None:
        x, res = np.zeros(S), np.array(b, dtype=np.float64)
    else:
        x = np.array(x0, dtype=np.float64)
        res = b - matvec(x) if res0 is None else res0
    if rowsums is None:  # P_π 1, for the deflation (one product; exact ones are the common case)
        rowsums = np.asarray(Ppi @ np.ones(S), dtype=np.float64)
        count[0] += 1
    w = None if np.all(rowsums == 1.0) else rowsums
    x, n, res, done = deflated_richardson(Ppi, b, gamma, x, res, rtol, w=w)
    count[0] += n
    if done:
        return x, count[0], res
    if S > DENSE_DIRECT_MAX:
        x, it, res = solve_policy_system(Ppi, b, gamma, x, "auto", res, rtol)
        return x, count[0] + it, res
    for _ in range(KRYLOV_FIRST_CYCLES):
        if _norm(res) <= _target(b, x, gamma, rtol):
            return x, count[0], res
        d = _gmres_cycle(matvec, res, 0.5 * _target(b, x, gamma, rtol), min(40, S))
        if not np.all(np.isfinite(d)):
            break
        x = x + d
        res = b - matvec(x)
    if _norm(res) <= _target(b, x, gamma, rtol):
        return x, count[0], res
    return solve_policy_system(Ppi, b, gamma, None, "direct", None, rtol)
