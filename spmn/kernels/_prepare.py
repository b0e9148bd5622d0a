"""Per-circuit tables the compiled backends read: the chunk size, layout checks, fused sum
groups and fast leaf paths (:func:`prepare`, cached per circuit by :class:`._common.Kernels`)."""
from __future__ import annotations

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
