"""Numba backend: every pass of :mod:`spmn.kernels.reference`, compiled, in parallel chunks.

Functions (the backend protocol): ``log_likelihood(flat, X)``, ``meu(flat, X, values)``,
``policy(flat, X, values)``, ``mpe(flat, X)``, ``sample(flat, X, u, z, values)``,
``node_values(flat, X, values, nodes)`` and ``expected_counts(flat, X)``; each also takes
``threads=``, ``chunk=`` and ``progress=`` keywords. The Bellman pass of a recurrent template
is ``node_values`` (the MEU pass) with the interface leaves bound to ``values``, read at the
interface roots.

The arithmetic is that of the Cython backend operation for operation, so the two agree bit for
bit (no fast-math; exp and log in :mod:`._numba_math`). Kernels are compiled with
``cache=True``: the first call after installation compiles them (tens of seconds), later
processes load the cache, which lies in the user cache folder (``NUMBA_CACHE_DIR``, set by
:mod:`spmn._cache`: ``SPMN_CACHE_DIR`` or e.g. ``~/.cache/spmn/numba``), never in the package
folder. Parallel over the rows only (``prange`` over chunks).
"""
from __future__ import annotations

from . import _numba_entry
from ._common import Kernels

__all__ = ["log_likelihood", "meu", "policy", "mpe", "sample", "node_values",
           "expected_counts", "plan"]

_K = Kernels(_numba_entry, "numba")
log_likelihood = _K.log_likelihood
meu = _K.meu
policy = _K.policy
mpe = _K.mpe
sample = _K.sample
node_values = _K.node_values
expected_counts = _K.expected_counts
plan = _K.plan
