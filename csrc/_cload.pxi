# Included by ckernels.pyx: a chunk's evidence as the passes read it.

cdef extern from "_cload.h" nogil:
    void spmn_codes4(const double* x, int64_t nv, int32_t k, int32_t* o)


cdef bint upward_reads_values(const Circ* C) noexcept nogil:
    """Whether the (L, U) pass (fast_chunk, sup_chunk) reads the evidence values themselves:
    some node is not a sum, product or categorical leaf (those read the int32 codes only)."""
    cdef Py_ssize_t i
    for i in range(C.n):
        if C.kind[i] != K_SUM and C.kind[i] != K_PRODUCT and C.kind[i] != K_CATEGORICAL:
            return True
    return False


cdef inline void load_chunk(const Circ* C, const double* X, Py_ssize_t nv, Py_ssize_t lo,
                            Py_ssize_t nr, Py_ssize_t R, double* xt, bint vals) noexcept nogil:
    """Rows lo..lo+nr of X, transposed into xt (variable v, row r at v * R + r) when ``vals``,
    and the codes of the categorical-leaf variables as int32 after them (xcodes(); NaN is the
    code k), read from X itself. Both in blocks of 4 rows: 4 adjacent stores per variable."""
    cdef Py_ssize_t r, v, nr4 = nr - nr % 4, nk = nv if nv < C.nvc else C.nvc
    cdef int32_t* code = xcodes(xt, nv, R)
    cdef const double* x
    cdef double* o
    cdef int32_t k
    cdef double d
    if vals:
        for r in range(0, nr4, 4):
            x = X + (lo + r) * nv
            for v in range(nv):
                o = xt + v * R + r
                o[0] = x[v]
                o[1] = x[nv + v]
                o[2] = x[2 * nv + v]
                o[3] = x[3 * nv + v]
        for r in range(nr4, nr):
            for v in range(nv):
                xt[v * R + r] = X[(lo + r) * nv + v]
    for r in range(0, nr4, 4):
        x = X + (lo + r) * nv
        for v in range(nk):
            k = C.card[v]
            if k > 0:
                spmn_codes4(x + v, nv, k, code + v * R + r)
    for r in range(nr4, nr):
        for v in range(nk):
            k = C.card[v]
            if k > 0:
                d = X[(lo + r) * nv + v]
                code[v * R + r] = k if isnan(d) else <int32_t>d
