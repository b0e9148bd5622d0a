"""Slow, obvious numpy passes over a FlatCircuit: the oracle every compiled kernel must match.

One loop over the nodes in topological order, each node vectorized over the rows. Every node
yields ``L`` = log p(evidence below it) and ``U`` = expected utility below it given that
evidence (DESIGN.md):

- leaf: ``L = log p(e_v)`` (0 if unobserved); a utility leaf has ``U = E[u]`` when unobserved
  and ``U = u`` when observed; an interface leaf has ``L = 0, U = values[slot]``; a
  multivariate Gaussian (``K_MVGAUSSIAN``) has ``L = log p(e_O)``, the density of its observed
  variables (unobserved ones marginalized exactly; 0 if none is observed), and ``U = 0``;
- product: ``L = Σ L_i``, ``U = Σ U_i`` (children in order);
- sum: ``L = logsumexp_i(log w_i + L_i)``, ``U = Σ_i softmax_i(log w_i + L_i) U_i``; when
  ``L = -inf`` (zero-probability evidence) ``U = 0``;
- max over decision D: D observed -> the child for its value; else, among the children with
  ``L > -inf``, the first whose ``U`` is within ``TIE_RTOL * max(1, |best|)`` of the largest
  (child 0 if none): exact ties, which rounding in different exp/log implementations would
  split either way, go to the first child in every backend.

These exact rules (summation order, tie-breaks, fallbacks) are the contract of the Cython and
Numba kernels, which must agree with this module to 1e-12 and with each other bitwise.
"""
from __future__ import annotations

import numpy as np

from ..flat import (
    K_CATEGORICAL,
    K_GAUSSIAN,
    K_HISTOGRAM,
    K_INTERFACE,
    K_MAX,
    K_MVGAUSSIAN,
    K_PRODUCT,
    K_SUM,
    K_UTILITY_DISCRETE,
    K_UTILITY_HISTOGRAM,
    FlatCircuit,
)
from ..gaussian import (
    flat_conditioned,
    flat_draw_columns,
    flat_parts,
    flat_stats,
    pattern_factor,
)

NEG_INF = -np.inf
#: Relative tolerance under which two expected utilities at a max node count as a tie.
TIE_RTOL = 1e-12
LOG_2PI = np.log(2.0 * np.pi)


# ---------------------------------------------------------------------------- leaves
def _hist_parts(p: np.ndarray):
    m = int(p[0])
    return m, p[1], p[2:3 + m], p[3 + m:3 + 2 * m]


def _hist_logpdf(p: np.ndarray, x: np.ndarray) -> np.ndarray:
    """log density of a piecewise-constant density; the last bin includes its right edge."""
    m, _, b, logd = _hist_parts(p)
    out = np.full(x.shape, NEG_INF)
    for j in range(m):
        inside = (x >= b[j]) & ((x < b[j + 1]) | ((j == m - 1) & (x == b[j + 1])))
        out[inside] = logd[j]
    return out


def _udisc_parts(p: np.ndarray):
    k = int(p[0])
    return k, p[1], p[2:2 + k], p[2 + k:2 + 2 * k]


def _udisc_logpmf(p: np.ndarray, x: np.ndarray) -> np.ndarray:
    """log P(U = x): the first listed value equal to x; -inf if x is not a listed value."""
    k, _, v, logp = _udisc_parts(p)
    out = np.full(x.shape, NEG_INF)
    done = np.zeros(x.shape, bool)
    for j in range(k):
        hit = (x == v[j]) & ~done
        out[hit] = logp[j]
        done |= hit
    return out


def leaf_lu(flat: FlatCircuit, i: int, X: np.ndarray, values: np.ndarray):
    """(L, U) of leaf ``i`` for every row of ``X``."""
    k = flat.kind[i]
    p = flat.leaf_params(i)
    rows = X.shape[0]
    L = np.zeros(rows)
    U = np.zeros(rows)
    if k == K_INTERFACE:
        U[:] = values[int(p[0])]
        return L, U
    if k == K_MVGAUSSIAN:
        return flat_conditioned(p, X).logpdf, U
    x = X[:, flat.var[i]]
    obs = ~np.isnan(x)
    xo = x[obs]
    if k == K_CATEGORICAL:
        L[obs] = p[xo.astype(np.int64)]
    elif k == K_GAUSSIAN:
        z = (xo - p[0]) / p[1]
        L[obs] = p[2] - 0.5 * z * z
    elif k == K_HISTOGRAM:
        L[obs] = _hist_logpdf(p, xo)
    elif k == K_UTILITY_DISCRETE:
        L[obs] = _udisc_logpmf(p, xo)
        U[:] = p[1]
        U[obs] = xo
    elif k == K_UTILITY_HISTOGRAM:
        L[obs] = _hist_logpdf(p, xo)
        U[:] = p[1]
        U[obs] = xo
    else:  # pragma: no cover - compile() emits only the codes above
        raise ValueError(f"unknown leaf kind {k}")
    return L, U


