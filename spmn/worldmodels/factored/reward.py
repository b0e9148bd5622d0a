"""Additive expected reward: E[r | s, a] = c + Σ_T f_T(x_T), each term over one or two of the
columns ``X = [s, a]``, fitted by least squares on indicator features.

RDDL rewards are sums over objects, so one tree over all variables generalizes badly (DESIGN.md);
a sum of small terms fits them exactly and answers unseen combinations by adding the terms.
Features: for a single column x, the indicators [x = v] (v >= 1; value 0 is the reference); for
a pair (x, z), the products [x = v][z = w] (v, w >= 1) beside both singles (ANOVA coding, so a
cell the logs never show gets the sum of the singles' effects, its own interaction being 0).

Selection (data-chosen, BIC): starting from the intercept, every single, then every pair,
whose least-squares gain clears BIC, ``n ln(RSS / (RSS - g)) > Δq ln n`` (g = the residual's
between-cell sum of squares over the candidate's cells, Δq its new parameters), is added and
the model refitted, until none clears it or the fit is exact (RSS <= n (1e-9 max(1, |r|))²).
What is approximated: a reward that is not additive over pairs is its least-squares projection
onto the chosen terms (the residual is reported); the reward is modelled as a function of
(s, a) only (a dependence on s' is averaged into it).

Everything the fit reads is :class:`RewardRows`: the distinct (x, r) rows of the logs with
their counts, in a canonical order. They are counted exactly per partition of a dask collection
and merged (:mod:`.dask_fit`), so the fit is the same, bit for bit, for any partitioning. Its
size is the number of distinct (s, a, r) rows: small when the reward is a function of (s, a)
(RDDL), up to the number of rows when it carries continuous noise.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...learn.distributed import DistinctRows, distinct_pairs, row_keys

#: Pairs added per refit at most (largest gains first), and rows per block of the pair scan.
PAIR_BATCH, CHUNK = 16, 4096


@dataclass(eq=False)
class AdditiveReward:
    """``E[r | x] = intercept + Σ_t tables[t][x[cols[t]]]``; ``cells[t]``: logged rows per
    cell of term t (its coverage). ``rss``, ``residual_max``, ``r2``, ``bic``: the fit on the
    logs (n rows)."""

    intercept: float
    cols: list[tuple[int, ...]]
    tables: list[np.ndarray]
    cells: list[np.ndarray]
    n: int
    rss: float = 0.0
    residual_max: float = 0.0
    r2: float = 1.0
    bic: float = 0.0
    dropped: int = field(default=0)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Expected reward of every row of ``X`` (rows x columns, integer codes)."""
        out = np.full(X.shape[0], self.intercept)
        for c, t in zip(self.cols, self.tables):
            out += t[tuple(X[:, j] for j in c)]
        return out

    @property
    def residual_rms(self) -> float:
        return float(np.sqrt(self.rss / max(self.n, 1)))

    def cell_counts(self, X: np.ndarray) -> np.ndarray:
        """Logged rows behind each row's cell of every term (rows x terms)."""
        if not self.cols:
            return np.zeros((X.shape[0], 0), np.int64)
        return np.stack([cl[tuple(X[:, j] for j in c)] for c, cl in zip(self.cols, self.cells)],
                        axis=1)


@dataclass(frozen=True)
class RewardRows:
    """The distinct (x, r) rows of the logs: ``X`` (m x columns, int64 codes), ``r``, ``w``
    (how often each was logged), sorted by x (lexicographic) then r: a canonical order."""

    X: np.ndarray
    r: np.ndarray
    w: np.ndarray

    @staticmethod
    def stat(X: np.ndarray, r: np.ndarray) -> DistinctRows:
        """The mergeable statistic of some rows (``-0.0`` counted as ``0.0``)."""
        X = np.asarray(X, np.int64)
        r = np.asarray(r, np.float64) + 0.0
        if X.shape[0] == 0:
            return DistinctRows.of(np.zeros((0, X.shape[1] + 1), np.int64))
        # distinct x rows first (one sort of their keys), then distinct (x, r) pairs
        _, first, inv = np.unique(row_keys(X), return_index=True, return_inverse=True)
        pairs, counts = distinct_pairs(np.stack([inv.ravel().astype(np.float64), r]))
        rows = np.concatenate([X[first[pairs[0].astype(np.int64)]],
                               pairs[1].view(np.int64)[:, None]], axis=1)
        return DistinctRows(rows, counts)  # any order: merges and from_stat sort it

    @classmethod
    def from_stat(cls, d: DistinctRows) -> RewardRows:
        X = np.ascontiguousarray(d.rows[:, :-1], np.int64)
        r = np.ascontiguousarray(d.rows[:, -1]).view(np.float64)
        order = np.lexsort((r, *X.T[::-1]))
        return cls(X[order], r[order], np.asarray(d.counts, np.int64)[order])

    @classmethod
    def of(cls, X: np.ndarray, r: np.ndarray) -> RewardRows:
        return cls.from_stat(cls.stat(X, r))


