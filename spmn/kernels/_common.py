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
import weakref
from dataclasses import dataclass, field

import numpy as np

from ..errors import DataError
from ..flat import (
    K_CATEGORICAL,
    K_GAUSSIAN,
    K_HISTOGRAM,
    K_INTERFACE,
    K_MAX,
    K_MVGAUSSIAN,
    K_PRODUCT,
    K_SUM,
    K_UTILITY_DISCRETE,
    K_UTILITY_HISTOGRAM,
    FlatCircuit,
)
from ..gaussian import covariance_problem
from . import reference

#: Bytes of per-thread work arrays (L and U) a chunk may take; fixes the rows per chunk.
WORK_BYTES = 1 << 23
#: A pass of more edge x rows than this shows a progress bar (when tqdm is installed).
PROGRESS_CELLS = 4_000_000_000
#: Rows handed to one compiled call at most when a progress bar is shown.
BLOCK_CELLS = 1 << 28
#: Edge x rows of work a thread must get before a pass starts another one (a smaller batch
#: runs on the calling thread: waking a team costs more than the work, and far more on a loaded
#: machine; no result depends on the thread count).
THREAD_CELLS = 1 << 20


@dataclass(frozen=True, eq=False)
class Prepared:
    """Per-circuit tables handed to the raw kernels (cached per FlatCircuit)."""

    circ: tuple          # kind, cptr, cidx, lw, var, pptr, params, ulive, mode_logp, mode_val,
                         # gid, gptr, gmem (sum groups, see sum_groups), fthr, fchk (the
                         # fast path's bounds: fast_thresholds, fast_checks), lcptr, lcidx
                         # (children with a utility below them), fuse (fused_leaves)
    has_max: bool
    chunk: int           # rows per chunk
    cost: int            # edges + nodes: work per row
    n_draws: int = 0     # columns of the normal draws z of a sampling pass
    views: dict = field(default_factory=dict, repr=False)  # per backend: its tables of circ


_PREPARED: "weakref.WeakKeyDictionary[FlatCircuit, Prepared]" = weakref.WeakKeyDictionary()


def chunk_rows(n_nodes: int) -> int:
    """Rows per chunk: a power of two in [16, 256] with 2 x nodes x rows x 8 B <= WORK_BYTES
    (at least 16: the Cython passes take rows 16 at a time)."""
    r = 256
    while r > 16 and 16 * n_nodes * r > WORK_BYTES:
        r //= 2
    return r


def _leaf_layout_error(flat: FlatCircuit, i: int) -> str | None:
    k = int(flat.kind[i])
    p = flat.leaf_params(i)
    size = p.shape[0]
    if k == K_CATEGORICAL:
        want = int(flat.var_card[flat.var[i]])
        return None if size == want and want > 0 else f"{size} params for a {want}-valued variable"
    if k == K_GAUSSIAN:
        return None if size == 3 and p[1] > 0 else "expected mean, std > 0, log_norm"
    if k in (K_HISTOGRAM, K_UTILITY_HISTOGRAM, K_UTILITY_DISCRETE):
        m = int(p[0]) if size else 0
        want = 2 + 2 * m + (k != K_UTILITY_DISCRETE)
        return None if m >= 1 and p[0] == m and size == want else f"{size} params, expected {want}"
    if k == K_INTERFACE:
        ok = size == 1 and 0 <= p[0] < flat.n_interface and p[0] == int(p[0])
        return None if ok else f"slot {p[:1].tolist()} outside 0..{flat.n_interface - 1}"
    if k == K_MVGAUSSIAN:
        return _mvg_layout_error(flat, i, p)
    return "a leaf kind the compiled kernels do not evaluate"


