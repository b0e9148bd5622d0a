"""Logged transitions as discrete code arrays: the column reader the discrete kinds share.

Columns: each state ``s`` and ``s_next``, each action, the reward, an optional boolean
``terminated``; a dict of columns, a DataFrame or an npz file. Errors name the column.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import DataError
from ..schema import Variable


def names_of(x: str | Variable | Sequence[str | Variable]) -> list[Variable | str]:
    """One name or Variable, or a sequence of them, as a list."""
    if isinstance(x, (str, Variable)):
        return [x]
    return list(x)


def name(v: str | Variable) -> str:
    return v.name if isinstance(v, Variable) else v


def column(data: Any, name: str, what: str) -> np.ndarray:
    """The 1-D numeric column ``name`` of ``data`` (``what`` it is names it in errors)."""
    try:
        col = data[name]
    except (KeyError, IndexError, ValueError):
        cols = list(data.keys()) if hasattr(data, "keys") else []
        raise DataError(f"{what} column {name!r} is missing from the transitions; "
                        f"columns: {cols}") from None
    arr = np.asarray(col)
    if arr.ndim != 1:
        raise DataError(f"column {name!r} must be 1-D, got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise DataError(f"column {name!r} holds {arr.dtype} values; expected numbers")
    return arr


def codes(arr: np.ndarray, name: str, k: int | None, kind: str = "WorldModel") -> np.ndarray:
    """Integer codes 0..k-1 of a column; floats must be whole numbers (``kind`` learns
    discrete variables: the message points continuous columns to the continuous kinds)."""
    if arr.dtype.kind == "f":
        if np.isnan(arr).any():
            raise DataError(f"column {name!r} has NaN in row {int(np.argmax(np.isnan(arr)))}; "
                            "transitions must be complete")
        if (arr != np.round(arr)).any():
            raise DataError(f"column {name!r} must hold integer codes, found "
                            f"{arr[arr != np.round(arr)][0]!r}: {kind} learns discrete "
                            "states and actions; for continuous columns use "
                            "spmn.ContinuousWorldModel (learned threshold regions) or "
                            "spmn.GaussianWorldModel (linear-Gaussian dynamics)")
    a = arr.astype(np.int64)
    if a.size and a.min() < 0:
        raise DataError(f"column {name!r} has negative code {int(a.min())}")
    if k is not None and a.size and a.max() >= k:
        raise DataError(f"column {name!r} has code {int(a.max())}, outside 0..{k - 1} of its schema")
    return a


def read_transitions(data: Any, states: Sequence[str | Variable],
                     actions: Sequence[str | Variable], reward: str, terminated: str | None,
                     kind: str = "WorldModel"):
    """``(S, A, r, S_next, terminated)``: states, actions and next states as int64 code rows,
    the reward as float64, the end-of-episode flag as bool (all False without a column)."""
    if isinstance(data, np.lib.npyio.NpzFile):
        data = {k: data[k] for k in data.files}
    if not (isinstance(data, Mapping) or hasattr(data, "columns")):
        raise DataError("transitions must be a dict of columns, a DataFrame or an npz file")
    snames, anames = [name(v) for v in states], [name(v) for v in actions]
    given = {name(v): v.k for v in (*states, *actions) if isinstance(v, Variable)}
    S = [column(data, n, "state") for n in snames]
    Sn = [column(data, f"{n}_next", "next-state") for n in snames]
    A = [column(data, n, "action") for n in anames]
    r = column(data, reward, "reward").astype(np.float64)
    n = r.shape[0]
    for nm, col in zip([*snames, *(f"{x}_next" for x in snames), *anames], [*S, *Sn, *A]):
        if col.shape[0] != n:
            raise DataError(f"column {nm!r} has {col.shape[0]} rows, expected {n} "
                            f"(as the reward column {reward!r})")
    if not np.all(np.isfinite(r)):
        raise DataError(f"reward column {reward!r} has NaN or infinite values")
    term = np.zeros(n, bool)
    if terminated is not None:
        t = column(data, terminated, "terminated")
        if t.dtype.kind != "b" and not np.isin(t, (0, 1)).all():
            raise DataError(f"terminated column {terminated!r} must be boolean (or 0/1)")
        term = t.astype(bool)

    def stack(cols, nms, bases):
        if not cols:
            return np.zeros((n, 0), np.int64)
        return np.stack([codes(c, nm, given.get(b), kind) for c, nm, b in zip(cols, nms, bases)],
                        axis=1)

    return (stack(S, snames, snames), stack(A, anames, anames), r,
            stack(Sn, [f"{x}_next" for x in snames], snames), term)
