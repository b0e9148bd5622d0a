# Top-down passes over one chunk (policy, MPE completion, sampling, flows); the same
# operations in the same order as spmn/kernels/_numba_down.py (see its docstrings).
# X, out, u and z are row-major (rows of the block x columns); work arrays node-major.

cdef void clear_reach(uint8_t* reach, Py_ssize_t n, Py_ssize_t nr, Py_ssize_t R) noexcept nogil:
    cdef Py_ssize_t i, r
    for i in range(n):
        for r in range(nr):
            reach[i * R + r] = 0
    for r in range(nr):
        reach[(n - 1) * R + r] = 1


cdef inline void product_down(const int64_t* cidx, Py_ssize_t a0, Py_ssize_t a1, uint8_t* reach,
                              Py_ssize_t i, Py_ssize_t nr, Py_ssize_t R) noexcept nogil:
    cdef Py_ssize_t e, r
    cdef uint8_t* Rc
    cdef const uint8_t* Ri = reach + i * R
    for e in range(a0, a1):
        Rc = reach + cidx[e] * R
        for r in range(nr):
            Rc[r] |= Ri[r]


cdef void policy_down(const Circ* C, const double* X, Py_ssize_t nv, Py_ssize_t lo, Py_ssize_t nr,
                      Py_ssize_t R, const double* L, const double* U, uint8_t* reach,
                      double* out) noexcept nogil:
    cdef Py_ssize_t i, e, r, a0, a1, cnt, first, v, cj
    cdef int kd
    clear_reach(reach, C.n, nr, R)
    for i in range(C.n - 1, -1, -1):
        kd = C.kind[i]
        a0 = C.cptr[i]
        a1 = C.cptr[i + 1]
        if kd == K_PRODUCT:
            product_down(C.cidx, a0, a1, reach, i, nr, R)
        elif kd == K_SUM:
            for r in range(nr):
                if reach[i * R + r]:
                    cnt = 0
                    first = -1
                    for e in range(a0, a1):
                        if C.lw[e] + L[C.cidx[e] * R + r] > -INFINITY:
                            cnt += 1
                            if first < 0:
                                first = e
                    if cnt == 1:
                        reach[C.cidx[first] * R + r] = 1
        elif kd == K_MAX:
            v = C.var[i]
            for r in range(nr):
                if reach[i * R + r]:
                    cj = max_choice(C.cidx, a0, a1 - a0, X[(lo + r) * nv + v], L, U, R, r)
                    out[(lo + r) * nv + v] = <double>cj
                    reach[C.cidx[a0 + cj] * R + r] = 1


cdef void mpe_down(const Circ* C, const double* X, Py_ssize_t nv, Py_ssize_t lo, Py_ssize_t nr,
                   Py_ssize_t R, const double* M, int64_t* stack, int64_t* seen,
                   double* out) noexcept nogil:
    """reference.mpe's completion, row by row: a walk from the root that visits only the nodes
    the completion reaches (argmax child of a sum or max node, first maximum; every child of a
    product; each node once per row, ``seen`` holding the row it was last visited in), so its
    cost is the size of the chosen sub-circuit, not of the circuit. ``stack`` holds edges + 1
    entries, ``seen`` one per node (-1 or a row index of this call)."""
    cdef Py_ssize_t r, i, e, a0, a1, bj, v, cj, j, top, row
    cdef int kd
    cdef double best, a, d
    cdef MVWork w
    for r in range(nr):
        row = lo + r
        top = 1
        stack[0] = C.n - 1
        while top > 0:
            top -= 1
            i = stack[top]
            if seen[i] == row:
                continue
            seen[i] = row
            kd = C.kind[i]
            a0 = C.cptr[i]
            a1 = C.cptr[i + 1]
            if kd == K_PRODUCT:
                for e in range(a1 - 1, a0 - 1, -1):
                    stack[top] = C.cidx[e]
                    top += 1
            elif kd == K_SUM:
                bj = a0
                best = C.lw[a0] + M[C.cidx[a0] * R + r]
                for e in range(a0 + 1, a1):
                    a = C.lw[e] + M[C.cidx[e] * R + r]
                    if a > best:
                        best = a
                        bj = e
                stack[top] = C.cidx[bj]
                top += 1
            elif kd == K_MAX:
                v = C.var[i]
                d = X[row * nv + v]
                if isnan(d):
                    cj = 0
                    best = M[C.cidx[a0] * R + r]
                    for j in range(1, a1 - a0):
                        a = M[C.cidx[a0 + j] * R + r]
                        if a > best:
                            best = a
                            cj = j
                else:
                    cj = <Py_ssize_t>d
                if isnan(out[row * nv + v]):
                    out[row * nv + v] = <double>cj
                stack[top] = C.cidx[a0 + cj]
                top += 1
            elif kd == K_MVGAUSSIAN:
                if mv_alloc(&w, C.params, C.pptr[i]):
                    mv_fill(C.params, C.pptr[i], X, nv, row, out, NULL, 0, False, i, C.n, &w)
                mv_free(&w)
            elif kd != K_INTERFACE:
                v = C.var[i]
                if isnan(out[row * nv + v]):
                    out[row * nv + v] = C.mode_val[i]


