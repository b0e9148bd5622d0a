"""Learning beyond one machine: a dask collection seen as checked partitions of numpy columns,
and exact sufficient statistics (counts) computed per partition and merged by tree reductions.

A learner states what it needs as a function of one partition's columns (``fn(columns, i)``,
returning a dict of statistics: numpy count arrays, :class:`KeyCounts`, :class:`DistinctRows`)
and :func:`reduce_partitions` runs it on every partition of a :class:`Partitions` (on the
``client``'s cluster, the active ``distributed`` client, or dask's default scheduler) and merges
the results pairwise up a tree of fan-in ``split_every``: one pass over the data, and only the
statistics (never rows) travel. Counts are integers summed exactly, so any partitioning gives
the statistics of the in-memory data bit for bit. Every partition is checked against the
collection's columns and dtypes (an error names the partition and the column); an empty
partition contributes nothing; the merged result must account for every partition exactly once,
so a lost worker gives dask's retry or a :class:`~spmn.errors.DistributedError`, never a partial
statistic. dask is an optional extra (``spmn[dask]``): it is imported on first use only.
"""
from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

from ..errors import DataError, DistributedError

__all__ = [
    "PARTS",
    "DistinctRows",
    "ExactSums",
    "FirstRows",
    "KeyCounts",
    "Partitions",
    "compute",
    "count_keys",
    "gather",
    "is_dask",
    "merge_stats",
    "quantiles_from_counts",
    "reduce_partitions",
]

#: Key of the partition tally every statistic dict carries (checked after the reduction).
PARTS = "_partitions"


def is_dask(data: Any) -> bool:
    """Whether ``data`` is a dask collection (a DataFrame, an array) or a dict of dask arrays.
    Never imports dask: an object of a module not loaded cannot be one."""
    if "dask" not in sys.modules:
        return False
    from dask import is_dask_collection
    if isinstance(data, Mapping):
        return bool(data) and all(is_dask_collection(v) for v in data.values())
    return is_dask_collection(data)


# ---------------------------------------------------------------------------- partitions
class Partitions:
    """A dask DataFrame, a 2-D dask array (``columns=`` names its columns) or a dict of 1-D dask
    arrays, as ``n`` partitions of named numpy columns (``columns``, ``dtypes`` as the
    collection declares them). :meth:`delayed` gives one lazy ``fn(columns_dict, i, *args)`` per
    partition, after checking the partition's columns and dtypes against the declared ones."""

    def __init__(self, data: Any, columns: Sequence[str] | None = None) -> None:
        import dask.array as da
        import dask.dataframe as dd

        if isinstance(data, dd.DataFrame):
            self.kind = "dataframe"
            self.columns = [str(c) for c in data.columns]
            self.dtypes = {str(c): t for c, t in data.dtypes.items()}
            self._parts = list(data.to_delayed())
        elif isinstance(data, da.Array):
            if data.ndim != 2:
                raise DataError(f"a dask array of data must be 2-D (rows x columns), got "
                                f"shape {data.shape}")
            if columns is None or len(columns) != data.shape[1]:
                raise DataError(f"a dask array of {data.shape[1]} columns needs columns= "
                                f"with {data.shape[1]} names, got {columns!r}")
            self.kind = "array"
            self.columns = [str(c) for c in columns]
            self.dtypes = {c: np.dtype(data.dtype) for c in self.columns}
            self._parts = list(data.rechunk({1: -1}).to_delayed()[:, 0])
        elif isinstance(data, Mapping):
            self.kind = "columns"
            self.columns = [str(c) for c in data]
            arrs = [da.asarray(v) for v in data.values()]
            for c, a in zip(self.columns, arrs):
                if a.ndim != 1:
                    raise DataError(f"column {c!r} must be a 1-D dask array, got shape {a.shape}")
            lengths = {a.shape[0] for a in arrs}
            if len(lengths) > 1:
                raise DataError(f"dask columns have different lengths {sorted(lengths)}")
            chunks = arrs[0].chunks
            arrs = [a if a.chunks == chunks else a.rechunk(chunks) for a in arrs]
            self.dtypes = {c: np.dtype(a.dtype) for c, a in zip(self.columns, arrs)}
            blocks = [list(a.to_delayed()) for a in arrs]
            self._parts = [dict(zip(self.columns, row)) for row in zip(*blocks)]
        else:
            raise DataError("distributed data must be a dask DataFrame, a 2-D dask array or a "
                            f"dict of 1-D dask arrays, got {type(data).__name__}")

    @property
    def n(self) -> int:
        """Number of partitions."""
        return len(self._parts)

    def delayed(self, fn: Callable, *args: Any) -> list:
        """One lazy ``fn(checked_columns, i, *args)`` per partition ``i``."""
        import dask

        call = dask.delayed(_checked_call, pure=True)
        return [call(fn, self.kind, self.columns, self.dtypes, part, i, *args)
                for i, part in enumerate(self._parts)]


