"""The region tree of the continuous world model: threshold splits ``x_j <= t`` found from the
data, grown best first, stored as a struct of arrays (the i-th entry of each array is node i).

A region is a leaf of the tree and an axis-aligned box ``(lo_j, hi_j]`` per state variable
(the outer boxes reach ±inf, so every point of the state space has exactly one region; a point
outside the logged range lands in the region whose box holds it, which is the region of the
nearest logged range point on each axis). Discrete variables are split on their codes (a
threshold ``c + 0.5``): a few splits isolate any value.

Split rule: the Gaussian log-likelihood gain of the standardized targets (next state, reward,
episode end) fitted per (region, action), ``Σ_{a,q} ½ (n log σ² − n_L log σ_L² − n_R log σ_R²)``
(variances floored at ``var_floor``), best candidate threshold over every variable (at most
``n_candidates`` quantile positions each); the best-first queue stops at ``max_regions``, when
no split keeps ``min_samples_leaf`` rows per side, or when the best gain is below the BIC
penalty ``½ p log n`` for the ``p`` parameters a split adds.
"""
from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(eq=False)
class RegionTree:
    """Struct of arrays over the tree's nodes (node 0 is the root)."""

    var: np.ndarray        # split variable per node, -1 for a leaf (a region)
    threshold: np.ndarray  # split threshold: left child takes x[var] <= threshold
    left: np.ndarray       # left child per node (-1 for a leaf)
    right: np.ndarray      # right child per node (-1 for a leaf)
    region: np.ndarray     # region index per leaf node (-1 for an inner node)
    d: int                 # number of state variables

    @property
    def n_regions(self) -> int:
        return int((self.region >= 0).sum())

    def route(self, X: np.ndarray) -> np.ndarray:
        """Region index of each row of ``X`` (rows x d, finite)."""
        node = np.zeros(X.shape[0], np.int64)
        active = np.flatnonzero(self.var[node] >= 0)
        while active.size:
            nd = node[active]
            go_left = X[active, self.var[nd]] <= self.threshold[nd]
            node[active] = np.where(go_left, self.left[nd], self.right[nd])
            active = active[self.var[node[active]] >= 0]
        return self.region[node]

    def boxes(self) -> tuple[np.ndarray, np.ndarray]:
        """``(lo, hi)``, each regions x d: region k is the box ``lo[k] < x <= hi[k]``."""
        K = self.n_regions
        lo, hi = np.full((K, self.d), -np.inf), np.full((K, self.d), np.inf)
        stack = [(0, np.full(self.d, -np.inf), np.full(self.d, np.inf))]
        while stack:
            n, l, h = stack.pop()
            if self.var[n] < 0:
                lo[self.region[n]], hi[self.region[n]] = l, h
                continue
            j, t = int(self.var[n]), float(self.threshold[n])
            hl, lr = h.copy(), l.copy()
            hl[j], lr[j] = min(h[j], t), max(l[j], t)
            stack.append((int(self.left[n]), l, hl))
            stack.append((int(self.right[n]), lr, h))
        return lo, hi

    def leaf_nodes(self) -> np.ndarray:
        """Tree node of each region (regions,)."""
        out = np.empty(self.n_regions, np.int64)
        leaves = np.flatnonzero(self.region >= 0)
        out[self.region[leaves]] = leaves
        return out

    def split_region(self, k: int, var: int, threshold: float) -> None:
        """Split region ``k`` at ``x[var] <= threshold``: its left half keeps index k, the
        right half becomes the last region."""
        node = int(self.leaf_nodes()[k])
        K = self.n_regions
        n = self.var.shape[0]
        self.var = np.concatenate([self.var, [-1, -1]])
        self.threshold = np.concatenate([self.threshold, [0.0, 0.0]])
        self.left = np.concatenate([self.left, [-1, -1]])
        self.right = np.concatenate([self.right, [-1, -1]])
        self.region = np.concatenate([self.region, [k, K]])
        self.var[node], self.threshold[node] = var, threshold
        self.left[node], self.right[node], self.region[node] = n, n + 1, -1

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"var": self.var, "threshold": self.threshold, "left": self.left,
                "right": self.right, "region": self.region}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], d: int) -> RegionTree:
        return cls(np.asarray(arrays["var"], np.int64), np.asarray(arrays["threshold"], float),
                   np.asarray(arrays["left"], np.int64), np.asarray(arrays["right"], np.int64),
                   np.asarray(arrays["region"], np.int64), int(d))

    @classmethod
    def single(cls, d: int) -> RegionTree:
        return cls(np.array([-1]), np.array([0.0]), np.array([-1]), np.array([-1]),
                   np.array([0]), int(d))


@dataclass(frozen=True)
class Split:
    gain: float
    var: int
    threshold: float
    per_target: np.ndarray  # log-likelihood gain per target column


