"""GaussianWorldModel: a continuous world model p(x', r | x, u) as a circuit of
:class:`~spmn.circuit.nodes.MultivariateGaussian` leaves, solved exactly with quadratic values.

The circuit is over the continuous chance variables ``(x, u, x')`` (next-state columns
``<state>_next``): one joint Gaussian leaf (``n_components=1``), or a sum node over several (a
mixture: piecewise-linear dynamics, gated by where (x, u) lies). The dynamics are its
conditional, ``x' | x, u ~ N(A x + B u + f, W)`` per component (:meth:`linear_dynamics`);
for linear-Gaussian logs the single-component fit is the least-squares estimate (with an
intercept, or through the origin with ``intercept=False``) and W the ML residual covariance
(noise-free dynamics: a documented ridge, see :class:`GaussianWorldModel`).

The reward is a quadratic utility of ``(x, u)`` (:class:`spmn.circuit.quadratic.Quadratic`): given
(``cost=(Q, R)``: ``r = −(xᵀQx + uᵀRu)``) or learned by least squares from the reward column.
:meth:`solve` runs exact Bellman updates over quadratic values (the discounted Riccati
recursion; :mod:`spmn.worldmodels.gaussian.riccati`); :meth:`filter` is the Kalman filter whose prediction
step is the model's own conditional Gaussian.
"""
from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

from ...circuit import nodes as N
from ...circuit.circuit import Circuit
from ...circuit.payload import circuit_from_payload, circuit_to_payload
from ...circuit.quadratic import Quadratic, moments
from ...errors import DataError, NotFittedError, SolverError, SpmnWarning
from ...gaussian import conditional, covariance_problem
from ...io import register_kind
from ...schema import Schema, Variable
from ..simulable import Simulable
from .em import fit_mixture
from .filter import kalman_filter
from .grid import solve_grid
from .riccati import GaussianSolution, LinearDynamics, solve_riccati
from .ridge import noise_floor

__all__ = ["GaussianWorldModel", "LinearDynamics", "transitions_from_system"]


def _names(x) -> list[str]:
    return [x] if isinstance(x, str) else list(x)


def _columns(data: Any, names: Sequence[str], what: str) -> np.ndarray:
    cols = []
    for nm in names:
        try:
            col = np.asarray(data[nm], dtype=np.float64)
        except (KeyError, IndexError):
            have = list(data.keys()) if hasattr(data, "keys") else []
            raise DataError(f"{what} column {nm!r} is missing from the transitions; columns: "
                            f"{have}") from None
        except (TypeError, ValueError):
            raise DataError(f"column {nm!r} must hold numbers") from None
        if col.ndim != 1:
            raise DataError(f"column {nm!r} must be 1-D, got shape {col.shape}")
        if not np.all(np.isfinite(col)):
            raise DataError(f"column {nm!r} has NaN or infinite values; transitions must be "
                            "complete")
        cols.append(col)
    n = {c.shape[0] for c in cols}
    if len(n) > 1:
        raise DataError(f"{what} columns {list(names)} have different lengths {sorted(n)}")
    return np.stack(cols, axis=1)


def _matrix(M: ArrayLike, shape: tuple[int, int], name: str) -> np.ndarray:
    a = np.atleast_2d(np.asarray(M, dtype=np.float64))
    if a.shape != shape:
        raise DataError(f"{name} has shape {a.shape}, expected {shape}")
    if not np.all(np.isfinite(a)):
        raise DataError(f"{name} contains NaN or infinite entries")
    return a


def _cost_quadratic(cost, states: list[str], actions: list[str]) -> Quadratic:
    if isinstance(cost, Quadratic):
        return cost.embed(states + actions)
    try:
        Q, R = cost
    except (TypeError, ValueError):
        raise DataError("cost must be (Q, R) or a Quadratic over the state and action "
                        "variables") from None
    n, m = len(states), len(actions)
    Q = _matrix(Q, (n, n), "Q")
    R = _matrix(R, (m, m), "R")
    M = np.zeros((n + m, n + m))
    M[:n, :n], M[n:, n:] = Q, R
    return Quadratic(states + actions, M)


