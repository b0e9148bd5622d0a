"""The continuous world model as one SPMN over a step:

    Σ_k w_k · [ Π_j Box_kj(s_j) ] · Max_a [ Π_j Leaf_kaj(s'_j) · End_ka · U_ka(r) ]

The root is a deterministic sum over the regions (the threshold tree flattened: region k's box
as one uniform histogram bin per continuous state variable, clipped to the logged range, and a
uniform categorical over the box's codes per discrete one; weight w_k = the region's share of
the logged rows), so the decision sees the region. Below the max over the action, the product
of the next-state leaves (histogram, Gaussian or categorical), the episode-end categorical and
the mean reward as a constant utility: the circuit's MEU given a state is ``max_a R(k, a)``,
its likelihood of ``(s, a, s')`` is ``w_k Box_k(s) Π_j Leaf(s'_j)``. The Bellman update over
regions (:mod:`.solve`) integrates these leaves over the boxes in closed form. Validation of
the root's determinism is pairwise on the boxes (O(regions²): about 8 s at 1,100 regions).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ...circuit import nodes as N
from ...circuit.circuit import Circuit
from ...schema import Schema, Variable


def build_circuit(model: Any) -> Circuit:
    states, A = list(model.states), model.action_table_.shape[0]
    action = "|".join(model.actions)
    end = model.terminated or "end"
    nxt = [f"{s}_next" for s in states]
    disc, cards = model.discrete_, model.cards_
    lo, hi = model.tree_.boxes()
    lo = np.maximum(lo, np.where(disc, -0.5, model.low_))
    hi = np.minimum(hi, np.where(disc, cards - 0.5, model.high_))
    lv = model.leaves_
    dis_index = {int(j): i for i, j in enumerate(np.flatnonzero(disc))}
    share = model.coverage_.sum(axis=1).astype(float)
    weights = share / share.sum()

    def var(name: str, j: int) -> Variable:
        return Variable.discrete(name, int(cards[j])) if disc[j] else Variable.continuous(name)

    schema = Schema([*(var(s, j) for j, s in enumerate(states)), Variable.decision(action, A),
                     *(var(s, j) for j, s in enumerate(nxt)), Variable.discrete(end, 2),
                     Variable.utility(model.reward)],
                    partial_order=[states, [action], [*nxt, end, model.reward]])
    breaks = []  # histogram breaks per variable: the tree's thresholds inside the logged range
    for j, br in enumerate(lv.break_lists()):
        eps = 1e-9 * float(model.scale_[j])
        first = min(model.low_[j], br[0] - eps) if br.size else model.low_[j]
        last = max(model.high_[j], br[-1] + eps) if br.size else model.high_[j] + eps
        breaks.append(np.concatenate([[first], br, [last]]))
    regions = []
    for k in range(model.tree_.n_regions):
        box = []
        for j, s in enumerate(states):
            if disc[j]:
                p = np.zeros(int(cards[j]))
                p[int(np.floor(lo[k, j] + 0.5)):int(np.floor(hi[k, j] + 0.5))] = 1.0
                box.append(N.Categorical(s, p / p.sum()))
            else:
                a0, b0 = lo[k, j], max(hi[k, j], np.nextafter(lo[k, j], np.inf))
                box.append(N.Histogram(s, [a0, b0], [1.0 / (b0 - a0)]))  # edges as the tree's
        kids = []
        for a in range(A):
            leaves = []
            for j, s in enumerate(nxt):
                if disc[j]:
                    leaves.append(N.Categorical(s, lv.cat[k, a, dis_index[j], :int(cards[j])]))
                elif lv.is_histogram:
                    b = breaks[j]
                    F = lv.cdf(k, k + 1, a, j)[0, :b.size - 2]
                    mass = np.diff(np.concatenate([[0.0], F, [1.0]]))
                    on = np.flatnonzero(mass > 0)  # keep the bins from the first to the last
                    lo_b, hi_b = on[0], on[-1] + 1  # with mass: the leaf's support
                    leaves.append(N.Histogram(s, b[lo_b:hi_b + 1],
                                              mass[lo_b:hi_b] / np.diff(b[lo_b:hi_b + 1])))
                else:
                    leaves.append(N.Gaussian(s, float(lv.mean[k, a, j]), float(lv.std[k, a, j])))
            pe = float(lv.p_end[k, a])
            leaves += [N.Categorical(end, [1.0 - pe, pe]),
                       N.Utility.constant(model.reward, float(lv.reward[k, a]))]
            kids.append(N.Product(leaves, label=f"region {k}, action {a}"))
        regions.append(N.Product([*box, N.Max(action, kids, label=f"region {k}")]))
    root = regions[0] if len(regions) == 1 else N.Sum(regions, weights, label="regions")
    return Circuit(root, schema)