def _checked_call(fn, kind, columns, dtypes, part, i, *args):
    return fn(_columns_of(kind, columns, dtypes, part, i), i, *args)


def _columns_of(kind: str, columns: list[str], dtypes: dict[str, Any], part: Any,
                i: int) -> dict[str, np.ndarray]:
    """The partition's columns as numpy arrays, checked against the declared columns/dtypes."""
    if kind == "dataframe":
        got = [str(c) for c in part.columns]
        missing = [c for c in columns if c not in got]
        extra = [c for c in got if c not in columns]
        if missing or extra:
            c = (missing or extra)[0]
            what = "lacks column" if missing else "has a column not in the collection,"
            raise DataError(f"partition {i} {what} {c!r}: its columns are {got}, the "
                            f"collection's {columns}")
        for c, t in part.dtypes.items():
            if t != dtypes[str(c)]:
                raise DataError(f"partition {i}: column {str(c)!r} has dtype {t}, expected "
                                f"{dtypes[str(c)]} (the dtype the collection declares; every "
                                "partition must agree)")
        return {str(c): part[c].to_numpy() for c in part.columns}
    elif kind == "array":
        a = np.asarray(part)
        if a.ndim != 2 or a.shape[1] != len(columns):
            raise DataError(f"partition {i} has shape {a.shape}; expected {len(columns)} "
                            f"columns {columns}")
        cols = {c: a[:, j] for j, c in enumerate(columns)}
    else:
        cols = {c: np.asarray(part[c]) for c in columns}
    for c in columns:
        want, got_t = dtypes[c], cols[c].dtype
        if got_t != want:
            raise DataError(f"partition {i}: column {c!r} has dtype {got_t}, expected {want} "
                            "(the dtype the collection declares; every partition must agree)")
    return cols


def gather(data: Any, learner: str, client: Any = None, reason: str | None = None) -> Any:
    """A dask collection computed into memory (a DataFrame, a dict of arrays or an array),
    with an :class:`~spmn.errors.InMemoryWarning`: the documented fallback of the learners
    whose statistics are not all counts (``reason`` says why; e.g. continuous columns)."""
    import warnings

    from ..errors import InMemoryWarning

    keys = list(data) if isinstance(data, Mapping) else None
    out = compute(list(data.values()) if keys is not None else data, client)
    if keys is not None:
        out = dict(zip(keys, out))
    n = len(next(iter(out.values()))) if keys is not None else len(out)
    why = reason or "its statistics are not all counts"
    warnings.warn(f"{learner}: {why}, so the dask collection is gathered into memory "
                  f"({n:,} rows): a fit beyond one machine needs count statistics (discrete "
                  "columns)", InMemoryWarning, stacklevel=3)
    return out


