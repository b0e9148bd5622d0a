"""Numba passes of a dense tabular MDP's exact solve: the compiled twins of the numpy steps of
:class:`spmn.reference.tabular.TabularMDP` (check pass, start policy, deflated Richardson
evaluation, greedy improvement with action elimination), chosen by
:class:`spmn.worldmodels.tabular.CompiledMDP` and tested against the reference there.

Flat arrays only: ``Pf`` is P as (A·S, S) rows (row ``a·S + s`` is P[a, s, :]), C-contiguous
float64; ``r``, ``U`` are (A, S); ``terminal`` a bool mask (S,), ``live`` its complement as
float64. A policy's rows are read in place (row ``pi[s]·S + s``): P_π is never gathered.

The row reductions are compiled with ``fastmath={"reassoc", "nsz"}`` so that LLVM vectorizes
them (a strict left-to-right sum runs 4-8x slower here): a sum may be added up in another order
than numpy's, which changes results by rounding only (NaN and infinities still propagate, since
neither ``nnan`` nor ``ninf`` is set). Every value this module returns is checked by the caller
against the stated residual, never trusted for its rounding.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

_opts = dict(cache=True, nogil=True, error_model="numpy")
_fm = dict(fastmath={"reassoc", "nsz"}, **_opts)


@njit(inline="always", **_fm)
def _dot(row, x):
    d = 0.0
    for j in range(x.shape[0]):
        d += row[j] * x[j]
    return d


@njit(inline="always", **_fm)
def _dot4(r0, r1, r2, r3, x):
    """Four rows times x at once: each x[j] is loaded once for four products (as BLAS's gemv)."""
    d0 = d1 = d2 = d3 = 0.0
    for j in range(x.shape[0]):
        xj = x[j]
        d0 += r0[j] * xj
        d1 += r1[j] * xj
        d2 += r2[j] * xj
        d3 += r3[j] * xj
    return d0, d1, d2, d3


@njit(inline="always", **_fm)
def _product(Pf, pi, terminal, x, y):
    """y = P_π x (rows ``pi[s]·S + s``), zero on terminal states."""
    S = x.shape[0]
    s = 0
    while s + 4 <= S:
        y[s], y[s + 1], y[s + 2], y[s + 3] = _dot4(
            Pf[pi[s] * S + s], Pf[pi[s + 1] * S + s + 1], Pf[pi[s + 2] * S + s + 2],
            Pf[pi[s + 3] * S + s + 3], x)
        s += 4
    while s < S:
        y[s] = _dot(Pf[pi[s] * S + s], x)
        s += 1
    for s in range(S):
        if terminal[s]:
            y[s] = 0.0


@njit(inline="always", **_opts)
def _norm(x):
    m = 0.0
    for i in range(x.shape[0]):
        v = abs(x[i])
        if v > m:
            m = v
    return m


@njit(**_fm)
def check_pass(Pf, terminal, b0, live, two, atol, sums, Pb, Pl):
    """One read of P: row sums ``sums`` (P 1), ``Pb`` = P b0 and, when ``two``, ``Pl`` = P live.

    Returns how many rows break a rule of the reference's check (a non-finite entry, a negative
    entry, or a sum off 1 by more than ``atol`` on a row that is not a terminal state's empty
    one); the caller then runs the reference check, which names the first offender.
    """
    n, S = Pf.shape
    bad = 0
    for i in range(n):
        row = Pf[i]
        s = 0.0
        d = 0.0
        e = 0.0
        neg = 0.0
        if two:
            for j in range(S):
                p = row[j]
                s += p
                d += p * b0[j]
                e += p * live[j]
                neg += 1.0 if p < 0.0 else 0.0
            Pl[i] = e
        else:
            for j in range(S):
                p = row[j]
                s += p
                d += p * b0[j]
                neg += 1.0 if p < 0.0 else 0.0
        sums[i] = s
        Pb[i] = d
        if not math.isfinite(s) or neg > 0.0:
            bad += 1
        elif abs(s - 1.0) > atol and not (terminal[i % S] and s == 0.0):
            bad += 1
    return bad


@njit(**_opts)
def greedy_rewards(r, tie_rtol, pi, b):
    """π0 = the reference's ``_greedy(r)`` (lowest index within the tie tolerance) and b = r_π0."""
    A, S = r.shape
    qmax = np.empty(S)
    for s in range(S):
        m = r[0, s]
        for a in range(1, A):
            if r[a, s] > m:
                m = r[a, s]
        qmax[s] = m
    atol = tie_rtol * max(1.0, _norm(qmax))
    for s in range(S):
        for a in range(A):
            if r[a, s] >= qmax[s] - atol:
                pi[s] = a
                b[s] = r[a, s]
                break


@njit(**_opts)
def start_policy(r, terminal, Pb, Pl, b0, live, gamma, tie_rtol, U, V, pi, res):
    """The reference's start: V0 = b0 + γ/(1-γ) mean(b0) live, U = Q(V0) = r + γ (P b0 + m P live)
    from the check pass, π1 = greedy(U); writes U (A, S), V = V0, pi = π1 and res = U[π1] - V0."""
    A, S = U.shape
    m = 0.0
    for s in range(S):
        m += b0[s]
    m = gamma / (1.0 - gamma) * (m / S)
    for s in range(S):
        V[s] = b0[s] + m * live[s]
    big = 0.0
    for a in range(A):
        for s in range(S):
            i = a * S + s
            u = 0.0 if terminal[s] else r[a, s] + gamma * (Pb[i] + m * Pl[i])
            U[a, s] = u
    qmax = np.empty(S)
    for s in range(S):
        q = U[0, s]
        for a in range(1, A):
            if U[a, s] > q:
                q = U[a, s]
        qmax[s] = q
        if abs(q) > big:
            big = abs(q)
    atol = tie_rtol * max(1.0, big)
    for s in range(S):
        for a in range(A):
            if U[a, s] >= qmax[s] - atol:
                pi[s] = a
                res[s] = U[a, s] - V[s]
                break


@njit(**_fm)
def policy_product(Pf, pi, terminal, x, y):
    """y = P_π x with the rows of terminal states zero."""
    _product(Pf, pi, terminal, x, y)


@njit(**_fm)
def richardson(Pf, pi, terminal, b, live, gamma, x, res, rel, max_matvecs):
    """The reference's ``deflated_richardson`` with w = live: x += M⁻¹ res, M = I - γ w uᵀ, until
    |res|∞ <= rel·max(1, |x|∞), or until a step gains less than half (then the best x is kept).
    ``x`` and ``res`` (= b + γ P_π x - x on entry) are updated in place; returns (products, |res|∞)."""
    S = b.shape[0]
    wsum = 0.0
    for s in range(S):
        wsum += live[s]
    k = gamma / (1.0 - gamma * (wsum / S)) / S
    xn = np.empty(S)
    rn_buf = np.empty(S)
    rn = _norm(res)
    n = 0
    while rn > rel * max(1.0, _norm(x)) and n < max_matvecs:
        c = 0.0
        for s in range(S):
            c += res[s]
        c *= k
        for s in range(S):
            xn[s] = x[s] + res[s] + c * live[s]
        _product(Pf, pi, terminal, xn, rn_buf)
        rn_new = 0.0
        for s in range(S):
            t = gamma * rn_buf[s] + b[s] - xn[s]
            rn_buf[s] = t
            if abs(t) > rn_new:
                rn_new = abs(t)
        n += 1
        if not rn_new <= 0.5 * rn:  # too slow (or no gain, or at the rounding floor): stop
            if rn_new < rn:
                x[:] = xn
                res[:] = rn_buf
                rn = rn_new
            break
        x[:] = xn
        res[:] = rn_buf
        rn = rn_new
    return n, rn


@njit(**_fm)
def q_values(Pf, r, terminal, V, gamma, U):
    """U[a, s] = r[a, s] + γ P[a, s, :] V, 0 on terminal states (the reference's ``_q``)."""
    A, S = U.shape
    n = A * S
    Uf, rf = U.ravel(), r.ravel()
    i = 0
    while i + 4 <= n:
        Uf[i], Uf[i + 1], Uf[i + 2], Uf[i + 3] = _dot4(Pf[i], Pf[i + 1], Pf[i + 2], Pf[i + 3], V)
        i += 4
    while i < n:
        Uf[i] = _dot(Pf[i], V)
        i += 1
    for i in range(n):
        Uf[i] = 0.0 if terminal[i % S] else gamma * Uf[i] + rf[i]


@njit(**_opts)
def switch_policy(U, V, res, pi, atol, tie_rtol, new, best, qmax):
    """The improvement's last step on the Q bounds U (A, S): ``qmax`` = max_a U, ``best`` =
    the lowest a within tie_rtol·max(1, |qmax|∞) of it, and ``new`` = best where it beats
    Q[π(s), s] = V + res by more than ``atol`` (else π); returns how many states changed."""
    A, S = U.shape
    qbig = 0.0
    for s in range(S):
        q = U[0, s]
        for a in range(1, A):
            if U[a, s] > q:
                q = U[a, s]
        qmax[s] = q
        if abs(q) > qbig:
            qbig = abs(q)
    gtol = tie_rtol * max(1.0, qbig)
    changed = 0
    for s in range(S):
        for a in range(A):
            if U[a, s] >= qmax[s] - gtol:
                best[s] = a
                break
        if V[s] + res[s] < qmax[s] - atol:
            new[s] = best[s]
            changed += 1
        else:
            new[s] = pi[s]
    return changed


@njit(**_fm)
def improve(Pf, r, terminal, pi, V_old, V, res, U, gamma, row_atol, tie_rtol, new, best, qmax):
    """One improvement step of the reference's policy iteration after evaluating π (V, res).

    U (A, S) holds upper bounds of Q at V_old, exact where they were computed: it is raised by
    γ max(V - V_old) (rows are stochastic), set to the exact Q[π(s), s] = V + res, and recomputed
    exactly where the bound comes within 4 tie tolerances of the current action (all of it once
    more than a quarter of the pairs are contenders). Writes ``best`` (lowest-index greedy action),
    ``qmax`` = max_a U and ``new`` (best where it beats π by more than the tie tolerance, else π);
    returns how many states changed action.
    """
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
        q_values(Pf, r, terminal, V, gamma, U)
        for s in range(S):
            U[pi[s], s] = V[s] + res[s]
    elif count:
        for a in range(A):
            for s in range(S):
                if a != pi[s] and not terminal[s] and U[a, s] >= (V[s] + res[s]) - 4 * atol:
                    U[a, s] = r[a, s] + gamma * _dot(Pf[a * S + s], V)
    return switch_policy(U, V, res, pi, atol, tie_rtol, new, best, qmax)


@njit(**_opts)
def policy_residual(U, pi, V, out):
    """out = U[π(s), s] - V(s): the next policy's residual at the warm start (exact entries)."""
    for s in range(V.shape[0]):
        out[s] = U[pi[s], s] - V[s]


@njit(**_opts)
def prepare(Pf, R, terminal, atol, tie_rtol, r, pi0, b0, live, sums, Pb, Pl):
    """The constructor's numeric work for dense P and R[a, s] in one call: r = R with terminal
    columns zeroed, π0 = greedy(r), b0 = r_π0, live, and the check pass (:func:`check_pass`;
    ``Pl`` is written only when some state is terminal, else P live = P 1 = ``sums``).
    Returns (code, live states): code 0, or 1 when some row of P breaks a rule, 2 when R holds
    NaN or an infinity, 3 when every state is terminal (the caller then runs the reference
    constructor, which raises the reference's error)."""
    A, S = R.shape
    n_live = 0
    for s in range(S):
        live[s] = 0.0 if terminal[s] else 1.0
        n_live += 0 if terminal[s] else 1
    if n_live == 0:
        return 3, 0
    two = n_live < S
    finite = True
    for a in range(A):
        for s in range(S):
            v = R[a, s]
            finite = finite and math.isfinite(v)
            r[a, s] = 0.0 if terminal[s] else v
    greedy_rewards(r, tie_rtol, pi0, b0)
    if check_pass(Pf, terminal, b0, live, two, atol, sums, Pb, Pl):
        return 1, n_live
    return (0 if finite else 2), n_live


@njit(inline="always", **_opts)
def _target(b, x, gamma, rtol):
    """The reference's ``_target``: rtol·(1-γ)·max(1, |x|∞), never below the rounding floor."""
    xn = _norm(x)
    return max(rtol * (1.0 - gamma) * max(1.0, xn), 32 * 2.220446049250313e-16 * (xn + _norm(b)))


@njit(inline="always", **_opts)
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
def solve(Pf, r, terminal, b0, live, Pb, Pl, gamma, row_atol, tie_rtol, rtol, max_iter,
          max_matvecs, hist, V, best, qmax):
    """The reference's policy iteration from its default start, in one call (the steps of
    :func:`start_policy`, :func:`richardson`, :func:`improve`, :func:`policy_residual`).

    ``hist`` (H, S) records the policies evaluated (the reference's ``seen``). Returns
    (status, policies evaluated): status 0 when done (V, best, qmax written), 1 when an
    evaluation stalled (a slowly mixing P_π: the caller's GMRES / LU path is needed), 2 when
    ``hist`` is full, 3 when max_iter steps did not stabilise.
    """
    A, S = r.shape
    U = np.empty((A, S))
    pi = np.empty(S, np.int64)
    new = np.empty(S, np.int64)
    res = np.empty(S)
    b = np.empty(S)
    x = np.empty(S)
    start_policy(r, terminal, Pb, Pl, b0, live, gamma, tie_rtol, U, V, pi, res)
    rel = rtol * (1.0 - gamma)
    n = 0
    for _ in range(max_iter):
        if not _seen(hist, n, pi):
            if n == hist.shape[0]:
                return 2, n
            hist[n] = pi
            n += 1
        for s in range(S):
            b[s] = r[pi[s], s]
        x[:] = V
        _, rn = richardson(Pf, pi, terminal, b, live, gamma, x, res, rel, max_matvecs)
        if not rn <= _target(b, x, gamma, rtol):
            return 1, n
        for s in range(S):
            if terminal[s]:
                x[s] = 0.0
        changed = improve(Pf, r, terminal, pi, V, x, res, U, gamma, row_atol, tie_rtol, new,
                          best, qmax)
        V[:] = x
        if changed == 0 or _seen(hist, n, new):  # optimal, or cycling among exact ties
            if _norm(res) <= _target(b, V, gamma, rtol):
                return 0, n
            new[:] = pi  # stopped on a loose evaluation: refine it from the warm start
        policy_residual(U, new, V, res)
        pi[:] = new
    return 3, n


@njit(**_opts)
def build(Pf, R, terminal, atol, tie_rtol):
    """:func:`prepare` with every array allocated here (a cold call from Python pays for each
    numpy call): returns (code, live states, r, copy of R, π0, b0, live, P b0, P live, start)."""
    A, S = R.shape
    r, Rc = np.empty((A, S)), R.copy()
    pi0, b0, live = np.empty(S, np.int64), np.empty(S), np.empty(S)
    sums, Pb, Pl = np.empty(A * S), np.empty(A * S), np.empty(A * S)
    code, n_live = prepare(Pf, R, terminal, atol, tie_rtol, r, pi0, b0, live, sums, Pb, Pl)
    if n_live == S:
        Pl = sums  # P live = P 1 when no state is terminal
    start = live / max(n_live, 1)
    return code, n_live, r, Rc, pi0, b0, live, Pb, Pl, start


@njit(**_opts)
def build_no_terminal(Pf, R, atol, tie_rtol):
    """:func:`build` without terminal states; also returns the (all False) terminal mask."""
    terminal = np.zeros(R.shape[1], np.bool_)
    return (terminal,) + build(Pf, R, terminal, atol, tie_rtol)


@njit(**_opts)
def solve_all(Pf, r, terminal, b0, live, Pb, Pl, gamma, row_atol, tie_rtol, rtol, max_iter,
              max_matvecs, history):
    """:func:`solve` with its arrays allocated here; returns (status, policies evaluated, V,
    greedy policy, Bellman residual |max_a Q - V|∞)."""
    S = r.shape[1]
    V, best, qmax = np.empty(S), np.empty(S, np.int64), np.empty(S)
    hist = np.empty((history, S), np.int64)
    status, n = solve(Pf, r, terminal, b0, live, Pb, Pl, gamma, row_atol, tie_rtol, rtol,
                      max_iter, max_matvecs, hist, V, best, qmax)
    residual = 0.0
    for s in range(S):
        residual = max(residual, abs(qmax[s] - V[s]))
    return status, n, V, best, residual
