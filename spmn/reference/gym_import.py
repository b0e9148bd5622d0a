"""Exact tabular models of Gymnasium's toy-text environments, read from ``env.unwrapped.P``.

``P[s][a]`` lists ``(p, s', r, terminated)``; duplicate ``s'`` are summed (P) and probability-averaged (R),
so Σ_s' P[a,s,s'] R[a,s,s'] equals Gymnasium's expected reward. ``terminated`` ends the episode:

* a state entered only through terminated transitions from live states (FrozenLake's holes and goal,
  CliffWalking's goal) becomes a terminal state (value 0; Gymnasium's own rows for it are ignored);
* a state that can also be entered without termination, or that is a start state (Taxi's drop-off
  states), keeps its live dynamics, and each terminated transition into it goes instead to an extra
  absorbing copy numbered from ``env.observation_space.n`` on; ``mdp.observation`` maps a copy back to
  the Gymnasium state, so logged ``s_next`` equal what a Gymnasium rollout reports.

gymnasium is an optional dependency, imported only here.
"""
from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import scipy.sparse as sp

from spmn.errors import SpmnError

SUPPORTED_IDS = ("FrozenLake-v1", "FrozenLake8x8-v1", "Taxi-v4", "Taxi-v3", "CliffWalking-v1",
                 "CliffWalkingSlippery-v1", "CliffWalking-v0")


def _import_gymnasium() -> Any:
    try:
        import gymnasium
    except ImportError:
        raise SpmnError("TabularMDP.from_gymnasium needs the optional dependency gymnasium "
                        "(pip install 'spmn[gym]' or pip install gymnasium)") from None
    return gymnasium


def _env_kwargs(env_cls: type, spec_kwargs: dict, kwargs: dict) -> dict[str, Any]:
    """Constructor defaults <- registered kwargs <- user kwargs (render_mode dropped)."""
    params = inspect.signature(env_cls.__init__).parameters
    merged = {k: p.default for k, p in params.items()
              if k != "self" and p.default is not inspect.Parameter.empty}
    merged.update(spec_kwargs)
    merged.update(kwargs)
    for key in ("render_mode", "max_episode_steps", "disable_env_checker"):
        merged.pop(key, None)
    return merged


def _read_transitions(P: dict, nS: int, nA: int, env_id: str) -> tuple[np.ndarray, ...]:
    rows: list[tuple[int, int, int, float, float, bool]] = []
    for s in range(nS):
        if s not in P:
            raise SpmnError(f"{env_id}: env.unwrapped.P has no entry for state {s}")
        for a in range(nA):
            for p, s2, r, term in P[s].get(a, ()):
                if p > 0:
                    rows.append((a, s, int(s2), float(p), float(r), bool(term)))
            if not P[s].get(a):
                raise SpmnError(f"{env_id}: env.unwrapped.P[{s}][{a}] is empty")
    a, s, t, p, r, term = (np.array(col) for col in zip(*rows))
    return (a.astype(np.int64), s.astype(np.int64), t.astype(np.int64), p.astype(np.float64),
            r.astype(np.float64), term.astype(bool))


def _terminal_states(s: np.ndarray, t: np.ndarray, term: np.ndarray, nS: int,
                     start: np.ndarray) -> np.ndarray:
    """Largest consistent set: targets of terminated transitions never entered live from a live state."""
    T = np.zeros(nS, dtype=bool)
    T[t[term]] = True
    T &= start <= 0
    while True:
        conflict = ~T[s] & ~term & T[t]
        if not conflict.any():
            return T
        T[t[conflict]] = False


def mdp_from_gymnasium(cls: type, env_id: str, **kwargs: Any) -> Any:
    """Build ``cls`` (a TabularMDP) from a Gymnasium toy-text env; kwargs go to ``gymnasium.make``."""
    gym = _import_gymnasium()
    if env_id not in gym.envs.registry:
        have = [e for e in SUPPORTED_IDS if e in gym.envs.registry]
        raise SpmnError(f"unknown Gymnasium id {env_id!r} (gymnasium {gym.__version__}); "
                        f"tabular ids available: {', '.join(have)}")
    if kwargs.get("fickle_passenger"):
        raise SpmnError(f"{env_id}: fickle_passenger=True changes destinations outside env.P, "
                        "so no exact tabular model exists")
    try:
        env = gym.make(env_id, **kwargs)
    except TypeError as exc:
        raise SpmnError(f"{env_id}: bad keyword arguments {sorted(kwargs)}: {exc}") from None
    try:
        u = env.unwrapped
        P = getattr(u, "P", None)
        if not isinstance(P, dict) or not hasattr(u.observation_space, "n") \
                or not hasattr(u.action_space, "n"):
            raise SpmnError(f"{env_id} exposes no tabular model (env.unwrapped.P with Discrete "
                            "observation and action spaces)")
        nS, nA = int(u.observation_space.n), int(u.action_space.n)
        isd = np.asarray(getattr(u, "initial_state_distrib", np.full(nS, 1.0 / nS)), dtype=np.float64)
        a, s, t, p, r, term = _read_transitions(P, nS, nA, env_id)
        env_cls = type(u)
        spec = env.spec
        steps = spec.max_episode_steps if spec is not None else None
    finally:
        env.close()
    env_kwargs = _env_kwargs(env_cls, dict(gym.spec(env_id).kwargs), kwargs)
    start = isd / isd.sum()
    T = _terminal_states(s, t, term, nS, start)
    redirect = term & ~T[t] & ~T[s]
    copies = np.unique(t[redirect])
    N = nS + copies.size
    t_model = t.copy()
    t_model[redirect] = nS + np.searchsorted(copies, t[redirect])
    keys = (a * N + s) * N + t_model
    uniq, inv = np.unique(keys, return_inverse=True)
    psum = np.bincount(inv, weights=p)
    rsum = np.bincount(inv, weights=p * r) / psum  # probability-weighted mean reward per (a, s, s')
    coords = (uniq // N, uniq % N)
    Pf = sp.csr_array((psum, coords), shape=(nA * N, N))
    Rf = sp.csr_array((rsum, coords), shape=(nA * N, N))
    Pl = [Pf[i * N:(i + 1) * N] for i in range(nA)]
    Rl = [Rf[i * N:(i + 1) * N] for i in range(nA)]
    terminal = np.concatenate([T, np.ones(copies.size, dtype=bool)])
    start_full = np.concatenate([start, np.zeros(copies.size)])
    observation = np.concatenate([np.arange(nS), copies])
    mdp = cls(Pl, Rl, terminal=terminal, start=start_full,
              max_episode_steps=int(steps) if steps else 200, observation=observation)
    mdp.env_id = env_id
    mdp.env_kwargs = env_kwargs
    return mdp
