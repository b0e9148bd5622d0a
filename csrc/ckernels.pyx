# cython: language_level=3
"""Cython backend kernels: every pass of spmn.kernels.reference over a FlatCircuit.

Raw entry points called by spmn.kernels._common.Kernels (which checks and converts the input
first): ``upward``, ``policy``, ``mpe``, ``sample``, ``counts`` and ``math_check``. Rows are
split in chunks of ``R`` rows; thread ``t`` of ``T`` (OpenMP ``prange``, GIL released) takes
chunks ``t, t + T, ...`` with its own node-major work arrays, so results do not depend on the
thread count. Every loop mirrors spmn/kernels/_numba_up.py and _numba_down.py operation for
operation (no fast-math; exp and log in _cmath.pxi): the Cython and Numba backends agree bit for
bit. The Bellman pass of a recurrent template is ``upward`` (the MEU pass) with the interface
leaves bound to ``values``. ``upward`` runs the linear fast path (``_cfast.h``: probabilities,
one multiply and add per edge) and, for the rows where a node leaves its proven range, the
exact scaled pass (``_cscaled.h``: mantissa and exponent, exact powers of two, no exp or log
per edge); policy, sampling and counts keep the log-space (L, U) pass of ``_cup.pxi``. Products (and the sums of the max-product pass) keep 16 rows in
vector registers while they run over their edges (``_cblock.h``; the same operations per row);
categorical leaves are table lookups by the int32 codes ``load_chunk`` makes once per chunk and
variable (``_CircView._cat_tables``). Multivariate Gaussian leaves (K_MVGAUSSIAN, one row at a
time with a Cholesky factor of the covariance permuted observed-first) are in _cmvg.pxi:
log p(x_O) up, max-product value and conditional-mean completion for MPE, conditional draws
(``z`` has ``n_draws`` columns) and expected statistics down.
"""
import numpy as np

from cython.parallel cimport prange
from libc.math cimport INFINITY, NAN, isnan
from libc.stdint cimport int32_t, int64_t, uint8_t
from libc.string cimport memset

cdef enum:
    K_SUM = 0
    K_PRODUCT = 1
    K_MAX = 2
    K_CATEGORICAL = 3
    K_GAUSSIAN = 4
    K_HISTOGRAM = 5
    K_UTILITY_DISCRETE = 6
    K_UTILITY_HISTOGRAM = 7
    K_INTERFACE = 8
    K_MVGAUSSIAN = 9

include "_cmath.pxi"
include "_cmvg.pxi"
include "_cup.pxi"
include "_cdown.pxi"
include "_cscaled.pxi"
include "_cload.pxi"

cdef extern from "_ccheck.h" nogil:
    int spmn_rows_ok(const double* X, int64_t nv, int64_t lo, int64_t nr, const double* chk)

#: Calls of at most this many rows per chunk on one thread use the view's own work arrays
#: (_CircView.work_take) instead of allocating them.
DEF WS_ROWS = 16


cdef inline Py_ssize_t xbuf_size(Py_ssize_t nv, Py_ssize_t R):
    """Doubles of a thread's evidence buffer: the transposed chunk and its int32 codes."""
    return nv * R + (nv * R + 1) // 2 + 2


include "_cview.pxi"


cdef inline double* dptr(double[::1] a) noexcept nogil:
    return &a[0] if a.shape[0] else NULL


cdef inline double row_sum(const double* a, Py_ssize_t n) noexcept nogil:
    cdef double s = 0.0
    cdef Py_ssize_t r
    for r in range(n):
        s += a[r]
    return s


cdef inline Py_ssize_t rows_in(Py_ssize_t c, Py_ssize_t R, Py_ssize_t rows) noexcept nogil:
    return R if rows - c * R > R else rows - c * R


ctypedef struct Work:
    # a call's per-thread work arrays: thread t's at base + t * stride
    double* L
    double* K
    double* U
    double* xb
    double* tb
    uint8_t* rb
    int64_t* stk
    int64_t* seen
    Py_ssize_t sL, sK, sU, sxb, stb, srb, sstk, sseen


