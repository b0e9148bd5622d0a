"""Top-down passes of the Numba backend over one chunk (policy, MPE completion, sampling, flows).

Nodes are visited in decreasing index order with a per-row ``reach`` mark, exactly like
:mod:`spmn.kernels.reference`; choices are recomputed from the upward work arrays. Mirrored
operation for operation by ``csrc/_cdown.pxi``. A multivariate Gaussian leaf fills its
unobserved variables with their conditional means (MPE) or a conditional draw (sampling, ``z``
with ``n_draws`` columns) and adds its expected statistics row by row (:mod:`._numba_mvg`).
"""
from __future__ import annotations

import math

from numba import njit, uint64

from ..flat import (
    K_CATEGORICAL,
    K_GAUSSIAN,
    K_INTERFACE,
    K_MAX,
    K_MVGAUSSIAN,
    K_PRODUCT,
    K_SUM,
    K_UTILITY_DISCRETE,
)
from ._numba_math import fexp, flog
from ._numba_mvg import mv_fill, mv_stats, mv_work
from ._numba_up import NEG_INF, hist_bin, max_choice, udisc_index


@njit(cache=True, nogil=True, error_model="numpy")
def clear_reach(reach, n, nr, R):
    for i in range(n):
        for r in range(nr):
            reach[i * R + r] = 0
    for r in range(nr):
        reach[(n - 1) * R + r] = 1


@njit(cache=True, nogil=True, error_model="numpy")
def product_down(cidx, a0, a1, reach, i, nr, R):
    uR = uint64(R)
    oi = uint64(i) * uR
    for e in range(a0, a1):
        oc = uint64(cidx[e]) * uR
        for r in range(uint64(nr)):
            reach[oc + r] |= reach[oi + r]


@njit(cache=True, nogil=True, error_model="numpy")
def policy_down(circ, X, lo, nr, R, L, U, reach, out):
    """reference.policy's top-down walk: max nodes write their choice into ``out``."""
    kind, cptr, cidx, lw, var = circ[0], circ[1], circ[2], circ[3], circ[4]
    n = kind.shape[0]
    clear_reach(reach, n, nr, R)
    for i in range(n - 1, -1, -1):
        kd = kind[i]
        a0 = cptr[i]
        a1 = cptr[i + 1]
        if kd == K_PRODUCT:
            product_down(cidx, a0, a1, reach, i, nr, R)
        elif kd == K_SUM:
            for r in range(nr):
                if reach[i * R + r]:
                    cnt = 0
                    first = -1
                    for e in range(a0, a1):
                        if lw[e] + L[cidx[e] * R + r] > NEG_INF:
                            cnt += 1
                            if first < 0:
                                first = e
                    if cnt == 1:
                        reach[cidx[first] * R + r] = 1
        elif kd == K_MAX:
            v = var[i]
            for r in range(nr):
                if reach[i * R + r]:
                    cj = max_choice(cidx, a0, a1 - a0, X[lo + r, v], L, U, R, r)
                    out[lo + r, v] = cj
                    reach[cidx[a0 + cj] * R + r] = 1


@njit(cache=True, nogil=True, error_model="numpy")
def mv_down(params, p0, X, lo, nr, R, reach, out, z, draw, i, n):
    """Multivariate Gaussian leaf ``i`` on the reached rows: conditional means (MPE) or a
    conditional draw with ``z`` (``draw``) into the unobserved entries of ``out``."""
    work = mv_work(params, p0)
    for r in range(nr):
        if reach[i * R + r]:
            mv_fill(params, p0, X, lo + r, out, z, lo + r if draw else -1, i, n, work)


