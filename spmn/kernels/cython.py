"""Cython backend: the compiled extension ``spmn.kernels._ckernels`` (built from ``csrc/``).

Functions (the backend protocol): ``log_likelihood(flat, X)``, ``meu(flat, X, values)``,
``policy(flat, X, values)``, ``mpe(flat, X)``, ``sample(flat, X, u, z, values)``,
``node_values(flat, X, values, nodes)`` and ``expected_counts(flat, X)``; each also takes
``threads=``, ``chunk=`` and ``progress=`` keywords. The Bellman pass of a recurrent template
is ``node_values`` (the MEU pass) with the interface leaves bound to ``values``, read at the
interface roots.

OpenMP ``prange`` over chunks of rows, GIL released, typed memoryviews; results equal those of
the Numba backend bit for bit. On x86-64 the same sources are also built with ``-mavx2``
(``_ckernels_avx2``), used when the CPU has AVX2: only the vector width differs, not the bits.
Importing this module raises ImportError when the extension is not built (the registry then
reports the backend as unavailable).
"""
from __future__ import annotations

from . import _ckernels  # ImportError = not built
from ._common import Kernels


def _fastest_build():
    """``_ckernels_avx2`` when it is built and the CPU runs it, else ``_ckernels``."""
    if _ckernels.cpu_has_avx2():
        try:
            from . import _ckernels_avx2
            return _ckernels_avx2
        except ImportError:  # pragma: no cover - optional build
            pass
    return _ckernels


#: The extension module in use (``_ckernels`` or ``_ckernels_avx2``).
raw = _fastest_build()

__all__ = ["log_likelihood", "meu", "policy", "mpe", "sample", "node_values",
           "expected_counts", "plan"]

_K = Kernels(raw, "cython")
log_likelihood = _K.log_likelihood
meu = _K.meu
policy = _K.policy
mpe = _K.mpe
sample = _K.sample
node_values = _K.node_values
expected_counts = _K.expected_counts
plan = _K.plan
