# The MultivariateGaussian leaf (K_MVGAUSSIAN), one row at a time: the same operations in the
# same order as spmn/kernels/_numba_mvg.py (see its docstring), so both backends agree bit for
# bit. Scratch (xv, e, A, perm/pos) is malloc'ed per leaf visit and freed after it.

from libc.math cimport sqrt
from libc.stdlib cimport free, malloc

cdef extern from *:
    """
    static const double SPMN_LOG_2PI = 1.8378770664093453;
    """
    const double LOG_2PI "SPMN_LOG_2PI"


ctypedef struct MVWork:
    double* xv
    double* e
    double* A
    Py_ssize_t* perm


cdef inline bint mv_alloc(MVWork* w, const double* params, Py_ssize_t p0) noexcept nogil:
    cdef Py_ssize_t d = <Py_ssize_t>params[p0]
    w.xv = <double*>malloc(d * sizeof(double))
    w.e = <double*>malloc(d * sizeof(double))
    w.A = <double*>malloc(d * d * sizeof(double))
    w.perm = <Py_ssize_t*>malloc(2 * d * sizeof(Py_ssize_t))
    return w.xv != NULL and w.e != NULL and w.A != NULL and w.perm != NULL


cdef inline void mv_free(MVWork* w) noexcept nogil:
    free(w.xv)
    free(w.e)
    free(w.A)
    free(w.perm)


cdef Py_ssize_t mv_factor(const double* params, Py_ssize_t p0, MVWork* w) noexcept nogil:
    cdef Py_ssize_t d = <Py_ssize_t>params[p0]
    cdef Py_ssize_t m0 = p0 + 2 + d, c0 = m0 + d, no = 0, k, j, a, b, q, pa
    cdef double s
    cdef double* A = w.A
    cdef Py_ssize_t* perm = w.perm
    for j in range(d):
        if not isnan(w.xv[j]):
            perm[no] = j
            no += 1
    k = no
    for j in range(d):
        if isnan(w.xv[j]):
            perm[k] = j
            k += 1
    for a in range(d):
        perm[d + perm[a]] = a
    for a in range(d):
        pa = perm[a]
        for b in range(a + 1):
            s = params[c0 + pa * d + perm[b]]
            for q in range(b):
                s = s - A[a * d + q] * A[b * d + q]
            if a == b:
                A[a * d + a] = sqrt(s)
            else:
                A[a * d + b] = s / A[b * d + b]
    for a in range(no):
        s = w.xv[perm[a]] - params[m0 + perm[a]]
        for q in range(a):
            s = s - A[a * d + q] * w.e[q]
        w.e[a] = s / A[a * d + a]
    return no


cdef double mv_logp(Py_ssize_t d, Py_ssize_t no, const MVWork* w, bint mode) noexcept nogil:
    cdef double out = 0.0, quad, ld
    cdef Py_ssize_t a
    if no > 0:
        quad = 0.0
        ld = 0.0
        for a in range(no):
            quad = quad + w.e[a] * w.e[a]
            ld = ld + flog(w.A[a * d + a])
        out = (-0.5 * quad - ld) - (0.5 * <double>no) * LOG_2PI
    if mode and no < d:
        ld = 0.0
        for a in range(no, d):
            ld = ld + flog(w.A[a * d + a])
        out = (out - ld) - (0.5 * <double>(d - no)) * LOG_2PI
    return out


cdef inline double mv_cond_mean(const double* params, Py_ssize_t p0, Py_ssize_t no,
                                const MVWork* w, Py_ssize_t a) noexcept nogil:
    cdef Py_ssize_t d = <Py_ssize_t>params[p0], q
    cdef double s = params[p0 + 2 + d + w.perm[a]]
    for q in range(no):
        s = s + w.A[a * d + q] * w.e[q]
    return s


cdef void mv_up(const double* params, Py_ssize_t p0, const double* xt, Py_ssize_t nr,
                Py_ssize_t R, double* Li, bint mode) noexcept nogil:
    cdef Py_ssize_t d = <Py_ssize_t>params[p0], r, j, no
    cdef MVWork w
    if not mv_alloc(&w, params, p0):
        mv_free(&w)
        for r in range(nr):
            Li[r] = NAN
        return
    for r in range(nr):
        for j in range(d):
            w.xv[j] = xt[<Py_ssize_t>params[p0 + 2 + j] * R + r]
        no = mv_factor(params, p0, &w)
        Li[r] = mv_logp(d, no, &w, mode)
    mv_free(&w)


cdef Py_ssize_t mv_row(const double* params, Py_ssize_t p0, const double* X, Py_ssize_t nv,
                       Py_ssize_t row, MVWork* w) noexcept nogil:
    cdef Py_ssize_t d = <Py_ssize_t>params[p0], j
    for j in range(d):
        w.xv[j] = X[row * nv + <Py_ssize_t>params[p0 + 2 + j]]
    return mv_factor(params, p0, w)


cdef void mv_fill(const double* params, Py_ssize_t p0, const double* X, Py_ssize_t nv,
                  Py_ssize_t row, double* out, const double* z, Py_ssize_t nz, bint draw,
                  Py_ssize_t i, Py_ssize_t n, MVWork* w) noexcept nogil:
    """Conditional means (``draw`` False) or a conditional draw with the normals of row ``row``
    of ``z`` (``nz`` columns) for the unobserved entries of leaf ``i``."""
    cdef Py_ssize_t d = <Py_ssize_t>params[p0], no, a, q, j, zc
    cdef Py_ssize_t zoff = <Py_ssize_t>params[p0 + 1]
    cdef double x
    no = mv_row(params, p0, X, nv, row, w)
    for a in range(no, d):
        x = mv_cond_mean(params, p0, no, w, a)
        if draw:
            for q in range(no, a + 1):
                j = w.perm[q]
                zc = i if j == 0 else n + zoff + j - 1
                x = x + w.A[a * d + q] * z[row * nz + zc]
        out[row * nv + <Py_ssize_t>params[p0 + 2 + w.perm[a]]] = x


cdef void mv_stats(const double* params, Py_ssize_t p0, const double* X, Py_ssize_t nv,
                   Py_ssize_t row, double f, double* acc, MVWork* w) noexcept nogil:
    cdef Py_ssize_t d = <Py_ssize_t>params[p0]
    cdef Py_ssize_t m0 = p0 + 2 + d, c0 = m0 + d, no, a, j, k, aj, ak, top, q
    cdef double c
    no = mv_row(params, p0, X, nv, row, w)
    for a in range(no, d):
        w.xv[w.perm[a]] = mv_cond_mean(params, p0, no, w, a)
    acc[p0] += f
    for j in range(d):
        acc[m0 + j] += f * w.xv[j]
    for j in range(d):
        aj = w.perm[d + j]
        for k in range(d):
            ak = w.perm[d + k]
            c = 0.0
            if aj >= no and ak >= no:
                top = aj if aj < ak else ak
                for q in range(no, top + 1):
                    c = c + w.A[aj * d + q] * w.A[ak * d + q]
            acc[c0 + j * d + k] += f * (w.xv[j] * w.xv[k] + c)