def leaf_mode(flat: FlatCircuit, i: int):
    """(max log-density, mode) of leaf ``i`` with its variable unobserved (first max wins); a
    multivariate Gaussian's mode (its mean, several variables) is given as NaN."""
    k = flat.kind[i]
    p = flat.leaf_params(i)
    if k == K_MVGAUSSIAN:
        d, _, _, _, cov = flat_parts(p)
        Lc = pattern_factor(cov, np.zeros(0, np.int64), np.arange(d))
        return -np.log(np.diag(Lc)).sum() - 0.5 * d * LOG_2PI, np.nan
    if k == K_CATEGORICAL:
        j = int(np.argmax(p))
        return p[j], float(j)
    if k == K_GAUSSIAN:
        return p[2], p[0]
    if k in (K_HISTOGRAM, K_UTILITY_HISTOGRAM):
        m, _, b, logd = _hist_parts(p)
        j = int(np.argmax(logd))
        return logd[j], 0.5 * (b[j] + b[j + 1])
    if k == K_UTILITY_DISCRETE:
        _, _, v, logp = _udisc_parts(p)
        j = int(np.argmax(logp))
        return logp[j], v[j]
    return 0.0, np.nan  # interface


# ---------------------------------------------------------------------------- upward passes
def first_near_max(score: np.ndarray) -> np.ndarray:
    """Per column, the first row within ``TIE_RTOL * max(1, |max|)`` of the column's maximum
    (0 when every entry is -inf)."""
    best = score.max(axis=0)
    with np.errstate(invalid="ignore"):
        thr = best - TIE_RTOL * np.maximum(1.0, np.abs(best))
    return np.argmax(score >= thr, axis=0)


def upward(flat: FlatCircuit, X: np.ndarray, values: np.ndarray | None = None):
    """The (L, U) pass: arrays ``L, U`` of shape (nodes, rows) and ``choice`` (max nodes' picks,
    -1 elsewhere)."""
    rows = X.shape[0]
    n = flat.n_nodes
    if values is None:
        values = np.zeros(flat.n_interface)
    L = np.empty((n, rows))
    U = np.empty((n, rows))
    choice = np.full((n, rows), -1, np.int64)
    for i in range(n):
        k = flat.kind[i]
        ch = flat.children(i)
        if k == K_PRODUCT:
            L[i] = 0.0
            U[i] = 0.0
            for c in ch:
                L[i] += L[c]
                U[i] += U[c]
        elif k == K_SUM:
            lw = flat.log_weight[flat.child_ptr[i]:flat.child_ptr[i + 1]]
            a = lw[:, None] + L[ch]
            m = a.max(axis=0)
            ok = m > NEG_INF
            s = np.zeros(rows)
            num = np.zeros(rows)
            for j in range(len(ch)):
                e = np.exp(a[j, ok] - m[ok])
                s[ok] += e
                num[ok] += e * U[ch[j], ok]
            L[i] = NEG_INF
            U[i] = 0.0
            L[i, ok] = m[ok] + np.log(s[ok])
            U[i, ok] = num[ok] / s[ok]
        elif k == K_MAX:
            d = X[:, flat.var[i]]
            obs = ~np.isnan(d)
            c = first_near_max(np.where(L[ch] > NEG_INF, U[ch], NEG_INF))
            c[obs] = d[obs].astype(np.int64)
            choice[i] = c
            L[i] = L[ch[c], np.arange(rows)]
            U[i] = U[ch[c], np.arange(rows)]
        else:
            L[i], U[i] = leaf_lu(flat, i, X, values)
    return L, U, choice


def log_likelihood(flat: FlatCircuit, X: np.ndarray) -> np.ndarray:
    """log p(evidence) per row (unobserved variables marginalized)."""
    return upward(flat, X)[0][flat.root].copy()


