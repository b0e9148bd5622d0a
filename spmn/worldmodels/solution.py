"""The one protocol every solved world model answers, and the state parsing they share.

A solution of any kind (tabular :class:`~.tabular.Solution`, :class:`~.gaussian.GaussianSolution`,
the encoded model's, and the kinds to come) answers

    value(states, t=0) -> V_t(s)      policy(states, t=0) -> π_t(s)      q(states, t=0) -> Q_t(s, ·)

where ``states`` is a dict of columns or a DataFrame (keyed by the model's state names), or a
rows x state-variables array; a 1-D array with one entry per state variable (or a scalar, for
one state variable) is one state, and then the answer is that state's alone (a float for
``value``). With one state variable a 1-D array is a column of states. ``t`` is the step of a
finite-horizon solution (0 <= t < horizon, an error otherwise); a stationary (discounted)
solution answers every ``t >= 0`` alike. The fields ``values``, ``gamma``, ``horizon`` (None
when discounted), ``iterations`` and ``residual`` (sup-norm Bellman residual) complete it.
"""
from __future__ import annotations

from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from ..errors import DataError, SolverError


@runtime_checkable
class SolutionProtocol(Protocol):
    """What every solved world model answers (module docstring)."""

    @property
    def values(self) -> np.ndarray: ...

    @property
    def gamma(self) -> float: ...

    @property
    def horizon(self) -> int | None: ...

    @property
    def iterations(self) -> int: ...

    @property
    def residual(self) -> float: ...

    def value(self, states: Any, t: int = 0) -> Any: ...

    def policy(self, states: Any, t: int = 0) -> Any: ...

    def q(self, states: Any, t: int = 0) -> Any: ...


def state_rows(states: Any, names: Sequence[str]) -> tuple[np.ndarray, bool]:
    """``(rows x len(names) array, one)``: the states in column order, and whether the input
    was a single state (module docstring). Errors name the missing column or the shape."""
    n = len(names)
    if isinstance(states, Mapping) or hasattr(states, "columns"):
        cols = []
        for name in names:
            try:
                cols.append(np.asarray(states[name]))
            except (KeyError, IndexError):
                have = list(states.keys()) if hasattr(states, "keys") else []
                raise DataError(f"state column {name!r} is missing; the model's state "
                                f"variables are {list(names)}, got columns {have}") from None
        one = all(c.ndim == 0 for c in cols)
        if any(c.ndim > 1 for c in cols):
            raise DataError("state columns must be 1-D")
        X = np.stack([np.atleast_1d(c) for c in cols], axis=1) if cols else np.zeros((1, 0))
        return X, one
    X = np.asarray(states)
    if X.dtype == object:
        raise DataError(f"states must be numbers, got an object array of shape {X.shape}")
    if X.ndim == 0:
        if n != 1:
            raise DataError(f"one number is a state of a one-variable model; this one has "
                            f"{n} state variables {list(names)}")
        return X.reshape(1, 1), True
    if X.ndim == 1:
        if n == 1:
            return X[:, None], False
        if X.shape[0] == n:
            return X[None, :], True
        raise DataError(f"a 1-D state needs one entry per state variable {list(names)} "
                        f"({n}), got {X.shape[0]}")
    if X.ndim != 2 or X.shape[1] != n:
        raise DataError(f"states must be rows x {n} state variables {list(names)}, "
                        f"got shape {X.shape}")
    return X, False


def check_step(t: Any, horizon: int | None) -> int:
    """``t`` as an int: 0 <= t < horizon for a finite horizon, any t >= 0 when stationary."""
    if isinstance(t, bool) or not isinstance(t, (int, np.integer)):
        raise SolverError(f"step t must be an integer, got {t!r}")
    t = int(t)
    if horizon is None:
        if t < 0:
            raise SolverError(f"step t={t} must be >= 0")
        return t
    if not 0 <= t < horizon:
        raise SolverError(f"step t={t} is outside 0..{horizon - 1} of this horizon-{horizon} "
                          "solution")
    return t