# ---------------------------------------------------------------------------- statistics
@dataclass(frozen=True)
class KeyCounts:
    """Sparse counts of non-negative int64 keys: ``keys`` sorted and distinct, ``counts`` >= 1.
    Exact under any merge order (integer sums)."""

    keys: np.ndarray
    counts: np.ndarray

    @classmethod
    def empty(cls) -> KeyCounts:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64))

    def merge(self, other: KeyCounts) -> KeyCounts:
        if not self.keys.size:
            return other
        if not other.keys.size:
            return self
        keys = np.concatenate([self.keys, other.keys])
        uk, inv = np.unique(keys, return_inverse=True)
        cnt = np.bincount(inv.ravel(), np.concatenate([self.counts, other.counts]).astype(
            np.float64), minlength=uk.size)
        return KeyCounts(uk, np.rint(cnt).astype(np.int64))

    def dense(self, size: int) -> np.ndarray:
        out = np.zeros(size, np.int64)
        out[self.keys] = self.counts
        return out

    def between(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """(keys, counts) with ``lo <= key < hi``."""
        a, b = np.searchsorted(self.keys, [lo, hi])
        return self.keys[a:b], self.counts[a:b]


def count_keys(keys: np.ndarray, size: int | None = None) -> KeyCounts:
    """Counts of the int64 ``keys``: a bincount when the key range ``size`` is small next to the
    number of keys, a sort otherwise (same answer)."""
    keys = np.asarray(keys, np.int64).ravel()
    if not keys.size:
        return KeyCounts.empty()
    if size is not None and size <= max(4 * keys.size, 1 << 16):
        c = np.bincount(keys, minlength=size)
        nz = np.flatnonzero(c)
        return KeyCounts(nz.astype(np.int64), c[nz].astype(np.int64))
    uk, cnt = np.unique(keys, return_counts=True)
    return KeyCounts(uk.astype(np.int64), cnt.astype(np.int64))


def _void(X: np.ndarray) -> np.ndarray:
    X = np.ascontiguousarray(X)
    return X.view(np.dtype((np.void, X.dtype.itemsize * X.shape[1]))).ravel()


def row_keys(X: np.ndarray) -> np.ndarray:
    """One comparable key per row of a 2-D array, equal iff the rows are: an int64 code of
    the row when it holds small non-negative integer codes (a fast sort), else its bytes."""
    X = np.ascontiguousarray(X)
    # ravel_multi_index takes at most 64 axes (many constant columns keep the product small)
    if X.dtype.kind in "iu" and X.shape[0] and 0 < X.shape[1] <= 32 and X.min() >= 0:
        dims = X.max(axis=0).astype(np.int64) + 1
        if float(np.prod(dims.astype(np.float64))) < 2.0 ** 62:
            return np.ravel_multi_index(tuple(X.T.astype(np.int64)), tuple(dims))
    return _void(X)


@dataclass(frozen=True)
class DistinctRows:
    """The distinct rows of a 2-D array with their multiplicities (rows of small non-negative
    codes in lexicographic order, others in the byte order of :func:`numpy.unique` on void
    rows; any order merges to the same set)."""

    rows: np.ndarray
    counts: np.ndarray

    @classmethod
    def of(cls, X: np.ndarray, counts: np.ndarray | None = None) -> DistinctRows:
        X = np.ascontiguousarray(X)
        if X.shape[0] == 0:
            return cls(X.reshape(0, X.shape[1]), np.zeros(0, np.int64))
        w = np.ones(X.shape[0], np.int64) if counts is None else np.asarray(counts, np.int64)
        if X.dtype.kind in "iu" and 0 < X.shape[1] <= 32 and X.min() >= 0:  # numpy: <= 64 axes
            dims = X.max(axis=0).astype(np.int64) + 1
            if float(np.prod(dims.astype(np.float64))) < 2.0 ** 62:  # small codes: one int key
                key = np.ravel_multi_index(tuple(X.T.astype(np.int64)), tuple(dims))
                size = int(np.prod(dims))
                if counts is None:
                    kc = count_keys(key, size)
                    uk, cnt = kc.keys, kc.counts
                else:
                    uk, inv = np.unique(key, return_inverse=True)
                    cnt = np.rint(np.bincount(inv.ravel(), w.astype(np.float64))).astype(np.int64)
                rows = np.stack(np.unravel_index(uk, tuple(dims)), axis=1).astype(X.dtype)
                return cls(rows, cnt)
        _, first, inv = np.unique(_void(X), return_index=True, return_inverse=True)
        cnt = np.bincount(inv.ravel(), w.astype(np.float64), minlength=first.size)
        return cls(X[first], np.rint(cnt).astype(np.int64))

    def merge(self, other: DistinctRows) -> DistinctRows:
        if not self.rows.shape[0]:
            return other
        if not other.rows.shape[0]:
            return self
        return DistinctRows.of(np.concatenate([self.rows, other.rows]),
                               np.concatenate([self.counts, other.counts]))


@dataclass(frozen=True)
class FirstRows:
    """The distinct rows of a 2-D array with the position of their first occurrence
    (``first``: int64 sort keys, e.g. ``(partition << 40) | row``): merged, the earliest wins,
    so :meth:`ordered` gives the rows in order of first occurrence over the whole collection."""

    rows: np.ndarray
    first: np.ndarray

    @classmethod
    def of(cls, X: np.ndarray, pos: np.ndarray) -> FirstRows:
        X = np.ascontiguousarray(X)
        pos = np.asarray(pos, np.int64)
        if X.shape[0] == 0:
            return cls(X.reshape(0, X.shape[1]), np.zeros(0, np.int64))
        _, idx, inv = np.unique(row_keys(X), return_index=True, return_inverse=True)
        first = np.full(idx.size, np.iinfo(np.int64).max, np.int64)
        np.minimum.at(first, inv.ravel(), pos)
        return cls(X[idx], first)

    def merge(self, other: FirstRows) -> FirstRows:
        if not self.rows.shape[0]:
            return other
        if not other.rows.shape[0]:
            return self
        return FirstRows.of(np.concatenate([self.rows, other.rows]),
                            np.concatenate([self.first, other.first]))

    def ordered(self) -> np.ndarray:
        """The rows in order of first occurrence."""
        return self.rows[np.argsort(self.first, kind="stable")]


#: Binary exponents of float64 (math.frexp: -1073 .. 1024) shifted to bins 1 .. 2098.
_EXP_SHIFT, _EXP_BINS = 1074, 2100
#: ``x = M 2^(bin - _EXP_SHIFT - 53)`` with M an integer below 2^53 in magnitude.
_DENOM_BITS = _EXP_SHIFT + 53


@njit(cache=True, nogil=True)
def _exact_bins(V):
    """Per column and binary exponent, the sums of the 53-bit integer mantissas, split into a
    high part (M >> 26) and a low one (0 <= lo < 2^26): exact in int64 for < 2^36 rows."""
    n, q = V.shape
    acc = np.zeros((q, _EXP_BINS, 2), np.int64)
    for i in range(n):
        for j in range(q):
            x = V[i, j]
            if x == 0.0:
                continue
            m, e = math.frexp(x)
            M = np.int64(m * 9007199254740992.0)  # m * 2^53: exact
            hi = M >> 26
            acc[j, e + _EXP_SHIFT, 0] += hi
            acc[j, e + _EXP_SHIFT, 1] += M - (hi << 26)
    return acc


@dataclass(frozen=True)
class ExactSums:
    """Exact sums of the columns of a float64 array: ``num[j] / 2^1127`` is the sum of column
    j with no rounding at all (Python integers), so merges in any order give the same sums,
    and :meth:`values` rounds each once (correctly) to float64."""

    num: tuple[int, ...]

    @classmethod
    def of(cls, V: np.ndarray) -> ExactSums:
        V = np.asarray(V, np.float64)
        if V.ndim != 2:
            raise DataError(f"ExactSums takes a 2-D array (rows x quantities), got {V.shape}")
        if not np.all(np.isfinite(V)):
            raise DataError("ExactSums takes finite values only (NaN or infinity met)")
        num = [0] * V.shape[1]
        for lo in range(0, max(V.shape[0], 1), 1 << 30):
            acc = _exact_bins(np.ascontiguousarray(V[lo:lo + (1 << 30)]))
            for j in range(V.shape[1]):
                for b in np.flatnonzero(acc[j].any(axis=1)).tolist():
                    num[j] += ((int(acc[j, b, 0]) << 26) + int(acc[j, b, 1])) << b
        return cls(tuple(num))

    def merge(self, other: ExactSums) -> ExactSums:
        if len(self.num) != len(other.num):
            raise DistributedError(f"exact sums of {len(self.num)} and {len(other.num)} "
                                   "quantities met in a merge")
        return ExactSums(tuple(a + b for a, b in zip(self.num, other.num)))

    def values(self) -> np.ndarray:
        """The sums, each correctly rounded to float64 (beyond its range: +-inf)."""
        from fractions import Fraction

        def rounded(v: int) -> float:
            try:
                return float(Fraction(v, 1 << _DENOM_BITS))
            except OverflowError:
                return math.inf if v > 0 else -math.inf  # v is too large for float()

        return np.array([rounded(v) for v in self.num], np.float64)


def _merge_value(key: str, a: Any, b: Any) -> Any:
    if isinstance(a, (KeyCounts, DistinctRows, FirstRows, ExactSums)) or \
            callable(getattr(a, "merge", None)):  # e.g. the learners' own exact statistics
        return a.merge(b)
    if isinstance(a, dict):
        return merge_stats(a, b)
    if isinstance(a, tuple) and len(a) == 2 and a[0] == "max":
        return ("max", np.maximum(a[1], b[1]))
    if isinstance(a, tuple) and len(a) == 2 and a[0] == "pairs":
        return ("pairs", merge_pairs(a[1], b[1]))
    if isinstance(a, (np.ndarray, int, float, np.integer, np.floating)):
        return a + b
    raise TypeError(f"cannot merge statistic {key!r} of type {type(a).__name__}")


def merge_stats(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Merge two statistic dicts of the same keys: arrays and numbers add, :class:`KeyCounts`,
    :class:`DistinctRows`, :class:`FirstRows` and :class:`ExactSums` merge, ``("max", array)`` takes the maximum, ``("pairs",
    (values, counts))`` merges the distinct columns of a 2-D float array with their counts."""
    if a.keys() != b.keys():
        raise DistributedError(f"statistics of different shape met in a merge: {sorted(a)} "
                               f"and {sorted(b)}")
    return {k: _merge_value(k, a[k], b[k]) for k in a}


def distinct_pairs(P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct columns of the float (2, m) array ``P``, sorted as :func:`numpy.unique` with
    ``axis=1`` sorts them, and their counts)."""
    if P.shape[1] == 0:
        return P, np.zeros(0, np.int64)
    key = P[0]
    if np.all(key >= 0) and np.all(key == np.rint(key)) and key.max() < 2 ** 40:
        # integer first row: code the second by its sorted distinct values, count one int key
        vals, code = np.unique(P[1], return_inverse=True)
        k = key.astype(np.int64) * vals.size + code.ravel()
        kc = count_keys(k, int(key.max() + 1) * vals.size)
        first, second = np.divmod(kc.keys, vals.size)
        return np.stack([first.astype(np.float64), vals[second]]), kc.counts
    u, inv = np.unique(P, axis=1, return_inverse=True)
    return u, np.bincount(inv.ravel(), minlength=u.shape[1]).astype(np.int64)


def merge_pairs(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]):
    if a[0].shape[1] == 0:
        return b
    if b[0].shape[1] == 0:
        return a
    P = np.concatenate([a[0], b[0]], axis=1)
    u, inv = np.unique(P, axis=1, return_inverse=True)
    cnt = np.bincount(inv.ravel(), np.concatenate([a[1], b[1]]).astype(np.float64),
                      minlength=u.shape[1])
    return u, np.rint(cnt).astype(np.int64)


def _merge_many(*stats: dict[str, Any]) -> dict[str, Any]:
    out = stats[0]
    for s in stats[1:]:
        out = merge_stats(out, s)
    return out


def _tallied(cols, i, fn, n, *args):
    out = fn(cols, i, *args)
    tally = np.zeros(n, np.int64)
    tally[i] = 1
    out[PARTS] = tally
    return out


def reduce_partitions(parts: Partitions, fn: Callable, *args: Any, client: Any = None,
                      split_every: int = 8) -> dict[str, Any]:
    """``fn(columns, i, *args)`` on every partition, merged by a tree reduction of fan-in
    ``split_every`` and computed (see :func:`compute`). Raises :class:`DistributedError` unless
    every partition was counted exactly once."""
    import dask

    if parts.n == 0:
        raise DataError("the dask collection has no partitions")
    level = parts.delayed(_tallied, fn, parts.n, *args)
    merge = dask.delayed(_merge_many, pure=True)
    k = max(2, int(split_every))
    while len(level) > 1:
        level = [merge(*level[j:j + k]) if len(level[j:j + k]) > 1 else level[j]
                 for j in range(0, len(level), k)]
    out = compute(level[0], client)
    tally = out.pop(PARTS)
    if tally.shape != (parts.n,) or not np.all(tally == 1):
        bad = np.flatnonzero(tally != 1)[:5].tolist() if tally.shape == (parts.n,) else "?"
        raise DistributedError(f"the merged statistics do not count each of the {parts.n} "
                               f"partitions once (partitions {bad}); no model was made")
    return out


def compute(obj: Any, client: Any = None) -> Any:
    """Compute a dask object on ``client`` (a ``distributed.Client``), else on the active
    client, else with dask's configured scheduler. A lost worker (after dask's retries) or a
    failed cluster is a :class:`DistributedError`; spmn's own errors pass through."""
    import dask

    if client is None and "distributed" in sys.modules:
        from distributed import default_client
        try:
            client = default_client()
        except ValueError:  # no active client
            client = None
    try:
        if client is not None:
            return client.compute(obj).result()
        return dask.compute(obj)[0]
    except (DataError, DistributedError):
        raise
    except Exception as exc:
        name = type(exc).__name__
        if name in ("KilledWorker", "CommClosedError", "FutureCancelledError", "CancelledError",
                    "TimeoutError"):
            raise DistributedError(f"the distributed fit failed: {name}: {exc}. A worker was "
                                   "lost more often than the scheduler retries a task "
                                   "('distributed.scheduler.allowed-failures'), or the cluster "
                                   "went away; no model was made") from exc
        raise


# ---------------------------------------------------------------------------- quantiles
def order_statistics(values: np.ndarray, counts: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """The ``idx``-th smallest entries (0-based) of the data holding ``values[i]`` (sorted,
    distinct) ``counts[i]`` times."""
    ends = np.cumsum(counts)
    return values[np.searchsorted(ends, np.asarray(idx, np.int64), side="right")]


def quantiles_from_counts(values: np.ndarray, counts: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``numpy.quantile(data, q)`` (the default linear method, same float operations) of the
    data holding each sorted distinct ``values[i]`` ``counts[i]`` times, without expanding it."""
    values = np.asarray(values, np.float64)
    counts = np.asarray(counts, np.int64)
    n = int(counts.sum())
    q = np.asarray(q, np.float64)
    virtual = (n - 1) * q
    prev = np.floor(virtual)
    nxt = prev + 1
    above = virtual >= n - 1
    prev[above], nxt[above] = n - 1, n - 1
    below = virtual < 0
    prev[below], nxt[below] = 0, 0
    a = order_statistics(values, counts, prev.astype(np.int64))
    b = order_statistics(values, counts, nxt.astype(np.int64))
    # numpy's gamma is virtual - previous index; out of bounds a == b, so it does not matter
    gamma = virtual - np.where(above, -1.0, prev)
    diff = b - a
    out = a + diff * gamma
    return np.where(gamma >= 0.5, b - diff * (1 - gamma), out)