cdef object work_arrays(_CircView cv, Work* w, int T, Py_ssize_t R, Py_ssize_t nv, bint cu,
                        int use):
    """Fill ``w`` with the work arrays of a call (``use``: 0 the (L, U) pass of upward, 1 the
    log-space pass and a walk down (policy, sample), 2 MPE): the view's own (work_take; then
    None is returned and the caller gives them back) or new ones (returned, to keep them
    alive). Either way the arrays a pass reads before writing are zero as np.zeros would leave
    them (MPE's visit marks -1), so no result depends on which."""
    cdef Py_ssize_t n = cv.c.n, nU = (n if cu else 1) * R, i
    cdef Py_ssize_t nx = xbuf_size(nv, R), ntb = cv.tmp_n(R), E = cv.lw.shape[0]
    cdef double* d
    if T == 1 and R <= WS_ROWS and cv.work_take(nv):
        d = &cv.ws[0]
        w.L = d
        w.K = d + n * WS_ROWS
        w.U = d + 2 * n * WS_ROWS
        w.xb = d + 3 * n * WS_ROWS
        w.tb = w.xb + xbuf_size(nv, WS_ROWS)
        w.rb = &cv.wsr[0]
        w.stk = &cv.wsi[0]
        w.seen = w.stk + E + 1
        w.sL = w.sK = w.sU = w.sxb = w.stb = w.srb = w.sstk = w.sseen = 0
        if use != 0:
            memset(w.L, 0, n * R * sizeof(double))
        if use == 1 or (use == 0 and cu):
            memset(w.U, 0, nU * sizeof(double))
        elif use == 0:
            memset(w.U, 0, R * sizeof(double))
        memset(w.xb, 0, nx * sizeof(double))
        if use == 2:
            for i in range(n):
                w.seen[i] = -1
        return None
    cdef double[:, ::1] L = (np.empty if use == 0 else np.zeros)((T, n * R))
    cdef double[:, ::1] K = np.empty((T, n * R if use == 0 else 1))
    cdef double[:, ::1] U = np.zeros((T, nU if use != 2 else 1))
    cdef double[:, ::1] xb = np.zeros((T, nx))
    cdef double[:, ::1] tb = np.empty((T, ntb if use != 2 else 1))
    cdef uint8_t[:, ::1] rb = np.empty((T, n * R if use == 1 else 1), np.uint8)
    cdef int64_t[:, ::1] stk = np.empty((T, E + 1 if use == 2 else 1), np.int64)
    cdef int64_t[:, ::1] seen = np.full((T, n if use == 2 else 1), -1, np.int64)
    w.L, w.sL = &L[0, 0], L.shape[1]
    w.K, w.sK = &K[0, 0], K.shape[1]
    w.U, w.sU = &U[0, 0], U.shape[1]
    w.xb, w.sxb = &xb[0, 0], xb.shape[1]
    w.tb, w.stb = &tb[0, 0], tb.shape[1]
    w.rb, w.srb = &rb[0, 0], rb.shape[1]
    w.stk, w.sstk = &stk[0, 0], stk.shape[1]
    w.seen, w.sseen = &seen[0, 0], seen.shape[1]
    return (L, K, U, xb, tb, rb, stk, seen)


cdef const double* check_table(object chk, Py_ssize_t nv) except? NULL:
    """The evidence check's table (spmn.schema.Schema.check_table: 4 doubles per column), or
    NULL for no check (``chk`` None)."""
    cdef const double[::1] c
    if chk is None:
        return NULL
    c = chk
    if c.shape[0] != 4 * nv or nv == 0:
        raise ValueError(f"chk must hold 4 x {nv} doubles, got {c.shape[0]}")
    return &c[0]  # the caller's array keeps the memory alive


