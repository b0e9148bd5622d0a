"""The learned world model's template (circuit construction from the count tables), its exact
conditional predictions, the dependency report and its model-file payload."""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ...circuit import nodes as N
from ...circuit.circuit import Circuit
from ...errors import DataError
from ...learn.regions import RegionTree
from ...schema import Schema, Variable
from ..recurrent import Template
from . import coverage


class FittedTabular(Protocol):
    """What these builders read of a fitted :class:`~.model.WorldModel` (typed by shape, so
    that this module sits below the model class that calls it)."""

    reward: str
    terminated: str | None
    smoothing: float
    backend: str | None
    state_names_: list[str]
    action_names_: list[str]
    state_cards_: np.ndarray
    action_cards_: np.ndarray
    tree_: RegionTree
    tables_: dict[str, np.ndarray]
    terminal_states_: np.ndarray
    seen_states_: np.ndarray | None
    n_transitions_: int

    def _check_fitted(self) -> None: ...

    def _state_array(self, states: Any) -> np.ndarray: ...

    def _is_terminal(self, S: np.ndarray) -> np.ndarray: ...


def outcome_probs(m: FittedTabular) -> np.ndarray:
    """P(o | k, a) with the documented fallback (pooled over actions) and smoothing."""
    trans = m.tables_["trans"]
    pooled = trans.sum(axis=1)
    P = np.where(trans.sum(axis=2, keepdims=True) > 0, trans, pooled[:, None, :])
    if m.smoothing:
        P = P + m.smoothing * (pooled[:, None, :] > 0)
    return P / P.sum(axis=2, keepdims=True)


def reward_tables(m: FittedTabular) -> dict[tuple[int, int, int], tuple[np.ndarray, np.ndarray]]:
    """(k, a, o) -> (reward values, probabilities); missing (k, a) pool over actions."""
    T = m.tables_
    K, nA, n_out = T["trans"].shape
    key, val, cnt = T["reward_key"], T["reward_value"], T["reward_count"]
    o = key % n_out
    ka = key // n_out
    k, a = ka // nA, ka % nA
    out: dict[tuple[int, int, int], dict[float, float]] = {}
    pooled: dict[tuple[int, int], dict[float, float]] = {}
    for kk, aa, oo, v, c in zip(k.tolist(), a.tolist(), o.tolist(), val.tolist(), cnt.tolist()):
        out.setdefault((kk, aa, oo), {})[v] = out.get((kk, aa, oo), {}).get(v, 0.0) + c
        pooled.setdefault((kk, oo), {})[v] = pooled.get((kk, oo), {}).get(v, 0.0) + c
    seen_ka = {(kk, aa) for kk, aa, _ in out}
    res = {}
    for kk in range(K):
        for aa in range(nA):
            own = (kk, aa) in seen_ka
            for oo in range(n_out):
                table = out.get((kk, aa, oo)) if own else pooled.get((kk, oo))
                if table:
                    v = np.array(sorted(table))
                    c = np.array([table[x] for x in v])
                    res[(kk, aa, oo)] = (v, c / c.sum())
    return res


def _schema(m: FittedTabular) -> Schema:
    sv = [Variable.discrete(n, int(k)) for n, k in zip(m.state_names_, m.state_cards_)]
    av = [Variable.decision(n, int(k)) for n, k in zip(m.action_names_, m.action_cards_)]
    nv = [Variable.discrete(f"{n}_next", int(k)) for n, k in zip(m.state_names_, m.state_cards_)]
    order = [[v.name for v in sv], *[[v.name] for v in av], [m.reward, *(v.name for v in nv)]]
    return Schema([*sv, *av, Variable.utility(m.reward), *nv], order)