def transitions_from_system(system, n: int, *, cost: tuple[ArrayLike, ArrayLike] | None = None,
                            episode_length: int = 100, x0_std: float = 1.0, u_std: float = 1.0,
                            states: Sequence[str] | None = None,
                            actions: Sequence[str] | None = None,
                            seed: int | np.random.Generator | None = None) -> dict[str, np.ndarray]:
    """``n`` logged transitions of a :class:`LinearGaussianSystem` under exciting inputs
    ``u ~ N(0, u_std² I)``, in episodes of ``episode_length`` steps from ``x_0 ~ N(0, x0_std² I)``
    (bounded states keep the fit well conditioned). Columns ``x0.., u0.., x0_next..`` and, with
    ``cost=(Q, R)``, the reward ``r = −(xᵀQx + uᵀRu)``."""
    rng = np.random.default_rng(seed)
    sn = list(states) if states is not None else [f"x{i}" for i in range(system.n)]
    an = list(actions) if actions is not None else [f"u{j}" for j in range(system.m)]
    if len(sn) != system.n or len(an) != system.m:
        raise DataError(f"need {system.n} state and {system.m} action names")
    if n < 1 or episode_length < 1:
        raise DataError("n and episode_length must be >= 1")
    parts = []
    left = int(n)
    while left > 0:
        T = min(episode_length, left)
        u = rng.normal(0.0, u_std, size=(T, system.m))
        tr = system.simulate(rng.normal(0.0, x0_std, size=system.n), u, seed=rng)
        parts.append((tr.x[:-1], u, tr.x[1:]))
        left -= T
    X, U, Xn = (np.vstack(p) for p in zip(*parts))
    out = {nm: X[:, i] for i, nm in enumerate(sn)}
    out.update({nm: U[:, j] for j, nm in enumerate(an)})
    out.update({f"{nm}_next": Xn[:, i] for i, nm in enumerate(sn)})
    if cost is not None:
        q = _cost_quadratic(cost, sn, an)
        out["r"] = -q(np.hstack([X, U]))
    return out