def _loglik_terms(S0: np.ndarray, S1: np.ndarray, S2: np.ndarray, floor: float) -> np.ndarray:
    """``Σ_{a,q} n log σ²`` (n = S0) for stacked sufficient statistics (..., A, q)."""
    n = np.maximum(S0, 1.0)[..., None]
    var = np.maximum(S2 / n - (S1 / n) ** 2, floor)
    return np.where(S0[..., None] > 0, S0[..., None] * np.log(var), 0.0)


def _sse_terms(S0: np.ndarray, S1: np.ndarray, S2: np.ndarray, floor: float) -> np.ndarray:
    """``2 SSE`` per (action, target), so that the gain ``½ (parent − left − right)`` is the
    reduction of the sum of squares (``floor`` unused)."""
    n = np.maximum(S0, 1.0)[..., None]
    return 2.0 * np.maximum(S2 - S1 * S1 / n, 0.0)


def best_split(X: np.ndarray, a: np.ndarray, Y: np.ndarray, n_actions: int, *,
               min_samples_leaf: int, n_candidates: int, var_floor: float,
               variables: np.ndarray | None = None, criterion: str = "loglik") -> Split | None:
    """The best threshold split of one region's rows, or None: ``criterion`` "loglik" (the
    module docstring's gain) or "sse" (the reduction of the within-(region, action) sum of
    squares, used by value-directed refinement)."""
    terms = _loglik_terms if criterion == "loglik" else _sse_terms
    n = Y.shape[0]
    if n < 2 * min_samples_leaf:
        return None
    A1 = np.zeros((n, n_actions))
    A1[np.arange(n), a] = 1.0
    best: Split | None = None
    whole = None
    for j in (range(X.shape[1]) if variables is None else variables):
        order = np.argsort(X[:, j], kind="stable")
        x = X[order, j]
        if x[0] == x[-1]:
            continue
        # positions i: left = first i rows; valid where x changes and both sides are big enough
        pos = np.flatnonzero(x[1:] != x[:-1]) + 1
        pos = pos[(pos >= min_samples_leaf) & (pos <= n - min_samples_leaf)]
        if not pos.size:
            continue
        if pos.size > n_candidates:
            pos = pos[np.unique(np.arange(n_candidates) * (pos.size - 1) // (n_candidates - 1))] \
                if n_candidates > 1 else pos[[pos.size // 2]]
        Ao, Yo = A1[order], Y[order]
        C0 = np.cumsum(Ao, axis=0)                                  # n x A
        C1 = np.cumsum(Ao[:, :, None] * Yo[:, None, :], axis=0)     # n x A x q
        C2 = np.cumsum(Ao[:, :, None] * (Yo * Yo)[:, None, :], axis=0)
        if whole is None:
            whole = terms(C0[-1], C1[-1], C2[-1], var_floor).sum(axis=0)  # per q
        L0, L1, L2 = C0[pos - 1], C1[pos - 1], C2[pos - 1]
        left = terms(L0, L1, L2, var_floor).sum(axis=1)            # cand x q
        right = terms(C0[-1] - L0, C1[-1] - L1, C2[-1] - L2, var_floor).sum(axis=1)
        per = 0.5 * (whole[None, :] - left - right)
        gains = per.sum(axis=1)
        i = int(np.argmax(gains))
        if best is None or gains[i] > best.gain:
            t = 0.5 * (x[pos[i] - 1] + x[pos[i]])
            if not t < x[pos[i]]:  # adjacent floats: keep the left value on the left
                t = x[pos[i] - 1]
            best = Split(float(gains[i]), int(j), float(t), per[i].copy())
    return best


def grow(X: np.ndarray, a: np.ndarray, Y: np.ndarray, n_actions: int, *, max_regions: int,
         min_samples_leaf: int, n_candidates: int, var_floor: float, penalty: float,
         progress: Callable[[int], None] | None = None
         ) -> tuple[RegionTree, np.ndarray]:
    """Grow the tree best first (module docstring). Returns the tree and the log-likelihood
    gain per (split variable, target) summed over its splits (the explanation's evidence)."""
    d, q = X.shape[1], Y.shape[1]
    tree = RegionTree.single(d)
    importance = np.zeros((d, q))
    rows = {0: np.arange(X.shape[0])}
    heap: list = []

    def push(k: int) -> None:
        idx = rows[k]
        s = best_split(X[idx], a[idx], Y[idx], n_actions, min_samples_leaf=min_samples_leaf,
                       n_candidates=n_candidates, var_floor=var_floor)
        if s is not None and s.gain > penalty:
            heapq.heappush(heap, (-s.gain, k, s))

    push(0)
    while heap and tree.n_regions < max_regions:
        _, k, s = heapq.heappop(heap)
        idx = rows.pop(k)
        go_left = X[idx, s.var] <= s.threshold
        tree.split_region(k, s.var, s.threshold)
        new = tree.n_regions - 1
        rows[k], rows[new] = idx[go_left], idx[~go_left]
        importance[s.var] += s.per_target
        push(k)
        push(new)
        if progress is not None:
            progress(tree.n_regions)
    return tree, importance
