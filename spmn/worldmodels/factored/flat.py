"""Flat exact solving over the states reachable under the learned model.

From the start states, a breadth-first search follows every successor of nonzero probability,
``p(s' | s, a) = Π_i p(s'_i | pa_i)``, for every joint action (only the few uncertain factors
branch: deterministic ones contribute one value). States are matched by their rows (sorted
byte keys, as :func:`spmn.worldmodels.tabular.coverage.find`), never by a joint code over the
variables. The reachable set is closed under the model, so backward induction and value
iteration over it (sparse ``P``, one row per state and joint action) are exact for it, with the
stopping rule of :func:`.structured.solve_structured` (its bound taken over the set).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ...errors import SolverError
from ..recurrent import check_gamma
from ..tabular.coverage import _rows
from .mdp import FactoredMDP


def _dtype(cards: np.ndarray):
    top = int(cards.max(initial=1))
    return np.int8 if top <= 127 else (np.int16 if top <= 32767 else np.int32)


def successors(mdp: FactoredMDP, X: np.ndarray, limit: float = np.inf
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(source row, next state, probability)`` for every successor of nonzero probability of
    every row of ``X``; None when some row has more than ``limit`` successors."""
    dists = [mdp.factor(i, X) for i in range(mdp.d)]
    nz = [p > 0 for p in dists]
    logcount = np.zeros(X.shape[0])
    for z in nz:
        logcount += np.log(z.sum(axis=1))
    if X.shape[0] and float(logcount.max()) > np.log(limit) + 1e-9:
        return None
    src = np.arange(X.shape[0])
    nxt = np.stack([np.argmax(p, axis=1) for p in dists], axis=1).astype(_dtype(mdp.state_cards)) \
        if mdp.d else np.zeros((X.shape[0], 0), np.int8)
    prob = np.ones(X.shape[0])
    for i, (p, z) in enumerate(zip(dists, nz)):
        cnt = z.sum(axis=1)
        det = cnt == 1
        prob = prob * np.where(det[src], p[src, nxt[:, i]], 1.0)
        if det.all():
            continue
        many = ~det[src]
        zi = z[src[many]]
        rep = np.repeat(np.flatnonzero(many), zi.sum(axis=1))
        vals = np.nonzero(zi)[1]
        keep = np.flatnonzero(~many)
        src_new = np.concatenate([src[keep], src[rep]])
        nxt_new = np.concatenate([nxt[keep], nxt[rep]])
        nxt_new[keep.size:, i] = vals
        prob = np.concatenate([prob[keep], prob[rep] * p[src[rep], vals]])
        src, nxt = src_new, nxt_new
    order = np.argsort(src, kind="stable")
    return src[order], nxt[order], prob[order]


BUDGET = 1 << 22  # successor rows materialized at once
MAX_TRANSITIONS = 30_000_000  # (s, a, s') entries a flat solution may store


def row_counts(mdp: FactoredMDP, X: np.ndarray) -> np.ndarray:
    """Successors of nonzero probability of every row of ``X`` (a float product of counts)."""
    out = np.ones(X.shape[0])
    for i in range(mdp.d):
        out *= (mdp.factor(i, X) > 0).sum(axis=1)
    return out


def chunked_successors(mdp: FactoredMDP, X: np.ndarray, counts: np.ndarray | None = None):
    """:func:`successors` over consecutive row chunks of ``X`` holding at most ``BUDGET``
    successors each (a single larger row alone): yields ``(first row, src, next, prob)``."""
    counts = row_counts(mdp, X) if counts is None else counts
    lo, n = 0, X.shape[0]
    cum = np.cumsum(counts)
    while lo < n:
        base = cum[lo - 1] if lo else 0.0
        hi = max(lo + 1, int(np.searchsorted(cum, base + BUDGET, side="right")))
        src, nxt, prob = successors(mdp, X[lo:hi])
        yield lo, src, nxt, prob
        lo = hi


def _too_many(total: float, what: str) -> SolverError:
    return SolverError(f"{what}: {total:,.0f} (s, a, s') transitions exceed the flat solver's "
                       f"limit of {MAX_TRANSITIONS:,}; use method='structured' or fewer start "
                       "states")


_MULT = np.random.default_rng(20261203).integers(1, 2**63, 4096, dtype=np.uint64) | np.uint64(1)


