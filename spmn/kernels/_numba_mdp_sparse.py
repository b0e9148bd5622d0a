"""Numba passes of a sparse (CSR) tabular MDP's exact solve: the twins of :mod:`._numba_mdp`
for P stored as CSR rows, chosen by :class:`spmn.worldmodels.tabular.CompiledMDP` and tested
against the reference :class:`spmn.reference.tabular.TabularMDP` there.

P is the reference's canonical CSR (A·S, S) matrix (row ``a·S + s`` is P[a, s, :], indices
sorted, no duplicates) given as its three arrays ``ip`` (indptr), ``ix`` (indices), ``px``
(data), checked as they are (:func:`csr_check_pass`) and, for the solve, padded to rows of one
width ``w`` (:func:`padded_rows`: ``E`` values, ``C`` columns, row i at i·w). A policy's rows
are read in place (row ``pi[s]·S + s``): P_π is never gathered. Row products add their entries
left to right in index order, as scipy's ``csr_matvec``, so a product equals the reference's
(no fast-math here: rows are short; a padding entry adds a zero).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._numba_mdp import greedy_rewards, policy_residual, switch_policy

_opts = dict(cache=True, nogil=True, error_model="numpy")


@njit(**_opts)
def _norm(x):
    m = 0.0
    for i in range(x.shape[0]):
        v = abs(x[i])
        if v > m:
            m = v
    return m


@njit(**_opts)
def padded_rows(ip, ix, px, S, slack):
    """P's rows padded to one width w (row i at i·w .. i·w + w of ``E`` (values), ``C``
    (columns)): a row product then runs a loop of the same length on every row, which the CPU
    predicts and overlaps, where CSR rows of varying length mispredict at every row's end. A
    padding entry is 0 at the row's last column (its own index for an empty row), so it adds
    a zero product (finite x) and changes no bandwidth. Returns (w, E, C); w = -1 (nothing
    built) when padding would store more than ``slack`` times P's entries plus 16 per row."""
    n = ip.shape[0] - 1
    w = 0
    for i in range(n):
        w = max(w, ip[i + 1] - ip[i])
    if n * w > slack * ip[n] + 16 * n:
        return -1, np.empty(0), np.empty(0, np.int64)
    E = np.zeros(n * w)
    C = np.empty(n * w, np.int64)
    for i in range(n):
        o = i * w
        a0, a1 = ip[i], ip[i + 1]
        for k in range(a0, a1):
            E[o + k - a0] = px[k]
            C[o + k - a0] = ix[k]
        last = ix[a1 - 1] if a1 > a0 else i % S
        for k in range(a1 - a0, w):
            C[o + k] = last
    return w, E, C


@njit(**_opts)
def _pdot(w, E, C, i, x):
    """Row i of the padded P times x, entries left to right (scipy's order)."""
    d = 0.0
    o = i * w
    for k in range(o, o + w):
        d += E[k] * x[C[k]]
    return d


@njit(**_opts)
def csr_check_pass(ip, ix, px, S, terminal, atol):
    """One read of P: how many rows break a rule of the reference's check (an index outside
    0..S-1 or out of order, a non-finite entry, a negative entry, or a sum off 1 by more than
    ``atol`` on a row that is not a terminal state's empty one); the caller then runs the
    reference check, which names the first offender."""
    n = ip.shape[0] - 1
    bad = 0
    for i in range(n):
        s = 0.0
        ok = True
        last = -1
        for k in range(ip[i], ip[i + 1]):
            p = px[k]
            s += p
            j = ix[k]
            ok = ok and p >= 0.0 and j > last and j < S
            last = j
        if not ok or not math.isfinite(s):
            bad += 1
        elif abs(s - 1.0) > atol and not (terminal[i % S] and s == 0.0):
            bad += 1
    return bad


@njit(**_opts)
def csr_policy_bandwidth(w, E, C, pi, terminal, any_terminal):
    """The reference's ``bandwidth`` of its P_π (max |s - s'| over the stored entries of the
    live rows; with terminal states the reference's P_π is a product that drops zeros, so
    stored zeros count only when no state is terminal); 0 when P_π stores nothing."""
    S = pi.shape[0]
    bw = 0
    for s in range(S):
        if terminal[s]:
            continue
        o = (pi[s] * S + s) * w
        for k in range(o, o + w):
            if any_terminal and E[k] == 0.0:
                continue
            bw = max(bw, abs(C[k] - s))
    return bw


@njit(**_opts)
def csr_product(w, E, C, pi, terminal, x, y):
    """y = P_π x (rows ``pi[s]·S + s``), zero on terminal states."""
    S = x.shape[0]
    for s in range(S):
        d = 0.0
        if not terminal[s]:
            o = (pi[s] * S + s) * w
            for k in range(o, o + w):
                d += E[k] * x[C[k]]
        y[s] = d


