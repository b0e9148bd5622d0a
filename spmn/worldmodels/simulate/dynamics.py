"""What every simulator of a learned world model shares: the start distribution, inverse-CDF
tables and the checks of actions and policies.

A *dynamics* object (one per model kind: :mod:`.tabular`, :mod:`.factored`, :mod:`.gaussian`)
holds N environments' states in a small dict of arrays and advances all of them in one batched
pass, ``step(state, actions, done, rng) -> (reward, terminated)``: environments flagged in
``done`` are reset from the start distribution instead of stepped (Gymnasium's next-step
autoreset), the others draw ``(s', r, terminated)`` from the model's p(s', r | s, a). Every
random draw comes from the ``numpy.random.Generator`` passed in, so a seed fixes the run.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import DataError

try:  # an action outside the space is Gymnasium's InvalidAction as well as a spmn DataError
    from gymnasium.error import InvalidAction as _GymInvalidAction
except ImportError:  # pragma: no cover - gymnasium is an optional extra
    class _GymInvalidAction(Exception):  # type: ignore[no-redef]
        pass


class InvalidActionError(DataError, _GymInvalidAction):
    """An action outside the simulator's action space (the message names the action, the
    environment and the space)."""


def cdf(p: np.ndarray) -> np.ndarray:
    """Cumulative probabilities along the last axis, exactly 1.0 from the last positive entry on,
    so that ``first j with u < cdf[j]`` (u in [0, 1)) never picks a value of probability 0."""
    p = np.asarray(p, np.float64)
    c = np.cumsum(p, axis=-1)
    tot = c[..., -1:]
    c = np.divide(c, tot, out=np.zeros_like(c), where=tot > 0)
    last = p.shape[-1] - 1 - np.argmax((p > 0)[..., ::-1], axis=-1)
    idx = np.arange(p.shape[-1])
    c[idx >= last[..., None]] = 1.0
    return c


def pick(c: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draws, row by row: the first j with ``u < c[..., j]`` (the numpy twin of the
    compiled ``_search``)."""
    return np.minimum((c <= u[..., None]).sum(axis=-1), c.shape[-1] - 1)


def unravel_rows(idx: np.ndarray, cards: np.ndarray) -> np.ndarray:
    """Joint indices (C order) -> state rows, by repeated divmod: any number of variables
    (``numpy.unravel_index`` takes at most 64)."""
    rest = np.asarray(idx, np.int64).copy()
    out = np.zeros((rest.size, len(cards)), np.int64)
    for j in range(len(cards) - 1, -1, -1):
        rest, out[:, j] = np.divmod(rest, int(cards[j]))
    return out


def start_weights(n: int, probs: Any, what: str) -> np.ndarray:
    """Checked start probabilities: ``n`` finite non-negative numbers summing to one (1e-9)."""
    if probs is None:
        return np.full(n, 1.0 / n)
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 1 or p.shape[0] != n:
        raise DataError(f"start_probs must hold one probability per {what}: expected shape "
                        f"({n},), got {p.shape}")
    if not np.all(np.isfinite(p)) or (p < 0).any():
        j = int(np.flatnonzero(~np.isfinite(p) | (p < 0))[0])
        raise DataError(f"start_probs[{j}] = {float(p[j])!r} is not a probability (finite, >= 0)")
    s = float(p.sum())
    if abs(s - 1.0) > 1e-9:
        raise DataError(f"start_probs must sum to 1, they sum to {s:.12g} (off by {s - 1.0:.3g})")
    return p


def check_discrete_actions(actions: Any, n: int, cards: np.ndarray, names: list[str]
                           ) -> np.ndarray:
    """Joint action codes (n,) of a batch: (n,) codes for one action variable, (n, m) codes for
    several; raises :class:`InvalidActionError` naming the first bad environment and action."""
    a = np.asarray(actions)
    m = len(names)
    shape = (n,) if m == 1 else (n, m)
    if a.shape != shape and not (m > 1 and n == 1 and a.shape == (m,)):
        raise InvalidActionError(f"actions must have shape {shape} (one code per environment"
                                 f"{'' if m == 1 else ' and action variable ' + str(names)}), "
                                 f"got {a.shape}")
    if a.dtype.kind not in "biu":
        if a.dtype.kind == "f" and np.all(np.isfinite(a)) and np.all(a == np.round(a)):
            a = a.astype(np.int64)
        else:
            bad = a.reshape(n, -1)[0]
            raise InvalidActionError(f"action {bad.tolist() if m > 1 else bad[0]!r} is not an "
                                     f"integer code of {names}: the action space is "
                                     f"{cards.tolist()} discrete values")
    A = a.reshape(n, m).astype(np.int64)
    bad = (A < 0) | (A >= cards[None, :])
    if bad.any():
        i = int(np.flatnonzero(bad.any(axis=1))[0])
        j = int(np.flatnonzero(bad[i])[0])
        raise InvalidActionError(f"action {A[i].tolist() if m > 1 else int(A[i, 0])!r} of "
                                 f"environment {i} is outside the action space: {names[j]!r} "
                                 f"takes codes 0..{int(cards[j]) - 1}")
    return A[:, 0] if m == 1 else np.ravel_multi_index(A.T, cards).astype(np.int64)


def check_continuous_actions(actions: Any, n: int, m: int, names: list[str]) -> np.ndarray:
    """(n, m) finite float64 actions; raises :class:`InvalidActionError` naming the action."""
    a = np.asarray(actions, dtype=np.float64) if np.asarray(actions).dtype.kind in "biuf" \
        else None
    if a is None:
        raise InvalidActionError(f"actions must be numbers for {names}, got "
                                 f"{np.asarray(actions).dtype}")
    if a.shape not in ((n, m),) and not (a.size == n * m and a.ndim <= 2 and
                                         (a.ndim == 1 and (n == 1 or m == 1))):
        raise InvalidActionError(f"actions must have shape ({n}, {m}) (one row per environment, "
                                 f"a column per action variable {names}), got {a.shape}")
    a = a.reshape(n, m)
    if not np.all(np.isfinite(a)):
        i = int(np.flatnonzero(~np.isfinite(a).all(axis=1))[0])
        raise InvalidActionError(f"action {a[i].tolist()!r} of environment {i} is outside the "
                                 "action space: actions must be finite")
    return a
