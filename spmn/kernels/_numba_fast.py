"""The (L, U) pass of the Numba backend without an exp or log per edge: a linear fast path and
an exact scaled fallback, the twins of ``csrc/_cfast.h`` and ``csrc/_cscaled.h`` /
``_cscaled.pxi`` (read their comments for the maths), operation for operation, so the two
backends agree bit for bit.

- :func:`fast_chunk`: plain probabilities p per node and row (a sum is Σ w p_c, a product
  Π p_c); a row where some node's value leaves {0} ∪ [T_i, 2^500] (``circ[13]``, tested where
  ``circ[14]`` says) or a sum's U is not finite is flagged in ``bad``.
- :func:`sup_chunk`: p = m 2^k (mantissa ``M`` in [1, 2) or 0, integer-valued exponent ``Kx``,
  -inf for p = 0): products multiply and add, sums scale their terms by exact powers of two
  built from bits, sum groups share the scaled children; exact for any circuit depth.

Rows are taken 16 at a time (``SB``), as the Cython blocks do; scratch lives in ``tmp``.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, uint64

from ..flat import K_CATEGORICAL, K_MAX, K_MVGAUSSIAN, K_PRODUCT, K_SUM
from ._numba_block import blk_catleaf8, blk_catprod, blk_catprod8, blk_fsum, blk_fsum_u, blk_prod
from ._numba_math import as_f64, as_i64, exp_poly, log_series
from ._numba_mvg import mv_up
from ._numba_up import (
    add_rows,
    group_live,
    leaf_up,
    max_choice_above,
    zero_dead_members,
)

NEG_INF = -math.inf
SB = 16
PSEG = 1000
BIAS = 4503599627371519.0          # 2^52 + 1023
S_TINY = 1.1754943508222875e-271   # 2^-900
S_HUGE = 8.452712498170644e+270    # 2^900
S_BIG = 1125899906842624.0         # 2^50
F_HUGE = 3.273390607896142e+150    # 2^500
SHIFT = 6755399441055744.0
# tmp layout of the scaled pass (doubles): group K, s, num | fallback M, K, U | sum K, s, num |
# product m, k | the group's scaled children q, then q U (16 per child each)
T_FALL, T_SUM, T_PROD, T_Q = 48, 96, 144, 176

_opts = dict(cache=True, nogil=True, error_model="numpy")


@njit(inline="always", **_opts)
def pow2(d):
    """2^d for an integer-valued d in [-1023, 1023] (2^-1023 gives 0)."""
    return as_f64(as_i64(d + BIAS) << 52)


@njit(inline="always", **_opts)
def expo(p):
    return as_f64(((as_i64(p) >> 52) & 0x7FF) | 0x4330000000000000) - BIAS


@njit(inline="always", **_opts)
def mant(p):
    return as_f64((as_i64(p) & 0x000FFFFFFFFFFFFF) | 0x3FF0000000000000)


@njit(inline="always", **_opts)
def to_mk(x):
    """(m, k) with exp(x) = m 2^k (spmn_to_mk)."""
    y = x * 1.4426950408889634
    kf = (y + SHIFT) - SHIFT
    big = not (y > -S_BIG and y < S_BIG)
    kf = (y + 27021597764222976.0) - 27021597764222976.0 if big else kf
    r = (x - kf * 0.6931471803691238) - kf * 1.9082149292705877e-10
    r = 0.0 if big else r
    p = exp_poly(r)
    lo = p < 1.0
    m = p * 2.0 if lo else p
    k = kf - 1.0 if lo else kf
    if x == NEG_INF:
        return 0.0, NEG_INF
    return m, k


@njit(inline="always", **_opts)
def tolog(m, k):
    """log(m 2^k) (spmn_tolog)."""
    hi = m > 1.4142135623730951
    mm = m * 0.5 if hi else m
    ef = k + 1.0 if hi else k
    out = log_series(mm, ef)
    return NEG_INF if m == 0.0 else out


@njit(inline="always", **_opts)
def lin(x):
    """exp(x) as m 2^k with k clamped to [-1023, 1023] (spmn_lin)."""
    m, k = to_mk(x)
    k = -1023.0 if k < -1023.0 else (1023.0 if k > 1023.0 else k)
    return m * pow2(k)


@njit(inline="always", **_opts)
def norm_m(p):
    return 0.0 if p == 0.0 else mant(p)


@njit(inline="always", **_opts)
def norm_k(p, k):
    return NEG_INF if p == 0.0 else k + expo(p)


# ----------------------------------------------------------------------------- scaled pass
@njit(**_opts)
def ssum_blk(cidx, wm, wk, a0, a1, M, Kx, U, R, off, nb, oM, om, oK, ok, oU, ou, with_u, tmp,
             t0):
    """spmn_ssum_: a sum over rows off..off+nb into oM[om+j], oK[ok+j] (and oU[ou+j])."""
    tK, ts, tn = t0, t0 + SB, t0 + 2 * SB
    for j in range(nb):
        tmp[tK + j] = NEG_INF
    for e in range(a0, a1):
        oc = cidx[e] * R + off
        we = wk[e]
        for j in range(nb):
            a = we + Kx[oc + j]
            K = tmp[tK + j]
            tmp[tK + j] = a if a > K else K
    for j in range(nb):
        K = tmp[tK + j]
        tmp[tK + j] = K if K > NEG_INF else 0.0
        tmp[ts + j] = 0.0
        tmp[tn + j] = 0.0
    for e in range(a0, a1):
        oc = cidx[e] * R + off
        we = wk[e]
        wme = wm[e]
        if with_u:
            for j in range(nb):
                d = (we + Kx[oc + j]) - tmp[tK + j]
                d = -1023.0 if d < -1023.0 else d
                q = (wme * M[oc + j]) * pow2(d)
                tmp[ts + j] += q
                tmp[tn + j] += q * U[oc + j]
        else:
            for j in range(nb):
                d = (we + Kx[oc + j]) - tmp[tK + j]
                d = -1023.0 if d < -1023.0 else d
                tmp[ts + j] += (wme * M[oc + j]) * pow2(d)
    for j in range(nb):
        sr = tmp[ts + j]
        oM[om + j] = norm_m(sr)
        oK[ok + j] = norm_k(sr, tmp[tK + j])
        if with_u:
            oU[ou + j] = tmp[tn + j] / sr if sr > 0.0 else 0.0


@njit(**_opts)
def sprod_blk(cidx, a0, a1, M, Kx, R, off, nb, oi, tmp):
    """spmn_sprod_: a product over rows off..off+nb into M[oi+j], Kx[oi+j]."""
    tm, tk = T_PROD, T_PROD + SB
    for j in range(nb):
        tmp[tm + j] = 1.0
        tmp[tk + j] = 0.0
    seg = 0
    for e in range(a0, a1):
        oc = cidx[e] * R + off
        for j in range(nb):
            tmp[tm + j] = tmp[tm + j] * M[oc + j]
            tmp[tk + j] = tmp[tk + j] + Kx[oc + j]
        seg += 1
        if seg == PSEG:
            seg = 0
            for j in range(nb):
                p = tmp[tm + j]
                tmp[tm + j] = norm_m(p)
                tmp[tk + j] = norm_k(p, tmp[tk + j])
    for j in range(nb):
        p = tmp[tm + j]
        M[oi + j] = norm_m(p)
        Kx[oi + j] = norm_k(p, tmp[tk + j])


@njit(**_opts)
def sgroup_blk(cptr, cidx, W, wm, wk, gmem, q0, g, M, Kx, U, R, off, nb, tmp, gdeg, with_u):
    """spmn_sgroup_: the sums gmem[q0:q0+g] (the child list of gmem[q0]) over one block."""
    h = gmem[q0]
    a0 = cptr[h]
    deg = cptr[h + 1] - a0
    tK, ts, tn = 0, SB, 2 * SB
    oq, oqu = T_Q, T_Q + SB * gdeg
    for j in range(nb):
        tmp[tK + j] = NEG_INF
    for c in range(deg):
        oc = cidx[a0 + c] * R + off
        for j in range(nb):
            a = Kx[oc + j]
            K = tmp[tK + j]
            tmp[tK + j] = a if a > K else K
    for j in range(nb):
        K = tmp[tK + j]
        tmp[tK + j] = K if K > NEG_INF else 0.0
    for c in range(deg):
        oc = cidx[a0 + c] * R + off
        qc = oq + c * SB
        for j in range(nb):
            d = Kx[oc + j] - tmp[tK + j]
            d = -1023.0 if d < -1023.0 else d
            tmp[qc + j] = M[oc + j] * pow2(d)
        if with_u:
            quc = oqu + c * SB
            for j in range(nb):
                tmp[quc + j] = tmp[qc + j] * U[oc + j]
    for t in range(g):
        node = gmem[q0 + t]
        b0 = cptr[node]
        oi = node * R + off
        for j in range(nb):
            tmp[ts + j] = 0.0
            tmp[tn + j] = 0.0
        for c in range(deg):
            w = W[b0 + c]
            qc = oq + c * SB
            for j in range(nb):
                tmp[ts + j] += w * tmp[qc + j]
            if with_u:
                quc = oqu + c * SB
                for j in range(nb):
                    tmp[tn + j] += w * tmp[quc + j]
        nbad = 0
        for j in range(nb):
            sr = tmp[ts + j]
            M[oi + j] = mant(sr)
            Kx[oi + j] = tmp[tK + j] + expo(sr)
            nbad += 0 if (sr >= S_TINY and sr <= S_HUGE) else 1
        if with_u:
            for j in range(nb):
                U[oi + j] = tmp[tn + j] / tmp[ts + j]
        if nbad:  # the exact sum for the rows out of range
            f = T_FALL
            ssum_blk(cidx, wm, wk, b0, cptr[node + 1], M, Kx, U, R, off, nb, tmp, f, tmp,
                     f + SB, tmp, f + 2 * SB, with_u, tmp, T_SUM)
            for j in range(nb):
                sr = tmp[ts + j]
                ok = sr >= S_TINY and sr <= S_HUGE
                M[oi + j] = M[oi + j] if ok else tmp[f + j]
                Kx[oi + j] = Kx[oi + j] if ok else tmp[f + SB + j]
                if with_u:
                    U[oi + j] = U[oi + j] if ok else tmp[f + 2 * SB + j]


@njit(**_opts)
def sup_chunk(circ, Wall, code, gdeg, xt, nr, R, values, M, Kx, U, tmp, cu):
    """The scaled (M, Kx, U) pass over one chunk (csrc/_cscaled.pxi sup_chunk). U rows of
    nodes without a utility below them are never written (they stay 0)."""
    kind, cptr, cidx, var, pptr, params, ulive = circ[0], circ[1], circ[2], circ[4], circ[5], \
        circ[6], circ[7]
    gid, gptr, gmem = circ[10], circ[11], circ[12]
    W, wm, wk = Wall[0], Wall[1], Wall[2]
    for i in range(kind.shape[0]):
        kd = kind[i]
        a0 = cptr[i]
        a1 = cptr[i + 1]
        oi = i * R
        if kd == K_SUM:
            q = gid[i]
            if q == -2:
                continue
            if q >= 0:
                live = cu and group_live(ulive, gptr, gmem, q)
                for off in range(0, nr, SB):
                    sgroup_blk(cptr, cidx, W, wm, wk, gmem, gptr[q], gptr[q + 1] - gptr[q], M,
                               Kx, U, R, off, min(SB, nr - off), tmp, gdeg, live)
                if live:
                    zero_dead_members(ulive, gptr, gmem, q, nr, R, U)
                continue
            wu = cu and ulive[i] != 0
            for off in range(0, nr, SB):
                ssum_blk(cidx, wm, wk, a0, a1, M, Kx, U, R, off, min(SB, nr - off), M, oi + off,
                         Kx, oi + off, U, oi + off, wu, tmp, T_SUM)
        elif kd == K_PRODUCT:
            for off in range(0, nr, SB):
                sprod_blk(cidx, a0, a1, M, Kx, R, off, min(SB, nr - off), oi + off, tmp)
            if cu and ulive[i]:
                add_rows(circ[16], circ[15][i], circ[15][i + 1], nr, R, U, i)
        elif kd == K_MAX:
            x0 = var[i] * R
            for r in range(nr):
                oc = cidx[a0 + max_choice_above(cidx, a0, a1 - a0, xt[x0 + r], M, 0.0, U, R,
                                                r)] * R
                M[oi + r] = M[oc + r]
                Kx[oi + r] = Kx[oc + r]
                U[oi + r] = U[oc + r]
        elif kd == K_CATEGORICAL:
            x0 = var[i] * R
            t0 = circ[18][i]
            tm, tk = circ[20], circ[21]
            for r in range(nr):
                at = uint64(t0) + uint64(code[x0 + r])
                M[oi + r] = tm[at]
                Kx[oi + r] = tk[at]
        else:
            if kd == K_MVGAUSSIAN:
                mv_up(params, pptr[i], xt, nr, R, M, oi, False)
            else:
                leaf_up(kd, params, pptr[i], var[i], xt, nr, R, values, M, U, oi,
                        cu and ulive[i] != 0, math.nan)
            for r in range(nr):
                m, k = to_mk(M[oi + r])
                M[oi + r] = m
                Kx[oi + r] = k


# ------------------------------------------------------------------------------- fast path
@njit(inline="always", **_opts)  # one caller: no call with arrays per node
def fsum_rows(cidx, w, a0, a1, V, U, R, full, nr, i, with_u, tmp):
    """spmn_fsum: s = Σ w p_c, U = Σ (w p_c) U_c / s, rows full..nr row by row (tmp: s, num;
    R each); the caller takes rows 0..full in blocks of 16 (:func:`fsum_blocks`)."""
    uR = uint64(R)
    unr = uint64(nr)
    uf = uint64(full)
    oi = uint64(i) * uR
    tn = uR
    for j in range(uf, unr):
        tmp[j] = 0.0
        tmp[tn + j] = 0.0
    for e in range(a0, a1):
        oc = uint64(cidx[e]) * uR
        we = w[e]
        if with_u:
            for j in range(uf, unr):
                t = we * V[oc + j]
                tmp[j] += t
                tmp[tn + j] += t * U[oc + j]
        else:
            for j in range(uf, unr):
                tmp[j] += we * V[oc + j]
    for j in range(uf, unr):
        V[oi + j] = tmp[j]
    if with_u:
        for j in range(uf, unr):
            sr = tmp[j]
            U[oi + j] = tmp[tn + j] / sr if sr > 0.0 else 0.0


@njit(inline="always", **_opts)  # one caller: no call with arrays per node
def fprod_rows(cidx, a0, a1, V, R, full, nr, i, tmp):
    """spmn_fprod: p = 1 * p_c1 * p_c2 * ..., rows full..nr row by row (the caller takes rows
    0..full in blocks of 16)."""
    uR = uint64(R)
    unr = uint64(nr)
    uf = uint64(full)
    oi = uint64(i) * uR
    for j in range(uf, unr):
        tmp[j] = 1.0
    for e in range(a0, a1):
        oc = uint64(cidx[e]) * uR
        for j in range(uf, unr):
            tmp[j] = tmp[j] * V[oc + j]
    for j in range(uf, unr):
        V[oi + j] = tmp[j]


@njit(inline="always", **_opts)  # one caller: no call with arrays per node
def catprod_rows(cidx, a0, a1, var, tptr, tab, code, R, full, nr, V, oi, tmp):
    """spmn_fcatprod: p = 1 * t_c1 * t_c2 * ... with t_c the entry of categorical leaf c's
    table ``tab[tptr[c]:]`` at the row's code (:func:`cat_tables`: the probability, 1 for
    NaN), rows full..nr row by row (the caller takes rows 0..full in blocks of 16)."""
    for j in range(full, nr):
        tmp[j] = 1.0
    for e in range(a0, a1):
        c = cidx[e]
        x0 = var[c] * R
        t0 = tptr[c]
        for j in range(full, nr):
            tmp[j] = tmp[j] * tab[uint64(t0) + uint64(code[x0 + j])]
    for j in range(full, nr):
        V[oi + j] = tmp[j]


@njit(**_opts)
def check_rows(V, U, oi, t, unr, bad, chk_u):
    """spmn_fcheck: bad[r] += 1 where V leaves {0} U [t, 2^500] (or U is not finite)."""
    for r in range(unr):
        v = V[oi + r]
        ok = v == 0.0 or (v >= t and v <= F_HUGE)
        bad[r] += 0.0 if ok else 1.0
    if chk_u:
        for r in range(unr):
            u = U[oi + r]
            bad[r] += 0.0 if u - u == 0.0 else 1.0


@njit(**_opts)
def fast_chunk(circ, Wall, code, xt, nr, R, values, V, U, bad, tmp, cu, fuse):
    """The linear fast path over one chunk (csrc/_cscaled.pxi fast_chunk); bad[r] > 0 marks
    the rows that must take :func:`sup_chunk`. ``code``: the chunk's int32 codes. With ``fuse``,
    products of categorical leaves read the leaves' probabilities themselves and the leaves
    are skipped (``circ[17]``)."""
    kind, cptr, cidx, var, pptr, params, ulive = circ[0], circ[1], circ[2], circ[4], circ[5], \
        circ[6], circ[7]
    fthr, fchk, fused = circ[13], circ[14], circ[17]
    wl = Wall[3]
    lcptr, lcidx, tptr, tabF = circ[15], circ[16], circ[18], circ[19]
    tptr8, tab8, cat8 = circ[27], circ[28], circ[25][2] != 0  # lookups by vpermd
    full = nr - nr % SB  # rows 0..full in blocks of 16 in registers, the rest row by row
    for r in range(nr):
        bad[r] = 0.0
    for i in range(kind.shape[0]):
        kd = kind[i]
        a0 = cptr[i]
        a1 = cptr[i + 1]
        oi = i * R
        live = cu and ulive[i] != 0
        if kd == K_SUM:
            if live:
                for off in range(0, full, SB):
                    blk_fsum_u(cidx, wl, a0, a1, V, U, R, off, oi + off)
            else:
                for off in range(0, full, SB):
                    blk_fsum(cidx, wl, a0, a1, V, R, off, oi + off)
            if full < nr:
                fsum_rows(cidx, wl, a0, a1, V, U, R, full, nr, i, live, tmp)
        elif kd == K_PRODUCT:
            if fuse and fused[i] == 1:
                if cat8:
                    for off in range(0, full, SB):
                        blk_catprod8(cidx, a0, a1, var, tptr8, tab8, code, R, off, V, oi + off)
                else:
                    for off in range(0, full, SB):
                        blk_catprod(cidx, a0, a1, var, tptr, tabF, code, R, off, V, oi + off)
                if full < nr:
                    catprod_rows(cidx, a0, a1, var, tptr, tabF, code, R, full, nr, V, oi, tmp)
            else:
                for off in range(0, full, SB):
                    blk_prod(cidx, a0, a1, V, R, off, oi + off)
                if full < nr:
                    fprod_rows(cidx, a0, a1, V, R, full, nr, i, tmp)
            if live:
                add_rows(lcidx, lcptr[i], lcptr[i + 1], nr, R, U, i)
        elif kd == K_MAX:
            x0 = var[i] * R
            for r in range(nr):
                oc = cidx[a0 + max_choice_above(cidx, a0, a1 - a0, xt[x0 + r], V, 0.0, U, R,
                                                r)] * R
                V[oi + r] = V[oc + r]
                U[oi + r] = U[oc + r]
        elif kd == K_CATEGORICAL:  # lookups in lin(log p) by code, as Cython's tables
            if fuse and fused[i] == 2:
                continue
            x0 = uint64(var[i] * R)
            t0 = uint64(circ[18][i])
            tf = circ[19]
            uo = uint64(oi)
            r0 = 0
            if cat8:
                r0 = full
                for off in range(0, full, SB):
                    blk_catleaf8(tptr8[i], tab8, code, var[i] * R + off, V, oi + off)
            for r in range(uint64(r0), uint64(nr)):  # unsigned: no wraparound per lookup
                V[uo + r] = tf[t0 + uint64(code[x0 + r])]
        else:
            if kd == K_MVGAUSSIAN:
                mv_up(params, pptr[i], xt, nr, R, V, oi, False)
            else:
                leaf_up(kd, params, pptr[i], var[i], xt, nr, R, values, V, U, oi, live,
                        math.nan)
            for r in range(nr):
                V[oi + r] = lin(V[oi + r])
        chk_u = live and kd == K_SUM
        if fchk[i] or chk_u:
            check_rows(V, U, uint64(oi), fthr[i], uint64(nr), bad, chk_u)


@njit(**_opts)
def edge_tables(lw):
    """Per edge (W placeholder, wm, wk, wl): w = wm 2^wk (scaled pass) and w (fast path)."""
    E = lw.shape[0]
    out = np.empty((4, max(E, 1)))
    for e in range(E):
        m, k = to_mk(lw[e])
        out[1, e] = m
        out[2, e] = k
        out[3, e] = lin(lw[e])
    return out


@njit(**_opts)
def cat_tables(kind, pptr, params, var, mode_logp):
    """Categorical leaves as tables indexed by the chunk's int32 codes (NaN is code k), as
    Cython's ``_CircView._cat_tables``: per leaf its offset ``tptr`` and k + 1 entries of
    ``tabF`` (lin of log p, then lin(0) for NaN: the fast path), ``tabSM``/``tabSK`` (to_mk of
    the same: the scaled pass) and ``tabM`` (log p, then the max log p: MPE); ``card`` per
    variable (0: no categorical leaf reads it); last ``tabL`` (log p, then 0 for NaN: the
    log-space pass of policy, sampling and counts)."""
    n = kind.shape[0]
    nvc = 0
    size = 0
    for i in range(n):
        nvc = max(nvc, var[i] + 1)
        if kind[i] == K_CATEGORICAL:
            size += pptr[i + 1] - pptr[i] + 1
    card = np.zeros(nvc + 1, np.int32)
    tptr = np.full(n, -1, np.int64)
    tabL = np.empty(size + 1)
    tabM = np.empty(size + 1)
    size = 0
    for i in range(n):
        if kind[i] != K_CATEGORICAL:
            continue
        p0 = pptr[i]
        k = pptr[i + 1] - p0
        card[var[i]] = k
        tptr[i] = size
        for j in range(k):
            tabL[size + j] = params[p0 + j]
            tabM[size + j] = params[p0 + j]
        mode = mode_logp[i]
        tabL[size + k] = 0.0
        tabM[size + k] = 0.0 if math.isnan(mode) else mode
        size += k + 1
    tabL[size] = 0.0
    tabM[size] = 0.0
    tabF = np.empty(size + 1)
    tabSM = np.empty(size + 1)
    tabSK = np.empty(size + 1)
    for j in range(size):
        tabF[j] = lin(tabL[j])
        m, k = to_mk(tabL[j])
        tabSM[j] = m
        tabSK[j] = k
    tabF[size] = 0.0
    tabSM[size] = 0.0
    tabSK[size] = NEG_INF
    return tptr, tabF, tabSM, tabSK, tabM, card, tabL
