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

Clusterings (k-means, EM for a naive-Bayes mixture) live in :mod:`spmn.learn.clusters` and are
re-exported here.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from numba import njit
from scipy.special import chdtrc

from .clusters import as_generator, cluster_rows, em_naive_bayes, kmeans  # re-exported

__all__ = ["codes_of", "pair_counts", "g_test_matrix", "g_test_from_tables", "rdc_matrix",
           "dependency_matrix", "dependency_from_pvalues", "independent_groups", "kmeans",
           "em_naive_bayes", "cluster_rows", "as_generator"]

LOG_2PI = math.log(2.0 * math.pi)


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
        return g_test_from_tables([_tables(codes, cards)[0]] if codes.shape[0] else [], cards, m)
    flats = [_tables(codes[strata == s_val], cards)[0] for s_val in np.unique(strata)]
    return g_test_from_tables(flats, cards, m)


def g_test_from_tables(flats: Sequence[np.ndarray], cards: Sequence[int], m: int) -> np.ndarray:
    """:func:`g_test_matrix` from the flattened pair-count tables (the layout of
    :func:`pair_counts`: pairs ``a < b`` in order, ``cards[a] x cards[b]`` each) of every
    non-empty stratum, in stratum order: what a dask fit merges from its partitions."""
    cards = np.asarray(cards, np.int64)
    G, dof = np.zeros((m, m)), np.zeros((m, m))
    a_idx, b_idx = np.triu_indices(m, 1)
    if a_idx.size:
        ka, kb = cards[a_idx], cards[b_idx]
        offsets = np.zeros(a_idx.size + 1, np.int64)
        np.cumsum(ka * kb, out=offsets[1:])
        for flat in flats:
            g, d = _g_stats(np.asarray(flat, np.float64), offsets, ka, kb)
            G[a_idx, b_idx] += g
            dof[a_idx, b_idx] += d
        G[b_idx, a_idx] = G[a_idx, b_idx]
        dof[b_idx, a_idx] = dof[a_idx, b_idx]
    P = np.where(dof > 0, chdtrc(np.maximum(dof, 1.0), G), 1.0)
    np.fill_diagonal(P, 1.0)
    return P


def dependency_from_pvalues(P: np.ndarray, p_value: float) -> tuple[np.ndarray, np.ndarray]:
    """(dependent?, strength) of :func:`dependency_matrix` when every column is discrete and
    tested by the G-test: ``P < p_value`` and ``1 - P``, the diagonal not dependent."""
    dep = P < p_value
    np.fill_diagonal(dep, False)
    return dep, 1.0 - P


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
