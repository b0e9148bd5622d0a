"""Where the greedy policy goes in the learned model, and whether the leaves it rests on there
were logged often enough.

Checking only the start states misses the usual failure of a model learned from random logs:
the start is well logged, but the policy steers into states the logs barely show, where a leaf
pools what the data could not tell apart (CrossingTraffic 6: a 5-sample leaf that pools the
no-op with the move into the goal, so the model believes waiting next to the goal reaches it).
:func:`policy_paths` samples the learned model's own rollouts under the greedy policy (seeded),
and :func:`warn_thin_paths` warns with a :class:`~spmn.errors.CoverageWarning` naming the thin
factors along them.
"""
from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from ...errors import CoverageWarning
from .solved import FactoredSolution

#: Model rollouts behind the path check, and the longest one for a discounted solution.
N_PATHS = 256
MAX_STEPS = 200


def rollout_steps(gamma: float, horizon: int | None) -> int:
    """H for a finite horizon; else the steps until γ^t < 0.01 (at most MAX_STEPS)."""
    if horizon is not None:
        return int(horizon)
    if gamma <= 0.0:
        return 1
    return int(min(MAX_STEPS, math.ceil(math.log(0.01) / math.log(gamma))))


def policy_paths(sol: FactoredSolution, S0: np.ndarray, n_paths: int = N_PATHS,
                 seed: Any = 0) -> tuple[np.ndarray, np.ndarray]:
    """(states, steps): every (s, t) of ``n_paths`` rollouts of the learned model under the
    greedy policy, started at the rows of ``S0`` in turn; a rollout stops when the model ends
    the episode. Deterministic given ``seed``."""
    mdp, rng = sol.mdp, np.random.default_rng(seed)
    if S0.shape[0] == 0 or n_paths <= 0:
        return np.zeros((0, mdp.d), np.int64), np.zeros(0, np.int64)
    S = S0[np.arange(n_paths) % S0.shape[0]].astype(np.int64)
    seen_S, seen_t = [], []
    for t in range(rollout_steps(sol.gamma, sol.horizon)):
        if S.shape[0] == 0:
            break
        seen_S.append(S)
        seen_t.append(np.full(S.shape[0], t, np.int64))
        if sol.horizon is not None and t == sol.horizon - 1:
            break
        X = mdp.with_actions(S, sol.joint_policy(S, t if sol.horizon is not None else 0))
        nxt = np.empty_like(S)
        for i in range(mdp.d):
            P = mdp.factor(i, X)
            u = rng.random(S.shape[0])[:, None]
            nxt[:, i] = np.minimum((np.cumsum(P, axis=1) < u).sum(axis=1), P.shape[1] - 1)
        go = rng.random(S.shape[0]) < mdp.continuation(X)
        S = nxt[go]
    return np.concatenate(seen_S), np.concatenate(seen_t)


def thin_pairs(sol: FactoredSolution, S: np.ndarray, T: np.ndarray, min_count: int
               ) -> tuple[np.ndarray, dict[str, float]]:
    """Which (s, t) pairs' greedy action uses a leaf or reward cell logged fewer than
    ``min_count`` times, and the fewest count per culprit factor."""
    mdp = sol.mdp
    thin = np.zeros(S.shape[0], bool)
    culprits: dict[str, float] = {}
    if S.shape[0] == 0 or min_count <= 0:
        return thin, culprits
    steps = T if sol.horizon is not None else np.zeros_like(T)
    joint = np.empty(S.shape[0], np.int64)
    for t in np.unique(steps).tolist():
        at = steps == t
        joint[at] = sol.joint_policy(S[at], t)
    X = mdp.with_actions(S, joint)
    for target, c in mdp.leaf_counts(X).items():
        low = c < min_count
        if low.any():
            thin |= low
            culprits[target] = float(c[low].min())
    return thin, culprits


def warn_thin_paths(sol: FactoredSolution, S0: np.ndarray, min_count: int,
                    seed: Any = 0, n_paths: int = N_PATHS) -> int:
    """Warn (CoverageWarning) when the greedy policy, followed in the learned model from
    ``S0``, reaches (state, step) pairs whose leaves were logged fewer than ``min_count``
    times; returns the number of such distinct pairs."""
    if min_count <= 0 or S0.shape[0] == 0:
        return 0
    S, T = policy_paths(sol, S0, n_paths, seed)
    pairs = np.unique(np.concatenate([S, T[:, None]], axis=1), axis=0)
    thin, culprits = thin_pairs(sol, pairs[:, :-1], pairs[:, -1], min_count)
    k = int(thin.sum())
    if k:
        worst = sorted(culprits, key=culprits.get)
        names = ", ".join(f"{n} ({culprits[n]:.0f})" for n in worst[:6]) + \
            (" ..." if len(worst) > 6 else "")
        share = float(_members(S, T, pairs[thin]).mean())
        warnings.warn(
            f"along {n_paths} rollouts of the learned model under the greedy policy, "
            f"{k} of {len(pairs)} distinct (state, step) pairs ({share:.0%} of the visits) rest "
            f"on leaves logged fewer than {min_count} times (fewest samples: {names}); the "
            "model's values there pool what the logs could not tell apart: log more "
            "transitions where the policy goes", CoverageWarning, stacklevel=3)
    return k


def _members(S: np.ndarray, T: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Mask of the visits (S[i], T[i]) that are among ``pairs``."""
    rows = np.concatenate([S, T[:, None]], axis=1)
    if pairs.shape[0] == 0:
        return np.zeros(rows.shape[0], bool)
    both = np.concatenate([pairs, rows])
    _, inv = np.unique(both, axis=0, return_inverse=True)
    inv = inv.ravel()
    return np.isin(inv[len(pairs):], inv[:len(pairs)])
