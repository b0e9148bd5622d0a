# Upward passes over one chunk of rows, node-major work arrays (L[i * R + r]); the same
# operations in the same order as spmn/kernels/_numba_up.py (see its docstrings).

cdef extern from "_cblock.h" nogil:
    void spmn_sum_max16(const int64_t* cidx, const double* lw, int64_t a0, int64_t a1,
                       const double* M, int64_t R, int64_t off, double* out)
    void spmn_prod_add16(const int64_t* cidx, int64_t a0, int64_t a1, const double* M,
                        int64_t R, int64_t off, double* out)
    void spmn_cat_leaf(const int32_t* code, const double* tab, int64_t nr, double* out)


ctypedef struct Circ:
    const signed char* kind
    const int64_t* cptr
    const int64_t* cidx
    const double* lw
    const int64_t* var
    const int64_t* pptr
    const double* params
    const signed char* ulive
    const double* mode_logp
    const double* mode_val
    const int64_t* gid
    const int64_t* gptr
    const int64_t* gmem
    const double* W
    Py_ssize_t n
    Py_ssize_t nv       # evidence columns of this call (set before the kernels run)
    Py_ssize_t nvc      # variables the node table mentions (var + 1)
    const int32_t* card  # per variable < nvc: categories of its categorical leaves (0: none)
    const int64_t* tptr  # per node: offset of a categorical leaf's table (-1: not categorical)
    const double* tabL   # leaf tables: log p[0..k-1], then 0 (NaN evidence, marginalized)
    const double* tabM   # the same with the leaf's max log p last (MPE)
    const double* wm     # per edge: w = wm 2^wk (the scaled pass, _cscaled.pxi)
    const double* wk
    const double* tabSM  # tabL as mantissas and exponents (the scaled pass)
    const double* tabSK
    Py_ssize_t gdeg      # the largest sum group's degree
    const double* wl     # per edge: w (the fast path, _cfast.h)
    const double* tabF   # tabL as probabilities (the fast path)
    const double* fthr   # per node: the fast path's lower bound T_i
    const signed char* fchk  # per node: 1 where the fast path tests the bounds
    const int64_t* lcptr     # per node: its children with a utility below them
    const int64_t* lcidx
    const signed char* fuse  # per node: 1 a product of leaves read from tables, 2 such a leaf
    bint cat8                # every categorical leaf's table at 8 doubles (_cfast.h)
    bint upx                 # the (L, U) pass reads the values, not only the codes (_cload.pxi)


cdef inline int32_t* xcodes(const double* xt, Py_ssize_t nv, Py_ssize_t R) noexcept nogil:
    """The int32 codes that load_chunk stores after the transposed chunk ``xt``."""
    return <int32_t*>(xt + nv * R + 1)


cdef inline Py_ssize_t hist_bin(const double* params, Py_ssize_t b0, Py_ssize_t m,
                                double x) noexcept nogil:
    cdef Py_ssize_t lo = 0, hi = m, mid
    if x < params[b0] or x > params[b0 + m]:
        return -1
    if x == params[b0 + m]:
        return m - 1
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        if params[b0 + mid] <= x:
            lo = mid
        else:
            hi = mid
    return lo


cdef inline Py_ssize_t udisc_index(const double* params, Py_ssize_t p0, Py_ssize_t k,
                                   double x) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(k):
        if params[p0 + 2 + j] == x:
            return j
    return -1


cdef inline double leaf_logp(int kd, const double* params, Py_ssize_t p0, double x) noexcept nogil:
    cdef double z
    cdef Py_ssize_t k, j, m
    if kd == K_CATEGORICAL:
        return params[p0 + <Py_ssize_t>x]
    if kd == K_GAUSSIAN:
        z = (x - params[p0]) / params[p0 + 1]
        return params[p0 + 2] - 0.5 * z * z
    if kd == K_UTILITY_DISCRETE:
        k = <Py_ssize_t>params[p0]
        j = udisc_index(params, p0, k, x)
        if j < 0:
            return -INFINITY
        return params[p0 + 2 + k + j]
    m = <Py_ssize_t>params[p0]
    j = hist_bin(params, p0 + 2, m, x)
    if j < 0:
        return -INFINITY
    return params[p0 + 3 + m + j]