@njit(cache=True, nogil=True, error_model="numpy")
def mpe_down(circ, X, lo, nr, R, M, out, stack, seen):
    """reference.mpe's completion, row by row: a walk from the root that visits only the nodes
    the completion reaches (argmax child of a sum or max node, first maximum; every child of a
    product; each node once per row, ``seen`` holding the row it was last visited in), so its
    cost is the size of the chosen sub-circuit, not of the circuit. ``stack`` holds edges + 1
    entries, ``seen`` one per node (-1 or a row index of this call)."""
    kind, cptr, cidx, lw, var, pptr, params = circ[0], circ[1], circ[2], circ[3], circ[4], \
        circ[5], circ[6]
    mode_val = circ[9]
    n = kind.shape[0]
    for r in range(nr):
        row = lo + r
        top = 1
        stack[0] = n - 1
        while top > 0:
            top -= 1
            i = stack[top]
            if seen[i] == row:
                continue
            seen[i] = row
            kd = kind[i]
            a0 = cptr[i]
            a1 = cptr[i + 1]
            if kd == K_PRODUCT:
                for e in range(a1 - 1, a0 - 1, -1):
                    stack[top] = cidx[e]
                    top += 1
            elif kd == K_SUM:
                bj = a0
                best = lw[a0] + M[cidx[a0] * R + r]
                for e in range(a0 + 1, a1):
                    a = lw[e] + M[cidx[e] * R + r]
                    if a > best:
                        best = a
                        bj = e
                stack[top] = cidx[bj]
                top += 1
            elif kd == K_MAX:
                v = var[i]
                d = X[row, v]
                if math.isnan(d):
                    cj = 0
                    best = M[cidx[a0] * R + r]
                    for j in range(1, a1 - a0):
                        a = M[cidx[a0 + j] * R + r]
                        if a > best:
                            best = a
                            cj = j
                else:
                    cj = int(d)
                if math.isnan(out[row, v]):
                    out[row, v] = cj
                stack[top] = cidx[a0 + cj]
                top += 1
            elif kd == K_MVGAUSSIAN:
                # X stands in for z, which a conditional-mean fill does not read
                mv_fill(params, pptr[i], X, row, out, X, -1, i, n, mv_work(params, pptr[i]))
            elif kd != K_INTERFACE:
                v = var[i]
                if math.isnan(out[row, v]):
                    out[row, v] = mode_val[i]


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def pick_params(params, base, k, u):
    """reference._pick over ``params[base:base+k]`` (log probabilities) for one draw ``u``."""
    cum = 0.0
    last = 0
    for j in range(k):
        pj = fexp(params[base + j])
        cum = cum + pj
        if u < cum:
            return j
        if pj > 0.0:
            last = j
    return last


@njit(cache=True, nogil=True, error_model="numpy")
def hist_sample(params, p0, u):
    """reference._hist_sample for one draw ``u``."""
    m = int(params[p0])
    b0 = p0 + 2
    d0 = p0 + 3 + m
    cum = 0.0
    j = -1
    before = 0.0
    last = 0
    before_last = 0.0
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


@njit(cache=True, nogil=True, error_model="numpy")
def sample_down(circ, X, lo, nr, R, L, U, reach, out, u, z):
    """reference.sample's ancestral walk; node ``i`` of row ``r`` uses ``u[r, i]``, ``z[r, i]``
    (a multivariate Gaussian also ``z[r, n + zoff + j - 1]`` for its variable ``j >= 1``)."""
    kind, cptr, cidx, lw, var, pptr, params = circ[0], circ[1], circ[2], circ[3], circ[4], \
        circ[5], circ[6]
    n = kind.shape[0]
    clear_reach(reach, n, nr, R)
    for i in range(n - 1, -1, -1):
        kd = kind[i]
        a0 = cptr[i]
        a1 = cptr[i + 1]
        if kd == K_PRODUCT:
            product_down(cidx, a0, a1, reach, i, nr, R)
        elif kd == K_SUM:
            for r in range(nr):
                if reach[i * R + r]:
                    Li = L[i * R + r]
                    uu = u[lo + r, i]
                    cum = 0.0
                    ch = -1
                    last = 0
                    for e in range(a0, a1):
                        lp = NEG_INF if Li == NEG_INF else (lw[e] + L[cidx[e] * R + r]) - Li
                        pj = fexp(lp)
                        cum = cum + pj
                        if uu < cum:
                            ch = e - a0
                            break
                        if pj > 0.0:
                            last = e - a0
                    if ch < 0:
                        ch = last
                    reach[cidx[a0 + ch] * R + r] = 1
        elif kd == K_MAX:
            v = var[i]
            for r in range(nr):
                if reach[i * R + r]:
                    cj = max_choice(cidx, a0, a1 - a0, X[lo + r, v], L, U, R, r)
                    if math.isnan(out[lo + r, v]):
                        out[lo + r, v] = cj
                    reach[cidx[a0 + cj] * R + r] = 1
        elif kd == K_MVGAUSSIAN:
            mv_down(params, pptr[i], X, lo, nr, R, reach, out, z, True, i, n)
        elif kd != K_INTERFACE:
            v = var[i]
            p0 = pptr[i]
            for r in range(nr):
                if reach[i * R + r] and math.isnan(out[lo + r, v]):
                    uu = u[lo + r, i]
                    if kd == K_CATEGORICAL:
                        out[lo + r, v] = pick_params(params, p0, pptr[i + 1] - p0, uu)
                    elif kd == K_GAUSSIAN:
                        out[lo + r, v] = params[p0] + params[p0 + 1] * z[lo + r, i]
                    elif kd == K_UTILITY_DISCRETE:
                        k = int(params[p0])
                        out[lo + r, v] = params[p0 + 2 + pick_params(params, p0 + 2 + k, k, uu)]
                    else:
                        out[lo + r, v] = hist_sample(params, p0, uu)


