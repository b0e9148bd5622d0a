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


cdef class _CircView:
    """Keeps the circuit's memoryviews alive and exposes them as a C struct."""
    cdef const signed char[::1] kind
    cdef const int64_t[::1] cptr, cidx, var, pptr
    cdef const double[::1] lw, params, mode_logp, mode_val
    cdef const signed char[::1] ulive
    cdef const int64_t[::1] gid, gptr, gmem
    cdef double[::1] W, tabL, tabM, wm, wk, tabSM, tabSK, wl, tabF
    cdef const double[::1] fthr
    cdef const signed char[::1] fchk, fuse
    cdef const int64_t[::1] lcptr, lcidx
    cdef int64_t[::1] tptr
    cdef int32_t[::1] card
    cdef Circ c
    cdef public Py_ssize_t gmax

    def __init__(self, tuple circ):
        cdef Py_ssize_t q, e, E
        self.kind = circ[0]
        self.cptr = circ[1]
        self.cidx = circ[2]
        self.lw = circ[3]
        self.var = circ[4]
        self.pptr = circ[5]
        self.params = circ[6]
        self.ulive = circ[7]
        self.mode_logp = circ[8]
        self.mode_val = circ[9]
        self.c.n = self.kind.shape[0]
        self.c.kind = &self.kind[0]
        self.c.cptr = &self.cptr[0]
        self.c.cidx = &self.cidx[0] if self.cidx.shape[0] else NULL
        self.c.lw = &self.lw[0] if self.lw.shape[0] else NULL
        self.c.var = &self.var[0]
        self.c.pptr = &self.pptr[0]
        self.c.params = &self.params[0] if self.params.shape[0] else NULL
        self.c.ulive = &self.ulive[0]
        self.c.mode_logp = &self.mode_logp[0]
        self.c.mode_val = &self.mode_val[0]
        self.gid = circ[10]
        self.gptr = circ[11]
        self.gmem = circ[12]
        self.c.gid = &self.gid[0]
        self.c.gptr = &self.gptr[0]
        self.c.gmem = &self.gmem[0] if self.gmem.shape[0] else NULL
        E = self.lw.shape[0]
        self.gmax = 0
        for q in range(self.gptr.shape[0] - 1):
            self.gmax = max(self.gmax, self.gptr[q + 1] - self.gptr[q])
        # linear weights of the sum groups, by this backend's own exp (the same bits as Numba's)
        self.W = np.empty(E if self.gmax else 1)
        if self.gmax:
            for e in range(E):
                self.W[e] = fexp(self.lw[e])
        self.c.W = &self.W[0]
        # the weights as mantissa and exponent (scaled pass), by this backend's own code
        self.wm = np.empty(E if E else 1)
        self.wk = np.empty(E if E else 1)
        for e in range(E):
            spmn_to_mk(self.lw[e], &self.wm[e], &self.wk[e])
        self.c.wm = &self.wm[0]
        self.c.wk = &self.wk[0]
        self.wl = np.empty(E if E else 1)
        for e in range(E):
            self.wl[e] = spmn_lin(self.lw[e])
        self.c.wl = &self.wl[0]
        self.fthr = circ[13]
        self.c.fthr = &self.fthr[0]
        self.fchk = circ[14]
        self.c.fchk = &self.fchk[0]
        self.lcptr = circ[15]
        self.lcidx = circ[16]
        self.c.lcptr = &self.lcptr[0]
        self.c.lcidx = &self.lcidx[0] if self.lcidx.shape[0] else NULL
        self.fuse = circ[17]
        self.c.fuse = &self.fuse[0]
        self.c.gdeg = 0
        for q in range(self.gptr.shape[0] - 1):
            e = self.gmem[self.gptr[q]]
            self.c.gdeg = max(self.c.gdeg, self.cptr[e + 1] - self.cptr[e])
        self._cat_tables()

    def _cat_tables(self):
        """Categorical leaves as tables indexed by the chunk's int32 codes (load_chunk; NaN is
        code k): ``tabL`` ends each leaf's log p with 0 (marginalized), ``tabM`` with the leaf's
        max log p (MPE), so a leaf row is one lookup, no NaN test or conversion."""
        cdef Py_ssize_t i, j, k, p0, n = self.c.n, size = 0, nvc = 0
        cdef double mode
        for i in range(n):
            nvc = max(nvc, self.var[i] + 1)
            if self.kind[i] == K_CATEGORICAL:
                size += self.pptr[i + 1] - self.pptr[i] + 1
        self.card = np.zeros(nvc + 1, np.int32)
        self.tptr = np.full(n, -1, np.int64)
        self.tabL = np.empty(size + 1)
        self.tabM = np.empty(size + 1)
        size = 0
        for i in range(n):
            if self.kind[i] != K_CATEGORICAL:
                continue
            p0 = self.pptr[i]
            k = self.pptr[i + 1] - p0
            self.card[self.var[i]] = <int32_t>k
            self.tptr[i] = size
            for j in range(k):
                self.tabL[size + j] = self.params[p0 + j]
                self.tabM[size + j] = self.params[p0 + j]
            mode = self.mode_logp[i]
            self.tabL[size + k] = 0.0
            self.tabM[size + k] = 0.0 if isnan(mode) else mode
            size += k + 1
        self.c.nvc = nvc
        self.c.card = &self.card[0]
        self.c.tptr = &self.tptr[0]
        self.c.tabL = &self.tabL[0]
        self.c.tabM = &self.tabM[0]
        self.tabSM = np.empty(size + 1)
        self.tabSK = np.empty(size + 1)
        for j in range(size):
            spmn_to_mk(self.tabL[j], &self.tabSM[j], &self.tabSK[j])
        self.tabSM[size] = 0.0
        self.tabSK[size] = -INFINITY
        self.c.tabSM = &self.tabSM[0]
        self.c.tabSK = &self.tabSK[0]
        self.tabF = np.empty(size + 1)
        for j in range(size):
            self.tabF[j] = spmn_lin(self.tabL[j])
        self.tabF[size] = 0.0
        self.c.tabF = &self.tabF[0]

    def tmp_size(self, Py_ssize_t R):
        """Doubles of scratch per thread that up_chunk needs (sum groups included)."""
        return max((8 + 2 * self.gmax) * R, R + 2 * SPMN_SB * self.c.gdeg + 1)