cdef void leaf_up(const Circ* C, Py_ssize_t i, int kd, const double* xt, Py_ssize_t nr,
                  Py_ssize_t R, const double* values, double* Li, double* Ui, bint cu,
                  double mode) noexcept nogil:
    cdef Py_ssize_t r, p0 = C.pptr[i], v = C.var[i]
    cdef const double* params = C.params
    cdef const double* x
    cdef double val, xr, unobs, mean
    cdef bint util
    if kd == K_INTERFACE:
        for r in range(nr):
            Li[r] = 0.0
        if cu:
            val = values[<Py_ssize_t>params[p0]]
            for r in range(nr):
                Ui[r] = val
        return
    x = xt + v * R
    util = kd == K_UTILITY_DISCRETE or kd == K_UTILITY_HISTOGRAM
    unobs = 0.0 if isnan(mode) else mode
    if kd == K_CATEGORICAL:  # the loop below as table lookups (the same values)
        spmn_cat_leaf(xcodes(xt, C.nv, R) + v * R, (C.tabL if isnan(mode) else C.tabM) + C.tptr[i],
                      nr, Li)
        if cu:
            for r in range(nr):
                Ui[r] = 0.0
        return
    for r in range(nr):
        xr = x[r]
        if isnan(xr):
            Li[r] = unobs
        else:
            Li[r] = leaf_logp(kd, params, p0, xr)
    if cu:
        if util:
            mean = params[p0 + 1]
            for r in range(nr):
                xr = x[r]
                Ui[r] = mean if isnan(xr) else xr
        else:
            for r in range(nr):
                Ui[r] = 0.0


cdef inline Py_ssize_t max_choice_above(const int64_t* cidx, Py_ssize_t a0, Py_ssize_t deg,
                                        double d, const double* A, double floor,
                                        const double* U, Py_ssize_t R,
                                        Py_ssize_t r) noexcept nogil:
    """The observed decision, else the first admissible child (A > floor: L > -inf, or p > 0
    for the fast and scaled passes) whose U is within TIE_RTOL * max(1, |best|) of the best
    admissible U (0 if none is admissible)."""
    cdef double best = -INFINITY, sc, scale, thr
    cdef Py_ssize_t j, c
    if not isnan(d):
        return <Py_ssize_t>d
    for j in range(deg):
        c = cidx[a0 + j]
        if A[c * R + r] > floor:
            sc = U[c * R + r]
            best = sc if sc > best else best
    if best == -INFINITY:
        return 0
    scale = best if best > 1.0 else (-best if -best > 1.0 else 1.0)
    thr = best - TIE_RTOL * scale
    for j in range(deg):
        c = cidx[a0 + j]
        if A[c * R + r] > floor and U[c * R + r] >= thr:
            return j
    return 0


cdef inline Py_ssize_t max_choice(const int64_t* cidx, Py_ssize_t a0, Py_ssize_t deg, double d,
                                  const double* L, const double* U, Py_ssize_t R,
                                  Py_ssize_t r) noexcept nogil:
    return max_choice_above(cidx, a0, deg, d, L, -INFINITY, U, R, r)


