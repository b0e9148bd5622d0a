"""The Gaussian (linear-Gaussian or mixture) world model as a simulator: x' drawn by the
circuit's own sample pass.

Each step fills evidence rows ``[x, u, NaN...]`` and runs the kernels' batched ``sample`` pass
(:mod:`spmn.kernels`: reference, cython, numba; one pass for all N environments): a mixture
picks its component by the posterior given (x, u), a Gaussian leaf draws x' from its
conditional ``N(A x + B u + f, W)``. The draws (uniforms per node, standard normals per draw
column) come from the environment's generator, so every backend gives the same states for a
seed. The reward is the model's quadratic ``r(x, u)``; episodes never terminate (pass
``max_episode_steps`` to truncate them); a state that overflows (unstable dynamics) raises a
:class:`~spmn.errors.SolverError` naming the environment instead of going on as NaN.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ... import kernels
from ...errors import DataError, SolverError
from .dynamics import cdf, check_continuous_actions, pick, start_weights


class GaussianDynamics:
    """N copies of a fitted :class:`~spmn.worldmodels.gaussian.model.GaussianWorldModel`.

    ``start``: start states (rows, n) drawn with ``start_probs`` (default uniform); the
    default is the logged states (a model made by ``from_system`` has none: pass ``start``).
    ``backend``: the kernels' backend of the sample pass (None: the fastest built).
    """

    kind = "gaussian"

    def __init__(self, model: Any, start: Any = None, start_probs: Any = None,
                 backend: str | None = None) -> None:
        model._check_fitted()
        self.model = model
        self.state_names = list(model.states)
        self.action_names = list(model.actions)
        self.reward_name = model.reward or "r"
        self.terminated_name = "terminated"
        self.be = kernels.get(backend if backend is not None else model.backend)
        self.backend = self.be.__name__.rsplit(".", 1)[-1]
        self.flat = model.circuit_.compile()
        self.values = np.zeros(self.flat.n_interface)
        self.reward = model.reward_.embed(self.state_names + self.action_names)
        n = len(self.state_names)
        if start is None:
            if not hasattr(model, "_data_states"):
                raise DataError("this GaussianWorldModel holds no logged states (made by "
                                "from_system or loaded from a file): pass start= (start states)")
            S0 = np.asarray(model._data_states, np.float64)
        else:
            S0 = np.asarray(start, np.float64)
            if S0.ndim == 1 and S0.size == n:
                S0 = S0[None, :]
            if S0.ndim != 2 or S0.shape[1] != n or S0.shape[0] == 0 or \
                    not np.all(np.isfinite(S0)):
                raise DataError(f"start must hold finite states with {n} coordinates "
                                f"{self.state_names}, got shape {S0.shape}")
        w = start_weights(S0.shape[0], start_probs, f"start state ({S0.shape[0]} given)")
        self.start_states = S0
        self.start_cum = cdf(w)
        self.n_uniforms = 1

    def new_state(self, n: int) -> dict[str, np.ndarray]:
        return {"x": np.zeros((n, len(self.state_names)))}

    def observe(self, state) -> np.ndarray:
        return state["x"].copy()

    def joint_actions(self, actions: Any, n: int) -> np.ndarray:
        return check_continuous_actions(actions, n, len(self.action_names), self.action_names)

    def action_columns(self, joint: np.ndarray) -> np.ndarray:
        return joint

    def random_actions(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Standard normal actions (the space is unbounded)."""
        return rng.standard_normal((n, len(self.action_names)))

    def sample_next(self, X: np.ndarray, U: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """x' ~ p(x' | x, u) per row through the kernels' sample pass."""
        n, m = X.shape[1], U.shape[1]
        E = np.full((X.shape[0], 2 * n + m), np.nan)
        E[:, :n], E[:, n:n + m] = X, U
        u = rng.random((X.shape[0], self.flat.n_nodes))
        z = rng.standard_normal((X.shape[0], self.flat.n_draws))
        return self.be.sample(self.flat, E, u, z, self.values)[:, n + m:]

    def step(self, state, U, done, rng):
        X = state["x"]
        N = X.shape[0]
        ustart = rng.random(N)
        reward = np.zeros(N)
        live = ~done
        if live.any():
            reward[live] = self.reward(np.hstack([X[live], U[live]]))
            X[live] = self.sample_next(X[live], U[live], rng)
            bad = ~(np.isfinite(X[live]).all(axis=1) & np.isfinite(reward[live]))
            if bad.any():
                i = int(np.flatnonzero(live)[np.argmax(bad)])
                raise SolverError(f"the state {self.state_names} or reward of environment {i} "
                                  "overflowed "
                                  "(the learned dynamics diverge under these actions): "
                                  "truncate episodes with max_episode_steps, or use a "
                                  "stabilizing policy")
        if done.any():
            X[done] = self.start_states[pick(self.start_cum, ustart[done])]
        return reward, np.zeros(N, np.bool_)

    def solution_policy(self, sol: Any):
        if not hasattr(sol, "K") or sol.state_names not in (None, self.state_names):
            raise SolverError("pass the GaussianSolution of the simulated model (model.solve())")
        return lambda state, t: np.asarray(sol.policy(state["x"]), np.float64).reshape(
            state["x"].shape[0], len(self.action_names))

    def spaces(self):
        from gymnasium import spaces

        n, m = len(self.state_names), len(self.action_names)
        return (spaces.Box(-np.inf, np.inf, (n,), np.float64),
                spaces.Box(-np.inf, np.inf, (m,), np.float64))

    def describe(self, state, i: int) -> str:
        return ", ".join(f"{n}={v:.4g}" for n, v in zip(self.state_names, state["x"][i]))