def view(tuple circ):
    """The circuit's tables for these kernels (``circ``: spmn.kernels._common.prepare), built once
    and handed to every entry below in place of ``circ`` (a call then skips building them)."""
    return _CircView(circ)


cdef inline double* dptr(double[::1] a) noexcept nogil:
    return &a[0] if a.shape[0] else NULL


cdef inline void load_chunk(const Circ* C, const double* X, Py_ssize_t nv, Py_ssize_t lo,
                            Py_ssize_t nr, Py_ssize_t R, double* xt) noexcept nogil:
    """Rows lo..lo+nr of X, transposed into xt (variable v, row r at v * R + r), and the codes
    of the categorical-leaf variables as int32 after them (xcodes(); NaN is the code k)."""
    cdef Py_ssize_t r, v
    cdef int32_t* code = xcodes(xt, nv, R)
    cdef int32_t k
    cdef double d
    for r in range(nr):
        for v in range(nv):
            xt[v * R + r] = X[(lo + r) * nv + v]
    for v in range(nv if nv < C.nvc else C.nvc):
        k = C.card[v]
        if k > 0:
            for r in range(nr):
                d = xt[v * R + r]
                code[v * R + r] = k if isnan(d) else <int32_t>d


cdef inline Py_ssize_t xbuf_size(Py_ssize_t nv, Py_ssize_t R):
    """Doubles of a thread's evidence buffer: the transposed chunk and its int32 codes."""
    return nv * R + (nv * R + 1) // 2 + 2


cdef inline double row_sum(const double* a, Py_ssize_t n) noexcept nogil:
    cdef double s = 0.0
    cdef Py_ssize_t r
    for r in range(n):
        s += a[r]
    return s


cdef inline Py_ssize_t rows_in(Py_ssize_t c, Py_ssize_t R, Py_ssize_t rows) noexcept nogil:
    return R if rows - c * R > R else rows - c * R


