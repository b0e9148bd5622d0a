"""The factored world model as one validated SPMN over a step:

    max over the action variables (one Max node each, first outermost) of
        Π_i C_i(s'_i | copies of pa_i)  ·  Π_k U_k(r[k] | copies of the term's variables)

``C_i`` is the conditional tree of ``s'_i`` with its action tests resolved by the joint action
above it: deterministic sums on the values of its state parents (a Categorical leaf per branch
that is uniform over the branch's values), categorical leaves over ``s'_i``. ``U_k`` is reward
term k (``r[0]`` the intercept) as deterministic sums ending in constant utilities, so the
circuit's utilities add up to E[r | s, a].

A product of conditionals that share a parent is not decomposable, so the state enters as
evidence on per-factor copies named ``<parent>|<target>`` (``circuit_evidence`` writes them),
uniform a priori, placed after the decisions in the partial order: given them, a Max node's
children see the state, the circuit's MEU is max_a E[r | s, a], and its likelihood of
``(copies, s')`` with the joint action observed is p(s' | s, a) · Π 1/k over the copies.
Identical restricted subtrees are built once and shared (a DAG). Combinations of action values
outside the allowed joint actions lead to one shared branch whose utility lies below every
allowed action's expected reward (so the circuit's MEU and policy are the solver's).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ...circuit import nodes as N
from ...circuit.circuit import Circuit
from ...schema import Schema, Variable
from .mdp import FactoredMDP


def copy_name(parent: str, target: str) -> str:
    return f"{parent}|{target}"


def term_names(reward: str, mdp: FactoredMDP) -> list[str]:
    """Utility variables: ``r[0]`` (intercept) and ``r[k]`` for reward term k."""
    return [f"{reward}[{k}]" for k in range(len(mdp.reward.cols) + 1)]


def _factors(mdp: FactoredMDP, end_name: str | None):
    out = [(f"{n}_next", t, p) for n, t, p in zip(mdp.state_names, mdp.trees, mdp.probs)]
    if mdp.end is not None and end_name is not None:
        out.append((end_name, mdp.end, mdp.end.probs(mdp.smoothing)))
    return out


class _Builder:
    def __init__(self, mdp: FactoredMDP, reward: str, end_name: str | None) -> None:
        self.mdp = mdp
        self.d = mdp.d
        self.reward = reward
        self.factors = _factors(mdp, end_name)
        self.memo: dict = {}
        self.uniform: dict[str, N.Node] = {}
        self.copies: list[Variable] = []

    def _uniform(self, name: str, k: int) -> N.Node:
        if name not in self.uniform:
            self.uniform[name] = N.Categorical(name, np.full(k, 1.0 / k))
            self.copies.append(Variable.discrete(name, k))
        return self.uniform[name]

    def factor(self, f: int, a: np.ndarray) -> N.Node:
        target, tree, probs = self.factors[f]
        node, scope = self._cond(f, 0, a)
        full = [j for j in tree.parents if j < self.d]
        pads = [self._uniform(copy_name(self.mdp.state_names[j], target),
                              int(self.mdp.state_cards[j])) for j in full if j not in scope]
        return N.Product([node, *pads]) if pads else node

    def _cond(self, f: int, n: int, a: np.ndarray) -> tuple[N.Node, frozenset]:
        target, tree, probs = self.factors[f]
        j = int(tree.var[n])
        if j >= self.d:
            return self._cond(f, int(tree.child[n, a[j - self.d]]), a)
        key = (f, n, tuple(int(a[c - self.d]) for c in self._actions(f, n)))
        if key in self.memo:
            return self.memo[key]
        if j < 0:
            out = (N.Categorical(target, probs[n]), frozenset())
        else:
            k = int(self.mdp.state_cards[j])
            name = copy_name(self.mdp.state_names[j], target)
            groups: dict[int, list[int]] = {}
            for v in range(k):
                groups.setdefault(int(tree.child[n, v]), []).append(v)
            parts = [(vals, self._cond(f, c, a)) for c, vals in groups.items()]
            union = frozenset().union(*(sc for _, (_, sc) in parts))
            kids, weights = [], []
            for vals, (sub, sc) in parts:
                p = np.zeros(k)
                p[vals] = 1.0 / len(vals)
                pads = [self._uniform(copy_name(self.mdp.state_names[x], target),
                                      int(self.mdp.state_cards[x])) for x in sorted(union - sc)]
                self._uniform(name, k)  # declares the copy variable
                kids.append(N.Product([N.Categorical(name, p), *pads, sub]))
                weights.append(len(vals) / k)
            out = (N.Sum(kids, weights, label=f"{target}: split on {self.mdp.state_names[j]}"),
                   union | {j})
        self.memo[key] = out
        return out

    def _actions(self, f: int, n: int) -> tuple[int, ...]:
        """Action columns tested in the subtree of node n of factor f."""
        key = ("acts", f, n)
        if key not in self.memo:
            tree = self.factors[f][1]
            j = int(tree.var[n])
            found: set[int] = set()
            if j >= 0:
                for c in dict.fromkeys(tree.child[n].tolist()):
                    found.update(self._actions(f, c))
                if j >= self.d:
                    found.add(j)
            self.memo[key] = tuple(sorted(found))
        return self.memo[key]

    def term(self, t: int, a: np.ndarray) -> N.Node:
        mdp, d = self.mdp, self.d
        cols, table = mdp.reward.cols[t], mdp.reward.tables[t]
        util = f"{self.reward}[{t + 1}]"
        idx = tuple(slice(None) if c < d else int(a[c - d]) for c in cols)
        sub = table[idx]
        states = [c for c in cols if c < d]
        key = ("term", t, sub.tobytes())
        if key in self.memo:
            return self.memo[key]
        node = self._term_tree(util, states, np.asarray(sub, np.float64))
        self.memo[key] = node
        return node

    def _term_tree(self, util: str, states: Sequence[int], table: np.ndarray) -> N.Node:
        if not states:
            return N.Utility.constant(util, float(table))
        j = states[0]
        k = int(self.mdp.state_cards[j])
        name = copy_name(self.mdp.state_names[j], util)
        self._uniform(name, k)
        kids = [N.Product([N.Categorical(name, np.eye(k)[v]),
                           self._term_tree(util, states[1:], table[v])]) for v in range(k)]
        return N.Sum(kids, np.full(k, 1.0 / k))


def build_circuit(mdp: FactoredMDP, reward: str, end_name: str | None = None) -> Circuit:
    """The validated one-step SPMN of the learned model (module docstring)."""
    b = _Builder(mdp, reward, end_name)
    utils = term_names(reward, mdp)

    def branch(code: int, intercept: float, label: str) -> N.Node:
        a = mdp.joint[code]
        kids = [b.factor(f, a) for f in range(len(b.factors))]
        kids.append(N.Utility.constant(utils[0], intercept))
        kids += [b.term(t, a) for t in range(len(mdp.reward.cols))]
        return N.Product(kids, label=label)

    # a combination outside the allowed joint actions: one shared branch whose utility is
    # below every allowed action's expected reward, so no Max node picks it
    tabs = mdp.reward.tables
    lo = mdp.reward.intercept + sum(float(t.min()) for t in tabs)
    hi = mdp.reward.intercept + sum(float(t.max()) for t in tabs)
    penalty_intercept = lo - 1.0 - (hi - lo) - (hi - mdp.reward.intercept)
    banned: dict[int, N.Node] = {}

    def not_allowed(level: int) -> N.Node:
        if level not in banned:
            banned[level] = branch(0, penalty_intercept, "not an allowed joint action") \
                if level == mdp.m else N.Max(mdp.action_names[level],
                                             [not_allowed(level + 1)] * int(mdp.action_cards[level]))
        return banned[level]

    def nest(level: int, rows: np.ndarray) -> N.Node:
        if level == mdp.m:
            return branch(int(rows[0]), mdp.reward.intercept, f"joint action {int(rows[0])}")
        col = mdp.joint[rows, level]
        return N.Max(mdp.action_names[level],
                     [nest(level + 1, rows[col == v]) if (col == v).any() else not_allowed(level + 1)
                      for v in range(int(mdp.action_cards[level]))])

    root = nest(0, np.arange(mdp.n_actions))
    decisions = [Variable.decision(n, int(k)) for n, k in zip(mdp.action_names, mdp.action_cards)]
    targets = [Variable.discrete(name, int(tree.k)) for name, tree, _ in b.factors]
    rest = [*b.copies, *targets, *(Variable.utility(u) for u in utils)]
    order = [[v.name] for v in decisions] + [[v.name for v in rest]]
    return Circuit(root, Schema([*decisions, *rest], order))


def circuit_evidence(circuit: Circuit, mdp: FactoredMDP, S: np.ndarray,
                     joint: np.ndarray | None = None, S_next: np.ndarray | None = None
                     ) -> np.ndarray:
    """Evidence rows for :func:`build_circuit`'s circuit: every copy ``<parent>|<target>`` set
    to the state's value, the action variables and next-state variables when given (NaN
    elsewhere)."""
    schema = circuit.schema
    E = np.full((S.shape[0], len(schema)), np.nan)
    col = {n: j for j, n in enumerate(mdp.state_names)}
    for i, v in enumerate(schema):
        if "|" in v.name and v.name.split("|", 1)[0] in col:
            E[:, i] = S[:, col[v.name.split("|", 1)[0]]]
    if joint is not None:
        A = mdp.joint[np.asarray(joint, np.int64)]
        for k, n in enumerate(mdp.action_names):
            E[:, schema.index(n)] = A[:, k]
    if S_next is not None:
        for j, n in enumerate(mdp.state_names):
            E[:, schema.index(f"{n}_next")] = S_next[:, j]
    return E
