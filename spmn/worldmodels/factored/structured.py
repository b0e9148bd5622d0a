"""Structured exact Bellman updates (the SPUDD idea) over the learned factors.

V and Q are algebraic decision diagrams (:mod:`.add`) over the state and action variables.
One update, exact for the learned model:

    Q(s, a) = r(s, a) + γ (1 - p(end | s, a)) Σ_{s'} Π_i p(s'_i | pa_i) V(s'),  V'(s) = max_a Q(s, a)

computed without the joint states: V is renamed onto next-state variables, and each next
variable it tests is summed out against its factor, ``Σ_v p(s'_i = v | pa_i) · V|_{s'_i = v}``
(a diagram over ``pa_i``); the additive reward's terms and the continuation are added and
multiplied in as small diagrams, then the action is maximized out. Costs grow with the
diagrams. Levels: the joint action first (level 0: one variable whose values are the allowed
joint actions, so a test on an action variable is a split over the joint actions and no
diagram ever holds a combination RDDL forbids), then each state variable's current and next
copies side by side (1 + 2i, 2 + 2i for the i-th in :func:`state_order`: the many-valued
variables first, e.g. a one-hot group's position above the booleans it decides which of matter).
In the diagrams' column space (:attr:`_Model.column`) the joint action is column d.
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
        sc = sorted({int(self.column[lv]) for lv in levels} - {mdp.d})
        E = np.concatenate([np.repeat(S[:, sc], A, axis=0),
                            np.tile(np.arange(A), n)[:, None]], axis=1)
        where = {c: i for i, c in enumerate(sc + [mdp.d])}  # column d: the joint action
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
    ``C`` = γ (1 - p(end | s, a)); the action enters as the joint action at level 0."""

    def __init__(self, mdp: FactoredMDP, gamma: float, max_nodes: int | None,
                 dense_cells: int = 0) -> None:
        d, m = mdp.d, mdp.m
        self.mdp = mdp
        self.gamma = gamma
        self.dense_cells = int(dense_cells)
        order = state_order(mdp)
        rank = np.empty(d, np.int64)
        rank[order] = np.arange(d)
        cards = [int(mdp.n_actions)]
        for j in order.tolist():
            cards += [int(mdp.state_cards[j])] * 2
        self.store = Diagrams(cards, max_nodes)
        # column (state 0..d-1, action variables d..d+m-1) -> level; every action variable
        # is read off the joint action at level 0
        self.level_of_col = np.r_[1 + 2 * rank, np.zeros(m)].astype(np.int64)
        column = np.zeros(len(cards), np.int64)  # level -> column of the diagrams (d: joint)
        column[0] = d
        column[1 + 2 * rank] = np.arange(d)
        column[2 + 2 * rank] = np.arange(d)
        self.column = column
        self.to_next = {int(1 + 2 * rank[j]): int(2 + 2 * rank[j]) for j in range(d)}
        st = self.store
        self.P: dict[int, list[int]] = {}  # built on first use: only V's variables need them
        rew = mdp.reward
        R = st.const(rew.intercept)
        for cols, table in zip(rew.cols, rew.tables):
            mc, T = self.joint_table(cols, table)
            R = st.add(R, st.table([int(self.level_of(c)) for c in mc], T))
        self.R = R
        self.live = len(st)
        if self.dense_cells > 0:
            self._dense_parts()
        if mdp.end is None:
            self.C = st.const(gamma)
        else:
            self.C = st.affine(self._tree(mdp.end, mdp.end_probs), -gamma, gamma)
        st.clear()

    def level_of(self, c: int) -> int:
        """Level of a diagram column (state column, or d: the joint action)."""
        return 0 if c == self.mdp.d else int(self.level_of_col[c])

    def model_cols(self, cols) -> list[int]:
        """Diagram columns of data columns: state columns as they are, every action column
        as the joint action (column d); in level order, each once."""
        d = self.mdp.d
        return sorted({int(c) if c < d else d for c in cols}, key=self.level_of)

    def grid_rows(self, mcols: list[int]) -> np.ndarray:
        """Data rows ``[s, a]`` of every assignment of the diagram columns ``mcols`` (last
        fastest; the joint action's value j sets the action columns to ``joint[j]``)."""
        mdp = self.mdp
        shape = [int(mdp.n_actions) if c == mdp.d else int(mdp.state_cards[c]) for c in mcols]
        G = _grid(np.array(shape, np.int64))
        X = np.zeros((G.shape[0], mdp.d + mdp.m), np.int64)
        for i, c in enumerate(mcols):
            if c == mdp.d:
                X[:, mdp.d:] = mdp.joint[G[:, i]]
            else:
                X[:, c] = G[:, i]
        return X

    def joint_table(self, cols, table: np.ndarray) -> tuple[list[int], np.ndarray]:
        """A reward term's table over data columns as a tensor over diagram columns."""
        mc = self.model_cols(cols)
        X = self.grid_rows(mc)
        T = np.asarray(table)[tuple(X[:, c] for c in cols)]
        shape = [int(self.mdp.n_actions) if c == self.mdp.d else int(self.mdp.state_cards[c])
                 for c in mc]
        return mc, T.reshape(shape)

    def _tree(self, tree, leaf_values: np.ndarray) -> int:
        memo: dict[int, int] = {}
        st, cards = self.store, self.mdp.cards

        d, joint = self.mdp.d, self.mdp.joint

        def conv(n: int) -> int:
            if n not in memo:
                j = int(tree.var[n])
                if j < 0:
                    memo[n] = st.const(leaf_values[n])
                elif j < d:
                    memo[n] = st.split(int(self.level_of_col[j]),
                                       [conv(int(tree.child[n, v])) for v in range(cards[j])])
                else:  # an action variable: its value under each joint action
                    memo[n] = st.split(0, [conv(int(tree.child[n, v]))
                                           for v in joint[:, j - d].tolist()])
            return memo[n]

        return conv(0)

    def factor(self, j: int) -> list[int]:
        """Diagrams of p(s'_j = v | pa_j), one per value v."""
        if j not in self.P:
            tree, probs = self.mdp.trees[j], self.mdp.probs[j]
            self.P[j] = [self._tree(tree, probs[:, v]) for v in range(tree.k)]
        return self.P[j]

    def roots(self) -> list[int]:
        return [p for j in sorted(self.P) for p in self.P[j]] + [self.R, self.C]

    def set_roots(self, ids: list[int]) -> None:
        k = 0
        for j in sorted(self.P):
            n = len(self.P[j])
            self.P[j] = ids[k:k + n]
            k += n
        self.R, self.C = ids[k], ids[k + 1]

    def _card(self, c: int) -> int:
        return int(self.mdp.n_actions) if c == self.mdp.d else int(self.mdp.state_cards[c])

    def _shape(self, mcols: list[int]) -> list[int]:
        return [self._card(c) for c in mcols]

    def _dense_parts(self) -> None:
        """Dense tensors of the reward terms and continuation over diagram columns (the joint
        action is column d), axes in level order."""
        mdp = self.mdp
        self.cpt: dict[int, tuple] = {}  # filled by _cpt on first use
        self.terms = [self.joint_table(cols, table)
                      for cols, table in zip(mdp.reward.cols, mdp.reward.tables)]
        if mdp.end is None:
            self.cont = ([], np.array(self.gamma))
        else:
            pa = self.model_cols(mdp.end.parents)
            if np.prod(self._shape(pa), dtype=float) > self.dense_cells:  # too wide
                self.dense_cells = 0
                return
            X = self.grid_rows(pa)
            self.cont = (pa, (self.gamma * mdp.continuation(X)).reshape(self._shape(pa)))

    def _cpt(self, j: int) -> tuple[list[int], np.ndarray]:
        """(parents as diagram columns in level order, tensor p(s'_j | pa_j), s'_j last)."""
        if j not in self.cpt:
            tree, probs = self.mdp.trees[j], self.mdp.probs[j]
            pa = self.model_cols(tree.parents)
            X = self.grid_rows(pa)
            self.cpt[j] = (pa, probs[tree.route(X)].reshape(*self._shape(pa), tree.k))
        return self.cpt[j]

    def _dense_bellman(self, V: int, want_q: bool) -> tuple[int | None, int] | None:
        """The update of :meth:`bellman` on dense tensors over its support (einsum), when
        that support has at most ``dense_cells`` cells; None otherwise."""
        st, d = self.store, self.mdp.d
        KV = [int(self.column[lev]) for lev in st.support(V)]
        # parents from the trees: a factor's dense table is built only once the support fits
        cols_E = self.model_cols(set().union(*(self.mdp.trees[j].parents for j in KV)))
        KQ = sorted(set(cols_E) | {c for cols, _ in self.terms for c in cols}
                    | set(self.cont[0]), key=self.level_of)
        shape = self._shape(KQ)
        if np.prod(shape, dtype=float) > self.dense_cells or len(KQ) + len(KV) > 52:
            return None
        lab = {c: i for i, c in enumerate(KQ)}
        ops: list = [st.to_dense(V, [int(self.level_of_col[j]) for j in KV]),
                     [len(KQ) + i for i in range(len(KV))]]
        for i, j in enumerate(KV):
            pa, P = self._cpt(j)
            ops += [P, [lab[c] for c in pa] + [len(KQ) + i]]
        E = np.einsum(*ops, [lab[c] for c in cols_E], optimize="greedy") if KV else ops[0]

        def full(cols, T):
            keep = [lab[c] for c in cols]
            view = np.reshape(T, [shape[i] if i in keep else 1 for i in range(len(KQ))])
            return np.broadcast_to(view, shape)

        R = np.full(shape, self.mdp.reward.intercept)
        for cols, T in self.terms:
            R = R + full(cols, T)
        Q = R + full(*self.cont) * full(cols_E, E)
        TV = Q.max(axis=lab[d]) if d in lab else Q
        levels = [self.level_of(c) for c in KQ]
        return (st.from_dense(levels, Q) if want_q else None,
                st.from_dense([lv for lv, c in zip(levels, KQ) if c != d], TV))

    def bellman(self, V: int, want_q: bool = True) -> tuple[int | None, int]:
        """(Q, max_a Q) from V (module docstring); Q only when ``want_q`` (or cheap)."""
        out = self._dense_bellman(V, want_q) if self.dense_cells > 0 else None
        if out is not None:
            self.store.clear()
            return out
        st = self.store
        E = st.relabel(V, self.to_next)
        for lev in reversed(st.support(E)):
            E = st.expectation(E, lev, self.factor(int(self.column[lev])))
        Q = st.add(self.R, st.mul(self.C, E))
        TV = st.max_out(Q, 0)  # over the allowed joint actions (level 0)
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
