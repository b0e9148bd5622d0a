"""LearnSPN and LearnSPMN from a dask collection: the statistics of every slice counted per
partition and merged exactly (:mod:`spmn.learn.distributed`), the same circuit as the
in-memory fit of the same rows (same structure, equal counts and weights), whatever the
partitioning.

The learners run as tasks (:mod:`spmn.learn.slices`); :meth:`DaskSource.answer` answers the
requests of all waiting tasks in one pass over the partitions, so a level of the circuit
costs one pass. Passes:

1. ``scan``: rows per partition (global row indices), per column the range, a non-integral
   value if any, NaNs, and the distinct payoffs of utilities (up to ``utility_max_values``):
   the schema is inferred from them as from the in-memory columns;
2. one pass per level: every row of a partition is routed to the open slices it belongs to
   (a slice is its parent's rows with one code, ``where``, or with one label of a fitted
   :class:`~spmn.learn.clusters.ClusterModel`, assigned row by row), and each slice gets
   :class:`SliceCounts`: its rows, first global row, code counts per column, pair-count
   tables per joint value of its decisions (all the G-tests need) and its rows of smallest
   hash (a bottom-k, :func:`~spmn.learn.clusters.bottom_k`). A slice of at most
   ``cluster_sample`` rows is then complete: it is learned in memory from those rows, in
   global row order, exactly as the in-memory path learns it; a larger one is clustered on
   its bottom-k rows, the in-memory path's sample.

What travels: to the workers, the routes of the open slices (codes and cluster models); back,
counts and at most ``cluster_sample`` rows per slice and partition. Continuous columns (RDC,
Gaussian and histogram leaves) are not counts: such data are gathered into memory with an
:class:`~spmn.errors.InMemoryWarning` (the documented fallback), as are
``independence="rdc"`` and ``cluster_sample=None``.
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..circuit import nodes as N
from ..data import as_columns, training_matrix
from ..errors import DataError, DistributedError
from ..schema import Schema
from .clusters import ClusterModel, fit_clusters, row_hash
from .distributed import Partitions, gather, reduce_partitions
from .slices import MemSlice, MemStats, Table, leaf_from_counts, slice_salt
from .splits import _tables, dependency_from_pvalues, g_test_from_tables

__all__ = ["DaskSlice", "DaskSource", "DaskStats", "DistinctValues", "SliceCounts"]

_ids = itertools.count(1)


# ---------------------------------------------------------------------------- statistics
@dataclass(frozen=True)
class DistinctValues:
    """The distinct values of a column, or ``many`` once there are more than ``cap``."""

    values: np.ndarray
    cap: int
    many: bool = False

    @classmethod
    def of(cls, x: np.ndarray, cap: int) -> DistinctValues:
        v = np.unique(x[~np.isnan(x)])
        return cls(np.zeros(0), cap, True) if v.size > cap else cls(v, cap)

    def merge(self, other: DistinctValues) -> DistinctValues:
        if self.many or other.many:
            return DistinctValues(np.zeros(0), self.cap, True)
        return DistinctValues.of(np.concatenate([self.values, other.values]), self.cap)


@dataclass(frozen=True)
class SliceCounts:
    """A slice's statistics over some rows: ``n`` rows, ``first`` global row (-1: none),
    ``counts[p]`` the code counts of its ``p``-th column, ``tables[s]`` the flat pair-count
    tables (:func:`~spmn.learn.splits.pair_counts` layout) of the rows of stratum code ``s``,
    and the ``k`` rows of smallest ``hashes`` (global rows ``gid``, ``codes``). Merges are
    exact: integer sums, and the bottom-k of a union is that of the parts' bottom-k."""

    n: int
    first: int
    counts: tuple
    tables: dict
    hashes: np.ndarray
    gid: np.ndarray
    codes: np.ndarray
    k: int

    def merge(self, o: SliceCounts) -> SliceCounts:
        if not o.n:
            return self
        if not self.n:
            return o
        tables = dict(self.tables)
        for s, t in o.tables.items():
            tables[s] = tables[s] + t if s in tables else t
        h = np.concatenate([self.hashes, o.hashes])
        gid = np.concatenate([self.gid, o.gid])
        codes = np.concatenate([self.codes, o.codes])
        if h.size > self.k:
            keep = np.argpartition(h, self.k - 1)[:self.k]
            h, gid, codes = h[keep], gid[keep], codes[keep]
        return SliceCounts(self.n + o.n, min(self.first, o.first),
                           tuple(a + b for a, b in zip(self.counts, o.counts)), tables,
                           h, gid, codes, self.k)