cdef void sum_up(const int64_t* cidx, const double* lw, Py_ssize_t a0, Py_ssize_t a1,
                 Py_ssize_t nr, Py_ssize_t R, double* L, double* U, Py_ssize_t i, double* tmp,
                 bint with_u) noexcept nogil:
    cdef double* m = tmp
    cdef double* mm = tmp + R
    cdef double* s = tmp + 2 * R
    cdef double* num = tmp + 3 * R
    cdef double* Li = L + i * R
    cdef double* Ui
    cdef const double* Lc
    cdef const double* Uc
    cdef double w, a, mr, ee, lg, q
    cdef Py_ssize_t e, r
    for r in range(nr):
        m[r] = -INFINITY
    for e in range(a0, a1):
        w = lw[e]
        Lc = L + cidx[e] * R
        for r in range(nr):
            a = w + Lc[r]
            mr = m[r]
            m[r] = a if a > mr else mr
    for r in range(nr):
        mr = m[r]
        mm[r] = mr if mr > -INFINITY else 0.0
        s[r] = 0.0
        num[r] = 0.0
    if with_u:
        for e in range(a0, a1):
            w = lw[e]
            Lc = L + cidx[e] * R
            Uc = U + cidx[e] * R
            for r in range(nr):
                ee = fexp((w + Lc[r]) - mm[r])
                s[r] += ee
                num[r] += ee * Uc[r]
        Ui = U + i * R
        for r in range(nr):
            mr = m[r]
            lg = flog(s[r])
            q = num[r] / s[r]
            Li[r] = mr + lg if mr > -INFINITY else -INFINITY
            Ui[r] = q if mr > -INFINITY else 0.0
    else:
        for e in range(a0, a1):
            w = lw[e]
            Lc = L + cidx[e] * R
            for r in range(nr):
                s[r] += fexp((w + Lc[r]) - mm[r])
        for r in range(nr):
            mr = m[r]
            lg = flog(s[r])
            Li[r] = mr + lg if mr > -INFINITY else -INFINITY


# Sum groups: sum nodes with the same child list (a "dense layer": the K sums of a region of a
# RAT-SPN / layered circuit). The group is evaluated at its first member (its children come
# before it), with one exp per (child, row) instead of one per (edge, row):
#   mx = max_c L_c (no weights; 0 when -inf), e_c = exp(L_c - mx),
#   s_k = sum_c W_kc e_c (W = fexp(log w), computed once per call when there are groups),
#   L_k = mx + log s_k   [U_k = sum_c W_kc (e_c U_c) / s_k].
# In a row where s_k leaves [2^-900, 2^900] (all children -inf, weights so small that terms
# underflow, huge weights, NaN) member k takes the exact sum_up result instead.
# The same operations, in the same order, as sum_group in spmn/kernels/_numba_up.py.

cdef extern from *:
    """
    static const double SPMN_GRP_TINY = 1.1754943508222875e-271; /* 2^-900 */
    static const double SPMN_GRP_HUGE = 8.452712498170644e+270;  /* 2^900 */
    """
    const double GRP_TINY "SPMN_GRP_TINY"
    const double GRP_HUGE "SPMN_GRP_HUGE"


cdef void sum_group(const Circ* C, const double* W, const int64_t* mem, Py_ssize_t g,
                    Py_ssize_t nr, Py_ssize_t R, double* L, double* U, double* tmp,
                    bint with_u) noexcept nogil:
    cdef Py_ssize_t h = mem[0], a0 = C.cptr[h], a1 = C.cptr[h + 1], j, k, r, node
    cdef double* mx = tmp
    cdef double* ev = tmp + R
    cdef double* eu = tmp + 2 * R
    cdef double* s = tmp + 4 * R
    cdef double* num = tmp + (4 + g) * R
    cdef double* sk
    cdef double* nk
    cdef double* Li
    cdef double* Ui
    cdef const double* Lc
    cdef const double* Uc
    cdef double a, m, wk, sr, nbad
    for r in range(nr):
        mx[r] = -INFINITY
    for j in range(a0, a1):
        Lc = L + C.cidx[j] * R
        for r in range(nr):
            a = Lc[r]
            m = mx[r]
            mx[r] = a if a > m else m
    for r in range(nr):
        m = mx[r]
        mx[r] = m if m > -INFINITY else 0.0
    for k in range(g * R):
        s[k] = 0.0
        num[k] = 0.0
    for j in range(a0, a1):
        Lc = L + C.cidx[j] * R
        for r in range(nr):
            ev[r] = fexp(Lc[r] - mx[r])
        if with_u:
            Uc = U + C.cidx[j] * R
            for r in range(nr):
                eu[r] = ev[r] * Uc[r]
        for k in range(g):
            wk = W[C.cptr[mem[k]] + (j - a0)]
            sk = s + k * R
            for r in range(nr):
                sk[r] += wk * ev[r]
            if with_u:
                nk = num + k * R
                for r in range(nr):
                    nk[r] += wk * eu[r]
    for k in range(g):
        node = mem[k]
        sk = s + k * R
        Li = L + node * R
        nbad = 0.0
        for r in range(nr):
            sr = sk[r]
            Li[r] = mx[r] + flog(sr)
            nbad += 0.0 if (sr >= GRP_TINY and sr <= GRP_HUGE) else 1.0
        if with_u:
            nk = num + k * R
            Ui = U + node * R
            for r in range(nr):
                Ui[r] = nk[r] / sk[r]
        if nbad > 0.0:  # exact sum_up for the rows out of range (row by row: results do
            # not depend on the other rows of the chunk)
            Ui = U + node * R
            for r in range(nr):
                ev[r] = Li[r]
            if with_u:
                for r in range(nr):
                    eu[r] = Ui[r]
            sum_up(C.cidx, C.lw, C.cptr[node], C.cptr[node + 1], nr, R, L, U, node,
                   tmp + (4 + 2 * g) * R, with_u)
            for r in range(nr):
                sr = sk[r]
                Li[r] = ev[r] if (sr >= GRP_TINY and sr <= GRP_HUGE) else Li[r]
            if with_u:
                for r in range(nr):
                    sr = sk[r]
                    Ui[r] = eu[r] if (sr >= GRP_TINY and sr <= GRP_HUGE) else Ui[r]