def _mvg_layout_error(flat: FlatCircuit, i: int, p: np.ndarray) -> str | None:
    """Layout of a multivariate Gaussian block ``d, zoff, c_0..c_{d-1}, μ, Σ`` (the draw
    offset ``zoff`` is checked against ``n_draws`` by :func:`prepare`, once every ``d`` is)."""
    size = p.shape[0]
    if size < 1 or not np.isfinite(p[0]) or p[0] != int(p[0]) or p[0] < 1:
        return f"d = {p[:1].tolist()} is not a whole number >= 1"
    d = int(p[0])
    if size != 2 + 2 * d + d * d:
        return f"{size} params, expected {2 + 2 * d + d * d} for d = {d}"
    if not np.all(np.isfinite(p)):
        return "parameters must be finite"
    zoff = p[1]
    if zoff != int(zoff) or zoff < 0:
        return f"draw offset zoff = {zoff!r} is not a whole number >= 0"
    cols = p[2:2 + d]
    if np.any(cols != np.floor(cols)) or np.any(cols < 0) or np.any(cols >= flat.n_vars):
        return f"columns {cols.tolist()} outside 0..{flat.n_vars - 1}"
    ci = cols.astype(np.int64)
    if np.unique(ci).size != d:
        return f"columns {ci.tolist()} repeat"
    if np.any(flat.var_card[ci] != 0):
        return f"columns {ci.tolist()} include a discrete variable"
    if ci[0] != flat.var[i]:
        return f"var = {int(flat.var[i])} is not its first column {int(ci[0])}"
    cov = p[2 + 2 * d:].reshape(d, d)
    if np.any(cov != cov.T):
        return "covariance is not symmetric"
    err = covariance_problem(p[2 + d:2 + 2 * d], cov)
    if err:
        return err
    try:
        np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:  # pragma: no cover - covariance_problem catches it first
        return "covariance is not positive definite"
    return None


def sum_groups(kind: np.ndarray, cptr: np.ndarray, cidx: np.ndarray, min_size: int = 2):
    """Sum nodes with identical child lists (the K sums of one region of a layered circuit),
    ``min_size`` or more of them, form a group that the upward passes evaluate together at its
    first member: one exp per child and row for all members instead of one per edge and row.

    Returns ``gid`` (-1: evaluated alone, -2: evaluated with its group's head, ``q >= 0``: head
    of group ``q``) and ``gptr``/``gmem`` (members of group q: ``gmem[gptr[q]:gptr[q + 1]]``,
    ascending, head first). The head is the lowest index, so every child comes before it."""
    by: dict[bytes, list[int]] = {}
    for i in np.flatnonzero(kind == K_SUM).tolist():
        by.setdefault(cidx[cptr[i]:cptr[i + 1]].tobytes(), []).append(i)
    gid = np.full(kind.shape[0], -1, np.int64)
    gptr, gmem = [0], []
    for mem in sorted((m for m in by.values() if len(m) >= min_size), key=lambda m: m[0]):
        gid[mem[0]] = len(gptr) - 1
        gid[mem[1:]] = -2
        gmem.extend(mem)
        gptr.append(len(gmem))
    return gid, np.array(gptr, np.int64), np.array(gmem, np.int64)


#: log2 of the fast path's bounds: every node value of a fast row is 0 or in [2^FAST_LO, 2^500].
FAST_LO = -1000.0


def fast_thresholds(kind: np.ndarray, cptr: np.ndarray, cidx: np.ndarray,
                    lw: np.ndarray) -> np.ndarray:
    """Per node, the least nonzero value T_i the linear fast path of the (L, U) pass accepts
    (csrc/_cfast.h): 2^-1000, raised to 2^(-1000/d) for a child of a product of d children
    (every partial product stays >= 2^-1000), to 2^-1022 / w for a child of a sum by an edge of
    weight w > 0 (no term w p underflows), and to a max node's own bound for its children (they
    are its value). A row where a node breaks its bound takes the scaled pass instead."""
    n = kind.shape[0]
    deg = np.diff(cptr)
    parent = np.repeat(np.arange(n), deg)
    t = np.full(n, FAST_LO)
    pk = kind[parent] if parent.size else parent
    prod = pk == K_PRODUCT
    np.maximum.at(t, cidx[prod], FAST_LO / deg[parent[prod]])
    sm = (pk == K_SUM) & (lw > -np.inf)
    with np.errstate(invalid="ignore"):
        np.maximum.at(t, cidx[sm], -1022.0 - lw[sm] / np.log(2.0))
    for i in np.flatnonzero(kind == K_MAX)[::-1].tolist():  # parents before children
        ch = cidx[cptr[i]:cptr[i + 1]]
        t[ch] = np.maximum(t[ch], t[i])
    with np.errstate(over="ignore"):
        return np.exp2(np.where(np.isnan(t), np.inf, t))


