"""Independence tests and row clusterings for structure learning (numba hot loops).

Columns are described by ``card``: ``card[j] > 0`` means column ``j`` holds integer codes
``0..card[j]-1`` (discrete, or a utility with few payoffs coded by :func:`codes_of`);
``card[j] == 0`` means continuous. Tests:

- **G-test** (discrete pairs): ``G = 2 Σ O ln(O n / (r_i c_j))`` against χ² with
  ``(r - 1)(c - 1)`` degrees of freedom over the observed categories; dependent when
  ``p < p_value``.
- **RDC** (any pair): the largest canonical correlation between whitened feature blocks: the
  centred indicators of a discrete column (exact: all functions of it), random Fourier features
  ``sin(ω F(x) + b)`` of the empirical copula ``F(x)`` of a continuous one. All pairs come from
  one matrix product ``QᵀQ``; dependent when ``rdc > threshold``.

Clusterings split the rows of a slice in two or more groups: k-means on one-hot / standardized
features, or EM for a naive-Bayes mixture (categorical and Gaussian factors), hard-assigned.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from numba import njit
from scipy.special import chdtrc

__all__ = ["codes_of", "pair_counts", "g_test_matrix", "rdc_matrix", "dependency_matrix",
           "independent_groups", "kmeans", "em_naive_bayes", "cluster_rows", "as_generator"]

LOG_2PI = math.log(2.0 * math.pi)


def as_generator(seed) -> np.random.Generator:
    """A numpy Generator from an int, None or a Generator (returned as is)."""
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def codes_of(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct sorted values, int32 code of each entry): codes for a column of few values."""
    values, inv = np.unique(x, return_inverse=True)
    return values, inv.astype(np.int32).reshape(-1)


# ---------------------------------------------------------------------------- counting
@njit(cache=True, nogil=True)
def _pair_counts(codes, cards, offsets, out):
    m = codes.shape[1]
    for r in range(codes.shape[0]):
        t = 0
        for a in range(m):
            for b in range(a + 1, m):
                out[offsets[t] + codes[r, a] * cards[b] + codes[r, b]] += 1.0
                t += 1
    return out


def _tables(codes: np.ndarray, cards: Sequence[int]):
    """Flattened contingency tables of every column pair ``a < b`` (one numba pass)."""
    codes = np.ascontiguousarray(codes, dtype=np.int32)
    cards = np.asarray(cards, np.int64)
    a_idx, b_idx = np.triu_indices(codes.shape[1], 1)
    ka, kb = cards[a_idx], cards[b_idx]
    offsets = np.zeros(a_idx.size + 1, np.int64)
    np.cumsum(ka * kb, out=offsets[1:])
    flat = np.zeros(int(offsets[-1]))
    if a_idx.size and codes.shape[0]:
        _pair_counts(codes, cards, offsets, flat)
    return flat, offsets, a_idx, b_idx, ka, kb


def pair_counts(codes: np.ndarray, cards: Sequence[int]) -> dict[tuple[int, int], np.ndarray]:
    """``{(a, b): count matrix (cards[a] x cards[b])}`` for every pair of columns ``a < b``."""
    flat, off, A, B, ka, kb = _tables(codes, cards)
    return {(int(A[t]), int(B[t])): flat[off[t]:off[t + 1]].reshape(ka[t], kb[t])
            for t in range(A.size)}


@njit(cache=True, nogil=True)
def _g_stats(flat, offsets, ka, kb):
    """G statistic and degrees of freedom of every flattened contingency table."""
    t_n = ka.shape[0]
    G = np.zeros(t_n)
    dof = np.zeros(t_n)
    for t in range(t_n):
        a, b = ka[t], kb[t]
        base = offsets[t]
        rs = np.zeros(a)
        cs = np.zeros(b)
        for i in range(a):
            for j in range(b):
                o = flat[base + i * b + j]
                rs[i] += o
                cs[j] += o
        n = 0.0
        ra = 0
        cb = 0
        for i in range(a):
            n += rs[i]
            if rs[i] > 0:
                ra += 1
        for j in range(b):
            if cs[j] > 0:
                cb += 1
        dof[t] = (ra - 1) * (cb - 1)
        g = 0.0
        for i in range(a):
            for j in range(b):
                o = flat[base + i * b + j]
                if o > 0:
                    g += o * np.log(o * n / (rs[i] * cs[j]))
        G[t] = max(2.0 * g, 0.0)
    return G, dof


