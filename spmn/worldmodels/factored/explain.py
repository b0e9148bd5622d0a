"""What the factored world model learned, in words and as a graph: each next variable's parents
(the variables its tree splits on), the reward's terms, and the dynamic Bayesian network."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .mdp import FactoredMDP


@dataclass(frozen=True)
class FactoredExplanation:
    """``parents[target] = {"state": [...], "action": [...]}`` for every next-state variable
    (and the episode end), ``leaves[target]`` its leaf count and fewest samples in a leaf;
    ``reward_terms``: (variables, largest |effect|) per term; ``reward_fit``: the fit on the
    logs; ``split_p``: the α of the split rule and how it was chosen."""

    parents: dict[str, dict[str, list[str]]]
    leaves: dict[str, tuple[int, int]]
    reward_terms: list[tuple[list[str], float]]
    reward_intercept: float
    reward_fit: dict[str, float]
    split_p: float
    split_rule: str
    n_transitions: int
    n_joint_actions: int
    groups: tuple[str, ...] = ()

    def __str__(self) -> str:
        n_s = sum(1 for t in self.parents if t.endswith("_next"))
        lines = [f"factored world model: {n_s} state variables, {self.n_joint_actions} joint "
                 f"actions, {self.n_transitions:,} transitions",
                 f"splits: G-test at α = {self.split_p:g} / (candidates at the node), "
                 f"{self.split_rule}",
                 *(["one-hot groups (one categorical variable each):"] +
                   [f"  {g}" for g in self.groups] if self.groups else []),
                 "next-state variables <- parents found in the data (no synchronic arcs):"]
        for t, dep in self.parents.items():
            src = [*dep["state"], *dep["action"]]
            nl, few = self.leaves[t]
            lines.append(f"  {t:<16} <- {', '.join(src) if src else '(nothing: constant)'}"
                         f"   [{nl} leaves, fewest samples in a leaf {few}]")
        fit = self.reward_fit
        lines.append(f"reward: E[r | s, a] = {self.reward_intercept:.6g} + "
                     f"{len(self.reward_terms)} terms (residual on the logs: rms "
                     f"{fit['rms']:.3g}, max {fit['max']:.3g}, R² {fit['r2']:.6f})")
        for names, eff in self.reward_terms:
            lines.append(f"  f({', '.join(names)})   largest |effect| {eff:.6g}")
        return "\n".join(lines)


def explain(mdp: FactoredMDP, n_transitions: int, split_p: float, chosen: bool,
            end_name: str | None = None) -> FactoredExplanation:
    names = [*mdp.state_names, *mdp.action_names]
    d = mdp.d
    parents, leaves = {}, {}
    trees = [(f"{n}_next", t) for n, t in zip(mdp.state_names, mdp.trees)]
    if mdp.end is not None:
        trees.append((end_name or "end", mdp.end))
    for target, tree in trees:
        pa = tree.parents
        parents[target] = {"state": [names[j] for j in pa if j < d],
                           "action": [names[j] for j in pa if j >= d]}
        n_leaf = tree.counts[tree.leaves].sum(axis=1)
        leaves[target] = (int(tree.leaves.size), int(n_leaf.min()))
    rew = mdp.reward
    terms = [([names[j] for j in c], float(np.abs(t).max())) for c, t in zip(rew.cols, rew.tables)]
    rule = "α chosen by held-out log-likelihood" if chosen else "α given (split_p)"
    return FactoredExplanation(parents, leaves, terms, rew.intercept,
                               {"rms": rew.residual_rms, "max": rew.residual_max, "r2": rew.r2},
                               split_p, rule, int(n_transitions), mdp.n_actions,
                               tuple(mdp.groups.describe()) if mdp.groups is not None else ())


def dbn_graph(mdp: FactoredMDP, reward: str, end_name: str | None = None) -> Any:
    """The learned dynamic Bayesian network as a ``networkx.DiGraph``: nodes are the state
    variables (``layer="t"``), action variables (``"action"``), next-state variables
    (``"t+1"``), the reward and the episode end; edges parent -> child."""
    import networkx as nx

    names = [*mdp.state_names, *mdp.action_names]
    g = nx.DiGraph()
    for n in mdp.state_names:
        g.add_node(n, layer="t")
    for n in mdp.action_names:
        g.add_node(n, layer="action")
    trees = [(f"{n}_next", t) for n, t in zip(mdp.state_names, mdp.trees)]
    if mdp.end is not None:
        trees.append((end_name or "end", mdp.end))
    for target, tree in trees:
        g.add_node(target, layer="t+1")
        g.add_edges_from((names[j], target) for j in tree.parents)
    g.add_node(reward, layer="reward")
    for c in mdp.reward.cols:
        g.add_edges_from((names[j], reward) for j in c)
    return g


def to_dot(g: Any, path: str | None = None) -> str:
    """Graphviz DOT of :func:`dbn_graph` (state variables left, next ones right)."""
    shapes = {"t": "ellipse", "action": "box", "t+1": "ellipse", "reward": "diamond"}
    lines = ["digraph dbn {", "  rankdir=LR;", "  node [fontname=Helvetica];"]
    for layer in ("t", "action", "t+1", "reward"):
        members = [n for n, a in g.nodes(data=True) if a["layer"] == layer]
        if members:
            lines.append("  { rank=same; " + " ".join(f'"{n}";' for n in members) + " }")
        for n in members:
            lines.append(f'  "{n}" [shape={shapes[layer]}];')
    for a, b in g.edges:
        lines.append(f'  "{a}" -> "{b}";')
    lines.append("}")
    text = "\n".join(lines) + "\n"
    if path is not None:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
    return text
