"""The slow, obvious twin of :mod:`.add`: algebraic decision diagrams in Python lists and dicts,
recursive operations with memo dicts. The compiled store is tested against it
(``tests/worldmodels/test_add.py``); the solver uses :class:`.add.Diagrams`.

Variables sit at fixed levels (0 = nearest the root; terminals below every level). A node is
``(level, kids)`` with one kid per value; a node whose kids are all equal is that kid, and equal
``(level, kids)`` pairs are one node, so two diagrams of the same function are the same id
(leaves are merged when their floats are equal: no rounding is applied). Operations
(``add``, ``mul``, ``max``, restriction, expectation over one variable) recurse on the top
variable with memo tables, so their cost grows with the diagrams, never with the number of
joint assignments.
"""
from __future__ import annotations

import operator
import sys
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import numpy as np

from ...errors import SolverError

#: Level of terminal nodes (below every variable).
TERM = 1 << 30


class ReferenceDiagrams:
    """A store of ADD nodes over variables with ``cards[level]`` values each (pure Python)."""

    def __init__(self, cards: Sequence[int], max_nodes: int | None = None) -> None:
        self.cards = [int(k) for k in cards]
        self.max_nodes = max_nodes
        self.lev: list[int] = []
        self.kids: list[tuple[int, ...]] = []
        self.val: list[float] = []
        self._unique: dict[tuple[int, tuple[int, ...]], int] = {}
        self._const: dict[float, int] = {}
        self.memo: dict[str, dict] = {}
        self.zero = self.const(0.0)
        self.one = self.const(1.0)

    def __len__(self) -> int:
        return len(self.lev)

    # ------------------------------------------------------------------ construction
    def const(self, v: float) -> int:
        v = float(v) + 0.0  # one zero (-0.0 -> 0.0)
        i = self._const.get(v)
        if i is None:
            if v != v:
                raise SolverError("a value diagram got a NaN leaf")
            i = len(self.lev)
            self.lev.append(TERM)
            self.kids.append(())
            self.val.append(v)
            self._const[v] = i
        return i

    def node(self, level: int, kids: Sequence[int]) -> int:
        kids = tuple(kids)
        k0 = kids[0]
        for k in kids:
            if k != k0:
                break
        else:
            return k0
        key = (level, kids)
        i = self._unique.get(key)
        if i is None:
            i = len(self.lev)
            if self.max_nodes is not None and i >= self.max_nodes:
                raise SolverError(f"the value diagrams exceed max_nodes={self.max_nodes:,} nodes: "
                                  "the value depends on too many variable combinations for the "
                                  "structured solver; solve(method='flat') from given start "
                                  "states, or raise max_nodes")
            self.lev.append(level)
            self.kids.append(kids)
            self.val.append(0.0)
            self._unique[key] = i
        return i

    def from_dense(self, levels: Sequence[int], T: np.ndarray) -> int:
        """The diagram of the tensor ``T`` whose axis i is the variable at ``levels[i]``
        (increasing), reduced bottom-up one axis at a time (vectorized)."""
        T = np.asarray(T, np.float64)
        uniq, inv = np.unique(T.ravel(), return_inverse=True)
        ids = np.array([self.const(v) for v in uniq.tolist()], np.int64)[inv.ravel()]
        ids = ids.reshape(T.shape)
        for ax in range(T.ndim - 1, -1, -1):
            rows = ids.reshape(-1, T.shape[ax])
            out = rows[:, 0].copy()
            diff = np.flatnonzero((rows != rows[:, :1]).any(axis=1))
            if diff.size:
                u, back = np.unique(rows[diff], axis=0, return_inverse=True)
                made = np.array([self.node(int(levels[ax]), r) for r in u.tolist()], np.int64)
                out[diff] = made[back.ravel()]
            ids = out.reshape(T.shape[:ax])
        return int(ids)

    def to_dense(self, f: int, levels: Sequence[int]) -> np.ndarray:
        """``f`` as a tensor over the variables at ``levels`` (its support must lie in them)."""
        shape = [self.cards[lv] for lv in levels]
        if not levels:
            return np.array(self.evaluate(f, np.zeros((1, 0), np.int64), np.zeros(1, np.int64))[0])
        E = np.indices(shape).reshape(len(shape), -1).T
        column = np.zeros(len(self.cards), np.int64)
        column[list(levels)] = np.arange(len(levels))
        return self.evaluate(f, E, column).reshape(shape)

    def is_const(self, f: int) -> bool:
        return self.lev[f] == TERM

    def table(self, levels: Sequence[int], values: np.ndarray) -> int:
        """The diagram of ``values[x_l0, x_l1, ...]`` over the given levels (any order)."""
        values = np.asarray(values, np.float64)
        if not levels:
            return self.const(float(values))
        first, rest = levels[0], list(levels[1:])
        return self.split(first, [self.table(rest, values[v]) for v in range(values.shape[0])])

    def split(self, level: int, kids: Sequence[int]) -> int:
        """The diagram ``kids[x_level]`` where the kids may test variables above ``level``."""
        kids = tuple(kids)
        memo = self.memo.setdefault("split", {})
        key = (level, kids)
        r = memo.get(key)
        if r is not None:
            return r
        lev = self.lev
        top = min(lev[k] for k in kids)
        if top > level:
            r = self.node(level, kids)
        elif top == level:
            r = self.split(level, [self.restrict(k, level, v) for v, k in enumerate(kids)])
        else:
            r = self.node(top, [self.split(level, [self.kids[k][w] if lev[k] == top else k
                                                   for k in kids])
                                for w in range(self.cards[top])])
        memo[key] = r
        return r

    # ------------------------------------------------------------------ operations
    def _apply(self, name: str, fn: Callable[[float, float], float], f: int, g: int,
               short: Callable[[int, int], int | None] | None = None,
               commutative: bool = True) -> int:
        memo = self.memo.setdefault(name, {})
        lev, kids, val, const, node = self.lev, self.kids, self.val, self.const, self.node

        def rec(f: int, g: int) -> int:
            if commutative and f > g:
                f, g = g, f
            key = (f, g)
            r = memo.get(key)
            if r is not None:
                return r
            lf, lg = lev[f], lev[g]
            if lf == TERM and lg == TERM:
                r = const(fn(val[f], val[g]))
            else:
                r = short(f, g) if short is not None else None
                if r is None:
                    if lf < lg:
                        r = node(lf, [rec(c, g) for c in kids[f]])
                    elif lg < lf:
                        r = node(lg, [rec(f, c) for c in kids[g]])
                    else:
                        r = node(lf, [rec(a, b) for a, b in zip(kids[f], kids[g])])
            memo[key] = r
            return r

        return rec(f, g)

    def add(self, f: int, g: int) -> int:
        z = self.zero
        return self._apply("add", operator.add, f, g,
                           lambda a, b: b if a == z else (a if b == z else None))

    def sub(self, f: int, g: int) -> int:
        return self._apply("sub", operator.sub, f, g, commutative=False)

    def mul(self, f: int, g: int) -> int:
        z, o = self.zero, self.one
        return self._apply("mul", operator.mul, f, g,
                           lambda a, b: z if z in (a, b) else (b if a == o else (a if b == o else None)))

    def max(self, f: int, g: int) -> int:
        return self._apply("max", max, f, g, lambda a, b: a if a == b else None)

    def affine(self, f: int, a: float, b: float = 0.0) -> int:
        """``a f + b``."""
        memo = self.memo.setdefault(("affine", a, b), {})
        lev, kids, val = self.lev, self.kids, self.val

        def rec(f: int) -> int:
            r = memo.get(f)
            if r is None:
                r = self.const(a * val[f] + b) if lev[f] == TERM else \
                    self.node(lev[f], [rec(c) for c in kids[f]])
                memo[f] = r
            return r

        return rec(f)

    def restrict(self, f: int, level: int, v: int) -> int:
        """``f`` with the variable at ``level`` set to ``v``."""
        memo = self.memo.setdefault(("restrict", level, v), {})
        lev, kids = self.lev, self.kids

        def rec(f: int) -> int:
            lf = lev[f]
            if lf > level:
                return f
            if lf == level:
                return kids[f][v]
            r = memo.get(f)
            if r is None:
                r = self.node(lf, [rec(c) for c in kids[f]])
                memo[f] = r
            return r

        return rec(f)

    def expectation(self, f: int, level: int, probs: Sequence[int]) -> int:
        """``Σ_v probs[v] · f|_{x_level = v}``: sum out one variable against diagrams of its
        conditional probabilities."""
        out = self.zero
        for v, p in enumerate(probs):
            if p != self.zero:
                out = self.add(out, self.mul(p, self.restrict(f, level, v)))
        return out

    def max_out(self, f: int, level: int) -> int:
        out = self.restrict(f, level, 0)
        for v in range(1, self.cards[level]):
            out = self.max(out, self.restrict(f, level, v))
        return out

    def relabel(self, f: int, mapping: dict[int, int]) -> int:
        """``f`` with variable levels renamed (the mapping must keep their order)."""
        memo: dict[int, int] = {}
        lev, kids = self.lev, self.kids

        def rec(f: int) -> int:
            r = memo.get(f)
            if r is None:
                r = f if lev[f] == TERM else self.node(mapping[lev[f]], [rec(c) for c in kids[f]])
                memo[f] = r
            return r

        return rec(f)

    def map_leaves(self, f: int, leaves: Sequence[int], values: Sequence[float]) -> int:
        """``f`` with its constant ``leaves[j]`` replaced by ``values[j]``."""
        to = {int(i): float(v) for i, v in zip(leaves, values)}
        memo: dict[int, int] = {}
        lev, kids = self.lev, self.kids

        def rec(f: int) -> int:
            r = memo.get(f)
            if r is None:
                r = self.const(to[f]) if lev[f] == TERM else \
                    self.node(lev[f], [rec(c) for c in kids[f]])
                memo[f] = r
            return r

        return rec(f)

    def clear(self) -> None:
        self.memo.clear()

    # ------------------------------------------------------------------ reading
    def reachable(self, roots: Sequence[int]) -> list[int]:
        """Nodes below ``roots`` (each once), children before parents."""
        seen: set[int] = set()
        order: list[int] = []
        stack = [(r, False) for r in roots]
        while stack:
            f, done = stack.pop()
            if done:
                order.append(f)
                continue
            if f in seen:
                continue
            seen.add(f)
            stack.append((f, True))
            stack.extend((c, False) for c in self.kids[f] if c not in seen)
        return order

    def leaves(self, f: int) -> list[int]:
        return sorted(i for i in self.reachable([f]) if self.lev[i] == TERM)

    def leaf_range(self, f: int) -> tuple[float, float]:
        vals = [self.val[i] for i in self.reachable([f]) if self.lev[i] == TERM]
        return min(vals), max(vals)

    def support(self, f: int) -> list[int]:
        return sorted({self.lev[i] for i in self.reachable([f]) if self.lev[i] != TERM})

    def size(self, f: int) -> int:
        return len(self.reachable([f]))

    def transfer(self, roots: Sequence[int], other: "ReferenceDiagrams") -> list[int]:
        """Copy the diagrams ``roots`` into ``other`` (compaction); their ids there."""
        new: dict[int, int] = {}
        for f in self.reachable(roots):
            new[f] = other.const(self.val[f]) if self.lev[f] == TERM else \
                other.node(self.lev[f], [new[c] for c in self.kids[f]])
        return [new[r] for r in roots]

    def evaluate(self, f: int, E: np.ndarray, column: np.ndarray) -> np.ndarray:
        """Value of ``f`` at every row of ``E``; the variable at level l is ``E[:, column[l]]``."""
        order = self.reachable([f])
        pos = {n: i for i, n in enumerate(order)}
        kmax = max([len(self.kids[n]) for n in order] + [1])
        lev = np.array([self.lev[n] for n in order], np.int64)
        kid = np.zeros((len(order), kmax), np.int64)
        for i, n in enumerate(order):
            if self.kids[n]:
                kid[i, :len(self.kids[n])] = [pos[c] for c in self.kids[n]]
        val = np.array([self.val[n] for n in order])
        inner = lev != TERM
        col = np.where(inner, np.asarray(column, np.int64)[np.where(inner, lev, 0)], -1)
        node = np.full(E.shape[0], pos[f], np.int64)
        while True:
            act = np.flatnonzero(inner[node])
            if act.size == 0:
                return val[node]
            node[act] = kid[node[act], E[act, col[node[act]]]]


@contextmanager
def deep_recursion(levels: int) -> Iterator[None]:
    """Room on the interpreter's stack for recursions as deep as the diagrams (2 frames a
    level), restored afterwards."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 4 * int(levels) + 2000))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)
