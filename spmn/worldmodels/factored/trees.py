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
``min_samples_leaf`` times at the node (a per-column minimum: the model asks less of action
columns, whose values the logging policy chose); values seen fewer times, or never, follow the
most frequent value's branch (that is how a tree answers parent values the logs never show). Leaves
hold counts, so a leaf is never empty: ``p(y = v) = (c_v + λ) / (n + k λ)`` with ``λ`` the
smoothing. Trees at a stricter α are the trees at a looser one pruned where ``m·p >= α`` (the
best candidate does not depend on α), which makes choosing α by held-out likelihood cheap.

One learner, two sources of tables: :func:`grow_trees` grows every target's tree level by level
(breadth first: nodes numbered as they are made, parents before children) and reads, for all
frontier nodes of all trees at once, only their raw (column value, y) count tables. The
in-memory :class:`RowsSource` counts them over each node's rows; the dask fit
(:mod:`.dask_fit`) counts them per partition and merges the counts (one pass over the data per
level), so both give the same trees. The held-out rows are a hash of (seed, row index)
(:func:`holdout_mask`) and their scores exact sums (:class:`~spmn.learn.distributed.ExactSums`),
so the choice of α does not depend on how the rows are split into partitions either.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit
from scipy.special import chdtrc

from ...errors import DataError
from ...learn.distributed import ExactSums
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
    def from_arrays(cls, d: dict[str, np.ndarray], k: int) -> ConditionalTree:
        crit = np.asarray(d["crit"], np.float64)
        return cls(np.asarray(d["var"], np.int64), np.asarray(d["child"], np.int64),
                   np.asarray(d["counts"], np.float64), np.where(crit < 0, np.inf, crit), int(k))


@njit(cache=True, nogil=True)
def _raw_tables(X, y, rows, k, kmax):
    """(x, y) counts of every column over the node's rows: T[column, value, y]."""
    p = X.shape[1]
    T = np.zeros((p, kmax, k))
    for i in range(rows.shape[0]):
        r = rows[i]
        yr = y[r]
        for j in range(p):
            T[j, X[r, j], yr] += 1.0
    return T


@njit(cache=True, nogil=True)
def _merge_rare(T, used, min_leaf):
    """In place on raw tables ``T``: values of column j seen fewer than ``min_leaf[j]`` times
    merged into the most frequent one; whether the column is a candidate (unused, two or more values kept), its
    most frequent value and its kept values."""
    p, kmax, k = T.shape
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
            if tot[v] >= min_leaf[j]:
                keep[j, v] = True
                groups += 1
            elif tot[v] > 0:
                for c in range(k):
                    T[j, t, c] += T[j, v, c]
                    T[j, v, c] = 0.0
        ok[j] = groups >= 2 and not used[j]
    return ok, top, keep


def _node_tables(X, y, rows, k, kmax, used, min_leaf):
    """:func:`_raw_tables` then :func:`_merge_rare`: ``(T, ok, top, keep)`` of the node
    (``min_leaf``: one value or one per column)."""
    T = _raw_tables(X, y, rows, k, kmax)
    ok, top, keep = _merge_rare(T, used, leaf_minimums(min_leaf, T.shape[0]))
    return T, ok, top, keep


def split_of_tables(T: np.ndarray, used: np.ndarray, min_leaf: np.ndarray):
    """(column, crit = m·p, kept values, most frequent value, merged tables) of the best
    candidate of a node with raw tables ``T`` (columns x kmax x k), or None when no column is a
    candidate. ``T`` is left as it was."""
    p, kmax, k = T.shape
    T = np.array(T, np.float64)
    ok, top, keep = _merge_rare(T, used, min_leaf)
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
    return j, float(chdtrc(df[b], G[b])) * cand.size, np.flatnonzero(keep[j]), int(top[j]), T


def leaf_minimums(min_samples_leaf: int | Sequence[int], p: int) -> np.ndarray:
    """Rows per branch of a split on each of the ``p`` columns (at least 1), as floats."""
    m = np.asarray(min_samples_leaf, np.float64)
    if m.ndim == 0:
        m = np.full(p, float(m))
    if m.shape != (p,):
        raise DataError(f"min_samples_leaf: one value or one per column ({p}), got shape "
                        f"{m.shape}")
    return np.maximum(m, 1.0)