def slice_counts(codes: np.ndarray, gid: np.ndarray, rows: np.ndarray, spec: tuple,
                 card: np.ndarray) -> SliceCounts:
    """:class:`SliceCounts` of the rows ``rows`` of one partition (``spec``: the slice's
    columns, stratum columns, hash salt and k)."""
    cols, strata, salt, k = spec
    cols = np.asarray(cols, np.int64)
    C = codes[np.ix_(rows, cols)]
    counts = tuple(np.bincount(C[:, p], minlength=card[j]).astype(np.int64)
                   for p, j in enumerate(cols))
    tables: dict[int, np.ndarray] = {}
    if rows.size and cols.size > 1:
        s = np.zeros(rows.size, np.int64)
        for j in strata:
            s = s * card[j] + codes[rows, j]
        for sv in np.unique(s):
            tables[int(sv)] = _tables(C[s == sv], card[cols])[0]
    g = gid[rows]
    h = row_hash(salt, g)
    if h.size > k:
        keep = np.argpartition(h, k - 1)[:k]
        h, g, C = h[keep], g[keep], C[keep]
    small = np.int8 if card.max(initial=1) <= 127 else np.int32
    return SliceCounts(int(rows.size), int(gid[rows[0]]) if rows.size else -1, counts, tables,
                       h, g, C.astype(small), int(k))


# ---------------------------------------------------------------------------- per partition
def _scan(cols, i, n_parts, names, utils, cap) -> dict[str, Any]:
    try:
        X = as_columns(cols) if cols else {}
    except DataError as exc:
        raise DataError(f"partition {i}: {exc}") from None
    n = len(next(iter(X.values()))) if X else 0
    rows = np.zeros(n_parts, np.int64)
    rows[i] = n
    lo, hi, odd = (np.full(len(names), np.inf), np.full(len(names), -np.inf),
                   np.full(len(names), -np.inf))
    nan = np.zeros(len(names), np.int64)
    for c, name in enumerate(names):
        x = X[name]
        ok = x[~np.isnan(x)]
        nan[c] = x.size - ok.size
        if ok.size:
            lo[c], hi[c] = ok.min(), ok.max()
            frac = ok[ok != np.round(ok)]
            if frac.size:
                odd[c] = frac.max()
    out = {"rows": rows, "lo": ("max", -lo), "hi": ("max", hi), "odd": ("max", odd), "nan": nan}
    for name in utils:
        out[f"u:{name}"] = DistinctValues.of(X[name], cap)
    return out


def _coded(cols, i, ctx) -> tuple[np.ndarray, np.ndarray]:
    """(values in schema order, codes) of one partition, checked as in-memory data are."""
    sch, uvalues = ctx["schema"], ctx["uvalues"]
    if ctx.get("checked"):  # every partition passed training_matrix's checks in pass one
        X = np.column_stack([np.asarray(cols[v.name], np.float64) for v in sch.variables])
    else:
        X = training_matrix(cols, sch, allow_constant=True, what=f"partition {i}")
    codes = np.zeros(X.shape, np.int32)
    for j, v in enumerate(sch.variables):
        codes[:, j] = np.searchsorted(uvalues[j], X[:, j]) if j in uvalues else X[:, j]
    return X, codes


def _level(cols, i, ctx, routes, models, specs) -> dict[str, Any]:
    """:class:`SliceCounts` of every requested slice (``specs``) over the partition's rows,
    routed from the root through ``routes`` (id -> (parent, op), parents first)."""
    n = len(next(iter(cols.values()))) if cols else 0
    d = len(ctx["schema"])
    if n == 0:
        X, codes = np.zeros((0, d)), np.zeros((0, d), np.int32)
    else:
        X, codes = _coded(cols, i, ctx)
    gid = ctx["offsets"][i] + np.arange(n, dtype=np.int64)
    rows = {0: np.arange(n)}
    labels: dict[tuple[int, int], np.ndarray] = {}
    for sid in sorted(routes):
        parent, op = routes[sid]
        p = rows[parent]
        if op[0] == "where":
            rows[sid] = p[codes[p, op[1]] == op[2]]
        else:
            _, mid, cc, lab = op
            if (parent, mid) not in labels:
                cc = np.asarray(cc, np.int64)
                m = models[mid]  # values are read for continuous columns only
                vals = X[np.ix_(p, cc)] if (m.cards == 0).any() else np.zeros((p.size, 0))
                labels[parent, mid] = m.assign(vals, codes[np.ix_(p, cc)]) if p.size \
                    else np.zeros(0, np.int64)
            rows[sid] = p[labels[parent, mid] == lab]
    return {f"s{sid}": slice_counts(codes, gid, rows[sid], spec, ctx["card"])
            for sid, spec in specs.items()}


