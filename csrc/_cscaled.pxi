# The scaled (L, U) pass over one chunk of rows: p = m 2^k per node and row in two node-major
# work arrays (M: mantissas, Kx: exponents), see _cscaled.h. It gives what up_chunk gives (L =
# log p, the same U) without an exp or log per edge; the log is taken only for the nodes a
# caller reads (spmn_tolog). The same operations, in the same order, as sup_chunk in
# spmn/kernels/_numba_scaled.py.

cdef extern from "_cscaled.h" nogil:
    void spmn_ssum(const int64_t* cidx, const double* wm, const double* wk, int64_t a0,
                   int64_t a1, const double* M, const double* Kx, const double* U, int64_t R,
                   int64_t nr, double* oM, double* oK, double* oU, int with_u)
    void spmn_sprod(const int64_t* cidx, int64_t a0, int64_t a1, const double* M,
                    const double* Kx, int64_t R, int64_t nr, double* oM, double* oK)
    void spmn_sgroup(const int64_t* cptr, const int64_t* cidx, const double* W,
                     const double* wm, const double* wk, const int64_t* mem, int64_t g,
                     double* M, double* Kx, double* U, int64_t R, int64_t nr, double* qb,
                     double* qu, int with_u)
    void spmn_to_mk_rows(double* L, double* oK, int64_t nr)
    void spmn_scat_leaf(const int32_t* code, const double* tm, const double* tk, int64_t nr,
                        double* oM, double* oK)
    void spmn_to_mk(double x, double* om, double* ok)
    double spmn_tolog(double m, double k)
    const int SPMN_SB

cdef extern from "_cfast.h" nogil:
    void spmn_fsum(const int64_t* cidx, const double* w, int64_t a0, int64_t a1, const double* V,
                   const double* U, int64_t R, int64_t nr, double* oV, double* oU, int with_u)
    void spmn_fprod(const int64_t* cidx, int64_t a0, int64_t a1, const double* V, int64_t R,
                    int64_t nr, double* oV)
    void spmn_fcatprod(const int64_t* cidx, int64_t a0, int64_t a1, const int64_t* var,
                       const int64_t* tptr, const double* tab, const int32_t* code, int64_t R,
                       int64_t nr, double* oV, int cat8)
    void spmn_lin_rows(double* L, int64_t nr)
    void spmn_fcat_leaf(const int32_t* code, const double* tab, int64_t nr, double* out, int cat8)
    void spmn_fcheck(const double* V, const double* U, double t, int64_t nr, double* bad,
                     int check_u)
    double spmn_lin(double x)


cdef inline void prod_u(const Circ* C, Py_ssize_t i, Py_ssize_t nr, Py_ssize_t R,
                        double* U) noexcept nogil:
    """A product's U = 0 + the U of its children with a utility below them (edge order)."""
    cdef Py_ssize_t k, r, a0 = C.lcptr[i], a1 = C.lcptr[i + 1]
    cdef double* Ui = U + i * R
    cdef const double* Uc
    if R % 16 == 0:
        for r in range(0, nr, 16):
            spmn_prod_add16(C.lcidx, a0, a1, U, R, r, Ui + r)
    else:
        for r in range(nr):
            Ui[r] = 0.0
        for k in range(a0, a1):
            Uc = U + C.lcidx[k] * R
            for r in range(nr):
                Ui[r] += Uc[r]


