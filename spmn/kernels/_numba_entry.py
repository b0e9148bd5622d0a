"""Raw parallel entry points of the Numba backend (called by :class:`._common.Kernels`).

One parallel kernel, :func:`run`, does every pass (``mode``; UPWARD is the fast path and
scaled fallback of :mod:`._numba_fast`): Numba optimizes each parallel
entry together with all it calls, so one entry compiles several times faster than one per
pass. Rows are split in chunks of ``R`` rows; thread ``t`` of ``T`` takes chunks ``t, t + T,
...`` (``prange`` over the threads, each with its own node-major work arrays), so no result
depends on the thread count. Expected counts are added chunk by chunk in row order (``T``
chunks per parallel wave). ``threads=1`` (and any batch of one chunk, such as the one-row
Bellman pass of a recurrent template) runs :func:`run_serial`, the same loop on the calling
thread without starting a thread team. The Python functions below have the signatures of
``csrc/ckernels.pyx``; they hand :func:`run` read-only views and fixed dummies so that it is
compiled for one signature only.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange, uint64

from ._numba_block import codes4, tr4
from ..flat import K_CATEGORICAL, K_PRODUCT, K_SUM
from ._numba_down import counts_down, mpe_down, policy_down, sample_down
from ._numba_fast import T_Q, cat_tables, edge_tables, fast_chunk, sup_chunk, tolog
from ._numba_math import fexp, flog
from ._numba_up import mpe_up_chunk, up_chunk

UPWARD, POLICY, MPE, SAMPLE, COUNTS = 0, 1, 2, 3, 4


@njit(cache=True, nogil=True, error_model="numpy")
def _load_chunk(X, lo, nr, R, xt, code, chk, needx, kk, ck):
    """Rows lo..lo+nr of X as the passes read them: the int32 codes (variable v, row r at
    v * R + r; NaN is the code ``kk[v]``, the variable's categories, as Cython's load_chunk)
    and, when ``needx`` (some node reads the values themselves), the values transposed into
    xt the same way; 4 x 4 blocks in registers (:func:`._numba_block.codes4`, ``tr4``). With
    a check table ``chk`` (non-empty; ``ck`` is its copy, zeros without one) every cell gets
    the test of :func:`rows_ok` on the way: returns False (codes not to be read) when some
    cell fails it, else True."""
    nv = X.shape[1]
    Xf = X.reshape(X.shape[0] * nv)
    nv4 = nv - nv % 4
    nr4 = nr - nr % 4
    if needx:
        for r in range(0, nr4, 4):
            src = (lo + r) * nv
            for v in range(0, nv4, 4):
                tr4(Xf, src + v, nv, xt, v * R + r, R)
            for v in range(nv4, nv):
                for i in range(4):
                    xt[v * R + r + i] = Xf[src + i * nv + v]
        for r in range(nr4, nr):
            for v in range(nv):
                xt[v * R + r] = Xf[(lo + r) * nv + v]
    bad = 0
    for r in range(0, nr4, 4):
        src = (lo + r) * nv
        for v in range(0, nv4, 4):
            bad |= codes4(Xf, src + v, nv, ck, v, nv, kk, code, v * R + r, R)
    two52 = 4503599627370496.0
    for r in range(nr):  # the cells outside the blocks: the same test and conversion
        v0 = nv4 if r < nr4 else 0
        for v in range(v0, nv):
            d = Xf[(lo + r) * nv + v]
            inr = np.int64(d >= ck[v]) & np.int64(d <= ck[nv + v])  # 0 for NaN
            di = min(two52, d) * ck[2 * nv + v]  # 0 for a finite real
            whole = np.int64(((di + two52) - two52) == di)
            nan_ok = np.int64(math.isnan(d)) & np.int64(ck[3 * nv + v] != 0.0)
            bad |= ((inr & whole) | nan_ok) ^ 1
            code[v * R + r] = kk[v] if math.isnan(d) else np.int32(d)
    return chk.shape[0] == 0 or bad == 0


@njit(cache=True, nogil=True, error_model="numpy")
def _pad_chunk(nr, nb, R, xt, code, card):
    """Rows nr..nb of a loaded chunk as rows with nothing observed (NaN, the NaN code): the fast
    path then runs whole 16-row blocks; the padding rows are valid rows whose results are never
    read (each row's values depend on that row only)."""
    for v in range(xt.shape[0] // R):
        k = card[v] if v < card.shape[0] - 1 else 0
        for r in range(nr, nb):
            xt[v * R + r] = math.nan
            code[v * R + r] = k


@njit(cache=True, nogil=True, error_model="numpy")
def _chunk(mode, circ, X, values, nodes, outL, outU, out, logp, u, z, cu, want_u, lo, nr, R,
           L, U, F, xt, code, tmp, reach, eacc, pacc, Wall, gdeg, stack, seen, fuse, chk, needx,
           kk, ck):
    """One chunk of rows lo..lo+nr of pass ``mode`` with one thread's work arrays. The (L, U)
    pass of UPWARD takes the linear fast path, then the scaled pass (F as the exponents) for
    the rows the fast path flags (their results replace the fast ones); ``fuse``: products of
    categorical leaves may skip their leaves (no caller reads one). Returns 1, outputs
    unwritten, when a row fails the evidence check ``chk`` (non-empty), else 0; ``needx``,
    ``kk``, ``ck``: see :func:`_load_chunk`."""
    n = circ[0].shape[0]
    if not _load_chunk(X, lo, nr, R, xt, code, chk, needx, kk, ck):
        return 1
    if mode == UPWARD:  # a short chunk padded with unobserved rows to whole 16-row blocks
        nb = min(R, (nr + 15) // 16 * 16)
        _pad_chunk(nr, nb, R, xt, code, circ[23])
        fast_chunk(circ, Wall, code, xt, nb, R, values, L, U, tmp, tmp[R:], cu, fuse)
    if mode == MPE:
        mpe_up_chunk(circ, xt, code, nr, R, L, tmp)
        for r in range(nr):
            logp[lo + r] = L[(n - 1) * R + r]
        mpe_down(circ, X, lo, nr, R, L, out, stack, seen)
        return 0
    if mode == UPWARD:
        nbad = 0.0
        for r in range(nr):
            nbad += tmp[r]
        nq = uint64(nodes.shape[0])
        oL = outL.reshape(outL.shape[0] * outL.shape[1])  # flat, unsigned: the loops vectorize
        oU = outU.reshape(outU.shape[0] * outU.shape[1])
        ulo, unr, uR = uint64(lo), uint64(nr), uint64(R)
        for q in range(nq):
            nd = uint64(nodes[q]) * uR
            for r in range(unr):
                oL[(ulo + r) * nq + q] = flog(L[nd + r])
            if want_u:
                for r in range(unr):
                    oU[(ulo + r) * nq + q] = U[nd + r]
        if nbad > 0.0:
            sup_chunk(circ, Wall, code, gdeg, xt, nr, R, values, L, F, U, tmp[R:], cu)
            for q in range(nq):
                nd = uint64(nodes[q]) * uR
                for r in range(unr):
                    if tmp[r] > 0.0:
                        oL[(ulo + r) * nq + q] = tolog(L[nd + r], F[nd + r])
                        if want_u:
                            oU[(ulo + r) * nq + q] = U[nd + r]
        return 0
    W = Wall[0]
    up_chunk(circ, W, xt, code, nr, R, values, L, U, tmp, cu)
    if mode == POLICY:
        policy_down(circ, X, lo, nr, R, L, U, reach, out)
    elif mode == SAMPLE:
        sample_down(circ, X, lo, nr, R, L, U, reach, out, u, z)
    else:
        for e in range(eacc.shape[0]):
            eacc[e] = 0.0
        for p in range(pacc.shape[0]):
            pacc[p] = 0.0
        counts_down(circ, X, lo, nr, R, L, U, F, eacc, pacc)
    return 0


@njit(cache=True, nogil=True, error_model="numpy")
def _buffers(mode, circ, nv, n_edges, n_stats, cu, R, T):
    """Per-thread work arrays (L, U, flows, transposed rows, their int32 codes, scratch, reach,
    count sums) and the MPE walk's stack and visit marks; the per-circuit tables (edge weights,
    sum-group degree) come with ``circ`` (:func:`view`)."""
    n = circ[0].shape[0]
    gptr = circ[11]
    gmax = 0
    for q in range(gptr.shape[0] - 1):
        gmax = max(gmax, gptr[q + 1] - gptr[q])
    gdeg = circ[25][0]
    down = mode == POLICY or mode == SAMPLE
    walk = mode == MPE
    flows = mode == COUNTS or mode == UPWARD
    ntmp = max((10 + 2 * gmax) * R, R + T_Q + 32 * gdeg)
    return (np.empty((T, n * R)), np.zeros((T, (n if cu else 1) * R)),
            np.empty((T, (n if flows else 1) * R)), np.empty((T, nv * R + 1)),
            np.empty((T, nv * R + 1), np.int32),
            np.empty((T, ntmp)), np.empty((T, (n if down else 1) * R), np.uint8),
            np.empty((T, n_edges if mode == COUNTS else 1)),
            np.empty((T, n_stats if mode == COUNTS else 1)), circ[24], gdeg,
            np.empty((T, circ[3].shape[0] + 1 if walk else 1), np.int64),
            np.full((T, n if walk else 1), -1, np.int64))


@njit(cache=True, nogil=True, error_model="numpy")
def _tables(lw, cptr, gptr, gmem):
    """Per-circuit tables: ``Wall`` (rows: W = fexp(log w) for the sum groups, wm, wk of the
    scaled pass, wl of the fast path) and the largest sum group's degree."""
    Wall = edge_tables(lw)
    if gptr.shape[0] > 1:
        for e in range(lw.shape[0]):
            Wall[0, e] = fexp(lw[e])
    gdeg = 0
    for q in range(gptr.shape[0] - 1):
        gdeg = max(gdeg, cptr[gmem[gptr[q]] + 1] - cptr[gmem[gptr[q]]])
    return Wall, np.array([gdeg], np.int64)


@njit(cache=True, nogil=True, error_model="numpy")
def rows_ok(X, lo, nr, chk):
    """The schema's evidence check over rows lo..lo+nr (csrc/_ccheck.h spmn_rows_ok, the same
    test; ``chk``: :meth:`spmn.schema.Schema.check_table`): per column the lowest and highest
    value, 1 for an integer code, 1 where NaN is allowed. True when every cell is valid. The
    passes run the same test as they load each chunk (:func:`_load_chunk`); this row-major
    form is the twin the tests hold both against."""
    nv = X.shape[1]
    Xf = X.reshape(X.shape[0] * nv)
    two52 = 4503599627370496.0
    unv = uint64(nv)  # unsigned offsets: no wraparound test per cell, so LLVM vectorizes it
    bad = 0
    for r in range(uint64(nr)):
        o = (uint64(lo) + r) * unv
        for v in range(unv):
            d = Xf[o + v]
            inr = np.int64(d >= chk[v]) & np.int64(d <= chk[unv + v])  # 0 for NaN
            di = min(two52, d) * chk[uint64(2) * unv + v]  # 0 for a finite real
            whole = np.int64(((di + two52) - two52) == di)
            nan_ok = np.int64(math.isnan(d)) & np.int64(chk[uint64(3) * unv + v] != 0.0)
            bad |= ((inr & whole) | nan_ok) ^ 1
    return bad == 0


@njit(cache=True, nogil=True, error_model="numpy")
def _share(mode, circ, X, values, nodes, outL, outU, out, logp, u, z, cu, want_u, R, T, t, w,
           bufs, chk):
    """Thread ``t``'s chunks: ``t, t + T, ...`` (wave ``w``'s chunk ``w * T + t`` for counts).
    With a check table ``chk`` (non-empty) a chunk whose rows fail it is skipped (checked as it
    is loaded, :func:`_load_chunk`): returns the number of such chunks."""
    Lb, Ub, Fb, xb, cb, tb, rb, eb, pb, Wall, gdeg, stk, seen = bufs
    rows = X.shape[0]
    nch = (rows + R - 1) // R
    c0 = w * T + t if mode == COUNTS else t
    c1 = min(c0 + 1, nch) if mode == COUNTS else nch
    fuse = True  # fused products skip their leaves unless a caller reads one
    for q in range(nodes.shape[0]):
        fuse = fuse and circ[17][nodes[q]] != 2
    nv = X.shape[1]
    card = circ[23]
    kk = np.zeros(nv, np.int32)  # per variable its NaN code (its categories, 0 if none)
    for v in range(min(nv, card.shape[0] - 1)):
        kk[v] = card[v]
    ck = np.zeros(4 * nv)
    if chk.shape[0] > 0:
        ck[:] = chk
    needx = mode != UPWARD or circ[25][1] != 0  # see view(): the (L, U) pass may read codes only
    nbad = 0
    for c in range(c0, c1, T):
        lo = c * R
        nr = min(R, rows - lo)
        nbad += _chunk(mode, circ, X, values, nodes, outL, outU, out, logp, u, z, cu, want_u,
                       lo, nr, R, Lb[t], Ub[t], Fb[t], xb[t], cb[t], tb[t], rb[t], eb[t], pb[t],
                       Wall, gdeg, stk[t], seen[t], fuse, chk, needx, kk, ck)
    return nbad


@njit(cache=True, nogil=True, error_model="numpy")
def _add_counts(w, T, nch, edges, stats, eb, pb):
    """Add wave ``w``'s per-thread counts in chunk order (so the sums do not depend on T)."""
    for t in range(T):
        if w * T + t < nch:
            for e in range(edges.shape[0]):
                edges[e] += eb[t, e]
            for p in range(stats.shape[0]):
                stats[p] += pb[t, p]


@njit(inline="always", cache=True, nogil=True, error_model="numpy")
def _unpack(pk):
    """The circuit's 29 tables (:func:`view`) from their packed form: slices of one buffer per
    dtype (read-only C arrays, the types the kernels are compiled for) and the 2-D ``Wall``."""
    b1, b8, bf, b4, wall, o = pk
    return (b1[o[0]:o[1]], b8[o[2]:o[3]], b8[o[4]:o[5]], bf[o[6]:o[7]], b8[o[8]:o[9]],
            b8[o[10]:o[11]], bf[o[12]:o[13]], b1[o[14]:o[15]], bf[o[16]:o[17]],
            bf[o[18]:o[19]], b8[o[20]:o[21]], b8[o[22]:o[23]], b8[o[24]:o[25]],
            bf[o[26]:o[27]], b1[o[28]:o[29]], b8[o[30]:o[31]], b8[o[32]:o[33]],
            b1[o[34]:o[35]], b8[o[36]:o[37]], bf[o[38]:o[39]], bf[o[40]:o[41]],
            bf[o[42]:o[43]], bf[o[44]:o[45]], b4[o[46]:o[47]], wall, b8[o[50]:o[51]],
            bf[o[52]:o[53]], b8[o[54]:o[55]], bf[o[56]:o[57]])


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def run(mode, pk, X, values, nodes, outL, outU, out, logp, u, z, edges, stats, cu, want_u,
        R, T, chk):
    """Pass ``mode`` over all rows of X on ``T`` threads (see the module docstring); ``pk``:
    the packed tables of :func:`view`; ``chk``: the evidence check's table (empty: none).
    Returns the number of chunks that fail the check (skipped, outputs unwritten)."""
    circ = _unpack(pk)
    nch = (X.shape[0] + R - 1) // R
    bufs = _buffers(mode, circ, X.shape[1], edges.shape[0], stats.shape[0], cu, R, T)
    waves = (nch + T - 1) // T if mode == COUNTS else 1
    bad = np.zeros(T, np.int64)
    for w in range(waves):
        for t in prange(T):
            bad[t] += _share(mode, circ, X, values, nodes, outL, outU, out, logp, u, z, cu,
                             want_u, R, T, t, w, bufs, chk)
        if mode == COUNTS:
            _add_counts(w, T, nch, edges, stats, bufs[7], bufs[8])
    return bad.sum()


@njit(cache=True, nogil=True, error_model="numpy")
def run_serial(mode, pk, X, values, nodes, outL, outU, out, logp, u, z, edges, stats, cu,
               want_u, R, T, chk):
    """:func:`run` on the calling thread (``threads=1``, or a batch of one chunk): no thread
    team is started. The same chunks in the same order, so the same bits."""
    circ = _unpack(pk)
    nch = (X.shape[0] + R - 1) // R
    bufs = _buffers(mode, circ, X.shape[1], edges.shape[0], stats.shape[0], cu, R, 1)
    waves = nch if mode == COUNTS else 1
    bad = 0
    for w in range(waves):
        bad += _share(mode, circ, X, values, nodes, outL, outU, out, logp, u, z, cu, want_u, R,
                      1, 0, w, bufs, chk)
        if mode == COUNTS:
            _add_counts(w, 1, nch, edges, stats, bufs[7], bufs[8])
    return bad


#: Positions of the arguments of run() typed read-only (X, values, nodes, u, z, chk).
_RO_ARGS = frozenset((2, 3, 4, 9, 10, 17))
#: The compiled entry point of run() / run_serial() for the one signature the wrappers below
#: give them, once a call through the dispatcher has compiled or loaded it.
_ENTRY: dict = {}


def _run(*args):
    """``run`` on ``T = args[-2]`` threads, or ``run_serial`` when T is 1; the number of chunks
    that fail the evidence check. The first call goes through Numba's dispatcher (with the
    read-only views of :func:`_ro`, so that one signature is compiled); later calls go to the
    compiled entry point of that signature directly: no type dispatch and no views per call.
    The wrappers below pass that signature's types only (C-contiguous float64 evidence,
    values, draws and outputs, int64 nodes, as :class:`._common.Kernels` makes them)."""
    f = run if args[-2] > 1 else run_serial
    entry = _ENTRY.get(f)
    if entry is not None:
        return int(entry(*args))
    ro = tuple(_ro(a) if i in _RO_ARGS else a for i, a in enumerate(args))
    out = int(f(*ro))
    try:
        from numba import typeof
        _ENTRY[f] = f.overloads[tuple(typeof(a) for a in ro)].entry_point
    except (AttributeError, KeyError):  # pragma: no cover - numba internals changed
        pass
    return out


def _ro(a: np.ndarray) -> np.ndarray:
    """A read-only view (so that run() sees one array type whatever the caller holds)."""
    if not a.flags.writeable:
        return a
    v = a.view()
    v.setflags(write=False)
    return v


#: Length of ``prepare(flat).circ``; :func:`view` appends the Numba backend's own tables.
CIRC_LEN = 18
#: Length of the packed tables :func:`view` returns.
PACK_LEN = 6
_DTYPES = (np.int8, np.int64, np.float64, np.int32)


def view(circ: tuple) -> tuple:
    """The circuit's tables for these kernels, built once per circuit (``Kernels`` caches it and
    hands it to every entry below in place of ``circ``): ``circ`` and, at 18.., the categorical
    tables of :func:`._numba_fast.cat_tables` (tptr, tabF, tabSM, tabSK, tabM, card), the edge
    tables ``Wall``, at 25 the largest sum group's degree, 1 when the (L, U) pass reads
    evidence values, not only codes (a leaf other than categorical, or a max node), and 1 when
    every categorical leaf has at most 7 categories; at 26 ``tabL``, at 27, 28 the fast path's
    tables of 8 doubles per leaf (:func:`_tables8`); packed for the call
    (:func:`_unpack` slices them out again in compiled code): one read-only buffer per dtype
    (int8, int64, float64, int32), ``Wall`` and the offsets, so that a call unboxes 6 arrays,
    not 29 (a one-row call pays for each)."""
    if len(circ) == PACK_LEN:
        return circ
    base = tuple(np.ascontiguousarray(a) for a in circ)
    cats = cat_tables(*(_ro(base[j]) for j in (0, 5, 6, 4, 8)))
    wall, gdeg = _tables(*(_ro(base[j]) for j in (3, 1, 11, 12)))
    kind = base[0]
    codes_only = np.isin(kind, (K_SUM, K_PRODUCT, K_CATEGORICAL)).all()
    tptr8, tab8, cat8 = _tables8(kind, base[5], cats[0], cats[1])
    gdeg = np.array([gdeg[0], 0 if codes_only else 1, cat8], np.int64)
    tables = base + (*cats[:6], wall, gdeg, cats[6], tptr8, tab8)
    parts: list[list[np.ndarray]] = [[], [], [], []]
    size = [0, 0, 0, 0]
    offs = np.zeros(2 * len(tables), np.int64)
    for j, a in enumerate(tables):
        if j == 24:  # Wall, 2-D: passed as it is
            continue
        b = next(i for i, dt in enumerate(_DTYPES) if a.dtype == dt)
        offs[2 * j], offs[2 * j + 1] = size[b], size[b] + a.size
        parts[b].append(a.reshape(-1))
        size[b] += a.size
    bufs = [np.concatenate(p).astype(dt) if p else np.zeros(0, dt)
            for p, dt in zip(parts, _DTYPES)]
    return tuple(_ro(a) for a in (*bufs, np.ascontiguousarray(wall), offs))


def _tables8(kind, pptr, tptr, tabF):
    """The fast path's categorical tables (``tabF``) again with 8 doubles per leaf: leaf i's
    k + 1 entries at ``tab8[tptr8[i]:]`` (a multiple of 8; -1 for other nodes), then zeros,
    for the ``vpermd`` lookups of :mod:`._numba_block`; and 1 when every leaf fits (k + 1 <= 8;
    else 0, and the tables are not read)."""
    cat = np.flatnonzero(kind == K_CATEGORICAL)
    w = (pptr[cat + 1] - pptr[cat] + 1).astype(np.int64)
    tptr8 = np.full(kind.shape[0], -1, np.int64)
    tptr8[cat] = 8 * np.arange(cat.size)
    tab8 = np.zeros(8 * cat.size + 8)
    pos = np.arange(int(w.sum())) - np.repeat(np.cumsum(w) - w, w)
    keep = pos < 8
    dst = np.repeat(tptr8[cat], w) + pos
    tab8[dst[keep]] = tabF[(np.repeat(tptr[cat], w) + pos)[keep]]
    return tptr8, tab8, int(bool((w <= 8).all()))


_F1 = np.zeros(1)
_F2 = np.zeros((1, 1))
_I1 = _ro(np.zeros(1, np.int64))
_RF0 = _ro(np.zeros(0))
_RF1 = _ro(np.zeros(1))
_RF2 = _ro(np.zeros((1, 1)))


def upward(circ, X, values, nodes, outL, outU, cu, want_u, R, T, chk=None):
    """The (L, U) pass (as csrc/ckernels.pyx upward, which documents every entry): the number
    of chunks that fail the evidence check ``chk`` (skipped; 0 without one)."""
    if 1 < R < 16:  # chunks of at least one 16-row block (no result depends on the chunking)
        R = 16
    return _run(UPWARD, view(circ), X, values, nodes, outL, outU, _F2, _F1, _RF2, _RF2, _F1,
                _F1, cu, want_u, R, T, _RF0 if chk is None else chk)


def policy(circ, X, values, out, R, T, chk=None):
    return _run(POLICY, view(circ), X, values, _I1, _F2, _F2, out, _F1, _RF2, _RF2, _F1, _F1,
                True, False, R, T, _RF0 if chk is None else chk)


def mpe(circ, X, out, logp, R, T, chk=None):
    return _run(MPE, view(circ), X, _RF1, _I1, _F2, _F2, out, logp, _RF2, _RF2, _F1, _F1,
                False, False, R, T, _RF0 if chk is None else chk)


def sample(circ, X, values, u, z, out, cu, R, T, chk=None):
    return _run(SAMPLE, view(circ), X, values, _I1, _F2, _F2, out, _F1, u, z, _F1, _F1, cu,
                False, R, T, _RF0 if chk is None else chk)


def counts(circ, X, values, edges, stats, cu, R, T):
    _run(COUNTS, view(circ), X, values, _I1, _F2, _F2, _F2, _F1, _RF2, _RF2, edges, stats, cu,
         False, R, T, _RF0)


def _drop_stale_cache() -> None:
    """Numba keys a cached kernel on its own source file only, but these kernels inline code
    from the other ``_numba_*`` files (and constants of ``reference.py`` and ``flat.py``): when
    any of them changed since the cache was written, drop every cached kernel so that none
    runs stale code. The stamp lies beside Numba's cache files, in the user cache folder that
    :mod:`spmn._cache` gives Numba (``NUMBA_CACHE_DIR``), never in the package folder."""
    import glob
    import hashlib
    import os

    here = os.path.dirname(os.path.abspath(__file__))
    files = sorted(glob.glob(os.path.join(here, "_numba_*.py")))
    files += [os.path.join(here, "reference.py"), os.path.join(os.path.dirname(here), "flat.py")]
    digest = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            digest.update(fh.read())
    stamp_text = digest.hexdigest()
    try:
        path = os.path.abspath(run._cache._cache_path)  # numba's cache folder for this module
    except AttributeError:  # pragma: no cover - numba internals changed: nothing to do
        return
    package = os.path.dirname(here)
    try:
        in_package = os.path.commonpath([path, package]) == package
    except ValueError:  # pragma: no cover - another drive (Windows)
        in_package = False
    if in_package:  # pragma: no cover - numba ignored NUMBA_CACHE_DIR: write nothing there
        return
    stamp = os.path.join(path, "spmn_numba_kernels.stamp")
    try:
        with open(stamp) as fh:
            if fh.read() == stamp_text:
                return
    except OSError:
        pass
    try:
        for f in glob.glob(os.path.join(path, "_numba_*.nb[ic]")):
            os.remove(f)
        os.makedirs(path, exist_ok=True)
        with open(stamp, "w") as fh:
            fh.write(stamp_text)
    except OSError:  # pragma: no cover - read-only cache: numba checks its own files
        pass


_drop_stale_cache()
