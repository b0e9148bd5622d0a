"""Structure learner of a world-model template: a partition of the state space into regions.

The state part of the template is a tree of deterministic splits on state variables; its leaves
are the regions, which become the interface states. A region is split on a state variable when
the split changes, for some action, the joint distribution of (next region or episode end,
reward class): a G-test stratified by action, ``G = 2 Σ O ln(O / E)``, compared with χ² at
``split_p``. Splitting changes what "next region" means, so the procedure repeats until no region
splits (a data-driven bisimulation refinement). ``structure="full"`` splits until each region
holds one observed joint state (the unrestricted, certainty-equivalent structure).

Values of a variable that a region's data never shows are routed to the child of its most
frequent value (documented fallback: every state, seen or not, lands in exactly one region).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import chdtrc  # χ² survival function, lighter than scipy.stats

from ..errors import DataError

TERMINAL = -1


@dataclass
class RegionTree:
    """Splits as arrays: ``var[n]`` (-1 at a leaf), ``child[n, v]`` (tree node for value v),
    ``region[n]`` (region id at a leaf, -1 inside)."""

    var: np.ndarray
    child: np.ndarray
    region: np.ndarray
    cards: np.ndarray

    @property
    def n_regions(self) -> int:
        return int((self.region >= 0).sum())

    def route(self, S: np.ndarray) -> np.ndarray:
        """Region of every row of the (n, d) integer state array ``S``."""
        node = np.zeros(S.shape[0], np.int64)
        while True:
            v = self.var[node]
            inner = v >= 0
            if not inner.any():
                return self.region[node]
            idx = np.flatnonzero(inner)
            node[idx] = self.child[node[idx], S[idx, v[idx]]]

    def leaves_in_order(self) -> list[int]:
        return [int(n) for n in np.argsort(np.where(self.region >= 0, self.region, 1 << 60))
                [: self.n_regions]]

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"var": self.var, "child": self.child, "region": self.region, "cards": self.cards}

    @classmethod
    def from_arrays(cls, d) -> "RegionTree":
        return cls(np.asarray(d["var"], np.int64), np.asarray(d["child"], np.int64),
                   np.asarray(d["region"], np.int64), np.asarray(d["cards"], np.int64))


def _g_test(x: np.ndarray, y: np.ndarray, a: np.ndarray,
            counts: np.ndarray | None = None) -> tuple[float, int]:
    """G statistic and degrees of freedom of x ⟂ y | a (all small non-negative ints): one
    row per observation, or (``counts``) one per distinct (a, x, y) with its count."""
    G, df = 0.0, 0
    for act in np.unique(a):
        m = a == act
        xs, xi = np.unique(x[m], return_inverse=True)
        ys, yi = np.unique(y[m], return_inverse=True)
        if len(xs) < 2 or len(ys) < 2:
            continue
        O = np.zeros((len(xs), len(ys)))
        if counts is None:
            np.add.at(O, (xi, yi), 1.0)
        else:
            O[xi, yi] = counts[m]
        E = O.sum(1, keepdims=True) * O.sum(0, keepdims=True) / O.sum()
        nz = O > 0
        G += 2.0 * float(np.sum(O[nz] * np.log(O[nz] / E[nz])))
        df += (len(xs) - 1) * (len(ys) - 1)
    return G, df


def reward_classes(r: np.ndarray, max_classes: int = 16) -> np.ndarray:
    """Reward values as class codes: exact values when few, quantile bins otherwise."""
    vals, inv = np.unique(r, return_inverse=True)
    if len(vals) <= max_classes:
        return inv
    edges = np.quantile(r, np.linspace(0, 1, max_classes + 1)[1:-1])
    return np.searchsorted(edges, r, side="right")


def learn_regions(S: np.ndarray, A: np.ndarray, rclass: np.ndarray, S_next: np.ndarray,
                  term: np.ndarray, cards: np.ndarray, *, structure: str = "learn",
                  split_p: float = 1e-3, min_samples_split: int = 20,
                  max_regions: int | None = None, progress=None) -> RegionTree:
    """Grow the region tree on transitions (S, A, reward class, S_next, terminated)."""
    if structure not in ("learn", "full"):
        raise DataError(f"structure must be 'learn' or 'full', got {structure!r}")
    d = S.shape[1]
    kmax = int(cards.max())
    var = [-1]
    child: list[np.ndarray] = [np.full(kmax, -1, np.int64)]
    leaf_rows = {0: np.arange(S.shape[0])}
    frozen: set[int] = set()

    def as_tree() -> RegionTree:
        region = np.full(len(var), -1, np.int64)
        for r, n in enumerate(sorted(leaf_rows)):
            region[n] = r
        return RegionTree(np.array(var, np.int64), np.array(child, np.int64), region, cards)

    while True:
        tree = as_tree()
        outcome = np.where(term, TERMINAL, tree.route(S_next))
        y = (outcome + 1) * (int(rclass.max()) + 1) + rclass
        splits = []
        for node, rows in leaf_rows.items():
            if node in frozen or rows.size < 2 * min_samples_split and structure == "learn":
                continue
            best, splittable = None, False
            for j in range(d):
                xs = S[rows, j]
                if xs.min() == xs.max():
                    continue
                splittable = True
                if structure == "full":
                    best = (0.0, 0.0, j)
                    break
                G, df = _g_test(xs, y[rows], A[rows])
                if df == 0:
                    continue
                p = float(chdtrc(df, G))
                key = (p, -G / df, j)
                if p < split_p and (best is None or key < best):
                    best = key
            if not splittable:
                frozen.add(node)  # one joint state: nothing left to split
            elif best is not None:
                splits.append((node, best[2]))
        if not splits:
            break
        if max_regions is not None:
            room = max_regions - len(leaf_rows)
            if room <= 0:
                break
        for node, j in splits:
            rows = leaf_rows.pop(node)
            vals, counts = np.unique(S[rows, j], return_counts=True)
            if max_regions is not None and len(leaf_rows) + len(vals) > max_regions:
                leaf_rows[node] = rows
                frozen.add(node)
                continue
            var[node] = j
            most = int(vals[np.argmax(counts)])
            kids = {}
            for v in vals:
                n = len(var)
                var.append(-1)
                child.append(np.full(kmax, -1, np.int64))
                kids[int(v)] = n
                leaf_rows[n] = rows[S[rows, j] == v]
            child[node][:] = kids[most]
            for v, n in kids.items():
                child[node][v] = n
        if progress is not None:
            progress(len(leaf_rows))
    return as_tree()
