"""Gaussian algebra of the :class:`~spmn.circuit.nodes.MultivariateGaussian` leaf, vectorized by pattern.

For a row whose leaf variables split into observed ``O`` and unobserved ``U`` (NaN), the
covariance permuted to ``(O, U)`` has the Cholesky factor ``[[L_OO, 0], [L_UO, L_UU]]``; with
``e = L_OO⁻¹ (x_O − μ_O)``:

    log p(x_O) = −½|e|² − Σ log diag L_OO − ½|O| log 2π,
    x_U | x_O ~ N(μ_U + L_UO e, L_UU L_UUᵀ),  a draw is μ_U + L_UO e + L_UU z_U.

Rows are grouped by their observation pattern, so each pattern is factored once. Everything
here is plain numpy/scipy (no spmn imports but errors): the reference kernels, the moments pass
of :mod:`spmn.circuit.quadratic` and the continuous world model all use it.
"""
from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import scipy.linalg as sla

LOG_2PI = math.log(2.0 * math.pi)
#: Smallest eigenvalue allowed for the correlation matrix of a covariance (scale-free test
#: of "singular": below it the conditionals lose most of their digits).
MIN_CORR_EIG = 1e-12


def covariance_problem(mean: np.ndarray, cov: np.ndarray,
                       names: tuple[str, ...] | list[str] | None = None) -> str | None:
    """Why ``(mean, cov)`` is not a usable Gaussian (None when it is): shapes, finiteness,
    symmetry, positive definiteness (correlation-matrix eigenvalue > ``MIN_CORR_EIG``).
    ``names`` (one per variable) make the message name the variable at fault."""
    d = mean.shape[0] if mean.ndim == 1 else -1
    if d < 1:
        return f"mean must be a non-empty vector, got shape {mean.shape}"
    if cov.shape != (d, d):
        return f"covariance has shape {cov.shape}, expected ({d}, {d}) for {d} variables"
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(cov))):
        return "mean and covariance must be finite"
    scale = max(float(np.abs(cov).max()), 1e-300)
    if np.abs(cov - cov.T).max() > 1e-10 * scale:
        return "covariance is not symmetric"
    diag = np.diag(cov)
    if np.any(diag <= 0):
        j = int(np.argmin(diag))
        who = repr(names[j]) if names is not None and len(names) == d else str(j)
        if diag[j] == 0:
            return f"covariance is singular: variable {who} has zero variance (it is constant)"
        return (f"covariance is not positive definite: variable {who} has variance "
                f"{float(diag[j]):.6g} < 0")
    s = 1.0 / np.sqrt(diag)
    lam, vec = np.linalg.eigh(((cov + cov.T) / 2) * s[:, None] * s[None, :])
    if lam[0] <= MIN_CORR_EIG:
        what = "not positive definite" if lam[0] < 0 else "singular"
        v = np.abs(vec[:, 0])
        idx = np.flatnonzero(v > 0.1 * v.max())
        who = [names[j] for j in idx] if names is not None and len(names) == d else idx.tolist()
        return (f"covariance is {what}: smallest eigenvalue of its correlation matrix is "
                f"{lam[0]:.3g} (needs > {MIN_CORR_EIG:g}); variables {who} are (nearly) "
                "linearly dependent")
    return None


