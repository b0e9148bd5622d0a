"""User-facing queries: check the evidence against the schema, pick a backend, run its pass.

Every query accepts a numpy array (rows x variables, schema order; NaN = unobserved), a dict of
columns or a DataFrame, and ``backend=None | "cython" | "numba" | "reference"``. Evidence given
as a ``dask.array`` is evaluated block by block by :mod:`spmn.kernels.dask` (lazy results).
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from .. import kernels
from ..errors import DataError, SchemaError
from .structure import Structure

#: Rows x nodes random draws generated at once when sampling (bounds memory).
SAMPLE_CELLS = 1 << 22


def _evidence(circuit: Structure, X: Any, allow_nan=True):
    """(array, scalar?) for a query; ``X=None`` means one row with nothing observed."""
    if X is None:
        return np.full((1, len(circuit.schema)), np.nan), True
    single = np.ndim(X) == 1 and not hasattr(X, "keys") and not hasattr(X, "columns")
    return circuit.schema.validate_data(X, allow_nan=allow_nan), single


def _dask(X: Any):
    """spmn.kernels.dask when ``X`` is a dask array, else None (dask is never imported here)."""
    if type(X).__module__.split(".")[0] != "dask":
        return None
    from ..kernels import dask as dask_kernels
    return dask_kernels if dask_kernels.is_dask_array(X) else None


def _values(circuit: Structure, values: Iterable[float] | None) -> np.ndarray | None:
    """Checked interface values; None stays None (the plans bind zeros)."""
    if values is None:
        return None
    n = circuit.compile().n_interface
    v = np.ascontiguousarray(np.asarray(values, dtype=np.float64).reshape(-1))
    if v.shape != (n,):
        raise DataError(f"interface_values has {v.size} entries; the circuit has {n} interface slots")
    if not np.all(np.isfinite(v)):
        raise DataError("interface_values must be finite")
    return v


def log_likelihood(circuit: Structure, X: Any, *, allow_missing: bool = True,
                   backend: str | None = None) -> np.ndarray:
    dk = _dask(X)
    if dk is not None:
        return dk.log_likelihood(circuit.compile(), X, backend=backend)
    Xa, _ = _evidence(circuit, X, allow_nan=allow_missing)
    return kernels.get(backend).plan(circuit.compile(), "log_likelihood")(Xa)


def meu(circuit: Structure, X: Any = None, *, interface_values=None, backend=None):
    dk = _dask(X)
    if dk is not None:
        return dk.meu(circuit.compile(), X, _values(circuit, interface_values), backend=backend)
    Xa, single = _evidence(circuit, X)
    out = kernels.get(backend).plan(circuit.compile(), "meu")(Xa, _values(circuit, interface_values))
    return float(out[0]) if single else out


def policy(circuit: Structure, X: Any = None, *, decision: str | None = None,
           interface_values=None, backend=None):
    if not circuit.decisions:
        raise SchemaError("the circuit has no decision variables, so no policy")
    decision = circuit.decisions[0] if decision is None else decision
    col = circuit.schema.index(decision)
    if circuit.schema[col].role != "decision":
        raise SchemaError(f"{decision!r} is a {circuit.schema[col].role} variable, not a decision")
    dk = _dask(X)
    if dk is not None:
        dec = dk.policy(circuit.compile(), X, _values(circuit, interface_values), backend=backend)
        return dk.da.where(dk.da.isnan(dec[:, col]), -1, dec[:, col]).astype(np.int64)
    Xa, single = _evidence(circuit, X)
    dec = kernels.get(backend).plan(circuit.compile(), "policy")(Xa,
                                                                 _values(circuit, interface_values))
    if single:
        v = dec[0, col]
        return -1 if np.isnan(v) else int(v)
    return np.where(np.isnan(dec[:, col]), -1, dec[:, col]).astype(np.int64)


def mpe(circuit: Structure, X: Any = None, *, return_log_prob: bool = False, backend=None):
    dk = _dask(X)
    if dk is not None:
        filled, logp = dk.mpe(circuit.compile(), X, backend=backend)
        return (filled, logp) if return_log_prob else filled
    Xa, single = _evidence(circuit, X)
    filled, logp = kernels.get(backend).plan(circuit.compile(), "mpe")(Xa)
    if single:
        filled, logp = filled[0], float(logp[0])
    return (filled, logp) if return_log_prob else filled


def sample(circuit: Structure, n: int | None = None, *, seed=None, evidence: Any = None,
           backend: str | None = None) -> np.ndarray:
    if evidence is None:
        if n is None or int(n) != n or n < 0:
            raise DataError(f"sample needs a number of rows n >= 0, got {n!r}")
        Xa = np.full((int(n), len(circuit.schema)), np.nan)
    else:
        Xa, _ = _evidence(circuit, evidence)
        if n is not None and n != Xa.shape[0]:
            raise DataError(f"n={n} but evidence has {Xa.shape[0]} rows")
    flat = circuit.compile()
    rng = np.random.default_rng(seed)
    run = kernels.get(backend).plan(flat, "sample")  # the evidence is checked above, once
    out = np.empty_like(Xa)
    step = max(1, SAMPLE_CELLS // flat.n_nodes)
    for lo in range(0, Xa.shape[0], step):
        hi = min(lo + step, Xa.shape[0])
        u = rng.random((hi - lo, flat.n_nodes))
        z = rng.standard_normal((hi - lo, flat.n_draws))
        out[lo:hi] = run(Xa[lo:hi], None, u, z)
    return out