cdef inline bint group_live(const Circ* C, Py_ssize_t q) noexcept nogil:
    """Whether some member of sum group ``q`` has a utility below it (the group carries U)."""
    cdef Py_ssize_t k
    for k in range(C.gptr[q], C.gptr[q + 1]):
        if C.ulive[C.gmem[k]]:
            return True
    return False


cdef inline void zero_dead_members(const Circ* C, Py_ssize_t q, Py_ssize_t nr, Py_ssize_t R,
                                   double* U) noexcept nogil:
    """U = 0 for the members of group ``q`` with no utility below them."""
    cdef Py_ssize_t k, r
    for k in range(C.gptr[q], C.gptr[q + 1]):
        if not C.ulive[C.gmem[k]]:
            for r in range(nr):
                U[C.gmem[k] * R + r] = 0.0


cdef void group_up(const Circ* C, Py_ssize_t q, Py_ssize_t nr, Py_ssize_t R, double* L,
                   double* U, double* tmp, bint cu) noexcept nogil:
    """Sum group ``q`` (U carried when some member needs it; 0 for the members that do not)."""
    sum_group(C, C.W, C.gmem + C.gptr[q], C.gptr[q + 1] - C.gptr[q], nr, R, L, U, tmp,
              cu and group_live(C, q))
    if cu:
        zero_dead_members(C, q, nr, R, U)


cdef void up_one(const Circ* C, const double* xt, const double* values, double* L, double* U,
                 double* tmp, bint cu) noexcept nogil:
    """up_chunk for a chunk of one row (R = 1: a one-row Bellman pass), without row loops: the
    same operations in the same order, so the same bits."""
    cdef Py_ssize_t i, e, a0, a1, c, q
    cdef int kd
    cdef bint with_u
    cdef double m, mm, a, s, num, ee, acc
    for i in range(C.n):
        kd = C.kind[i]
        a0 = C.cptr[i]
        a1 = C.cptr[i + 1]
        if kd == K_SUM:
            q = C.gid[i]
            if q == -2:
                continue
            if q >= 0:
                group_up(C, q, 1, 1, L, U, tmp, cu)
                continue
            with_u = cu and C.ulive[i]
            m = -INFINITY
            for e in range(a0, a1):
                a = C.lw[e] + L[C.cidx[e]]
                m = a if a > m else m
            mm = m if m > -INFINITY else 0.0
            s = 0.0
            num = 0.0
            if with_u:
                for e in range(a0, a1):
                    c = C.cidx[e]
                    ee = fexp((C.lw[e] + L[c]) - mm)
                    s += ee
                    num += ee * U[c]
                L[i] = m + flog(s) if m > -INFINITY else -INFINITY
                U[i] = num / s if m > -INFINITY else 0.0
            else:
                for e in range(a0, a1):
                    s += fexp((C.lw[e] + L[C.cidx[e]]) - mm)
                L[i] = m + flog(s) if m > -INFINITY else -INFINITY
                if cu:
                    U[i] = 0.0
        elif kd == K_PRODUCT:
            acc = 0.0
            for e in range(a0, a1):
                acc += L[C.cidx[e]]
            L[i] = acc
            if cu:
                acc = 0.0
                if C.ulive[i]:
                    for e in range(a0, a1):
                        acc += U[C.cidx[e]]
                U[i] = acc
        elif kd == K_MAX:
            c = C.cidx[a0 + max_choice(C.cidx, a0, a1 - a0, xt[C.var[i]], L, U, 1, 0)]
            L[i] = L[c]
            U[i] = U[c]
        elif kd == K_MVGAUSSIAN:
            mv_up(C.params, C.pptr[i], xt, 1, 1, L + i, False)
            if cu:
                U[i] = 0.0
        else:
            leaf_up(C, i, kd, xt, 1, 1, values, L + i, U + i, cu, NAN)


