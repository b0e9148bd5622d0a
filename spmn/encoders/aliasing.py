"""Aliasing found from the dynamics, and codes split by it (the bisimulation view).

A code that holds frames of two states shows it in the logged transitions: its frames fall into
groups whose next codes (or episode ends, or rewards) differ. For each code with enough rows,
candidate splits of its frames (in a feature space of the frames) are tested with a G-test of
split side x outcome, stratified by action: ``G = 2 Σ O ln(O / E)``, χ² with
``Σ_a (sides_a − 1)(outcomes_a − 1)`` degrees of freedom, Bonferroni-corrected over candidates
and codes. Candidates: the split of the frames along their top principal direction at its
1-D 2-means cut (chosen without the outcomes, so tested on every row), and, per action, the
direction between the mean frames of its two most frequent outcomes (chosen on one random half
of the rows, tested on the other, so the test stays valid). Outcomes seen fewer than 5 times in
a (code, action) cell are pooled into one.

:func:`refine` applies the significant splits, which changes what "next code" means, and tests
again until nothing fires (or ``max_splits``): a data-driven bisimulation refinement of the
codes. :func:`apply_splits` repeats the splits on new frames.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import chdtrc

RARE = 5


@dataclass
class Finding:
    """One aliased code: the best split of its frames and its test figures."""

    code: int
    G: float
    df: int
    p: float            # χ² p-value of the best candidate
    p_adjusted: float   # Bonferroni over the candidates and the tested codes
    rows: int           # transitions out of the code
    sides: tuple[int, int]
    direction: np.ndarray
    threshold: float

    def to_dict(self) -> dict:
        return {"code": self.code, "G": round(self.G, 3), "df": self.df, "p": self.p,
                "p_adjusted": self.p_adjusted, "rows": self.rows, "sides": list(self.sides)}


def outcomes(zn: np.ndarray, term: np.ndarray, rclass: np.ndarray) -> np.ndarray:
    """One outcome id per transition: (next code, episode end, reward class)."""
    key = np.stack([np.asarray(zn, np.int64), np.asarray(term, np.int64),
                    np.asarray(rclass, np.int64)], 1)
    return np.unique(key, axis=0, return_inverse=True)[1].reshape(-1)


def g_test(side: np.ndarray, a: np.ndarray, y: np.ndarray) -> tuple[float, int]:
    """G and degrees of freedom of side x outcome, summed over actions (rare outcomes pooled)."""
    G, df = 0.0, 0
    for act in np.unique(a):
        m = a == act
        s, o = side[m], y[m]
        _, inv, cnt = np.unique(o, return_inverse=True, return_counts=True)
        inv = np.where(cnt[inv] < RARE, -1, inv)          # pool rare outcomes
        _, inv = np.unique(inv, return_inverse=True)
        T = np.zeros((2, int(inv.max()) + 1))
        np.add.at(T, (s.astype(np.int64), inv), 1.0)
        T = T[T.sum(1) > 0][:, T.sum(0) > 0]
        if T.shape[0] < 2 or T.shape[1] < 2:
            continue
        E = T.sum(1, keepdims=True) * T.sum(0, keepdims=True) / T.sum()
        with np.errstate(divide="ignore", invalid="ignore"):
            G += 2.0 * float(np.where(T > 0, T * np.log(T / E), 0.0).sum())
        df += (T.shape[0] - 1) * (T.shape[1] - 1)
    return G, df


def top_direction(F: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unit top principal direction of the rows of F (eigh when narrow, power iteration else)."""
    X = F - F.mean(0)
    if X.shape[1] <= 256:
        _, V = np.linalg.eigh(X.T @ X)
        return V[:, -1]
    v = rng.normal(size=X.shape[1])
    for _ in range(30):
        v = X.T @ (X @ v)
        nv = np.linalg.norm(v)
        if nv == 0:
            break
        v /= nv
    return v


def two_means_cut(p: np.ndarray) -> float:
    """Threshold of the best 1-D 2-means split of the values p (least within-group squares)."""
    q = np.sort(p)
    n = q.size
    c1 = np.cumsum(q)
    c2 = np.cumsum(q ** 2)
    i = np.arange(1, n)
    left = c2[:-1] - c1[:-1] ** 2 / i
    right = (c2[-1] - c2[:-1]) - (c1[-1] - c1[:-1]) ** 2 / (n - i)
    j = int(np.argmin(left + right))
    return float(0.5 * (q[j] + q[j + 1]))


def _candidates(F: np.ndarray, a: np.ndarray, y: np.ndarray, rng: np.random.Generator,
                min_count: int, u: np.ndarray | None = None):
    """(direction, threshold, rows to test on) for one code's rows (``u``: its top principal
    direction when already known)."""
    out = []
    u = top_direction(F, rng) if u is None else u
    out.append((u, two_means_cut(F @ u), np.ones(F.shape[0], bool)))
    half = rng.random(F.shape[0]) < 0.5
    for act in np.unique(a[half]):
        m = half & (a == act)
        if m.sum() < min_count:
            continue
        vals, cnt = np.unique(y[m], return_counts=True)
        if vals.size < 2:
            continue
        o1, o2 = vals[np.argsort(-cnt, kind="stable")[:2]]
        d = F[m & (y == o1)].mean(0) - F[m & (y == o2)].mean(0)
        nd = np.linalg.norm(d)
        if nd == 0:
            continue
        d /= nd
        t = 0.5 * float(F[m & (y == o1)].mean(0) @ d + F[m & (y == o2)].mean(0) @ d)
        out.append((d, t, ~half))
    return out