def _level_job(cols, i, job) -> dict[str, Any]:
    return _level(cols, i, *job)


# ---------------------------------------------------------------------------- slices
class DaskSlice:
    """A slice of a dask collection: its parent's rows with ``op`` (``("where", j, v)`` or
    ``("cluster", model id, columns, label)``); counts are kept for ``cols`` only."""

    def __init__(self, src: DaskSource, parent: DaskSlice | None, op: tuple | None,
                 key: tuple[int, ...], cols: Sequence[int]) -> None:
        self.src, self.parent, self.op, self.key = src, parent, op, tuple(key)
        self.cols = tuple(sorted(int(j) for j in cols))
        self.id = 0 if parent is None else next(_ids)
        self.counted: SliceCounts | None = None  # after its pass
        self.rows: MemSlice | None = None  # its rows, when complete (gathered)

    def where(self, j: int, v: int, key: tuple[int, ...], cols: Sequence[int] = ()
              ) -> DaskSlice:
        return DaskSlice(self.src, self, ("where", int(j), int(v)), key, cols or self.cols)

    def partition(self, model: ClusterModel, cols: Sequence[int], labels, keys
                  ) -> list[DaskSlice]:
        mid = self.src.register(model)
        cc = tuple(int(j) for j in cols)
        return [DaskSlice(self.src, self, ("cluster", mid, cc, c), key, cc)
                for c, key in enumerate(keys)]

    def route(self) -> list[DaskSlice]:
        out, s = [], self
        while s.parent is not None:
            out.append(s)
            s = s.parent
        return out


class DaskStats:
    """The statistics of a :class:`DaskSlice` too large to gather (more rows than
    ``cluster_sample``), as :class:`~spmn.learn.slices.MemStats` gives them in memory."""

    def __init__(self, sl: DaskSlice, c: SliceCounts, table: Table, opts: Any) -> None:
        self.slice, self.c, self.t, self.opts = sl, c, table, opts
        self.n, self.first = c.n, c.first
        self.pos = {j: p for p, j in enumerate(sl.cols)}
        card = table.card[list(sl.cols)]
        a, b = np.triu_indices(len(sl.cols), 1)
        off = np.r_[0, np.cumsum(card[a] * card[b])]
        self.block = {(int(x), int(y)): (int(off[t]), int(off[t + 1]))
                      for t, (x, y) in enumerate(zip(a, b))}

    def _pos(self, j: int) -> int:
        if j not in self.pos:
            raise DistributedError(f"internal: column {self.t.schema[j].name!r} was not counted "
                                   f"for slice {self.slice.key}")
        return self.pos[j]

    def counts(self, j: int) -> np.ndarray:
        return self.c.counts[self._pos(j)].astype(np.float64)

    def leaf(self, j: int) -> N.Leaf:
        return leaf_from_counts(self.t, j, self.counts(j), self.opts)

    def _flat(self, T: np.ndarray, cols: Sequence[int]) -> np.ndarray:
        """The flat tables of the pairs of ``cols`` (in that order) from the slice's."""
        card = self.t.card
        parts = []
        for x, y in itertools.combinations(cols, 2):
            px, py = self._pos(x), self._pos(y)
            lo, hi = self.block[min(px, py), max(px, py)]
            blk = T[lo:hi].reshape(card[x], card[y]) if px < py else \
                T[lo:hi].reshape(card[y], card[x]).T
            parts.append(blk.ravel())
        return np.concatenate(parts) if parts else np.zeros(0)

    def dependencies(self, cols: Sequence[int], later: Sequence[int] | None, rng=None):
        """G-tests from the merged pair-count tables, within each joint value of ``later``."""
        cols = [int(j) for j in cols]
        strata = [j for j in self.slice.cols if self.t.schema[j].role == "decision"]
        groups: dict[int, np.ndarray] = {}
        for s, T in self.c.tables.items():
            g = 0
            if later is not None:
                digits, rest = {}, s
                for j in reversed(strata):
                    rest, digits[j] = divmod(rest, int(self.t.card[j]))
                for j in later:
                    g = g * int(self.t.card[j]) + digits[j]
            groups[g] = groups[g] + T if g in groups else T
        flats = [self._flat(groups[g], cols) for g in sorted(groups)]
        P = g_test_from_tables(flats, self.t.card[cols], len(cols))
        return dependency_from_pvalues(P, self.opts.p_value)

    def fit_clusters(self, cols: Sequence[int], rng, base: int):
        """Fitted on the slice's ``cluster_sample`` rows of smallest hash, in global order."""
        o, c = self.opts, self.c
        order = np.argsort(c.gid)
        sub = self.t.with_rows(_widen(c.codes[order], self.slice.cols, len(self.t.schema)),
                               c.gid[order])
        cc = np.asarray(cols, np.int64)
        model, _ = fit_clusters(sub.X[:, cc], sub.codes[:, cc], self.t.card[cc], o.n_clusters,
                                method=o.clustering, seed=rng, alpha=o.alpha)
        return model, None