cdef void up_chunk(const Circ* C, const double* xt, Py_ssize_t nr, Py_ssize_t R,
                   const double* values, double* L, double* U, double* tmp,
                   bint cu) noexcept nogil:
    """The (L, U) pass of reference.upward over one chunk (U only when ``cu``). Sums of a group
    (``C.gid``, see spmn.kernels._common.sum_groups) are evaluated together by sum_group;
    ``tmp`` holds (8 + 2 x the largest group) x R doubles."""
    cdef Py_ssize_t i, e, r, a0, a1, c, deg, q
    cdef int kd
    cdef double* Li
    cdef double* Ui
    cdef const double* Lc
    cdef const double* Uc
    cdef const double* x
    if R == 1:
        up_one(C, xt, values, L, U, tmp, cu)
        return
    for i in range(C.n):
        kd = C.kind[i]
        a0 = C.cptr[i]
        a1 = C.cptr[i + 1]
        if kd == K_SUM:
            q = C.gid[i]
            if q == -2:  # evaluated with its group's head
                continue
            if q >= 0:
                group_up(C, q, nr, R, L, U, tmp, cu)
                continue
            if cu:
                if C.ulive[i]:
                    sum_up(C.cidx, C.lw, a0, a1, nr, R, L, U, i, tmp, True)
                else:
                    sum_up(C.cidx, C.lw, a0, a1, nr, R, L, U, i, tmp, False)
                    Ui = U + i * R
                    for r in range(nr):
                        Ui[r] = 0.0
            else:
                sum_up(C.cidx, C.lw, a0, a1, nr, R, L, U, i, tmp, False)
        elif kd == K_PRODUCT:
            Li = L + i * R
            if R % 16 == 0:  # 16-row blocks in registers (_cblock.h), the same additions
                for r in range(0, nr, 16):
                    spmn_prod_add16(C.cidx, a0, a1, L, R, r, Li + r)
            else:
                for r in range(nr):
                    Li[r] = 0.0
                for e in range(a0, a1):
                    Lc = L + C.cidx[e] * R
                    for r in range(nr):
                        Li[r] += Lc[r]
            if cu:
                Ui = U + i * R
                if C.ulive[i] and R % 16 == 0:
                    for r in range(0, nr, 16):
                        spmn_prod_add16(C.cidx, a0, a1, U, R, r, Ui + r)
                else:
                    for r in range(nr):
                        Ui[r] = 0.0
                    if C.ulive[i]:
                        for e in range(a0, a1):
                            Uc = U + C.cidx[e] * R
                            for r in range(nr):
                                Ui[r] += Uc[r]
        elif kd == K_MAX:
            x = xt + C.var[i] * R
            deg = a1 - a0
            for r in range(nr):
                c = C.cidx[a0 + max_choice(C.cidx, a0, deg, x[r], L, U, R, r)]
                L[i * R + r] = L[c * R + r]
                U[i * R + r] = U[c * R + r]
        elif kd == K_MVGAUSSIAN:
            mv_up(C.params, C.pptr[i], xt, nr, R, L + i * R, False)
            if cu:
                Ui = U + i * R
                for r in range(nr):
                    Ui[r] = 0.0
        else:
            leaf_up(C, i, kd, xt, nr, R, values, L + i * R,
                    U + i * R, cu, NAN)


