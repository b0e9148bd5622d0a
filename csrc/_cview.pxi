# The circuit's tables as one C struct (Circ) kept alive by a Python object: _CircView and
# view(), included by ckernels.pyx (split from it to keep files under ~600 lines).

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
    # the one-thread work arrays of small calls (work_take): doubles, uint8 marks, int64 stack
    cdef double[::1] ws
    cdef uint8_t[::1] wsr
    cdef int64_t[::1] wsi
    cdef Py_ssize_t ws_nv
    cdef bint busy

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
        self.c.upx = upward_reads_values(&self.c)
        self.ws_nv = -1
        self.busy = False

    def _cat_tables(self):
        """Categorical leaves as tables indexed by the chunk's int32 codes (load_chunk; NaN is
        code k): ``tabL`` ends each leaf's log p with 0 (marginalized), ``tabM`` with the leaf's
        max log p (MPE), so a leaf row is one lookup, no NaN test or conversion."""
        cdef Py_ssize_t i, j, k, p0, n = self.c.n, size = 0, nvc = 0, ncat = 0
        cdef double mode
        self.c.cat8 = True  # every leaf's k + 1 entries fit 8: each takes 8 (spmn_look8)
        for i in range(n):
            nvc = max(nvc, self.var[i] + 1)
            if self.kind[i] == K_CATEGORICAL:
                size += self.pptr[i + 1] - self.pptr[i] + 1
                ncat += 1
                self.c.cat8 = self.c.cat8 and self.pptr[i + 1] - self.pptr[i] < 8
        self.card = np.zeros(nvc + 1, np.int32)
        self.tptr = np.full(n, -1, np.int64)
        self.tabL = np.zeros((8 * ncat if self.c.cat8 else size) + 1)  # padding: 0
        self.tabM = np.zeros(self.tabL.shape[0])
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
            size += 8 if self.c.cat8 else k + 1
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
        return self.tmp_n(R)

    cdef Py_ssize_t tmp_n(self, Py_ssize_t R):
        return max((8 + 2 * self.gmax) * R, R + 2 * SPMN_SB * self.c.gdeg + 1)

    cdef bint work_take(self, Py_ssize_t nv):
        """Take the view's work arrays for a call of <= WS_ROWS rows per chunk on one thread
        (sized once: no allocation per call); False while another call holds them (that call
        then allocates its own). Taken and given back (``busy``) with the GIL held: atomic."""
        cdef Py_ssize_t n = self.c.n
        if self.busy:
            return False
        if self.ws_nv != nv:
            self.ws = np.empty(3 * n * WS_ROWS + xbuf_size(nv, WS_ROWS) + self.tmp_n(WS_ROWS))
            self.wsr = np.empty(n * WS_ROWS, np.uint8)
            self.wsi = np.empty(self.lw.shape[0] + 1 + n, np.int64)
            self.ws_nv = nv
        self.busy = True
        return True


def view(tuple circ):
    """The circuit's tables for these kernels (``circ``: spmn.kernels._common.prepare), built once
    and handed to every entry below in place of ``circ`` (a call then skips building them)."""
    return _CircView(circ)
