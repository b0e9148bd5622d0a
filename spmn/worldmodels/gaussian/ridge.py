"""The noise ridge of the single-component fit: deterministic or rank-deficient dynamics.

Logs of noise-free dynamics (``x' = A x + B u`` exactly, or some next-state variables an exact
function of (x, u)) have a singular joint covariance of ``(z, x')``, ``z = (x, u)``: the
conditional noise covariance ``W = Σ_x'x' − F Σ_zx'`` (``F = Σ_x'z Σ_zz⁻¹``) is (nearly) zero
in some directions and the circuit's Gaussian leaf is unusable. :func:`noise_floor` keeps
``Σ_zz`` and ``Σ_x'z`` (so the regression ``F = [A B]`` is unchanged) and raises the
eigenvalues of the unit-free noise ``W̃ = D⁻¹ W D⁻¹`` (``D = diag(√s)``, ``s`` the next-state
columns' variances) to at least ``reg``, i.e. ``W ← D (V max(Λ, reg) Vᵀ) D``: noise-free
dynamics get ``W = reg · diag(s)``, noisy ones are left exactly as fitted.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.linalg as sla

from ...errors import DataError
from ...gaussian import covariance_problem


def noise_floor(cov: np.ndarray, n_given: int, reg: float,
                names: Sequence[str]) -> tuple[np.ndarray, int]:
    """``(cov', k)``: the joint covariance with W's unit-free eigenvalues floored at ``reg``
    (module docstring) and the number ``k`` of directions raised (``k = 0``: ``cov`` itself;
    ``reg = 0`` turns the ridge off).

    Raises :class:`DataError`, naming the variables, where no ridge on the noise can help: the
    (state, action) block ``Σ_zz`` singular, or a next-state column constant."""
    g = int(n_given)
    Szz, Sxz, Sxx = cov[:g, :g], cov[g:, :g], cov[g:, g:]
    problem = covariance_problem(np.zeros(g), Szz, list(names[:g]))
    if problem:
        raise DataError(f"the state and action columns {list(names[:g])} cannot be regressed "
                        f"on: {problem}. A ridge on the noise covariance cannot fix this; causes: "
                        "a constant or duplicated column, actions that do not vary "
                        "independently of the state")
    s = np.diag(Sxx).copy()
    if np.any(s <= 0):
        j = int(np.argmin(s))
        raise DataError(f"next-state column {names[g + j]!r} is constant (variance {s[j]:.3g}): "
                        "the covariance is singular and a ridge scaled by its variance is zero")
    if reg <= 0:  # the ridge is off
        return cov, 0
    F = sla.cho_solve(sla.cho_factor(Szz, lower=True), Sxz.T).T
    W = Sxx - F @ Sxz.T
    d = np.sqrt(s)
    lam, V = np.linalg.eigh(((W + W.T) / 2) / d[:, None] / d[None, :])
    low = lam < reg
    if not low.any():
        return cov, 0
    W_new = ((V * np.maximum(lam, reg)) @ V.T) * d[:, None] * d[None, :]
    out = np.array(cov, dtype=np.float64, copy=True)
    out[g:, g:] = (Sxx - W) + (W_new + W_new.T) / 2
    out[g:, g:] = (out[g:, g:] + out[g:, g:].T) / 2
    return out, int(low.sum())
