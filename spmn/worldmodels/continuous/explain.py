"""What the continuous world model learned, in words: how many regions, which variables the
thresholds split on, and which state variables (and the action) each next-state variable,
the reward and the episode end depend on.

Evidence: each split's log-likelihood gain per target (next-state variable, reward, end),
summed per split variable (``importance_``); a variable is a parent of a target when it carries
at least ``tol`` of that target's gain. The action is a parent when the leaves' means differ
across actions within regions by more than ``tol`` of the target's spread (weighted by rows).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ContinuousExplanation:
    """``parents[target]`` (state variables and the action), ``splits[var]`` thresholds per
    state variable, ``share[target][var]`` the fraction of the target's split gain."""

    parents: dict[str, list[str]]
    splits: dict[str, int]
    share: dict[str, dict[str, float]]
    action_effect: dict[str, float]
    n_regions: int
    n_actions: int
    n_transitions: int

    def __str__(self) -> str:
        lines = [f"continuous world model: {self.n_regions:,} regions (threshold boxes), "
                 f"{self.n_actions} actions, {self.n_transitions:,} transitions",
                 "thresholds per variable: " + ", ".join(f"{v} {n}" for v, n in
                                                         self.splits.items()),
                 "targets <- what they depend on (share of the split gain; action: spread of "
                 "the leaf means across actions / target spread):"]
        for t, pa in self.parents.items():
            detail = ", ".join(f"{v} {self.share[t][v]:.2f}" for v in pa if v in self.share[t])
            act = f"; action {self.action_effect[t]:.3g}" if t in self.action_effect else ""
            lines.append(f"  {t:<16} <- {', '.join(pa) if pa else '(nothing: constant)'}"
                         f"   [{detail}{act}]")
        return "\n".join(lines)


def explain(model: Any, tol: float) -> ContinuousExplanation:
    imp = np.asarray(model.importance_)
    names, targets = list(model.states), list(model.target_names_)
    tree = model.tree_
    splits = {v: int((tree.var == j).sum()) for j, v in enumerate(names)}
    lv = model.leaves_
    w = np.where(lv.fallback, 0.0, lv.count)
    share, parents, effect = {}, {}, {}
    for q, t in enumerate(targets):
        col = np.maximum(imp[:, q], 0.0)
        tot = col.sum()
        share[t] = {v: float(col[j] / tot) for j, v in enumerate(names)} if tot > 0 else {}
        pa = [v for v in names if share[t].get(v, 0.0) >= tol]
        if q < len(names):  # next-state variable: does the action move its mean?
            mu = lv.mean[:, :, q]
            spread = float(model.scale_[q])
            wk = w.sum(axis=1, keepdims=True)
            mk = (w * mu).sum(axis=1, keepdims=True) / np.maximum(wk, 1e-300)
            var = float((w * (mu - mk) ** 2).sum() / max(w.sum(), 1e-300))
            effect[t] = np.sqrt(var) / spread
        elif t == model.reward:
            r = lv.reward
            wk = w.sum(axis=1, keepdims=True)
            mk = (w * r).sum(axis=1, keepdims=True) / np.maximum(wk, 1e-300)
            sd = float(np.sqrt((w * (r - mk) ** 2).sum() / max(w.sum(), 1e-300)))
            tot_sd = float(np.sqrt((w * (r - (w * r).sum() / w.sum()) ** 2).sum() / w.sum()))
            effect[t] = sd / tot_sd if tot_sd > 0 else 0.0
        if effect.get(t, 0.0) >= tol:
            pa.append(", ".join(model.actions))
        parents[t] = pa
    return ContinuousExplanation(parents, splits, share, effect, tree.n_regions,
                                 model.action_table_.shape[0], model.n_transitions_)