def g_stats_matrix(codes: np.ndarray, cards: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(G statistic, degrees of freedom) of every pair of columns of ``codes`` (symmetric)."""
    m = codes.shape[1]
    G, dof = np.zeros((m, m)), np.zeros((m, m))
    flat, offsets, a_idx, b_idx, ka, kb = _tables(codes, cards)
    if a_idx.size and codes.shape[0]:
        g, d = _g_stats(flat, offsets, ka, kb)
        G[a_idx, b_idx] = G[b_idx, a_idx] = g
        dof[a_idx, b_idx] = dof[b_idx, a_idx] = d
    return G, dof


def g_test_matrix(codes: np.ndarray, cards: Sequence[int],
                  strata: np.ndarray | None = None) -> np.ndarray:
    """Symmetric matrix of G-test p-values between the columns of ``codes`` (1 on the diagonal).

    With ``strata`` (a code per row) the test is conditional: ``G = Σ_s G_s`` against χ² with
    ``Σ_s dof_s`` degrees of freedom (independence within every stratum).
    """
    m = codes.shape[1]
    if strata is None:
        G, dof = g_stats_matrix(codes, cards)
    else:
        G, dof = np.zeros((m, m)), np.zeros((m, m))
        for s_val in np.unique(strata):
            g, d = g_stats_matrix(codes[strata == s_val], cards)
            G += g
            dof += d
    P = np.where(dof > 0, chdtrc(np.maximum(dof, 1.0), G), 1.0)
    np.fill_diagonal(P, 1.0)
    return P


# ---------------------------------------------------------------------------- RDC
def _ecdf(x: np.ndarray) -> np.ndarray:
    """Empirical copula: mid-ranks / n, ties share their average rank."""
    n = x.shape[0]
    order = np.argsort(x, kind="stable")
    xs = x[order]
    starts = np.r_[0, np.flatnonzero(np.diff(xs)) + 1]
    ends = np.r_[starts[1:], n]
    mid = (starts + ends + 1) / 2.0
    ranks = np.empty(n)
    ranks[order] = np.repeat(mid, ends - starts)
    return ranks / n


def _whiten(Z: np.ndarray, rel_tol: float = 1e-8) -> np.ndarray:
    """Orthonormal basis of the centred columns of ``Z``: ``Q = Zc V Λ^{-1/2}``, ``QᵀQ = I``."""
    Zc = Z - Z.mean(axis=0)
    C = Zc.T @ Zc
    lam, V = np.linalg.eigh(C)
    top = lam[-1] if lam.size else 0.0
    keep = lam > max(top * rel_tol, 1e-12)
    if not keep.any():
        return np.zeros((Z.shape[0], 0))
    return Zc @ (V[:, keep] / np.sqrt(lam[keep]))


def _features(x: np.ndarray, card: int, k: int, rng: np.random.Generator, s: float) -> np.ndarray:
    if card > 0:
        return _whiten(np.eye(card)[x.astype(np.int64)])
    u = _ecdf(x)
    omega = rng.normal(0.0, s, k)
    b = rng.uniform(0.0, 2.0 * np.pi, k)
    return _whiten(np.sin(np.outer(u, omega) + b), 1e-4)  # drop ill-conditioned directions


def rdc_matrix(X: np.ndarray, cards: Sequence[int], *, codes: np.ndarray | None = None,
               k: int = 10, s: float = 2.0 * np.pi, seed=None,
               strata: np.ndarray | None = None) -> np.ndarray:
    """Randomized dependence coefficients of every pair of columns of ``X`` (rows x m).

    ``rdc(a, b) = σ_max(Q_aᵀ Q_b)`` with ``Q`` the whitened feature blocks (module docstring);
    discrete columns use ``codes`` (default: ``X`` itself), continuous ones ``k`` random
    features with frequencies ``ω ~ N(0, s²)``. With ``strata`` (a code per row): the largest
    RDC over the strata of at least ``2k`` rows (dependence within some stratum).
    """
    rng = as_generator(seed)
    m = X.shape[1]
    if strata is not None:
        R = np.zeros((m, m))
        for s_val in np.unique(strata):
            rows = strata == s_val
            if rows.sum() >= 2 * k:
                R = np.maximum(R, rdc_matrix(X[rows], cards, k=k, s=s, seed=rng,
                                             codes=None if codes is None else codes[rows]))
        np.fill_diagonal(R, 1.0)
        return R
    cols = [codes[:, j] if codes is not None and cards[j] > 0 else X[:, j] for j in range(m)]
    blocks = [_features(cols[j], int(cards[j]), k, rng, s) for j in range(m)]
    widths = [b.shape[1] for b in blocks]
    Q = np.concatenate(blocks, axis=1) if sum(widths) else np.zeros((X.shape[0], 0))
    G = Q.T @ Q
    off = np.r_[0, np.cumsum(widths)]
    R = np.eye(m)
    for a in range(m):
        for b in range(a + 1, m):
            if widths[a] == 0 or widths[b] == 0:
                R[a, b] = R[b, a] = 0.0
                continue
            blk = G[off[a]:off[a + 1], off[b]:off[b + 1]]
            R[a, b] = R[b, a] = min(1.0, float(np.linalg.norm(blk, 2)))
    return R


def dependency_matrix(X: np.ndarray, codes: np.ndarray, cards: Sequence[int], *,
                      method: str = "auto", threshold: float = 0.3, p_value: float = 1e-3,
                      rdc_features: int = 10, seed=None,
                      strata: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(dependent?, strength) for every pair of the slice's columns.

    ``method``: ``"gtest"`` (discrete columns only), ``"rdc"``, or ``"auto"`` (G-test for pairs
    of discrete columns, RDC for pairs with a continuous one). Strength is ``1 - p`` for G-test
    pairs and the RDC otherwise (used to rank split variables). ``strata`` (a code per row)
    makes both tests conditional on it: dependence within some group of rows.
    """
    cards = np.asarray(cards, np.int64)
    m = X.shape[1]
    disc = cards > 0
    if method not in ("auto", "gtest", "rdc"):
        raise ValueError(f"independence test must be 'auto', 'gtest' or 'rdc', got {method!r}")
    if method == "gtest" and not disc.all():
        raise ValueError("the G-test needs discrete columns; use 'rdc' or 'auto' for mixed data")
    dep = np.zeros((m, m), bool)
    strength = np.zeros((m, m))
    use_g = disc[:, None] & disc[None, :] if method != "rdc" else np.zeros((m, m), bool)
    if use_g.any():
        idx = np.flatnonzero(disc)
        P = g_test_matrix(codes[:, idx], cards[idx], strata)
        sub = np.ix_(idx, idx)
        dep[sub] = P < p_value
        strength[sub] = 1.0 - P
    if (~use_g).any():
        R = rdc_matrix(X, cards, codes=codes, k=rdc_features, seed=seed, strata=strata)
        dep = np.where(use_g, dep, R > threshold)
        strength = np.where(use_g, strength, R)
    np.fill_diagonal(dep, False)
    return dep, strength


def independent_groups(dep: np.ndarray, glue: Sequence[int] = ()) -> list[np.ndarray]:
    """Connected components of the dependency graph (positions), ``glue`` forced together.

    Sorted by smallest member, so the result does not depend on how the graph was scanned.
    """
    m = dep.shape[0]
    adj = dep | dep.T
    glue = list(glue)
    for a, b in zip(glue[:-1], glue[1:]):
        adj[a, b] = adj[b, a] = True
    label = np.full(m, -1, np.int64)
    groups = []
    for s in range(m):
        if label[s] >= 0:
            continue
        label[s] = len(groups)
        todo, members = [s], [s]
        while todo:
            u = todo.pop()
            for v in np.flatnonzero(adj[u] & (label < 0)):
                label[v] = label[s]
                todo.append(int(v))
                members.append(int(v))
        groups.append(np.array(sorted(members), np.int64))
    return groups


# ---------------------------------------------------------------------------- clustering
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
def _nb_em(codes, disc_cols, cards, X, cont_cols, R, alpha, max_iter, tol, min_var):
    """EM of a naive-Bayes mixture from initial responsibilities ``R`` (n x k), in place."""
    n, k = R.shape
    kmax = 1
    for j in range(disc_cols.shape[0]):
        kmax = max(kmax, cards[j])
    logt = np.zeros((k, disc_cols.shape[0], kmax))
    mu = np.zeros((k, cont_cols.shape[0]))
    var = np.ones((k, cont_cols.shape[0]))
    logw = np.zeros(k)
    prev = -np.inf
    for it in range(max_iter):
        # M-step
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
        # E-step
        ll = 0.0
        lp = np.zeros(k)
        for r in range(n):
            mx = -np.inf
            for c in range(k):
                s = logw[c]
                for j in range(disc_cols.shape[0]):
                    s += logt[c, j, codes[r, disc_cols[j]]]
                for j in range(cont_cols.shape[0]):
                    t = X[r, cont_cols[j]] - mu[c, j]
                    s += -0.5 * (t * t / var[c, j] + np.log(var[c, j]) + 1.8378770664093453)
                lp[c] = s
                if s > mx:
                    mx = s
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


def cluster_rows(X: np.ndarray, codes: np.ndarray, cards: Sequence[int], k: int = 2, *,
                 method: str = "kmeans", seed=None, alpha: float = 1.0,
                 sample: int | None = None) -> list[np.ndarray] | None:
    """Row positions of each non-empty cluster (largest first), or None when fewer than two.

    With ``sample`` and more rows than that, the clustering is fitted on a random subset of
    ``sample`` rows and every row is then assigned: to the nearest centre (k-means) or by the
    mixture's posterior (EM).
    """
    rng = as_generator(seed)
    cards = np.asarray(cards, np.int64)
    if method not in ("kmeans", "em"):
        raise ValueError(f"clustering must be 'kmeans' or 'em', got {method!r}")
    n = X.shape[0]
    sub = np.sort(rng.choice(n, sample, replace=False)) if sample and n > sample else None
    Xs, Cs = (X, codes) if sub is None else (X[sub], codes[sub])
    if method == "kmeans":
        lab = kmeans(Xs, Cs, cards, k, rng)
        if sub is not None:
            full = np.full(n, -1, np.int64)
            full[sub] = lab
            disc = np.flatnonzero(cards > 0)
            C, Z = np.ascontiguousarray(codes, np.int32), _standardized(X, cards)
            kmax = int(cards.max(initial=1))
            F, FF, M, cnt = _centres(C, disc, cards[disc], Z, full, int(k), kmax)
            lab = np.full(n, -1, np.int64)
            _assign(C, disc, cards[disc], Z, F, FF, M, cnt, lab)
    else:
        R = em_naive_bayes(Xs, Cs, cards, k, rng, alpha=alpha, soft=True)
        if sub is not None:
            full = np.zeros((n, k))
            full[sub] = R
            R = em_naive_bayes(X, codes, cards, k, rng, alpha=alpha, soft=True, max_iter=1,
                               responsibilities=full)
        lab = np.argmax(R, axis=1)
    groups = [np.flatnonzero(lab == c) for c in range(k)]
    groups = [g for g in groups if g.size]
    if len(groups) < 2:
        return None
    return sorted(groups, key=lambda g: (-g.size, int(g[0])))
