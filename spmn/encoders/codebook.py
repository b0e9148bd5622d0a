"""Codebook size from the data (``n_codes="auto"``): over-cluster, then merge the codes whose
frames cannot be told apart under the noise.

k-means with ``max_codes`` centres splits each state's cloud of noisy frames into pieces; two
pieces of one cloud touch, two states' clouds are separated by a gap. The separation of codes
i and j is read along the line between their centres, in units of the noise along that line:
``d'_ij = |μ_i − μ_j| / σ_ij``, ``σ_ij² = min(v_i(u), v_j(u))``, ``v_i(u) = uᵀ Σ_i u`` the
spread of code i's frames along ``u = (μ_j − μ_i) / |μ_j − μ_i|``. Adjacent pieces of one
cloud have ``d' <= √12 ≈ 3.5`` (slabs of a unimodal density; halves of a Gaussian give 2.65);
frames of two states ``d' >= 5`` apart are coded wrongly at most Φ(−2.5) ≈ 0.6% of the time
even by the best boundary. Codes linked by ``d' < threshold`` (5) are joined (connected
components). The smaller of the two spreads is used so that a code holding several states
(wide) never absorbs a tight neighbour; spreads of codes with few frames are shrunk towards
the median spread (5 pseudo-frames), so a lone outlier frame does not become its own state.
"""
from __future__ import annotations

import numpy as np
from scipy.sparse import csr_array
from scipy.sparse.csgraph import connected_components

from ..errors import DataError

PSEUDO_FRAMES = 5.0


def code_stats(X: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray,
                                                                   np.ndarray]:
    """Counts (k,), means (k, d) and scatter matrices Σ (x − μ)(x − μ)ᵀ (k, d, d) per code."""
    X = np.asarray(X, np.float64)
    lab = np.asarray(labels, np.int64)
    n = np.bincount(lab, minlength=k).astype(np.float64)
    S1 = np.zeros((k, X.shape[1]))
    np.add.at(S1, lab, X)
    mu = S1 / np.maximum(n, 1.0)[:, None]
    R = X - mu[lab]
    S2 = np.zeros((k, X.shape[1], X.shape[1]))
    for c in range(k):  # k small (<= a few hundred): one (n_c, d) product per code
        rows = R[lab == c]
        if rows.shape[0]:
            S2[c] = rows.T @ rows
    return n, mu, S2


def separation(n: np.ndarray, mu: np.ndarray, scatter: np.ndarray) -> np.ndarray:
    """d' between every pair of codes (k, k): centre distance over the smaller noise spread
    along the line between the centres (+inf on the diagonal and for empty codes)."""
    d = mu.shape[1]
    live = n > 0
    per_dim = np.einsum("kii->k", scatter) / np.maximum(n * d, 1.0)
    prior = float(np.median(per_dim[n >= 2 * PSEUDO_FRAMES])) if (n >= 2 * PSEUDO_FRAMES).any() \
        else float(np.median(per_dim[live])) if live.any() else 0.0
    diff = mu[None, :, :] - mu[:, None, :]                      # (k, k, d): μ_j − μ_i
    dist = np.sqrt((diff ** 2).sum(2))
    with np.errstate(divide="ignore", invalid="ignore"):
        U = np.where(dist[..., None] > 0, diff / dist[..., None], 0.0)
    # v_i(u_ij) with shrinkage: (uᵀ S_i u + ν0 prior) / (n_i + ν0)
    quad = np.einsum("ijd,ide,ije->ij", U, scatter, U)
    v = (quad + PSEUDO_FRAMES * prior) / (n[:, None] + PSEUDO_FRAMES)
    sig = np.sqrt(np.minimum(v, v.T))
    with np.errstate(divide="ignore", invalid="ignore"):
        dp = np.where(dist == 0, 0.0, dist / sig)
    dp[~(live[:, None] & live[None, :])] = np.inf
    np.fill_diagonal(dp, np.inf)
    return dp


def merge_close_codes(X: np.ndarray, labels: np.ndarray, centers: np.ndarray,
                      threshold: float = 5.0) -> np.ndarray:
    """Map (k,) of the k-means codes onto merged codes 0..m−1 (numbered by first code):
    codes linked by ``d' < threshold`` share one code; a code without frames joins the code
    of its nearest centre."""
    k = int(np.asarray(centers).shape[0])
    if not threshold >= 0:
        raise DataError(f"merge threshold must be >= 0, got {threshold!r}")
    n, mu, S = code_stats(X, labels, k)
    dp = separation(n, mu, S)
    link = dp < float(threshold)
    _, comp = connected_components(csr_array(link | link.T), directed=False)
    live = np.flatnonzero(n > 0)
    if live.size < k:  # an empty code (never nearest to a fitting frame) follows its nearest
        dead = np.flatnonzero(n == 0)
        C = np.asarray(centers, np.float64)
        d2 = ((C[dead][:, None, :] - C[live][None]) ** 2).sum(2)
        comp[dead] = comp[live[d2.argmin(1)]]
    _, first = np.unique(comp, return_index=True)
    order = np.argsort(np.argsort(first))          # components numbered by their first code
    uniq = np.unique(comp)
    return order[np.searchsorted(uniq, comp)].astype(np.int64)
