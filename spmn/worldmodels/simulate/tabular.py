"""The tabular world model (and the encoded one, over its codes) as a simulator: inverse-CDF
draws from the fitted tables, N environments per compiled pass.

The model's p(s', r | s, a) is, for s in region k (see :mod:`spmn.worldmodels.tabular.model`),

    p(s', r | s, a) = Σ_o P(o | k, a) · p(r | k, a, o) · Π_j q_j(s'_j | o),

with outcome o a next region or an episode end (o >= K). One step draws o, then r, then each
s'_j, each by one uniform against a cumulative table (a sparse row per (region, action)). The
circuit's own sample pass would draw the same distribution, but it walks every node of the
template for every row; the tables hold only the (region, action) row a state needs, which is
what reaches 1e7 environment steps per second. A region outcome o keeps s' in region o (a
region is a product of value sets, and q_j is supported on it), so the next region is o,
exactly as in the Bellman update whose values the exact solution holds.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ...errors import BackendError, DataError, SolverError
from ..tabular import build, coverage
from .dynamics import (
    InvalidActionError,
    cdf,
    check_discrete_actions,
    pick,
    start_weights,
    unravel_rows,
)

BACKENDS = ("numba", "reference")


def _tables(m: build.FittedTabular) -> dict[str, Any]:
    """Flat sampling tables of a fitted tabular model."""
    P = build.outcome_probs(m)
    K, nA, n_out = P.shape
    rewards = build.reward_tables(m)
    ka_ptr = np.zeros(K * nA + 1, np.int64)
    out_o, out_cum, out_rptr, r_val, r_cum = [], [], [0], [], []
    for k in range(K):
        for a in range(nA):
            outs = np.flatnonzero(P[k, a] > 0)
            ka_ptr[k * nA + a + 1] = ka_ptr[k * nA + a] + outs.size
            out_o.append(outs)
            out_cum.append(cdf(P[k, a, outs]))
            for o in outs.tolist():
                vals, probs = rewards[(k, a, o)]
                r_val.append(vals)
                r_cum.append(cdf(probs))
                out_rptr.append(out_rptr[-1] + vals.size)
    cards = m.state_cards_.astype(np.int64)
    d = cards.size
    nxt = np.zeros((n_out, d, int(cards.max())))
    for j in range(d):
        c = m.tables_["next"][:, j, :cards[j]]
        tot = c.sum(axis=1, keepdims=True)
        nxt[:, j, :cards[j]] = np.where(tot > 0, c / np.maximum(tot, 1e-300), 1.0 / cards[j])
    cat = np.concatenate
    return {"K": K, "nA": nA, "ka_ptr": ka_ptr, "out_o": cat(out_o).astype(np.int64),
            "out_cum": cat(out_cum), "out_rptr": np.asarray(out_rptr, np.int64),
            "r_val": cat(r_val).astype(np.float64), "r_cum": cat(r_cum), "nxt_cum": cdf(nxt),
            "cards": cards}


def step_reference(T: dict[str, Any], codes, region, actions, done, u, start_cum, start_codes,
                   start_region, reward, term) -> int:
    """The slow, obvious twin of :func:`._numba.tabular_step` (one Python pass per environment)."""
    K, nA = T["K"], T["nA"]
    n = codes.shape[0]
    for i in range(n):
        if not done[i]:
            if actions[i] < 0 or actions[i] >= nA:
                return i
            if region[i] < 0:
                return n + i
    for i in range(codes.shape[0]):
        if done[i]:
            j = int(pick(start_cum, u[i, 0]))
            codes[i], region[i], reward[i], term[i] = start_codes[j], start_region[j], 0.0, False
            continue
        row = region[i] * nA + actions[i]
        lo, hi = T["ka_ptr"][row], T["ka_ptr"][row + 1]
        e = lo + int(pick(T["out_cum"][lo:hi], u[i, 0]))
        o = T["out_o"][e]
        rlo, rhi = T["out_rptr"][e], T["out_rptr"][e + 1]
        reward[i] = T["r_val"][rlo + int(pick(T["r_cum"][rlo:rhi], u[i, 1]))]
        for v in range(codes.shape[1]):
            codes[i, v] = int(pick(T["nxt_cum"][o, v, :T["cards"][v]], u[i, 2 + v]))
        term[i] = o >= K
        region[i] = -1 if o >= K else o
    return -1


class TabularDynamics:
    """N copies of a fitted :class:`~spmn.worldmodels.tabular.model.WorldModel` (any object with
    its fitted tables: :class:`~spmn.worldmodels.tabular.build.FittedTabular`).

    ``start``: start states (rows of codes, or a dict of columns), drawn with ``start_probs``
    (default uniform); without ``start``, ``start_probs`` is a distribution over every joint
    state (ravel order of the state codes) and, without either, the starts are the logged
    states in proportion to their logged transitions. ``backend``: "numba" (default) or
    "reference" (the numpy twin; bit-for-bit the same draws).
    """

    kind = "tabular"

    def __init__(self, model: Any, start: Any = None, start_probs: Any = None,
                 backend: str | None = None) -> None:
        model._check_fitted()
        self.model = model
        self.backend = "numba" if backend is None else backend
        if self.backend not in BACKENDS:
            raise BackendError(f"the tabular simulator runs on {list(BACKENDS)}, got "
                               f"{backend!r} (the circuit kernels' cython backend has no table "
                               "sampler)")
        self.state_names = list(model.state_names_)
        self.action_names = list(model.action_names_)
        self.state_cards = np.asarray(model.state_cards_, np.int64)
        self.action_cards = np.asarray(model.action_cards_, np.int64)
        self.reward_name = model.reward
        self.terminated_name = model.terminated or "terminated"
        self.tables = _tables(model)
        self._set_start(start, start_probs)
        self.n_uniforms = 2 + len(self.state_names)

    # ------------------------------------------------------------------ starts
    def _set_start(self, start: Any, probs: Any) -> None:
        m = self.model
        if start is None and probs is None:
            if m.seen_states_ is None:
                raise DataError("this model file predates per-state coverage, so the logged "
                                "states are unknown: pass start= (the start states)")
            S0 = np.asarray(m.seen_states_, np.int64)
            w = m.seen_counts_.sum(axis=1).astype(np.float64)
            w = w / w.sum()
        elif start is None:
            total = math.prod(int(k) for k in self.state_cards)  # exact: no int64 overflow
            w_all = start_weights(total, probs, f"joint state ({total} = "
                                  f"{' x '.join(map(str, self.state_cards.tolist()))})")
            idx = np.flatnonzero(w_all > 0)
            S0 = unravel_rows(idx, self.state_cards)
            w = w_all[idx]
        else:
            S0 = m._state_array(start)
            if S0.shape[0] == 0:
                raise DataError("start holds no state")
            w = start_weights(S0.shape[0], probs, f"start state ({S0.shape[0]} given)")
        term = m._is_terminal(S0) & (w > 0)
        if term.any():
            raise DataError(f"start state {S0[np.argmax(term)].tolist()} of {self.state_names} "
                            "is terminal (logged only as the end of an episode)")
        coverage.warn_unseen(m, S0[w > 0], "the simulator's start")
        self.start_codes = np.ascontiguousarray(S0)
        self.start_region = m.tree_.route(S0).astype(np.int64)
        self.start_cum = cdf(w)

    # ------------------------------------------------------------------ state
    def new_state(self, n: int) -> dict[str, np.ndarray]:
        return {"codes": np.zeros((n, len(self.state_names)), np.int64),
                "region": np.full(n, -1, np.int64)}

    def observe(self, state: dict[str, np.ndarray]) -> np.ndarray:
        c = state["codes"]
        return c[:, 0].copy() if c.shape[1] == 1 else c.copy()

    def joint_actions(self, actions: Any, n: int) -> np.ndarray:
        return check_discrete_actions(actions, n, self.action_cards, self.action_names)

    def action_columns(self, joint: np.ndarray) -> np.ndarray:
        """Joint codes as the logs hold them: (n,) for one action variable, else (n, m)."""
        if len(self.action_names) == 1:
            return joint
        return np.stack(np.unravel_index(joint, self.action_cards), axis=1)

    def random_actions(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.integers(0, self.tables["nA"], n).astype(np.int64)

    def step(self, state: dict[str, np.ndarray], joint: np.ndarray, done: np.ndarray,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One step of every environment (resets where ``done``): ``(reward, terminated)``."""
        n = state["codes"].shape[0]
        u = rng.random((n, self.n_uniforms))
        reward = np.empty(n)
        term = np.empty(n, np.bool_)
        T = self.tables
        joint = np.ascontiguousarray(joint, np.int64)
        done = np.ascontiguousarray(done, np.bool_)
        if self.backend == "numba":
            from . import _numba

            kernel = _numba.tabular_step if n < _numba.PARALLEL_MIN else \
                _numba.tabular_step_parallel
            bad = kernel(state["codes"], state["region"], joint, done, u, T["K"], T["nA"],
                               T["ka_ptr"], T["out_o"], T["out_cum"], T["out_rptr"], T["r_val"],
                               T["r_cum"], T["nxt_cum"], T["cards"], self.start_cum,
                               self.start_codes, self.start_region, reward, term)
        else:
            bad = step_reference(T, state["codes"], state["region"], joint, done, u,
                                 self.start_cum, self.start_codes, self.start_region, reward, term)
        if bad >= n:
            raise DataError(f"environment {bad - n} is stepped after its episode ended: reset "
                            "it first (pass it in done)")
        if bad >= 0:
            what = "action" if len(self.action_names) == 1 else "joint action"
            raise InvalidActionError(f"{what} {int(joint[bad])} of environment {bad} is outside "
                                     f"the action space: {self.action_names} take joint codes "
                                     f"0..{T['nA'] - 1}")
        return reward, term

    # ------------------------------------------------------------------ policies
    def solution_policy(self, sol: Any):
        """``(state, t) -> joint actions`` of a solved model: its greedy action per region."""
        inner = getattr(sol, "model", None)
        if inner is not self.model or not hasattr(sol, "result"):
            raise SolverError("this Solution was not solved from the simulated model: solve "
                              "the same model (model.solve(...)) and pass that solution")
        pol = np.asarray(sol.result.policy, np.int64)
        if sol.horizon is None:
            return lambda state, t: pol[np.maximum(state["region"], 0)]
        H = int(sol.horizon)

        def finite(state, t):
            if t >= H:
                raise SolverError(f"the solution has horizon {H}: no policy for step {t}")
            return pol[t][np.maximum(state["region"], 0)]
        return finite

    # ------------------------------------------------------------------ spaces, text
    def spaces(self):
        from gymnasium import spaces

        obs = spaces.Discrete(int(self.state_cards[0])) if self.state_cards.size == 1 else \
            spaces.MultiDiscrete(self.state_cards)
        act = spaces.Discrete(int(self.action_cards[0])) if self.action_cards.size == 1 else \
            spaces.MultiDiscrete(self.action_cards)
        return obs, act

    def describe(self, state: dict[str, np.ndarray], i: int) -> str:
        vals = ", ".join(f"{n}={int(v)}" for n, v in zip(self.state_names, state["codes"][i]))
        k = int(state["region"][i])
        return f"{vals} ({'episode over' if k < 0 else f'region {k}'})"
