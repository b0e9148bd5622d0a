"""Row clusterings for structure learning: k-means and a naive-Bayes mixture fitted by EM
(numba hot loops), as a :class:`ClusterModel` that assigns any row on its own.

A clustering is fitted on the rows of a slice, or on a sample of them when the slice is large:
the rows with the ``k`` smallest SplitMix64 hashes of (salt, global row index)
(:func:`bottom_k`). That choice depends on no row order, and the ``k`` smallest hashes of a
union are the ``k`` smallest of the parts' ``k`` smallest, so partitions of a dask collection
choose the same rows as the in-memory data. The fitted model then labels every row by itself
(nearest centre; largest posterior), so any partitioning of the rows gets the same labels.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit

__all__ = [
    "ClusterModel",
    "as_generator",
    "bottom_k",
    "cluster_rows",
    "em_naive_bayes",
    "fit_clusters",
    "kmeans",
    "row_hash",
]


def as_generator(seed) -> np.random.Generator:
    """A numpy Generator from an int, None or a Generator (returned as is)."""
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def row_hash(salt: int, index: np.ndarray) -> np.ndarray:
    """SplitMix64 of (``salt``, global row index): one uint64 per row, distinct for distinct
    indices (the finalizer is a bijection of ``salt + (index + 1) * golden``)."""
    with np.errstate(over="ignore"):
        z = np.uint64(int(salt) % (1 << 64)) + (np.asarray(index, np.uint64) + np.uint64(1)) \
            * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def bottom_k(salt: int, index: np.ndarray, k: int) -> np.ndarray:
    """Positions (ascending) of the ``k`` rows of ``index`` with the smallest :func:`row_hash`
    (all positions when there are at most ``k``)."""
    index = np.asarray(index, np.int64)
    if index.size <= k:
        return np.arange(index.size)
    h = row_hash(salt, index)
    return np.sort(np.argpartition(h, k - 1)[:k])


def _standardized(X: np.ndarray, cards: np.ndarray) -> np.ndarray:
    """z-scores of the continuous columns (rows x continuous)."""
    Z = X[:, cards == 0]
    sd = Z.std(axis=0)
    return np.ascontiguousarray((Z - Z.mean(axis=0)) / np.where(sd > 0, sd, 1.0))


@njit(cache=True, nogil=True)
def _dist(codes, disc, cards, Z, r, F, FF, M, c):
    """Squared distance of row ``r`` to centre ``c``: ``½ Σ_disc ||onehot(x_j) - F_cj||² +
    Σ_cont (z_j - M_cj)²`` (one-hot indicators scaled by 1/√2)."""
    s = 0.0
    for j in range(disc.shape[0]):
        s += 0.5 * (1.0 - 2.0 * F[c, j, codes[r, disc[j]]] + FF[c, j])
    for j in range(Z.shape[1]):
        t = Z[r, j] - M[c, j]
        s += t * t
    return s


@njit(cache=True, nogil=True)
def _centres(codes, disc, cards, Z, lab, k, kmax):
    """Centres of the rows with ``lab >= 0``: value frequencies ``F`` (and ``FF = Σ_v F²``) per
    discrete column, means ``M`` of the continuous ones; ``cnt`` rows per centre."""
    nd = disc.shape[0]
    F = np.zeros((k, nd, kmax))
    FF = np.zeros((k, nd))
    M = np.zeros((k, Z.shape[1]))
    cnt = np.zeros(k)
    for r in range(codes.shape[0]):
        c = lab[r]
        if c >= 0:
            cnt[c] += 1.0
            for j in range(nd):
                F[c, j, codes[r, disc[j]]] += 1.0
            for j in range(Z.shape[1]):
                M[c, j] += Z[r, j]
    for c in range(k):
        if cnt[c] > 0:
            for j in range(nd):
                for v in range(cards[j]):
                    F[c, j, v] /= cnt[c]
                    FF[c, j] += F[c, j, v] * F[c, j, v]
            for j in range(Z.shape[1]):
                M[c, j] /= cnt[c]
    return F, FF, M, cnt


@njit(cache=True, nogil=True)
def _assign(codes, disc, cards, Z, F, FF, M, cnt, lab):
    """Each row to its nearest non-empty centre (first on ties); returns how many changed."""
    changed = 0
    for r in range(codes.shape[0]):
        best, bd = 0, np.inf
        for c in range(F.shape[0]):
            if cnt[c] > 0:
                d = _dist(codes, disc, cards, Z, r, F, FF, M, c)
                if d < bd:
                    bd, best = d, c
        if lab[r] != best:
            lab[r] = best
            changed += 1
    return changed


@njit(cache=True, nogil=True)
def _kmeans(codes, disc, cards, Z, k, u, max_iter):
    """k-means++ seeding (uniforms ``u``) then Lloyd iterations, without materializing the
    one-hot features: a centre holds value frequencies per discrete column."""
    n = codes.shape[0]
    kmax = 1
    for j in range(disc.shape[0]):
        kmax = max(kmax, cards[j])
    seed_lab = np.full(n, -1, np.int64)
    d2 = np.full(n, np.inf)
    for c in range(k):
        i = min(int(u[0] * n), n - 1)
        if c > 0:
            tot, acc, i = d2.sum(), 0.0, n - 1
            for r in range(n):
                acc += d2[r]
                if tot > 0 and acc > u[c] * tot:
                    i = r
                    break
        seed_lab[:] = -1
        seed_lab[i] = 0
        F, FF, M, _ = _centres(codes, disc, cards, Z, seed_lab, 1, kmax)
        for r in range(n):
            d2[r] = min(d2[r], _dist(codes, disc, cards, Z, r, F, FF, M, 0))
        seed_lab[i] = c
        if c == 0:
            lab = seed_lab.copy()
        else:
            lab[i] = c
    F, FF, M, cnt = _centres(codes, disc, cards, Z, lab, k, kmax)
    lab[:] = -1
    for _ in range(max_iter):
        if _assign(codes, disc, cards, Z, F, FF, M, cnt, lab) == 0:
            break
        F, FF, M, cnt = _centres(codes, disc, cards, Z, lab, k, kmax)
    return lab


def kmeans(X: np.ndarray, codes: np.ndarray, cards: Sequence[int], k: int, seed=None,
           max_iter: int = 100) -> np.ndarray:
    """k-means labels ``0..k-1`` of the rows: one-hot indicators (scaled by 1/√2, so two codes
    differ by distance 1) for discrete columns, z-scores for continuous ones; k-means++
    seeding, Lloyd iterations (numba)."""
    rng = as_generator(seed)
    cards = np.asarray(cards, np.int64)
    disc = np.flatnonzero(cards > 0)
    u = rng.random(k)
    return _kmeans(np.ascontiguousarray(codes, np.int32), disc.astype(np.int64), cards[disc],
                   _standardized(X, cards), int(k), u, int(max_iter))


@njit(cache=True, nogil=True)
def _nb_mstep(codes, disc_cols, cards, X, cont_cols, R, alpha, min_var):
    """Mixture weights, categorical log-tables, Gaussian means and variances from the
    responsibilities ``R`` (rows x k)."""
    n, k = R.shape
    kmax = 1
    for j in range(disc_cols.shape[0]):
        kmax = max(kmax, cards[j])
    logt = np.zeros((k, disc_cols.shape[0], kmax))
    mu = np.zeros((k, cont_cols.shape[0]))
    var = np.ones((k, cont_cols.shape[0]))
    logw = np.zeros(k)
    nk = np.zeros(k)
    for r in range(n):
        for c in range(k):
            nk[c] += R[r, c]
    for c in range(k):
        logw[c] = np.log((nk[c] + 1e-12) / (n + k * 1e-12))
    cnt = np.zeros((k, disc_cols.shape[0], kmax))
    for r in range(n):
        for j in range(disc_cols.shape[0]):
            v = codes[r, disc_cols[j]]
            for c in range(k):
                cnt[c, j, v] += R[r, c]
    for c in range(k):
        for j in range(disc_cols.shape[0]):
            tot = nk[c] + alpha * cards[j]
            for v in range(cards[j]):
                logt[c, j, v] = np.log((cnt[c, j, v] + alpha) / tot)
    s1 = np.zeros((k, cont_cols.shape[0]))
    s2 = np.zeros((k, cont_cols.shape[0]))
    for r in range(n):
        for j in range(cont_cols.shape[0]):
            x = X[r, cont_cols[j]]
            for c in range(k):
                s1[c, j] += R[r, c] * x
                s2[c, j] += R[r, c] * x * x
    for c in range(k):
        for j in range(cont_cols.shape[0]):
            m = s1[c, j] / max(nk[c], 1e-12)
            mu[c, j] = m
            var[c, j] = max(s2[c, j] / max(nk[c], 1e-12) - m * m, min_var[j])
    return logw, logt, mu, var


@njit(cache=True, nogil=True)
def _nb_logpost(codes, disc_cols, X, cont_cols, logw, logt, mu, var, r, lp):
    """Unnormalized log posterior ``lp[c]`` of row ``r``; returns its maximum."""
    mx = -np.inf
    for c in range(logw.shape[0]):
        s = logw[c]
        for j in range(disc_cols.shape[0]):
            s += logt[c, j, codes[r, disc_cols[j]]]
        for j in range(cont_cols.shape[0]):
            t = X[r, cont_cols[j]] - mu[c, j]
            s += -0.5 * (t * t / var[c, j] + np.log(var[c, j]) + 1.8378770664093453)
        lp[c] = s
        if s > mx:  # noqa: PLR1730 (the EM loop's original comparison, NaN-safe alike)
            mx = s
    return mx


@njit(cache=True, nogil=True)
def _nb_em(codes, disc_cols, cards, X, cont_cols, R, alpha, max_iter, tol, min_var):
    """EM of a naive-Bayes mixture from initial responsibilities ``R`` (n x k), in place."""
    n, k = R.shape
    prev = -np.inf
    lp = np.zeros(k)
    for it in range(max_iter):
        logw, logt, mu, var = _nb_mstep(codes, disc_cols, cards, X, cont_cols, R, alpha,
                                        min_var)
        ll = 0.0
        for r in range(n):
            mx = _nb_logpost(codes, disc_cols, X, cont_cols, logw, logt, mu, var, r, lp)
            z = 0.0
            for c in range(k):
                z += np.exp(lp[c] - mx)
            for c in range(k):
                R[r, c] = np.exp(lp[c] - mx) / z
            ll += mx + np.log(z)
        if ll - prev <= tol * abs(ll):
            break
        prev = ll
    return R


@njit(cache=True, nogil=True)
def _nb_assign(codes, disc_cols, X, cont_cols, logw, logt, mu, var):
    """Each row to its most probable component (the first on ties)."""
    lab = np.zeros(codes.shape[0], np.int64)
    lp = np.zeros(logw.shape[0])
    for r in range(codes.shape[0]):
        _nb_logpost(codes, disc_cols, X, cont_cols, logw, logt, mu, var, r, lp)
        best = 0
        for c in range(1, lp.shape[0]):
            if lp[c] > lp[best]:
                best = c
        lab[r] = best
    return lab


def em_naive_bayes(X: np.ndarray, codes: np.ndarray, cards: Sequence[int], k: int, seed=None,
                   *, alpha: float = 1.0, max_iter: int = 20, tol: float = 1e-4,
                   init: np.ndarray | None = None, responsibilities: np.ndarray | None = None,
                   soft: bool = False) -> np.ndarray:
    """EM for a naive-Bayes mixture ``p(x) = Σ_c w_c Π_j p_cj(x_j)``: hard labels (or the
    responsibilities, rows x k, with ``soft``).

    Started from ``responsibilities`` (rows with all zeros take no part in the first M-step),
    else from ``init`` labels, else from 10 rounds of k-means; categorical factors smoothed by
    ``alpha``; stops after ``max_iter`` rounds or a relative log-likelihood gain < ``tol``.
    """
    cards = np.asarray(cards, np.int64)
    n = X.shape[0]
    if responsibilities is not None:
        R = np.array(responsibilities, dtype=np.float64)
    else:
        if init is None:
            init = kmeans(X, codes, cards, k, seed, max_iter=10)
        R = np.zeros((n, k))
        R[np.arange(n), init] = 1.0
    disc = np.flatnonzero(cards > 0)
    cont = np.flatnonzero(cards == 0)
    sd = X[:, cont].std(axis=0) if cont.size else np.zeros(0)
    min_var = np.maximum((1e-3 * sd) ** 2, 1e-12)
    R = _nb_em(np.ascontiguousarray(codes, np.int32), disc.astype(np.int64), cards[disc],
               np.ascontiguousarray(X), cont.astype(np.int64), R, float(alpha), int(max_iter),
               float(tol), min_var)
    return R if soft else np.argmax(R, axis=1)


@dataclass(frozen=True, eq=False)
class ClusterModel:
    """A fitted clustering of rows over some columns (``cards`` as in
    :mod:`spmn.learn.splits`): :meth:`assign` labels any rows, each on its own.

    k-means: centres ``F`` (value frequencies per discrete column, ``FF = Σ_v F²``), ``M``
    (means of the z-scored continuous columns, z-scored by ``zmean``, ``zsd`` of the fitted
    rows), ``cnt`` rows per centre. EM: ``logw``, ``logt``, ``mu``, ``var`` of the mixture.
    """

    method: str
    cards: np.ndarray
    arrays: tuple

    def assign(self, X: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Label of every row: its nearest non-empty centre (k-means) or its most probable
        component (EM), the first on ties."""
        cards = self.cards
        disc = np.flatnonzero(cards > 0).astype(np.int64)
        cont = np.flatnonzero(cards == 0).astype(np.int64)
        C = np.ascontiguousarray(codes, np.int32)
        if self.method == "kmeans":
            F, FF, M, cnt, zmean, zsd = self.arrays
            Z = np.ascontiguousarray((np.asarray(X, np.float64)[:, cont] - zmean) / zsd)
            lab = np.full(C.shape[0], -1, np.int64)
            _assign(C, disc, cards[disc], Z, F, FF, M, cnt, lab)
            return lab
        logw, logt, mu, var = self.arrays
        return _nb_assign(C, disc, np.ascontiguousarray(X, np.float64), cont, logw, logt, mu,
                          var)