cdef inline int up_rows(const Circ* C, const double* Xp, Py_ssize_t nv, Py_ssize_t lo,
                        Py_ssize_t nr, Py_ssize_t R, const double* vp, double* L, double* K,
                        double* U, double* xb, double* tb, bint cu, bint want_u, bint fuse,
                        const int64_t* nodes, Py_ssize_t nq, double* oL, Py_ssize_t sL,
                        double* oU, Py_ssize_t sU, const double* cp) noexcept nogil:
    """One chunk of upward: the evidence check (when ``cp``; 1 = the chunk fails it and is
    skipped), fast_chunk, then sup_chunk for the rows it flags."""
    cdef Py_ssize_t q, r, nd
    cdef double nbad
    if cp != NULL and not spmn_rows_ok(Xp, nv, lo, nr, cp):
        return 1
    load_chunk(C, Xp, nv, lo, nr, R, xb, C.upx)
    fast_chunk(C, xb, nr, R, vp, L, U, tb, cu, fuse)
    nbad = row_sum(tb, nr)
    for q in range(nq):
        nd = nodes[q]
        for r in range(nr):
            oL[(lo + r) * sL + q] = flog(L[nd * R + r])
        if want_u:
            for r in range(nr):
                oU[(lo + r) * sU + q] = U[nd * R + r]
    if nbad > 0.0:  # the scaled pass for the rows off the fast path
        sup_chunk(C, xb, nr, R, vp, L, K, U, tb + R, cu)
        for q in range(nq):
            nd = nodes[q]
            for r in range(nr):
                if tb[r] > 0.0:
                    oL[(lo + r) * sL + q] = spmn_tolog(L[nd * R + r], K[nd * R + r])
                    if want_u:
                        oU[(lo + r) * sU + q] = U[nd * R + r]
    return 0


def upward(object circ, const double[:, ::1] X, const double[::1] values,
           const int64_t[::1] nodes, double[:, ::1] outL, double[:, ::1] outU, bint cu,
           bint want_u, Py_ssize_t R, int T, object chk=None):
    """(L, U) pass: fast_chunk, then sup_chunk for the rows it flags; writes L (and U when
    ``want_u``) of ``nodes`` per row. With ``chk`` (spmn.schema.Schema.check_table) each
    chunk's rows are checked first and a chunk that fails is skipped (its outputs unwritten):
    returns the number of such chunks (0: every row valid, or no check)."""
    cdef _CircView cv = circ if isinstance(circ, _CircView) else _CircView(circ)
    cv.c.nv = X.shape[1]
    cdef Py_ssize_t n = cv.c.n, rows = X.shape[0], nv = X.shape[1], nq = nodes.shape[0]
    cdef Py_ssize_t nch = (rows + R - 1) // R, t, c, lo, q
    cdef Py_ssize_t sL = outL.strides[0] // sizeof(double), sU = outU.strides[0] // sizeof(double)
    cdef int nbad = 0
    cdef bint fuse = True
    cdef Work w
    cdef const double* cp = check_table(chk, nv)
    if rows == 0:
        return 0
    cdef const double* Xp = &X[0, 0]
    cdef const double* vp = &values[0] if values.shape[0] else NULL
    cdef const int64_t* ndp = &nodes[0] if nq else NULL
    cdef double* oL = &outL[0, 0] if outL.shape[0] and nq else NULL
    cdef double* oU = &outU[0, 0] if outU.shape[0] and nq else NULL
    for q in range(nq):  # fused products skip their leaves unless a caller reads one
        fuse = fuse and cv.fuse[nodes[q]] != 2
    # L and K: every node's rows 0..nr are written before they are read (fast_chunk skips
    # only fused leaves, which nothing reads then; sup_chunk writes every node): no zeroing
    keep = work_arrays(cv, &w, T, R, nv, cu, 0)
    try:
        with nogil:
            if T == 1:  # on the calling thread: no OpenMP team
                for c in range(nch):
                    nbad += up_rows(&cv.c, Xp, nv, c * R, rows_in(c, R, rows), R, vp, w.L, w.K,
                                    w.U, w.xb, w.tb, cu, want_u, fuse, ndp, nq, oL, sL, oU, sU,
                                    cp)
            else:
                for t in prange(T, schedule="static", num_threads=T):
                    c = t
                    while c < nch:
                        lo = c * R
                        nbad += up_rows(&cv.c, Xp, nv, lo, rows_in(c, R, rows), R, vp,
                                        w.L + t * w.sL, w.K + t * w.sK, w.U + t * w.sU,
                                        w.xb + t * w.sxb, w.tb + t * w.stb, cu, want_u, fuse,
                                        ndp, nq, oL, sL, oU, sU, cp)
                        c = c + T
    finally:
        if keep is None:
            cv.busy = False
    return nbad