@njit(**_opts)
def csr_richardson(w, E, C, pi, terminal, b, live, gamma, x, res, rel, max_matvecs):
    """:func:`._numba_mdp.richardson` reading P_π's padded rows: x += M⁻¹ res, M = I - γ live
    uᵀ, until |res|∞ <= rel·max(1, |x|∞), or until a step gains less than half (the best x is
    kept). ``x`` and ``res`` are updated in place; returns (products, |res|∞). Two passes a
    step (the new x with its norm; the product with the residual, its norm and sum), on two
    pairs of buffers taken in turn."""
    S = b.shape[0]
    wsum = 0.0
    for s in range(S):
        wsum += live[s]
    k = gamma / (1.0 - gamma * (wsum / S)) / S
    xa, ra = x, res
    xb, rb = np.empty(S), np.empty(S)
    rn = _norm(res)
    xnorm = _norm(x)
    csum = 0.0
    for s in range(S):
        csum += res[s]
    n = 0
    while rn > rel * max(1.0, xnorm) and n < max_matvecs:
        c = csum * k
        xbn = 0.0
        for s in range(S):
            v = xa[s] + ra[s] + c * live[s]
            xb[s] = v
            if abs(v) > xbn:
                xbn = abs(v)
        rn_new = 0.0
        csum_new = 0.0
        for s in range(S):  # P_π xb, row by row, and the residual
            d = 0.0
            if not terminal[s]:
                o = (pi[s] * S + s) * w
                for j in range(o, o + w):
                    d += E[j] * xb[C[j]]
            t = gamma * d + b[s] - xb[s]
            rb[s] = t
            csum_new += t
            if abs(t) > rn_new:
                rn_new = abs(t)
        n += 1
        gain = rn_new <= 0.5 * rn
        if gain or rn_new < rn:  # take the step (also the last one that still gained)
            xa, xb = xb, xa
            ra, rb = rb, ra
            rn, xnorm, csum = rn_new, xbn, csum_new
        if not gain:  # too slow (or no gain, or at the rounding floor): stop
            break
    if xa is not x:  # the result lies in the other pair of buffers
        x[:] = xa
        res[:] = ra
    return n, rn


@njit(**_opts)
def csr_q_values(w, E, C, r, terminal, V, gamma, U):
    """U[a, s] = γ P[a, s, :] V + r[a, s], 0 on terminal states (the reference's ``_q``)."""
    A, S = U.shape
    for a in range(A):
        for s in range(S):
            U[a, s] = 0.0 if terminal[s] else gamma * _pdot(w, E, C, a * S + s, V) + r[a, s]


@njit(**_opts)
def csr_improve(w, E, C, r, terminal, pi, V_old, V, res, U, gamma, row_atol, tie_rtol, new,
                best, qmax):
    """:func:`._numba_mdp.improve` reading CSR rows (the same bounds, contenders, ties and
    counts); returns how many states changed action."""
    A, S = U.shape
    hi = -math.inf
    for s in range(S):
        d = V[s] - V_old[s]
        if d > hi:
            hi = d
    add = gamma * (hi + row_atol * abs(hi)) + 1e-13 * max(1.0, _norm(U.ravel()))
    big = 0.0
    for a in range(A):
        for s in range(S):
            u = 0.0 if terminal[s] else U[a, s] + add
            if a == pi[s]:
                u = V[s] + res[s]
            U[a, s] = u
            if abs(u) > big:
                big = abs(u)
    atol = tie_rtol * max(1.0, big)
    count = 0
    for a in range(A):
        for s in range(S):
            if a != pi[s] and not terminal[s] and U[a, s] >= (V[s] + res[s]) - 4 * atol:
                count += 1
    if count > A * S // 4:  # most actions are contenders: one pass over P
        csr_q_values(w, E, C, r, terminal, V, gamma, U)
        for s in range(S):
            U[pi[s], s] = V[s] + res[s]
    elif count:
        for a in range(A):
            for s in range(S):
                if a != pi[s] and not terminal[s] and U[a, s] >= (V[s] + res[s]) - 4 * atol:
                    U[a, s] = r[a, s] + gamma * _pdot(w, E, C, a * S + s, V)
    return switch_policy(U, V, res, pi, atol, tie_rtol, new, best, qmax)


@njit(**_opts)
def _target(b, x, gamma, rtol):
    """The reference's ``_target``: rtol·(1-γ)·max(1, |x|∞), never below the rounding floor."""
    xn = _norm(x)
    return max(rtol * (1.0 - gamma) * max(1.0, xn), 32 * 2.220446049250313e-16 * (xn + _norm(b)))