def patterns(obs: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(rows, o, u)`` per distinct observation pattern of the boolean (rows, d) array."""
    if obs.shape[0] == 0:
        return
    d = obs.shape[1]
    key = obs.astype(np.int64) @ (1 << np.arange(d, dtype=np.int64))
    for k in np.unique(key):
        rows = np.flatnonzero(key == k)
        o = np.flatnonzero(obs[rows[0]])
        yield rows, o, np.flatnonzero(~obs[rows[0]])


def forward_solve(Lt: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``Lt⁻¹ b`` for a lower-triangular ``Lt`` by forward substitution, row by row. For the
    small systems of a leaf this is much faster than LAPACK's trsm, which a multi-threaded BLAS
    may spread over busy cores (milliseconds per 3 x 3 solve on a loaded machine)."""
    e = np.empty_like(b, dtype=np.float64)
    for a in range(Lt.shape[0]):
        e[a] = (b[a] - Lt[a, :a] @ e[:a]) / Lt[a, a]
    return e


def pattern_factor(cov: np.ndarray, o: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Cholesky factor of ``cov`` permuted to ``(o, u)`` (lower triangular)."""
    perm = np.concatenate([o, u])
    return np.linalg.cholesky(cov[np.ix_(perm, perm)])


class Conditioned:
    """One leaf conditioned on the observed entries of the rows ``x`` (rows, d; NaN = open).

    ``logpdf`` (rows,) is log p(x_O); ``mean`` (rows, d) holds x_O and E[x_U | x_O];
    ``cov`` (rows, d, d) is Cov[x | x_O] (zero on observed rows/columns); ``mode_logpdf`` is
    log p(x_O) + max over x_U of log p(x_U | x_O).
    """

    def __init__(self, mean: np.ndarray, cov: np.ndarray, x: np.ndarray,
                 want_cov: bool = True) -> None:
        rows, d = x.shape
        self.logpdf = np.zeros(rows)
        self.mode_logpdf = np.zeros(rows)
        self.mean = np.array(x, dtype=np.float64, copy=True)
        self.cov = np.zeros((rows, d, d)) if want_cov else None
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        for r, o, u in patterns(~np.isnan(x)):
            Lc = pattern_factor(cov, o, u)
            no = o.size
            Loo, Luo, Luu = Lc[:no, :no], Lc[no:, :no], Lc[no:, no:]
            if no:
                e = forward_solve(Loo, (x[np.ix_(r, o)] - mean[o]).T)
                self.logpdf[r] = (-0.5 * np.einsum("ij,ij->j", e, e)
                                  - np.log(np.diag(Loo)).sum() - 0.5 * no * LOG_2PI)
            else:
                e = np.zeros((0, r.size))
            if u.size:
                self.mean[np.ix_(r, u)] = mean[u] + (Luo @ e).T
                if want_cov:
                    self.cov[np.ix_(r, u, u)] = (Luu @ Luu.T)[None]
            self.mode_logpdf[r] = (self.logpdf[r] - np.log(np.diag(Luu)).sum()
                                   - 0.5 * u.size * LOG_2PI)
            self._parts.append((r, o, u, Luu))

    def sample(self, z: np.ndarray) -> np.ndarray:
        """Rows with x_U drawn as E[x_U | x_O] + L_UU z_U; ``z`` (rows, d) standard normals,
        entry j used by variable j of the leaf."""
        out = self.mean.copy()
        for r, _, u, Luu in self._parts:
            if u.size:
                out[np.ix_(r, u)] += z[np.ix_(r, u)] @ Luu.T
        return out


def logpdf(mean: np.ndarray, cov: np.ndarray, x: np.ndarray) -> np.ndarray:
    """log N(x_O; μ_O, Σ_OO) per row, unobserved (NaN) entries marginalized (0 if none seen)."""
    return Conditioned(mean, cov, x, want_cov=False).logpdf


def conditional(mean: np.ndarray, cov: np.ndarray, given: np.ndarray, target: np.ndarray):
    """Parameters of ``x_target | x_given = g`` as an affine map: ``(F, f, S)`` with
    ``E = F g + f`` and covariance ``S`` (Schur complement); ``F = Σ_tg Σ_gg⁻¹``."""
    g = np.asarray(given, dtype=np.int64)
    t = np.asarray(target, dtype=np.int64)
    Sgg = cov[np.ix_(g, g)]
    Stg = cov[np.ix_(t, g)]
    cf = sla.cho_factor(Sgg, lower=True)
    F = sla.cho_solve(cf, Stg.T).T
    f = mean[t] - F @ mean[g]
    S = cov[np.ix_(t, t)] - F @ Stg.T
    return F, f, (S + S.T) / 2


def mixture_logpdf(weights: np.ndarray, means: np.ndarray, covs: np.ndarray,
                   x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(log p(x) (rows,), log responsibilities (rows, K))`` of a Gaussian mixture."""
    with np.errstate(divide="ignore"):
        lw = np.log(weights)
    comp = np.stack([lw[k] + logpdf(means[k], covs[k], x) for k in range(len(weights))], axis=1)
    m = comp.max(axis=1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    tot = m[:, 0] + np.log(np.exp(comp - m).sum(axis=1))
    return tot, comp - tot[:, None]


# ---------------------------------------------------------------------------- flat leaves
def flat_parts(p: np.ndarray) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray]:
    """``(d, zoff, columns, mean, cov)`` of a compiled K_MVGAUSSIAN parameter block."""
    d = int(p[0])
    return (d, int(p[1]), p[2:2 + d].astype(np.int64), p[2 + d:2 + 2 * d],
            p[2 + 2 * d:2 + 2 * d + d * d].reshape(d, d))


def flat_conditioned(p: np.ndarray, X: np.ndarray) -> Conditioned:
    """The compiled leaf ``p`` conditioned on the observed entries of the evidence rows X."""
    _, _, cols, mean, cov = flat_parts(p)
    return Conditioned(mean, cov, X[:, cols])


def flat_draw_columns(p: np.ndarray, node: int, n_nodes: int) -> np.ndarray:
    """Draw columns of the leaf's variables: its node for variable 0, then ``n + zoff + j - 1``."""
    d, zoff = int(p[0]), int(p[1])
    return np.array([node] + [n_nodes + zoff + j - 1 for j in range(1, d)], np.int64)


def flat_stats(p: np.ndarray, X: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Expected statistics aligned with ``p``: slot 0 Σf, mean slots Σ f E[x | x_O], covariance
    slots Σ f E[x xᵀ | x_O] (raw second moments); the other slots 0."""
    d = int(p[0])
    out = np.zeros(p.shape[0])
    cond = flat_conditioned(p, X)
    out[0] = f.sum()
    out[2 + d:2 + 2 * d] = f @ cond.mean
    sec = cond.cov + cond.mean[:, :, None] * cond.mean[:, None, :]
    out[2 + 2 * d:] = np.einsum("r,rjk->jk", f, sec).reshape(-1)
    return out