cdef inline int down_rows(const Circ* C, int mode, const double* Xp, Py_ssize_t nv,
                          Py_ssize_t lo, Py_ssize_t nr, Py_ssize_t R, const double* vp,
                          double* L, double* U, double* xb, double* tb, uint8_t* rb, bint cu,
                          double* op, const double* up, const double* zp, Py_ssize_t nz,
                          const double* cp) noexcept nogil:
    """One chunk of policy (``mode`` 0) or sample (1): the evidence check (when ``cp``; 1 = the
    chunk fails it and is skipped), the log-space (L, U) pass, the walk down."""
    if cp != NULL and not spmn_rows_ok(Xp, nv, lo, nr, cp):
        return 1
    load_chunk(C, Xp, nv, lo, nr, R, xb, True)
    up_chunk(C, xb, nr, R, vp, L, U, tb, cu)
    if mode == 0:
        policy_down(C, Xp, nv, lo, nr, R, L, U, rb, op)
    else:
        sample_down(C, Xp, nv, lo, nr, R, L, U, rb, op, up, zp, nz)
    return 0


cdef int down_pass(_CircView cv, int mode, const double[:, ::1] X, const double[::1] values,
                   double[:, ::1] out, const double* up, const double* zp, Py_ssize_t nz,
                   bint cu, Py_ssize_t R, int T, object chk) except -1:
    """policy (``mode`` 0) or sample (1) over every chunk; the number of chunks that fail the
    evidence check (see upward)."""
    cv.c.nv = X.shape[1]
    cdef Py_ssize_t rows = X.shape[0], nv = X.shape[1]
    cdef Py_ssize_t nch = (rows + R - 1) // R, t, c, lo
    cdef int nbad = 0
    cdef Work w
    cdef const double* cp = check_table(chk, nv)
    if rows == 0:
        return 0
    cdef const double* Xp = &X[0, 0]
    cdef double* op = &out[0, 0]
    cdef const double* vp = &values[0] if values.shape[0] else NULL
    keep = work_arrays(cv, &w, T, R, nv, cu, 1)
    try:
        with nogil:
            if T == 1:  # on the calling thread: no OpenMP team
                for c in range(nch):
                    nbad += down_rows(&cv.c, mode, Xp, nv, c * R, rows_in(c, R, rows), R, vp,
                                      w.L, w.U, w.xb, w.tb, w.rb, cu, op, up, zp, nz, cp)
            else:
                for t in prange(T, schedule="static", num_threads=T):
                    c = t
                    while c < nch:
                        lo = c * R
                        nbad += down_rows(&cv.c, mode, Xp, nv, lo, rows_in(c, R, rows), R, vp,
                                          w.L + t * w.sL, w.U + t * w.sU, w.xb + t * w.sxb,
                                          w.tb + t * w.stb, w.rb + t * w.srb, cu, op, up, zp,
                                          nz, cp)
                        c = c + T
    finally:
        if keep is None:
            cv.busy = False
    return nbad


def policy(object circ, const double[:, ::1] X, const double[::1] values, double[:, ::1] out,
           Py_ssize_t R, int T, object chk=None):
    """MEU policy: max nodes on the walk write their choice into ``out``. ``chk``: as upward
    (returns the number of chunks that fail the evidence check)."""
    cdef _CircView cv = circ if isinstance(circ, _CircView) else _CircView(circ)
    return down_pass(cv, 0, X, values, out, NULL, NULL, 0, True, R, T, chk)