cdef void sup_chunk(const Circ* C, const double* xt, Py_ssize_t nr, Py_ssize_t R,
                    const double* values, double* M, double* Kx, double* U, double* tmp,
                    bint cu) noexcept nogil:
    """The scaled (M, Kx, U) pass over one chunk (U only when ``cu``); ``tmp`` holds 32 x the
    largest sum group's degree doubles (its scaled children, _cscaled.h spmn_sgroup). U is
    written for the nodes with a utility below them (``C.ulive``) only: the others' rows stay
    0 from the allocation of ``U`` (a max node above them copies a 0)."""
    cdef Py_ssize_t i, r, a0, a1, c, q, deg
    cdef int kd
    cdef bint live
    cdef double* Mi
    cdef double* Ki
    cdef double* Ui
    cdef const double* x
    for i in range(C.n):
        kd = C.kind[i]
        a0 = C.cptr[i]
        a1 = C.cptr[i + 1]
        Mi = M + i * R
        Ki = Kx + i * R
        Ui = U + i * R
        if kd == K_SUM:
            q = C.gid[i]
            if q == -2:  # evaluated with its group's head
                continue
            if q >= 0:
                live = cu and group_live(C, q)
                spmn_sgroup(C.cptr, C.cidx, C.W, C.wm, C.wk, C.gmem + C.gptr[q],
                            C.gptr[q + 1] - C.gptr[q], M, Kx, U, R, nr, tmp,
                            tmp + SPMN_SB * C.gdeg, live)
                if live:
                    zero_dead_members(C, q, nr, R, U)
                continue
            spmn_ssum(C.cidx, C.wm, C.wk, a0, a1, M, Kx, U, R, nr, Mi, Ki, Ui,
                      cu and C.ulive[i])
        elif kd == K_PRODUCT:
            spmn_sprod(C.cidx, a0, a1, M, Kx, R, nr, Mi, Ki)
            if cu and C.ulive[i]:
                prod_u(C, i, nr, R, U)
        elif kd == K_MAX:
            x = xt + C.var[i] * R
            deg = a1 - a0
            for r in range(nr):
                c = C.cidx[a0 + max_choice_above(C.cidx, a0, deg, x[r], M, 0.0, U, R, r)]
                Mi[r] = M[c * R + r]
                Ki[r] = Kx[c * R + r]
                Ui[r] = U[c * R + r]
        elif kd == K_MVGAUSSIAN:
            mv_up(C.params, C.pptr[i], xt, nr, R, Mi, False)
            spmn_to_mk_rows(Mi, Ki, nr)
        elif kd == K_CATEGORICAL:
            spmn_scat_leaf(xcodes(xt, C.nv, R) + C.var[i] * R, C.tabSM + C.tptr[i],
                           C.tabSK + C.tptr[i], nr, Mi, Ki)
        else:
            leaf_up(C, i, kd, xt, nr, R, values, Mi, Ui, cu and C.ulive[i], NAN)
            spmn_to_mk_rows(Mi, Ki, nr)


cdef void fast_chunk(const Circ* C, const double* xt, Py_ssize_t nr, Py_ssize_t R,
                     const double* values, double* V, double* U, double* bad,
                     bint cu, bint fuse) noexcept nogil:
    """The linear fast path (_cfast.h): V = p per node and row, U as sup_chunk; bad[r] > 0 for
    the rows some node's value leaves {0} U [C.fthr[i], 2^500] or a sum's U is not finite (they
    take the scaled pass). Nodes whose bounds are proven (``C.fchk[i] == 0``) are not tested.
    With ``fuse``, products of categorical leaves read the leaves' tables themselves and the
    leaves are skipped (``C.fuse``, spmn.kernels._common.fused_leaves)."""
    cdef Py_ssize_t i, r, a0, a1, c, deg
    cdef int kd
    cdef bint live
    cdef double* Vi
    cdef double* Ui
    cdef const double* x
    for r in range(nr):
        bad[r] = 0.0
    for i in range(C.n):
        kd = C.kind[i]
        a0 = C.cptr[i]
        a1 = C.cptr[i + 1]
        Vi = V + i * R
        Ui = U + i * R
        live = cu and C.ulive[i]
        if kd == K_SUM:
            spmn_fsum(C.cidx, C.wl, a0, a1, V, U, R, nr, Vi, Ui, live)
        elif kd == K_PRODUCT:
            if fuse and C.fuse[i] == 1:
                spmn_fcatprod(C.cidx, a0, a1, C.var, C.tptr, C.tabF, xcodes(xt, C.nv, R), R,
                              nr, Vi, C.cat8)
            else:
                spmn_fprod(C.cidx, a0, a1, V, R, nr, Vi)
            if live:
                prod_u(C, i, nr, R, U)
        elif kd == K_MAX:
            x = xt + C.var[i] * R
            deg = a1 - a0
            for r in range(nr):
                c = C.cidx[a0 + max_choice_above(C.cidx, a0, deg, x[r], V, 0.0, U, R, r)]
                Vi[r] = V[c * R + r]
                Ui[r] = U[c * R + r]
        elif kd == K_MVGAUSSIAN:
            mv_up(C.params, C.pptr[i], xt, nr, R, Vi, False)
            spmn_lin_rows(Vi, nr)
        elif kd == K_CATEGORICAL:
            if fuse and C.fuse[i] == 2:
                continue
            spmn_fcat_leaf(xcodes(xt, C.nv, R) + C.var[i] * R, C.tabF + C.tptr[i], nr, Vi,
                           C.cat8)
        else:
            leaf_up(C, i, kd, xt, nr, R, values, Vi, Ui, live, NAN)
            spmn_lin_rows(Vi, nr)
        if C.fchk[i] or (live and kd == K_SUM):
            spmn_fcheck(Vi, Ui, C.fthr[i], nr, bad, live and kd == K_SUM)