def _widen(codes: np.ndarray, cols: Sequence[int], d: int) -> np.ndarray:
    out = np.zeros((codes.shape[0], d), np.int32)
    out[:, list(cols)] = codes
    return out


# ---------------------------------------------------------------------------- the source
class DaskSource:
    """A dask collection as the learners read it: :meth:`proxy` (for schema inference),
    :meth:`prepare` (the column facts, or None when the data need the in-memory fallback),
    :meth:`root` and :meth:`answer` (one pass per batch of requests)."""

    def __init__(self, data: Any, columns: Sequence[str] | None, client: Any, opts: Any,
                 utilities: Sequence[str] = (), split_every: int = 8) -> None:
        self.data, self.client, self.opts = data, client, opts
        self.parts = Partitions(data, columns)
        self.split_every = split_every
        self.models: dict[int, ClusterModel] = {}
        self.passes = 0
        names = self.parts.columns
        utils = [u for u in dict.fromkeys(utilities) if u in names]
        s = self._run(_scan, self.parts.n, names, utils, int(opts.utility_max_values))
        self.lengths = s["rows"]
        self.n = int(self.lengths.sum())
        if self.n == 0:
            raise DataError("training data has no rows (every partition is empty)")
        self.names = names
        self.lo, self.hi, self.odd, self.nan = -s["lo"][1], s["hi"][1], s["odd"][1], s["nan"]
        self.distinct = {u: s[f"u:{u}"] for u in utils}

    def _run(self, fn, *args):
        self.passes += 1
        return reduce_partitions(self.parts, fn, *args, client=self.client,
                                 split_every=self.split_every)

    def proxy(self) -> dict[str, np.ndarray]:
        """Columns of four values with the data's range, integrality and NaNs: all that
        schema inference reads (:func:`spmn.data.infer_variables`)."""
        out = {}
        for c, name in enumerate(self.names):
            x = [self.lo[c], self.hi[c]] if np.isfinite(self.lo[c]) else []
            if np.isfinite(self.odd[c]):
                x.append(self.odd[c])
            if self.nan[c]:
                x.append(np.nan)
            x += [x[0] if x else np.nan] * (4 - len(x))  # as_columns wants equal lengths
            out[name] = np.array(x, np.float64)
        return out

    def prepare(self, schema: Schema, allow_constant: bool, learner: str) -> Table | None:
        """The column facts of a count fit, or None when some column is not counted
        (continuous) or the options need rows (``independence="rdc"``, no sample)."""
        o = self.opts
        self.reason = None
        at = {name: c for c, name in enumerate(self.names)}
        for v in schema.variables:
            if v.name not in at:
                role = {"decision": "decision", "utility": "utility"}.get(v.role, "variable")
                raise DataError(f"training data: {role} {v.name!r} is absent from the data; "
                                f"columns: {self.names}")
        extra = [c for c in self.names if c not in schema]
        if extra:
            raise DataError(f"training data: columns {extra} are not in the schema "
                            f"{list(schema.names)}")
        cols = [at[v.name] for v in schema.variables]
        lo, hi = self.lo[cols], self.hi[cols]
        if not allow_constant and self.n > 1:
            for j, v in enumerate(schema.variables):
                if lo[j] == hi[j]:
                    raise DataError(f"training data: {v.role} variable {v.name!r} is constant "
                                    f"({lo[j]!r} in all {self.n} rows): it carries no "
                                    "information; drop it or pass allow_constant=True")
        card = np.zeros(len(schema), np.int64)
        uvalues: dict[int, np.ndarray] = {}
        for j, v in enumerate(schema.variables):
            if v.is_discrete:
                card[j] = v.k
            elif v.name in self.distinct and not self.distinct[v.name].many:
                uvalues[j] = self.distinct[v.name].values
                card[j] = uvalues[j].size
        cont = [v.name for j, v in enumerate(schema.variables) if card[j] == 0]
        if cont:
            self.reason = f"its columns {cont} are continuous (no count statistics)"
        elif o.independence == "rdc":
            self.reason = "independence='rdc' is no count statistic"
        elif not o.cluster_sample:
            self.reason = "cluster_sample=None clusters whole slices"
        if self.reason is not None:
            return None
        self.table = Table.meta(schema, card, uvalues, lo, hi)
        self.ctx = {"schema": schema, "card": card, "uvalues": uvalues,
                    "offsets": np.r_[0, np.cumsum(self.lengths)[:-1]].astype(np.int64)}
        self.strata = [j for j, v in enumerate(schema.variables) if v.role == "decision"]
        return self.table

    def gather(self, learner: str) -> Any:
        """The documented fallback: the collection in memory, with an InMemoryWarning."""
        return gather(self.data, learner, self.client, reason=self.reason)

    def register(self, model: ClusterModel) -> int:
        mid = len(self.models)
        self.models[mid] = model
        return mid

    def root(self) -> DaskSlice:
        return DaskSlice(self, None, None, (), range(len(self.table.schema)))

    def answer(self, base: int):
        """The :func:`~spmn.learn.slices.run_tasks` answer: every slice not counted yet is
        counted in one pass; a complete one (at most ``cluster_sample`` rows) becomes an
        in-memory slice of its rows."""
        def stats(s):
            if not isinstance(s, DaskSlice):
                return MemStats(s, self.opts)
            if s.rows is not None:
                return MemStats(s.rows, self.opts)
            return DaskStats(s, s.counted, self.table, self.opts)

        def answer(requests):
            todo = {s.id: s for req in requests for s in req
                    if isinstance(s, DaskSlice) and s.counted is None}
            if todo:
                self._count(list(todo.values()), base)
            return [[stats(s) for s in req] for req in requests]
        return answer

    def known(self, request: list[Any]) -> bool:
        """Whether every slice of ``request`` is counted already (or in memory)."""
        return all(not isinstance(s, DaskSlice) or s.counted is not None for s in request)

    def _count(self, slices: list[DaskSlice], base: int) -> None:
        k = int(self.opts.cluster_sample)
        routes, models = {}, {}
        for s in slices:
            for r in s.route():
                routes[r.id] = (r.parent.id, r.op)
                if r.op[0] == "cluster":
                    models[r.op[1]] = self.models[r.op[1]]
        specs = {s.id: (s.cols, [j for j in self.strata if j in s.cols],
                        slice_salt(base, s.key), k) for s in slices}
        import dask

        # one lazy object, tokenized and shipped once, not once per partition
        job = dask.delayed((self.ctx, routes, models, specs), traverse=False, pure=True)
        out = self._run(_level_job, job)
        self.ctx = {**self.ctx, "checked": True}
        d = len(self.table.schema)
        for s in slices:
            c = s.counted = out[f"s{s.id}"]
            if c.n <= k:  # complete: all its rows are here, learned in memory from now on
                order = np.argsort(c.gid)
                t = self.table.with_rows(_widen(c.codes[order], s.cols, d), c.gid[order])
                s.rows = MemSlice(t, np.arange(c.n), s.key)
                s.counted = SliceCounts(c.n, c.first, (), {}, c.hashes[:0], c.gid[:0],
                                        c.codes[:0], k)  # the rows are in s.rows

