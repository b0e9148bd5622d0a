"""Leaves of the continuous world model per (region, action), and the exact probability of
landing in each region.

Per region k and action a, from the logged rows (k, a): the episode-end probability
``p_end = n_end / n`` (counts), the mean reward (its expectation is exact), and, from the rows
that did not end, one leaf per next-state variable: for a continuous variable a histogram
(``leaf="histogram"``, the default: breaks at the tree's thresholds on that variable, bin
masses the fractions of the rows' next values in each bin, so its CDF at every box edge is an
empirical fraction) or a Gaussian ``N(μ, σ²)`` (``leaf="gaussian"``: ML moments, σ at least
``min_std`` x the variable's logged spread); a categorical over its codes for a discrete one.
The next-state variables are independent given (k, a), so the probability of landing in
region j, a box ``(lo, hi]``, is a product of one-dimensional masses in closed form:
``P(j | k, a) = Π_d [F_d(hi_d) − F_d(lo_d)]`` with F the leaf's CDF (the histogram's cumulative
fractions, Φ for a Gaussian, a cumulative sum for a categorical). Gaussian upper tails use the
survival function, so a small mass far from the mean keeps its relative precision. The boxes
partition the space, so ``Σ_j P(j | k, a) = 1`` up to rounding.

Why histograms by default: a region is wide compared with one step of motion (CartPole moves
x by 0.02 v per step), and a Gaussian's tails leak a few percent of mass into *both*
neighbours each step, which swamps a one-sided drift of the same size; the histogram puts
exactly the logged fraction across each boundary (drift / width for a uniform spread).

Documented fallback: a (region, action) pair with no logged row uses the region's leaves pooled
over actions (``fallback`` marks it; the model warns when the greedy policy uses one).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.special import ndtr


@dataclass(eq=False)
class Leaves:
    """Parameters per (region, action); arrays are regions x actions (x variables)."""

    count: np.ndarray     # logged rows (K, A)
    p_end: np.ndarray     # episode-end probability (K, A)
    reward: np.ndarray    # mean reward (K, A)
    mean: np.ndarray      # next-state mean per variable (K, A, d); the code mean when discrete
    std: np.ndarray       # next-state std per variable (K, A, d); 0 for discrete variables
    cat: np.ndarray       # categorical next-state probabilities (K, A, d_discrete, k_max)
    fallback: np.ndarray  # pair never logged: pooled over the region's actions (K, A) bool
    edges: np.ndarray     # histogram breaks per variable (d, E), padded with +inf; (d, 0): Gaussian
    hist: sp.csr_matrix   # histogram counts, row (k A + a) d + j, bin e = (edge e-1, edge e]
    live: np.ndarray      # rows that did not end, the histograms' totals (K, A)

    @property
    def is_histogram(self) -> bool:
        return self.edges.shape[1] > 0

    def break_lists(self) -> list[np.ndarray]:
        """The finite histogram breaks of each variable (no padding)."""
        return [e[np.isfinite(e)] for e in self.edges]

    def cdf(self, s: int, e: int, a: int, j: int) -> np.ndarray:
        """Histogram CDF of variable j for regions s..e-1 and action a at every break (rows x
        E; padded breaks are +inf: 1; a leaf with no row that did not end: 1 everywhere)."""
        K, A, d = self.mean.shape
        rows = (np.arange(s, e) * A + a) * d + j
        F = np.cumsum(self.hist[rows].toarray(), axis=1)[:, :self.edges.shape[1]]
        n = self.live[s:e, a]
        return np.where(n[:, None] > 0, F / np.maximum(n, 1.0)[:, None], 1.0)

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = {k: getattr(self, k) for k in ("count", "p_end", "reward", "mean", "std", "cat",
                                             "fallback", "live")}
        h = self.hist.tocoo()
        out.update(hist_row=h.row, hist_col=h.col, hist_val=h.data,
                   hist_shape=np.array(h.shape))
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Leaves:
        """From :meth:`to_arrays` plus ``breaks`` (each variable's finite breaks)."""
        br = arrays["breaks"]
        shape = tuple(int(v) for v in np.asarray(arrays["hist_shape"]).reshape(-1))
        hist = sp.csr_matrix((np.asarray(arrays["hist_val"], float).reshape(-1),
                              (np.asarray(arrays["hist_row"], np.int64).reshape(-1),
                               np.asarray(arrays["hist_col"], np.int64).reshape(-1))), shape)
        E = shape[1] - 1 if shape[1] else 0
        edges = np.full((len(br), E), np.inf)
        for j, b in enumerate(br):
            edges[j, :b.size] = b
        out = {k: np.asarray(arrays[k], float) for k in ("count", "p_end", "reward", "mean",
                                                         "std", "cat", "live")}
        return cls(**out, fallback=np.asarray(arrays["fallback"]).astype(bool), edges=edges,
                   hist=hist)


def fit_leaves(k: np.ndarray, a: np.ndarray, r: np.ndarray, Sn: np.ndarray, end: np.ndarray,
               K: int, A: int, discrete: np.ndarray, cards: np.ndarray, scale: np.ndarray,
               min_std: float, edges: list[np.ndarray] | None = None) -> Leaves:
    """ML leaves per (region, action) from rows (region k, action a, reward r, next state Sn,
    end flag); ``discrete`` marks the discrete variables (codes < ``cards``); ``edges`` (the
    sorted thresholds per variable) makes the continuous leaves histograms."""
    d = Sn.shape[1]
    key = k * A + a
    n = np.bincount(key, minlength=K * A).astype(float)
    n_end = np.bincount(key, weights=end.astype(float), minlength=K * A)
    rsum = np.bincount(key, weights=r, minlength=K * A)
    live = ~end
    kl = key[live]
    nl = np.bincount(kl, minlength=K * A).astype(float)
    S1 = np.stack([np.bincount(kl, weights=Sn[live, j], minlength=K * A) for j in range(d)], 1)
    S2 = np.stack([np.bincount(kl, weights=Sn[live, j] ** 2, minlength=K * A)
                   for j in range(d)], 1)
    dis = np.flatnonzero(discrete)
    kmax = int(max(cards[dis].max(), 1)) if dis.size else 1
    C = np.zeros((K * A, dis.size, kmax))
    for i, j in enumerate(dis):
        np.add.at(C, (kl, i, Sn[live, j].astype(np.int64)), 1.0)
    E = max((e.size for e in edges), default=0) if edges is not None else 0
    E1 = max(E, 1) if edges is not None else 0
    Ed = np.full((d, E1), np.inf)
    H = sp.csr_matrix((K * A * d, E1 + 1 if edges is not None else 0))
    if edges is not None:  # counts per bin: (-inf, e_0], (e_0, e_1], ..., (e_last, inf)
        hr, hc = [], []
        for j in range(d):
            if discrete[j]:
                continue
            Ed[j, :edges[j].size] = edges[j]
            hr.append(kl * d + j)
            hc.append(np.searchsorted(edges[j], Sn[live, j], side="left"))
        if hr:
            hr, hc = np.concatenate(hr), np.concatenate(hc)
            H = sp.csr_matrix((np.ones(hr.size), (hr, hc)), shape=H.shape)
            H.sum_duplicates()
    # fallback for never-logged pairs: the region pooled over its actions
    fallback = n == 0
    if fallback.any():
        pool = lambda v: np.repeat(v.reshape(K, A, *v.shape[1:]).sum(axis=1), A, axis=0)
        n, n_end, rsum, nl = (np.where(fallback, pool(v), v) for v in (n, n_end, rsum, nl))
        f = fallback[:, None]
        S1, S2 = np.where(f, pool(S1), S1), np.where(f, pool(S2), S2)
        C = np.where(fallback[:, None, None], pool(C), C)
        if H.shape[1]:  # a fallback pair's rows: its region's rows summed over the actions
            rows = np.arange(K * A * d)
            take = np.repeat(fallback, d)
            keep = rows[~take]
            fk = rows[take]
            kk, jj = (fk // d) // A, fk % d
            src = ((kk[:, None] * A + np.arange(A)[None, :]) * d + jj[:, None]).ravel()
            r_idx = np.concatenate([keep, np.repeat(fk, A)])
            c_idx = np.concatenate([keep, src])
            M = sp.csr_matrix((np.ones(r_idx.size), (r_idx, c_idx)), shape=(K * A * d,) * 2)
            H = (M @ H).tocsr()
    p_end = n_end / n
    reward = rsum / n
    m = np.maximum(nl, 1.0)[:, None]
    mean = S1 / m
    var = np.maximum(S2 / m - mean ** 2, 0.0)
    std = np.maximum(np.sqrt(var), min_std * scale[None, :])
    none = nl == 0  # every logged row ended: the leaf is never used; keep it finite
    mean[none] = 0.0
    std[none] = scale
    std[:, dis] = 0.0
    if dis.size:
        tot = C.sum(axis=2, keepdims=True)
        C = np.where(tot > 0, C / np.maximum(tot, 1.0), 0.0)
        C[none, :, 0] = 1.0
    return Leaves(n.reshape(K, A), p_end.reshape(K, A), reward.reshape(K, A),
                  mean.reshape(K, A, d), std.reshape(K, A, d), C.reshape(K, A, dis.size, kmax),
                  fallback.reshape(K, A), Ed, H.tocsr(), nl.reshape(K, A))


def box_masses(mu: np.ndarray, sd: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Gaussian mass of ``(lo, hi]`` for rows of (mu, sd) against columns of boxes: rows x
    boxes, stable in both tails (module docstring)."""
    zl = (lo[None, :] - mu[:, None]) / sd[:, None]
    zh = (hi[None, :] - mu[:, None]) / sd[:, None]
    upper = zl > 0  # the whole box lies above the mean: survival function difference
    return np.where(upper, ndtr(-zl) - ndtr(-zh), ndtr(zh) - ndtr(zl))


def cat_masses(p: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Categorical mass of codes c with ``lo < c <= hi``: rows of p (rows x k) x boxes."""
    k = p.shape[1]
    c = np.arange(k)
    inside = (c[None, :] > lo[:, None]) & (c[None, :] <= hi[:, None])  # boxes x k
    return p @ inside.T.astype(float)


def _gaussian_edges(mu: np.ndarray, sd: np.ndarray, edges: np.ndarray):
    """``(z, F, S)`` at every edge: standardized edge, CDF and survival function (rows x edges)."""
    z = (edges[None, :] - mu[:, None]) / sd[:, None]
    return z, ndtr(z), ndtr(-z)


def _histogram_edges(leaves: Leaves, s: int, e: int, a: int, j: int,
                     edges: np.ndarray) -> np.ndarray:
    """The histogram CDF of rows s..e at each box edge (0 at -inf, 1 at +inf, the stored
    cumulative fraction at a break; every finite box edge is a break)."""
    br = leaves.edges[j]
    F = np.empty((e - s, edges.size))
    fin = np.isfinite(edges)
    F[:, edges == -np.inf], F[:, edges == np.inf] = 0.0, 1.0
    idx = np.searchsorted(br, edges[fin])
    if not np.array_equal(br[np.minimum(idx, br.size - 1)], edges[fin]):
        raise ValueError("a box edge is not a histogram break: refit the leaves")
    F[:, fin] = leaves.cdf(s, e, a, j)[:, idx]
    return F


def landing(leaves: Leaves, lo: np.ndarray, hi: np.ndarray, discrete: np.ndarray,
            chunk: int = 512) -> list[sp.csr_matrix]:
    """``P[a][k, j] = P(next state in region j | region k, action a)`` for every action (sparse,
    exact zeros dropped; module docstring): a list of K x K CSR matrices.

    Per variable the CDF is evaluated once per distinct box edge, then gathered per box:
    ``F(hi) − F(lo)``, or ``S(lo) − S(hi)`` (S = 1 − F from Φ(−z)) where the box lies above the
    mean, as :func:`box_masses` computes it."""
    K, A, d = leaves.mean.shape
    dis = {int(j): i for i, j in enumerate(np.flatnonzero(discrete))}
    cols = []
    for j in range(d):
        edges, inv = np.unique(np.concatenate([lo[:, j], hi[:, j]]), return_inverse=True)
        cols.append((edges, inv[:K], inv[K:]))
    out = []
    for a in range(A):
        parts = []
        for s in range(0, K, chunk):
            e = min(K, s + chunk)
            P = np.ones((e - s, K))
            for j in range(d):
                edges, il, ih = cols[j]
                if j in dis:
                    c = np.arange(leaves.cat.shape[3])
                    F = leaves.cat[s:e, a, dis[j]] @ (c[:, None] <= edges[None, :]).astype(float)
                    P *= np.maximum(F[:, ih] - F[:, il], 0.0)
                    continue
                if leaves.is_histogram:
                    F = _histogram_edges(leaves, s, e, a, j, edges)
                    P *= np.maximum(F[:, ih] - F[:, il], 0.0)
                    continue
                z, F, S = _gaussian_edges(leaves.mean[s:e, a, j], leaves.std[s:e, a, j], edges)
                P *= np.where(z[:, il] > 0, S[:, il] - S[:, ih], F[:, ih] - F[:, il])
            parts.append(sp.csr_matrix(P))
        out.append(sp.vstack(parts, format="csr"))
    return out
