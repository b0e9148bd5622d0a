"""Numba operations on the decision-diagram store of :mod:`._numba_add` (its layout and error
codes are described there): ``apply2`` (add, sub, mul, max), ``apply1`` (restrict, affine,
relabel, leaf substitution) and ``fma`` (one term of an expectation, fused). Each is a stack
machine that returns NEED_NODES / NEED_MEMO before a step that needs room; its driver grows
the arrays and resumes it, so no array is rebound inside a loop (no reference counting per
step). The arithmetic is the reference's, operation for operation (``a + b``, ``a - b``,
``a * b``, ``b if b > a else a``, ``a * v + b``), with the same shortcuts at the same places,
and nodes are made in the reference's order, so leaves and node ids agree with it bit for bit.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._numba_add import (
    _LMASK,
    _M1,
    ADD,
    AFFINE,
    FALLBACK,
    LEAFMAP,
    MAX,
    MUL,
    NAN,
    NEED_MEMO,
    NEED_NODES,
    RELABEL,
    RESTRICT,
    SUB,
    TERM,
    _const,
    _get,
    _grow,
    _memo_grow,
    _mix,
    _node,
    _opts,
    _put,
    _room,
)

__all__ = ["apply2", "apply1", "fma"]


# ---------------------------------------------------------------------- operations
@njit(inline="always", **_opts)
def _leaf2(op, a, b):
    if op == ADD:
        return a + b
    if op == SUB:
        return a - b
    if op == MUL:
        return a * b
    return b if b > a else a


@njit(**_opts)
def _run2(S, cards, mem, cnt, op, kmax, sf, sg, fo, go, sl, si, buf, state):
    """The stack machine of :func:`apply2` from ``state[0]`` frames; returns the result, an
    error, or NEED_NODES / NEED_MEMO (before a step that would need room: grow and rerun)."""
    sp = state[0]
    res = np.int64(-3)
    info, val, pool = S[1], S[2], S[3]
    while sp > 0:
        if not _room(S, kmax):
            state[0] = sp
            return NEED_NODES
        if 4 * (cnt[0] + 2) > mem.size:
            state[0] = sp
            return NEED_MEMO
        p = sp - 1
        r = np.int64(-3)
        if si[p] < 0:
            a, b = sf[p], sg[p]
            if op != SUB and a > b:
                a, b = b, a
                sf[p], sg[p] = a, b
            key = (a << 32) | b
            r = _get(mem, key)
            if r < 0:
                ia, ib = info[a], info[b]
                la, lb = ia & _LMASK, ib & _LMASK
                if la == TERM and lb == TERM:
                    x = _leaf2(op, val[a], val[b]) + 0.0
                    if x != x:
                        return np.int64(NAN)
                    r = _const(S, x)
                    _put(mem, cnt, key, r)
                else:
                    if op == ADD:
                        if a == 0:
                            r = b
                        elif b == 0:
                            r = a
                    elif op == MUL:
                        if a == 0 or b == 0:
                            r = np.int64(0)
                        elif a == 1:
                            r = b
                        elif b == 1:
                            r = a
                    elif op == MAX:
                        if a == b:
                            r = a
                    if r >= 0:
                        _put(mem, cnt, key, r)
                    else:
                        L = min(la, lb)
                        sl[p] = L
                        fo[p] = (ia >> 31) if la == L else -1
                        go[p] = (ib >> 31) if lb == L else -1
                        si[p] = 0
        if r < 0:
            L = sl[p]
            i = si[p]
            if i < cards[L]:
                si[p] = i + 1
                sf[sp] = pool[fo[p] + i] if fo[p] >= 0 else sf[p]
                sg[sp] = pool[go[p] + i] if go[p] >= 0 else sg[p]
                si[sp] = -1
                sp += 1
                continue
            r = _node(S, cards, L, buf, p * kmax)
            if r < 0:
                return r
            _put(mem, cnt, (sf[p] << 32) | sg[p], r)
        sp -= 1
        if sp == 0:
            res = r
        else:
            buf[(sp - 1) * kmax + si[sp - 1] - 1] = r
    state[0] = 0
    return res


@njit(**_opts)
def apply2(S, cards, M, op, f, g, kmax):
    """(S, M, op(f, g)) for ADD, SUB, MUL, MAX (the reference's ``_apply`` with its shortcuts:
    add skips the zero, mul the zero and one, max equal arguments; commutative ones memo
    (min, max))."""
    mem, cnt = M
    depth = cards.size + 2
    sf = np.empty(depth, np.int64)
    sg = np.empty(depth, np.int64)
    fo = np.empty(depth, np.int64)  # where f's kids start when it tests the frame's level, or -1
    go = np.empty(depth, np.int64)
    sl = np.empty(depth, np.int64)
    si = np.full(depth, -1, np.int64)
    buf = np.empty(depth * kmax, np.int64)
    sf[0], sg[0] = f, g
    state = np.ones(1, np.int64)
    while True:
        r = _run2(S, cards, mem, cnt, op, kmax, sf, sg, fo, go, sl, si, buf, state)
        if r == NEED_NODES:
            S = _grow(S, cards, 1, kmax)
        elif r == NEED_MEMO:
            mem = _memo_grow(mem)
        else:
            return S, (mem, cnt), r


@njit(**_opts)
def _run1(S, cards, mem, cnt, op, level, v, a, b, relab, lid, lval, kmax, sf, si, buf, state):
    """The stack machine of :func:`apply1` (as :func:`_run2`)."""
    sp = state[0]
    res = np.int64(-3)
    stride = cards.size * kmax
    info, val, pool = S[1], S[2], S[3]
    while sp > 0:
        if not _room(S, kmax):
            state[0] = sp
            return NEED_NODES
        if 4 * (cnt[0] + 2) > mem.size:
            state[0] = sp
            return NEED_MEMO
        p = sp - 1
        r = np.int64(-3)
        x = sf[p]
        ix = info[x]
        lx = ix & _LMASK
        key = x * stride + level * kmax + v if op == RESTRICT else x
        if si[p] < 0:
            if op == RESTRICT and lx > level:
                r = x
            elif op == RESTRICT and lx == level:
                r = np.int64(pool[(ix >> 31) + v])
            else:
                r = _get(mem, key)
                if r < 0:
                    if lx == TERM:
                        if op == AFFINE or op == LEAFMAP:
                            if op == AFFINE:
                                y = a * val[x] + b + 0.0
                            else:
                                y = lval[np.searchsorted(lid, x)] + 0.0
                            if y != y:
                                return np.int64(NAN)
                            r = _const(S, y)
                        else:
                            r = x
                        _put(mem, cnt, key, r)
                    else:
                        si[p] = 0
        if r < 0:
            i = si[p]
            if i < cards[lx]:
                si[p] = i + 1
                sf[sp] = pool[(ix >> 31) + i]
                si[sp] = -1
                sp += 1
                continue
            r = _node(S, cards, relab[lx] if op == RELABEL else lx, buf, p * kmax)
            if r < 0:
                return r
            _put(mem, cnt, key, r)
        sp -= 1
        if sp == 0:
            res = r
        else:
            buf[(sp - 1) * kmax + si[sp - 1] - 1] = r
    state[0] = 0
    return res


@njit(**_opts)
def apply1(S, cards, M, op, f, level, v, a, b, relab, lid, lval, kmax):
    """(S, M, result) for RESTRICT (f with the variable at ``level`` set to ``v``; memo key
    (f, level, v)), AFFINE (a f + b), RELABEL (levels renamed by ``relab``) and LEAFMAP (the
    constant ``lid[j]`` (sorted, holding every leaf of f) replaced by ``lval[j]``)."""
    mem, cnt = M
    depth = cards.size + 2
    sf = np.empty(depth, np.int64)
    si = np.full(depth, -1, np.int64)
    buf = np.empty(depth * kmax, np.int64)
    sf[0] = f
    state = np.ones(1, np.int64)
    while True:
        r = _run1(S, cards, mem, cnt, op, level, v, a, b, relab, lid, lval, kmax, sf, si, buf,
                  state)
        if r == NEED_NODES:
            S = _grow(S, cards, 1, kmax)
        elif r == NEED_MEMO:
            mem = _memo_grow(mem)
        else:
            return S, (mem, cnt), r


# ---------------------------------------------------------------------- expectation terms
@njit(inline="always", **_opts)
def _slot3(k1, k2, mask):
    return np.int64(_mix(np.uint64(k1) ^ _mix(np.uint64(k2) + _M1)) & np.uint64(mask))


@njit(inline="always", **_opts)
def _get3(mem, k1, k2):
    mask = mem.size // 3 - 1
    s = _slot3(k1, k2, mask)
    while True:
        k = mem[3 * s]
        if k == k1 and mem[3 * s + 1] == k2:
            return mem[3 * s + 2]
        if k < 0:
            return np.int64(-1)
        s = (s + 1) & mask


@njit(inline="always", **_opts)
def _put3(mem, cnt, k1, k2, r):
    mask = mem.size // 3 - 1
    s = _slot3(k1, k2, mask)
    while True:
        k = mem[3 * s]
        if k < 0:
            cnt[0] += 1
            break
        if k == k1 and mem[3 * s + 1] == k2:
            break
        s = (s + 1) & mask
    mem[3 * s] = k1
    mem[3 * s + 1] = k2
    mem[3 * s + 2] = r


@njit(**_opts)
def _memo3_grow(mem):
    slots = 2 * (mem.size // 3)
    m2 = np.full(3 * slots, -1, np.int64)
    for s in range(mem.size // 3):
        if mem[3 * s] >= 0:
            t = _slot3(mem[3 * s], mem[3 * s + 1], slots - 1)
            while m2[3 * t] >= 0:
                t = (t + 1) & (slots - 1)
            m2[3 * t] = mem[3 * s]
            m2[3 * t + 1] = mem[3 * s + 1]
            m2[3 * t + 2] = mem[3 * s + 2]
    return m2


@njit(inline="always", **_opts)
def _cut(info, pool, x, level, v):
    """x restricted to value v of ``level`` when x tests it there (its kids lie below)."""
    ix = info[x]
    if (ix & _LMASK) == level:
        return np.int64(pool[(ix >> 31) + v])
    return x


@njit(**_opts)
def _run3(S, cards, mem, cnt, level, v, kmax, so, sp_, sr, oo, po, ro, sl, si, buf, state):
    """The stack machine of :func:`fma` (as :func:`_run2`); frames (o, p, r) with r already
    restricted."""
    sp = state[0]
    res = np.int64(-3)
    info, val, pool = S[1], S[2], S[3]
    while sp > 0:
        if not _room(S, kmax):
            state[0] = sp
            return NEED_NODES
        if 2 * (cnt[0] + 2) > mem.size // 3:
            state[0] = sp
            return NEED_MEMO
        q = sp - 1
        r = np.int64(-3)
        if si[q] < 0:
            o, p, x = so[q], sp_[q], _cut(info, pool, sr[q], level, v)
            sr[q] = x
            io, ip, ix = info[o], info[p], info[x]
            lo, lp, lx = io & _LMASK, ip & _LMASK, ix & _LMASK
            if p == 0 or x == 0:  # the zero term (mul's shortcut): o, unless 0 * inf at a leaf
                if (p == 0 and lx == TERM and not math.isfinite(val[x])) or \
                        (x == 0 and lp == TERM and not math.isfinite(val[p])):
                    return np.int64(FALLBACK)
                r = o
            else:
                k1 = (o << 32) | p
                r = _get3(mem, k1, x)
                if r < 0:
                    if lo == TERM and lp == TERM and lx == TERM:
                        y = val[o] + val[p] * val[x] + 0.0
                        if y != y:
                            return np.int64(FALLBACK)
                        r = _const(S, y)
                        _put3(mem, cnt, k1, x, r)
                    else:
                        L = min(lo, min(lp, lx))
                        sl[q] = L
                        oo[q] = (io >> 31) if lo == L else -1
                        po[q] = (ip >> 31) if lp == L else -1
                        ro[q] = (ix >> 31) if lx == L else -1
                        si[q] = 0
        if r < 0:
            L = sl[q]
            i = si[q]
            if i < cards[L]:
                si[q] = i + 1
                so[sp] = pool[oo[q] + i] if oo[q] >= 0 else so[q]
                sp_[sp] = pool[po[q] + i] if po[q] >= 0 else sp_[q]
                sr[sp] = pool[ro[q] + i] if ro[q] >= 0 else sr[q]
                si[sp] = -1
                sp += 1
                continue
            r = _node(S, cards, L, buf, q * kmax)
            if r < 0:
                return r
            _put3(mem, cnt, (so[q] << 32) | sp_[q], sr[q], r)
        sp -= 1
        if sp == 0:
            res = r
        else:
            buf[(sp - 1) * kmax + si[sp - 1] - 1] = r
    state[0] = 0
    return res


@njit(**_opts)
def fma(S, cards, mem, o, p, f, level, v, kmax):
    """(S, mem, o + p · f|_{level = v}) in one pass, the leaves as the reference's
    ``add(o, mul(p, restrict(f, level, v)))`` computes them (``o + p * r``; a zero term
    leaves o); FALLBACK where a leaf would be NaN or 0 · inf (the caller then composes the
    three operations, which decide as the reference does). ``mem``: a fresh 3-word memo."""
    cnt = np.zeros(1, np.int64)
    depth = cards.size + 2
    so = np.empty(depth, np.int64)
    sp_ = np.empty(depth, np.int64)
    sr = np.empty(depth, np.int64)
    oo = np.empty(depth, np.int64)
    po = np.empty(depth, np.int64)
    ro = np.empty(depth, np.int64)
    sl = np.empty(depth, np.int64)
    si = np.full(depth, -1, np.int64)
    buf = np.empty(depth * kmax, np.int64)
    so[0], sp_[0], sr[0] = o, p, f
    state = np.ones(1, np.int64)
    while True:
        r = _run3(S, cards, mem, cnt, level, v, kmax, so, sp_, sr, oo, po, ro, sl, si, buf,
                  state)
        if r == NEED_NODES:
            S = _grow(S, cards, 1, kmax)
        elif r == NEED_MEMO:
            mem = _memo3_grow(mem)
        else:
            return S, mem, r
