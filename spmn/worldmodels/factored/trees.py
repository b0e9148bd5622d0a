"""Conditional trees p(y | parents) of the factored world model, grown by G-tests.

One tree per next-state variable (and one for the episode end) over the columns ``X = [s, a]``
(state then action variables, integer codes). The split rule, in one sentence:

    Split a node on the candidate x with the smallest G-test p-value (G = 2 Σ O ln(O/E) over its
    (x-group, y) counts, df = (groups - 1)(observed y values - 1)) when p < α/m, m = the number
    of candidate splits at the node (Bonferroni), α = ``split_p`` or, when None, the strictest
    grid α whose held-out log-likelihood is within one standard error of the best
    (:func:`choose_alpha`).

Never impurity: a split must be statistically significant after correcting for the number of
variables tried. A candidate is a column not split on above, with at least two values seen
``min_samples_leaf`` times at the node; values seen fewer times, or never, follow the most
frequent value's branch (that is how a tree answers parent values the logs never show). Leaves
hold counts, so a leaf is never empty: ``p(y = v) = (c_v + λ) / (n + k λ)`` with ``λ`` the
smoothing. Trees at a stricter α are the trees at a looser one pruned where ``m·p >= α`` (the
best candidate does not depend on α), which makes choosing α by held-out likelihood cheap.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from numba import njit
from scipy.special import chdtrc

from ...learn.splits import _g_stats

#: Significance levels tried when ``split_p`` is None (Bonferroni-corrected at each node).
ALPHA_GRID = (0.2, 0.05, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-8, 1e-10, 1e-12)
#: Share of the rows held out to choose α, and the fewest rows for which it is done.
HOLDOUT, MIN_HOLDOUT_ROWS = 0.2, 200
#: α used when the logs are too few to hold some out.
SMALL_DATA_ALPHA = 1e-3
#: Pseudo-count of the held-out log-likelihood only (so that a value unseen in a leaf scores).
SCORE_PSEUDOCOUNT = 0.5


@dataclass(eq=False)
class ConditionalTree:
    """A grown tree: ``var[n]`` (column split on, -1 at a leaf), ``child[n, v]`` (node for value
    v), ``counts[n]`` (y counts of the rows through node n), ``crit[n]`` (m·p of its split,
    inf at a leaf: the split is kept at α iff crit < α), ``k`` (values of y)."""

    var: np.ndarray
    child: np.ndarray
    counts: np.ndarray
    crit: np.ndarray
    k: int

    @property
    def n_nodes(self) -> int:
        return int(self.var.shape[0])

    @property
    def leaves(self) -> np.ndarray:
        return np.flatnonzero(self.var < 0)

    @property
    def parents(self) -> list[int]:
        """Columns the tree splits on (sorted): the parents of its variable."""
        return sorted(set(self.var[self.var >= 0].tolist()))

    def probs(self, smoothing: float = 0.0) -> np.ndarray:
        """``p(y = v | node)`` for every node (nodes x k), the documented smoothing added."""
        c = self.counts + float(smoothing)
        return c / c.sum(axis=1, keepdims=True)

    def route(self, X: np.ndarray, alpha: float = np.inf) -> np.ndarray:
        """Node reached by every row of ``X`` (rows x columns), following only splits with
        crit < alpha (all of them by default)."""
        node = np.zeros(X.shape[0], np.int64)
        while True:
            v = self.var[node]
            inner = (v >= 0) & (self.crit[node] < alpha)
            if not inner.any():
                return node
            idx = np.flatnonzero(inner)
            node[idx] = self.child[node[idx], X[idx, v[idx]]]

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"var": self.var, "child": self.child, "counts": self.counts,
                "crit": np.where(np.isfinite(self.crit), self.crit, -1.0)}

    @classmethod
    def from_arrays(cls, d: dict[str, np.ndarray], k: int) -> "ConditionalTree":
        crit = np.asarray(d["crit"], np.float64)
        return cls(np.asarray(d["var"], np.int64), np.asarray(d["child"], np.int64),
                   np.asarray(d["counts"], np.float64), np.where(crit < 0, np.inf, crit), int(k))


@njit(cache=True, nogil=True)
def _node_tables(X, y, rows, k, kmax, used, min_leaf):
    """(x, y) counts of every column over the node's rows, values seen fewer than
    ``min_leaf`` times merged into the most frequent one; whether the column is a candidate
    (unused, two or more values kept), its most frequent value and its kept values."""
    p = X.shape[1]
    T = np.zeros((p, kmax, k))
    for i in range(rows.shape[0]):
        r = rows[i]
        yr = y[r]
        for j in range(p):
            T[j, X[r, j], yr] += 1.0
    ok = np.zeros(p, np.bool_)
    top = np.zeros(p, np.int64)
    keep = np.zeros((p, kmax), np.bool_)
    tot = np.zeros(kmax)
    for j in range(p):
        best, t = -1.0, 0
        for v in range(kmax):
            s = 0.0
            for c in range(k):
                s += T[j, v, c]
            tot[v] = s
            if s > best:
                best, t = s, v
        top[j] = t
        groups = 0
        for v in range(kmax):
            if tot[v] >= min_leaf:
                keep[j, v] = True
                groups += 1
            elif tot[v] > 0:
                for c in range(k):
                    T[j, t, c] += T[j, v, c]
                    T[j, v, c] = 0.0
        ok[j] = groups >= 2 and not used[j]
    return T, ok, top, keep


def _best_split(X: np.ndarray, y: np.ndarray, rows: np.ndarray, k: int, kmax: int,
                used: np.ndarray, min_leaf: int):
    """(column, crit = m·p, kept values, most frequent value) of the node's best candidate,
    or None when no column is a candidate."""
    T, ok, top, keep = _node_tables(X, y, rows, k, kmax, used, min_leaf)
    p = T.shape[0]
    G, df = _g_stats(T.reshape(-1), np.arange(p + 1, dtype=np.int64) * (kmax * k),
                     np.full(p, kmax, np.int64), np.full(p, k, np.int64))
    cand = np.flatnonzero(ok & (df > 0))
    if cand.size == 0:
        return None
    G, df = G[cand], df[cand]
    # the smallest p within one df is the largest G (first column on ties): p for those only
    reps = np.array([np.flatnonzero(df == f)[np.argmax(G[df == f])] for f in np.unique(df)])
    pval = chdtrc(df[reps], G[reps])
    b = int(reps[np.lexsort((cand[reps], -G[reps] / df[reps], pval))[0]])
    j = int(cand[b])
    return j, float(chdtrc(df[b], G[b])) * cand.size, np.flatnonzero(keep[j]), int(top[j])


def grow(X: np.ndarray, y: np.ndarray, k: int, cards: np.ndarray, rows: np.ndarray, *,
         alpha: float, min_samples_leaf: int = 5, max_depth: int | None = None
         ) -> ConditionalTree:
    """Grow the conditional tree of ``y`` (codes 0..k-1) on ``X[rows]`` at level ``alpha``
    (module docstring). ``rows`` must not be empty."""
    kmax = int(max(int(cards.max(initial=1)), 1))
    min_leaf = max(int(min_samples_leaf), 1)
    var: list[int] = []
    child: list[np.ndarray] = []
    counts: list[np.ndarray] = []
    crit: list[float] = []

    def new(r: np.ndarray) -> int:
        var.append(-1)
        child.append(np.zeros(kmax, np.int64))
        counts.append(np.bincount(y[r], minlength=k).astype(np.float64))
        crit.append(np.inf)
        return len(var) - 1

    todo = [(new(rows), rows, 0, np.zeros(X.shape[1], np.bool_))]
    while todo:
        node, r, depth, used = todo.pop(0)
        if (counts[node] > 0).sum() < 2 or r.size < 2 * min_leaf or \
                (max_depth is not None and depth >= max_depth):
            continue
        best = _best_split(X, y, r, k, kmax, used, min_leaf)
        if best is None or not best[1] < alpha:
            continue
        j, c, seen, top = best
        rep = np.full(kmax, top, np.int64)  # value -> the branch it follows
        rep[seen] = seen
        g = rep[X[r, j]]
        var[node], crit[node] = j, c
        kids = {int(v): (new(r[g == v]), r[g == v]) for v in seen}
        child[node][:] = kids[top][0]
        for v, (n, rv) in kids.items():
            child[node][v] = n
            sub = used.copy()
            sub[j] = True
            todo.append((n, rv, depth + 1, sub))
    return ConditionalTree(np.array(var, np.int64), np.array(child, np.int64),
                           np.array(counts), np.array(crit), int(k))


def holdout_loglik(tree: ConditionalTree, X: np.ndarray, y: np.ndarray, alpha: float
                   ) -> np.ndarray:
    """Per-row held-out log-likelihood of ``y`` under ``tree`` pruned at ``alpha``
    (pseudo-count :data:`SCORE_PSEUDOCOUNT`)."""
    node = tree.route(X, alpha)
    c = tree.counts[node]
    num = c[np.arange(y.size), y] + SCORE_PSEUDOCOUNT
    return np.log(num / (c.sum(axis=1) + SCORE_PSEUDOCOUNT * tree.k))


def choose_alpha(ll: np.ndarray) -> tuple[int, np.ndarray]:
    """Index into :data:`ALPHA_GRID` by the one-standard-error rule on held-out rows
    (``ll``: grid x rows): the smallest α whose total is within one standard error (of its
    row-wise difference to the best) of the best total; and the totals."""
    total = ll.sum(axis=1)
    best = int(np.argmax(total))
    diff = ll[best][None, :] - ll
    se = np.sqrt(ll.shape[1]) * diff.std(axis=1)
    ok = np.flatnonzero(total[best] - total <= se + 1e-9 * max(1.0, abs(total[best])))
    return int(ok.max()), total


def fit_trees(X: np.ndarray, targets: Sequence[tuple[np.ndarray, int, np.ndarray]],
              cards: np.ndarray, *, split_p: float | None, min_samples_leaf: int,
              max_depth: int | None, seed=None, progress: Callable[[], None] | None = None
              ) -> tuple[list[ConditionalTree], float, dict[float, float]]:
    """Trees for every ``(y, k, rows)`` target, α, and the held-out score of each grid α.

    With ``split_p=None`` the rows are split once (a permutation drawn from ``seed``; seed None
    draws a fixed one, so fits repeat) into 80% to grow at the loosest α and 20% to score
    every α of :data:`ALPHA_GRID` summed over all targets; :func:`choose_alpha` picks one
    (the one-standard-error rule: the strictest α as good as the best within noise), and
    the final trees grow on every row."""
    top = int(np.max(cards, initial=1))
    X = np.ascontiguousarray(X, np.int8 if top <= 127 else (np.int16 if top <= 32767 else np.int32))
    kw = dict(min_samples_leaf=min_samples_leaf, max_depth=max_depth)
    scores: dict[float, float] = {}
    alpha = split_p
    n = X.shape[0]
    if alpha is None:
        if n < MIN_HOLDOUT_ROWS:
            alpha = SMALL_DATA_ALPHA
        else:
            rng = np.random.default_rng(0 if seed is None else seed)
            val = np.zeros(n, bool)
            val[rng.permutation(n)[: int(round(HOLDOUT * n))]] = True
            ll = np.zeros((len(ALPHA_GRID), n))
            for y, k, rows in targets:
                tr, va = rows[~val[rows]], rows[val[rows]]
                if tr.size == 0 or va.size == 0:
                    continue
                loose = grow(X, y, k, cards, tr, alpha=max(ALPHA_GRID), **kw)
                for i, a in enumerate(ALPHA_GRID):
                    ll[i, va] += holdout_loglik(loose, X[va], y[va], a)
            pick, total = choose_alpha(ll[:, val])
            alpha = ALPHA_GRID[pick]
            scores = {a: float(t) for a, t in zip(ALPHA_GRID, total)}
    trees = []
    for y, k, rows in targets:
        trees.append(grow(X, y, k, cards, rows, alpha=float(alpha), **kw))
        if progress is not None:
            progress()
    return trees, float(alpha), scores