def upward(object circ, const double[:, ::1] X, const double[::1] values,
           const int64_t[::1] nodes, double[:, ::1] outL, double[:, ::1] outU, bint cu,
           bint want_u, Py_ssize_t R, int T):
    """(L, U) pass: fast_chunk, then sup_chunk for the rows it flags; writes L (and U when
    ``want_u``) of ``nodes`` per row."""
    cdef _CircView cv = circ if isinstance(circ, _CircView) else _CircView(circ)
    cv.c.nv = X.shape[1]
    cdef Py_ssize_t n = cv.c.n, rows = X.shape[0], nv = X.shape[1], nq = nodes.shape[0]
    cdef Py_ssize_t nch = (rows + R - 1) // R, t, c, lo, nr, q, r, nd
    cdef double nbad
    cdef bint fuse = True
    # L and K: every node's rows 0..nr are written before they are read (fast_chunk skips
    # only fused leaves, which nothing reads then; sup_chunk writes every node): no zeroing
    cdef double[:, ::1] Lb = np.empty((T, n * R))
    cdef double[:, ::1] Kb = np.empty((T, n * R))
    cdef double[:, ::1] Ub = np.zeros((T, (n if cu else 1) * R))
    cdef double[:, ::1] xb = np.zeros((T, xbuf_size(nv, R)))
    cdef double[:, ::1] tb = np.empty((T, cv.tmp_size(R)))
    cdef const double* Xp = &X[0, 0] if rows else NULL
    cdef const double* vp = &values[0] if values.shape[0] else NULL
    if rows == 0:
        return
    for q in range(nq):  # fused products skip their leaves unless a caller reads one
        fuse = fuse and cv.fuse[nodes[q]] != 2
    with nogil:
        for t in prange(T, schedule="static", num_threads=T):
            c = t
            while c < nch:
                lo = c * R
                nr = rows_in(c, R, rows)
                load_chunk(&cv.c, Xp, nv, lo, nr, R, &xb[t, 0])
                fast_chunk(&cv.c, &xb[t, 0], nr, R, vp, &Lb[t, 0], &Ub[t, 0], &tb[t, 0], cu,
                           fuse)
                nbad = row_sum(&tb[t, 0], nr)
                for q in range(nq):
                    nd = nodes[q]
                    for r in range(nr):
                        outL[lo + r, q] = flog(Lb[t, nd * R + r])
                    if want_u:
                        for r in range(nr):
                            outU[lo + r, q] = Ub[t, nd * R + r]
                if nbad > 0.0:  # the scaled pass for the rows off the fast path
                    sup_chunk(&cv.c, &xb[t, 0], nr, R, vp, &Lb[t, 0], &Kb[t, 0], &Ub[t, 0],
                              &tb[t, R], cu)
                    for q in range(nq):
                        nd = nodes[q]
                        for r in range(nr):
                            if tb[t, r] > 0.0:
                                outL[lo + r, q] = spmn_tolog(Lb[t, nd * R + r], Kb[t, nd * R + r])
                                if want_u:
                                    outU[lo + r, q] = Ub[t, nd * R + r]
                c = c + T


def policy(object circ, const double[:, ::1] X, const double[::1] values, double[:, ::1] out,
           Py_ssize_t R, int T):
    """MEU policy: max nodes on the walk write their choice into ``out``."""
    cdef _CircView cv = circ if isinstance(circ, _CircView) else _CircView(circ)
    cv.c.nv = X.shape[1]
    cdef Py_ssize_t n = cv.c.n, rows = X.shape[0], nv = X.shape[1]
    cdef Py_ssize_t nch = (rows + R - 1) // R, t, c, lo, nr
    cdef double[:, ::1] Lb = np.zeros((T, n * R))
    cdef double[:, ::1] Ub = np.zeros((T, n * R))
    cdef double[:, ::1] xb = np.zeros((T, xbuf_size(nv, R)))
    cdef double[:, ::1] tb = np.empty((T, cv.tmp_size(R)))
    cdef uint8_t[:, ::1] rb = np.empty((T, n * R), np.uint8)
    cdef const double* vp = &values[0] if values.shape[0] else NULL
    if rows == 0:
        return
    with nogil:
        for t in prange(T, schedule="static", num_threads=T):
            c = t
            while c < nch:
                lo = c * R
                nr = rows_in(c, R, rows)
                load_chunk(&cv.c, &X[0, 0], nv, lo, nr, R, &xb[t, 0])
                up_chunk(&cv.c, &xb[t, 0], nr, R, vp, &Lb[t, 0], &Ub[t, 0], &tb[t, 0], True)
                policy_down(&cv.c, &X[0, 0], nv, lo, nr, R, &Lb[t, 0], &Ub[t, 0], &rb[t, 0],
                            &out[0, 0])
                c = c + T