def meu(flat: FlatCircuit, X: np.ndarray, values: np.ndarray | None = None) -> np.ndarray:
    """Root U per row: the maximum expected utility given the evidence."""
    return upward(flat, X, values)[1][flat.root].copy()


def policy(flat: FlatCircuit, X: np.ndarray, values: np.ndarray | None = None) -> np.ndarray:
    """Decisions the MEU policy takes, as a (rows, variables) array (NaN where not decided).

    Top-down from the root: a product follows all children; a sum follows its one child of
    positive posterior (and stops when several are possible: the decisions below wait for
    evidence not yet given); a max node records its choice and follows that child.
    """
    L, _, choice = upward(flat, X, values)
    rows = X.shape[0]
    out = np.full((rows, flat.n_vars), np.nan)
    reach = np.zeros((flat.n_nodes, rows), bool)
    reach[flat.root] = True
    for i in range(flat.n_nodes - 1, -1, -1):
        r = reach[i]
        if not r.any():
            continue
        k = flat.kind[i]
        ch = flat.children(i)
        if k == K_PRODUCT:
            for c in ch:
                reach[c] |= r
        elif k == K_SUM:
            lw = flat.log_weight[flat.child_ptr[i]:flat.child_ptr[i + 1]]
            live = (lw[:, None] + L[ch]) > NEG_INF
            one = live.sum(axis=0) == 1
            first = np.argmax(live, axis=0)
            for j, c in enumerate(ch):
                reach[c] |= r & one & (first == j)
        elif k == K_MAX:
            out[r, flat.var[i]] = choice[i, r]
            for j, c in enumerate(ch):
                reach[c] |= r & (choice[i] == j)
    return out


# ---------------------------------------------------------------------------- MPE
def mpe(flat: FlatCircuit, X: np.ndarray):
    """Max-product up, argmax completion down: (completed X, log p of the completion).

    Unobserved leaves take their mode, sums their best weighted child, unobserved decisions the
    child with the largest max-product value (first maximum wins everywhere). A multivariate
    Gaussian leaf with unobserved variables ``U`` scores ``max_{x_U} log p(e_O, x_U) =
    log p(e_O) + log N(0; 0, Σ_{U|O})`` and completes ``x_U`` with ``E[x_U | e_O]``. Exact for
    selective circuits (deterministic sums, as above every decision); with latent sums it is
    the max-product (Viterbi) value, a lower bound on the true maximum that the returned
    completion attains.
    """
    rows = X.shape[0]
    n = flat.n_nodes
    M = np.empty((n, rows))
    arg = np.full((n, rows), -1, np.int64)
    modes = {}
    for i in range(n):
        k = flat.kind[i]
        ch = flat.children(i)
        if k == K_PRODUCT:
            M[i] = 0.0
            for c in ch:
                M[i] += M[c]
        elif k == K_SUM:
            lw = flat.log_weight[flat.child_ptr[i]:flat.child_ptr[i + 1]]
            a = lw[:, None] + M[ch]
            arg[i] = np.argmax(a, axis=0)
            M[i] = a[arg[i], np.arange(rows)]
        elif k == K_MAX:
            d = X[:, flat.var[i]]
            obs = ~np.isnan(d)
            c = np.argmax(M[ch], axis=0)
            c[obs] = d[obs].astype(np.int64)
            arg[i] = c
            M[i] = M[ch[c], np.arange(rows)]
        elif k == K_MVGAUSSIAN:
            modes[i] = flat_conditioned(flat.leaf_params(i), X)
            M[i] = modes[i].mode_logpdf
        else:
            L, _ = leaf_lu(flat, i, X, np.zeros(flat.n_interface))
            best, mode = leaf_mode(flat, i)
            modes[i] = mode
            M[i] = L
            if k != K_INTERFACE:
                M[i, np.isnan(X[:, flat.var[i]])] = best
    out = X.copy()
    reach = np.zeros((n, rows), bool)
    reach[flat.root] = True
    for i in range(n - 1, -1, -1):
        r = reach[i]
        if not r.any():
            continue
        k = flat.kind[i]
        ch = flat.children(i)
        if k == K_PRODUCT:
            for c in ch:
                reach[c] |= r
        elif k in (K_SUM, K_MAX):
            if k == K_MAX:
                v = flat.var[i]
                fill = r & np.isnan(out[:, v])
                out[fill, v] = arg[i, fill]
            for j, c in enumerate(ch):
                reach[c] |= r & (arg[i] == j)
        elif k == K_MVGAUSSIAN:
            cols = flat_parts(flat.leaf_params(i))[2]
            rr = np.flatnonzero(r)
            out[np.ix_(rr, cols)] = modes[i].mean[rr]
        elif k != K_INTERFACE:
            v = flat.var[i]
            fill = r & np.isnan(out[:, v])
            out[fill, v] = modes[i]
    return out, M[flat.root].copy()


