"""The continuous-state world model as a simulator: the state routed through the region tree,
each next-state variable drawn from its (region, action) leaf.

For s in region k and action a (:mod:`spmn.worldmodels.continuous`), one step returns the mean
reward ``R(k, a)`` (the model learns E[r], all its exact solver uses), ends the episode with
probability ``p_end(k, a)`` and draws each s'_j independently from its leaf:

- a Gaussian leaf: ``μ + σ z``;
- a categorical leaf (a discrete variable): its code by inverse CDF;
- a histogram leaf (the default): a bin with its logged fraction, then a value uniform in the
  bin ``(e_{i-1}, e_i]``; the outer bins are cut at the logged range (``low_``/``high_``), so a
  drawn value always lies in ``[low_, high_]``.

Why the draw is exact for the region model: every region boundary on a variable is a break of
its histogram (and a discrete code's threshold is ``c + 0.5``), so s' lands in region j with
the leaf mass of j's box, ``Π_d [F_d(hi_d) − F_d(lo_d)]``, which is exactly the landing
probability the solver uses; a Gaussian draw outside the logged range goes to the region whose
box holds it (the outer boxes reach ±inf), as the landing integral counts it (no warning here:
the model's ``regions()`` warns for queries). The Monte Carlo return of the greedy region
policy therefore converges to the region model's V of the start state's region. The state
within a region is only observed: the dynamics depend on it through its region alone.

All N environments advance in one vectorized numpy pass per variable (no loop per copy).
Actions are the model's: integer codes (``Discrete``/``MultiDiscrete``), or, for a model with
``action_grid``, a ``Box`` over the grid's range whose values are mapped to the nearest grid
point (the rule ``fit`` assigns logged actions by).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import DataError, SolverError
from .dynamics import (
    InvalidActionError,
    cdf,
    check_continuous_actions,
    check_discrete_actions,
    pick,
    start_weights,
)


class ContinuousDynamics:
    """N copies of a fitted :class:`~spmn.worldmodels.continuous.model.ContinuousWorldModel`.

    ``start``: start states (rows x state variables), drawn with ``start_probs`` (default
    uniform); the default is the logged states (a loaded model holds none: pass ``start``).
    ``backend``: accepted for the common API (the pass is numpy).

    Observation space: a ``Box`` over the state variables (discrete ones as float codes),
    bounded by the logged range ``low_``/``high_`` widened to hold the start states; a
    continuous variable with Gaussian leaves is unbounded (its draws may leave the range). A
    (region, action) pair whose every logged row ended (``live == 0``, so ``p_end = 1``) ends
    the episode and keeps the state.
    """

    kind = "continuous"
    #: with an action grid the actions are values (a Box), else codes
    box_actions: bool

    def __init__(self, model: Any, start: Any = None, start_probs: Any = None,
                 backend: str | None = None) -> None:
        model._check_fitted()
        self.model = model
        self.backend = backend
        self.tree = model.tree_
        lv = self.leaves = model.leaves_
        self.state_names = list(model.states)
        self.action_names = list(model.actions)
        self.reward_name = model.reward
        self.terminated_name = model.terminated or "terminated"
        self.grid = model.action_grid
        self.box_actions = self.grid is not None
        self.table = np.asarray(model.action_table_, np.float64)
        self.n_actions = self.table.shape[0]
        self.discrete = np.asarray(model.discrete_, bool)
        self.low, self.high = np.asarray(model.low_, float), np.asarray(model.high_, float)
        self.dis_index = {int(j): i for i, j in enumerate(np.flatnonzero(self.discrete))}
        self.cat_cum = cdf(lv.cat) if lv.cat.size else lv.cat
        self.live = np.asarray(lv.live, float)
        if lv.is_histogram:
            self._histogram_tables()
        S0 = self._starts(start)
        w = start_weights(S0.shape[0], start_probs, f"start state ({S0.shape[0]} given)")
        self.start_states = S0
        self.start_region = self.tree.route(S0).astype(np.int64)
        self.start_cum = cdf(w)
        lo, hi = self.low.copy(), self.high.copy()
        if not lv.is_histogram:  # a Gaussian draw may leave the logged range
            lo[~self.discrete], hi[~self.discrete] = -np.inf, np.inf
        self.obs_low, self.obs_high = np.minimum(lo, S0.min(0)), np.maximum(hi, S0.max(0))

    def _starts(self, start: Any) -> np.ndarray:
        d = len(self.state_names)
        if start is None:
            data = getattr(self.model, "_data", None)
            if data is None:
                raise DataError("this ContinuousWorldModel holds no logged states (loaded from a "
                                "file): pass start= (start states)")
            return np.ascontiguousarray(data[0], np.float64)
        S0 = np.asarray(start, np.float64)
        if S0.ndim == 1 and S0.size == d:
            S0 = S0[None, :]
        if S0.ndim != 2 or S0.shape[1] != d or S0.shape[0] == 0 or not np.all(np.isfinite(S0)):
            raise DataError(f"start must hold finite states with {d} coordinates "
                            f"{self.state_names}, got shape {S0.shape}")
        for j in np.flatnonzero(self.discrete):
            bad = (S0[:, j] != np.round(S0[:, j])) | (S0[:, j] < 0)
            if bad.any():
                raise DataError(f"start row {int(np.argmax(bad))}: the discrete state "
                                f"{self.state_names[j]!r} must be an integer code >= 0, got "
                                f"{S0[bad, j][0]!r}")
        return np.ascontiguousarray(S0)

    def _histogram_tables(self) -> None:
        """Bin draws for every histogram row at once: integer cumulative counts per stored
        bin, keyed ``row * big + count`` (exact in int64), so one ``searchsorted`` finds the
        first bin whose cumulative count exceeds a drawn count ``m < live``."""
        H = self.leaves.hist.tocsr()
        H.sort_indices()
        counts = np.rint(H.data).astype(np.int64)
        rows = np.repeat(np.arange(H.shape[0], dtype=np.int64), np.diff(H.indptr))
        cum = np.cumsum(counts)
        start = np.concatenate([[0], cum])[H.indptr[:-1]]  # count before each row
        within = cum - np.repeat(start, np.diff(H.indptr))
        self.big = int(max(within.max(initial=0), 1)) + 1
        self.hist_key = rows * self.big + within
        self.hist_col = H.indices.astype(np.int64)
        E = self.leaves.edges
        self.bin_lo = np.concatenate([np.full((E.shape[0], 1), -np.inf), E], axis=1)
        self.bin_hi = np.concatenate([E, np.full((E.shape[0], 1), np.inf)], axis=1)

    # ------------------------------------------------------------------ state
    def new_state(self, n: int) -> dict[str, np.ndarray]:
        return {"x": np.zeros((n, len(self.state_names))), "region": np.zeros(n, np.int64)}

    def observe(self, state: dict[str, np.ndarray]) -> np.ndarray:
        return state["x"].copy()

    def joint_actions(self, actions: Any, n: int) -> np.ndarray:
        """Action indices of the model: codes (joint, as the model ravels them) or, with an
        action grid, the nearest grid point of each row of values."""
        m = len(self.action_names)
        if self.grid is None:
            return check_discrete_actions(actions, n, np.asarray(self.model.action_cards_,
                                                                 np.int64), self.action_names)
        U = check_continuous_actions(actions, n, m, self.action_names)
        return ((U[:, None, :] - self.table[None]) ** 2).sum(axis=2).argmin(axis=1)

    def action_columns(self, joint: np.ndarray) -> np.ndarray:
        """Action indices as the logs hold them: codes, or grid values."""
        return np.asarray(self.model.action_values(joint))

    def random_actions(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.integers(0, self.n_actions, n).astype(np.int64)

    def sample_next(self, k: np.ndarray, a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """s' ~ the leaves of (region k, action a), one row per pair (module docstring)."""
        lv = self.leaves
        n, d = k.shape[0], len(self.state_names)
        out = np.empty((n, d))
        u = rng.random((n, 2 * d))
        for j in range(d):
            if self.discrete[j]:
                i = self.dis_index[j]
                out[:, j] = pick(self.cat_cum[k, a, i], u[:, j])
            elif lv.is_histogram:
                row = (k * self.n_actions + a) * d + j
                live = self.live[k, a]
                m = np.minimum(np.floor(u[:, j] * live), np.maximum(live - 1, 0)).astype(np.int64)
                e = np.searchsorted(self.hist_key, row * self.big + m, side="right")
                c = self.hist_col[np.minimum(e, self.hist_col.size - 1)]
                lo = np.maximum(self.bin_lo[j, c], self.low[j])
                hi = np.minimum(self.bin_hi[j, c], self.high[j])
                out[:, j] = hi - u[:, d + j] * (hi - lo)  # uniform on (lo, hi]
            else:
                out[:, j] = lv.mean[k, a, j] + lv.std[k, a, j] * \
                    rng.standard_normal(n)
        return out

    def step(self, state, joint, done, rng):
        X, region = state["x"], state["region"]
        N = X.shape[0]
        ustart, uend = rng.random(N), rng.random(N)
        reward = np.zeros(N)
        term = np.zeros(N, np.bool_)
        live = ~done
        if live.any():
            k = region[live]
            a = np.asarray(joint, np.int64)[live]
            if (a < 0).any() or (a >= self.n_actions).any():
                i = int(np.flatnonzero(live)[np.argmax((a < 0) | (a >= self.n_actions))])
                raise InvalidActionError(f"action index {int(joint[i])} of environment {i} is "
                                         f"outside the model's actions 0..{self.n_actions - 1}")
            lv = self.leaves
            reward[live] = lv.reward[k, a]
            term[live] = uend[live] < lv.p_end[k, a]
            nxt = self.sample_next(k, a, rng)
            moved = self.live[k, a] > 0  # a pair whose every logged row ended keeps its state
            idx = np.flatnonzero(live)[moved]
            X[idx] = nxt[moved]
            region[idx] = self.tree.route(nxt[moved])
        if done.any():
            j = pick(self.start_cum, ustart[done])
            X[done], region[done] = self.start_states[j], self.start_region[j]
        return reward, term

    # ------------------------------------------------------------------ policies
    def solution_policy(self, sol: Any):
        """``(state, t) -> action indices`` of a solved model: its greedy action per region."""
        if getattr(sol, "model", None) is not self.model or not hasattr(sol, "region_policy"):
            raise SolverError("this solution was not solved from the simulated model: solve "
                              "the same model (model.solve(...)) and pass that solution")
        pol = np.asarray(sol.region_policy, np.int64)
        if sol.horizon is None:
            return lambda state, t: pol[state["region"]]
        H = int(sol.horizon)

        def finite(state, t):
            if t >= H:
                raise SolverError(f"the solution has horizon {H}: no policy for step {t}")
            return pol[t][state["region"]]
        return finite

    # ------------------------------------------------------------------ spaces, text
    def spaces(self):
        from gymnasium import spaces

        obs = spaces.Box(self.obs_low, self.obs_high, (len(self.state_names),), np.float64)
        if self.grid is not None:
            act = spaces.Box(self.table.min(0), self.table.max(0), (self.table.shape[1],),
                             np.float64)
        else:
            cards = np.asarray(self.model.action_cards_, np.int64)
            act = spaces.Discrete(int(cards[0])) if cards.size == 1 else \
                spaces.MultiDiscrete(cards)
        return obs, act

    def describe(self, state, i: int) -> str:
        vals = ", ".join(f"{n}={v:.4g}" for n, v in zip(self.state_names, state["x"][i]))
        return f"{vals} (region {int(state['region'][i])})"