@njit(cache=True, nogil=True, error_model="numpy")
def leaf_stats(kd, params, p0, p1, xr, f, acc):
    """Add one row's expected statistics (flow ``f``, value ``xr``) of a leaf to ``acc``."""
    if kd == K_INTERFACE:
        acc[p0] += f
        return
    obs = not math.isnan(xr)
    if kd == K_CATEGORICAL:
        if obs:
            acc[p0 + int(xr)] += f
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
    k = int(params[p0])
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


@njit(cache=True, nogil=True, error_model="numpy")
def counts_down(circ, X, lo, nr, R, L, U, F, eacc, pacc):
    """Flows of reference.flows over one chunk, added row by row into ``eacc`` (edges) and
    ``pacc`` (leaf statistics, aligned with params)."""
    kind, cptr, cidx, lw, var, pptr, params = circ[0], circ[1], circ[2], circ[3], circ[4], \
        circ[5], circ[6]
    n = kind.shape[0]
    uR = uint64(R)
    unr = uint64(nr)
    for i in range(n):
        for r in range(nr):
            F[i * R + r] = 0.0
    for r in range(nr):
        F[(n - 1) * R + r] = 1.0 if L[(n - 1) * R + r] > NEG_INF else 0.0
    for i in range(n - 1, -1, -1):
        kd = kind[i]
        a0 = cptr[i]
        a1 = cptr[i + 1]
        oi = uint64(i) * uR
        si = i * R
        if kd == K_SUM:
            for e in range(a0, a1):
                w = lw[e]
                oc = uint64(cidx[e]) * uR
                for r in range(unr):
                    f = F[oi + r]
                    if f != 0.0 and L[oi + r] > NEG_INF:
                        g = f * fexp((w + L[oc + r]) - L[oi + r])
                        F[oc + r] += g
                        eacc[e] += g
        elif kd == K_PRODUCT:
            for e in range(a0, a1):
                oc = uint64(cidx[e]) * uR
                for r in range(unr):
                    f = F[oi + r]
                    if f != 0.0 and L[oi + r] > NEG_INF:
                        F[oc + r] += f
                        eacc[e] += f
        elif kd == K_MAX:
            v = var[i]
            for r in range(nr):
                f = F[si + r]
                if f != 0.0 and L[si + r] > NEG_INF:
                    cj = max_choice(cidx, a0, a1 - a0, X[lo + r, v], L, U, R, r)
                    F[cidx[a0 + cj] * R + r] += f
                    eacc[a0 + cj] += f
        elif kd == K_MVGAUSSIAN:
            p0 = pptr[i]
            work = mv_work(params, p0)
            for r in range(nr):
                f = F[si + r]
                if f != 0.0:
                    mv_stats(params, p0, X, lo + r, f, pacc, work)
        else:
            v = var[i]
            p0 = pptr[i]
            p1 = pptr[i + 1]
            for r in range(nr):
                f = F[si + r]
                if f != 0.0:
                    xr = X[lo + r, v] if kd != K_INTERFACE else 0.0
                    leaf_stats(kd, params, p0, p1, xr, f, pacc)
