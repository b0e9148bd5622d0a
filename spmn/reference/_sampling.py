"""Gymnasium-style rollouts of a :class:`~spmn.reference.tabular.TabularMDP` (one environment, n steps).

s_{t+1} ~ P[a_t, s_t, ·], r_t = R[a_t, s_t(, s_{t+1})]; reset to s ~ start on termination or time limit.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from spmn.errors import DataError


def _pick(weights: np.ndarray, u: float) -> int:
    """Index j with cdf[j-1] <= u·total < cdf[j] (never a zero-weight entry)."""
    cdf = np.cumsum(weights)
    j = int(np.searchsorted(cdf, u * cdf[-1], side="right"))
    return min(j, len(cdf) - 1)


def rollout(mdp: Any, n: int, pi: Any, eps: float | None, rng: np.random.Generator,
            T: int) -> dict[str, np.ndarray]:
    """Log n transitions; pi is None (uniform), int (S,), float (S, A) or a callable obs -> action."""
    S, A = mdp.n_states, mdp.n_actions
    Pf, terminal, obs = mdp._Pf, mdp.terminal, mdp.observation
    sparse = sp.issparse(Pf)
    kind, R = mdp._R_kind, mdp._R
    out_s = np.empty(n, dtype=np.int64)
    out_a = np.empty(n, dtype=np.int64)
    out_r = np.empty(n, dtype=np.float64)
    out_s2 = np.empty(n, dtype=np.int64)
    out_term = np.zeros(n, dtype=bool)
    out_trunc = np.zeros(n, dtype=bool)
    u_next, u_eps, u_pol = rng.random(n), rng.random(n), rng.random(n)
    u_start = rng.random(n + 1)
    a_unif = rng.integers(A, size=n)
    start_w = mdp.start

    s, t, k_start = _pick(start_w, u_start[0]), 0, 1
    for i in range(n):
        if pi is None or (eps is not None and u_eps[i] < eps):
            a = int(a_unif[i])
        elif callable(pi):
            a = int(pi(int(obs[s])))
            if not 0 <= a < A:
                raise DataError(f"policy callable returned action {a} outside [0, {A}) in state {s}")
        elif pi.ndim == 1:
            a = int(pi[s])
        else:
            a = _pick(pi[s], u_pol[i])
        row = a * S + s
        if sparse:
            lo, hi = Pf.indptr[row], Pf.indptr[row + 1]
            s2 = int(Pf.indices[lo + _pick(Pf.data[lo:hi], u_next[i])])
        else:
            s2 = _pick(Pf[row], u_next[i])
        if kind == "sa":
            r = R[a, s]
        elif kind == "sas":
            r = R[row, s2]
        else:
            lo, hi = R.indptr[row], R.indptr[row + 1]
            k = lo + int(np.searchsorted(R.indices[lo:hi], s2))
            r = R.data[k] if k < hi and R.indices[k] == s2 else 0.0
        t += 1
        term = bool(terminal[s2])
        trunc = (not term) and t >= T
        out_s[i], out_a[i], out_r[i], out_s2[i] = obs[s], a, r, obs[s2]
        out_term[i], out_trunc[i] = term, trunc
        if term or trunc:
            s, t = _pick(start_w, u_start[k_start]), 0
            k_start += 1
        else:
            s = s2
    return {"s": out_s, "a": out_a, "r": out_r, "s_next": out_s2,
            "terminated": out_term, "truncated": out_trunc}
