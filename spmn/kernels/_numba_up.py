"""Upward passes of the Numba backend over one chunk of rows (node-major work arrays).

``circ`` is the tuple built by :func:`spmn.kernels._common.prepare`; ``xt`` is the chunk's
evidence transposed to (variables, rows); ``L``/``U`` are (nodes, chunk) work arrays. The
arithmetic, loop order and tie-breaks are those of :mod:`spmn.kernels.reference` and are
mirrored operation for operation by ``csrc/_cup.pxi`` (the backends agree bit for bit).
Multivariate Gaussian leaves are evaluated row by row by :mod:`._numba_mvg`.
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
    K_UTILITY_HISTOGRAM,
)
from ._numba_block import blk_add, blk_summax
from ._numba_math import fexp, flog
from ._numba_mvg import mv_up
from .reference import TIE_RTOL

NEG_INF = -math.inf


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def hist_bin(params, b0, m, x):
    """Bin of ``x`` in the breaks ``params[b0:b0+m+1]`` (-1 outside; last bin closed)."""
    if x < params[b0] or x > params[b0 + m]:
        return -1
    if x == params[b0 + m]:
        return m - 1
    lo = 0
    hi = m
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        if params[b0 + mid] <= x:
            lo = mid
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def udisc_index(params, p0, k, x):
    """Index of the first listed utility value equal to ``x`` (-1 if none)."""
    for j in range(k):
        if params[p0 + 2 + j] == x:
            return j
    return -1


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def leaf_logp(kd, params, p0, x):
    """log density of an observed value ``x`` at a leaf of kind ``kd`` (not interface)."""
    if kd == K_CATEGORICAL:
        return params[p0 + int(x)]
    if kd == K_GAUSSIAN:
        z = (x - params[p0]) / params[p0 + 1]
        return params[p0 + 2] - 0.5 * z * z
    if kd == K_UTILITY_DISCRETE:
        k = int(params[p0])
        j = udisc_index(params, p0, k, x)
        if j < 0:
            return NEG_INF
        return params[p0 + 2 + k + j]
    m = int(params[p0])
    j = hist_bin(params, p0 + 2, m, x)
    if j < 0:
        return NEG_INF
    return params[p0 + 3 + m + j]


@njit(cache=True, nogil=True, error_model="numpy")
def leaf_up(kd, params, p0, v, xt, nr, R, values, L, U, o, cu, mode):
    """L (and U when ``cu``) of one leaf (rows ``o .. o+nr`` of the flat work arrays); ``mode``
    (MPE) replaces the L of an unobserved variable by the leaf's maximum log density when it
    is not NaN."""
    if kd == K_INTERFACE:
        for r in range(nr):
            L[o + r] = 0.0
        if cu:
            val = values[int(params[p0])]
            for r in range(nr):
                U[o + r] = val
        return
    x0 = v * R
    util = kd == K_UTILITY_DISCRETE or kd == K_UTILITY_HISTOGRAM
    unobs = 0.0 if math.isnan(mode) else mode
    for r in range(nr):
        xr = xt[x0 + r]
        if math.isnan(xr):
            L[o + r] = unobs
        else:
            L[o + r] = leaf_logp(kd, params, p0, xr)
    if cu:
        if util:
            mean = params[p0 + 1]
            for r in range(nr):
                xr = xt[x0 + r]
                U[o + r] = mean if math.isnan(xr) else xr
        else:
            for r in range(nr):
                U[o + r] = 0.0


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def leaf_one(kd, params, p0, xr, values):
    """(L, U) of a leaf in one row (:func:`leaf_up` with nr = 1 and no ``mode``, as scalars:
    no call with arrays per leaf in the one-row pass)."""
    if kd == K_INTERFACE:
        return 0.0, values[int(params[p0])]
    li = 0.0 if math.isnan(xr) else leaf_logp(kd, params, p0, xr)
    if kd == K_UTILITY_DISCRETE or kd == K_UTILITY_HISTOGRAM:
        return li, (params[p0 + 1] if math.isnan(xr) else xr)
    return li, 0.0


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def max_choice_above(cidx, a0, deg, d, A, floor, U, R, r):
    """Child (0..deg-1) a max node follows in row ``r``: the observed decision ``d``, else the
    first admissible child (A > floor: L > -inf, or p > 0 for the probabilities and mantissas of
    :mod:`._numba_fast`) whose U is within TIE_RTOL * max(1, |best|) of the best admissible U
    (0 if none)."""
    if not math.isnan(d):
        return int(d)
    best = NEG_INF
    for j in range(deg):
        c = cidx[a0 + j] * R + r
        if A[c] > floor:
            sc = U[c]
            best = sc if sc > best else best
    if best == NEG_INF:
        return 0
    scale = best if best > 1.0 else (-best if -best > 1.0 else 1.0)
    thr = best - TIE_RTOL * scale
    for j in range(deg):
        c = cidx[a0 + j] * R + r
        if A[c] > floor and U[c] >= thr:
            return j
    return 0


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def max_choice(cidx, a0, deg, d, L, U, R, r):
    """:func:`max_choice_above` on log values (admissible: L > -inf)."""
    return max_choice_above(cidx, a0, deg, d, L, NEG_INF, U, R, r)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def running_max(cidx, lw, a0, a1, unr, uR, A, tmp):
    """m = max over children of (log w + A[c]) from -inf, row by row; returns the offset in
    ``tmp`` of the result. Two buffers in turn (slots 4 and 5 of ``tmp``): an in-place
    ``m = a if a > m else m`` would be compiled to masked stores, slow on some CPUs."""
    src = uint64(4) * uR
    dst = src + uR
    for r in range(unr):
        tmp[src + r] = NEG_INF
    for e in range(a0, a1):
        w = lw[e]
        oc = uint64(cidx[e]) * uR
        for r in range(unr):
            a = w + A[oc + r]
            mr = tmp[src + r]
            tmp[dst + r] = a if a > mr else mr
        src, dst = dst, src
    return src


@njit(cache=True, nogil=True, error_model="numpy")
def sum_up(cidx, lw, a0, a1, nr, R, L, U, i, tmp, with_u):
    """Sum node ``i``: L = m + log Σ exp(a_j - m) with a_j = log w_j + L_j (sequential), and
    U = Σ exp(a_j - m) U_j / Σ exp(a_j - m) when ``with_u``; L = -inf, U = 0 when m = -inf.
    ``tmp`` holds m, mm (m or 0), s and num, R entries each (and 2 R of scratch). Offsets are unsigned so that
    Numba emits no negative-index wraparound and the row loops vectorize."""
    uR = uint64(R)
    unr = uint64(nr)
    oi = uint64(i) * uR
    o1 = uR
    o2 = uR + uR
    o3 = o2 + uR
    om = running_max(cidx, lw, a0, a1, unr, uR, L, tmp)
    for r in range(unr):
        mr = tmp[om + r]
        tmp[r] = mr
        tmp[o1 + r] = mr if mr > NEG_INF else 0.0
        tmp[o2 + r] = 0.0
        tmp[o3 + r] = 0.0
    if with_u:
        for e in range(a0, a1):
            w = lw[e]
            oc = uint64(cidx[e]) * uR
            for r in range(unr):
                ee = fexp((w + L[oc + r]) - tmp[o1 + r])
                tmp[o2 + r] += ee
                tmp[o3 + r] += ee * U[oc + r]
        for r in range(unr):
            mr = tmp[r]
            lg = flog(tmp[o2 + r])
            q = tmp[o3 + r] / tmp[o2 + r]
            L[oi + r] = mr + lg if mr > NEG_INF else NEG_INF
            U[oi + r] = q if mr > NEG_INF else 0.0
    else:
        for e in range(a0, a1):
            w = lw[e]
            oc = uint64(cidx[e]) * uR
            for r in range(unr):
                tmp[o2 + r] += fexp((w + L[oc + r]) - tmp[o1 + r])
        for r in range(unr):
            mr = tmp[r]
            lg = flog(tmp[o2 + r])
            L[oi + r] = mr + lg if mr > NEG_INF else NEG_INF


@njit(cache=True, nogil=True, error_model="numpy")
def add_rows(cidx, a0, a1, nr, R, A, i):
    """A[i] = Σ_children A[c] (children in order, starting from 0.0), rows 0..nr: full blocks
    of 16 rows in registers (:mod:`._numba_block`), the rest row by row."""
    full = nr - nr % 16
    for off in range(0, full, 16):
        blk_add(cidx, a0, a1, A, R, off, i * R + off)
    if full == nr:
        return
    uR = uint64(R)
    unr = uint64(nr)
    uf = uint64(full)
    oi = uint64(i) * uR
    for r in range(uf, unr):
        A[oi + r] = 0.0
    for e in range(a0, a1):
        oc = uint64(cidx[e]) * uR
        for r in range(uf, unr):
            A[oi + r] += A[oc + r]


@njit(cache=True, nogil=True, error_model="numpy")
def max_rows(cidx, lw, a0, a1, nr, R, M, i, tmp):
    """M[i] = max_children (log w + M[c]) (starting from -inf), rows 0..nr: blocks of 16 rows
    in registers when every row is in one (:mod:`._numba_block`), else row by row."""
    if nr % 16 == 0:
        for off in range(0, nr, 16):
            blk_summax(cidx, lw, a0, a1, M, R, off, i * R + off)
        return
    uR = uint64(R)
    unr = uint64(nr)
    oi = uint64(i) * uR
    om = running_max(cidx, lw, a0, a1, unr, uR, M, tmp)
    for r in range(unr):
        M[oi + r] = tmp[om + r]


#: Range of a group member's sum outside which the row falls back to sum_up (2^-900, 2^900).
GRP_TINY = 1.1754943508222875e-271  # 2^-900
GRP_HUGE = 8.452712498170644e+270   # 2^900


@njit(cache=True, nogil=True, error_model="numpy")
def sum_group(cptr, cidx, lw, W, gmem, q0, g, nr, R, L, U, tmp, with_u):
    """Sum nodes gmem[q0:q0+g] (one child list, that of gmem[q0]) over rows 0..nr, evaluated
    together: with mx = max_c L_c (0 when -inf) and e_c = exp(L_c - mx), once per child and row,
    L_k = mx + log Σ_c W_kc e_c and U_k = Σ_c W_kc e_c U_c / Σ_c W_kc e_c (W = exp(log w)).
    In a row where a member's sum leaves [2^-900, 2^900] (every child -inf, underflowing or huge
    weights) that member takes the exact :func:`sum_up` result. ``tmp``: (10 + 2 g) R doubles.
    The twin of csrc/_cup.pxi's sum_group, operation for operation."""
    uR = uint64(R)
    unr = uint64(nr)
    h = gmem[q0]
    a0 = cptr[h]
    a1 = cptr[h + 1]
    oev = uR
    oeu = uR + uR
    os_ = uint64(4) * uR
    onum = uint64(4 + g) * uR
    for r in range(unr):
        tmp[r] = NEG_INF
    for j in range(a0, a1):
        oc = uint64(cidx[j]) * uR
        for r in range(unr):
            a = L[oc + r]
            m = tmp[r]
            tmp[r] = a if a > m else m
    for r in range(unr):
        m = tmp[r]
        tmp[r] = m if m > NEG_INF else 0.0
    for k in range(uint64(g) * uR):
        tmp[os_ + k] = 0.0
        tmp[onum + k] = 0.0
    for j in range(a0, a1):
        oc = uint64(cidx[j]) * uR
        for r in range(unr):
            tmp[oev + r] = fexp(L[oc + r] - tmp[r])
        if with_u:
            for r in range(unr):
                tmp[oeu + r] = tmp[oev + r] * U[oc + r]
        for k in range(g):
            wk = W[cptr[gmem[q0 + k]] + (j - a0)]
            osk = os_ + uint64(k) * uR
            for r in range(unr):
                tmp[osk + r] += wk * tmp[oev + r]
            if with_u:
                onk = onum + uint64(k) * uR
                for r in range(unr):
                    tmp[onk + r] += wk * tmp[oeu + r]
    for k in range(g):
        node = gmem[q0 + k]
        osk = os_ + uint64(k) * uR
        oi = uint64(node) * uR
        nbad = 0.0
        for r in range(unr):
            sr = tmp[osk + r]
            L[oi + r] = tmp[r] + flog(sr)
            nbad += 0.0 if (sr >= GRP_TINY and sr <= GRP_HUGE) else 1.0
        if with_u:
            onk = onum + uint64(k) * uR
            for r in range(unr):
                U[oi + r] = tmp[onk + r] / tmp[osk + r]
        if nbad > 0.0:  # exact sum_up for the rows out of range, row by row
            for r in range(unr):
                tmp[oev + r] = L[oi + r]
            if with_u:
                for r in range(unr):
                    tmp[oeu + r] = U[oi + r]
            sum_up(cidx, lw, cptr[node], cptr[node + 1], nr, R, L, U, node,
                   tmp[(4 + 2 * g) * R:], with_u)
            for r in range(unr):
                sr = tmp[osk + r]
                L[oi + r] = tmp[oev + r] if (sr >= GRP_TINY and sr <= GRP_HUGE) else L[oi + r]
            if with_u:
                for r in range(unr):
                    sr = tmp[osk + r]
                    U[oi + r] = tmp[oeu + r] if (sr >= GRP_TINY and sr <= GRP_HUGE) else U[oi + r]


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def group_live(ulive, gptr, gmem, q):
    """Whether some member of sum group ``q`` has a utility below it (the group carries U)."""
    for k in range(gptr[q], gptr[q + 1]):
        if ulive[gmem[k]]:
            return True
    return False


