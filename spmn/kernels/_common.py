"""The Python side of the compiled backends: checks, per-circuit tables, chunking, progress.

:class:`Kernels` turns a module of raw kernels (``spmn.kernels._ckernels`` or the Numba entry
points) into the backend protocol of :mod:`spmn.kernels` (``log_likelihood``, ``meu``,
``policy``, ``mpe``, ``sample``, ``node_values``, ``expected_counts``). Before any compiled code
runs it makes the evidence C-contiguous float64 (a Fortran-ordered or float32 array is
converted, never misread) and raises :class:`~spmn.errors.DataError` on a shape mismatch, an
out-of-range code or a malformed leaf parameter block (:func:`prepare`; for a multivariate
Gaussian leaf, ``K_MVGAUSSIAN``: its size, columns, draw offset, finiteness and a positive
definite covariance), naming the leaf. Rows are processed in chunks of :func:`chunk_rows`
rows per thread, so the work memory is O(nodes x chunk x threads) whatever the batch size; a
pass longer than a few seconds shows a tqdm bar. Both backends use the same chunk size, so
their expected counts are summed in the same order (chunk by chunk, in row order, whatever the
number of threads).
:func:`prepare` also finds the sum groups (sums sharing one child list, evaluated together with
one exp per child and row; see :func:`sum_groups`) and the per-node bounds of the linear fast
path of the (L, U) pass (:func:`fast_thresholds`, :func:`fast_checks`): log-likelihood, MEU and
node values run in plain probabilities where every node value of a row provably stays in
[T_i, 2^500], and the rows that break a bound are recomputed by the exact scaled pass
(mantissa and power-of-two exponent per node), so neither path has an exp or log per edge.
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import DataError
from ..flat import FlatCircuit
from ._prepare import (  # noqa: F401 - the per-circuit tables, re-exported for the backends
    FAST_LO, WORK_BYTES, Prepared, chunk_rows, fast_checks, fast_thresholds, fused_leaves,
    prepare, sum_groups)

#: A pass of more edge x rows than this shows a progress bar (when tqdm is installed).
PROGRESS_CELLS = 4_000_000_000
#: Rows handed to one compiled call at most when a progress bar is shown.
BLOCK_CELLS = 1 << 28
#: Edge x rows of work a thread must get before a pass starts another one (a smaller batch
#: runs on the calling thread: waking a team costs more than the work, and far more on a loaded
#: machine; no result depends on the thread count).
THREAD_CELLS = 1 << 20


def default_threads() -> int:
    """Cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def check_evidence(flat: FlatCircuit, X, block: int = 1 << 16) -> np.ndarray:
    """``X`` as a C-contiguous float64 (rows, variables) array with valid discrete codes."""
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != flat.n_vars:
        raise DataError(f"evidence must have shape (rows, {flat.n_vars}), got {X.shape}")
    if X.dtype.kind not in "fiub":
        raise DataError(f"evidence must be numeric, got dtype {X.dtype}")
    X = np.ascontiguousarray(X, dtype=np.float64)
    cols = np.flatnonzero(flat.var_card > 0)
    if cols.size:
        card = flat.var_card[cols].astype(np.float64)
        for lo in range(0, X.shape[0], block):
            x = X[lo:lo + block, cols]
            bad = ~np.isnan(x) & ((x < 0) | (x >= card) | (x != np.floor(x)))
            if bad.any():
                r, j = np.argwhere(bad)[0]
                raise DataError(f"evidence row {lo + r}, column {cols[j]}: {x[r, j]!r} is not a "
                                f"code in 0..{int(card[j]) - 1}")
    return X


