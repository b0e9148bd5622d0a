"""ContinuousWorldModel: p(s', r, end | s, a) for continuous and mixed states, as a region tree
with continuous next-state leaves, solved exactly for the learned piecewise model.

As an SPMN over one step: deterministic sums on the thresholds of the region tree (a state is
in exactly one region), in each region a max over the actions, below it a product of the
next-state leaves (a histogram or a Gaussian per continuous variable, a categorical per
discrete one), the episode-end leaf and the mean-reward utility
(:meth:`ContinuousWorldModel.to_circuit`).

**What is exact, what is approximate.** The approximation is the region model: the dynamics
are taken to depend on the state only through its region (the leaves pool the region's logged
rows), a state's value and action are its region's, and continuous actions are replaced by the
action grid. Given those regions, everything is exact: the probability of landing in each
region is the leaf distribution integrated over the region's box in closed form (CDFs,
:mod:`.leaves`), the expected reward is the leaves' mean, and the values and greedy policy are
those of the resulting finite MDP over regions (policy iteration with an exact linear solve,
:mod:`.solve`), so the Bellman update over regions is exact for the piecewise model.
Refinement (``refine_rounds``) makes the regions finer where the Bellman targets of the logged
transitions vary most within a (region, action), then re-solves.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..._progress import progress_bar
from ...errors import CoverageWarning, DataError, NotFittedError, SpmnWarning
from ...io import register_kind
from ..columns import column
from ..simulable import Simulable
from . import leaves as L
from .explain import ContinuousExplanation, explain
from .regions import RegionTree, best_split, grow
from .solve import ContinuousSolution, solve_regions

__all__ = ["ContinuousSolution", "ContinuousWorldModel"]


def _names(x) -> list[str]:
    return [x] if isinstance(x, str) else list(x)


def _finite(M: np.ndarray, names: Sequence[str], what: str) -> None:
    bad = ~np.isfinite(M)
    if bad.any():
        i, j = (int(v[0]) for v in np.nonzero(bad))
        raise DataError(f"{what}: row {i}, column {names[j]!r} is {M[i, j]!r}; state values "
                        "must be finite numbers")


class ContinuousWorldModel(Simulable):
    """World model of continuous (and discrete) states from logged (s, a, r, s', end).

    ``states``: state column names (next states ``<name>_next``); ``discrete`` names those
    holding integer codes (split on code thresholds, categorical leaves). ``actions``: action
    column(s) of integer codes, or, with ``action_grid`` (k values, or k x m for m action
    columns), continuous actions: the model has one action per grid point and each logged
    action is assigned to its nearest grid point (warned when logs are off the grid: log the
    grid's values for an unbiased model). ``terminated``: the episode-end column (truncation is
    not an end); ``reward``: the reward column.

    Regions (:mod:`.regions`): grown best first by the Gaussian log-likelihood gain of the
    standardized targets up to ``max_regions``, ``min_samples_leaf`` rows per side, at most
    ``n_candidates`` thresholds per variable and node, stopped early when the best gain is
    below ``split_penalty`` (None: BIC, ``½ p log n``; 0: grow to ``max_regions``). Leaves
    (:mod:`.leaves`): ``leaf="histogram"`` (breaks at the tree's thresholds: each boundary is
    crossed by exactly the logged fraction) or ``"gaussian"`` (σ at least ``min_std`` x the
    variable's logged spread).
    ``refine_rounds`` rounds of value-directed refinement at discount ``refine_gamma`` split
    ``refine_fraction`` of the regions each (those where the Bellman targets vary most).

    Common keywords: ``progress`` (a bar on long fits), ``seed`` (accepted for the common API;
    the fit has no random step), ``backend`` (accepted for the common API: the region
    solver is sparse numpy/scipy; :meth:`to_circuit`'s queries take their own ``backend=``).
    ``min_count``: :meth:`solve` warns with a :class:`~spmn.errors.CoverageWarning` when the
    greedy policy takes a (region, action) pair logged fewer times (or never: the pooled fallback).

    A query state outside the logged range is answered by the region whose box holds it (the
    outer regions extend to ±inf: the nearest region on each axis), warned with a
    ``CoverageWarning``, never NaN. NaN or infinite values are an error naming row and column.

    Fitted attributes: ``tree_``, ``leaves_``, ``coverage_`` (logged rows per region and
    action), ``n_regions_``, ``n_transitions_``, ``low_``/``high_`` (logged range per state
    variable), ``action_table_`` (action values per action index), ``importance_``.
    """

    def __init__(self, states: str | Sequence[str], actions: str | Sequence[str],
                 reward: str = "r", terminated: str | None = None, *,
                 discrete: Sequence[str] = (), action_grid: Any = None,
                 max_regions: int = 1000, min_samples_leaf: int = 10, n_candidates: int = 32,
                 split_penalty: float | None = None, leaf: str = "histogram",
                 min_std: float = 1e-3, refine_rounds: int = 0, refine_gamma: float = 0.99,
                 refine_fraction: float = 0.25, min_count: int = 5, progress: bool = True,
                 seed: Any = None, backend: str | None = None) -> None:
        self.states, self.actions = _names(states), _names(actions)
        if not self.states or not self.actions:
            raise DataError("a ContinuousWorldModel needs at least one state and one action")
        allnames = self.states + self.actions + [f"{s}_next" for s in self.states]
        if len(set(allnames)) != len(allnames):
            raise DataError(f"state/action names {self.states + self.actions} collide")
        self.discrete = list(discrete)
        unknown = [v for v in self.discrete if v not in self.states]
        if unknown:
            raise DataError(f"discrete variables {unknown} are not state variables {self.states}")
        self.reward, self.terminated = reward, terminated
        self.action_grid = None if action_grid is None else \
            np.asarray(action_grid, np.float64).reshape(-1, len(self.actions))
        if self.action_grid is not None and (self.action_grid.size == 0 or
                                             not np.all(np.isfinite(self.action_grid))):
            raise DataError("action_grid must hold finite action values")
        if int(max_regions) < 1 or int(min_samples_leaf) < 1 or int(n_candidates) < 1:
            raise DataError("max_regions, min_samples_leaf and n_candidates must be >= 1")
        if leaf not in ("histogram", "gaussian"):
            raise DataError(f"leaf must be 'histogram' or 'gaussian', got {leaf!r}")
        self.leaf = leaf
        if split_penalty is not None and not (np.isfinite(split_penalty) and split_penalty >= 0):
            raise DataError(f"split_penalty must be None (BIC) or a number >= 0, got "
                            f"{split_penalty!r}")
        self.split_penalty = split_penalty
        if not (np.isfinite(min_std) and min_std > 0):
            raise DataError(f"min_std must be a number > 0, got {min_std!r}")
        if not 0 < float(refine_fraction) <= 1 or int(refine_rounds) < 0:
            raise DataError("refine_fraction must lie in (0, 1] and refine_rounds be >= 0")
        self.max_regions, self.min_samples_leaf = int(max_regions), int(min_samples_leaf)
        self.n_candidates, self.min_std = int(n_candidates), float(min_std)
        self.refine_rounds, self.refine_gamma = int(refine_rounds), float(refine_gamma)
        self.refine_fraction, self.min_count = float(refine_fraction), int(min_count)
        self.progress, self.seed, self.backend = bool(progress), seed, backend

    # ------------------------------------------------------------------ data
    @property
    def state_names_(self) -> list[str]:
        return list(self.states)

    def _matrix(self, data: Any, names: Sequence[str], what: str) -> np.ndarray:
        cols = [column(data, n, what) for n in names]
        n = {c.shape[0] for c in cols}
        if len(n) > 1:
            raise DataError(f"{what} columns {list(names)} have different lengths {sorted(n)}")
        return np.stack([c.astype(np.float64) for c in cols], axis=1)

    def _read(self, data: Any):
        if isinstance(data, np.lib.npyio.NpzFile):
            data = {k: data[k] for k in data.files}
        if not (isinstance(data, Mapping) or hasattr(data, "columns")):
            raise DataError("transitions must be a dict of columns, a DataFrame or an npz file")
        X = self._matrix(data, self.states, "state")
        Xn = self._matrix(data, [f"{s}_next" for s in self.states], "next-state")
        U = self._matrix(data, self.actions, "action")
        r = column(data, self.reward, "reward").astype(np.float64)
        n = X.shape[0]
        if not (Xn.shape[0] == U.shape[0] == r.shape[0] == n):
            raise DataError(f"state, next-state, action and reward columns have {n}, "
                            f"{Xn.shape[0]}, {U.shape[0]} and {r.shape[0]} rows")
        if n == 0:
            raise DataError("no transitions to learn from")
        _finite(X, self.states, "state")
        _finite(Xn, [f"{s}_next" for s in self.states], "next state")
        _finite(U, self.actions, "action")
        _finite(r[:, None], [self.reward], "reward")
        end = np.zeros(n, bool)
        if self.terminated is not None:
            t = column(data, self.terminated, "terminated")
            if t.dtype.kind != "b" and not np.isin(t, (0, 1)).all():
                raise DataError(f"terminated column {self.terminated!r} must be boolean (0/1)")
            end = t.astype(bool)
        return X, U, r, Xn, end

    def _action_codes(self, U: np.ndarray) -> np.ndarray:
        if self.action_grid is None:
            if (U != np.round(U)).any() or (U < 0).any():
                i, j = (int(v[0]) for v in np.nonzero((U != np.round(U)) | (U < 0)))
                raise DataError(f"action row {i}, column {self.actions[j]!r} is {U[i, j]!r}: "
                                "actions must be integer codes >= 0, or pass action_grid= for "
                                "continuous actions")
            cards = U.max(axis=0).astype(np.int64) + 1
            axes = np.meshgrid(*[np.arange(c) for c in cards], indexing="ij")
            self.action_table_ = np.stack([g.ravel() for g in axes], axis=1).astype(float)
            self.action_cards_ = cards
            return np.ravel_multi_index(U.astype(np.int64).T, cards)
        G = self.action_grid
        if G.shape[1] != U.shape[1]:
            raise DataError(f"action_grid has {G.shape[1]} columns for {U.shape[1]} actions")
        self.action_table_ = G.copy()
        dist = ((U[:, None, :] - G[None]) ** 2).sum(axis=2)
        a = dist.argmin(axis=1)
        off = np.sqrt(dist[np.arange(U.shape[0]), a])
        if (off > 1e-9 * (1 + np.abs(G).max())).any():
            warnings.warn(f"{int((off > 0).sum()):,} of {U.shape[0]:,} logged actions are not on "
                          f"the action grid (up to {off.max():.3g} away); each is assigned to "
                          "its nearest grid point, which biases the model of that action: log "
                          "the grid's values for an exact assignment", SpmnWarning, stacklevel=3)
        return a

    # ------------------------------------------------------------------ learning
    def fit(self, transitions: Any) -> ContinuousWorldModel:
        """Learn the regions, then the leaves, then (``refine_rounds``) refine and refit."""
        X, U, r, Xn, end = self._read(transitions)
        disc = np.array([s in self.discrete for s in self.states])
        for j in np.flatnonzero(disc):
            for M, nm in ((X, self.states[j]), (Xn, f"{self.states[j]}_next")):
                bad = (M[:, j] != np.round(M[:, j])) | (M[:, j] < 0)
                if bad.any():
                    raise DataError(f"row {int(np.argmax(bad))}, column {nm!r}: a discrete state "
                                    f"must hold integer codes >= 0, got {M[bad, j][0]!r}")
        a = self._action_codes(U)
        A = self.action_table_.shape[0]
        self.discrete_ = disc
        self.cards_ = np.where(disc, np.maximum(X.max(0), Xn.max(0)) + 1, 0).astype(np.int64)
        self.low_, self.high_ = np.minimum(X.min(0), Xn.min(0)), np.maximum(X.max(0), Xn.max(0))
        spread = Xn.std(axis=0)
        self.scale_ = np.where(spread > 0, spread, 1.0)
        self.n_transitions_ = int(X.shape[0])
        self._data = (X, a, r, Xn, end)
        Y = self._targets(r, Xn, end)
        q = Y.shape[1]
        penalty = 0.5 * A * 2 * q * np.log(X.shape[0]) if self.split_penalty is None \
            else self.split_penalty
        with progress_bar(self.progress and X.shape[0] > 20000, desc="growing regions",
                          unit="region") as bar:
            self.tree_, self.importance_ = grow(
                X, a, Y, A, max_regions=self.max_regions, min_samples_leaf=self.min_samples_leaf,
                n_candidates=self.n_candidates, var_floor=(self.min_std) ** 2, penalty=penalty,
                progress=lambda k: bar.update(1))
        self.target_names_ = [f"{s}_next" for s in self.states] + \
            [self.reward] * self._has_reward + [self.terminated or "end"] * self._has_end
        self._fit_leaves()
        for _ in range(self.refine_rounds):
            self.refine(self.refine_gamma, self.refine_fraction)
        return self

    def _targets(self, r: np.ndarray, Xn: np.ndarray, end: np.ndarray) -> np.ndarray:
        cols = [(Xn - Xn.mean(0)) / self.scale_]
        self._has_reward = bool(r.std() > 0)
        self._has_end = bool(end.any() and not end.all())
        if self._has_reward:
            cols.append(((r - r.mean()) / r.std())[:, None])
        if self._has_end:
            e = end.astype(float)
            cols.append(((e - e.mean()) / e.std())[:, None])
        return np.hstack(cols)

    def _fit_leaves(self) -> None:
        X, a, r, Xn, end = self._data
        t = self.tree_
        edges = [np.unique(t.threshold[t.var == j]) for j in range(len(self.states))] \
            if self.leaf == "histogram" else None
        self.leaves_ = L.fit_leaves(t.route(X), a, r, Xn, end, t.n_regions,
                                    self.action_table_.shape[0], self.discrete_, self.cards_,
                                    self.scale_, self.min_std, edges)
        self._landing = None
        self._circuit = None

    def refine(self, gamma: float = 0.99, fraction: float = 0.25) -> ContinuousWorldModel:
        """One round of value-directed refinement: solve, then split the ``fraction`` of the
        regions with the largest reduction in the squared spread of the Bellman targets
        ``y = r + γ (1 − end) V(region of s')`` of their logged rows (per action), and refit
        the leaves. Needs the fitted data (a loaded model has none)."""
        self._check_fitted()
        if getattr(self, "_data", None) is None:
            raise NotFittedError("refine needs the logged data: fit the model (a loaded file "
                                 "holds none)")
        sol = self.solve(gamma, warn=False)
        X, a, r, Xn, end = self._data
        k = self.tree_.route(X)
        y = r + gamma * (~end) * sol.values[self.tree_.route(Xn)]
        Y = ((y - y.mean()) / max(y.std(), 1e-300))[:, None]
        order = np.argsort(k, kind="stable")
        bounds = np.searchsorted(k[order], np.arange(self.tree_.n_regions + 1))
        A = self.action_table_.shape[0]
        found = []
        for j in range(self.tree_.n_regions):
            idx = order[bounds[j]:bounds[j + 1]]
            s = best_split(X[idx], a[idx], Y[idx], A, min_samples_leaf=self.min_samples_leaf,
                           n_candidates=self.n_candidates, var_floor=0.0, criterion="sse")
            if s is not None and s.gain > 0:
                found.append((s.gain, j, s))
        found.sort(key=lambda t: -t[0])
        for _, j, s in found[:max(1, int(round(fraction * self.tree_.n_regions)))]:
            self.tree_.split_region(j, s.var, s.threshold)
        self._fit_leaves()
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "leaves_"):
            raise NotFittedError("this ContinuousWorldModel is not fitted: call fit(transitions)")

    @property
    def n_regions_(self) -> int:
        self._check_fitted()
        return self.tree_.n_regions

    @property
    def coverage_(self) -> np.ndarray:
        """Logged transitions per (region, action) (0 where the pooled fallback stands in)."""
        self._check_fitted()
        return np.where(self.leaves_.fallback, 0, self.leaves_.count).astype(np.int64)

    # ------------------------------------------------------------------ queries
    def regions(self, states: Any) -> np.ndarray:
        """Region index of each state (rows x state variables, or columns): NaN or inf is an
        error naming row and column; a state outside the logged range goes to the region whose
        box holds it (the nearest region), with a ``CoverageWarning``."""
        self._check_fitted()
        from ..solution import state_rows

        X = states if isinstance(states, np.ndarray) and states.ndim == 2 and \
            states.shape[1] == len(self.states) else state_rows(states, self.states)[0]
        X = np.asarray(X, np.float64)
        _finite(X, self.states, "state")
        out = (X < self.low_) | (X > self.high_)
        if out.any():
            rows = out.any(axis=1)
            warnings.warn(f"{int(rows.sum()):,} of {X.shape[0]:,} states lie outside the logged "
                          f"range of {[self.states[j] for j in np.flatnonzero(out.any(0))]}; each "
                          "is answered by the region whose box holds it (the nearest region)",
                          CoverageWarning, stacklevel=3)
        return self.tree_.route(X)

    def action_values(self, idx: np.ndarray) -> np.ndarray:
        """Action value(s) of action indices: codes (ints) or grid values."""
        vals = self.action_table_[np.asarray(idx, np.int64)]
        if self.action_grid is None:
            vals = vals.astype(np.int64) if len(self.actions) > 1 else \
                np.ravel_multi_index(vals.astype(np.int64).T, self.action_cards_)
            return vals
        return vals[..., 0] if len(self.actions) == 1 else vals

    def action_index(self, actions: Any) -> np.ndarray:
        """Indices of candidate actions (codes or grid values); an action not in the model is an
        error."""
        self._check_fitted()
        U = np.asarray(actions, np.float64).reshape(-1, len(self.actions))
        T = self.action_table_
        if self.action_grid is None and len(self.actions) == 1:
            T = np.arange(T.shape[0], dtype=float)[:, None]
        hit = np.all(np.isclose(U[:, None, :], T[None], rtol=0, atol=1e-12), axis=2)
        if not hit.any(axis=1).all():
            bad = U[~hit.any(axis=1)][0]
            raise DataError(f"action {bad.tolist()} is not one of the model's actions "
                            f"{T.tolist()}")
        return hit.argmax(axis=1)

    def landing_probabilities(self):
        """``P[a]`` (regions x regions, sparse): exact probability of the next state's region
        given region and action (:func:`.leaves.landing`); cached."""
        self._check_fitted()
        if self._landing is None:
            lo, hi = self.tree_.boxes()
            self._landing = L.landing(self.leaves_, lo, hi, self.discrete_)
        return self._landing

    def solve(self, gamma: float = 0.99, horizon: int | None = None,
              method: str = "policy_iteration", tol: float = 1e-10, *,
              warn: bool = True) -> ContinuousSolution:
        """Exact values and greedy policy of the region model (:mod:`.solve`)."""
        self._check_fitted()
        lv = self.leaves_
        V, pol, Q, it, res = solve_regions(self.landing_probabilities(), lv.reward,
                                           1.0 - lv.p_end, gamma, horizon, method, tol)
        sol = ContinuousSolution(self, V, pol, Q, float(gamma), horizon, it, res, method)
        if warn:
            self._warn_policy(pol)
        return sol

    def _warn_policy(self, pol: np.ndarray) -> None:
        p = pol.reshape(-1, self.tree_.n_regions)
        K = np.arange(self.tree_.n_regions)
        cov = self.coverage_
        thin = np.zeros(self.tree_.n_regions, bool)
        for row in p:
            thin |= cov[K, row] < self.min_count
        if thin.any():
            warnings.warn(f"the greedy policy takes, in {int(thin.sum()):,} of {K.size:,} regions, "
                          f"an action logged there fewer than min_count={self.min_count} times "
                          "(0: never, the region's pooled leaves stand in); log more data there",
                          CoverageWarning, stacklevel=3)

    def explain(self, tol: float = 0.05) -> ContinuousExplanation:
        """What the regions split on and which variables each target depends on
        (:mod:`.explain`)."""
        self._check_fitted()
        return explain(self, tol)

    def plot_regions(self, solution: ContinuousSolution, x: str, y: str, **kw):
        """The regions over state variables ``x`` and ``y`` (others fixed) with the policy
        drawn on them (:func:`.plot.plot_regions`; needs matplotlib)."""
        from .plot import plot_regions

        return plot_regions(self, solution, x, y, **kw)

    def to_circuit(self):
        """The model as one SPMN over a step (:mod:`.circuit`)."""
        from .circuit import build_circuit

        self._check_fitted()
        return build_circuit(self)

    @property
    def circuit_(self):
        """:meth:`to_circuit`, built on first use and cached (``spmn show`` reads it)."""
        self._check_fitted()
        if getattr(self, "_circuit", None) is None:
            self._circuit = self.to_circuit()
        return self._circuit

    def validate(self) -> ContinuousWorldModel:
        """Check the leaves: probabilities in [0, 1] summing to one, σ > 0, finite rewards."""
        self._check_fitted()
        lv = self.leaves_
        ok = (np.all((lv.p_end >= 0) & (lv.p_end <= 1)) and np.all(np.isfinite(lv.reward))
              and np.all(np.isfinite(lv.mean)) and
              np.all(lv.std[..., ~self.discrete_] > 0))
        if lv.cat.size:
            ok = ok and np.allclose(lv.cat.sum(axis=3), 1.0, atol=1e-12)
        if lv.is_histogram:
            tot = np.asarray(lv.hist.sum(axis=1)).reshape(lv.count.shape + (-1,))
            cont = ~self.discrete_
            ok = ok and bool(lv.hist.data.min(initial=0.0) >= 0 and np.all(
                (tot[..., cont] == lv.live[..., None]) | (lv.live[..., None] == 0)))
        if not ok or lv.count.shape != (self.tree_.n_regions, self.action_table_.shape[0]):
            raise DataError("the continuous world model's leaves are inconsistent")
        return self

    def __repr__(self) -> str:
        fitted = f", regions={self.tree_.n_regions}" if hasattr(self, "tree_") else ""
        return (f"ContinuousWorldModel(states={self.states}, actions={self.actions}, "
                f"reward={self.reward!r}{fitted})")


# ---------------------------------------------------------------------------- model files
_HYPER = ("reward", "terminated", "discrete", "max_regions", "min_samples_leaf",
          "n_candidates", "split_penalty", "leaf", "min_std", "refine_rounds", "refine_gamma",
          "refine_fraction", "min_count")


def to_payload(m: ContinuousWorldModel, arrays) -> dict[str, Any]:
    m._check_fitted()

    def put(key, v):
        v = np.asarray(v, np.float64)
        return {"shape": list(v.shape), "data": arrays.put(key, v.ravel())}

    return {"states": m.states, "actions": m.actions,
            "hyper": {k: getattr(m, k) for k in _HYPER},
            "action_grid": None if m.action_grid is None else put("action_grid", m.action_grid),
            "n_transitions": m.n_transitions_, "target_names": m.target_names_,
            "fitted": {k: put(k, getattr(m, f"{k}_")) for k in
                       ("action_table", "discrete", "cards", "low", "high", "scale",
                        "importance")},
            "action_cards": None if m.action_grid is not None else put("action_cards",
                                                                       m.action_cards_),
            "tree": {k: put(f"tree_{k}", v) for k, v in m.tree_.to_arrays().items()},
            "leaves": {k: put(f"leaf_{k}", v) for k, v in m.leaves_.to_arrays().items()},
            "breaks": [put(f"break_{j}", b) for j, b in enumerate(m.leaves_.break_lists())]}


def from_payload(doc: dict[str, Any], arrays) -> ContinuousWorldModel:
    def get(e, dtype=np.float64):
        return arrays.get(e["data"]).astype(dtype).reshape(e["shape"])

    grid = None if doc["action_grid"] is None else get(doc["action_grid"])
    m = ContinuousWorldModel(doc["states"], doc["actions"], action_grid=grid, progress=False,
                             **doc["hyper"])
    for k, e in doc["fitted"].items():
        setattr(m, f"{k}_", get(e))
    m.discrete_ = m.discrete_.astype(bool)
    m.cards_ = m.cards_.astype(np.int64)
    if doc["action_cards"] is not None:
        m.action_cards_ = get(doc["action_cards"], np.int64)
    m.n_transitions_ = int(doc["n_transitions"])
    m.target_names_ = list(doc["target_names"])
    m.tree_ = RegionTree.from_arrays({k: get(e) for k, e in doc["tree"].items()},
                                     len(m.states))
    leaves = {k: get(e) for k, e in doc["leaves"].items()}
    leaves["breaks"] = [get(e).reshape(-1) for e in doc["breaks"]]
    m.leaves_ = L.Leaves.from_arrays(leaves)
    m._landing, m._data, m._circuit = None, None, None
    return m.validate()


register_kind("continuous_world_model", ContinuousWorldModel, to_payload, from_payload)