def fit_clusters(X: np.ndarray, codes: np.ndarray, cards: Sequence[int], k: int, *,
                 method: str = "kmeans", seed=None, alpha: float = 1.0
                 ) -> tuple[ClusterModel, np.ndarray]:
    """(model, labels of the fitted rows): k-means (:func:`kmeans`) or EM
    (:func:`em_naive_bayes`, hard-assigned) on the rows of ``X`` / ``codes``."""
    rng = as_generator(seed)
    cards = np.asarray(cards, np.int64)
    if method not in ("kmeans", "em"):
        raise ValueError(f"clustering must be 'kmeans' or 'em', got {method!r}")
    disc = np.flatnonzero(cards > 0)
    cont = np.flatnonzero(cards == 0)
    C = np.ascontiguousarray(codes, np.int32)
    if method == "kmeans":
        lab = kmeans(X, C, cards, k, rng)
        Zc = np.asarray(X, np.float64)[:, cont]
        zmean, sd = Zc.mean(axis=0), Zc.std(axis=0)
        zsd = np.where(sd > 0, sd, 1.0)
        Z = np.ascontiguousarray((Zc - zmean) / zsd)
        kmax = int(cards.max(initial=1))
        F, FF, M, cnt = _centres(C, disc, cards[disc], Z, lab, int(k), kmax)
        return ClusterModel("kmeans", cards, (F, FF, M, cnt, zmean, zsd)), lab
    R = em_naive_bayes(X, C, cards, k, rng, alpha=alpha, soft=True)
    sd = np.asarray(X, np.float64)[:, cont].std(axis=0) if cont.size else np.zeros(0)
    min_var = np.maximum((1e-3 * sd) ** 2, 1e-12)
    params = _nb_mstep(C, disc.astype(np.int64), cards[disc], np.ascontiguousarray(X, np.float64),
                       cont.astype(np.int64), R, float(alpha), min_var)
    return ClusterModel("em", cards, params), np.argmax(R, axis=1)


