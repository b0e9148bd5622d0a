"""Value iteration for mixture world models: a max over a discretized action set and a
documented value representation whose expectation under the model is exact.

Value representation: ``V(x) = θᵀφ(x)`` with ``φ`` the monomials of degree <= 2 of x plus J
Gaussian bumps ``exp(−½ Σ_d ((x_d − c_jd) / s_d)²)`` (centers: a seeded subset of the anchor
states; widths ``s_d``: twice the anchors' spread per dimension divided by ``J^{1/n}``). The
bumps let the value bend where the dynamics switch (piecewise-linear models have piecewise-
quadratic values). Both kinds of feature have exact expectations under the model's
next-state distribution: the monomials from the circuit's posterior moments
(:func:`spmn.circuit.quadratic.moments`), the bumps from each component's conditional Gaussian
``N(μ_k, W_k)`` weighted by the sum-node posterior ``π_k(x, u) ∝ w_k p_k(x, u)``:
``E[bump] = |S|^½ |S + W_k|^{-½} exp(−½ (μ_k − c)ᵀ (S + W_k)⁻¹ (μ_k − c))``, ``S = diag(s²)``.

Fitted value iteration at the anchor states ``x_i``: ``V_i = max_j r(x_i, a_j) + γ θᵀ E[φ(x') |
x_i, a_j]`` (exact; the max node's rule over the action grid: first maximum wins), then ``θ``
by least squares over the anchors. Exact for nothing in general; for a single linear-Gaussian
component it converges to the Riccati value up to the action grid's resolution. The residual
reported is the sup-norm gap between the fitted V and its backup at the anchors.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from ..._progress import progress_bar
from ...circuit.circuit import Circuit
from ...circuit.nodes import MultivariateGaussian
from ...circuit.quadratic import Quadratic, moments
from ...errors import SolverError
from ...gaussian import Conditioned
from .riccati import GaussianSolution


class MixtureModel(Protocol):
    """What the grid solver reads of a fitted :class:`~.model.GaussianWorldModel` (typed by
    shape, so that the model module can import this one)."""

    states: list[str]
    actions: list[str]
    next_states: list[str]
    circuit_: Circuit
    reward_: Quadratic

    @property
    def components(self) -> list[MultivariateGaussian]: ...

    @property
    def weights(self) -> np.ndarray: ...


class ValueBasis:
    """Features ``φ(x)``: monomials of degree <= 2 (upper triangle, linear, 1), then bumps."""

    def __init__(self, centers: np.ndarray, widths: np.ndarray) -> None:
        self.centers = np.asarray(centers, dtype=np.float64)
        self.widths = np.asarray(widths, dtype=np.float64)
        self.n = self.widths.shape[0]
        self.iu = np.triu_indices(self.n)

    @classmethod
    def for_anchors(cls, anchors: np.ndarray, n_bumps: int,
                    rng: np.random.Generator) -> "ValueBasis":
        J = min(n_bumps, anchors.shape[0] // 4)
        centers = anchors[rng.choice(anchors.shape[0], J, replace=False)] if J else \
            np.zeros((0, anchors.shape[1]))
        spread = anchors.std(axis=0)
        spread[spread == 0] = 1.0
        return cls(centers, 2.0 * spread / max(J, 1) ** (1.0 / anchors.shape[1]))

    @property
    def n_quadratic(self) -> int:
        return self.iu[0].size + self.n + 1

    def __call__(self, X: np.ndarray) -> np.ndarray:
        quad = np.hstack([X[:, self.iu[0]] * X[:, self.iu[1]], X, np.ones((X.shape[0], 1))])
        d = (X[:, None, :] - self.centers[None]) / self.widths
        return np.hstack([quad, np.exp(-0.5 * (d * d).sum(axis=2))])

    def expected(self, model: MixtureModel, E: np.ndarray) -> np.ndarray:
        """E[φ(x') | x, u] for evidence rows ``E`` (x and u observed, x' NaN)."""
        mo = moments(model.circuit_, E, model.next_states)
        quad = np.hstack([mo.second[:, self.iu[0], self.iu[1]], mo.mean, np.ones((E.shape[0], 1))])
        if not self.centers.shape[0]:
            return quad
        n = self.n
        leaves, w = model.components, model.weights
        logp = np.empty((E.shape[0], len(leaves)))
        bumps = np.zeros((E.shape[0], self.centers.shape[0]))
        S = np.diag(self.widths ** 2)
        per = []
        schema = model.circuit_.schema
        for k, leaf in enumerate(leaves):
            cols = [schema.index(v) for v in leaf.vars]
            cond = Conditioned(leaf.mean, leaf.cov, E[:, cols], want_cov=False)
            with np.errstate(divide="ignore"):
                logp[:, k] = np.log(w[k]) + cond.logpdf
            Wk = cond_cov(leaf.cov, n)
            Sk = S + Wk
            scale = np.sqrt(np.linalg.det(S) / np.linalg.det(Sk))
            diff = cond.mean[:, -n:][:, None, :] - self.centers[None]
            q = np.einsum("rjd,de,rje->rj", diff, np.linalg.inv(Sk), diff)
            per.append(scale * np.exp(-0.5 * q))
        top = logp.max(axis=1, keepdims=True)
        pi = np.exp(logp - top)
        pi /= pi.sum(axis=1, keepdims=True)
        for k in range(len(leaves)):
            bumps += pi[:, k:k + 1] * per[k]
        return np.hstack([quad, bumps])


def cond_cov(cov: np.ndarray, n: int) -> np.ndarray:
    """Covariance of the last ``n`` variables given the others (the Schur complement)."""
    g = cov.shape[0] - n
    S = cov[g:, g:] - cov[g:, :g] @ np.linalg.solve(cov[:g, :g], cov[:g, g:])
    return (S + S.T) / 2


def solve_grid(model: MixtureModel, gamma: float, anchors: np.ndarray,
               actions: np.ndarray, *, n_bumps: int = 25, tol: float = 1e-10,
               max_iter: int = 10_000, seed=0, progress: bool = False) -> GaussianSolution:
    """Fitted value iteration over the documented value representation (module docstring);
    ``progress`` shows a bar over the iterations."""
    g = float(gamma)
    if not 0.0 < g < 1.0:
        raise SolverError(f"discount gamma={gamma!r} must lie in (0, 1)")
    n, m = len(model.states), len(model.actions)
    basis = ValueBasis.for_anchors(anchors, n_bumps, np.random.default_rng(seed))
    Phi = basis(anchors)
    if np.linalg.matrix_rank(Phi[:, :basis.n_quadratic]) < basis.n_quadratic:
        raise SolverError(f"{anchors.shape[0]} anchor states do not determine a quadratic in "
                          f"{n} variables")
    reward = model.reward_.embed(model.states + model.actions)

    def rows(X: np.ndarray) -> np.ndarray:
        E = np.full((X.shape[0] * actions.shape[0], 2 * n + m), np.nan)
        E[:, :n] = np.repeat(X, actions.shape[0], axis=0)
        E[:, n:n + m] = np.tile(actions, (X.shape[0], 1))
        return E

    E = rows(anchors)
    R = reward(E[:, :n + m]).reshape(anchors.shape[0], -1)
    EPhi = basis.expected(model, E).reshape(anchors.shape[0], actions.shape[0], -1)
    pinv = np.linalg.pinv(Phi, rcond=1e-10)
    theta = np.zeros(Phi.shape[1])
    V = np.zeros(anchors.shape[0])
    with progress_bar(progress, desc="fitted value iteration", total=max_iter) as bar:
        for it in range(1, max_iter + 1):
            backup = (R + g * EPhi @ theta).max(axis=1)
            theta = pinv @ backup
            Vn = Phi @ theta
            diff = float(np.abs(Vn - V).max())
            V = Vn
            if not np.all(np.isfinite(V)) or np.abs(V).max() > 1e200:
                raise SolverError("fitted value iteration diverged (the projection is unstable "
                                  "for these anchors; try more anchors or fewer bumps)")
            bar.update()
            bar.set_postfix(change=f"{diff:.3g}", refresh=False)
            if diff <= tol * max(1.0, float(np.abs(V).max())):
                break
        else:
            raise SolverError(f"fitted value iteration did not converge in {max_iter} "
                              f"iterations (last change {diff:.3g})")
    residual = float(np.abs(V - backup).max())
    k = basis.iu[0].size
    H = np.zeros((n + 1, n + 1))
    H[basis.iu] = theta[:k]
    H[:n, :n] = (H[:n, :n] + H[:n, :n].T) / 2
    H[:n, n] = H[n, :n] = theta[k:k + n] / 2
    H[n, n] = theta[k + n]

    def value(X: np.ndarray) -> np.ndarray:
        return basis(X) @ theta

    def q(X: np.ndarray, U: np.ndarray) -> np.ndarray:
        E = np.full((X.shape[0] * U.shape[0], 2 * n + m), np.nan)
        E[:, :n] = np.repeat(X, U.shape[0], axis=0)
        E[:, n:n + m] = np.tile(U, (X.shape[0], 1))
        out = reward(E[:, :n + m]) + g * basis.expected(model, E) @ theta
        return out.reshape(X.shape[0], U.shape[0])

    def policy(X: np.ndarray) -> np.ndarray:
        return actions[np.argmax(q(X, actions), axis=1)]

    return GaussianSolution(P=-H[:n, :n], p=-2.0 * H[:n, n], c=-float(H[n, n]), K=None, k=None,
                            H=H, gamma=g, iterations=it, residual=residual, method="grid",
                            state_names=list(model.states), action_grid=actions, _q=q,
                            _policy=policy, _value=value)
