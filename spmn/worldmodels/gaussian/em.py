"""EM for a mixture of full-covariance Gaussians (the sum node over MultivariateGaussian leaves
of a continuous world model).

Initialization: k-means++ seeding and 10 Lloyd rounds on standardized data (``seed``), then
the clusters' weights, means and covariances. Each EM round: responsibilities
``r_ik ∝ w_k N(d_i; μ_k, Σ_k)`` (E-step), then ``w_k = Σ_i r_ik / N``, ``μ_k`` and ``Σ_k`` the
responsibility-weighted mean and covariance plus ``reg`` x each variable's variance on the
diagonal (keeps every component positive definite, also on noise-free dynamics: each
component's noise covariance is at least ``reg`` x the next-state variances). Stops when the mean
log-likelihood gains less than ``tol``; ``progress`` shows a bar over the rounds.
"""
from __future__ import annotations

import numpy as np

from ..._progress import progress_bar
from ...errors import DataError
from ...gaussian import mixture_logpdf


def _kmeans(Z: np.ndarray, K: int, rng: np.random.Generator, rounds: int = 10) -> np.ndarray:
    """Cluster labels by k-means++ seeding and Lloyd rounds."""
    N = Z.shape[0]
    centers = [Z[rng.integers(N)]]
    d2 = ((Z - centers[0]) ** 2).sum(axis=1)
    for _ in range(1, K):
        p = d2 / d2.sum() if d2.sum() > 0 else np.full(N, 1.0 / N)
        centers.append(Z[rng.choice(N, p=p)])
        d2 = np.minimum(d2, ((Z - centers[-1]) ** 2).sum(axis=1))
    C = np.array(centers)
    for _ in range(rounds):
        lab = np.argmin(((Z[:, None, :] - C[None]) ** 2).sum(axis=2), axis=1)
        for k in range(K):
            if np.any(lab == k):
                C[k] = Z[lab == k].mean(axis=0)
    return np.argmin(((Z[:, None, :] - C[None]) ** 2).sum(axis=2), axis=1)


def _m_step(D: np.ndarray, R: np.ndarray, floor: np.ndarray):
    Nk = R.sum(axis=0)
    w = Nk / Nk.sum()
    means, covs = [], []
    for k in range(R.shape[1]):
        if Nk[k] <= 0:
            means.append(D.mean(axis=0))
            covs.append(np.cov(D.T, bias=True).reshape(D.shape[1], D.shape[1]) + floor)
            continue
        mu = R[:, k] @ D / Nk[k]
        E = D - mu
        S = (E * R[:, k:k + 1]).T @ E / Nk[k]
        means.append(mu)
        covs.append((S + S.T) / 2 + floor)
    return w, np.array(means), np.array(covs)


def fit_mixture(D: np.ndarray, K: int, *, reg: float = 1e-6, max_iter: int = 500,
                tol: float = 1e-9, seed: int | np.random.Generator | None = 0,
                progress: bool = False):
    """``(weights (K,), means (K, d), covs (K, d, d), iterations)`` of a K-component mixture."""
    N, d = D.shape
    if N < K * (d + 1):
        raise DataError(f"{N} rows are too few for {K} Gaussian components over {d} variables")
    rng = np.random.default_rng(seed)
    sd = D.std(axis=0)
    if np.any(sd == 0):
        raise DataError(f"column(s) {np.flatnonzero(sd == 0).tolist()} of (x, u, x') are constant: "
                        "the covariance would be singular")
    floor = np.diag(reg * sd ** 2)
    lab = _kmeans((D - D.mean(axis=0)) / sd, K, rng)
    R = np.zeros((N, K))
    R[np.arange(N), lab] = 1.0
    w, means, covs = _m_step(D, R, floor)
    prev = -np.inf
    it = 0
    with progress_bar(progress, desc=f"EM ({K} components)", total=max_iter) as bar:
        for it in range(1, max_iter + 1):
            ll, logr = mixture_logpdf(w, means, covs, D)
            avg = float(ll.mean())
            w, means, covs = _m_step(D, np.exp(logr), floor)
            bar.update()
            bar.set_postfix(loglik=f"{avg:.6g}", refresh=False)
            if avg - prev <= tol * max(1.0, abs(avg)):
                break
            prev = avg
    return w, means, covs, it
