"""Quadratic utilities and values ``q(x) = xᵀMx + mᵀx + c`` and their exact expectation under a
circuit given evidence.

``E[q(x) | e] = tr(M S) + mᵀμ`` + c needs only the posterior first and second moments
``μ = E[x | e]``, ``S = E[x xᵀ | e]``, which one upward pass computes node by node (DESIGN.md's
rules, moments in place of U): a leaf gives its conditional moments (observed entries are
constants; a :class:`~spmn.circuit.nodes.MultivariateGaussian` conditions on its observed entries); a
product's factors are independent, so ``S = Σ_i (S_i − μ_i μ_iᵀ) + μ μᵀ`` with ``μ = Σ_i μ_i``;
a sum mixes its children's moments with the posterior weights ``softmax_i(log w_i + L_i)``
(the sum-node rule); a max node passes on its chosen child (the observed decision, or the
child of largest U).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from numpy.typing import ArrayLike

from ..errors import DataError
from ..flat import (
    K_CATEGORICAL,
    K_GAUSSIAN,
    K_HISTOGRAM,
    K_INTERFACE,
    K_MAX,
    K_MVGAUSSIAN,
    K_PRODUCT,
    K_SUM,
)
from ..gaussian import Conditioned
from ..kernels import reference as ref
from .structure import Structure

__all__ = ["Quadratic", "Moments", "moments"]


def _vec(x: ArrayLike, n: int, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    if a.shape != (n,):
        raise DataError(f"{name} must have {n} entries, got shape {np.shape(x)}")
    if not np.all(np.isfinite(a)):
        raise DataError(f"{name} must be finite")
    return a


class Quadratic:
    """``q(x) = xᵀMx + mᵀx + c`` over the variables ``names`` (M is stored symmetrized).

    >>> q = Quadratic(["x", "v"], M=np.eye(2), c=1.0); q([[1.0, 2.0]])   # -> [6.]
    """

    def __init__(self, names: Sequence[str], M: ArrayLike | None = None,
                 m: ArrayLike | None = None, c: float = 0.0) -> None:
        self.names: tuple[str, ...] = (names,) if isinstance(names, str) else tuple(names)
        if len(set(self.names)) != len(self.names):
            raise DataError(f"variable names {list(self.names)} repeat a name")
        q = len(self.names)
        Mm = np.zeros((q, q)) if M is None else np.atleast_2d(np.asarray(M, dtype=np.float64))
        if Mm.shape != (q, q) or not np.all(np.isfinite(Mm)):
            raise DataError(f"M must be a finite ({q}, {q}) matrix, got shape {Mm.shape}")
        self.M = (Mm + Mm.T) / 2
        self.m = np.zeros(q) if m is None else _vec(m, q, "m")
        self.c = float(c)
        if not np.isfinite(self.c):
            raise DataError("c must be finite")

    # ------------------------------------------------------------------ forms
    @classmethod
    def from_augmented(cls, names: Sequence[str], H: ArrayLike) -> "Quadratic":
        """From ``H`` with ``q(x) = [x; 1]ᵀ H [x; 1]``."""
        H = np.asarray(H, dtype=np.float64)
        q = H.shape[0] - 1
        H = (H + H.T) / 2
        return cls(names, H[:q, :q], 2.0 * H[:q, q], H[q, q])

    def augmented(self) -> np.ndarray:
        """Symmetric ``H`` with ``q(x) = [x; 1]ᵀ H [x; 1]``."""
        q = len(self.names)
        H = np.zeros((q + 1, q + 1))
        H[:q, :q] = self.M
        H[:q, q] = H[q, :q] = self.m / 2
        H[q, q] = self.c
        return H

    def embed(self, names: Sequence[str]) -> "Quadratic":
        """The same function over a superset ``names`` of its variables (zeros elsewhere)."""
        names = tuple(names)
        missing = [v for v in self.names if v not in names]
        if missing:
            raise DataError(f"cannot embed: variables {missing} are not in {list(names)}")
        pos = [names.index(v) for v in self.names]
        M = np.zeros((len(names), len(names)))
        M[np.ix_(pos, pos)] = self.M
        m = np.zeros(len(names))
        m[pos] = self.m
        return Quadratic(names, M, m, self.c)

    @classmethod
    def fit(cls, names: Sequence[str], Z: ArrayLike, y: ArrayLike) -> "Quadratic":
        """Least-squares fit of ``y ≈ q(z)`` over all monomials of degree <= 2 (exact, up to
        rounding, when ``y`` is a quadratic of ``z`` and the data determine it)."""
        Z = np.asarray(Z, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        q = len(names)
        if Z.ndim != 2 or Z.shape[1] != q or Z.shape[0] != y.shape[0]:
            raise DataError(f"fit needs Z of shape (rows, {q}) and y of shape (rows,), got "
                            f"{Z.shape} and {y.shape}")
        iu = np.triu_indices(q)
        feats = np.hstack([Z[:, iu[0]] * Z[:, iu[1]], Z, np.ones((Z.shape[0], 1))])
        if Z.shape[0] < feats.shape[1]:
            raise DataError(f"a quadratic in {q} variables has {feats.shape[1]} coefficients; "
                            f"{Z.shape[0]} rows cannot determine them")
        scale = np.abs(feats).max(axis=0)
        scale[scale == 0] = 1.0
        theta, *_ = np.linalg.lstsq(feats / scale, y, rcond=None)
        theta = theta / scale
        nq = iu[0].size
        M = np.zeros((q, q))
        M[iu] = theta[:nq]
        M = (M + M.T) / 2  # off-diagonal coefficients are split between (i, j) and (j, i)
        return cls(names, M, theta[nq:nq + q], theta[-1])

    # ------------------------------------------------------------------ evaluation
    def __call__(self, X: ArrayLike) -> float | np.ndarray:
        """q per row of ``X`` (rows, q), or a float for one point (q,)."""
        X = np.asarray(X, dtype=np.float64)
        q = len(self.names)
        one = X.ndim == 1
        X2 = X.reshape(1, -1) if one else X
        if X2.ndim != 2 or X2.shape[1] != q:
            raise DataError(f"points must have {q} coordinates {list(self.names)}, got shape "
                            f"{X.shape}")
        out = np.einsum("ri,ij,rj->r", X2, self.M, X2) + X2 @ self.m + self.c
        return float(out[0]) if one else out

    def __neg__(self) -> "Quadratic":
        return Quadratic(self.names, -self.M, -self.m, -self.c)

    def __mul__(self, s: float) -> "Quadratic":
        return Quadratic(self.names, s * self.M, s * self.m, s * self.c)

    __rmul__ = __mul__

    def __add__(self, other: "Quadratic") -> "Quadratic":
        names = self.names + tuple(v for v in other.names if v not in self.names)
        a, b = self.embed(names), other.embed(names)
        return Quadratic(names, a.M + b.M, a.m + b.m, a.c + b.c)

    def expectation(self, circuit: Structure, X: Any = None, *,
                    interface_values: ArrayLike | None = None) -> float | np.ndarray:
        """Exact ``E[q(x) | evidence]`` per row of ``X`` (NaN = unobserved; None: no evidence)."""
        mo = moments(circuit, X, self.names, interface_values=interface_values)
        out = np.einsum("rij,ij->r", mo.second, self.M) + mo.mean @ self.m + self.c
        return float(out[0]) if mo.single else out

    def to_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "M": self.M.reshape(-1).tolist(), "m": self.m.tolist(),
                "c": self.c}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Quadratic":
        q = len(d["names"])
        return cls(d["names"], np.asarray(d["M"], dtype=np.float64).reshape(q, q), d["m"], d["c"])

    def __repr__(self) -> str:
        return (f"Quadratic({list(self.names)}, M={self.M.tolist()}, m={self.m.tolist()}, "
                f"c={self.c:.6g})")


@dataclass(frozen=True, eq=False)
class Moments:
    """Posterior moments given evidence: ``log_likelihood`` (rows,), ``mean`` E[x|e] (rows, q),
    ``second`` E[x xᵀ|e] (rows, q, q); ``single`` when the evidence was one row."""

    log_likelihood: np.ndarray
    mean: np.ndarray
    second: np.ndarray
    single: bool = False

    @property
    def cov(self) -> np.ndarray:
        """Cov[x | e] = E[x xᵀ|e] − E[x|e] E[x|e]ᵀ."""
        return self.second - self.mean[:, :, None] * self.mean[:, None, :]


def _leaf_moments(flat, i: int, x: np.ndarray, kind: int):
    """(first, second) moments of a one-variable leaf's column ``x`` (observed: x, x²)."""
    p = flat.leaf_params(i)
    if kind == K_CATEGORICAL:
        pr = np.exp(p)
        j = np.arange(p.shape[0], dtype=np.float64)
        m1, m2 = float(pr @ j), float(pr @ (j * j))
    elif kind == K_GAUSSIAN:
        m1, m2 = p[0], p[0] * p[0] + p[1] * p[1]
    elif kind == K_HISTOGRAM:
        k = int(p[0])
        b, d = p[2:3 + k], np.exp(p[3 + k:3 + 2 * k])
        m1, m2 = p[1], float(d @ (b[1:] ** 3 - b[:-1] ** 3)) / 3.0
    else:  # pragma: no cover - names are checked to be chance variables
        raise DataError(f"no moments for leaf kind {kind}")
    obs = ~np.isnan(x)
    return np.where(obs, x, m1), np.where(obs, x * x, m2)