@njit(cache=True, nogil=True, error_model="numpy")
def zero_dead_members(ulive, gptr, gmem, q, nr, R, U):
    """U = 0 for the members of group ``q`` with no utility below them."""
    for k in range(gptr[q], gptr[q + 1]):
        if not ulive[gmem[k]]:
            ok = gmem[k] * R
            for r in range(nr):
                U[ok + r] = 0.0


@njit(cache=True, nogil=True, error_model="numpy")
def group_up(circ, W, q, nr, R, L, U, tmp, cu):
    """Sum group ``q`` (U carried when some member needs it; 0 for the members that do not)."""
    cptr, cidx, lw, ulive = circ[1], circ[2], circ[3], circ[7]
    gptr, gmem = circ[11], circ[12]
    live = cu and group_live(ulive, gptr, gmem, q)
    sum_group(cptr, cidx, lw, W, gmem, gptr[q], gptr[q + 1] - gptr[q], nr, R, L, U, tmp, live)
    if cu:
        zero_dead_members(ulive, gptr, gmem, q, nr, R, U)


@njit(cache=True, nogil=True, error_model="numpy")
def up_one(circ, W, xt, values, L, U, tmp, cu):
    """:func:`up_chunk` for a chunk of one row (R = 1: a one-row Bellman pass), without row
    loops: the same operations in the same order, so the same bits."""
    kind, cptr, cidx, lw, var, pptr, params, ulive = circ[0], circ[1], circ[2], circ[3], \
        circ[4], circ[5], circ[6], circ[7]
    gid = circ[10]
    for i in range(kind.shape[0]):
        kd = kind[i]
        a0 = cptr[i]
        a1 = cptr[i + 1]
        if kd == K_SUM:
            q = gid[i]
            if q == -2:
                continue
            if q >= 0:
                group_up(circ, W, q, 1, 1, L, U, tmp, cu)
                continue
            m = NEG_INF
            for e in range(a0, a1):
                a = lw[e] + L[cidx[e]]
                m = a if a > m else m
            mm = m if m > NEG_INF else 0.0
            s = 0.0
            if cu and ulive[i]:
                num = 0.0
                for e in range(a0, a1):
                    c = cidx[e]
                    ee = fexp((lw[e] + L[c]) - mm)
                    s += ee
                    num += ee * U[c]
                L[i] = m + flog(s) if m > NEG_INF else NEG_INF
                U[i] = num / s if m > NEG_INF else 0.0
            else:
                for e in range(a0, a1):
                    s += fexp((lw[e] + L[cidx[e]]) - mm)
                L[i] = m + flog(s) if m > NEG_INF else NEG_INF
                if cu:
                    U[i] = 0.0
        elif kd == K_PRODUCT:
            acc = 0.0
            for e in range(a0, a1):
                acc += L[cidx[e]]
            L[i] = acc
            if cu:
                acc = 0.0
                if ulive[i]:
                    for e in range(a0, a1):
                        acc += U[cidx[e]]
                U[i] = acc
        elif kd == K_MAX:
            c = cidx[a0 + max_choice(cidx, a0, a1 - a0, xt[var[i]], L, U, 1, 0)]
            L[i] = L[c]
            U[i] = U[c]
        elif kd == K_MVGAUSSIAN:
            mv_up(params, pptr[i], xt, 1, 1, L, i, False)
            if cu:
                U[i] = 0.0
        else:
            li, ui = leaf_one(kd, params, pptr[i], xt[var[i]], values)
            L[i] = li
            if cu:
                U[i] = ui