def split_rows(prep: Prepared, rows: int, threads: int | None = None,
               chunk: int | None = None) -> tuple[int, int]:
    """(threads T, rows per chunk R) of a pass over ``rows`` rows; neither changes a result.

    A batch smaller than a chunk gets work arrays of its own size (a one-row Bellman pass then
    touches nodes x 1 doubles, not nodes x chunk; a multiple of 16 above 16 rows: the blocked
    passes take rows 16 at a time). Never more threads than chunks, and by default (``threads``
    None) not more than one per :data:`THREAD_CELLS` of work: a small batch runs on the calling
    thread, without the cost of starting and joining a team. An explicit ``threads`` is kept."""
    T = int(threads) if threads else default_threads()
    R = int(chunk) if chunk else min(prep.chunk, max(1, rows) if rows <= 16
                                     else -(-rows // 16) * 16)
    if T < 1 or R < 1:
        raise DataError(f"threads and chunk must be >= 1, got {T}, {R}")
    T = min(T, max(1, -(-rows // R)))
    if not threads:
        T = min(T, max(1, rows * prep.cost // THREAD_CELLS))
    return T, R


def check_values(flat: FlatCircuit, values) -> np.ndarray:
    if values is None:
        return np.zeros(flat.n_interface)
    v = np.ascontiguousarray(np.asarray(values, dtype=np.float64).reshape(-1))
    if v.shape != (flat.n_interface,):
        raise DataError(f"values has {v.size} entries; the circuit has {flat.n_interface} "
                        "interface slots")
    return v


def check_draws(flat: FlatCircuit, a, rows: int, name: str, cols: int | None = None) -> np.ndarray:
    """Draws as a C-contiguous float64 (rows, cols) array; ``cols`` defaults to the nodes
    (``u``); ``z`` has ``flat.n_draws`` columns (more than the nodes with multivariate
    Gaussian leaves)."""
    cols = flat.n_nodes if cols is None else cols
    a = np.ascontiguousarray(a, dtype=np.float64)
    if a.shape != (rows, cols):
        raise DataError(f"{name} must have shape ({rows}, {cols}), got {a.shape}")
    return a


class Kernels:
    """The backend protocol over a module ``raw`` of compiled kernels (see module docstring).

    Every method also takes ``threads`` (default: the cores available), ``chunk`` (rows per
    chunk, default :func:`chunk_rows`) and ``progress`` (None: a bar when the pass is long).
    """

    def __init__(self, raw, name: str) -> None:
        self.raw = raw
        self.name = name

    # ------------------------------------------------------------------ driver
    def _blocks(self, prep: Prepared, rows: int, chunk: int, progress):
        """Yield (lo, hi) row blocks; one block unless a progress bar is shown."""
        cells = rows * prep.cost
        show = progress if progress is not None else cells > PROGRESS_CELLS
        if not show or rows == 0:
            yield 0, rows
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:  # pragma: no cover - optional extra
            yield 0, rows
            return
        step = max(chunk, BLOCK_CELLS // max(prep.cost, 1) // chunk * chunk)
        with tqdm(total=rows, unit="row", unit_scale=True, desc=f"spmn[{self.name}]") as bar:
            for lo in range(0, rows, step):
                hi = min(rows, lo + step)
                yield lo, hi
                bar.update(hi - lo)

    def _circ(self, prep: Prepared):
        """What the raw kernels take for the circuit: their own tables of ``prep.circ`` when the
        backend builds any (``raw.view``, once per circuit), else ``prep.circ``."""
        make = getattr(self.raw, "view", None)
        if make is None:
            return prep.circ
        got = prep.views.get(self.name)
        if got is None:
            got = prep.views.setdefault(self.name, make(prep.circ))
        return got

    def _setup(self, flat, X, threads, chunk):
        prep = prepare(flat)
        X = check_evidence(flat, X)
        T, R = split_rows(prep, X.shape[0], threads, chunk)
        return prep, X, T, R

    def _upward(self, flat, X, values, nodes, want_u, threads, chunk, progress):
        prep, X, T, R = self._setup(flat, X, threads, chunk)
        values = check_values(flat, values)
        nodes = np.ascontiguousarray(nodes, dtype=np.int64).reshape(-1)
        if nodes.size and (nodes.min() < 0 or nodes.max() >= flat.n_nodes):
            raise DataError(f"node indices must lie in 0..{flat.n_nodes - 1}")
        rows = X.shape[0]
        outL = np.empty((rows, nodes.size))
        outU = np.empty((rows, nodes.size)) if want_u else np.empty((0, nodes.size))
        cu = bool(want_u or prep.has_max)
        for lo, hi in self._blocks(prep, rows, R, progress):
            self.raw.upward(self._circ(prep), X[lo:hi], values, nodes, outL[lo:hi],
                            outU[lo:hi] if want_u else outU, cu, want_u, R, T)
        return outL, outU

    # ------------------------------------------------------------------ protocol
    def log_likelihood(self, flat: FlatCircuit, X, *, threads: int | None = None,
                       chunk: int | None = None, progress: bool | None = None) -> np.ndarray:
        """log p(evidence) per row; NaN entries are marginalized."""
        L, _ = self._upward(flat, X, None, [flat.root], False, threads, chunk, progress)
        return L[:, 0]

    def meu(self, flat: FlatCircuit, X, values=None, *, threads: int | None = None,
            chunk: int | None = None, progress: bool | None = None) -> np.ndarray:
        """Root U per row (MEU given the evidence); interface leaves read ``values``."""
        _, U = self._upward(flat, X, values, [flat.root], True, threads, chunk, progress)
        return U[:, 0]

    def node_values(self, flat: FlatCircuit, X, values, nodes, *, threads: int | None = None,
                    chunk: int | None = None, progress: bool | None = None):
        """``(L, U)`` of ``nodes``, each (rows, len(nodes)). The Bellman pass of a recurrent
        template is this MEU pass with the interface leaves bound to ``values``."""
        return self._upward(flat, X, values, nodes, True, threads, chunk, progress)

    def policy(self, flat: FlatCircuit, X, values=None, *, threads: int | None = None,
               chunk: int | None = None, progress: bool | None = None) -> np.ndarray:
        """Decisions of the MEU policy, (rows, variables), NaN where not decided."""
        prep, X, T, R = self._setup(flat, X, threads, chunk)
        values = check_values(flat, values)
        out = np.full(X.shape, np.nan)
        for lo, hi in self._blocks(prep, X.shape[0], R, progress):
            self.raw.policy(self._circ(prep), X[lo:hi], values, out[lo:hi], R, T)
        return out

    def mpe(self, flat: FlatCircuit, X, *, threads: int | None = None, chunk: int | None = None,
            progress: bool | None = None):
        """(completed evidence, log p of the completion) by max-product and argmax descent."""
        prep, X, T, R = self._setup(flat, X, threads, chunk)
        out = X.copy()
        logp = np.empty(X.shape[0])
        for lo, hi in self._blocks(prep, X.shape[0], R, progress):
            self.raw.mpe(self._circ(prep), X[lo:hi], out[lo:hi], logp[lo:hi], R, T)
        return out, logp

    def sample(self, flat: FlatCircuit, X, u, z, values=None, *, threads: int | None = None,
               chunk: int | None = None, progress: bool | None = None) -> np.ndarray:
        """Fill NaN entries by ancestral sampling with the draws ``u[r, i]``, ``z[r, i]``;
        ``u`` is (rows, nodes), ``z`` (rows, ``flat.n_draws``)."""
        prep, X, T, R = self._setup(flat, X, threads, chunk)
        values = check_values(flat, values)
        u = check_draws(flat, u, X.shape[0], "u")
        z = check_draws(flat, z, X.shape[0], "z", prep.n_draws)
        out = X.copy()
        for lo, hi in self._blocks(prep, X.shape[0], R, progress):
            self.raw.sample(self._circ(prep), X[lo:hi], values, u[lo:hi], z[lo:hi], out[lo:hi],
                            prep.has_max, R, T)
        return out

    def expected_counts(self, flat: FlatCircuit, X, values=None, *, threads: int | None = None,
                        chunk: int | None = None, progress: bool | None = None):
        """``(edge_counts (edges,), leaf_stats (len(params),))`` summed over rows; see
        :func:`spmn.kernels.reference.expected_counts`."""
        prep, X, T, R = self._setup(flat, X, threads, chunk)
        values = check_values(flat, values)
        edges = np.zeros(flat.n_edges)
        stats = np.zeros(flat.params.shape[0])
        for lo, hi in self._blocks(prep, X.shape[0], R, progress):
            self.raw.counts(self._circ(prep), X[lo:hi], values, edges, stats, prep.has_max, R, T)
        return edges, stats

    # ------------------------------------------------------------------ query plans
    def plan(self, flat: FlatCircuit, query: str):
        """A cached plan for ``query`` ("log_likelihood", "meu", "policy", "mpe" or "sample",
        which also takes the draws: ``run(X, values, u, z, chk=None)``) on ``flat``: a function
        ``run(X, values=None, chk=None)`` for evidence the caller has converted (a C-contiguous
        float64 (rows, variables) array, as :meth:`spmn.schema.Schema.as_evidence` returns)
        and interface ``values`` checked by the caller (None: zeros). With ``chk`` (the table of
        :meth:`spmn.schema.Schema.check_table`) the kernels check the evidence in their first
        pass over each chunk and ``run`` returns None when some row fails (the caller then
        raises the schema's error); without it the evidence must be valid already (as
        :meth:`~spmn.schema.Schema.validate_data` returns it). It returns what the protocol
        method of the same name returns, by the same raw kernel with the default threads and
        chunks, and does no Python work that depends on the circuit's size: the prepared
        tables, the backend's view of them, the root and the zero values are looked up once,
        here. ``run.checks_evidence`` is True (the reference backend's plans take no ``chk``)."""
        key = (self.name, query)
        prep = prepare(flat)
        got = prep.views.get(key)
        if got is None:
            got = prep.views.setdefault(key, self._make_plan(flat, prep, query))
        return got

    def _make_plan(self, flat: FlatCircuit, prep: Prepared, query: str):
        # (T, R) as split_rows gives them; a batch of <= 16 rows is one chunk of its own size
        # on the calling thread, in one raw call
        raw, circ, cost = self.raw, self._circ(prep), prep.cost
        zeros = np.zeros(flat.n_interface)
        root = np.array([flat.root], np.int64)
        zeros.setflags(write=False)  # read-only: the Numba entries then take them as they are
        root.setflags(write=False)
        noU = np.empty((0, 1))
        cu_ll = prep.has_max
        small = PROGRESS_CELLS // max(cost, 1)  # rows below this never show a progress bar

        def blocks(rows, R):
            return ((0, rows),) if rows <= small else self._blocks(prep, rows, R, None)

        if query in ("log_likelihood", "meu"):
            want_u = query == "meu"

            def run(X, values=None, chk=None):
                rows = X.shape[0]
                v = zeros if values is None else values
                out = np.empty((rows, 1))
                if rows <= 16:
                    if want_u:
                        bad = raw.upward(circ, X, v, root, np.empty((rows, 1)), out, True, True,
                                         max(rows, 1), 1, chk)
                    else:
                        bad = raw.upward(circ, X, v, root, out, noU, cu_ll, False, max(rows, 1),
                                         1, chk)
                    return None if bad else out[:, 0]
                T, R = split_rows(prep, rows)
                for lo, hi in blocks(rows, R):
                    if want_u:
                        bad = raw.upward(circ, X[lo:hi], v, root, np.empty((hi - lo, 1)),
                                         out[lo:hi], True, True, R, T, chk)
                    else:
                        bad = raw.upward(circ, X[lo:hi], v, root, out[lo:hi], noU, cu_ll, False,
                                         R, T, chk)
                    if bad:
                        return None
                return out[:, 0]
        elif query == "policy":
            def run(X, values=None, chk=None):
                rows = X.shape[0]
                v = zeros if values is None else values
                out = np.empty(X.shape)
                out.fill(np.nan)  # np.full's Python wrapper costs more than the fill
                if rows <= 16:
                    return None if raw.policy(circ, X, v, out, max(rows, 1), 1, chk) else out
                T, R = split_rows(prep, rows)
                for lo, hi in blocks(rows, R):
                    if raw.policy(circ, X[lo:hi], v, out[lo:hi], R, T, chk):
                        return None
                return out
        elif query == "sample":
            def run(X, values=None, u=None, z=None, chk=None):
                """Ancestral sampling with the caller's draws ``u`` (rows, nodes) and ``z``
                (rows, ``n_draws``), C-contiguous float64, not checked again."""
                rows = X.shape[0]
                T, R = (1, max(rows, 1)) if rows <= 16 else split_rows(prep, rows)
                v = zeros if values is None else values
                out = X.copy()
                for lo, hi in blocks(rows, R):
                    if raw.sample(circ, X[lo:hi], v, u[lo:hi], z[lo:hi], out[lo:hi],
                                  prep.has_max, R, T, chk):
                        return None
                return out
        elif query == "mpe":
            def run(X, values=None, chk=None):
                rows = X.shape[0]
                T, R = (1, max(rows, 1)) if rows <= 16 else split_rows(prep, rows)
                out = X.copy()
                logp = np.empty(rows)
                for lo, hi in blocks(rows, R):
                    if raw.mpe(circ, X[lo:hi], out[lo:hi], logp[lo:hi], R, T, chk):
                        return None
                return out, logp
        else:
            raise ValueError(f"no plan for query {query!r}")
        run.checks_evidence = True
        return run
