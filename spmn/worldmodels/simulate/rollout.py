"""Batched rollouts of a policy in a learned model: ``n_episodes`` episodes side by side, one
batched step of the model's dynamics per time step, logged as columns (the layout the models
learn from) with each episode's discounted return."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ...errors import DataError


@dataclass(frozen=True, eq=False)
class Rollout:
    """Trajectories and returns of :func:`rollout`.

    ``columns``: a dict of columns, one row per step taken (episode-major, then time): each
    state variable, its ``<name>_next``, each action variable, the reward, ``terminated``,
    ``truncated`` (the horizon cut the episode), ``episode`` and ``t``; None when rollout was
    asked for returns only. ``returns``: Σ_t γ^t r_t per episode; ``lengths``: steps per
    episode; ``gamma``: the discount used.
    """

    columns: dict[str, np.ndarray] | None
    returns: np.ndarray
    lengths: np.ndarray
    gamma: float

    @property
    def mean_return(self) -> float:
        return float(self.returns.mean())

    @property
    def stderr(self) -> float:
        """Standard error of :attr:`mean_return` (sample sd / √episodes)."""
        n = self.returns.shape[0]
        return float(self.returns.std(ddof=1) / np.sqrt(n)) if n > 1 else float("inf")


def _is_solution(p: Any) -> bool:
    return all(hasattr(p, a) for a in ("policy", "values", "gamma", "horizon"))


def policy_function(dyn: Any, policy: Any, n: int, rng: np.random.Generator
                    ) -> Callable[[dict[str, np.ndarray], int], np.ndarray]:
    """``(state, t) -> actions`` in the dynamics' joint form, from "random", a solved model or
    a callable ``obs -> actions`` (a batch of observations in, a batch of actions out)."""
    if isinstance(policy, str):
        if policy != "random":
            raise DataError(f"policy must be 'random', a solution or a callable, got {policy!r}")
        return lambda state, t: dyn.random_actions(rng, n)
    if _is_solution(policy):
        return dyn.solution_policy(policy)
    if not callable(policy):
        raise DataError(f"policy must be 'random', a solution or a callable, got "
                        f"{type(policy).__name__}")
    m = len(dyn.action_names)
    cont = getattr(dyn, "box_actions", dyn.kind == "gaussian")  # actions are values
    expected = (n, m) if (m > 1 or cont) else (n,)

    def call(state, t):
        a = np.asarray(policy(dyn.observe(state)))
        if a.shape != expected and not (cont and m == 1 and a.shape == (n,)):
            raise DataError(f"the policy returned actions of shape {a.shape} for {n} "
                            f"observations; expected shape {expected} (one action per "
                            f"observation{'' if expected == (n,) else ' and action variable'})")
        return dyn.joint_actions(a, n)
    return call


def rollout(dyn: Any, policy: Any = "random", n_episodes: int = 100, horizon: int = 100,
            seed: Any = None, *, gamma: float | None = None, columns: bool = True) -> Rollout:
    """Run ``n_episodes`` episodes of at most ``horizon`` steps in the model ``dyn``.

    ``policy``: "random", the model's solution (its greedy policy, per step for a finite
    horizon), or a callable mapping a batch of observations to a batch of actions. ``gamma``:
    the discount of the returns (default: the solution's, else 1). ``seed``: an int or a
    ``numpy.random.Generator``; one seed gives one run on every backend.
    """
    if int(n_episodes) != n_episodes or n_episodes < 1:
        raise DataError(f"n_episodes must be an integer >= 1, got {n_episodes!r}")
    if int(horizon) != horizon or horizon < 1:
        raise DataError(f"horizon must be an integer >= 1, got {horizon!r}")
    n, H = int(n_episodes), int(horizon)
    if gamma is None:
        gamma = float(policy.gamma) if _is_solution(policy) else 1.0
    if not 0.0 <= float(gamma) <= 1.0:
        raise DataError(f"gamma must lie in [0, 1], got {gamma!r}")
    rng = np.random.default_rng(seed)
    act = policy_function(dyn, policy, n, rng)
    state = dyn.new_state(n)
    joint0 = np.zeros((n, len(dyn.action_names))) if dyn.kind == "gaussian" else \
        np.zeros(n, np.int64)  # ignored: every copy starts
    dyn.step(state, joint0, np.ones(n, np.bool_), rng)
    alive = np.ones(n, np.bool_)
    returns, lengths = np.zeros(n), np.zeros(n, np.int64)
    disc = 1.0
    rec: list[tuple] = []
    for t in range(H):
        if not alive.any():
            break
        a = act(state, t)
        before = dyn.observe(state) if columns else None
        reward, term = dyn.step(state, a, ~alive, rng)  # ended episodes restart, unrecorded
        returns += np.where(alive, disc * reward, 0.0)
        lengths += alive
        if columns:
            idx = np.flatnonzero(alive)
            rec.append((idx, t, before[idx], dyn.action_columns(a)[idx], reward[idx],
                        dyn.observe(state)[idx], term[idx]))
        alive &= ~term
        disc *= float(gamma)
    cols = _columns(dyn, rec, H) if columns else None
    return Rollout(cols, returns, lengths, float(gamma))


def _columns(dyn: Any, rec: list[tuple], H: int) -> dict[str, np.ndarray]:
    cat = np.concatenate
    ep = cat([r[0] for r in rec])
    t = cat([np.full(r[0].size, r[1], np.int64) for r in rec])
    order = np.lexsort((t, ep))
    S, A, R, Sn, T = (cat([r[i] for r in rec])[order] for i in range(2, 7))
    ep, t = ep[order], t[order]
    out: dict[str, np.ndarray] = {}
    S2, Sn2 = S.reshape(S.shape[0], -1), Sn.reshape(Sn.shape[0], -1)
    names = dyn.state_names
    if getattr(dyn, "log_layout", None) is not None:  # states back in the columns logged
        names, S2, Sn2 = dyn.log_layout(S2, Sn2)
    for j, name in enumerate(names):
        out[name] = S2[:, j]
        out[f"{name}_next"] = Sn2[:, j]
    A2 = A.reshape(A.shape[0], -1)
    for j, name in enumerate(dyn.action_names):
        out[name] = A2[:, j]
    out[dyn.reward_name] = R
    out[dyn.terminated_name] = T
    out["truncated"] = (t == H - 1) & ~T
    out["episode"], out["t"] = ep, t
    return out
