"""The factored world model as a simulator: each next-state variable drawn from its tree's leaf.

    p(s', r | s, a) = Π_i p(s'_i | pa_i) · δ(r − E[r | s, a]),   p(end | pa_end)

(:mod:`spmn.worldmodels.factored.model`). The model learns the *expected* reward (an additive
fit), which is all its exact solvers use; the simulator returns it, so Monte Carlo returns
average to the same values. One step routes the batch through every factor's tree (numpy, one
vectorized pass per factor) and draws s'_i with one uniform per environment; the end of the
episode takes one more uniform. States are integer codes (rows x state variables).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ...errors import DataError, SolverError
from ..factored.solved import state_codes
from .dynamics import cdf, check_discrete_actions, pick, start_weights, unravel_rows


class FactoredDynamics:
    """N copies of a fitted :class:`~spmn.worldmodels.factored.model.FactoredWorldModel`
    (``start``/``start_probs`` as :class:`~.tabular.TabularDynamics`; the default starts are
    the distinct logged states, uniformly)."""

    kind = "factored"

    def __init__(self, model: Any, start: Any = None, start_probs: Any = None,
                 backend: str | None = None) -> None:
        model._check_fitted()
        self.model = model
        self.mdp = model.mdp_
        self.backend = backend
        self.state_names = list(model.state_names_)
        self.action_names = list(model.action_names_)
        self.state_cards = np.asarray(model.state_cards_, np.int64)
        self.action_cards = np.asarray(model.action_cards_, np.int64)
        self.reward_name = model.reward
        self.terminated_name = model.terminated or "terminated"
        self.cdfs = [cdf(p) for p in self.mdp.probs]
        if start is None and start_probs is not None:
            total = math.prod(int(k) for k in self.state_cards)  # exact: no int64 overflow
            w_all = start_weights(total, start_probs, f"joint state ({total})")
            idx = np.flatnonzero(w_all > 0)
            S0, w = unravel_rows(idx, self.state_cards), w_all[idx]
        elif start is None:
            S0 = np.asarray(model.seen_states_, np.int64)
            w = start_weights(S0.shape[0], None, "logged state")
        else:
            S0 = state_codes(self.mdp, start)[0]
            if S0.shape[0] == 0:
                raise DataError("start holds no state")
            w = start_weights(S0.shape[0], start_probs, f"start state ({S0.shape[0]} given)")
        self.start_codes = np.ascontiguousarray(S0, np.int64)
        self.start_cum = cdf(w)
        self.n_uniforms = len(self.state_names) + 1

    def new_state(self, n: int) -> dict[str, np.ndarray]:
        return {"codes": np.zeros((n, len(self.state_names)), np.int64),
                "ended": np.ones(n, np.bool_)}

    def observe(self, state: dict[str, np.ndarray]) -> np.ndarray:
        return state["codes"].copy()

    def joint_actions(self, actions: Any, n: int) -> np.ndarray:
        return check_discrete_actions(actions, n, self.action_cards, self.action_names)

    def action_columns(self, joint: np.ndarray) -> np.ndarray:
        return joint if len(self.action_names) == 1 else self.mdp.joint[joint]

    def random_actions(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.integers(0, self.mdp.n_actions, n).astype(np.int64)

    def step(self, state, joint, done, rng):
        S = state["codes"]
        n, d = S.shape
        u = rng.random((n, self.n_uniforms))
        live = ~done
        reward = np.zeros(n)
        term = np.zeros(n, np.bool_)
        if done.any():
            S[done] = self.start_codes[pick(self.start_cum, u[done, 0])]
        if live.any():
            X = self.mdp.with_actions(S[live], joint[live])
            nxt = np.empty((X.shape[0], d), np.int64)
            for i, tree in enumerate(self.mdp.trees):
                nxt[:, i] = pick(self.cdfs[i][tree.route(X)], u[live, i])
            reward[live] = self.mdp.reward.predict(X)
            term[live] = u[live, d] < 1.0 - self.mdp.continuation(X)
            S[live] = nxt
        state["ended"] = term.copy()
        return reward, term

    def log_layout(self, S: np.ndarray, Sn: np.ndarray):
        """(names, S, S_next) in the logged columns: a model with one-hot groups decodes them
        (observations stay in the model's variables, ``state_names``)."""
        g = self.mdp.groups
        if g is None:
            return self.state_names, S, Sn
        return list(g.input_names), g.decode(S), g.decode(Sn)

    def solution_policy(self, sol: Any):
        if getattr(sol, "mdp", None) is not self.mdp:
            raise SolverError("this solution was not solved from the simulated model: solve "
                              "the same model (model.solve(...)) and pass that solution")
        H = sol.horizon

        def act(state, t):
            if H is not None and t >= H:
                raise SolverError(f"the solution has horizon {H}: no policy for step {t}")
            return sol.joint_policy(state["codes"], t if H is not None else 0)
        return act

    def spaces(self):
        from gymnasium import spaces

        act = spaces.Discrete(int(self.action_cards[0])) if self.action_cards.size == 1 else \
            spaces.MultiDiscrete(self.action_cards)
        return spaces.MultiDiscrete(self.state_cards), act

    def describe(self, state, i: int) -> str:
        return ", ".join(f"{n}={int(v)}" for n, v in zip(self.state_names, state["codes"][i]))