class Grower:
    """One tree being grown level by level: node lists (``var``, ``child``, ``counts``,
    ``crit`` as in :class:`ConditionalTree`, and ``parent``, ``depth``, ``used``: the columns
    split on above), made into a :class:`ConditionalTree` once by :meth:`tree`. The root's
    counts are unknown (None) until its tables are read."""

    def __init__(self, k: int, kmax: int, p: int) -> None:
        self.k, self.kmax = int(k), int(kmax)
        self.var: list[int] = [-1]
        self.child: list[np.ndarray] = [np.zeros(kmax, np.int64)]
        self.counts: list[np.ndarray | None] = [None]
        self.crit: list[float] = [np.inf]
        self.parent: list[int] = [-1]
        self.depth: list[int] = [0]
        self.used: list[np.ndarray] = [np.zeros(p, np.bool_)]

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(var, child) of the tree so far: routing stops at the frontier (var -1)."""
        return np.array(self.var, np.int64), np.array(self.child, np.int64)

    def split(self, n: int, j: int, crit: float, seen: np.ndarray, top: int,
              T: np.ndarray) -> list[int]:
        """Split node n on column j; a child per kept value (counts: the merged tables' rows);
        other values follow ``top``'s child. Returns the children in the order made."""
        self.var[n], self.crit[n] = j, crit
        used = self.used[n].copy()
        used[j] = True
        kids = {}
        for v in seen.tolist():
            kids[v] = len(self.var)
            self.var.append(-1)
            self.child.append(np.zeros(self.kmax, np.int64))
            self.counts.append(T[j, v].copy())
            self.crit.append(np.inf)
            self.parent.append(n)
            self.depth.append(self.depth[n] + 1)
            self.used.append(used)
        self.child[n][:] = kids[top]
        for v, m in kids.items():
            self.child[n][v] = m
        return list(kids.values())

    def tree(self) -> ConditionalTree:
        counts = [np.zeros(self.k) if c is None else c for c in self.counts]
        return ConditionalTree(np.array(self.var, np.int64), np.array(self.child, np.int64),
                               np.array(counts, np.float64), np.array(self.crit), self.k)


#: ``source(growers, cands) -> table``: ``table(t, n)`` is the raw (columns x kmax x k) count
#: table of node n of tree t, for every n in ``cands[t]`` (asked in that order).
TableSource = Callable[[Sequence[Grower], Sequence[Sequence[int]]],
                       Callable[[int, int], np.ndarray]]


def grow_trees(source: TableSource, ks: Sequence[int], kmax: int, p: int, *, alpha: float,
               min_samples_leaf: int | Sequence[int] = 5, max_depth: int | None = None,
               done: Callable[[], None] | None = None) -> list[ConditionalTree]:
    """Grow the tree of every target (``ks``: values of each y; ``p`` columns, codes <
    ``kmax``) at level ``alpha`` (module docstring), level by level: one call of ``source``
    per level gives the tables of every tree's open frontier nodes (a node is open unless it
    has fewer than two y values, fewer than twice the smallest ``min_samples_leaf`` rows (one
    per column, or one for all) or ``max_depth`` levels above it). ``done()`` is called as
    each tree is finished."""
    min_leaf = leaf_minimums(min_samples_leaf, p)
    open_rows = 2.0 * float(min_leaf.min(initial=1.0))
    gs = [Grower(k, kmax, p) for k in ks]
    frontier: list[list[int]] = [[0] for _ in gs]

    def is_open(g: Grower, n: int) -> bool:
        c = g.counts[n]
        if c is None:
            return True
        return not ((c > 0).sum() < 2 or c.sum() < open_rows or
                    (max_depth is not None and g.depth[n] >= max_depth))

    finished = [False] * len(gs)
    while True:
        cands = [[n for n in f if is_open(g, n)] for g, f in zip(gs, frontier)]
        for t, c in enumerate(cands):
            if not c and not finished[t]:
                finished[t] = True
                if done is not None:
                    done()
        if not any(cands):
            return [g.tree() for g in gs]
        table = source(gs, cands)
        nxt: list[list[int]] = [[] for _ in gs]
        for t, g in enumerate(gs):
            for n in cands[t]:
                T = table(t, n)
                if g.counts[n] is None:  # the root: its counts are its tables' margin
                    g.counts[n] = T[0].sum(axis=0)
                    if not is_open(g, n):
                        continue
                best = split_of_tables(T, g.used[n], min_leaf)
                if best is None or not best[1] < alpha:
                    continue
                nxt[t] += g.split(n, *best)
        frontier = nxt


class RowsSource:
    """The in-memory :data:`TableSource`: rows of ``X`` per node of every target (``targets``:
    ``(y, rows)``), a node's rows split among its children when they are first asked for."""

    def __init__(self, X: np.ndarray, targets: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
        self.X = X
        self.ys = [y for y, _ in targets]
        self.rows = [{0: np.asarray(r, np.int64)} for _, r in targets]

    def __call__(self, gs: Sequence[Grower], cands: Sequence[Sequence[int]]):
        for t, c in enumerate(cands):  # keep the rows of open nodes and of their parents only
            g, keep = gs[t], set(c)
            keep |= {g.parent[n] for n in c}
            self.rows[t] = {n: r for n, r in self.rows[t].items() if n in keep}

        def table(t: int, n: int) -> np.ndarray:
            g = gs[t]
            return _raw_tables(self.X, self.ys[t], self._rows(g, t, n), g.k, g.kmax)

        return table

    def _rows(self, g: Grower, t: int, n: int) -> np.ndarray:
        d = self.rows[t]
        if n not in d:
            par = g.parent[n]
            r = d.pop(par)
            kid = g.child[par][self.X[r, g.var[par]]]
            order = np.argsort(kid, kind="stable")
            kids, start = np.unique(kid[order], return_index=True)
            for m, part in zip(kids.tolist(), np.split(r[order], start[1:])):
                d[m] = part
        return d[n]


def holdout_mask(key: int, index: np.ndarray) -> np.ndarray:
    """Whether each row (by its global index) is held out: a SplitMix64 hash of (``key``, index)
    below :data:`HOLDOUT` of 2^64, so any partitioning of the rows holds out the same ones."""
    with np.errstate(over="ignore"):
        z = np.uint64(key) + (np.asarray(index, np.uint64) + np.uint64(1)) * \
            np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0 ** -53 < HOLDOUT


def seed_key(seed) -> int:
    """The hash key of the hold-out: ``seed`` itself for an integer (None: 0), else a draw
    from the Generator (or what :func:`numpy.random.default_rng` makes of it)."""
    if seed is None:
        return 0
    if isinstance(seed, (int, np.integer)):
        return int(seed) % (1 << 64)
    return int(np.random.default_rng(seed).integers(0, 2 ** 63 - 1))


def holdout_loglik(tree: ConditionalTree, X: np.ndarray, y: np.ndarray, alpha: float
                   ) -> np.ndarray:
    """Per-row held-out log-likelihood of ``y`` under ``tree`` pruned at ``alpha``
    (pseudo-count :data:`SCORE_PSEUDOCOUNT`)."""
    node = tree.route(X, alpha)
    c = tree.counts[node]
    num = c[np.arange(y.size), y] + SCORE_PSEUDOCOUNT
    return np.log(num / (c.sum(axis=1) + SCORE_PSEUDOCOUNT * tree.k))


@njit(cache=True, nogil=True)
def _add_holdout_ll(X, y, rows, pos, var, child, crit, logp, alphas, ll):
    """``ll[pos[r], i] += logp[node, y[r]]`` for every row r and grid α_i, the node being the
    one r reaches following splits with crit < α_i (:meth:`ConditionalTree.route`): one walk
    per row, from the strictest α to the loosest (the stop node only moves down)."""
    order = np.argsort(alphas)
    for t in range(rows.shape[0]):
        r = rows[t]
        node = 0
        for o in range(alphas.shape[0]):
            i = order[o]
            while var[node] >= 0 and crit[node] < alphas[i]:
                node = child[node, X[r, var[node]]]
            ll[pos[r], i] += logp[node, y[r]]


def holdout_stats(trees: Sequence[ConditionalTree | None], X: np.ndarray,
                  targets: Sequence[tuple[np.ndarray, np.ndarray]], val: np.ndarray
                  ) -> dict[str, object]:
    """Statistics of the held-out rows (``val``, a mask) that :func:`choose_alpha` reads:
    their number and :class:`~spmn.learn.distributed.ExactSums` of each row's log-likelihood
    ll_a (:func:`holdout_loglik` summed over targets, in their order) per grid α and of
    (ll_a - ll_b)² per pair a < b. ``targets``: ``(y, rows)`` per tree; a tree of None (no
    training rows) adds nothing."""
    where = np.flatnonzero(val)
    pos = np.full(val.size, -1, np.int64)
    pos[where] = np.arange(where.size)
    ll = np.zeros((where.size, len(ALPHA_GRID)))
    alphas = np.array(ALPHA_GRID, np.float64)
    for tree, (y, rows) in zip(trees, targets):
        va = rows[val[rows]]
        if tree is None or va.size == 0:
            continue
        c = tree.counts
        logp = np.log((c + SCORE_PSEUDOCOUNT) /
                      (c.sum(axis=1)[:, None] + SCORE_PSEUDOCOUNT * tree.k))
        _add_holdout_ll(X, np.asarray(y, np.int64), va, pos, tree.var, tree.child, tree.crit,
                        logp, alphas, ll)
    a, b = np.triu_indices(len(ALPHA_GRID), 1)
    return {"n_val": np.int64(where.size),
            "ll": ExactSums.of(np.concatenate([ll, (ll[:, a] - ll[:, b]) ** 2], axis=1))}


def choose_alpha(stats: dict[str, object]) -> tuple[float, dict[float, float]]:
    """α of :data:`ALPHA_GRID` by the one-standard-error rule on the held-out rows
    (:func:`holdout_stats`): the smallest α whose total is within one standard error (of its
    row-wise difference to the best, se = sqrt(Σd² - (Σd)²/n)) of the best total; and the
    totals per α."""
    g = len(ALPHA_GRID)
    sums = stats["ll"].values()
    total, d2 = sums[:g], np.zeros((g, g))
    a, b = np.triu_indices(g, 1)
    d2[a, b] = d2[b, a] = sums[g:]
    n = max(int(stats["n_val"]), 1)
    best = int(np.argmax(total))
    diff = total[best] - total
    se = np.sqrt(np.maximum(d2[best] - diff * diff / n, 0.0))
    ok = np.flatnonzero(diff <= se + 1e-9 * max(1.0, abs(total[best])))
    return ALPHA_GRID[int(ok.max())], {x: float(t) for x, t in zip(ALPHA_GRID, total)}


def small_codes(X: np.ndarray, cards: np.ndarray) -> np.ndarray:
    """``X`` as contiguous codes of the smallest integer type that holds ``cards``."""
    top = int(np.max(cards, initial=1))
    return np.ascontiguousarray(X, np.int8 if top <= 127 else
                                (np.int16 if top <= 32767 else np.int32))


def fit_trees(X: np.ndarray, targets: Sequence[tuple[np.ndarray, int, np.ndarray]],
              cards: np.ndarray, *, split_p: float | None,
              min_samples_leaf: int | Sequence[int],
              max_depth: int | None, seed=None, progress: Callable[[], None] | None = None
              ) -> tuple[list[ConditionalTree], float, dict[float, float]]:
    """Trees for every ``(y, k, rows)`` target, α, and the held-out score of each grid α.

    With ``split_p=None`` about :data:`HOLDOUT` of the rows are held out (:func:`holdout_mask`
    of ``seed``; None: a fixed key, so fits repeat), the trees grow on the rest at the loosest
    α, every α of :data:`ALPHA_GRID` is scored on the held-out rows summed over all targets and
    :func:`choose_alpha` picks one (the one-standard-error rule: the strictest α as good as the
    best within noise); the final trees grow on every row."""
    X = small_codes(X, cards)
    kmax, p = int(max(int(np.max(cards, initial=1)), 1)), X.shape[1]
    kw = {"min_samples_leaf": min_samples_leaf, "max_depth": max_depth}
    ks = [k for _, k, _ in targets]
    scores: dict[float, float] = {}
    alpha = split_p
    n = X.shape[0]
    if alpha is None:
        if n < MIN_HOLDOUT_ROWS:
            alpha = SMALL_DATA_ALPHA
        else:
            val = holdout_mask(seed_key(seed), np.arange(n))
            train = RowsSource(X, [(y, rows[~val[rows]]) for y, _, rows in targets])
            loose = grow_trees(train, ks, kmax, p, alpha=max(ALPHA_GRID), **kw)
            loose = [t if t.counts[0].sum() > 0 else None for t in loose]
            alpha, scores = choose_alpha(holdout_stats(
                loose, X, [(y, rows) for y, _, rows in targets], val))
    trees = grow_trees(RowsSource(X, [(y, rows) for y, _, rows in targets]), ks, kmax, p,
                       alpha=float(alpha), done=progress, **kw)
    return trees, float(alpha), scores