def _onehot(X: np.ndarray, off: np.ndarray, width: int) -> np.ndarray:
    Z = np.zeros((X.shape[0], width))
    Z[np.arange(X.shape[0])[:, None], off[None, :] + X] = 1.0
    return Z


class _Design:
    """Columns of the chosen terms, on the distinct x rows of the logs (weighted: exact LS)."""

    def __init__(self, rows: RewardRows, cards: np.ndarray) -> None:
        X = rows.X
        new = np.ones(X.shape[0], bool)
        new[1:] = (X[1:] != X[:-1]).any(axis=1)
        start = np.flatnonzero(new)
        self.inv = np.cumsum(new) - 1  # distinct x of every (x, r) row
        self.U = X[start]
        self.w = np.add.reduceat(rows.w, start).astype(np.float64)
        self.ybar = np.add.reduceat(rows.w * rows.r, start) / self.w
        self.within = float(np.sum(rows.w * (rows.r - self.ybar[self.inv]) ** 2))
        self.cards = cards
        self.singles: list[int] = []
        self.pairs: list[tuple[int, int]] = []

    def columns(self) -> tuple[np.ndarray, list[tuple[tuple[int, ...], list[tuple[int, ...]]]]]:
        U, cards = self.U, self.cards
        cols = [np.ones(U.shape[0])]
        layout = []
        for j in self.singles:
            vals = [(v,) for v in range(1, cards[j])]
            cols += [(U[:, j] == v).astype(float) for (v,) in vals]
            layout.append(((j,), vals))
        for a, b in self.pairs:
            vals = [(v, w) for v in range(1, cards[a]) for w in range(1, cards[b])]
            cols += [((U[:, a] == v) & (U[:, b] == w)).astype(float) for v, w in vals]
            layout.append(((a, b), vals))
        return np.stack(cols, axis=1), layout

    def fit(self):
        D, layout = self.columns()
        sw = np.sqrt(self.w)
        coef, _, rank, _ = np.linalg.lstsq(D * sw[:, None], self.ybar * sw, rcond=None)
        fitted = D @ coef
        rss = self.within + float(np.sum(self.w * (self.ybar - fitted) ** 2))
        return coef, layout, fitted[self.inv], rss, int(rank)


def _gain_singles(X, we, w, off, width):
    """Between-cell sum of squares of the residual over each column's values (``we``: the
    rows' weighted residuals, ``w`` their weights)."""
    s = np.zeros(width)
    c = np.zeros(width)
    np.add.at(s, off[None, :] + X, we[:, None])
    np.add.at(c, off[None, :] + X, w[:, None])
    g = np.where(c > 0, s * s / np.maximum(c, 1.0), 0.0)
    return np.add.reduceat(g, off)


def _gain_pairs(X, we, w, off, width):
    """The same over each pair of columns' cells (width x width block sums)."""
    S = np.zeros((width, width))
    C = np.zeros((width, width))
    for lo in range(0, X.shape[0], CHUNK):
        Z = _onehot(X[lo:lo + CHUNK], off, width)
        S += Z.T @ (Z * we[lo:lo + CHUNK, None])
        C += Z.T @ (Z * w[lo:lo + CHUNK, None])
    G = np.where(C > 0, S * S / np.maximum(C, 1.0), 0.0)
    return np.add.reduceat(np.add.reduceat(G, off, axis=0), off, axis=1)


def fit_additive_reward(X: np.ndarray, r: np.ndarray, cards: np.ndarray,
                        max_terms: int | None = None) -> AdditiveReward:
    """Select terms by BIC and fit them by least squares (module docstring)."""
    return fit_reward_rows(RewardRows.of(X, r), cards, max_terms)