cdef void mpe_up_chunk(const Circ* C, const double* xt, Py_ssize_t nr, Py_ssize_t R,
                       double* M) noexcept nogil:
    """Max-product pass of reference.mpe over one chunk."""
    cdef Py_ssize_t i, e, r, a0, a1
    cdef int kd
    cdef double* Mi
    cdef const double* Mc
    cdef const double* x
    cdef double w, a, mr, best, d
    for i in range(C.n):
        kd = C.kind[i]
        a0 = C.cptr[i]
        a1 = C.cptr[i + 1]
        Mi = M + i * R
        if kd == K_SUM:
            for r in range(nr):
                Mi[r] = -INFINITY
            for e in range(a0, a1):
                w = C.lw[e]
                Mc = M + C.cidx[e] * R
                for r in range(nr):
                    a = w + Mc[r]
                    mr = Mi[r]
                    Mi[r] = a if a > mr else mr
        elif kd == K_PRODUCT:
            for r in range(nr):
                Mi[r] = 0.0
            for e in range(a0, a1):
                Mc = M + C.cidx[e] * R
                for r in range(nr):
                    Mi[r] += Mc[r]
        elif kd == K_MAX:
            x = xt + C.var[i] * R
            for r in range(nr):
                d = x[r]
                if isnan(d):
                    best = M[C.cidx[a0] * R + r]
                    for e in range(a0 + 1, a1):
                        a = M[C.cidx[e] * R + r]
                        best = a if a > best else best
                    Mi[r] = best
                else:
                    Mi[r] = M[C.cidx[a0 + <Py_ssize_t>d] * R + r]
        elif kd == K_MVGAUSSIAN:
            mv_up(C.params, C.pptr[i], xt, nr, R, Mi, True)
        else:
            leaf_up(C, i, kd, xt, nr, R, C.mode_logp, Mi, Mi,
                    False, C.mode_logp[i])  # values are not read when U is off


# Blocked max-product pass: rows in blocks of 16 held in vector registers (_cblock.h: no
# per-edge loop set-up, alias checks or remainders). The same operations per row, in the same
# order, as mpe_up_chunk, so the same bits. Used when R is a multiple of 16; the rows nr..R of
# the last block are computed from leaf values set to 0 and never read back.
cdef void mpe_up_blocked(const Circ* C, const double* xt, Py_ssize_t nr, Py_ssize_t R,
                         double* M) noexcept nogil:
    cdef Py_ssize_t i, e, r, a0, a1, b, nb = (nr + 15) // 16 * 16
    cdef int kd
    cdef double* Mi
    cdef const double* x
    cdef double a, best, d
    for i in range(C.n):
        kd = C.kind[i]
        a0 = C.cptr[i]
        a1 = C.cptr[i + 1]
        Mi = M + i * R
        if kd == K_SUM:
            for b in range(0, nr, 16):
                spmn_sum_max16(C.cidx, C.lw, a0, a1, M, R, b, Mi + b)
        elif kd == K_PRODUCT:
            for b in range(0, nr, 16):
                spmn_prod_add16(C.cidx, a0, a1, M, R, b, Mi + b)
        elif kd == K_MAX:
            x = xt + C.var[i] * R
            for r in range(nr):
                d = x[r]
                if isnan(d):
                    best = M[C.cidx[a0] * R + r]
                    for e in range(a0 + 1, a1):
                        a = M[C.cidx[e] * R + r]
                        best = a if a > best else best
                    Mi[r] = best
                else:
                    Mi[r] = M[C.cidx[a0 + <Py_ssize_t>d] * R + r]
        elif kd == K_CATEGORICAL:
            spmn_cat_leaf(xcodes(xt, C.nv, R) + C.var[i] * R, C.tabM + C.tptr[i], nr, Mi)
        elif kd == K_MVGAUSSIAN:
            mv_up(C.params, C.pptr[i], xt, nr, R, Mi, True)
        else:
            leaf_up(C, i, kd, xt, nr, R, C.mode_logp, Mi, Mi, False, C.mode_logp[i])
        if kd >= K_MAX:  # defined values in the padding rows of the last block
            for r in range(nr, nb):
                Mi[r] = 0.0
