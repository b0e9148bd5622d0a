"""The solved factored world model: the SolutionProtocol lookups, the value tree readout, and the
coverage check of the greedy policy."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import CoverageWarning, DataError, SolverError
from ...kernels.reference import first_near_max
from ..solution import check_step, state_rows
from ..tabular.coverage import DELTA, EPS, _rows, samples_needed
from .add import TERM, Diagrams
from .flat import FlatResult
from .mdp import FactoredMDP
from .structured import StructuredResult, solve_structured


def state_codes(mdp: FactoredMDP, states: Any) -> tuple[np.ndarray, bool]:
    """(rows x state variables int64 codes, one state?) with errors naming the variable.
    A model with one-hot groups also takes states in the logged (input) layout."""
    g = mdp.groups
    if g is not None and g.is_input(states):
        S, one = _codes(states, g.input_names, g.input_cards)
        return g.encode(S), one
    return _codes(states, mdp.state_names, mdp.state_cards)


def _codes(states: Any, names: list[str], cards: np.ndarray) -> tuple[np.ndarray, bool]:
    X, one = state_rows(states, names)
    X = np.asarray(X)
    if X.dtype.kind not in "biuf":
        raise DataError(f"states must hold integer codes, got {X.dtype}")
    if X.dtype.kind == "f" and (np.isnan(X).any() or (X != np.round(X)).any()):
        j = int(np.flatnonzero((np.isnan(X) | (X != np.round(X))).any(axis=0))[0])
        raise DataError(f"state variable {names[j]!r} must hold integer codes")
    S = X.astype(np.int64)
    bad = (S < 0) | (S >= cards[None, :])
    if bad.any():
        j = int(np.flatnonzero(bad.any(axis=0))[0])
        i = int(np.flatnonzero(bad[:, j])[0])
        raise DataError(f"state variable {names[j]!r} has code {int(S[i, j])} in row "
                        f"{i}, outside 0..{cards[j] - 1}")
    return S, one


class ValueTree:
    """V_t as a canonical decision diagram over the state variables (identical subtrees are one
    node): ``depends_on`` (the variables it tests), ``n_nodes``, ``n_leaves``, ``evaluate``;
    ``str()`` renders it and says which k of the n variables the value depends on."""

    def __init__(self, store: Diagrams, root: int, mdp: FactoredMDP, t: int,
                 column: np.ndarray) -> None:
        order = store.reachable([root])[::-1]  # root first
        pos = {f: i for i, f in enumerate(order)}
        self.t = t
        self.names = list(mdp.state_names)
        self.var = np.array([-1 if store.lev[f] == TERM else int(column[store.lev[f]])
                             for f in order], np.int64)
        self.kids = [tuple(pos[c] for c in store.kids[f]) for f in order]
        self.leaf_value = np.array([store.val[f] if store.lev[f] == TERM else np.nan
                                    for f in order])

    @property
    def n_nodes(self) -> int:
        return len(self.kids)

    @property
    def n_leaves(self) -> int:
        return int((self.var < 0).sum())

    @property
    def depends_on(self) -> list[str]:
        used = set(self.var[self.var >= 0].tolist())
        return [n for j, n in enumerate(self.names) if j in used]

    def evaluate(self, S: np.ndarray) -> np.ndarray:
        S = np.atleast_2d(np.asarray(S, np.int64))
        node = np.zeros(S.shape[0], np.int64)
        kmax = max([len(k) for k in self.kids] + [1])
        kid = np.array([list(k) + [0] * (kmax - len(k)) for k in self.kids], np.int64)
        while True:
            act = np.flatnonzero(self.var[node] >= 0)
            if act.size == 0:
                return self.leaf_value[node]
            node[act] = kid[node[act], S[act, self.var[node[act]]]]

    def summary(self) -> str:
        k, n = len(self.depends_on), len(self.names)
        return (f"V_{self.t}: the value depends on these {k} of {n} variables: "
                f"{', '.join(self.depends_on) if k else '(none: constant)'} "
                f"({self.n_nodes} nodes, {self.n_leaves} distinct values)")

    def render(self, max_lines: int = 60) -> str:
        lines = [self.summary()]
        shown: dict[int, int] = {}

        def walk(i: int, depth: int, prefix: str) -> None:
            if len(lines) > max_lines:
                return
            pad = "  " * depth
            if self.var[i] < 0:
                lines.append(f"{pad}{prefix}{self.leaf_value[i]:.6g}")
                return
            if i in shown:
                lines.append(f"{pad}{prefix}[node {i}, as above]")
                return
            shown[i] = len(lines)
            if prefix:
                lines.append(f"{pad}{prefix.rstrip(': ')}  [node {i}]")
                depth += 1
                pad = "  " * depth
            name = self.names[self.var[i]]
            for v, c in enumerate(self.kids[i]):
                walk(c, depth, f"{name} = {v}: ")

        walk(0, 0, "")
        if len(lines) > max_lines:
            lines = lines[:max_lines] + [f"... ({self.n_nodes} nodes in all)"]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()


@dataclass(eq=False)
class FactoredSolution:
    """A solved :class:`~.model.FactoredWorldModel`: ``values`` are V at ``states`` (the
    enumerated reachable states of a flat solve; the start or logged states of a structured
    one), (N,) or (H+1, N) for a finite horizon; ``method`` says which solver ran. Lookups
    answer any state (a flat solve: states it enumerated, or whose successors it did). A
    layered flat solve (finite horizon from given start states) holds the states within
    H - 1 steps of them: ``values[t, j]`` is exact where state j is reachable by step t
    (``result.model.steps[j] <= t``), and lookups of other (state, t) pairs raise."""

    mdp: FactoredMDP
    result: StructuredResult | FlatResult
    method: str
    states: np.ndarray
    values: np.ndarray
    tol: float = 1e-8
    max_nodes: int | None = None
    _structured: StructuredResult | None = field(default=None, repr=False)

    @property
    def gamma(self) -> float:
        return self.result.gamma

    @property
    def horizon(self) -> int | None:
        return self.result.horizon

    @property
    def iterations(self) -> int:
        return self.result.iterations

    @property
    def residual(self) -> float:
        return self.result.residual

    def _q(self, states: Any, t: int) -> tuple[np.ndarray, bool]:
        t = check_step(t, self.horizon)
        S, one = state_codes(self.mdp, states)
        return self.result.q_rows(self.mdp, S, t if self.horizon is not None else 0), one

    def covers(self, states: Any, t: int = 0) -> np.ndarray:
        """Whether the lookups answer each state at step ``t`` (bool per row): always for a
        structured or closed flat solve; a layered one (class docstring) answers the states
        reachable by step t and those whose successors it holds."""
        t = check_step(t, self.horizon)
        S, _ = state_codes(self.mdp, states)
        if isinstance(self.result, FlatResult):
            return self.result.covers(self.mdp, S, t if self.horizon is not None else 0)
        return np.ones(S.shape[0], bool)

    def q(self, states: Any, t: int = 0) -> np.ndarray:
        """Q_t(s, a) per state and joint action (rows x joint actions; (A,) for one state)."""
        Q, one = self._q(states, t)
        return Q[0] if one else Q

    def value(self, states: Any, t: int = 0):
        """V_t(s) = max_a Q_t(s, a)."""
        Q, one = self._q(states, t)
        V = Q.max(axis=1)
        return float(V[0]) if one else V

    def joint_policy(self, states: Any, t: int = 0) -> np.ndarray:
        """Greedy joint action code per state (ties: the lowest code)."""
        Q, _ = self._q(states, t)
        return first_near_max(Q.T).astype(np.int64)

    def policy(self, states: Any, t: int = 0):
        """Greedy action per state at step ``t``: a code, or one column per action variable
        when there are several."""
        Q, one = self._q(states, t)
        joint = first_near_max(Q.T).astype(np.int64)
        out = joint if self.mdp.m == 1 else self.mdp.joint[joint]
        return (int(out[0]) if out.ndim == 1 else out[0]) if one else out

    def value_tree(self, t: int = 0) -> ValueTree:
        """V_t as a decision diagram over the state variables (a flat solution runs the
        structured solver once for it, with the same discount, horizon and tol)."""
        t = check_step(t, self.horizon)
        res = self.result if isinstance(self.result, StructuredResult) else self._structured
        if res is None:
            res = solve_structured(self.mdp, self.gamma, self.horizon, self.tol,
                                   max_nodes=self.max_nodes)
            self._structured = res
        root = res.V[0] if self.horizon is None else res.V[t]
        return ValueTree(res.store, root, self.mdp, t, res.column)


def warn_thin(sol: FactoredSolution, S: np.ndarray, where: str, min_count: int) -> int:
    """Warn (CoverageWarning) when the greedy policy at ``S`` uses factor leaves or reward cells
    logged fewer than ``min_count`` times; returns the number of such states."""
    if S.shape[0] == 0 or min_count <= 0:
        return 0
    steps = [0] if sol.horizon is None else list(range(sol.horizon))
    X = np.concatenate([sol.mdp.with_actions(S, sol.joint_policy(S, t)) for t in steps])
    _, first, inv = np.unique(_rows(X), return_index=True, return_inverse=True)
    owner = np.tile(np.arange(S.shape[0]), len(steps))
    thin = np.zeros(S.shape[0], bool)
    fewest, culprits = np.inf, set()
    for target, c in sol.mdp.leaf_counts(X[first]).items():
        low = c < min_count
        if low.any():
            np.logical_or.at(thin, owner[low[inv.ravel()]], True)
            culprits.add(target)
            fewest = min(fewest, float(c[low].min()))
    k = int(thin.sum())
    if k:
        names = ", ".join(sorted(culprits)[:6]) + (" ..." if len(culprits) > 6 else "")
        warnings.warn(
            f"the greedy policy at {k} of {S.shape[0]} {where} rests on model leaves logged "
            f"fewer than {min_count} times (fewest: {fewest:.0f}; in {names}). For every "
            f"probability of a leaf within ±{EPS} at {1 - DELTA:.0%} confidence (Hoeffding) a "
            f"leaf needs {samples_needed()} samples; log more transitions where the policy goes",
            CoverageWarning, stacklevel=3)
    return k


def check_solver(method: str) -> str:
    if method not in ("auto", "flat", "structured"):
        raise SolverError(f"unknown method {method!r}; use 'auto', 'flat' or 'structured'")
    return method
