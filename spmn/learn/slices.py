"""What the structure learners read from data: slices of rows, their statistics, and a driver
that runs the learners as tasks, so the same code learns from memory or from a dask cluster.

A learner step is a generator (a :class:`Task`): it yields the slices it needs statistics of,
receives them (:class:`MemStats` here, their merged-count twin in :mod:`spmn.learn.dask_spn`),
and returns a node whose children may be further tasks. :func:`run_tasks` runs every task
that can run, then answers all their requests at once: in memory at once, on a cluster in one
pass over the partitions, so a level of the circuit costs one pass. Nothing in a step depends
on the order the tasks run in: the random draws of a node come from its own stream
(:func:`node_rng`, from the seed and the node's path), and a large slice is clustered on the
rows of smallest hash of (salt, global row index) (:func:`slice_salt`,
:func:`~spmn.learn.clusters.bottom_k`).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..circuit import nodes as N
from ..schema import Schema
from .clusters import ClusterModel, as_generator, bottom_k, fit_clusters
from .splits import codes_of, dependency_matrix

__all__ = [
    "MemSlice",
    "MemStats",
    "Table",
    "Task",
    "base_seed",
    "leaf_from_counts",
    "make_leaf",
    "node_rng",
    "run_tasks",
    "slice_salt",
    "utility_leaf",
]

#: Last spawn-key word of a slice's hash salt (paths hold child indices, all far smaller).
SALT_TAG = 2 ** 31 + 17


# ---------------------------------------------------------------------------- tasks
class Task:
    """A learner step to run: ``fn(*args)`` returns a generator (yields lists of slices,
    receives their statistics, returns a node), a node, or another Task."""

    __slots__ = ("args", "fn")

    def __init__(self, fn: Callable, *args: Any) -> None:
        self.fn = fn
        self.args = args


def _pending(node: Any, out: list) -> None:
    """(children list, index, task) of every Task under a freshly returned node."""
    stack = [node]
    while stack:
        nd = stack.pop()
        kids = getattr(nd, "children", None)
        if not kids:
            continue
        for i, ch in enumerate(kids):
            if isinstance(ch, Task):
                out.append((kids, i, ch))
            else:
                stack.append(ch)


def run_tasks(root: Task, answer: Callable[[list[list[Any]]], list[list[Any]]],
              known: Callable[[list[Any]], bool] = lambda request: True) -> N.Node:
    """Run ``root`` and every task it spawns; ``answer`` gets the requests of every waiting
    task at once (a list of slice lists) and returns their statistics in the same shape. A
    request whose statistics are ``known`` already is answered at once (no pass)."""
    holder: list[Any] = [None]
    ready: list[tuple[Any, list, int, Any]] = [(root, holder, 0, None)]
    while ready:
        waiting = []
        while ready:
            job, h, at, value = ready.pop()
            if isinstance(job, Task):
                out = job.fn(*job.args)
                if not hasattr(out, "send"):  # a node or a Task, at once
                    _settle(out, h, at, ready)
                    continue
                job, value = out, None
            try:
                request = list(job.send(value))
            except StopIteration as stop:
                _settle(stop.value, h, at, ready)
                continue
            if known(request):
                ready.append((job, h, at, answer([request])[0]))
            else:
                waiting.append((job, h, at, request))
        if waiting:
            answers = answer([w[3] for w in waiting])
            ready = [(g, h, at, a) for (g, h, at, _), a in zip(waiting, answers)]
            ready.reverse()  # pop() then runs them in request order
    return holder[0]


def _settle(out: Any, h: list, at: int, ready: list) -> None:
    if isinstance(out, Task):
        ready.append((out, h, at, None))
        return
    h[at] = out
    found: list = []
    _pending(out, found)
    for kids, i, task in reversed(found):
        ready.append((task, kids, i, None))


def base_seed(seed) -> int:
    """The integer every node stream derives from: one draw of :func:`as_generator` (so an
    int seed and ``default_rng`` of it agree)."""
    return int(as_generator(seed).integers(0, 2 ** 63))


def node_rng(base: int, path: Sequence[int]) -> np.random.Generator:
    """The random stream of the node at ``path`` (child indices from the root)."""
    return np.random.default_rng(np.random.SeedSequence(base, spawn_key=tuple(path)))


def slice_salt(base: int, key: Sequence[int]) -> int:
    """The hash salt of the slice ``key`` (the path of the node that made the slice)."""
    ss = np.random.SeedSequence(base, spawn_key=(*key, SALT_TAG))
    return int(ss.generate_state(1, np.uint64)[0])


# ---------------------------------------------------------------------------- table
class Table:
    """Training data ready for learning: values, integer codes and a card per column.

    ``card[j] = k`` for discrete columns and for utilities with at most ``utility_max_values``
    distinct payoffs (codes index ``uvalues[j]``); 0 for continuous columns. ``gid``: the
    global index of every row (a slice gathered from a cluster holds some rows only);
    ``lo``, ``hi``, ``std``: of the whole column, whatever rows the table holds.
    """

    def __init__(self, X: np.ndarray, schema: Schema, opts: Any) -> None:
        self.X = X
        self.schema = schema
        n, d = X.shape
        self.gid = np.arange(n, dtype=np.int64)
        self.codes = np.zeros((n, d), np.int32)
        self.card = np.zeros(d, np.int64)
        self.uvalues: dict[int, np.ndarray] = {}
        for j, v in enumerate(schema.variables):
            if v.is_discrete:
                self.codes[:, j] = X[:, j].astype(np.int32)
                self.card[j] = v.k
            else:
                vals, codes = codes_of(X[:, j])
                if v.role == "utility" and vals.size <= opts.utility_max_values:
                    self.codes[:, j] = codes
                    self.card[j] = vals.size
                    self.uvalues[j] = vals
        self.lo = X.min(axis=0)
        self.hi = X.max(axis=0)
        self.std = X.std(axis=0)

    @classmethod
    def meta(cls, schema: Schema, card: np.ndarray, uvalues: dict[int, np.ndarray],
             lo: np.ndarray, hi: np.ndarray) -> Table:
        """A table of no rows with the given column facts (a dask fit's, from its scan)."""
        t = cls.__new__(cls)
        d = len(schema)
        t.schema, t.card, t.uvalues = schema, np.asarray(card, np.int64), dict(uvalues)
        t.lo, t.hi, t.std = np.asarray(lo, np.float64), np.asarray(hi, np.float64), \
            np.full(d, np.nan)  # std: Gaussian leaves only, which count fits never make
        t.X, t.codes, t.gid = np.zeros((0, d)), np.zeros((0, d), np.int32), np.zeros(0, np.int64)
        return t

    def with_rows(self, codes: np.ndarray, gid: np.ndarray) -> Table:
        """This table's column facts over the given rows of codes (all columns counted):
        values are the codes of discrete columns, ``uvalues[j][code]`` of coded utilities."""
        t = Table.meta(self.schema, self.card, self.uvalues, self.lo, self.hi)
        t.codes = np.ascontiguousarray(codes, np.int32)
        t.gid = np.asarray(gid, np.int64)
        t.X = t.codes.astype(np.float64)
        for j, vals in t.uvalues.items():
            t.X[:, j] = vals[t.codes[:, j]]
        return t


# ---------------------------------------------------------------------------- leaves
def _histogram(x: np.ndarray, lo: float, hi: float, opts: Any, alpha: float):
    """(breaks, densities): numpy's bins over the slice, widened to the column's range
    [lo, hi] by outer bins, smoothed ``(c_j + α) / (n + mα) / width_j``."""
    a, b = float(x.min()), float(x.max())
    if b - a <= 1e-12 * max(1.0, abs(a), abs(b)):
        half = max((hi - lo) * 1e-3, 1e-9 * max(1.0, abs(a)))
        edges = np.array([a - half, a + half])
    else:
        edges = np.histogram_bin_edges(x, bins=opts.hist_bins)
        if edges.size - 1 > opts.max_bins:
            edges = np.linspace(a, b, opts.max_bins + 1)
    counts = np.histogram(x, bins=edges)[0].astype(np.float64)
    if lo < edges[0]:
        edges = np.r_[lo, edges]
        counts = np.r_[0.0, counts]
    if hi > edges[-1]:
        edges = np.r_[edges, hi]
        counts = np.r_[counts, 0.0]
    widths = np.diff(edges)
    m = counts.size
    dens = (counts + alpha) / (counts.sum() + m * alpha) / widths
    dens /= math.fsum((dens * widths).tolist())
    return edges, dens


def leaf_from_counts(table: Table, j: int, cnt: np.ndarray, opts: Any) -> N.Leaf:
    """The leaf of a counted column ``j`` (``card[j] > 0``) from its code counts ``cnt``:
    ``Categorical`` ``(n_v + α) / (n + kα)``, or the ``Utility`` of the observed payoffs."""
    v = table.schema[j]
    cnt = np.asarray(cnt, np.float64)
    if v.role == "utility":
        keep = cnt > 0
        vals, p = table.uvalues[j][keep], cnt[keep] / cnt.sum()
        return N.Utility(v.name, values=vals, probs=p / math.fsum(p.tolist()))
    p = (cnt + opts.alpha) / (cnt.sum() + v.k * opts.alpha)
    return N.Categorical(v.name, p / math.fsum(p.tolist()))


def make_leaf(table: Table, j: int, rows: np.ndarray, opts: Any) -> N.Leaf:
    """The leaf of variable ``j`` fitted to ``rows`` (see :mod:`spmn.learn.learnspn`)."""
    v = table.schema[j]
    if v.role == "utility":
        return utility_leaf(table, j, rows, opts)
    if v.is_discrete:
        cnt = np.bincount(table.codes[rows, j], minlength=v.k).astype(np.float64)
        return leaf_from_counts(table, j, cnt, opts)
    x = table.X[rows, j]
    if opts.leaf == "gaussian":
        floor = opts.min_std * (table.std[j] if table.std[j] > 0 else 1.0)
        return N.Gaussian(v.name, float(x.mean()), max(float(x.std()), floor, 1e-300))
    b, d = _histogram(x, table.lo[j], table.hi[j], opts, opts.alpha)
    return N.Histogram(v.name, b, d)


def utility_leaf(table: Table, j: int, rows: np.ndarray, opts: Any) -> N.Utility:
    """Empirical payoff distribution of ``rows``: discrete values when few, else a histogram."""
    name = table.schema[j].name
    if j in table.uvalues:
        cnt = np.bincount(table.codes[rows, j], minlength=table.card[j]).astype(np.float64)
        return leaf_from_counts(table, j, cnt, opts)
    vals, cnt = np.unique(table.X[rows, j], return_counts=True)
    if vals.size > opts.utility_max_values:
        b, d = _histogram(table.X[rows, j], vals[0], vals[-1], opts, 0.0)
        return N.Utility(name, breaks=b, densities=d)
    p = cnt / cnt.sum()
    return N.Utility(name, values=vals, probs=p / math.fsum(p.tolist()))


# ---------------------------------------------------------------------------- in memory
class MemSlice:
    """Rows ``rows`` (ascending positions) of an in-memory :class:`Table`; ``key`` names it
    (the path of the node that made it: its hash salt derives from it)."""

    def __init__(self, table: Table, rows: np.ndarray, key: tuple[int, ...]) -> None:
        self.table = table
        self.rows = rows
        self.key = key

    def where(self, j: int, v: int, key: tuple[int, ...], cols: Sequence[int] = ()) -> MemSlice:
        """The rows with code ``v`` in column ``j`` (``cols``: what a dask slice counts)."""
        r = self.rows
        return MemSlice(self.table, r[self.table.codes[r, j] == v], key)

    def partition(self, model: ClusterModel, cols: Sequence[int], labels: np.ndarray | None,
                  keys: Sequence[tuple[int, ...]]) -> list[MemSlice]:
        """One slice per label of ``model`` (``labels``: already known, else assigned)."""
        t, r = self.table, self.rows
        if labels is None:
            cc = np.asarray(cols, np.int64)
            labels = model.assign(t.X[np.ix_(r, cc)], t.codes[np.ix_(r, cc)])
        return [MemSlice(t, r[labels == c], key) for c, key in enumerate(keys)]


class MemStats:
    """The statistics a learner step reads from a :class:`MemSlice` (computed on demand)."""

    def __init__(self, sl: MemSlice, opts: Any) -> None:
        self.slice = sl
        self.opts = opts
        self.n = int(sl.rows.size)

    @property
    def first(self) -> int:
        """Global index of the slice's first row."""
        return int(self.slice.table.gid[self.slice.rows[0]]) if self.n else -1

    def counts(self, j: int) -> np.ndarray:
        t = self.slice.table
        return np.bincount(t.codes[self.slice.rows, j], minlength=t.card[j]).astype(np.float64)

    def values(self, j: int) -> np.ndarray:
        return self.slice.table.X[self.slice.rows, j]

    def codes(self, j: int) -> np.ndarray:
        return self.slice.table.codes[self.slice.rows, j]

    def leaf(self, j: int) -> N.Leaf:
        return make_leaf(self.slice.table, j, self.slice.rows, self.opts)

    def dependencies(self, cols: Sequence[int], later: Sequence[int] | None,
                     rng: np.random.Generator):
        """(dependent?, strength) between ``cols`` (:func:`~.splits.dependency_matrix`); with
        ``later`` (columns), within each joint value of them (conditional tests)."""
        t, o, rows = self.slice.table, self.opts, self.slice.rows
        cc = np.asarray(cols, np.int64)
        strata = None
        if later is not None:
            strata = np.zeros(rows.size, np.int64)
            for j in later:
                strata = strata * t.card[j] + t.codes[rows, j]
        return dependency_matrix(t.X[np.ix_(rows, cc)], t.codes[np.ix_(rows, cc)], t.card[cc],
                                 method=o.independence, threshold=o.threshold,
                                 p_value=o.p_value, rdc_features=o.rdc_features, seed=rng,
                                 strata=strata)

    def fit_clusters(self, cols: Sequence[int], rng: np.random.Generator, base: int
                     ) -> tuple[ClusterModel, np.ndarray | None]:
        """(model, labels of every row or None): fitted on the whole slice, or on its
        ``cluster_sample`` rows of smallest hash when it is larger (labels then None)."""
        t, o, rows = self.slice.table, self.opts, self.slice.rows
        cc = np.asarray(cols, np.int64)
        big = bool(o.cluster_sample) and rows.size > o.cluster_sample
        if big:
            rows = rows[bottom_k(slice_salt(base, self.slice.key), t.gid[rows],
                                 int(o.cluster_sample))]
        model, lab = fit_clusters(t.X[np.ix_(rows, cc)], t.codes[np.ix_(rows, cc)], t.card[cc],
                                  o.n_clusters, method=o.clustering, seed=rng, alpha=o.alpha)
        return model, None if big else lab


def answer_in_memory(opts: Any) -> Callable[[list[list[Any]]], list[list[Any]]]:
    """The :func:`run_tasks` answer of in-memory slices."""
    def answer(requests):
        return [[MemStats(sl, opts) for sl in req] for req in requests]
    return answer
