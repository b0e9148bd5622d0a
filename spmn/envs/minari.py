"""Minari datasets (the offline-RL standard, optional extra ``spmn[minari]``) as logged
transitions: each episode of ``n`` steps becomes ``n`` rows ``(s, a, r, s_next)`` with the
episode's ``terminated`` and ``truncated`` flags kept apart.

Only a termination ends the episode in the model's sense (the next state is absorbing, value
0); a truncation (a time limit) is an ordinary transition whose next state was observed, so a
world model fits it as such (``WorldModel(..., terminated="terminated")``). Observations and
actions become columns: a discrete space one column (``s`` / ``a``), a Box or MultiDiscrete
one column per entry (``s0, s1, ...``), a Dict space one column per key (its entries
numbered when a key holds several). :func:`transitions` gives numpy columns for in-memory
fits; :func:`partitions` a dask DataFrame of a few episodes per partition, read on the workers
from the dataset's folder, for :mod:`spmn.learn.distributed` fits.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import DataError

__all__ = ["open_dataset", "partitions", "transitions"]


def open_dataset(dataset: Any):
    """A ``minari.MinariDataset`` from itself, a local dataset id, or a dataset folder (never
    downloads)."""
    try:
        import minari
    except ImportError as exc:  # pragma: no cover - optional extra
        raise ImportError("reading Minari datasets needs the optional extra: "
                          "pip install 'spmn[minari]'") from exc
    if isinstance(dataset, minari.MinariDataset):
        return dataset
    if isinstance(dataset, (str, os.PathLike)):
        if os.path.isdir(os.path.join(os.fspath(dataset), "data")):
            return minari.MinariDataset(os.path.join(os.fspath(dataset), "data"))
        if os.path.isdir(os.fspath(dataset)):
            return minari.MinariDataset(dataset)
        try:
            return minari.load_dataset(str(dataset), download=False)
        except (FileNotFoundError, ValueError) as exc:
            raise DataError(f"no local Minari dataset {str(dataset)!r} ({exc}); spmn does not "
                            "download datasets: run `minari download` first") from None
    raise DataError(f"expected a MinariDataset, a dataset id or a folder, got "
                    f"{type(dataset).__name__}")


def _columns(x: Any, prefix: str, n: int, what: str) -> dict[str, np.ndarray]:
    """Columns of ``n`` observations or actions (``prefix`` names them)."""
    if isinstance(x, dict):
        out: dict[str, np.ndarray] = {}
        for k in x:
            out.update(_columns(x[k], f"{prefix}_{k}", n, what))
        return out
    if isinstance(x, tuple):
        out = {}
        for j, part in enumerate(x):
            out.update(_columns(part, f"{prefix}{j}", n, what))
        return out
    arr = np.asarray(x)
    if arr.shape[:1] != (n,):
        raise DataError(f"{what} {prefix!r} has {arr.shape[:1]} rows, expected {n}")
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{what} {prefix!r} holds {arr.dtype} values; expected numbers")
    flat = arr.reshape(n, -1)
    if arr.ndim == 1:
        return {prefix: arr}
    return {f"{prefix}{j}": flat[:, j] for j in range(flat.shape[1])}


def _episode_rows(ep, state: str, action: str, episode: str) -> dict[str, np.ndarray]:
    n = len(ep.rewards)
    obs = _columns(ep.observations, state, n + 1, "observation")
    out = {k: v[:-1] for k, v in obs.items()}
    out.update({f"{k}_next": v[1:] for k, v in obs.items()})
    out.update(_columns(ep.actions, action, n, "action"))
    out["r"] = np.asarray(ep.rewards, np.float64)
    out["terminated"] = np.asarray(ep.terminations, bool)
    out["truncated"] = np.asarray(ep.truncations, bool)
    out[episode] = np.full(n, int(ep.id), np.int64)
    out["step"] = np.arange(n, dtype=np.int64)
    return out


def transitions(dataset: Any, episodes: Sequence[int] | None = None, *, state: str = "s",
                action: str = "a", episode: str = "episode") -> dict[str, np.ndarray]:
    """The transitions of a Minari dataset (or of the episodes ``episodes``) as numpy
    columns: ``s``/``s_next`` (or ``s0, s0_next, ...``), ``a`` (or ``a0, ...``), ``r``,
    ``terminated``, ``truncated``, ``episode`` (the episode id) and ``step`` (within it)."""
    ds = open_dataset(dataset)
    eps = ds.iterate_episodes(None if episodes is None else list(episodes))
    rows = [_episode_rows(ep, state, action, episode) for ep in eps]
    if not rows:
        raise DataError("the Minari dataset (or the selection) holds no episodes")
    return {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}


def _read_chunk(episodes: list[int], path: str, state: str, action: str, episode: str):
    import pandas as pd

    return pd.DataFrame(transitions(path, episodes, state=state, action=action,
                                    episode=episode))


def partitions(dataset: Any, episodes_per_partition: int = 100, *, state: str = "s",
               action: str = "a", episode: str = "episode"):
    """The dataset's transitions as a dask DataFrame, ``episodes_per_partition`` episodes per
    partition, each read from the dataset's folder where it runs (a worker needs that folder:
    local, or on a shared file system)."""
    import dask.dataframe as dd

    ds = open_dataset(dataset)
    path = str(ds.spec.data_path)
    idx = np.asarray(ds.episode_indices, np.int64)
    if not idx.size:
        raise DataError("the Minari dataset holds no episodes")
    k = max(1, int(episodes_per_partition))
    chunks = [idx[i:i + k].tolist() for i in range(0, idx.size, k)]
    meta = _read_chunk(chunks[0][:1], path, state, action, episode).iloc[:0]
    return dd.from_map(_read_chunk, chunks, path=path, state=state, action=action,
                       episode=episode, meta=meta, enforce_metadata=False)