@njit(**_opts)
def _seen(hist, n, pi):
    for k in range(n):
        same = True
        for s in range(pi.shape[0]):
            if hist[k, s] != pi[s]:
                same = False
                break
        if same:
            return True
    return False


@njit(**_opts)
def csr_solve(w, E, C, r, terminal, live, gamma, row_atol, tie_rtol, rtol, max_iter,
              max_matvecs, banded_bw, hist, V, best, qmax):
    """The reference's sparse policy iteration from its default start, in one call: π0 =
    greedy(r), V0 = b0 + γ/(1-γ) mean(b0) live, U = Q(V0), π1 = greedy(U), then exact
    evaluations by :func:`csr_richardson` and :func:`csr_improve` steps.

    ``hist`` (H, S) records the policies evaluated (the reference's ``seen``). Returns
    (status, policies evaluated): status 0 when done (V, best, qmax written), 1 when an
    evaluation stalled (a slowly mixing P_π: the reference's GMRES / LU path is needed), 2 when
    ``hist`` is full, 3 when max_iter steps did not stabilise, 4 when some P_π has a bandwidth
    of at most ``banded_bw`` (the reference solves it banded).
    """
    A, S = r.shape
    any_terminal = False
    for s in range(S):
        any_terminal = any_terminal or terminal[s]
    U = np.empty((A, S))
    pi = np.empty(S, np.int64)
    new = np.empty(S, np.int64)
    res = np.empty(S)
    b = np.empty(S)
    x = np.empty(S)
    greedy_rewards(r, tie_rtol, pi, b)  # π0 = greedy(r), b = r_π0
    m = 0.0
    for s in range(S):
        m += b[s]
    m = gamma / (1.0 - gamma) * (m / S)
    for s in range(S):
        V[s] = b[s] + m * live[s]
    csr_q_values(w, E, C, r, terminal, V, gamma, U)
    greedy_rewards(U, tie_rtol, pi, res)  # π1 = greedy(U), res = U[π1] - V0
    for s in range(S):
        res[s] -= V[s]
    rel = rtol * (1.0 - gamma)
    n = 0
    for _ in range(max_iter):
        if not _seen(hist, n, pi):
            if n == hist.shape[0]:
                return 2, n
            hist[n] = pi
            n += 1
        if csr_policy_bandwidth(w, E, C, pi, terminal, any_terminal) <= banded_bw:
            return 4, n
        for s in range(S):
            b[s] = r[pi[s], s]
        x[:] = V
        _, rn = csr_richardson(w, E, C, pi, terminal, b, live, gamma, x, res, rel,
                               max_matvecs)
        if not rn <= _target(b, x, gamma, rtol):
            return 1, n
        for s in range(S):
            if terminal[s]:
                x[s] = 0.0
        changed = csr_improve(w, E, C, r, terminal, pi, V, x, res, U, gamma, row_atol,
                              tie_rtol, new, best, qmax)
        V[:] = x
        if changed == 0 or _seen(hist, n, new):  # optimal, or cycling among exact ties
            if _norm(res) <= _target(b, V, gamma, rtol):
                return 0, n
            new[:] = pi  # stopped on a loose evaluation: refine it from the warm start
        policy_residual(U, new, V, res)
        pi[:] = new
    return 3, n


@njit(**_opts)
def csr_solve_all(ip, ix, px, r, terminal, gamma, row_atol, tie_rtol, rtol, max_iter,
                  max_matvecs, banded_bw, history):
    """:func:`csr_solve` on P's rows padded (:func:`padded_rows`), its arrays allocated here;
    returns (status, policies evaluated, V, greedy policy, Bellman residual |max_a Q - V|∞);
    status 5 when padding P would take too much memory (the caller runs the reference)."""
    S = r.shape[1]
    w, E, C = padded_rows(ip, ix, px, S, 4)
    if w < 0:
        return 5, 0, np.zeros(S), np.zeros(S, np.int64), 0.0
    live = np.empty(S)
    for s in range(S):
        live[s] = 0.0 if terminal[s] else 1.0
    V, best, qmax = np.empty(S), np.empty(S, np.int64), np.empty(S)
    hist = np.empty((history, S), np.int64)
    status, n = csr_solve(w, E, C, r, terminal, live, gamma, row_atol, tie_rtol, rtol,
                          max_iter, max_matvecs, banded_bw, hist, V, best, qmax)
    residual = 0.0
    for s in range(S):
        residual = max(residual, abs(qmax[s] - V[s]))
    return status, n, V, best, residual