def find_aliasing(F: np.ndarray, z: np.ndarray, a: np.ndarray, y: np.ndarray,
                  alpha: float = 1e-3, min_count: int = 20,
                  seed: int | np.random.Generator | None = 0,
                  cache: dict | None = None) -> list[Finding]:
    """Codes whose frames split into groups with different outcomes, most significant first.

    ``F`` (n, d): features of the frames the transitions start from; ``z`` their codes, ``a``
    the actions, ``y`` the outcomes (:func:`outcomes`). Codes with fewer than ``2 min_count``
    rows are not tested. A code is reported when its best candidate's Bonferroni-adjusted
    p-value is below ``alpha``. ``cache`` keeps each code's top principal direction between
    calls on the same features (refinement rounds), keyed by the code's rows.
    """
    rng = np.random.default_rng(seed) if not isinstance(seed, np.random.Generator) else seed
    z = np.asarray(z, np.int64)
    codes, cnt = np.unique(z, return_counts=True)
    tested = codes[cnt >= 2 * max(int(min_count), 1)]
    raw = []
    n_tests = 0
    for c in tested:
        rows = np.flatnonzero(z == c)
        Fc, ac, yc = F[rows], a[rows], y[rows]
        best = None
        key = (int(c), rows.size, int(rows[0]), int(rows[-1]), int(rows.sum()))
        u = None if cache is None else cache.get(key)
        if u is None:
            u = top_direction(Fc, rng)
            if cache is not None:
                cache[key] = u
        cands = _candidates(Fc, ac, yc, rng, int(min_count), u)
        n_tests += len(cands)
        for u, t, test in cands:
            side = (Fc @ u > t)
            if min(int(side[test].sum()), int((~side[test]).sum())) < RARE:
                continue
            G, df = g_test(side[test], ac[test], yc[test])
            if df == 0:
                continue
            p = float(chdtrc(df, G))
            if best is None or p < best[0] or (p == best[0] and G / df > best[1] / best[2]):
                best = (p, G, df, u, t, int(side.sum()))
        if best is not None:
            raw.append((int(c), rows.size, len(cands), best))
    found = []
    for c, n_rows, n_c, (p, G, df, u, t, hi) in raw:
        p_adj = min(1.0, p * max(n_tests, 1))
        if p_adj < alpha:
            found.append(Finding(c, G, df, p, p_adj, n_rows, (n_rows - hi, hi), u, t))
    found.sort(key=lambda f: (f.p, -f.G))
    return found


@dataclass
class Splits:
    """Refinement splits as arrays, applied in order: rows with code ``parent[i]`` whose
    features project above ``threshold[i]`` on ``direction[i]`` get code ``child[i]``."""

    parent: np.ndarray      # (m,) int64
    child: np.ndarray       # (m,) int64
    threshold: np.ndarray   # (m,) float64
    direction: np.ndarray   # (m, d) float64

    @classmethod
    def empty(cls, d: int) -> "Splits":
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros((0, d)))

    def __len__(self) -> int:
        return int(self.parent.size)


def apply_splits(z: np.ndarray, F: np.ndarray, splits: Splits) -> np.ndarray:
    """Codes after the refinement splits (a copy)."""
    z = np.array(z, np.int64, copy=True)
    for i in range(len(splits)):
        m = (z == splits.parent[i]) & (F @ splits.direction[i] > splits.threshold[i])
        z[m] = splits.child[i]
    return z


def refine(F: np.ndarray, Fn: np.ndarray, z: np.ndarray, zn: np.ndarray, a: np.ndarray,
           term: np.ndarray, rclass: np.ndarray, k: int, alpha: float = 1e-3,
           min_count: int = 20, max_splits: int = 64,
           seed: int | np.random.Generator | None = 0) -> tuple[Splits, list[Finding]]:
    """Split aliased codes until :func:`find_aliasing` finds none (or ``max_splits``).

    ``F``/``Fn``: features of the frames and next frames; ``z``/``zn`` their codes (k values).
    Returns the splits (new codes k, k+1, ...) and the findings of the first test.
    """
    rng = np.random.default_rng(seed) if not isinstance(seed, np.random.Generator) else seed
    z, zn = np.asarray(z, np.int64), np.asarray(zn, np.int64)
    parent, child, thr, dirs = [], [], [], []
    first: list[Finding] | None = None
    nxt = int(k)
    cache: dict = {}
    while len(parent) < max_splits:
        found = find_aliasing(F, z, a, outcomes(zn, term, rclass), alpha, min_count, rng, cache)
        if first is None:
            first = found
        if not found:
            break
        for f in found[: max_splits - len(parent)]:
            z = np.where((z == f.code) & (F @ f.direction > f.threshold), nxt, z)
            zn = np.where((zn == f.code) & (Fn @ f.direction > f.threshold), nxt, zn)
            parent.append(f.code)
            child.append(nxt)
            thr.append(f.threshold)
            dirs.append(f.direction)
            nxt += 1
    d = F.shape[1]
    sp = Splits(np.array(parent, np.int64), np.array(child, np.int64), np.array(thr, np.float64),
                np.array(dirs, np.float64).reshape(-1, d))
    return sp, first or []