@njit(cache=True, nogil=True, error_model="numpy")
def up_chunk(circ, W, xt, code, nr, R, values, L, U, tmp, cu):
    """The (L, U) pass of reference.upward over one chunk (U only when ``cu``); ``L``, ``U``
    are flat node-major work arrays (node ``i``, row ``r`` at ``i * R + r``). Sums of a group
    (``circ[10:13]``, see ``_common.sum_groups``) go through :func:`sum_group` with the linear
    weights ``W``; categorical leaves are lookups by the chunk's int32 codes ``code``."""
    kind, cptr, cidx, lw, var, pptr, params, ulive = circ[0], circ[1], circ[2], circ[3], \
        circ[4], circ[5], circ[6], circ[7]
    gid = circ[10]
    if R == 1:
        up_one(circ, W, xt, values, L, U, tmp, cu)
        return
    n = kind.shape[0]
    for i in range(n):
        kd = kind[i]
        a0 = cptr[i]
        a1 = cptr[i + 1]
        oi = i * R
        if kd == K_SUM:
            q = gid[i]
            if q == -2:  # evaluated with its group's head
                continue
            if q >= 0:
                group_up(circ, W, q, nr, R, L, U, tmp, cu)
                continue
            if cu:
                if ulive[i]:
                    sum_up(cidx, lw, a0, a1, nr, R, L, U, i, tmp, True)
                else:
                    sum_up(cidx, lw, a0, a1, nr, R, L, U, i, tmp, False)
                    for r in range(nr):
                        U[oi + r] = 0.0
            else:
                sum_up(cidx, lw, a0, a1, nr, R, L, U, i, tmp, False)
        elif kd == K_PRODUCT:
            add_rows(cidx, a0, a1, nr, R, L, i)
            if cu:
                if ulive[i]:
                    add_rows(cidx, a0, a1, nr, R, U, i)
                else:
                    for r in range(nr):
                        U[oi + r] = 0.0
        elif kd == K_MAX:
            x0 = var[i] * R
            deg = a1 - a0
            for r in range(nr):
                oc = cidx[a0 + max_choice(cidx, a0, deg, xt[x0 + r], L, U, R, r)] * R
                L[oi + r] = L[oc + r]
                U[oi + r] = U[oc + r]
        elif kd == K_CATEGORICAL:  # leaf_up's values as lookups by code (circ[26]: tabL)
            x0 = uint64(var[i] * R)
            t0 = uint64(circ[18][i])
            tl = circ[26]
            uo = uint64(oi)
            for r in range(uint64(nr)):
                L[uo + r] = tl[t0 + uint64(code[x0 + r])]
            if cu:
                for r in range(nr):
                    U[oi + r] = 0.0
        elif kd == K_MVGAUSSIAN:
            mv_up(params, pptr[i], xt, nr, R, L, oi, False)
            if cu:
                for r in range(nr):
                    U[oi + r] = 0.0
        else:
            leaf_up(kd, params, pptr[i], var[i], xt, nr, R, values, L, U, oi, cu, math.nan)