def mpe(object circ, const double[:, ::1] X, double[:, ::1] out, double[::1] logp,
        Py_ssize_t R, int T):
    """Max-product up, argmax completion down (``out`` starts as a copy of ``X``)."""
    cdef _CircView cv = circ if isinstance(circ, _CircView) else _CircView(circ)
    cv.c.nv = X.shape[1]
    cdef Py_ssize_t n = cv.c.n, rows = X.shape[0], nv = X.shape[1]
    cdef Py_ssize_t nch = (rows + R - 1) // R, t, c, lo, nr, r
    cdef double[:, ::1] Mb = np.zeros((T, n * R))
    cdef double[:, ::1] xb = np.zeros((T, xbuf_size(nv, R)))
    cdef int64_t[:, ::1] stk = np.empty((T, cv.lw.shape[0] + 1), np.int64)
    cdef int64_t[:, ::1] seen = np.full((T, n), -1, np.int64)
    if rows == 0:
        return
    with nogil:
        for t in prange(T, schedule="static", num_threads=T):
            c = t
            while c < nch:
                lo = c * R
                nr = rows_in(c, R, rows)
                load_chunk(&cv.c, &X[0, 0], nv, lo, nr, R, &xb[t, 0])
                if R % 16 == 0:
                    mpe_up_blocked(&cv.c, &xb[t, 0], nr, R, &Mb[t, 0])
                else:
                    mpe_up_chunk(&cv.c, &xb[t, 0], nr, R, &Mb[t, 0])
                for r in range(nr):
                    logp[lo + r] = Mb[t, (n - 1) * R + r]
                mpe_down(&cv.c, &X[0, 0], nv, lo, nr, R, &Mb[t, 0], &stk[t, 0], &seen[t, 0],
                         &out[0, 0])
                c = c + T


def sample(object circ, const double[:, ::1] X, const double[::1] values,
           const double[:, ::1] u, const double[:, ::1] z, double[:, ::1] out, bint cu,
           Py_ssize_t R, int T):
    """Ancestral sampling into ``out`` (a copy of ``X``) with draws ``u[r, i]``, ``z[r, i]``
    (``u`` has a column per node, ``z`` ``n_draws`` columns)."""
    cdef _CircView cv = circ if isinstance(circ, _CircView) else _CircView(circ)
    cv.c.nv = X.shape[1]
    cdef Py_ssize_t n = cv.c.n, rows = X.shape[0], nv = X.shape[1], nz = z.shape[1]
    cdef Py_ssize_t nch = (rows + R - 1) // R, t, c, lo, nr
    cdef double[:, ::1] Lb = np.zeros((T, n * R))
    cdef double[:, ::1] Ub = np.zeros((T, (n if cu else 1) * R))
    cdef double[:, ::1] xb = np.zeros((T, xbuf_size(nv, R)))
    cdef double[:, ::1] tb = np.empty((T, cv.tmp_size(R)))
    cdef uint8_t[:, ::1] rb = np.empty((T, n * R), np.uint8)
    cdef const double* vp = &values[0] if values.shape[0] else NULL
    if rows == 0:
        return
    with nogil:
        for t in prange(T, schedule="static", num_threads=T):
            c = t
            while c < nch:
                lo = c * R
                nr = rows_in(c, R, rows)
                load_chunk(&cv.c, &X[0, 0], nv, lo, nr, R, &xb[t, 0])
                up_chunk(&cv.c, &xb[t, 0], nr, R, vp, &Lb[t, 0], &Ub[t, 0], &tb[t, 0], cu)
                sample_down(&cv.c, &X[0, 0], nv, lo, nr, R, &Lb[t, 0], &Ub[t, 0], &rb[t, 0],
                            &out[0, 0], &u[0, 0], &z[0, 0], nz)
                c = c + T


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
                    load_chunk(&cv.c, &X[0, 0], nv, lo, nr, R, &xb[t, 0])
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


def scaled_check(const double[::1] x, double[::1] m, double[::1] k, double[::1] back,
                 double[::1] p):
    """spmn_to_mk, spmn_tolog of its result and spmn_lin of every entry (tests compare them
    with the Numba twins bit for bit and with numpy)."""
    cdef Py_ssize_t i
    for i in range(x.shape[0]):
        spmn_to_mk(x[i], &m[i], &k[i])
        back[i] = spmn_tolog(m[i], k[i])
        p[i] = spmn_lin(x[i])