# ---------------------------------------------------------------------------- sampling
def _pick(logp: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF choice per row: first j with u < Σ_{i<=j} exp(logp_i) (sequential sums);
    when rounding leaves none, the last j of positive probability (0 if none)."""
    cum = np.zeros(u.shape)
    chosen = np.full(u.shape, -1, np.int64)
    last_pos = np.zeros(u.shape, np.int64)
    for j in range(logp.shape[0]):
        pj = np.exp(logp[j])
        cum = cum + pj
        hit = (chosen < 0) & (u < cum)
        chosen[hit] = j
        last_pos[pj > 0] = j
    miss = chosen < 0
    chosen[miss] = last_pos[miss]
    return chosen


def _cum_before(logp: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Σ_{i<j} exp(logp_i) in the same sequential order as :func:`_pick`."""
    cum = np.zeros(j.shape)
    out = np.zeros(j.shape)
    for i in range(logp.shape[0]):
        out[j == i] = cum[j == i]
        cum = cum + np.exp(logp[i])
    return out


def _hist_sample(p: np.ndarray, u: np.ndarray) -> np.ndarray:
    m, _, b, logd = _hist_parts(p)
    logq = logd + np.log(np.diff(b))
    j = _pick(np.broadcast_to(logq[:, None], (m, u.shape[0])), u)
    before = _cum_before(np.broadcast_to(logq[:, None], (m, u.shape[0])), j)
    x = b[j] + (u - before) / np.exp(logd[j])
    return np.minimum(np.maximum(x, b[j]), b[j + 1])


def sample(flat: FlatCircuit, X: np.ndarray, u: np.ndarray, z: np.ndarray,
           values: np.ndarray | None = None) -> np.ndarray:
    """Fill the NaN entries of ``X`` by ancestral sampling from p(unobserved | evidence).

    ``u`` (uniforms in [0, 1)) has shape (rows, nodes), ``z`` (standard normals) (rows,
    ``flat.n_draws``): node ``i`` of row ``r`` uses ``u[r, i]`` / ``z[r, i]``, so every backend
    given the same draws returns the same samples. Sums pick a child by posterior
    ``w_j p_j(e) / p(e)``, unobserved decisions follow the MEU policy, leaves draw by inverse
    CDF (Gaussian: ``mean + std z``). A multivariate Gaussian draws its unobserved variables
    from ``x_U | e_O`` as ``E[x_U | e_O] + L_UU z_U`` (:mod:`spmn.gaussian`), its
    variable ``j`` reading the draw column ``flat_draw_columns`` gives (its node for ``j = 0``,
    ``n_nodes + zoff + j - 1`` after).
    """
    L, _, choice = upward(flat, X, values)
    rows = X.shape[0]
    out = X.copy()
    reach = np.zeros((flat.n_nodes, rows), bool)
    reach[flat.root] = True
    for i in range(flat.n_nodes - 1, -1, -1):
        r = reach[i]
        if not r.any():
            continue
        k = flat.kind[i]
        ch = flat.children(i)
        if k == K_PRODUCT:
            for c in ch:
                reach[c] |= r
        elif k == K_SUM:
            lw = flat.log_weight[flat.child_ptr[i]:flat.child_ptr[i + 1]]
            post = lw[:, None] + L[ch] - L[i][None, :]
            post[:, L[i] == NEG_INF] = NEG_INF
            c = _pick(post, u[:, i])
            for j, cj in enumerate(ch):
                reach[cj] |= r & (c == j)
        elif k == K_MAX:
            v = flat.var[i]
            fill = r & np.isnan(out[:, v])
            out[fill, v] = choice[i, fill]
            for j, cj in enumerate(ch):
                reach[cj] |= r & (choice[i] == j)
        elif k == K_MVGAUSSIAN:
            p = flat.leaf_params(i)
            rr = np.flatnonzero(r)
            cols = flat_parts(p)[2]
            zc = flat_draw_columns(p, i, flat.n_nodes)
            draws = flat_conditioned(p, X[rr]).sample(z[np.ix_(rr, zc)])
            out[np.ix_(rr, cols)] = draws
        elif k != K_INTERFACE:
            v = flat.var[i]
            fill = r & np.isnan(out[:, v])
            if not fill.any():
                continue
            p = flat.leaf_params(i)
            uu = u[fill, i]
            if k == K_CATEGORICAL:
                out[fill, v] = _pick(np.broadcast_to(p[:, None], (p.shape[0], uu.shape[0])), uu)
            elif k == K_GAUSSIAN:
                out[fill, v] = p[0] + p[1] * z[fill, i]
            elif k in (K_HISTOGRAM, K_UTILITY_HISTOGRAM):
                out[fill, v] = _hist_sample(p, uu)
            elif k == K_UTILITY_DISCRETE:
                kk, _, vals, logp = _udisc_parts(p)
                out[fill, v] = vals[_pick(np.broadcast_to(logp[:, None], (kk, uu.shape[0])), uu)]
    return out


# ---------------------------------------------------------------------------- node values
def node_values(flat: FlatCircuit, X: np.ndarray, values: np.ndarray | None, nodes) -> tuple:
    """``(L, U)`` of the nodes ``nodes``, each of shape (rows, len(nodes)).

    The Bellman pass of a recurrent template is this MEU pass with the interface leaves bound
    to ``values`` (``U(l_k) = values[k]``, ``L(l_k) = 0``), read at the interface roots.
    """
    L, U, _ = upward(flat, X, values)
    idx = np.asarray(nodes, dtype=np.int64)
    return L[idx].T.copy(), U[idx].T.copy()


# ---------------------------------------------------------------------------- expected counts
def flows(flat: FlatCircuit, X: np.ndarray, values: np.ndarray | None = None):
    """Top-down flows: ``F`` (nodes, rows), the posterior probability that a row's evidence
    passes through each node, and ``G`` (edges, rows), the flow along each edge.

    The root has flow 1 (0 for rows with ``p(e) = 0``); a sum passes
    ``f exp(log w_j + L_j - L)`` to child ``j``, a product ``f`` to every child, a max node
    ``f`` to its chosen child (the observed decision or the MEU choice). A node adds up what
    its parents pass it, parents taken in decreasing node order.
    """
    L, _, choice = upward(flat, X, values)
    rows = X.shape[0]
    F = np.zeros((flat.n_nodes, rows))
    G = np.zeros((flat.n_edges, rows))
    F[flat.root] = np.where(L[flat.root] > NEG_INF, 1.0, 0.0)
    for i in range(flat.n_nodes - 1, -1, -1):
        k = flat.kind[i]
        if k > K_MAX:
            continue
        f = F[i]
        live = (f != 0.0) & (L[i] > NEG_INF)
        for e in range(flat.child_ptr[i], flat.child_ptr[i + 1]):
            c = flat.child_idx[e]
            g = np.zeros(rows)
            if k == K_PRODUCT:
                g[live] = f[live]
            elif k == K_SUM:
                g[live] = f[live] * np.exp((flat.log_weight[e] + L[c, live]) - L[i, live])
            else:
                hit = live & (choice[i] == e - flat.child_ptr[i])
                g[hit] = f[hit]
            G[e] = g
            F[c] += g
    return F, G


def _bin_index(p: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Histogram bin of each x (-1 outside the support; the last bin includes its right edge)."""
    m, _, b, _ = _hist_parts(p)
    j = np.searchsorted(b, x, side="right") - 1
    j = np.where(x == b[m], m - 1, j)
    return np.where((x < b[0]) | (x > b[m]) | np.isnan(x), -1, j)


def leaf_stats(flat: FlatCircuit, i: int, f: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Expected sufficient statistics of leaf ``i`` (aligned with its params) from flows ``f``
    and its column ``x`` (NaN = unobserved; a multivariate Gaussian takes all the evidence
    columns, (rows, variables)); see :func:`expected_counts`."""
    k = flat.kind[i]
    p = flat.leaf_params(i)
    if k == K_MVGAUSSIAN:
        live = f != 0.0
        return flat_stats(p, x[live], f[live])
    out = np.zeros(p.shape[0])
    if k == K_INTERFACE:
        out[0] = f.sum()
        return out
    obs = ~np.isnan(x)
    fo, fu, xo = f[obs], f[~obs], x[obs]
    if k == K_CATEGORICAL:
        out += np.bincount(xo.astype(np.int64), weights=fo, minlength=p.shape[0])
        out += fu.sum() * np.exp(p)
    elif k == K_GAUSSIAN:
        mean, std = p[0], p[1]
        out[0] = f.sum()
        out[1] = (fo * xo).sum() + (fu * mean).sum()
        out[2] = (fo * xo * xo).sum() + (fu * (mean * mean + std * std)).sum()
    elif k in (K_HISTOGRAM, K_UTILITY_HISTOGRAM):
        m, mean, b, logd = _hist_parts(p)
        out[0] = f.sum()
        out[1] = (fo * xo).sum() + (fu * mean).sum()
        j = _bin_index(p, xo)
        ok = j >= 0
        out[3 + m:] += np.bincount(j[ok], weights=fo[ok], minlength=m)
        out[3 + m:] += fu.sum() * (np.exp(logd) * np.diff(b))
    elif k == K_UTILITY_DISCRETE:
        kk, mean, v, logp = _udisc_parts(p)
        out[0] = f.sum()
        out[1] = (fo * xo).sum() + (fu * mean).sum()
        for j in range(kk):  # first listed value equal to x
            hit = (xo == v[j]) & ~np.isin(xo, v[:j])
            out[2 + kk + j] += fo[hit].sum()
        out[2 + kk:] += fu.sum() * np.exp(logp)
    return out


def expected_counts(flat: FlatCircuit, X: np.ndarray, values: np.ndarray | None = None):
    """Expected counts for parameter learning, summed over the rows of ``X``.

    Returns ``(edge_counts (edges,), leaf_stats (len(params),))``: ``edge_counts[e]`` is the
    total flow along edge ``e`` (:func:`flows`); ``leaf_stats`` is aligned with
    ``flat.params``: a categorical's slots get the expected count of each value; a Gaussian's
    ``[Σf, Σf x, Σf x²]`` (unobserved rows: ``f mean``, ``f (mean² + std²)``); a histogram or
    utility histogram's slot 0 ``Σf``, slot 1 ``Σf x`` (unobserved: ``f mean``), break slots
    0 and log-density slots the expected count per bin (unobserved: ``f`` x bin probability);
    a discrete utility's slot 0 ``Σf``, slot 1 ``Σf x`` and log-probability slots the
    expected count of each value; an interface leaf ``Σf``. A multivariate Gaussian's slot 0
    (``d``) gets ``Σf``, its ``zoff`` and column slots 0, its mean slots ``Σf E[x | e_O]`` and
    its covariance slots ``Σf E[x xᵀ | e_O]`` (raw second moments: unobserved parts are their
    conditional mean plus the conditional covariance ``Σ_{U|O}``), so that the M-step is
    ``μ = s_μ / s_0``, ``Σ = s_Σ / s_0 − μ μᵀ``. Rows with ``p(e) = 0`` add nothing.
    """
    F, G = flows(flat, X, values)
    stats = np.zeros(flat.params.shape[0])
    for i in range(flat.n_nodes):
        if flat.kind[i] > K_MAX:
            x = X if flat.kind[i] == K_MVGAUSSIAN else \
                X[:, flat.var[i]] if flat.kind[i] != K_INTERFACE else None
            stats[flat.param_ptr[i]:flat.param_ptr[i + 1]] = leaf_stats(flat, i, F[i], x)
    return G.sum(axis=1), stats


def plan(flat: FlatCircuit, query: str):
    """``run(X, values=None)`` for ``query`` ("log_likelihood", "meu", "policy", "mpe"; "sample"
    takes ``run(X, values, u, z)``) on ``flat``: the passes above, with the signature of the
    compiled backends' cached plans."""
    if query in ("meu", "policy"):
        fn = meu if query == "meu" else policy
        return lambda X, values=None: fn(flat, X, values)
    if query == "sample":
        return lambda X, values=None, u=None, z=None: sample(flat, X, u, z, values)
    if query in ("log_likelihood", "mpe"):
        fn = log_likelihood if query == "log_likelihood" else mpe
        return lambda X, values=None: fn(flat, X)
    raise ValueError(f"no plan for query {query!r}")
