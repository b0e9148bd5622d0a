"""The MultivariateGaussian leaf (K_MVGAUSSIAN) in the Numba kernels, one row at a time.

Parameters at ``p0`` (see :mod:`spmn.flat`): ``d, zoff, c_0..c_{d-1}, μ, Σ`` (row major).
For a row with values ``xv`` (NaN = unobserved), :func:`mv_factor` orders the leaf's variables
observed first (``perm``; ``pos`` is its inverse), factors the permuted covariance
``Σ_pp = A Aᵀ`` (Cholesky, row by row) and solves ``A_OO e = x_O − μ_O``. Then

    log p(x_O) = −½ Σ e² − Σ_O log A_aa − ½ |O| log 2π,
    E[x_U | x_O] = μ_U + A_UO e,   a draw: E[x_U | x_O] + A_UU z_U,
    max over x_U of log p(x_O, x_U) = log p(x_O) − Σ_U log A_aa − ½ |U| log 2π.

Mirrored operation for operation by ``csrc/_cmvg.pxi`` (bitwise equal results); the reference
computes the same quantities with LAPACK (:mod:`spmn.gaussian`).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._numba_math import flog

LOG_2PI = 1.8378770664093453


@njit(cache=True, nogil=True, error_model="numpy")
def mv_work(params, p0):
    """Scratch arrays of one leaf: (xv, e, A) floats and (perm, pos) ints."""
    d = int(params[p0])
    return np.empty(d), np.empty(d), np.empty(d * d), np.empty(2 * d, np.int64)


@njit(cache=True, nogil=True, error_model="numpy")
def mv_factor(params, p0, xv, e, A, perm):
    """Factor the row ``xv`` (see the module docstring); returns the number observed."""
    d = int(params[p0])
    m0 = p0 + 2 + d
    c0 = m0 + d
    no = 0
    for j in range(d):
        if not math.isnan(xv[j]):
            perm[no] = j
            no += 1
    k = no
    for j in range(d):
        if math.isnan(xv[j]):
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
                A[a * d + a] = math.sqrt(s)
            else:
                A[a * d + b] = s / A[b * d + b]
    for a in range(no):
        s = xv[perm[a]] - params[m0 + perm[a]]
        for q in range(a):
            s = s - A[a * d + q] * e[q]
        e[a] = s / A[a * d + a]
    return no


@njit(cache=True, nogil=True, error_model="numpy")
def mv_logp(d, no, e, A, mode):
    """log p(x_O), or its maximum over the unobserved entries when ``mode``."""
    out = 0.0
    if no > 0:
        quad = 0.0
        ld = 0.0
        for a in range(no):
            quad = quad + e[a] * e[a]
            ld = ld + flog(A[a * d + a])
        out = (-0.5 * quad - ld) - (0.5 * no) * LOG_2PI
    if mode and no < d:
        ld = 0.0
        for a in range(no, d):
            ld = ld + flog(A[a * d + a])
        out = (out - ld) - (0.5 * (d - no)) * LOG_2PI
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def mv_cond_mean(params, p0, no, e, A, perm, a):
    """E[x_{perm[a]} | x_O] for an unobserved position ``a >= no``."""
    d = int(params[p0])
    s = params[p0 + 2 + d + perm[a]]
    for q in range(no):
        s = s + A[a * d + q] * e[q]
    return s


@njit(cache=True, nogil=True, error_model="numpy")
def mv_up(params, p0, xt, nr, R, L, o, mode):
    """L of leaf rows ``o .. o+nr`` from the transposed chunk ``xt`` (MPE value when ``mode``)."""
    d = int(params[p0])
    xv, e, A, perm = mv_work(params, p0)
    for r in range(nr):
        for j in range(d):
            xv[j] = xt[int(params[p0 + 2 + j]) * R + r]
        no = mv_factor(params, p0, xv, e, A, perm)
        L[o + r] = mv_logp(d, no, e, A, mode)


@njit(cache=True, nogil=True, error_model="numpy")
def mv_row(params, p0, X, row, xv, e, A, perm):
    """Load row ``row`` of X into ``xv`` and factor it; returns the number observed."""
    d = int(params[p0])
    for j in range(d):
        xv[j] = X[row, int(params[p0 + 2 + j])]
    return mv_factor(params, p0, xv, e, A, perm)


@njit(cache=True, nogil=True, error_model="numpy")
def mv_fill(params, p0, X, row, out, z, zrow, i, n, work):
    """Fill the unobserved entries of leaf ``i`` in ``out[row]``: conditional means (``z`` is
    None-like: zrow < 0) or a conditional draw with the normals ``z[zrow, ...]``."""
    xv, e, A, perm = work
    d = int(params[p0])
    no = mv_row(params, p0, X, row, xv, e, A, perm)
    zoff = int(params[p0 + 1])
    for a in range(no, d):
        x = mv_cond_mean(params, p0, no, e, A, perm, a)
        if zrow >= 0:
            for q in range(no, a + 1):
                j = perm[q]
                zc = i if j == 0 else n + zoff + j - 1
                x = x + A[a * d + q] * z[zrow, zc]
        out[row, int(params[p0 + 2 + perm[a]])] = x


@njit(cache=True, nogil=True, error_model="numpy")
def mv_stats(params, p0, X, row, f, acc, work):
    """Add f x [1, E[x | x_O], E[x xᵀ | x_O]] of one row to the leaf's slots of ``acc``."""
    xv, e, A, perm = work
    d = int(params[p0])
    m0 = p0 + 2 + d
    c0 = m0 + d
    no = mv_row(params, p0, X, row, xv, e, A, perm)
    for a in range(no, d):  # xv holds E[x | x_O] from here on
        xv[perm[a]] = mv_cond_mean(params, p0, no, e, A, perm, a)
    acc[p0] += f
    for j in range(d):
        acc[m0 + j] += f * xv[j]
    for j in range(d):
        aj = perm[d + j]
        for k in range(d):
            ak = perm[d + k]
            c = 0.0
            if aj >= no and ak >= no:
                top = aj if aj < ak else ak
                for q in range(no, top + 1):
                    c = c + A[aj * d + q] * A[ak * d + q]
            acc[c0 + j * d + k] += f * (xv[j] * xv[k] + c)