cdef inline Py_ssize_t pick_params(const double* params, Py_ssize_t base, Py_ssize_t k,
                                   double u) noexcept nogil:
    cdef double cum = 0.0, pj
    cdef Py_ssize_t last = 0, j
    for j in range(k):
        pj = fexp(params[base + j])
        cum = cum + pj
        if u < cum:
            return j
        if pj > 0.0:
            last = j
    return last


cdef double hist_sample(const double* params, Py_ssize_t p0, double u) noexcept nogil:
    cdef Py_ssize_t m = <Py_ssize_t>params[p0]
    cdef Py_ssize_t b0 = p0 + 2, d0 = p0 + 3 + m, j = -1, last = 0, q
    cdef double cum = 0.0, before = 0.0, before_last = 0.0, pj, prev, lo, hi, x
    for q in range(m):
        pj = fexp(params[d0 + q] + flog(params[b0 + q + 1] - params[b0 + q]))
        prev = cum
        cum = cum + pj
        if u < cum:
            j = q
            before = prev
            break
        if pj > 0.0:
            last = q
            before_last = prev
    if j < 0:
        j = last
        before = before_last
    lo = params[b0 + j]
    hi = params[b0 + j + 1]
    x = lo + (u - before) / fexp(params[d0 + j])
    x = x if x > lo else lo
    return x if x < hi else hi


cdef void mv_down(const Circ* C, const double* X, Py_ssize_t nv, Py_ssize_t lo, Py_ssize_t nr,
                  Py_ssize_t R, const uint8_t* reach, double* out, const double* z,
                  Py_ssize_t nz, bint draw, Py_ssize_t i) noexcept nogil:
    """Multivariate Gaussian leaf ``i`` on the reached rows: conditional means (MPE) or a
    conditional draw with ``z`` (``nz`` columns) into the unobserved entries of ``out``."""
    cdef MVWork w
    cdef Py_ssize_t r, p0 = C.pptr[i]
    if mv_alloc(&w, C.params, p0):
        for r in range(nr):
            if reach[i * R + r]:
                mv_fill(C.params, p0, X, nv, lo + r, out, z, nz, draw, i, C.n, &w)
    mv_free(&w)


cdef void sample_down(const Circ* C, const double* X, Py_ssize_t nv, Py_ssize_t lo,
                      Py_ssize_t nr, Py_ssize_t R, const double* L, const double* U,
                      uint8_t* reach, double* out, const double* u,
                      const double* z, Py_ssize_t nz) noexcept nogil:
    cdef Py_ssize_t i, e, r, a0, a1, v, cj, ch, last, p0, k, o
    cdef int kd
    cdef double Li, uu, cum, lp, pj
    cdef Py_ssize_t n = C.n
    clear_reach(reach, n, nr, R)
    for i in range(n - 1, -1, -1):
        kd = C.kind[i]
        a0 = C.cptr[i]
        a1 = C.cptr[i + 1]
        if kd == K_PRODUCT:
            product_down(C.cidx, a0, a1, reach, i, nr, R)
        elif kd == K_SUM:
            for r in range(nr):
                if reach[i * R + r]:
                    Li = L[i * R + r]
                    uu = u[(lo + r) * n + i]
                    cum = 0.0
                    ch = -1
                    last = 0
                    for e in range(a0, a1):
                        lp = -INFINITY if Li == -INFINITY else (C.lw[e] + L[C.cidx[e] * R + r]) - Li
                        pj = fexp(lp)
                        cum = cum + pj
                        if uu < cum:
                            ch = e - a0
                            break
                        if pj > 0.0:
                            last = e - a0
                    if ch < 0:
                        ch = last
                    reach[C.cidx[a0 + ch] * R + r] = 1
        elif kd == K_MAX:
            v = C.var[i]
            for r in range(nr):
                if reach[i * R + r]:
                    cj = max_choice(C.cidx, a0, a1 - a0, X[(lo + r) * nv + v], L, U, R, r)
                    if isnan(out[(lo + r) * nv + v]):
                        out[(lo + r) * nv + v] = <double>cj
                    reach[C.cidx[a0 + cj] * R + r] = 1
        elif kd == K_MVGAUSSIAN:
            mv_down(C, X, nv, lo, nr, R, reach, out, z, nz, True, i)
        elif kd != K_INTERFACE:
            v = C.var[i]
            p0 = C.pptr[i]
            for r in range(nr):
                o = (lo + r) * nv + v
                if reach[i * R + r] and isnan(out[o]):
                    uu = u[(lo + r) * n + i]
                    if kd == K_CATEGORICAL:
                        out[o] = <double>pick_params(C.params, p0, C.pptr[i + 1] - p0, uu)
                    elif kd == K_GAUSSIAN:
                        out[o] = C.params[p0] + C.params[p0 + 1] * z[(lo + r) * nz + i]
                    elif kd == K_UTILITY_DISCRETE:
                        k = <Py_ssize_t>C.params[p0]
                        out[o] = C.params[p0 + 2 + pick_params(C.params, p0 + 2 + k, k, uu)]
                    else:
                        out[o] = hist_sample(C.params, p0, uu)