def groups_of(lab: np.ndarray, k: int) -> list[np.ndarray] | None:
    """Row positions of each non-empty label (largest first, then by first row), or None when
    fewer than two are non-empty."""
    groups = [g for g in (np.flatnonzero(lab == c) for c in range(k)) if g.size]
    if len(groups) < 2:
        return None
    return sorted(groups, key=lambda g: (-g.size, int(g[0])))


def cluster_rows(X: np.ndarray, codes: np.ndarray, cards: Sequence[int], k: int = 2, *,
                 method: str = "kmeans", seed=None, alpha: float = 1.0,
                 sample: int | None = None, index: np.ndarray | None = None
                 ) -> list[np.ndarray] | None:
    """Row positions of each non-empty cluster (largest first), or None when fewer than two.

    With ``sample`` and more rows than that, the clustering is fitted on the ``sample`` rows of
    smallest :func:`row_hash` of (a salt drawn from ``seed``, ``index``: the global row indices,
    default ``0..n-1``), and every row is then assigned by the fitted :class:`ClusterModel`.
    """
    rng = as_generator(seed)
    if method not in ("kmeans", "em"):
        raise ValueError(f"clustering must be 'kmeans' or 'em', got {method!r}")
    n = X.shape[0]
    if sample and n > sample:
        salt = int(rng.integers(0, 2 ** 63))
        sub = bottom_k(salt, np.arange(n) if index is None else index, int(sample))
        model, _ = fit_clusters(X[sub], codes[sub], cards, k, method=method, seed=rng,
                                alpha=alpha)
        lab = model.assign(X, codes)
    else:
        _, lab = fit_clusters(X, codes, cards, k, method=method, seed=rng, alpha=alpha)
    return groups_of(lab, k)