cdef inline int mpe_rows(const Circ* C, const double* Xp, Py_ssize_t nv, Py_ssize_t lo,
                         Py_ssize_t nr, Py_ssize_t R, double* M, double* xb, int64_t* stk,
                         int64_t* seen, double* op, double* lp, const double* cp) noexcept nogil:
    """One chunk of MPE: the evidence check (when ``cp``; 1 = the chunk fails it and is
    skipped), max-product up, the completion down."""
    cdef Py_ssize_t r, n = C.n
    if cp != NULL and not spmn_rows_ok(Xp, nv, lo, nr, cp):
        return 1
    load_chunk(C, Xp, nv, lo, nr, R, xb, True)
    if R % 16 == 0:
        mpe_up_blocked(C, xb, nr, R, M)
    else:
        mpe_up_chunk(C, xb, nr, R, M)
    for r in range(nr):
        lp[lo + r] = M[(n - 1) * R + r]
    mpe_down(C, Xp, nv, lo, nr, R, M, stk, seen, op)
    return 0


def mpe(object circ, const double[:, ::1] X, double[:, ::1] out, double[::1] logp,
        Py_ssize_t R, int T, object chk=None):
    """Max-product up, argmax completion down (``out`` starts as a copy of ``X``). ``chk``: as
    upward (returns the number of chunks that fail the evidence check)."""
    cdef _CircView cv = circ if isinstance(circ, _CircView) else _CircView(circ)
    cv.c.nv = X.shape[1]
    cdef Py_ssize_t rows = X.shape[0], nv = X.shape[1]
    cdef Py_ssize_t nch = (rows + R - 1) // R, t, c, lo
    cdef int nbad = 0
    cdef Work w
    cdef const double* cp = check_table(chk, nv)
    if rows == 0:
        return 0
    cdef const double* Xp = &X[0, 0]
    cdef double* op = &out[0, 0]
    cdef double* lp = &logp[0]
    keep = work_arrays(cv, &w, T, R, nv, False, 2)
    try:
        with nogil:
            if T == 1:  # on the calling thread: no OpenMP team
                for c in range(nch):
                    nbad += mpe_rows(&cv.c, Xp, nv, c * R, rows_in(c, R, rows), R, w.L, w.xb,
                                     w.stk, w.seen, op, lp, cp)
            else:
                for t in prange(T, schedule="static", num_threads=T):
                    c = t
                    while c < nch:
                        lo = c * R
                        nbad += mpe_rows(&cv.c, Xp, nv, lo, rows_in(c, R, rows), R,
                                         w.L + t * w.sL, w.xb + t * w.sxb, w.stk + t * w.sstk,
                                         w.seen + t * w.sseen, op, lp, cp)
                        c = c + T
    finally:
        if keep is None:
            cv.busy = False
    return nbad


def sample(object circ, const double[:, ::1] X, const double[::1] values,
           const double[:, ::1] u, const double[:, ::1] z, double[:, ::1] out, bint cu,
           Py_ssize_t R, int T, object chk=None):
    """Ancestral sampling into ``out`` (a copy of ``X``) with draws ``u[r, i]``, ``z[r, i]``
    (``u`` has a column per node, ``z`` ``n_draws`` columns). ``chk``: as upward (returns the
    number of chunks that fail the evidence check)."""
    cdef _CircView cv = circ if isinstance(circ, _CircView) else _CircView(circ)
    if X.shape[0] == 0:
        return 0
    return down_pass(cv, 1, X, values, out, &u[0, 0], &z[0, 0], z.shape[1], cu, R, T, chk)