def build_template(m: FittedTabular) -> Template:
    """Circuit of the template from the fitted tables (layout in :mod:`spmn.worldmodels.tabular.model`)."""
    tree: RegionTree = m.tree_
    T = m.tables_
    K = tree.n_regions
    nA = int(np.prod(m.action_cards_))
    P = outcome_probs(m)
    rewards = reward_tables(m)
    cards = m.state_cards_
    latent = [N.Interface(j) for j in range(K)]
    snext = []
    for o in range(T["trans"].shape[2]):
        kids = []
        for j, n in enumerate(m.state_names_):
            c = T["next"][o, j, :cards[j]]
            p = c / c.sum() if c.sum() > 0 else np.full(cards[j], 1.0 / cards[j])
            kids.append(N.Categorical(f"{n}_next", p))
        snext.append(N.Product(kids, label=f"end state {o - K}" if o >= K else f"s' in region {o}"))
    roots = []
    for k in range(K):
        branches = []
        for a in range(nA):
            outs = np.flatnonzero(P[k, a] > 0)
            kids = []
            for o in outs:
                vals, probs = rewards[(k, a, int(o))]
                parts = [N.Utility(m.reward, values=vals, probs=probs), snext[o]]
                if o < K:
                    parts.append(latent[o])
                kids.append(N.Product(parts))
            branches.append(N.Sum(kids, P[k, a, outs], label=f"region {k}, action {a}"))
        roots.append(_nest(m, branches, 0, 0, label=f"ir_{k}"))
    top = _state_part(m, tree, T["state"], 0, frozenset(), roots)
    circuit = Circuit(top, _schema(m))
    return Template(circuit, roots, state_vars=m.state_names_,
                    next_vars=[f"{n}_next" for n in m.state_names_], backend=m.backend)


def _nest(m, branches, level: int, code: int, label: str | None = None) -> N.Node:
    """Nested max nodes over the action variables (first one outermost)."""
    if level == len(m.action_names_):
        return branches[code]
    k = int(m.action_cards_[level])
    return N.Max(m.action_names_[level],
                 [_nest(m, branches, level + 1, code * k + v) for v in range(k)], label=label)


def _state_part(m, tree: RegionTree, counts: np.ndarray, node: int, used: frozenset,
                roots: list[N.Node]) -> N.Node:
    """Deterministic sums down the region tree (state leaves smoothed by +1 per value)."""
    cards = m.state_cards_
    names = m.state_names_
    x = int(tree.var[node])
    if x < 0:
        kids = [N.Categorical(names[j], (counts[node, j, :cards[j]] + 1.0) /
                              (counts[node, j, :cards[j]] + 1.0).sum())
                for j in range(len(names)) if j not in used]
        return N.Product([*kids, roots[int(tree.region[node])]], label=f"region {tree.region[node]}")
    c = counts[node, x, :cards[x]] + 1.0
    groups: dict[int, list[int]] = {}
    for v in range(cards[x]):
        groups.setdefault(int(tree.child[node, v]), []).append(v)
    kids, weights = [], []
    for child, vals in groups.items():
        p = np.zeros(cards[x])
        p[vals] = c[vals]
        weights.append(p.sum())
        kids.append(N.Product([N.Categorical(names[x], p / p.sum()),
                               _state_part(m, tree, counts, child, used | {x}, roots)]))
    w = np.array(weights)
    return N.Sum(kids, w / w.sum(), label=f"split on {names[x]}")


def predict(m: FittedTabular, s, a) -> dict[str, np.ndarray]:
    """Exact p(s', r | s, a) of the model as an enumerated table."""
    S = m._state_array(s)
    if S.shape[0] != 1:
        raise DataError("predict takes one state")
    if m._is_terminal(S)[0]:
        raise DataError(f"state {S[0].tolist()} is terminal: it was logged only as the end of "
                        "an episode")
    coverage.warn_unseen(m, S, "the prediction")
    acts = np.atleast_1d(np.asarray(a))
    if acts.shape != (len(m.action_names_),) or (acts < 0).any() or (acts >= m.action_cards_).any():
        raise DataError(f"action {a!r} must give one code per action variable "
                        f"{m.action_names_} within {m.action_cards_.tolist()}")
    k = int(m.tree_.route(S)[0])
    ja = int(np.ravel_multi_index(acts.astype(np.int64), m.action_cards_))
    P = outcome_probs(m)[k, ja]
    rewards = reward_tables(m)
    K = m.tree_.n_regions
    nxt, rew, prob = [], [], []
    for o in np.flatnonzero(P > 0):
        q = [m.tables_["next"][o, j, :m.state_cards_[j]] for j in range(len(m.state_names_))]
        q = [x / x.sum() for x in q]
        vals, probs = rewards[(k, ja, int(o))]
        for combo in itertools.product(*[np.flatnonzero(x > 0) for x in q]):
            pc = float(np.prod([q[j][v] for j, v in enumerate(combo)]))
            for v, pv in zip(vals, probs):
                nxt.append(combo)
                rew.append(v)
                prob.append(P[o] * pv * pc)
    return {"next": np.array(nxt, np.int64).reshape(-1, len(m.state_names_)),
            "reward": np.array(rew), "prob": np.array(prob),
            "region": k, "end_probability": float(P[K:].sum())}


