"""Random tabular MDPs for tests and benchmarks: dense, random-sparse and banded transitions."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from spmn.errors import DataError
from spmn.reference.tabular import TabularMDP


def _normalise_csr(M: sp.csr_array) -> sp.csr_array:
    M.sum_duplicates()
    sums = np.asarray(M.sum(axis=1)).ravel()
    M.data /= np.repeat(sums, np.diff(M.indptr))
    return M


def random_mdp(n_states: int, n_actions: int, density: float = 1.0,
               seed: int | np.random.Generator | None = None, *, bandwidth: int | None = None,
               sparse: bool | None = None) -> TabularMDP:
    """Random MDP with P[a, s, ·] ∝ w, w ~ U(0, 1] on its support, and R[a, s] ~ U(0, 1).

    Support of each row: all S states when ``density >= 1``; otherwise ``max(1, round(density·S))``
    states drawn uniformly with replacement (duplicates merged, so slightly fewer); with
    ``bandwidth=b`` the neighbours s-b..s+b clipped to [0, S) (density ignored). ``sparse`` picks the
    storage (default: CSR unless the support is all states).
    """
    S, A = int(n_states), int(n_actions)
    if S < 1 or A < 1:
        raise DataError(f"random_mdp needs n_states >= 1 and n_actions >= 1, got {S}, {A}")
    if not 0.0 < float(density) <= 1.0:
        raise DataError(f"density must lie in (0, 1], got {density!r}")
    rng = np.random.default_rng(seed)
    rows = np.arange(A * S)
    if bandwidth is not None:
        b = int(bandwidth)
        if b < 0:
            raise DataError(f"bandwidth must be >= 0, got {bandwidth!r}")
        offsets = np.arange(-b, b + 1)
        cols = (rows % S)[:, None] + offsets[None, :]
        ok = (cols >= 0) & (cols < S)
        w = 1.0 - rng.random(cols.shape)
        Pf = _normalise_csr(sp.csr_array((w[ok], (np.broadcast_to(rows[:, None], cols.shape)[ok],
                                                  cols[ok])), shape=(A * S, S)))
        sparse = True if sparse is None else sparse
    elif density >= 1.0:
        P = 1.0 - rng.random((A, S, S))
        P /= P.sum(axis=2, keepdims=True)
        Pf = P.reshape(A * S, S)
        sparse = False if sparse is None else sparse
        if sparse:
            Pf = sp.csr_array(Pf)
    else:
        k = max(1, int(round(float(density) * S)))
        cols = rng.integers(S, size=(A * S, k))
        w = 1.0 - rng.random((A * S, k))
        Pf = _normalise_csr(sp.csr_array((w.ravel(), (np.repeat(rows, k), cols.ravel())),
                                         shape=(A * S, S)))
        sparse = True if sparse is None else sparse
    R = rng.random((A, S))
    if sp.issparse(Pf):
        Pf.sort_indices()
        if not sparse:
            return TabularMDP(Pf.toarray().reshape(A, S, S), R)
        return TabularMDP([Pf[a * S:(a + 1) * S] for a in range(A)], R)
    return TabularMDP(Pf.reshape(A, S, S), R)
