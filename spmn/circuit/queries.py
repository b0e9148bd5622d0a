"""User-facing queries: check the evidence against the schema, pick a backend, run its pass.

The evidence is converted once and checked once: by the compiled kernels in their first pass
over each chunk of rows (the schema's per-column table, ``Schema.check_table``), or by
``Schema.validate_data`` for the reference backend; a failing check raises the per-variable
error (variable, row, what was expected) either way. Every query accepts a numpy array (rows x variables, schema order; NaN = unobserved), a dict of
columns or a DataFrame, and ``backend=None | "cython" | "numba" | "reference"``. Evidence given
as a ``dask.array`` is evaluated block by block by :mod:`spmn.kernels.dask` (lazy results).
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from .. import kernels
from ..errors import BackendError, DataError, SchemaError
from .structure import Structure

#: Rows x nodes random draws generated at once when sampling (bounds memory).
SAMPLE_CELLS = 1 << 22


def _evidence(circuit: Structure, X: Any, allow_nan=True):
    """(array, scalar?) for a query; ``X=None`` means one row with nothing observed."""
    if X is None:
        return np.full((1, len(circuit.schema)), np.nan), True
    single = np.ndim(X) == 1 and not hasattr(X, "keys") and not hasattr(X, "columns")
    return circuit.schema.validate_data(X, allow_nan=allow_nan), single


def _single(X: Any) -> bool:
    """One row given as a 1-D array or sequence (the query then returns a scalar)."""
    if type(X) is np.ndarray:
        return X.ndim == 1
    return np.ndim(X) == 1 and not hasattr(X, "keys") and not hasattr(X, "columns")


def _plan(circuit: Structure, backend: str | None, query: str):
    """The backend's cached plan of ``query`` on the circuit, kept per circuit as well (in
    ``circuit._plans`` when the circuit has one: :class:`~.circuit.Circuit` empties it in
    ``refresh``), so that a repeated call skips the backend and plan look-ups."""
    plans = getattr(circuit, "_plans", None)
    key = (backend, query)
    got = plans.get(key) if plans is not None else None
    if got is None:
        got = kernels.get(backend).plan(circuit.compile(), query)
        if plans is not None:
            plans[key] = got
    return got


def _run(circuit: Structure, query: str, X: Any, backend, allow_nan=True, values=None):
    """(result of the plan, scalar?): the evidence converted once (no copy when it is a
    C-contiguous float64 array already) and checked once, by the compiled kernels' first pass
    over each chunk (``Schema.check_table``), or by ``Schema.validate_data`` before a plan
    that does not check (the reference backend). When the compiled check fails the
    per-variable checks run to raise ``validate_data``'s error: the same message either way,
    and evidence errors come before those of ``interface_values``, as in ``validate_data``."""
    schema = circuit.schema
    try:
        run = _plan(circuit, backend, query)
    except BackendError:  # an evidence error is raised first, as before the plans
        if X is not None:
            schema.validate_data(X, allow_nan=allow_nan)
        raise
    if X is None:
        Xa, single, chk = np.full((1, len(schema)), np.nan), True, None
    else:
        single = _single(X)
        if getattr(run, "checks_evidence", False):
            Xa, chk = schema.as_evidence(X), schema.check_table(allow_nan)
        else:
            Xa, chk = schema.validate_data(X, allow_nan=allow_nan), None
    if values is not None:
        try:
            values = _values(circuit, values)
        except DataError:
            if chk is not None:  # an evidence error is raised first
                schema.validate_data(Xa, allow_nan=allow_nan)
            raise
    out = run(Xa, values) if chk is None else run(Xa, values, chk=chk)
    if out is None:
        schema.raise_invalid(Xa, allow_nan)
    return out, single


def _dask(X: Any):
    """spmn.kernels.dask when ``X`` is a dask array, else None (dask is never imported here)."""
    if type(X) is np.ndarray or type(X).__module__.split(".")[0] != "dask":
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
    return _run(circuit, "log_likelihood", X, backend, allow_missing)[0]


def meu(circuit: Structure, X: Any = None, *, interface_values=None, backend=None):
    dk = _dask(X)
    if dk is not None:
        return dk.meu(circuit.compile(), X, _values(circuit, interface_values), backend=backend)
    out, single = _run(circuit, "meu", X, backend, values=interface_values)
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
    dec, single = _run(circuit, "policy", X, backend, values=interface_values)
    if single:
        v = dec[0, col]
        return -1 if math.isnan(v) else int(v)
    if dec.shape[0] <= 8:  # a few rows: cheaper than the numpy calls' fixed costs
        return np.array([-1 if math.isnan(v) else int(v) for v in dec[:, col].tolist()],
                        np.int64)
    return np.where(np.isnan(dec[:, col]), -1, dec[:, col]).astype(np.int64)


def mpe(circuit: Structure, X: Any = None, *, return_log_prob: bool = False, backend=None):
    dk = _dask(X)
    if dk is not None:
        filled, logp = dk.mpe(circuit.compile(), X, backend=backend)
        return (filled, logp) if return_log_prob else filled
    (filled, logp), single = _run(circuit, "mpe", X, backend)
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
