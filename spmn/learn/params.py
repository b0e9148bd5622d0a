"""Parameter learning on a fixed structure: hard counts or EM (``Circuit.fit_weights``).

Both methods gather sufficient statistics in the layout of a backend's ``expected_counts``:
``edge_counts[e]`` = flow through CSR edge ``e`` of the FlatCircuit, ``leaf_stats`` aligned with
``flat.params`` (Categorical: count per value; Gaussian ``[Σf, Σf·x, Σf·x²]``; histogram
log-density slots: count per bin; discrete utility log-prob slots: count per value;
MultivariateGaussian: ``Σf`` in its ``d`` slot, ``Σf·E[x]`` in its mean slots, ``Σf·E[x xᵀ]``
in its covariance slots), then set ``w = (n_e + β) / (Σ n + kβ)`` and the leaves to their
smoothed maximum-likelihood values. MultivariateGaussian leaves are learned by ``"em"`` only
(the backends' ``expected_counts``); ``"counts"`` refuses them.

- ``"counts"``: every row follows one path (hard assignment): a sum sends it to its child of
  largest ``log w_i + L_i`` (first maximum), a max node to the observed decision value (the MEU
  child when unobserved), a product to all children. One pass, no iteration.
- ``"em"``: soft flows ``f_child += f · w_i p_i(x) / p(x)`` (posteriors), iterated until the
  mean log-likelihood gains less than ``tol``; uses the backend's ``expected_counts`` when it
  has one, this module's numba pass otherwise.

Entries that are zero (categorical values, histogram bins, utility values, sum weights) stay
zero: they are structure (supports of deterministic sums), not parameters to smooth.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from numba import njit

from .. import kernels
from ..circuit import nodes as N
from ..errors import DataError
from ..flat import (
    K_CATEGORICAL,
    K_GAUSSIAN,
    K_HISTOGRAM,
    K_INTERFACE,
    K_MAX,
    K_MVGAUSSIAN,
    K_PRODUCT,
    K_SUM,
    K_UTILITY_DISCRETE,
    K_UTILITY_HISTOGRAM,
    FlatCircuit,
)
from ..gaussian import covariance_problem

if TYPE_CHECKING:  # pragma: no cover
    from ..circuit.circuit import Circuit

__all__ = ["fit_weights", "sufficient_statistics"]

#: Rows per work chunk of the statistics pass (chunks are summed in a fixed order).
CHUNK_ROWS = 2048


@njit(cache=True, nogil=True)
def _bin_of(p, base, m, x):
    """Bin of ``x`` in breaks ``p[base:base+m+1]`` (last bin closed), -1 outside."""
    if x < p[base] or x > p[base + m]:
        return -1
    lo, hi = 0, m
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if x >= p[base + mid]:
            lo = mid
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True)
def _row_pass(kind, cptr, cidx, lw, var, pptr, prm, x, hard, L, U, f, edge, leaf):
    """Upward (L, U) then downward flows for one row; adds to ``edge``/``leaf``; returns L."""
    n = kind.shape[0]
    for i in range(n):
        k = kind[i]
        a, b = cptr[i], cptr[i + 1]
        if k == K_PRODUCT:
            s, u = 0.0, 0.0
            for e in range(a, b):
                s += L[cidx[e]]
                u += U[cidx[e]]
            L[i], U[i] = s, u
        elif k == K_SUM:
            mx = -np.inf
            for e in range(a, b):
                t = lw[e] + L[cidx[e]]
                if t > mx:
                    mx = t
            if mx == -np.inf:
                L[i], U[i] = -np.inf, 0.0
            else:
                s, num = 0.0, 0.0
                for e in range(a, b):
                    w = np.exp(lw[e] + L[cidx[e]] - mx)
                    s += w
                    num += w * U[cidx[e]]
                L[i], U[i] = mx + np.log(s), num / s
        elif k == K_MAX:
            c = cidx[_max_edge(cidx, a, b, L, U, x[var[i]])]
            L[i], U[i] = L[c], U[c]
        else:
            p0 = pptr[i]
            L[i], U[i] = 0.0, 0.0
            if k == K_INTERFACE:
                continue
            v = x[var[i]]
            if k == K_CATEGORICAL:
                if not np.isnan(v):
                    L[i] = prm[p0 + int(v)]
            elif k == K_GAUSSIAN:
                if not np.isnan(v):
                    z = (v - prm[p0]) / prm[p0 + 1]
                    L[i] = prm[p0 + 2] - 0.5 * z * z
            elif k == K_HISTOGRAM or k == K_UTILITY_HISTOGRAM:
                m = int(prm[p0])
                if k == K_UTILITY_HISTOGRAM:
                    U[i] = prm[p0 + 1] if np.isnan(v) else v
                if not np.isnan(v):
                    j = _bin_of(prm, p0 + 2, m, v)
                    L[i] = -np.inf if j < 0 else prm[p0 + 3 + m + j]
            elif k == K_UTILITY_DISCRETE:
                kk = int(prm[p0])
                U[i] = prm[p0 + 1] if np.isnan(v) else v
                if not np.isnan(v):
                    L[i] = -np.inf
                    for j in range(kk):
                        if prm[p0 + 2 + j] == v:
                            L[i] = prm[p0 + 2 + kk + j]
                            break
    root = n - 1
    if L[root] == -np.inf:
        return L[root]
    f[:] = 0.0
    f[root] = 1.0
    for i in range(n - 1, -1, -1):
        fi = f[i]
        if fi == 0.0:
            continue
        k = kind[i]
        a, b = cptr[i], cptr[i + 1]
        if k == K_PRODUCT:
            for e in range(a, b):
                f[cidx[e]] += fi
                edge[e] += fi
        elif k == K_SUM:
            if hard:
                best, at = -np.inf, a
                for e in range(a, b):
                    t = lw[e] + L[cidx[e]]
                    if t > best:
                        best, at = t, e
                f[cidx[at]] += fi
                edge[at] += fi
            else:
                for e in range(a, b):
                    t = lw[e] + L[cidx[e]] - L[i]
                    if t > -np.inf:
                        g = fi * np.exp(t)
                        f[cidx[e]] += g
                        edge[e] += g
        elif k == K_MAX:
            e = _max_edge(cidx, a, b, L, U, x[var[i]])
            f[cidx[e]] += fi
            edge[e] += fi
        elif k == K_INTERFACE:
            leaf[pptr[i]] += fi
        else:
            _leaf_stats(k, prm, pptr[i], pptr[i + 1], x[var[i]], fi, leaf)
    return L[root]


@njit(cache=True, nogil=True)
def _max_edge(cidx, a, b, L, U, d):
    """Edge a max node follows: the observed decision, else the first child of largest U
    among those of positive probability (edge ``a`` if none)."""
    if not np.isnan(d):
        return a + int(d)
    at = a
    best = -np.inf
    for e in range(a, b):
        if L[cidx[e]] > -np.inf and U[cidx[e]] > best:
            best = U[cidx[e]]
            at = e
    return at


@njit(cache=True, nogil=True)
def _leaf_stats(k, prm, p0, p1, v, f, leaf):
    """Expected statistics of one leaf; an unobserved variable adds ``f`` times its moments."""
    obs = not np.isnan(v)
    if k == K_CATEGORICAL:
        if obs:
            leaf[p0 + int(v)] += f
        else:
            for j in range(p0, p1):
                leaf[j] += f * np.exp(prm[j])
    elif k == K_GAUSSIAN:
        mu, sd = prm[p0], prm[p0 + 1]
        leaf[p0] += f
        if obs:
            leaf[p0 + 1] += f * v
            leaf[p0 + 2] += f * v * v
        else:
            leaf[p0 + 1] += f * mu
            leaf[p0 + 2] += f * (mu * mu + sd * sd)
    elif k == K_HISTOGRAM or k == K_UTILITY_HISTOGRAM:
        m = int(prm[p0])
        leaf[p0] += f
        leaf[p0 + 1] += f * (v if obs else prm[p0 + 1])
        if obs:
            j = _bin_of(prm, p0 + 2, m, v)
            if j >= 0:
                leaf[p0 + 3 + m + j] += f
        else:
            for j in range(m):
                w = prm[p0 + 3 + j] - prm[p0 + 2 + j]
                leaf[p0 + 3 + m + j] += f * np.exp(prm[p0 + 3 + m + j]) * w
    elif k == K_UTILITY_DISCRETE:
        kk = int(prm[p0])
        leaf[p0] += f
        leaf[p0 + 1] += f * (v if obs else prm[p0 + 1])
        for j in range(kk):
            if obs:
                if prm[p0 + 2 + j] == v:
                    leaf[p0 + 2 + kk + j] += f
                    break
            else:
                leaf[p0 + 2 + kk + j] += f * np.exp(prm[p0 + 2 + kk + j])


@njit(cache=True, nogil=True)
def _stats(kind, cptr, cidx, lw, var, pptr, prm, X, hard, chunk):
    rows = X.shape[0]
    n, E, P = kind.shape[0], cidx.shape[0], prm.shape[0]
    nch = (rows + chunk - 1) // chunk
    edge = np.zeros((nch, E))
    leaf = np.zeros((nch, P))
    ll = np.zeros(nch)
    bad = np.zeros(nch, np.int64)
    for c in range(nch):
        L = np.empty(n)
        U = np.empty(n)
        f = np.empty(n)
        for r in range(c * chunk, min(rows, (c + 1) * chunk)):
            lr = _row_pass(kind, cptr, cidx, lw, var, pptr, prm, X[r], hard, L, U, f,
                           edge[c], leaf[c])
            if lr == -np.inf:
                bad[c] += 1
            else:
                ll[c] += lr
    E_tot = np.zeros(E)
    P_tot = np.zeros(P)
    ll_tot = 0.0
    nbad = 0
    for c in range(nch):  # chunk partial sums, added in row order
        E_tot += edge[c]
        P_tot += leaf[c]
        ll_tot += ll[c]
        nbad += bad[c]
    return E_tot, P_tot, ll_tot, nbad


def sufficient_statistics(flat: FlatCircuit, X: np.ndarray, *, hard: bool = False):
    """``(edge_counts, leaf_stats, total log-likelihood, rows of zero probability)`` of ``X``
    (module docstring, the layout of the backends' ``expected_counts``); ``hard`` routes each
    row along one path. Numba; rows in chunks whose partial sums are added in row order.
    MultivariateGaussian leaves are not handled here (use a backend's ``expected_counts``)."""
    if np.any(flat.kind == K_MVGAUSSIAN):
        raise DataError("sufficient_statistics does not handle MultivariateGaussian leaves; "
                        "use a backend's expected_counts (fit_weights(method='em'))")
    return _stats(flat.kind, flat.child_ptr, flat.child_idx, flat.log_weight, flat.var,
                  flat.param_ptr, flat.params, np.ascontiguousarray(X, np.float64), bool(hard),
                  CHUNK_ROWS)


# ---------------------------------------------------------------------------- M-step
def _normalize(c: np.ndarray, support: np.ndarray, alpha: float) -> np.ndarray | None:
    c = np.where(support, c + alpha, 0.0)
    tot = math.fsum(c.tolist())
    if tot <= 0:
        return None
    return c / tot


def _m_step(flat: FlatCircuit, edge: np.ndarray, leaf: np.ndarray, alpha: float,
            weight_alpha: float, min_std: float) -> None:
    for i, nd in enumerate(flat.node_map):
        a, b = int(flat.child_ptr[i]), int(flat.child_ptr[i + 1])
        p0, p1 = int(flat.param_ptr[i]), int(flat.param_ptr[i + 1])
        if isinstance(nd, N.Sum):
            w = _normalize(edge[a:b], nd.weights > 0, weight_alpha)
            if w is not None:
                nd.weights = w / math.fsum(w.tolist())
        elif isinstance(nd, N.Categorical):
            p = _normalize(leaf[p0:p1], nd.p > 0, alpha)
            if p is not None:
                nd.p = p / math.fsum(p.tolist())
        elif isinstance(nd, N.MultivariateGaussian):
            d = len(nd.vars)
            s0 = leaf[p0]
            if s0 > 0:
                mean = leaf[p0 + 2 + d:p0 + 2 + 2 * d] / s0
                cov = leaf[p0 + 2 + 2 * d:p1].reshape(d, d) / s0 - np.outer(mean, mean)
                cov = (cov + cov.T) / 2 + (min_std * min_std) * np.eye(d)
                if covariance_problem(mean, cov) is None:  # else keep the current one
                    nd.mean, nd.cov = mean, cov
        elif isinstance(nd, N.Gaussian):
            s0, s1, s2 = leaf[p0:p0 + 3]
            if s0 > 0:
                mean = s1 / s0
                nd.mean = float(mean)
                nd.std = float(math.sqrt(max(s2 / s0 - mean * mean, min_std * min_std)))
        elif isinstance(nd, N.Histogram) or (isinstance(nd, N.Utility) and nd.is_histogram):
            m = len(nd.densities)
            c = leaf[p1 - m:p1]
            q = _normalize(c, nd.densities > 0, alpha if isinstance(nd, N.Histogram) else 0.0)
            if q is not None:
                d = q / np.diff(nd.breaks)
                nd.densities = d / math.fsum((d * np.diff(nd.breaks)).tolist())
        elif isinstance(nd, N.Utility):
            k = len(nd.probs)
            q = _normalize(leaf[p1 - k:p1], nd.probs > 0, 0.0)
            if q is not None:
                nd.probs = q / math.fsum(q.tolist())


def fit_weights(circuit: "Circuit", data: Any, method: str = "counts", *, alpha: float = 0.1,
                weight_alpha: float = 0.0, min_std: float = 1e-6, max_iter: int = 50,
                tol: float = 1e-4, backend: str | None = None) -> "Circuit":
    """Re-fit the sum weights and leaf parameters of ``circuit`` to ``data``, in place.

    ``method``: ``"counts"`` (one hard-assignment pass) or ``"em"`` (soft posteriors, at most
    ``max_iter`` rounds, stops when the mean log-likelihood gains less than ``tol``).
    ``alpha`` smooths categorical and histogram leaves, ``weight_alpha`` sum weights (both on
    the current supports only); Gaussian std is floored at ``min_std`` (a MultivariateGaussian
    covariance gets ``min_std²`` added to its diagonal). NaN entries of ``data``
    are unobserved (marginalized). The structure is kept; the circuit is updated in place,
    ``circuit.refresh()`` is called, and the same circuit is returned.
    """
    if method not in ("counts", "em"):
        raise ValueError(f"method must be 'counts' or 'em', got {method!r}")
    X = circuit.schema.validate_data(data, what="training data")
    if X.shape[0] == 0:
        raise DataError("training data has no rows")
    be = kernels.get(backend)
    prev = -np.inf
    rounds = 1 if method == "counts" else int(max_iter)
    for _ in range(rounds):
        flat = circuit.compile()
        ext = getattr(be, "expected_counts", None) if method == "em" else None
        if ext is not None:
            edge, leaf = ext(flat, X)
            ll = float(np.sum(be.log_likelihood(flat, X)))
        else:
            edge, leaf, ll, _ = sufficient_statistics(flat, X, hard=method == "counts")
        if method == "em" and np.isfinite(prev) and ll - prev <= tol * X.shape[0]:
            break
        _m_step(flat, np.asarray(edge, np.float64), np.asarray(leaf, np.float64), float(alpha),
                float(weight_alpha), float(min_std))
        circuit.refresh()
        prev = ll
    return circuit