@dataclass(frozen=True)
class Explanation:
    """``parents[target] = {"state": [...], "action": [...]}`` for every next-state variable
    and the reward."""

    parents: dict[str, dict[str, list[str]]]
    n_regions: int

    def __str__(self) -> str:
        lines = [f"learned dynamics over {self.n_regions} regions (which variables drive which):"]
        for target, dep in self.parents.items():
            src = [*dep["state"], *dep["action"]]
            lines.append(f"  {target:<16} <- {', '.join(src) if src else '(nothing: constant)'}")
        return "\n".join(lines)


def _leaves_below(tree: RegionTree, node: int) -> list[int]:
    if tree.var[node] < 0:
        return [int(tree.region[node])]
    out: list[int] = []
    for c in dict.fromkeys(tree.child[node, :tree.cards[tree.var[node]]].tolist()):
        out += _leaves_below(tree, c)
    return out


def explain(m: FittedTabular, tol: float = 0.02) -> Explanation:
    """Dependencies read off the learned template: target y depends on state variable x when
    the regions on the two sides of a split on x give y different distributions for some action
    (total variation > tol; for the reward, expectations differing by > tol x its range), and on
    an action variable when changing it changes y's distribution in some region."""
    m._check_fitted()
    P = outcome_probs(m)
    K, nA = P.shape[:2]
    weight = m.tables_["trans"].sum(axis=(1, 2)) + 1e-12
    targets: dict[str, np.ndarray] = {}
    for j, n in enumerate(m.state_names_):
        q = m.tables_["next"][:, j, :m.state_cards_[j]]
        q = q / np.maximum(q.sum(axis=1, keepdims=True), 1e-300)
        targets[f"{n}_next"] = P @ q  # (K, nA, k_j)
    rewards = reward_tables(m)
    ER = np.zeros((K, nA, 1))
    for (k, a, o), (v, p) in rewards.items():
        ER[k, a, 0] += P[k, a, o] * float(v @ p)
    span = max(float(np.ptp(m.tables_["reward_value"])) if m.tables_["reward_value"].size else 0.0, 1e-12)
    targets[m.reward] = ER / span

    def differs(x: np.ndarray, y: np.ndarray, is_reward: bool) -> bool:
        d = np.abs(x - y).sum(axis=-1) if not is_reward else np.abs(x - y)[..., 0]
        return bool((d / (1.0 if is_reward else 2.0) > tol).any())

    tree = m.tree_
    parents: dict[str, dict[str, list[str]]] = {}
    for t, D in targets.items():
        is_r = t == m.reward
        svars: set[str] = set()
        for node in np.flatnonzero(tree.var >= 0):
            x = int(tree.var[node])
            groups = [
                _leaves_below(tree, c)
                for c in dict.fromkeys(tree.child[node, :tree.cards[x]].tolist())]
            avgs = [np.tensordot(weight[g] / weight[g].sum(), D[g], axes=1) for g in groups]
            if any(differs(avgs[i], avgs[j], is_r) for i in range(len(avgs)) for j in range(i)):
                svars.add(m.state_names_[x])
        avars = []
        Dk = D.reshape(K, *m.action_cards_, D.shape[-1])
        for i, n in enumerate(m.action_names_):
            moved = np.moveaxis(Dk, 1 + i, 1)
            if any(differs(moved[:, v], moved[:, 0], is_r) for v in range(1, moved.shape[1])):
                avars.append(n)
        parents[t] = {"state": [n for n in m.state_names_ if n in svars], "action": avars}
    return Explanation(parents, K)