@njit(cache=True, nogil=True, error_model="numpy")
def mpe_up_chunk(circ, xt, code, nr, R, M, tmp):
    """Max-product pass of reference.mpe over one chunk: M (flat, node-major); categorical
    leaves are lookups by the chunk's int32 codes ``code`` in ``circ[22]`` (log p, then the
    leaf's max log p for NaN: ``_numba_fast.cat_tables``)."""
    kind, cptr, cidx, lw, var, pptr, params = circ[0], circ[1], circ[2], circ[3], circ[4], \
        circ[5], circ[6]
    mode_logp = circ[8]
    n = kind.shape[0]
    blocked = nr % 16 == 0  # every row in a block of 16 held in registers
    for i in range(n):
        kd = kind[i]
        a0 = cptr[i]
        a1 = cptr[i + 1]
        oi = i * R
        if kd == K_SUM:
            if blocked:
                for off in range(0, nr, 16):
                    blk_summax(cidx, lw, a0, a1, M, R, off, oi + off)
            else:
                max_rows(cidx, lw, a0, a1, nr, R, M, i, tmp)
        elif kd == K_PRODUCT:
            if blocked:
                for off in range(0, nr, 16):
                    blk_add(cidx, a0, a1, M, R, off, oi + off)
            else:
                add_rows(cidx, a0, a1, nr, R, M, i)
        elif kd == K_MAX:
            x0 = var[i] * R
            for r in range(nr):
                d = xt[x0 + r]
                if math.isnan(d):
                    best = M[cidx[a0] * R + r]
                    for e in range(a0 + 1, a1):
                        a = M[cidx[e] * R + r]
                        best = a if a > best else best
                    M[oi + r] = best
                else:
                    M[oi + r] = M[cidx[a0 + int(d)] * R + r]
        elif kd == K_CATEGORICAL:
            x0 = uint64(var[i] * R)
            t0 = uint64(circ[18][i])
            tm = circ[22]
            uo = uint64(oi)
            for r in range(uint64(nr)):  # unsigned: no negative-index wraparound per lookup
                M[uo + r] = tm[t0 + uint64(code[x0 + r])]
        elif kd == K_MVGAUSSIAN:
            mv_up(params, pptr[i], xt, nr, R, M, oi, True)
        else:
            leaf_up(kd, params, pptr[i], var[i], xt, nr, R, mode_logp, M, M, oi, False,
                    mode_logp[i])  # values are not read when U is off