def _hash(S: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row (a fixed odd multiplier per column, wrapping sums)."""
    d = S.shape[1]
    if d > _MULT.size:
        raise SolverError(f"the flat solver hashes at most {_MULT.size} state variables")
    with np.errstate(over="ignore"):
        return (S.astype(np.uint64) * _MULT[:d]).sum(axis=1, dtype=np.uint64)


class _Index:
    """Row lookups among the known states: sorted 64-bit row hashes, every hit checked against
    the row itself (a collision falls back to exact byte keys, so lookups are always exact)."""

    def __init__(self, S: np.ndarray) -> None:
        self.S = S
        self.h = _hash(S)
        self.order = np.argsort(self.h, kind="stable")
        self.sorted = self.h[self.order]
        self.unique = bool(self.sorted.size < 2 or (np.diff(self.sorted) != 0).all())

    def _find_bytes(self, T: np.ndarray) -> np.ndarray:
        keys = _rows(self.S)
        order = np.argsort(keys, kind="stable")
        srt, k = keys[order], _rows(T)
        pos = np.minimum(np.searchsorted(srt, k), srt.size - 1)
        return np.where(srt[pos] == k, order[pos], -1)

    def find(self, T: np.ndarray) -> np.ndarray:
        if self.S.shape[0] == 0 or T.shape[0] == 0:
            return np.full(T.shape[0], -1, np.int64)
        if not self.unique:
            return self._find_bytes(T)
        h = _hash(T)
        pos = np.minimum(np.searchsorted(self.sorted, h), self.sorted.size - 1)
        hit = self.sorted[pos] == h
        j = np.where(hit, self.order[pos], -1)
        if hit.any() and not (self.S[j[hit]] == T[hit]).all():  # a collision with an unknown row
            return self._find_bytes(T)
        return j


def reachable(mdp: FactoredMDP, start: np.ndarray, max_states: int, batch: int = 4096,
              max_transitions: float | None = None, depth: int | None = None,
              layered: int | None = None):
    """The states reachable from ``start`` under the model, or None beyond ``max_states``
    states or ``max_transitions`` (s, a, s') transitions (what the flat solver would store).
    With ``depth``: only those reachable within ``depth`` steps, returned with each one's
    fewest steps from ``start`` (``(states, steps)``). With ``layered``: beyond the limits,
    the states within ``layered`` steps with their steps when the search had completed them
    (one breadth-first search serves both), else None."""
    dt = _dtype(mdp.state_cards)
    S0 = np.asarray(start, np.int64)
    _, first = np.unique(_rows(S0), return_index=True)
    known = S0[np.sort(first)].astype(dt)
    if known.shape[0] > max_states:
        return None
    frontier = known
    index = _Index(known)
    total = 0.0
    max_transitions = MAX_TRANSITIONS if max_transitions is None else max_transitions
    steps = [np.zeros(known.shape[0], np.int64)]
    level = 0

    def over():
        if layered is None or level <= layered:  # the layers up to `layered` are incomplete
            return None
        st = np.concatenate(steps)
        keep = st <= layered
        return known[keep], st[keep]
    while frontier.shape[0] and (depth is None or level < depth):
        level += 1
        found = []
        step = max(1, batch // max(mdp.n_actions, 1))
        chunks = range(0, frontier.shape[0], step)
        # the level's successor counts first (cheap: products of support sizes), so a level
        # past the limits is given up before any of its successors is enumerated
        counts_of = [row_counts(mdp, mdp.all_actions(frontier[lo:lo + step].astype(np.int64)))
                     for lo in chunks]
        total += float(sum(c.sum() for c in counts_of))
        if total > max_transitions or any(c.size and c.max() > max_states for c in counts_of):
            return over()
        room = max_states - known.shape[0]  # new states this level may add
        bound = 0  # an upper bound on the distinct new states found so far
        for lo, counts in zip(chunks, counts_of):
            X = mdp.all_actions(frontier[lo:lo + step].astype(np.int64))
            for _, _, nxt, _ in chunked_successors(mdp, X, counts):
                new = nxt[index.find(nxt) < 0]
                if new.shape[0]:
                    _, first = np.unique(_rows(new), return_index=True)
                    found.append(new[np.sort(first)])
                    bound += found[-1].shape[0]
                if bound > room:  # maybe past the limit already: count exactly, stop if so
                    both = np.concatenate(found)
                    _, first = np.unique(_rows(both), return_index=True)
                    found, bound = [both[np.sort(first)]], first.shape[0]
                    if bound > room:
                        return over()
        if not found:
            break
        new = np.concatenate(found)
        _, first = np.unique(_rows(new), return_index=True)
        new = new[np.sort(first)]
        if known.shape[0] + new.shape[0] > max_states:
            return over()
        known = np.concatenate([known, new])
        steps.append(np.full(new.shape[0], level, np.int64))
        index = _Index(known)
        frontier = new
    return known if depth is None else (known, np.concatenate(steps))


@dataclass(eq=False)
class FlatModel:
    """The learned model over enumerated states: ``P`` (states·A x states, row s·A + a),
    ``R`` and ``C`` = γ (1 - p(end)) (states x A)."""

    mdp: FactoredMDP
    states: np.ndarray
    P: sp.csr_array
    R: np.ndarray
    C: np.ndarray
    index: _Index
    steps: np.ndarray | None = None  # a layered set: fewest steps from the start states

    @classmethod
    def build(cls, mdp: FactoredMDP, states: np.ndarray, gamma: float,
              steps: np.ndarray | None = None) -> "FlatModel":
        """The model over ``states``: closed under the model, or (``steps`` given) layered:
        successors beyond the set are dropped, which is exact for a finite horizon H when the
        set holds every state within H - 1 steps (see :func:`solve_flat`)."""
        index = _Index(states)
        N, A = states.shape[0], mdp.n_actions
        rows, cols, vals, R, C = [], [], [], [], []
        step = max(1, 8192 // max(A, 1))
        total = 0.0
        for lo in range(0, N, step):
            X = mdp.all_actions(states[lo:lo + step].astype(np.int64))
            counts = row_counts(mdp, X)
            total += float(counts.sum())
            if total > MAX_TRANSITIONS:
                raise _too_many(total, f"{N:,} enumerated states (so far)")
            for off, src, nxt, prob in chunked_successors(mdp, X, counts):
                j = index.find(nxt)
                if steps is not None:  # layered: the successors past the last layer
                    src, j, prob = src[j >= 0], j[j >= 0], prob[j >= 0]
                elif (j < 0).any():
                    raise SolverError("internal: the enumerated states are not closed under "
                                      "the model")
                rows.append(src + (lo * A + off))
                cols.append(j)
                vals.append(prob)
            R.append(mdp.reward.predict(X))
            C.append(gamma * mdp.continuation(X))
        P = sp.csr_array((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(N * A, N))
        return cls(mdp, states, P, np.concatenate(R).reshape(N, A),
                   np.concatenate(C).reshape(N, A), index, steps)

    def q(self, V: np.ndarray) -> np.ndarray:
        """Q = R + C ⊙ (P V) (states x A)."""
        return self.R + self.C * (self.P @ V).reshape(self.R.shape)


@dataclass(eq=False)
class FlatResult:
    model: FlatModel
    V: np.ndarray  # (N,) or (H+1, N)
    gamma: float
    horizon: int | None
    iterations: int
    residual: float
    residuals: tuple[float, ...] = ()

    def q_rows(self, mdp: FactoredMDP, S: np.ndarray, t: int) -> np.ndarray:
        """Q_t(s, ·) for every state of ``S`` (rows x joint actions); states outside the
        enumerated set are backed up from their successors when those are in it."""
        Vn = self.V if self.horizon is None else self.V[t + 1]
        A, fm = mdp.n_actions, self.model
        idx = fm.index.find(S.astype(fm.states.dtype))
        if fm.steps is not None:
            late = np.flatnonzero(idx >= 0)[fm.steps[idx[idx >= 0]] > t]
            if late.size:
                j = int(late[0])
                raise SolverError(f"state {S[j].tolist()} is {int(fm.steps[idx[j]])} steps from "
                                  f"the start states: this finite-horizon flat solution holds "
                                  f"the values of states reachable by step t, not at t={t}; "
                                  "solve with it among start=...")
        Q = np.empty((S.shape[0], A))
        have = np.flatnonzero(idx >= 0)
        if have.size:  # enumerated states: their rows of P, R and C
            rows = (idx[have][:, None] * A + np.arange(A)).ravel()
            Q[have] = fm.R[idx[have]] + fm.C[idx[have]] * (fm.P[rows] @ Vn).reshape(-1, A)
        miss = np.flatnonzero(idx < 0)
        if miss.size:
            Q[miss] = self._backup(mdp, S[miss], Vn, t)
        return Q

    def covers(self, mdp: FactoredMDP, S: np.ndarray, t: int) -> np.ndarray:
        """Whether :meth:`q_rows` answers each state of ``S`` at step ``t`` (bool per row):
        an enumerated state reachable by step t, or one whose successors are all known."""
        fm = self.model
        idx = fm.index.find(S.astype(fm.states.dtype))
        ok = idx >= 0
        if fm.steps is not None:
            ok[ok] = fm.steps[idx[ok]] <= t
        miss = np.flatnonzero(idx < 0)
        if miss.size:
            _, src, _, j = self._next(mdp, S[miss], t)
            ok[miss] = np.bincount(src[j < 0] // mdp.n_actions, minlength=miss.size) == 0
        return ok

    def _next(self, mdp: FactoredMDP, S: np.ndarray, t: int):
        """(X, src, prob, j): every (state, action) row of ``S``, its successors and their
        indices, -1 where V_{t+1} is not known there. A layered solve knows V_{t+1} of states
        reachable by step t + 1; successors at t + 1 = H are dropped (V_H = 0)."""
        X = mdp.all_actions(S)
        src, nxt, prob = successors(mdp, X)
        j = self.model.index.find(nxt)
        st = self.model.steps
        if st is not None:
            if t + 1 >= int(self.horizon):
                src, prob, j = src[j >= 0], prob[j >= 0], j[j >= 0]
            else:
                j = np.where((j >= 0) & (st[np.maximum(j, 0)] > t + 1), -1, j)
        return X, src, prob, j

    def _backup(self, mdp: FactoredMDP, S: np.ndarray, Vn: np.ndarray, t: int = 0) -> np.ndarray:
        X, src, prob, j = self._next(mdp, S, t)
        if (j < 0).any():
            bad = S[src[j < 0][0] // mdp.n_actions]
            raise SolverError(f"state {bad.tolist()} leads outside the states this flat solution "
                              "enumerated; solve again with it among start=..., or with "
                              "method='structured'")
        ev = np.bincount(src, weights=prob * Vn[j], minlength=X.shape[0])
        Q = mdp.reward.predict(X) + self.gamma * mdp.continuation(X) * ev
        return Q.reshape(S.shape[0], mdp.n_actions)


def solve_flat(mdp: FactoredMDP, states: np.ndarray, gamma: float, horizon: int | None = None,
               tol: float = 1e-8, max_iter: int = 1_000_000, steps: np.ndarray | None = None
               ) -> FlatResult:
    """Backward induction or value iteration over ``states`` (closed under the model).

    Layered (finite horizon H, ``steps`` = each state's fewest steps from the start states,
    the set holding every state within H - 1 steps): V_t(s) is exact wherever steps(s) <= t,
    since a successor left out is first reached at step H, where V_H = 0. Lookups elsewhere
    raise a SolverError.
    """
    gamma = check_gamma(gamma, horizon)
    if steps is not None and horizon is None:
        raise SolverError("a layered flat solution needs a finite horizon")
    model = FlatModel.build(mdp, states, gamma, steps)
    N = states.shape[0]
    if horizon is not None:
        if int(horizon) != horizon or horizon < 0:
            raise SolverError(f"horizon must be a non-negative integer, got {horizon!r}")
        H = int(horizon)
        V = np.zeros((H + 1, N))
        for t in range(H - 1, -1, -1):
            V[t] = model.q(V[t + 1]).max(axis=1)
        return FlatResult(model, V, gamma, H, H, 0.0)
    if tol <= 0:
        raise SolverError(f"tol must be > 0, got {tol!r}")
    c = gamma / (1.0 - gamma)
    V = np.zeros(N)
    residuals = []
    for it in range(1, max_iter + 1):
        TV = model.q(V).max(axis=1)
        d = TV - V
        lo, hi = min(float(d.min(initial=0.0)), 0.0), max(float(d.max(initial=0.0)), 0.0)
        residuals.append(max(-lo, hi))
        V = TV
        if c * (hi - lo) / 2.0 < tol:
            V = TV + c * (hi + lo) / 2.0
            break
    else:
        raise SolverError(f"flat value iteration did not reach tol={tol} in {max_iter} sweeps")
    TV = model.q(V).max(axis=1)
    res = float(np.abs(TV - V).max(initial=0.0))
    return FlatResult(model, TV, gamma, None, it, res, tuple(residuals))