def counts(object circ, const double[:, ::1] X, const double[::1] values, double[::1] edges,
           double[::1] stats, bint cu, Py_ssize_t R, int T):
    """Add the expected counts of the rows of ``X`` to ``edges`` and ``stats``, chunk by chunk
    in row order (T chunks per parallel wave), so the sums do not depend on T."""
    cdef _CircView cv = circ if isinstance(circ, _CircView) else _CircView(circ)
    cv.c.nv = X.shape[1]
    cdef Py_ssize_t n = cv.c.n, rows = X.shape[0], nv = X.shape[1]
    cdef Py_ssize_t E = edges.shape[0], P = stats.shape[0]
    cdef Py_ssize_t nch = (rows + R - 1) // R, t, c, lo, nr, w, e, p
    cdef double[:, ::1] Lb = np.zeros((T, n * R))
    cdef double[:, ::1] Ub = np.zeros((T, (n if cu else 1) * R))
    cdef double[:, ::1] Fb = np.empty((T, n * R))
    cdef double[:, ::1] xb = np.zeros((T, xbuf_size(nv, R)))
    cdef double[:, ::1] tb = np.empty((T, cv.tmp_size(R)))
    cdef double[:, ::1] eb = np.empty((T, E + 1))
    cdef double[:, ::1] pb = np.empty((T, P + 1))
    cdef const double* vp = &values[0] if values.shape[0] else NULL
    if rows == 0:
        return
    with nogil:
        for w in range((nch + T - 1) // T):
            for t in prange(T, schedule="static", num_threads=T):
                c = w * T + t
                if c < nch:
                    lo = c * R
                    nr = rows_in(c, R, rows)
                    for e in range(E):
                        eb[t, e] = 0.0
                    for p in range(P):
                        pb[t, p] = 0.0
                    load_chunk(&cv.c, &X[0, 0], nv, lo, nr, R, &xb[t, 0], True)
                    up_chunk(&cv.c, &xb[t, 0], nr, R, vp, &Lb[t, 0], &Ub[t, 0], &tb[t, 0], cu)
                    counts_down(&cv.c, &X[0, 0], nv, lo, nr, R, &Lb[t, 0], &Ub[t, 0],
                                &Fb[t, 0], &eb[t, 0], &pb[t, 0])
            for t in range(T):
                if w * T + t < nch:
                    for e in range(E):
                        edges[e] += eb[t, e]
                    for p in range(P):
                        stats[p] += pb[t, p]


cdef extern from *:
    """
    static int spmn_cpu_has_avx2(void) {
    #if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2");
    #else
        return 0;
    #endif
    }
    """
    int spmn_cpu_has_avx2()


def cpu_has_avx2():
    """Whether this CPU (and OS) runs AVX2 code: then the -mavx2 build can be used."""
    return bool(spmn_cpu_has_avx2())


def math_check(const double[::1] x, double[::1] out_exp, double[::1] out_log):
    """fexp and flog of every entry (tests compare them with the Numba twins bit for bit)."""
    cdef Py_ssize_t i
    for i in range(x.shape[0]):
        out_exp[i] = fexp(x[i])
        out_log[i] = flog(x[i])


def rows_check(const double[:, ::1] X, const double[::1] chk):
    """spmn_rows_ok over every row of ``X`` with the table ``chk`` (4 doubles per column; tests
    compare it with spmn.schema.Schema.valid_values and the Numba twin)."""
    if chk.shape[0] != 4 * X.shape[1] or X.shape[1] == 0:
        raise ValueError(f"chk must hold 4 x {X.shape[1]} doubles, got {chk.shape[0]}")
    return bool(spmn_rows_ok(&X[0, 0], X.shape[1], 0, X.shape[0], &chk[0])) if X.shape[0] \
        else True


def scaled_check(const double[::1] x, double[::1] m, double[::1] k, double[::1] back,
                 double[::1] p):
    """spmn_to_mk, spmn_tolog of its result and spmn_lin of every entry (tests compare them
    with the Numba twins bit for bit and with numpy)."""
    cdef Py_ssize_t i
    for i in range(x.shape[0]):
        spmn_to_mk(x[i], &m[i], &k[i])
        back[i] = spmn_tolog(m[i], k[i])
        p[i] = spmn_lin(x[i])