cdef void leaf_stats(int kd, const double* params, Py_ssize_t p0, Py_ssize_t p1, double xr,
                     double f, double* acc) noexcept nogil:
    cdef bint obs
    cdef double mean, std
    cdef Py_ssize_t j, k, b0, base
    if kd == K_INTERFACE:
        acc[p0] += f
        return
    obs = not isnan(xr)
    if kd == K_CATEGORICAL:
        if obs:
            acc[p0 + <Py_ssize_t>xr] += f
        else:
            for j in range(p0, p1):
                acc[j] += f * fexp(params[j])
        return
    if kd == K_GAUSSIAN:
        mean = params[p0]
        std = params[p0 + 1]
        acc[p0] += f
        if obs:
            acc[p0 + 1] += f * xr
            acc[p0 + 2] += f * xr * xr
        else:
            acc[p0 + 1] += f * mean
            acc[p0 + 2] += f * (mean * mean + std * std)
        return
    acc[p0] += f
    acc[p0 + 1] += f * (xr if obs else params[p0 + 1])
    k = <Py_ssize_t>params[p0]
    if kd == K_UTILITY_DISCRETE:
        base = p0 + 2 + k
        if obs:
            j = udisc_index(params, p0, k, xr)
            if j >= 0:
                acc[base + j] += f
        else:
            for j in range(k):
                acc[base + j] += f * fexp(params[base + j])
        return
    b0 = p0 + 2
    base = p0 + 3 + k
    if obs:
        j = hist_bin(params, b0, k, xr)
        if j >= 0:
            acc[base + j] += f
    else:
        for j in range(k):
            acc[base + j] += f * (fexp(params[base + j]) * (params[b0 + j + 1] - params[b0 + j]))


cdef void counts_down(const Circ* C, const double* X, Py_ssize_t nv, Py_ssize_t lo,
                      Py_ssize_t nr, Py_ssize_t R, const double* L, const double* U, double* F,
                      double* eacc, double* pacc) noexcept nogil:
    cdef Py_ssize_t i, e, r, a0, a1, c, v, cj, p0, p1
    cdef Py_ssize_t n = C.n
    cdef int kd
    cdef double w, f, g, xr
    cdef MVWork mw
    cdef double* Fi
    cdef double* Fc
    cdef const double* Li
    cdef const double* Lc
    for i in range(n):
        for r in range(nr):
            F[i * R + r] = 0.0
    for r in range(nr):
        F[(n - 1) * R + r] = 1.0 if L[(n - 1) * R + r] > -INFINITY else 0.0
    for i in range(n - 1, -1, -1):
        kd = C.kind[i]
        a0 = C.cptr[i]
        a1 = C.cptr[i + 1]
        Fi = F + i * R
        Li = L + i * R
        if kd == K_SUM:
            for e in range(a0, a1):
                c = C.cidx[e]
                w = C.lw[e]
                Fc = F + c * R
                Lc = L + c * R
                for r in range(nr):
                    f = Fi[r]
                    if f != 0.0 and Li[r] > -INFINITY:
                        g = f * fexp((w + Lc[r]) - Li[r])
                        Fc[r] += g
                        eacc[e] += g
        elif kd == K_PRODUCT:
            for e in range(a0, a1):
                Fc = F + C.cidx[e] * R
                for r in range(nr):
                    f = Fi[r]
                    if f != 0.0 and Li[r] > -INFINITY:
                        Fc[r] += f
                        eacc[e] += f
        elif kd == K_MAX:
            v = C.var[i]
            for r in range(nr):
                f = Fi[r]
                if f != 0.0 and Li[r] > -INFINITY:
                    cj = max_choice(C.cidx, a0, a1 - a0, X[(lo + r) * nv + v], L, U, R, r)
                    F[C.cidx[a0 + cj] * R + r] += f
                    eacc[a0 + cj] += f
        elif kd == K_MVGAUSSIAN:
            p0 = C.pptr[i]
            if mv_alloc(&mw, C.params, p0):
                for r in range(nr):
                    f = Fi[r]
                    if f != 0.0:
                        mv_stats(C.params, p0, X, nv, lo + r, f, pacc, &mw)
            mv_free(&mw)
        else:
            v = C.var[i]
            p0 = C.pptr[i]
            p1 = C.pptr[i + 1]
            for r in range(nr):
                f = Fi[r]
                if f != 0.0:
                    xr = X[(lo + r) * nv + v] if kd != K_INTERFACE else 0.0
                    leaf_stats(kd, C.params, p0, p1, xr, f, pacc)
