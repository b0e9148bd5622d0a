"""The same passes over evidence held in a ``dask.array`` (optional extra ``spmn[dask]``).

Each function takes a FlatCircuit and a 2-D dask array of evidence (rows x variables; the
columns are gathered into one chunk) and evaluates it block by block with ``map_blocks``: the
FlatCircuit (without its node objects) enters the task graph once, as one ``dask.delayed`` key
that every block task reads, so a distributed scheduler ships it to each worker once. Each
block runs a backend of :mod:`spmn.kernels` (``backend=None``: the fastest built on the
worker), so a Dask cluster does the work unchanged, and results equal the in-memory ones
block for block. :func:`expected_counts` sums the per-block counts (the sufficient statistics
of parameter learning) across blocks. The Bellman pass of a recurrent template is
:func:`node_values` (the MEU pass) with the interface leaves bound to ``values``.

Outputs are lazy dask arrays except :func:`expected_counts`, which computes by default.
Sampling needs row-aligned random draws and stays in memory (``spmn.circuit.queries.sample``).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import DataError
from ..flat import FlatCircuit

try:
    import dask
    import dask.array as da
except ImportError as exc:  # pragma: no cover - optional extra
    raise ImportError("spmn.kernels.dask needs the optional extra: pip install 'spmn[dask]'") \
        from exc

__all__ = ["log_likelihood", "meu", "policy", "mpe", "node_values", "expected_counts",
           "is_dask_array"]


def is_dask_array(X) -> bool:
    """Whether ``X`` is a dask array (checked without importing dask elsewhere)."""
    return isinstance(X, da.Array)


def _ship(flat: FlatCircuit):
    """The circuit as one graph key, without the node objects the kernels never read."""
    return dask.delayed(dataclasses.replace(flat, node_map=()), pure=True)


def _evidence(flat: FlatCircuit, X) -> "da.Array":
    X = da.asarray(X)
    if X.ndim != 2 or X.shape[1] != flat.n_vars:
        raise DataError(f"evidence must have shape (rows, {flat.n_vars}), got {X.shape}")
    if X.dtype != np.float64:
        X = X.astype(np.float64)
    return X.rechunk({1: -1})


def _values(flat: FlatCircuit, values) -> np.ndarray:
    from ._common import check_values
    return check_values(flat, values)


def _backend(name):
    from . import get
    return get(name)


# ---------------------------------------------------------------------------- block functions
def _ll_block(x, flat, backend):
    return _backend(backend).log_likelihood(flat, x)


def _meu_block(x, flat, values, backend):
    return _backend(backend).meu(flat, x, values)


def _policy_block(x, flat, values, backend):
    return _backend(backend).policy(flat, x, values)


def _mpe_block(x, flat, backend):
    filled, logp = _backend(backend).mpe(flat, x)
    return np.concatenate([filled, logp[:, None]], axis=1)


def _nodes_block(x, flat, values, nodes, backend):
    L, U = _backend(backend).node_values(flat, x, values, nodes)
    return np.concatenate([L, U], axis=1)


def _counts_block(x, flat, values, backend):
    edges, stats = _backend(backend).expected_counts(flat, x, values)
    return np.concatenate([edges, stats])[None, :]


# ---------------------------------------------------------------------------- queries
def log_likelihood(flat: FlatCircuit, X, *, backend: str | None = None) -> "da.Array":
    """log p(evidence) per row, a lazy (rows,) dask array."""
    X = _evidence(flat, X)
    return X.map_blocks(_ll_block, _ship(flat), backend, drop_axis=1, dtype=np.float64)


def meu(flat: FlatCircuit, X, values=None, *, backend: str | None = None) -> "da.Array":
    """Root U per row (the MEU given the evidence), a lazy (rows,) dask array."""
    X = _evidence(flat, X)
    return X.map_blocks(_meu_block, _ship(flat), _values(flat, values), backend, drop_axis=1,
                        dtype=np.float64)


def policy(flat: FlatCircuit, X, values=None, *, backend: str | None = None) -> "da.Array":
    """Decisions of the MEU policy, (rows, variables), NaN where not decided."""
    X = _evidence(flat, X)
    return X.map_blocks(_policy_block, _ship(flat), _values(flat, values), backend,
                        dtype=np.float64)


def mpe(flat: FlatCircuit, X, *, backend: str | None = None):
    """(completed evidence (rows, variables), log p of the completion (rows,)), lazy."""
    X = _evidence(flat, X)
    both = X.map_blocks(_mpe_block, _ship(flat), backend, dtype=np.float64,
                        chunks=(X.chunks[0], (flat.n_vars + 1,)))
    return both[:, :flat.n_vars], both[:, flat.n_vars]


def node_values(flat: FlatCircuit, X, values, nodes, *, backend: str | None = None):
    """``(L, U)`` of ``nodes``, each a lazy (rows, len(nodes)) dask array."""
    X = _evidence(flat, X)
    nodes = np.asarray(nodes, dtype=np.int64).reshape(-1)
    if nodes.size and (nodes.min() < 0 or nodes.max() >= flat.n_nodes):
        raise DataError(f"node indices must lie in 0..{flat.n_nodes - 1}")
    both = X.map_blocks(_nodes_block, _ship(flat), _values(flat, values), nodes, backend,
                        dtype=np.float64, chunks=(X.chunks[0], (2 * nodes.size,)))
    return both[:, :nodes.size], both[:, nodes.size:]


def expected_counts(flat: FlatCircuit, X, values=None, *, backend: str | None = None,
                    compute: bool = True):
    """``(edge_counts (edges,), leaf_stats (len(params),))`` summed over all rows: each block
    counts its rows, then the blocks are added up. ``compute=False`` returns lazy arrays."""
    X = _evidence(flat, X)
    width = flat.n_edges + flat.params.shape[0]
    per_block = X.map_blocks(_counts_block, _ship(flat), _values(flat, values), backend,
                             dtype=np.float64, chunks=((1,) * X.numblocks[0], (width,)))
    total = per_block.sum(axis=0)
    edges, stats = total[:flat.n_edges], total[flat.n_edges:]
    if compute:
        edges, stats = dask.compute(edges, stats)
    return edges, stats