def fast_checks(flat: FlatCircuit, fthr: np.ndarray) -> np.ndarray:
    """Per node, 1 where the fast path must test the node's values against its bounds, 0 where
    interval arithmetic on the circuit proves every nonzero value lies in [T_i, 2^500] (then
    the test could never fail, so skipping it changes no result). log2 bounds (lo, hi) of the
    nonzero values, widened by 1 per node for rounding: the probabilities (or bin densities) of
    a categorical, histogram or utility leaf and 1 (a NaN: marginalized), an interface leaf 1,
    Gaussian leaves unbounded; products add, sums take
    min (w lo) and sum (w hi), max nodes min and max."""
    n = flat.n_nodes
    kind, cptr, cidx, lw, pptr = (flat.kind, flat.child_ptr, flat.child_idx, flat.log_weight,
                                  flat.param_ptr)
    lt = np.log2(np.maximum(fthr, 1e-300))
    lo = np.full(n, -np.inf)
    hi = np.full(n, np.inf)
    l2 = lw / np.log(2.0)
    for i, k in enumerate(kind.tolist()):
        a0, a1 = int(cptr[i]), int(cptr[i + 1])
        ch = cidx[a0:a1]
        if k in (K_CATEGORICAL, K_UTILITY_DISCRETE, K_HISTOGRAM, K_UTILITY_HISTOGRAM):
            p = flat.params[pptr[i]:pptr[i + 1]]
            if k == K_UTILITY_DISCRETE:  # k, mean, k values, k log p
                p = p[2 + int(p[0]):2 + 2 * int(p[0])]
            elif k != K_CATEGORICAL:  # m, mean, m + 1 breaks, m log densities
                p = p[3 + int(p[0]):3 + 2 * int(p[0])]
            p = p[np.isfinite(p)] / np.log(2.0)
            lo[i] = min(p.min(), 0.0) - 1.0 if p.size else -np.inf
            hi[i] = max(p.max(), 0.0) + 1.0 if p.size else np.inf
        elif k == K_INTERFACE:
            lo[i], hi[i] = -1.0, 1.0
        elif k == K_PRODUCT:
            lo[i], hi[i] = lo[ch].sum() - 1.0, hi[ch].sum() + 1.0
        elif k == K_SUM:
            w = l2[a0:a1]
            live = w > -np.inf
            if live.any():
                lo[i] = (w[live] + lo[ch[live]]).min() - 1.0
                hi[i] = (w[live] + hi[ch[live]]).max() + np.log2(live.sum()) + 1.0
            else:
                lo[i], hi[i] = 0.0, 0.0
        elif k == K_MAX and a1 > a0:
            lo[i], hi[i] = lo[ch].min(), hi[ch].max()
    with np.errstate(invalid="ignore"):
        safe = (lo >= lt) & (hi <= 500.0)
    return (~safe).astype(np.int8)


def fused_leaves(flat: FlatCircuit, fchk: np.ndarray) -> np.ndarray:
    """Per node: 1 for a product whose children are all categorical leaves that no other node
    reads and whose bounds are proven (``fchk`` 0), 2 for those leaves, else 0. The fast path
    evaluates such a product straight from the leaves' tables (one lookup and multiply per child
    and row, the values the leaves would give) and skips the leaves, unless a caller reads one."""
    n = flat.n_nodes
    kind, cptr, cidx = flat.kind, flat.child_ptr, flat.child_idx
    parents = np.bincount(cidx, minlength=n)
    ok = (kind == K_CATEGORICAL) & (parents == 1) & (fchk == 0)
    out = np.zeros(n, np.int8)
    for i in np.flatnonzero(kind == K_PRODUCT).tolist():
        ch = cidx[cptr[i]:cptr[i + 1]]
        if ch.size and ok[ch].all():
            out[i] = 1
            out[ch] = 2
    return out


