"""Structured exact Bellman updates (the SPUDD idea) over the learned factors.

V and Q are algebraic decision diagrams (:mod:`.add`) over the state and action variables.
One update, exact for the learned model:

    Q(s, a) = r(s, a) + γ (1 - p(end | s, a)) Σ_{s'} Π_i p(s'_i | pa_i) V(s'),  V'(s) = max_a Q(s, a)

computed without the joint states: V is renamed onto next-state variables, and each next
variable it tests is summed out against its factor, ``Σ_v p(s'_i = v | pa_i) · V|_{s'_i = v}``
(a diagram over ``pa_i``); the additive reward's terms and the continuation are added and
multiplied in as small diagrams, then each action variable is maximized out. Costs grow with
the diagrams. Levels: action variables first (0..m-1), then each state variable's current and
next copies side by side (m + 2i, m + 2i + 1 for the i-th in :func:`state_order`: the many-valued
variables first, e.g. a one-hot group's position above the booleans it decides which of matter).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...errors import SolverError
from ..recurrent import check_gamma
from .add import Diagrams, deep_recursion
from .mdp import FactoredMDP

#: Compaction: a fresh store when the old one holds this many more nodes than live ones.
COMPACT_SLACK = 200_000
#: Updates whose support has at most this many cells run on dense tensors.
DENSE_CELLS = 1 << 18


@dataclass(eq=False)
class StructuredResult:
    """``V[t]`` (t = 0..H, V[H] = 0) and ``Q[t]`` (t < H) diagram ids in ``store``; a
    discounted solution has ``V = [V]``, ``Q = [Q]``."""

    store: Diagrams
    V: list[int]
    Q: list[int]
    column: np.ndarray
    gamma: float
    horizon: int | None
    iterations: int
    residual: float
    residuals: tuple[float, ...] = ()
    _arrays: dict = field(default_factory=dict)

    def q_rows(self, mdp: FactoredMDP, S: np.ndarray, t: int) -> np.ndarray:
        """Q_t(s, ·) for every state of ``S`` (rows x joint actions)."""
        q = self.Q[0] if self.horizon is None else self.Q[t]
        n, A = S.shape[0], mdp.n_actions
        levels = self.store.support(q)  # only the columns Q tests are laid out
        cols = sorted({int(self.column[lv]) for lv in levels})
        sc = [c for c in cols if c < mdp.d]
        ac = [c - mdp.d for c in cols if c >= mdp.d]
        E = np.concatenate([np.repeat(S[:, sc], A, axis=0),
                            np.tile(mdp.joint[:, ac], (n, 1))], axis=1)
        where = {c: i for i, c in enumerate(sc + [mdp.d + a for a in ac])}
        column = np.array([where.get(int(c), 0) for c in self.column], np.int64)
        return self.store.evaluate(q, E, column).reshape(n, A)

    def v_rows(self, mdp: FactoredMDP, S: np.ndarray, t: int) -> np.ndarray:
        v = self.V[0] if self.horizon is None else self.V[t]
        return self.store.evaluate(v, S, self.column)


def _grid(cards: np.ndarray) -> np.ndarray:
    """Every assignment of variables with these cardinalities (rows, last fastest)."""
    return np.indices(cards).reshape(len(cards), -1).T if len(cards) else np.zeros((1, 0), int)


def state_order(mdp: FactoredMDP) -> np.ndarray:
    """State columns top-down in the diagrams: by cardinality, largest first (ties: column
    order). A variable that selects which others matter (a position) is tested once at the
    top instead of under every combination of those others."""
    return np.argsort(-mdp.state_cards, kind="stable").astype(np.int64)


class _Model:
    """The learned factors as diagrams: ``P[i][v]`` = p(s'_i = v | pa_i), ``R`` = r(s, a),
    ``C`` = γ (1 - p(end | s, a))."""

    def __init__(self, mdp: FactoredMDP, gamma: float, max_nodes: int | None,
                 dense_cells: int = 0) -> None:
        d, m = mdp.d, mdp.m
        self.mdp = mdp
        self.gamma = gamma
        self.dense_cells = int(dense_cells)
        order = state_order(mdp)
        rank = np.empty(d, np.int64)
        rank[order] = np.arange(d)
        cards = [*mdp.action_cards.tolist()]
        for j in order.tolist():
            cards += [int(mdp.state_cards[j])] * 2
        self.store = Diagrams(cards, max_nodes)
        self.level_of_col = np.r_[m + 2 * rank, np.arange(m)].astype(np.int64)
        column = np.zeros(len(cards), np.int64)  # level -> column (current and next copies)
        column[:m] = d + np.arange(m)
        column[m + 2 * rank] = np.arange(d)
        column[m + 2 * rank + 1] = np.arange(d)
        self.column = column
        self.to_next = {int(m + 2 * rank[j]): int(m + 2 * rank[j] + 1) for j in range(d)}
        st = self.store
        self.P: dict[int, list[int]] = {}  # built on first use: only V's variables need them
        rew = mdp.reward
        R = st.const(rew.intercept)
        for cols, table in zip(rew.cols, rew.tables):
            R = st.add(R, st.table([int(self.level_of_col[c]) for c in cols], table))
        self.R = R
        self.M = self._mask() if mdp.restricted else None
        self.live = len(st)
        if self.dense_cells > 0:
            self._dense_parts()
        if mdp.end is None:
            self.C = st.const(gamma)
        else:
            self.C = st.affine(self._tree(mdp.end, mdp.end_probs), -gamma, gamma)
        st.clear()

    def _mask(self) -> int:
        """0 on the allowed joint actions, -inf elsewhere, over the action levels (built from
        the allowed rows: O(rows x action variables) nodes, never the product grid)."""
        st, joint, m = self.store, self.mdp.joint, self.mdp.m
        no = st.const(-np.inf)

        def rec(level: int, rows: np.ndarray) -> int:
            if not len(rows):
                return no
            if level == m:
                return st.zero
            col = joint[rows, level]
            return st.split(level, [rec(level + 1, rows[col == v])
                                    for v in range(int(self.mdp.action_cards[level]))])

        return rec(0, np.arange(len(joint)))

    def _dense_mask(self, KQ: list[int]) -> tuple[list[int], np.ndarray]:
        """The mask projected on Q's action columns: 0 where some allowed joint action takes
        those values (Q does not depend on the other action variables), -inf elsewhere."""
        mdp = self.mdp
        ac = [c for c in KQ if c >= mdp.d]
        T = np.full(mdp.cards[ac], -np.inf)
        T[tuple(mdp.joint[:, c - mdp.d] for c in ac)] = 0.0
        return ac, T

    def _tree(self, tree, leaf_values: np.ndarray) -> int:
        memo: dict[int, int] = {}
        st, cards = self.store, self.mdp.cards

        def conv(n: int) -> int:
            if n not in memo:
                j = int(tree.var[n])
                memo[n] = st.const(leaf_values[n]) if j < 0 else st.split(
                    int(self.level_of_col[j]), [conv(int(tree.child[n, v])) for v in range(cards[j])])
            return memo[n]

        return conv(0)

    def factor(self, j: int) -> list[int]:
        """Diagrams of p(s'_j = v | pa_j), one per value v."""
        if j not in self.P:
            tree, probs = self.mdp.trees[j], self.mdp.probs[j]
            self.P[j] = [self._tree(tree, probs[:, v]) for v in range(tree.k)]
        return self.P[j]

    def roots(self) -> list[int]:
        return [p for j in sorted(self.P) for p in self.P[j]] + [self.R, self.C] + \
            ([] if self.M is None else [self.M])

    def set_roots(self, ids: list[int]) -> None:
        k = 0
        for j in sorted(self.P):
            n = len(self.P[j])
            self.P[j] = ids[k:k + n]
            k += n
        self.R, self.C = ids[k], ids[k + 1]
        if self.M is not None:
            self.M = ids[k + 2]

    def _level(self, c: int) -> int:
        return int(self.level_of_col[c])

    def _dense_parts(self) -> None:
        """Dense tensors of the factors, reward terms and continuation, axes in level order."""
        mdp, cards = self.mdp, self.mdp.cards
        self.cpt: dict[int, tuple] = {}  # filled by _cpt on first use
        self.terms = []
        for cols, table in zip(mdp.reward.cols, mdp.reward.tables):
            order = sorted(range(len(cols)), key=lambda i: self._level(cols[i]))
            self.terms.append(([cols[i] for i in order], np.transpose(table, order)))
        if mdp.end is None:
            self.cont = ([], np.array(self.gamma))
        else:
            pa = sorted(mdp.end.parents, key=self._level)
            if np.prod(cards[pa], dtype=float) > self.dense_cells:  # too wide for dense tables
                self.dense_cells = 0
                return
            X = np.zeros((int(np.prod(cards[pa])), mdp.d + mdp.m), np.int64)
            X[:, pa] = _grid(cards[pa])
            self.cont = (pa, (self.gamma * mdp.continuation(X)).reshape(cards[pa]))

    def _cpt(self, j: int) -> tuple[list[int], np.ndarray]:
        """(parents in level order, tensor p(s'_j | pa_j) with s'_j last)."""
        if j not in self.cpt:
            mdp, cards = self.mdp, self.mdp.cards
            tree, probs = mdp.trees[j], mdp.probs[j]
            pa = sorted(tree.parents, key=self._level)
            X = np.zeros((int(np.prod(cards[pa])), mdp.d + mdp.m), np.int64)
            X[:, pa] = _grid(cards[pa])
            self.cpt[j] = (pa, probs[tree.route(X)].reshape(*cards[pa], tree.k))
        return self.cpt[j]

    def _dense_bellman(self, V: int, want_q: bool) -> tuple[int | None, int] | None:
        """The update of :meth:`bellman` on dense tensors over its support (einsum), when
        that support has at most ``dense_cells`` cells; None otherwise."""
        st, mdp, m = self.store, self.mdp, self.mdp.m
        cards = mdp.cards
        KV = [int(self.column[lev]) for lev in st.support(V)]
        # parents from the trees: a factor's dense table is built only once the support fits
        cols_E = sorted(set().union(*(self.mdp.trees[j].parents for j in KV)), key=self._level)
        KQ = sorted(set(cols_E) | {c for cols, _ in self.terms for c in cols}
                    | set(self.cont[0]), key=self._level)
        if np.prod(cards[KQ], dtype=float) > self.dense_cells or len(KQ) + len(KV) > 52:
            return None
        lab = {c: i for i, c in enumerate(KQ)}
        ops: list = [st.to_dense(V, [int(self.level_of_col[j]) for j in KV]),
                     [len(KQ) + i for i in range(len(KV))]]
        for i, j in enumerate(KV):
            pa, P = self._cpt(j)
            ops += [P, [lab[c] for c in pa] + [len(KQ) + i]]
        E = np.einsum(*ops, [lab[c] for c in cols_E], optimize="greedy") if KV else ops[0]
        shape = cards[KQ]

        def full(cols, T):
            keep = [lab[c] for c in cols]
            view = np.reshape(T, [shape[i] if i in keep else 1 for i in range(len(KQ))])
            return np.broadcast_to(view, shape)

        R = np.full(shape, mdp.reward.intercept)
        for cols, T in self.terms:
            R = R + full(cols, T)
        Q = R + full(*self.cont) * full(cols_E, E)
        acts = tuple(i for i, c in enumerate(KQ) if c >= mdp.d)
        Qa = Q + full(*self._dense_mask(KQ)) if mdp.restricted and acts else Q
        TV = Qa.max(axis=acts) if acts else Q
        levels = [self._level(c) for c in KQ]
        return (st.from_dense(levels, Q) if want_q else None,
                st.from_dense([lv for lv, c in zip(levels, KQ) if c < mdp.d], TV))

    def bellman(self, V: int, want_q: bool = True) -> tuple[int | None, int]:
        """(Q, max_a Q) from V (module docstring); Q only when ``want_q`` (or cheap)."""
        out = self._dense_bellman(V, want_q) if self.dense_cells > 0 else None
        if out is not None:
            self.store.clear()
            return out
        st, m = self.store, self.mdp.m
        E = st.relabel(V, self.to_next)
        for lev in reversed(st.support(E)):
            E = st.expectation(E, lev, self.factor(int(self.column[lev])))
        Q = st.add(self.R, st.mul(self.C, E))
        TV = Q if self.M is None else st.add(Q, self.M)  # max over the allowed joint actions
        for lev in range(m):
            TV = st.max_out(TV, lev)
        st.clear()
        return Q, TV

    def compact(self, keep: list[int]) -> list[int]:
        """Move the live diagrams (factors, reward and ``keep``) into a fresh store once the
        old one holds COMPACT_SLACK more nodes than were live at the last move."""
        if len(self.store) < self.live + COMPACT_SLACK:
            return keep
        roots = self.roots()
        fresh = Diagrams(self.store.cards, self.store.max_nodes)
        ids = self.store.transfer(roots + keep, fresh)
        self.store = fresh
        self.live = len(fresh)
        self.set_roots(ids[:len(roots)])
        return ids[len(roots):]


def solve_structured(mdp: FactoredMDP, gamma: float, horizon: int | None = None,
                     tol: float = 1e-8, max_iter: int = 100_000,
                     max_nodes: int | None = 5_000_000, dense_cells: int = DENSE_CELLS
                     ) -> StructuredResult:
    """Backward induction (``horizon``: V_H = 0) or value iteration to ``tol``.

    Value iteration stops by the bound of :meth:`spmn.worldmodels.recurrent.Template.value_iteration`:
    with d = TV - V over every state (a diagram's leaves), c = γ/(1-γ), lo = min(min d, 0),
    hi = max(max d, 0), T V + c·lo <= V* <= T V + c·hi; once c·(hi - lo)/2 < tol the midpoint
    V_c = TV + c·(hi + lo)/2 is within tol of V*, and the returned V = T V_c (then
    |V - V*| <= γ·tol, and V = max_a Q exactly). An update whose support (the variables of
    Q) spans at most ``dense_cells`` cells is computed on dense tensors over that support and
    reduced to its diagram (the same numbers, summed in another order); others recurse on
    the diagrams. Either way no cost depends on the number of state variables outside it.
    """
    gamma = check_gamma(gamma, horizon)
    if horizon is not None and (int(horizon) != horizon or horizon < 0):
        raise SolverError(f"horizon must be a non-negative integer, got {horizon!r}")
    if horizon is None and tol <= 0:
        raise SolverError(f"tol must be > 0, got {tol!r}")
    with deep_recursion(mdp.m + 2 * mdp.d):
        model = _Model(mdp, gamma, max_nodes, dense_cells)
        st = model.store
        if horizon is not None:
            H = int(horizon)
            V, Q = [st.zero] * (H + 1), [st.zero] * H
            for t in range(H - 1, -1, -1):
                Q[t], V[t] = model.bellman(V[t + 1])
                ids = model.compact(V + Q)
                V, Q = ids[:H + 1], ids[H + 1:]
            return StructuredResult(model.store, V, Q, model.column, gamma, H, H, 0.0)
        c = gamma / (1.0 - gamma)
        V = model.store.zero
        residuals = []
        for it in range(1, max_iter + 1):
            _, TV = model.bellman(V, want_q=False)
            lo, hi = model.store.leaf_range(model.store.sub(TV, V))
            lo, hi = min(lo, 0.0), max(hi, 0.0)
            residuals.append(max(-lo, hi))
            V = TV
            if c * (hi - lo) / 2.0 < tol:
                V = model.store.affine(TV, 1.0, c * (hi + lo) / 2.0)
                break
            (V,) = model.compact([V])
        else:
            raise SolverError(f"structured value iteration did not reach tol={tol} in "
                              f"{max_iter} sweeps")
        Q, TV = model.bellman(V)
        lo, hi = model.store.leaf_range(model.store.sub(TV, V))
        res = max(-lo, hi)
        Q, TV = model.compact([Q, TV])
        return StructuredResult(model.store, [TV], [Q], model.column, gamma, None, it, float(res),
                                tuple(residuals))