def moments(circuit: Structure, X: Any, names: Sequence[str], *,
            interface_values: ArrayLike | None = None) -> Moments:
    """Exact posterior moments of the chance variables ``names`` given the evidence ``X``
    (rows x schema variables, NaN = unobserved; None = nothing observed)."""
    schema = circuit.schema
    names = tuple(names)
    for v in names:
        if v not in schema:
            raise DataError(f"unknown variable {v!r}; known: {list(schema.names)}")
        if schema[v].role != "chance":
            raise DataError(f"{v!r} is a {schema[v].role} variable; quadratic utilities are "
                            "functions of chance variables")
    single = X is None or (np.ndim(X) == 1 and not hasattr(X, "keys"))
    Xa = np.full((1, len(schema)), np.nan) if X is None else schema.validate_data(X)
    flat = circuit.compile()
    values = np.zeros(flat.n_interface) if interface_values is None else \
        np.asarray(interface_values, dtype=np.float64).reshape(-1)
    rows, q = Xa.shape[0], len(names)
    qpos = {schema.index(v): j for j, v in enumerate(names)}
    n = flat.n_nodes
    L = np.empty((n, rows))
    U = np.zeros((n, rows))
    mean: list[np.ndarray | None] = [None] * n
    sec: list[np.ndarray | None] = [None] * n
    for i in range(n):
        k = int(flat.kind[i])
        ch = flat.children(i)
        mi, si = np.zeros((rows, q)), np.zeros((rows, q, q))
        if k == K_PRODUCT:
            L[i] = L[ch].sum(axis=0) if ch.size else 0.0
            U[i] = U[ch].sum(axis=0) if ch.size else 0.0
            for c in ch:
                mi += mean[c]
                si += sec[c] - mean[c][:, :, None] * mean[c][:, None, :]
            si += mi[:, :, None] * mi[:, None, :]
        elif k == K_SUM:
            a = flat.log_weight[flat.child_ptr[i]:flat.child_ptr[i + 1]][:, None] + L[ch]
            top = a.max(axis=0)
            ok = top > -np.inf
            w = np.zeros_like(a)
            w[:, ok] = np.exp(a[:, ok] - top[ok])
            tot = w.sum(axis=0)
            w[:, ok] /= tot[ok]
            L[i] = -np.inf
            L[i, ok] = top[ok] + np.log(tot[ok])
            U[i] = (w * U[ch]).sum(axis=0)
            for j, c in enumerate(ch):
                mi += w[j][:, None] * mean[c]
                si += w[j][:, None, None] * sec[c]
        elif k == K_MAX:
            d = Xa[:, flat.var[i]]
            score = np.where(L[ch] > -np.inf, U[ch], -np.inf)
            pick = ref.first_near_max(score)  # the kernels' tie rule
            obs = ~np.isnan(d)
            pick[obs] = d[obs].astype(np.int64)
            r = np.arange(rows)
            L[i], U[i] = L[ch[pick], r], U[ch[pick], r]
            mi = np.stack([mean[c] for c in ch])[pick, r]
            si = np.stack([sec[c] for c in ch])[pick, r]
        elif k == K_MVGAUSSIAN:
            p = flat.leaf_params(i)
            dd = int(p[0])
            cols = p[2:2 + dd].astype(np.int64)
            cond = Conditioned(p[2 + dd:2 + 2 * dd], p[2 + 2 * dd:].reshape(dd, dd), Xa[:, cols])
            L[i] = cond.logpdf
            lp = [j for j, c in enumerate(cols) if c in qpos]
            qp = [qpos[int(cols[j])] for j in lp]
            if lp:
                mm = cond.mean[:, lp]
                mi[:, qp] = mm
                si[:, np.array(qp)[:, None], np.array(qp)[None, :]] = (
                    cond.cov[:, np.array(lp)[:, None], np.array(lp)[None, :]]
                    + mm[:, :, None] * mm[:, None, :])
        else:
            L[i], U[i] = ref.leaf_lu(flat, i, Xa, values)
            if k != K_INTERFACE and int(flat.var[i]) in qpos:
                j = qpos[int(flat.var[i])]
                mi[:, j], si[:, j, j] = _leaf_moments(flat, i, Xa[:, flat.var[i]], k)
        mean[i], sec[i] = mi, si
    root = flat.root
    return Moments(L[root].copy(), mean[root], sec[root], single)