def _categorical_modes(flat: FlatCircuit, mode_logp: np.ndarray, mode_val: np.ndarray) -> bool:
    """Layout check and (max log p, first argmax) of every categorical leaf at once, grouped by
    the number of values (what :func:`reference.leaf_mode` gives one leaf at a time). False
    when some block is malformed: the caller then checks leaf by leaf and names it."""
    cat = np.flatnonzero(flat.kind == K_CATEGORICAL)
    if cat.size == 0:
        return True
    p0 = flat.param_ptr[cat]
    size = flat.param_ptr[cat + 1] - p0
    if np.any(size != flat.var_card[flat.var[cat]]) or np.any(size <= 0):
        return False
    for k in np.unique(size).tolist():
        sel = size == k
        block = flat.params[p0[sel][:, None] + np.arange(k)]
        j = np.argmax(block, axis=1)
        mode_logp[cat[sel]] = block[np.arange(j.size), j]
        mode_val[cat[sel]] = j
    return True


def prepare(flat: FlatCircuit) -> Prepared:
    """Check the leaf parameter layout once and build the kernels' tables (cached)."""
    got = _PREPARED.get(flat)
    if got is not None:
        return got
    n = flat.n_nodes
    kind = flat.kind
    mode_logp = np.full(n, np.nan)
    mode_val = np.full(n, np.nan)
    cat = _categorical_modes(flat, mode_logp, mode_val)
    live = [False] * n
    cptr = flat.child_ptr.tolist()
    cidx = flat.child_idx.tolist()
    for i, k in enumerate(kind.tolist()):
        if k > K_MAX:
            if k != K_CATEGORICAL or not cat:
                err = _leaf_layout_error(flat, i)
                if err:
                    raise DataError(f"FlatCircuit leaf {i} ({k=}) has a malformed parameter "
                                    f"block: {err}")
                if k != K_INTERFACE:
                    mode_logp[i], mode_val[i] = reference.leaf_mode(flat, i)
            live[i] = k in (K_UTILITY_DISCRETE, K_UTILITY_HISTOGRAM, K_INTERFACE)
        else:
            live[i] = any(live[c] for c in cidx[cptr[i]:cptr[i + 1]])
    ulive = np.array(live, np.int8)
    # per node, its children with a utility below them (a product's U adds only those)
    lmask = ulive[flat.child_idx].astype(bool)
    lcidx = np.ascontiguousarray(flat.child_idx[lmask])
    parent = np.repeat(np.arange(n), np.diff(flat.child_ptr))
    lcptr = np.concatenate([[0], np.cumsum(np.bincount(parent[lmask], minlength=n))])
    lcptr = lcptr.astype(np.int64)
    n_draws = flat.n_draws  # every d is valid here
    for i in np.flatnonzero(kind == K_MVGAUSSIAN).tolist():
        d, zoff = int(flat.params[flat.param_ptr[i]]), int(flat.params[flat.param_ptr[i] + 1])
        if n + zoff + d - 1 > n_draws:
            raise DataError(f"FlatCircuit leaf {i} (k={K_MVGAUSSIAN}) has a malformed parameter "
                            f"block: draw offset zoff = {zoff} puts its {d - 1} extra draw "
                            f"columns past the {n_draws} columns of z")
    gid, gptr, gmem = sum_groups(flat.kind, flat.child_ptr, flat.child_idx)
    fthr = fast_thresholds(flat.kind, flat.child_ptr, flat.child_idx, flat.log_weight)
    fchk = fast_checks(flat, fthr)
    circ = (flat.kind, flat.child_ptr, flat.child_idx, flat.log_weight, flat.var,
            flat.param_ptr, flat.params, ulive, mode_logp, mode_val, gid, gptr, gmem, fthr,
            fchk, lcptr, lcidx, fused_leaves(flat, fchk))
    prep = Prepared(circ=circ, has_max=bool(np.any(kind == K_MAX)), chunk=chunk_rows(n),
                    cost=flat.n_edges + n, n_draws=n_draws)
    _PREPARED[flat] = prep
    return prep


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
        which also takes the draws: ``run(X, values, u, z)``) on ``flat``: a function
        ``run(X, values=None)`` for evidence the caller has already validated (a
        C-contiguous float64 (rows, variables) array of valid codes, as
        :meth:`spmn.schema.Schema.validate_data` returns) and interface ``values`` checked by
        the caller (None: zeros). It returns what the protocol method of the same name returns,
        by the same raw kernel with the default threads and chunks, but checks nothing again
        and does no Python work that depends on the circuit's size: the prepared tables, the
        backend's view of them, the root and the zero values are looked up once, here."""
        key = (self.name, query)
        prep = prepare(flat)
        got = prep.views.get(key)
        if got is None:
            got = prep.views.setdefault(key, self._make_plan(flat, prep, query))
        return got

    def _make_plan(self, flat: FlatCircuit, prep: Prepared, query: str):
        # (T, R) as split_rows gives them; a batch of <= 16 rows is one chunk of its own size
        raw, circ, cost = self.raw, self._circ(prep), prep.cost
        zeros = np.zeros(flat.n_interface)
        root = np.array([flat.root], np.int64)
        noU = np.empty((0, 1))
        cu_ll = prep.has_max
        small = PROGRESS_CELLS // max(cost, 1)  # rows below this never show a progress bar

        def blocks(rows, R):
            return ((0, rows),) if rows <= small else self._blocks(prep, rows, R, None)

        if query in ("log_likelihood", "meu"):
            want_u = query == "meu"

            def run(X, values=None):
                rows = X.shape[0]
                T, R = (1, max(rows, 1)) if rows <= 16 else split_rows(prep, rows)
                v = zeros if values is None else values
                out = np.empty((rows, 1))
                for lo, hi in blocks(rows, R):
                    if want_u:
                        raw.upward(circ, X[lo:hi], v, root, np.empty((hi - lo, 1)), out[lo:hi],
                                   True, True, R, T)
                    else:
                        raw.upward(circ, X[lo:hi], v, root, out[lo:hi], noU, cu_ll, False, R, T)
                return out[:, 0]
        elif query == "policy":
            def run(X, values=None):
                rows = X.shape[0]
                T, R = (1, max(rows, 1)) if rows <= 16 else split_rows(prep, rows)
                v = zeros if values is None else values
                out = np.full(X.shape, np.nan)
                for lo, hi in blocks(rows, R):
                    raw.policy(circ, X[lo:hi], v, out[lo:hi], R, T)
                return out
        elif query == "sample":
            def run(X, values=None, u=None, z=None):
                """Ancestral sampling with the caller's draws ``u`` (rows, nodes) and ``z``
                (rows, ``n_draws``), C-contiguous float64, not checked again."""
                rows = X.shape[0]
                T, R = (1, max(rows, 1)) if rows <= 16 else split_rows(prep, rows)
                v = zeros if values is None else values
                out = X.copy()
                for lo, hi in blocks(rows, R):
                    raw.sample(circ, X[lo:hi], v, u[lo:hi], z[lo:hi], out[lo:hi], prep.has_max,
                               R, T)
                return out
        elif query == "mpe":
            def run(X, values=None):
                rows = X.shape[0]
                T, R = (1, max(rows, 1)) if rows <= 16 else split_rows(prep, rows)
                out = X.copy()
                logp = np.empty(rows)
                for lo, hi in blocks(rows, R):
                    raw.mpe(circ, X[lo:hi], out[lo:hi], logp[lo:hi], R, T)
                return out, logp
        else:
            raise ValueError(f"no plan for query {query!r}")
        return run