def fit_reward_rows(rows: RewardRows, cards: np.ndarray,
                    max_terms: int | None = None) -> AdditiveReward:
    """:func:`fit_additive_reward` from the distinct (x, r) rows and their counts."""
    X, r, w = rows.X, rows.r, rows.w.astype(np.float64)
    n, p = int(rows.w.sum()), X.shape[1]
    cards = np.asarray(cards, np.int64)
    off = np.r_[0, np.cumsum(cards)[:-1]].astype(np.int64)
    width = int(cards.sum())
    scale = max(1.0, float(np.abs(r).max(initial=0.0)))
    exact = n * (1e-9 * scale) ** 2
    logn = np.log(max(n, 2))
    max_terms = 4 * p if max_terms is None else int(max_terms)
    des = _Design(rows, cards)

    def qualifies(rss, gain, dq):
        return (gain > 1e-12 * rss) & \
            (n * np.log(rss / np.maximum(rss - gain, 1e-30 * rss)) > dq * logn)

    coef, layout, fitted, rss, rank = des.fit()
    # stage 1: single columns
    while rss > exact and len(des.singles) < max_terms:
        gain = _gain_singles(X, w * (r - fitted), w, off, width)
        ok = qualifies(rss, gain, cards - 1.0)
        ok[des.singles] = False
        ok &= cards > 1
        if not ok.any():
            break
        des.singles = sorted(set(des.singles) | set(np.flatnonzero(ok).tolist()))
        coef, layout, fitted, rss, rank = des.fit()
    # stage 2: pairs, largest gains first
    while rss > exact and p > 1 and len(des.singles) + len(des.pairs) < max_terms:
        G = _gain_pairs(X, w * (r - fitted), w, off, width)
        a, b = np.triu_indices(p, 1)
        gain = G[a, b]
        have = set(des.singles)
        dq = ((cards[a] - 1) * (cards[b] - 1) + np.where(np.isin(a, list(have)), 0, cards[a] - 1)
              + np.where(np.isin(b, list(have)), 0, cards[b] - 1)).astype(float)
        ok = qualifies(rss, gain, dq) & (cards[a] > 1) & (cards[b] > 1)
        if des.pairs:
            ok &= ~np.isin(a * p + b, [x * p + z for x, z in des.pairs])
        idx = np.flatnonzero(ok)
        if idx.size == 0:
            break
        idx = idx[np.argsort(-gain[idx], kind="stable")][:PAIR_BATCH]
        new = [(int(a[i]), int(b[i])) for i in idx]
        des.pairs = sorted(set(des.pairs) | set(new))
        des.singles = sorted(set(des.singles) | {j for pr in new for j in pr})
        coef, layout, fitted, rss, rank = des.fit()
    return _terms(des, coef, layout, rows, rss, rank, scale, logn)


def _terms(des, coef, layout, rows: RewardRows, rss, rank, scale, logn) -> AdditiveReward:
    cards = des.cards
    X, r, w = rows.X, rows.r, rows.w
    n = int(w.sum())
    cols, tables, cells = [], [], []
    dropped = 0
    pos = 1
    for c, vals in layout:
        t = np.zeros(tuple(int(cards[j]) for j in c))
        for v in vals:
            t[v] = coef[pos]
            pos += 1
        if np.abs(t).max(initial=0.0) <= 1e-12 * scale:
            dropped += 1  # numerically nothing: kept out of the value diagrams
            continue
        cols.append(tuple(int(j) for j in c))
        tables.append(t)
        cl = np.zeros(t.shape, np.int64)
        np.add.at(cl, tuple(X[:, j] for j in c), w)
        cells.append(cl)
    model = AdditiveReward(float(coef[0]), cols, tables, cells, n, dropped=dropped)
    res = r - model.predict(X)
    model.rss = float(np.sum(w * res * res))
    model.residual_max = float(np.abs(res).max(initial=0.0))
    mean = float(np.sum(w * r)) / max(n, 1)
    tss = float(np.sum(w * (r - mean) ** 2))
    model.r2 = 1.0 - model.rss / tss if tss > 0 else 1.0
    model.bic = float(n * np.log(max(model.rss, 1e-300) / n) + rank * logn)
    return model