class GaussianWorldModel(Simulable):
    """Continuous world model: states and actions are continuous variables.

    ``cost=(Q, R)`` (or a :class:`Quadratic` cost over states + actions) fixes the reward
    ``−cost``; otherwise the quadratic reward is learned from the ``reward`` column.
    ``n_components > 1`` fits a mixture by EM (``seed``, ``max_iter``, ``tol``, covariance
    regularization ``reg`` x each variable's variance); ``intercept=False`` fits zero-mean
    Gaussians (dynamics through the origin; one component only).

    Noise ridge (one component): noise-free or rank-deficient dynamics (``x'`` an exact linear
    function of ``(x, u)`` in some direction) make the joint Gaussian singular. The fit then
    raises the noise covariance W, in units of the next-state variances ``s`` (their mean
    squares with ``intercept=False``), to at least ``reg``: ``W ← D (V max(Λ, reg) Vᵀ) D`` for
    ``D⁻¹ W D⁻¹ = V Λ Vᵀ``, ``D = diag(√s)`` (:mod:`~spmn.worldmodels.gaussian.ridge`); exactly
    deterministic dynamics get ``W = reg · diag(s)``. ``A``, ``B``, the offset, ``K`` and ``P``
    are unchanged (the regression is kept); W, ``predict``'s covariance, log-likelihoods and
    the value's noise constant ``c`` carry the ridge, and the fit warns
    (:class:`~spmn.errors.SpmnWarning`) when it applies. Noisy dynamics (all of W above the
    floor) are fitted exactly as before. ``reg=`` sets the floor (``reg=0`` turns it off and
    noise-free logs raise a :class:`DataError`); a singular (state, action) block, which no
    ridge on the noise fixes, raises a :class:`DataError` naming the variables.
    ``ridge_directions_`` counts the directions raised. Mixtures need no extra step: EM's floor
    (``reg`` x each variable's variance) keeps noise-free components valid, at the price of
    shrinking their A, B by O(reg).

    Common keywords of every kind: ``progress`` (a bar on long steps: EM rounds, fitted value
    iteration), ``seed`` (k-means seeding, anchors, bumps, :meth:`sample_next`), ``backend``
    (the kernels of :meth:`log_likelihood` and :meth:`sample_next`; ``predict`` and
    ``expected_value`` use the exact moments pass, the same numpy code on every backend).
    """

    def __init__(self, states: str | Sequence[str], actions: str | Sequence[str],
                 reward: str | None = "r", *, cost=None, n_components: int = 1,
                 intercept: bool = True, reg: float = 1e-6, max_iter: int = 500,
                 tol: float = 1e-9, seed: int = 0, progress: bool = True,
                 backend: str | None = None) -> None:
        self.states, self.actions = _names(states), _names(actions)
        if not self.states or not self.actions:
            raise DataError("a GaussianWorldModel needs at least one state and one action")
        self.next_states = [f"{s}_next" for s in self.states]
        allnames = self.states + self.actions + self.next_states
        if len(set(allnames)) != len(allnames):
            raise DataError(f"state/action names {self.states + self.actions} collide")
        if cost is None and reward is None:
            raise DataError("give a reward column to learn from, or cost=(Q, R)")
        if int(n_components) < 1:
            raise DataError(f"n_components must be >= 1, got {n_components}")
        if not intercept and n_components != 1:
            raise DataError("intercept=False (zero-mean Gaussian) needs n_components=1")
        self.reward, self.cost = reward, cost
        self.n_components, self.intercept = int(n_components), bool(intercept)
        try:
            ok = bool(np.isfinite(float(reg)) and float(reg) >= 0)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise DataError(f"reg must be a finite number >= 0, got {reg!r}")
        self.reg, self.max_iter, self.tol, self.seed = float(reg), int(max_iter), float(tol), seed
        self.progress, self.backend = bool(progress), backend

    # ------------------------------------------------------------------ building
    def _schema(self) -> Schema:
        names = self.states + self.actions + self.next_states
        return Schema([Variable.continuous(v) for v in names])

    def _set(self, weights, means, covs, reward: Quadratic) -> "GaussianWorldModel":
        names = self.states + self.actions + self.next_states
        leaves = []
        for k, (mu, S) in enumerate(zip(means, covs)):
            problem = covariance_problem(np.asarray(mu, float), np.asarray(S, float), names)
            if problem:
                raise DataError(f"component {k}: the joint Gaussian of (x, u, x') is unusable: "
                                f"{problem}. Causes: noise-free dynamics (the noise ridge reg="
                                f"{self.reg:g} is off or too small: raise reg=), a constant or "
                                "duplicated column, actions that do not vary independently of "
                                "the state")
            leaves.append(N.MultivariateGaussian(names, mu, S, label=f"component {k}"))
        root = leaves[0] if len(leaves) == 1 else N.Sum(leaves, weights, label="mixture")
        self.circuit_ = Circuit(root, self._schema())
        self.reward_ = reward
        return self

    @classmethod
    def from_system(cls, A: ArrayLike, B: ArrayLike, W: ArrayLike, cost, *,
                    states: Sequence[str] | None = None, actions: Sequence[str] | None = None,
                    offset: ArrayLike | None = None,
                    backend: str | None = None) -> "GaussianWorldModel":
        """The single-component model of known dynamics and ``cost=(Q, R)``: the joint Gaussian
        with ``z = (x, u) ~ N(0, I)`` and ``x' | z ~ N(A x + B u + offset, W)`` (W positive
        definite; no ridge is added here)."""
        A = np.atleast_2d(np.asarray(A, dtype=np.float64))
        n = A.shape[0]
        B = np.asarray(B, dtype=np.float64)
        B = B.reshape(n, -1) if B.ndim <= 1 else B
        A, B = _matrix(A, (n, n), "A"), _matrix(B, (n, B.shape[1]), "B")
        W = _matrix(W, (n, n), "W")
        m = B.shape[1]
        f = np.zeros(n) if offset is None else _matrix(np.reshape(offset, (1, -1)), (1, n),
                                                       "offset")[0]
        model = cls(states or [f"x{i}" for i in range(n)], actions or [f"u{j}" for j in range(m)],
                    None, cost=cost, intercept=offset is not None, backend=backend)
        F = np.hstack([A, B])
        mean = np.concatenate([np.zeros(n + m), f])
        cov = np.block([[np.eye(n + m), F.T], [F, F @ F.T + W]])
        model.n_transitions_ = 0
        return model._set([1.0], [mean], [cov],
                          -_cost_quadratic(cost, model.states, model.actions))

    # ------------------------------------------------------------------ learning
    def fit(self, transitions: Mapping[str, ArrayLike] | Any) -> "GaussianWorldModel":
        """Learn the joint Gaussian(s) of (x, u, x') and the quadratic reward from logs."""
        if isinstance(transitions, np.lib.npyio.NpzFile):
            transitions = {k: transitions[k] for k in transitions.files}
        X = _columns(transitions, self.states, "state")
        U = _columns(transitions, self.actions, "action")
        Xn = _columns(transitions, self.next_states, "next-state")
        if not (X.shape[0] == U.shape[0] == Xn.shape[0]):
            raise DataError(f"state, action and next-state columns have {X.shape[0]}, "
                            f"{U.shape[0]} and {Xn.shape[0]} rows")
        D = np.hstack([X, U, Xn])
        if D.shape[0] < 2 * D.shape[1]:
            raise DataError(f"{D.shape[0]} transitions are too few to fit a Gaussian over "
                            f"{D.shape[1]} variables")
        if self.cost is not None:
            reward = -_cost_quadratic(self.cost, self.states, self.actions)
        else:
            r = _columns(transitions, [self.reward], "reward")[:, 0]
            if r.shape[0] != D.shape[0]:
                raise DataError(f"reward column has {r.shape[0]} rows, expected {D.shape[0]}")
            reward = Quadratic.fit(self.states + self.actions, D[:, :X.shape[1] + U.shape[1]], r)
        if self.n_components == 1:
            mu = D.mean(axis=0) if self.intercept else np.zeros(D.shape[1])
            E = D - mu
            weights, means, covs = [1.0], [mu], [self._ridge(E.T @ E / D.shape[0])]
        else:
            weights, means, covs, self.em_iterations_ = fit_mixture(
                D, self.n_components, reg=self.reg, max_iter=self.max_iter, tol=self.tol,
                seed=self.seed, progress=self.progress)
        self.n_transitions_ = int(D.shape[0])
        self._data_states = X
        self._data_actions = U
        return self._set(weights, means, covs, reward)

    def _ridge(self, cov: np.ndarray) -> np.ndarray:
        """The joint covariance with the noise ridge (class docstring); warns when it applies."""
        names = self.states + self.actions + self.next_states
        out, k = noise_floor(cov, len(self.states) + len(self.actions), self.reg, names)
        self.ridge_directions_ = k
        if k:
            warnings.warn(
                f"the logged dynamics are noise-free in {k} of {len(self.states)} direction(s) "
                f"of {self.next_states}: the noise covariance W was raised there to reg={self.reg:g}"
                " x the next-state variances (the noise ridge). A, B, K and P are unchanged; W, "
                "predicted covariances, log-likelihoods and the value's noise constant use the "
                "ridge. Pass reg= to change it", SpmnWarning, stacklevel=3)
        return out

    def _check_fitted(self) -> None:
        if not hasattr(self, "circuit_"):
            raise NotFittedError("this GaussianWorldModel is not fitted: call fit(transitions)")

    @property
    def components(self) -> list[N.MultivariateGaussian]:
        """The Gaussian leaves of the circuit (one per mixture component)."""
        self._check_fitted()
        root = self.circuit_.root
        return [root] if isinstance(root, N.MultivariateGaussian) else list(root.children)

    @property
    def weights(self) -> np.ndarray:
        self._check_fitted()
        root = self.circuit_.root
        return np.ones(1) if isinstance(root, N.MultivariateGaussian) else root.weights.copy()

    @property
    def coverage_(self) -> np.ndarray:
        """Logged transitions behind each mixture component (weight x transitions; one entry
        for a single Gaussian; 0 for a model made by ``from_system``)."""
        self._check_fitted()
        return self.weights * self.n_transitions_

    def linear_dynamics(self, component: int | None = None) -> LinearDynamics:
        """(A, B, offset, W) of a component, read from its leaf: the conditional of the joint
        Gaussian, ``[A B] = Σ_{x'z} Σ_zz⁻¹``, ``W = Σ_{x'x'} − [A B] Σ_{zx'}``."""
        comps = self.components
        if component is None:
            if len(comps) > 1:
                raise SolverError(f"the model has {len(comps)} components: pass component=k")
            component = 0
        leaf = comps[component]
        n, m = len(self.states), len(self.actions)
        F, f, W = conditional(leaf.mean, leaf.cov, np.arange(n + m), np.arange(n + m, 2 * n + m))
        return LinearDynamics(F[:, :n], F[:, n:], f, W)

    # ------------------------------------------------------------------ queries
    def _evidence(self, x: ArrayLike, u: ArrayLike) -> tuple[np.ndarray, bool]:
        n, m = len(self.states), len(self.actions)
        X, Uu = np.asarray(x, dtype=np.float64), np.asarray(u, dtype=np.float64)
        one = X.ndim <= 1
        X, Uu = X.reshape(-1, n), Uu.reshape(-1, m)
        if X.shape[0] != Uu.shape[0]:
            raise DataError(f"{X.shape[0]} states but {Uu.shape[0]} actions")
        E = np.full((X.shape[0], 2 * n + m), np.nan)
        E[:, :n], E[:, n:n + m] = X, Uu
        return E, one

    def predict(self, x: ArrayLike, u: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Exact mean and covariance of x' given (x, u), read from the circuit (mixtures: the
        mixture's moments)."""
        self._check_fitted()
        E, one = self._evidence(x, u)
        mo = moments(self.circuit_, E, self.next_states)
        return (mo.mean[0], mo.cov[0]) if one else (mo.mean, mo.cov)

    def log_likelihood(self, transitions: Mapping[str, ArrayLike] | Any) -> np.ndarray:
        """``log p(x, u, x')`` per logged transition (the circuit's density; ``backend``)."""
        self._check_fitted()
        D = np.hstack([_columns(transitions, self.states, "state"),
                       _columns(transitions, self.actions, "action"),
                       _columns(transitions, self.next_states, "next-state")])
        return self.circuit_.log_likelihood(D, backend=self.backend)

    def sample_next(self, x: ArrayLike, u: ArrayLike,
                    seed: int | np.random.Generator | None = None) -> np.ndarray:
        """Draws of ``x' ~ p(x' | x, u)`` per row (the circuit's sampler on ``backend``; the
        model's ``seed`` unless ``seed`` is given)."""
        self._check_fitted()
        E, one = self._evidence(x, u)
        n = len(self.states)
        out = self.circuit_.sample(evidence=E, seed=self.seed if seed is None else seed,
                                   backend=self.backend)[:, -n:]
        return out[0] if one else out

    def expected_value(self, value: Quadratic, x: ArrayLike, u: ArrayLike) -> float | np.ndarray:
        """E[value(x') | x, u] through the circuit (``value`` over the next-state names, or over
        the state names, which are renamed to their next-state columns)."""
        self._check_fitted()
        if set(value.names) <= set(self.states):
            value = Quadratic([f"{v}_next" for v in value.names], value.M, value.m, value.c)
        E, one = self._evidence(x, u)
        out = value.expectation(self.circuit_, E)
        return float(np.asarray(out).reshape(-1)[0]) if one else out

    def solve(self, gamma: float = 0.95, *, method: str | None = None, tol: float = 1e-13,
              action_grid: ArrayLike | None = None, anchors: ArrayLike | None = None,
              n_anchors: int = 300, grid_size: int = 41, n_bumps: int = 25) -> GaussianSolution:
        """Optimal quadratic value and policy (see :mod:`spmn.worldmodels.gaussian.riccati`).

        One component: ``method`` "policy_iteration" (default) or "value_iteration", the
        discounted Riccati recursion in closed form. Mixtures (or ``method="grid"``): fitted
        value iteration (:mod:`spmn.worldmodels.gaussian.grid`: a quadratic plus ``n_bumps`` Gaussian
        bumps) at ``anchors`` (default: ``n_anchors`` logged states drawn with ``seed``) with a
        max over ``action_grid`` (default: ``grid_size`` points per action over the logged
        range; a product grid for several actions).
        """
        self._check_fitted()
        G = self.reward_.embed(self.states + self.actions).augmented()
        method = method or ("policy_iteration" if len(self.components) == 1 else "grid")
        if method != "grid":
            if len(self.components) > 1:
                raise SolverError(f"method {method!r} needs one component; mixtures use 'grid'")
            d = self.linear_dynamics()
            sol = solve_riccati(np.hstack([d.A, d.B]), d.offset, d.W, G, gamma,
                                method=method, tol=tol)
            return dataclasses.replace(sol, state_names=list(self.states))
        S, A = self._grid(action_grid, anchors, n_anchors, grid_size)
        return solve_grid(self, gamma, S, A, n_bumps=n_bumps, tol=max(tol, 1e-12), seed=self.seed,
                          progress=self.progress)

    def _grid(self, action_grid, anchors, n_anchors: int, grid_size: int):
        n, m = len(self.states), len(self.actions)
        rng = np.random.default_rng(self.seed)
        if anchors is None:
            if not hasattr(self, "_data_states"):
                raise SolverError("give anchors= (states at which values are fitted)")
            Xs = self._data_states
            S = Xs[rng.choice(Xs.shape[0], min(n_anchors, Xs.shape[0]), replace=False)]
        else:
            S = np.asarray(anchors, dtype=np.float64)
            if S.ndim > 2 or S.size % n or not np.all(np.isfinite(S)):
                raise DataError(f"anchors must be finite states with {n} coordinates, got "
                                f"shape {S.shape}")
            S = S.reshape(-1, n)
        if action_grid is None:
            if not hasattr(self, "_data_actions"):
                raise SolverError("give action_grid= (the candidate actions)")
            lo, hi = self._data_actions.min(axis=0), self._data_actions.max(axis=0)
            axes = [np.linspace(lo[j], hi[j], grid_size) for j in range(m)]
            A = np.stack([g.ravel() for g in np.meshgrid(*axes, indexing="ij")], axis=1)
        else:
            A = np.asarray(action_grid, dtype=np.float64)
            if A.ndim > 2 or A.size % m or A.size == 0 or not np.all(np.isfinite(A)):
                raise DataError(f"action_grid must hold finite actions with {m} coordinates, "
                                f"got shape {A.shape}")
            A = A.reshape(-1, m)
        if A.shape[0] * S.shape[0] > 5_000_000:
            raise SolverError(f"{S.shape[0]} anchors x {A.shape[0]} actions is too many rows")
        return S, A

    # ------------------------------------------------------------------ filtering
    def filter(self, y: ArrayLike, u: ArrayLike | None = None, C: ArrayLike | None = None,
               V: ArrayLike | None = None, m0: ArrayLike | None = None,
               P0: ArrayLike | None = None):
        """Kalman filter for ``y_t = C x_t + v_t``, ``v ~ N(0, V)``, prior ``x_0 ~ N(m0, P0)``
        (default N(0, I)); ``u[t]`` drives ``x_{t+1}``; NaN in y = missing. The prediction is
        the model's conditional Gaussian integrated over the filtered state; the update and
        the log-likelihood are those of :meth:`LinearGaussianSystem.kalman_filter`."""
        self._check_fitted()
        if len(self.components) != 1:
            raise SolverError("filter needs a single-component (linear-Gaussian) model; a "
                              "mixture's filtering distribution is not Gaussian")
        return kalman_filter(self.linear_dynamics(), y, u, C, V, m0, P0)

    def summary(self):
        self._check_fitted()
        return self.circuit_.summary()

    def validate(self) -> "GaussianWorldModel":
        self._check_fitted()
        self.circuit_.validate()
        return self

    def __repr__(self) -> str:
        fitted = f", components={len(self.components)}" if hasattr(self, "circuit_") else ""
        return (f"GaussianWorldModel(states={self.states}, actions={self.actions}, "
                f"reward={self.reward!r}{fitted})")


# ---------------------------------------------------------------------------- model files
def to_payload(model: GaussianWorldModel, arrays) -> dict[str, Any]:
    model._check_fitted()
    return {"states": model.states, "actions": model.actions, "reward": model.reward,
            "n_components": model.n_components, "intercept": model.intercept, "reg": model.reg,
            "max_iter": model.max_iter, "tol": model.tol,
            "seed": model.seed if isinstance(model.seed, int) else None,
            "reward_model": model.reward_.to_dict(),
            "n_transitions": getattr(model, "n_transitions_", 0),
            "circuit": circuit_to_payload(model.circuit_, arrays)}


def from_payload(payload: dict[str, Any], arrays) -> GaussianWorldModel:
    reward = Quadratic.from_dict(payload["reward_model"])
    model = GaussianWorldModel(payload["states"], payload["actions"], payload["reward"],
                               cost=None if payload["reward"] is not None else -reward,
                               n_components=payload["n_components"],
                               intercept=payload["intercept"], reg=payload["reg"],
                               max_iter=payload["max_iter"], tol=payload["tol"],
                               seed=payload["seed"])
    circuit = circuit_from_payload(payload["circuit"], arrays)
    if list(circuit.schema.names) != model.states + model.actions + model.next_states:
        raise DataError("the stored circuit's variables do not match the model's states/actions")
    model.circuit_, model.reward_ = circuit, reward
    model.n_transitions_ = int(payload["n_transitions"])
    return model


register_kind("gaussian_world_model", GaussianWorldModel, to_payload, from_payload)
