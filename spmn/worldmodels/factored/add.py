"""Algebraic decision diagrams (ADDs): canonical, hash-consed DAGs of decisions on integer
variables with real leaves, the value-tree representation of the structured solver.

Variables sit at fixed levels (0 = nearest the root; terminals below every level). A node is
``(level, kids)`` with one kid per value; a node whose kids are all equal is that kid, and equal
``(level, kids)`` pairs are one node, so two diagrams of the same function are the same id
(leaves are merged when their floats are equal: no rounding is applied). Operations
(``add``, ``mul``, ``max``, restriction, expectation over one variable) recurse on the top
variable with memo tables, so their cost grows with the diagrams, never with the number of
joint assignments.

The nodes, the unique table and the memo tables are flat arrays operated on by the compiled
core :mod:`spmn.kernels._numba_add` (explicit stacks, open addressing, doubling); its slow,
obvious twin is :class:`.add_reference.ReferenceDiagrams`, which it matches node for node.
``lev``, ``kids`` and ``val`` read like the reference's lists (``lev[f]``, ``kids[f]`` a tuple,
``val[f]``).
"""
from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator, Sequence

import numpy as np

from ...errors import SolverError
from ...kernels import _numba_add as K
from ...kernels import _numba_add_ops as KO

#: Level of terminal nodes (below every variable).
TERM = K.TERM


def _ids(x) -> np.ndarray:
    """A C-contiguous int64 vector (one compiled signature per kernel)."""
    return np.ascontiguousarray(np.asarray(x, np.int64).reshape(-1))


class _Kids:
    """``kids[f]``: node f's kids as a tuple (empty for a constant)."""

    def __init__(self, store: "Diagrams") -> None:
        self._st = store

    def __len__(self) -> int:
        return len(self._st)

    def __getitem__(self, f: int) -> tuple[int, ...]:
        lev, info, _, pool, _, _ = self._st._S
        lv = int(lev[f])
        if lv == TERM:
            return ()
        o = int(info[f]) >> 31
        return tuple(pool[o:o + self._st.cards[lv]].tolist())


class Diagrams:
    """A store of ADD nodes over variables with ``cards[level]`` values each."""

    def __init__(self, cards: Sequence[int], max_nodes: int | None = None) -> None:
        self.cards = [int(k) for k in cards]
        self._cards = np.array(self.cards, np.int64)
        self._kmax = max(self.cards + [1])
        self._S = K.new_store(1024, -1 if max_nodes is None else int(max_nodes))
        self._max_nodes = max_nodes
        self._none = np.zeros(1, np.int64)
        self._fnone = np.zeros(1, np.float64)
        self.memo: dict = {}
        self.zero = self.const(0.0)
        self.one = self.const(1.0)
        assert (self.zero, self.one) == (0, 1)  # the kernels' shortcuts assume these ids

    @property
    def max_nodes(self) -> int | None:
        return self._max_nodes

    @max_nodes.setter
    def max_nodes(self, value: int | None) -> None:
        self._max_nodes = value
        self._S[5][2] = -1 if value is None else int(value)

    def __len__(self) -> int:
        return int(self._S[5][0])

    @property
    def lev(self) -> np.ndarray:
        return self._S[0][:len(self)]

    @property
    def val(self) -> np.ndarray:
        return self._S[2][:len(self)]

    @property
    def kids(self) -> _Kids:
        return _Kids(self)

    def _check(self, r: int) -> int:
        if r >= 0:
            return int(r)
        if r == K.NAN:
            raise SolverError("a value diagram got a NaN leaf")
        raise SolverError(f"the value diagrams exceed max_nodes={self.max_nodes:,} nodes: "
                          "the value depends on too many variable combinations for the "
                          "structured solver; solve(method='flat') from given start "
                          "states, or raise max_nodes")

    def _memo(self, name) -> tuple:
        M = self.memo.get(name)
        return K.new_memo() if M is None else M

    # ------------------------------------------------------------------ construction
    def const(self, v: float) -> int:
        r = K.const_in_place(*self._S, float(v))
        if r == K.NEED_NODES:
            self._S, r = K.const(self._S, self._cards, float(v))
        return self._check(r)

    def node(self, level: int, kids: Sequence[int]) -> int:
        kids = _ids(kids)
        r = K.node_in_place(*self._S, self._cards, int(level), kids)
        if r == K.NEED_NODES:
            self._S, r = K.node(self._S, self._cards, int(level), kids, 0)
        return self._check(r)

    def from_dense(self, levels: Sequence[int], T: np.ndarray) -> int:
        """The diagram of the tensor ``T`` whose axis i is the variable at ``levels[i]``
        (increasing), reduced bottom-up one axis at a time."""
        T = np.ascontiguousarray(T, np.float64)
        self._S, r = K.from_dense(self._S, self._cards, _ids(levels), T.reshape(-1))
        return self._check(r)

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
        return int(self._S[0][f]) == TERM

    def table(self, levels: Sequence[int], values: np.ndarray) -> int:
        """The diagram of ``values[x_l0, x_l1, ...]`` over the given levels (any order)."""
        values = np.asarray(values, np.float64)
        if not len(levels):
            return self.const(float(values))
        order = np.argsort(np.asarray(levels, np.int64), kind="stable")
        return self.from_dense(np.asarray(levels, np.int64)[order], np.transpose(values, order))

    def split(self, level: int, kids: Sequence[int]) -> int:
        """The diagram ``kids[x_level]`` where the kids may test variables above ``level``."""
        kids = tuple(int(k) for k in kids)
        memo = self.memo.setdefault("split", {})
        key = (level, kids)
        r = memo.get(key)
        if r is not None:
            return r
        lev = self._S[0]
        top = min(int(lev[k]) for k in kids)
        if top > level:
            r = self.node(level, kids)
        elif top == level:
            r = self.split(level, [self.restrict(k, level, v) for v, k in enumerate(kids)])
        else:
            K_ = self.kids
            r = self.node(top, [self.split(level, [K_[k][w] if int(lev[k]) == top else k
                                                   for k in kids])
                                for w in range(self.cards[top])])
            lev = self._S[0]
        memo[key] = r
        return r

    # ------------------------------------------------------------------ operations
    def _apply(self, name: str, op: int, f: int, g: int) -> int:
        self._S, M, r = KO.apply2(self._S, self._cards, self._memo(name), op, int(f), int(g),
                                 self._kmax)
        self.memo[name] = M
        return self._check(r)

    def _apply1(self, name, op: int, f: int, level: int = 0, v: int = 0, a: float = 0.0,
                b: float = 0.0, relab: np.ndarray | None = None, lid: np.ndarray | None = None,
                lval: np.ndarray | None = None) -> int:
        M = K.new_memo() if name is None else self._memo(name)
        self._S, M, r = KO.apply1(self._S, self._cards, M, op, int(f), int(level), int(v),
                                 float(a), float(b), self._none if relab is None else relab,
                                 self._none if lid is None else lid,
                                 self._fnone if lval is None else lval, self._kmax)
        if name is not None:
            self.memo[name] = M
        return self._check(r)

    def add(self, f: int, g: int) -> int:
        return self._apply("add", K.ADD, f, g)

    def sub(self, f: int, g: int) -> int:
        return self._apply("sub", K.SUB, f, g)

    def mul(self, f: int, g: int) -> int:
        return self._apply("mul", K.MUL, f, g)

    def max(self, f: int, g: int) -> int:
        return self._apply("max", K.MAX, f, g)

    def affine(self, f: int, a: float, b: float = 0.0) -> int:
        """``a f + b``."""
        return self._apply1(("affine", a, b), K.AFFINE, f, a=a, b=b)

    def restrict(self, f: int, level: int, v: int) -> int:
        """``f`` with the variable at ``level`` set to ``v``."""
        return self._apply1("restrict", K.RESTRICT, f, level, v)

    def expectation(self, f: int, level: int, probs: Sequence[int]) -> int:
        """``Σ_v probs[v] · f|_{x_level = v}``: sum out one variable against diagrams of its
        conditional probabilities."""
        out = self.zero
        for v, p in enumerate(probs):
            if p != self.zero:
                out = self.fma(out, p, f, level, v)
        return out

    def fma(self, o: int, p: int, f: int, level: int, v: int) -> int:
        """``add(o, mul(p, restrict(f, level, v)))`` in one pass (no intermediate diagrams),
        the same leaves bit for bit; the three operations where a leaf meets NaN or 0 · inf."""
        self._S, _, r = KO.fma(self._S, self._cards, np.full(3 * 1024, -1, np.int64), int(o),
                              int(p), int(f), int(level), int(v), self._kmax)
        if r == K.FALLBACK:
            return self.add(o, self.mul(p, self.restrict(f, level, v)))
        return self._check(r)

    def max_out(self, f: int, level: int) -> int:
        """``max_v f|_{x_level = v}``, by pairs (a max is exact, so any order gives the same
        function: the same id): log2(k) rounds, not k - 1 passes over a growing result."""
        parts = [self.restrict(f, level, v) for v in range(self.cards[level])]
        while len(parts) > 1:
            parts = [self.max(parts[i], parts[i + 1]) if i + 1 < len(parts) else parts[i]
                     for i in range(0, len(parts), 2)]
        return parts[0]

    def relabel(self, f: int, mapping: dict[int, int]) -> int:
        """``f`` with variable levels renamed (the mapping must keep their order)."""
        missing = set(self.support(f)) - set(mapping)
        if missing:
            raise SolverError(f"relabel: level {min(missing)} of the diagram has no new level")
        relab = np.full(len(self.cards), -1, np.int64)
        for a, b in mapping.items():
            relab[int(a)] = int(b)
        return self._apply1(None, K.RELABEL, f, relab=relab)

    def map_leaves(self, f: int, leaves: Sequence[int], values: Sequence[float]) -> int:
        """``f`` with its constant ``leaves[j]`` replaced by ``values[j]`` (``leaves`` must
        hold every leaf of f, e.g. :meth:`leaves`), e.g. to round the leaves."""
        lid = _ids(leaves)
        lval = np.ascontiguousarray(np.asarray(values, np.float64).reshape(-1))
        order = np.argsort(lid, kind="stable")
        lid, lval = np.ascontiguousarray(lid[order]), np.ascontiguousarray(lval[order])
        missing = np.setdiff1d(self.leaves(f), lid)
        if missing.size or lid.size != lval.size:
            raise SolverError(f"map_leaves: leaf {int(missing[0]) if missing.size else '?'} "
                              f"of diagram {f} has no new value ({lid.size} leaves, "
                              f"{lval.size} values)")
        return self._apply1(None, K.LEAFMAP, f, lid=lid, lval=lval)

    def clear(self) -> None:
        self.memo.clear()

    # ------------------------------------------------------------------ reading
    def _reach(self, roots: Sequence[int]) -> np.ndarray:
        return K.reachable(self._S, self._cards, _ids(roots))

    def reachable(self, roots: Sequence[int]) -> list[int]:
        """Nodes below ``roots`` (each once), children before parents."""
        return self._reach(roots).tolist()

    def leaves(self, f: int) -> np.ndarray:
        """The constants below ``f`` (ids, increasing); their values are ``val[ids]``."""
        order = self._reach([f])
        return np.sort(order[self._S[0][order] == TERM])

    def leaf_range(self, f: int) -> tuple[float, float]:
        order = self._reach([f])
        vals = self._S[2][order[self._S[0][order] == TERM]]
        return float(vals.min()), float(vals.max())

    def support(self, f: int) -> list[int]:
        levs = self._S[0][self._reach([f])]
        return np.unique(levs[levs != TERM]).astype(int).tolist()

    def size(self, f: int) -> int:
        return int(self._reach([f]).size)

    def transfer(self, roots: Sequence[int], other: "Diagrams") -> list[int]:
        """Copy the diagrams ``roots`` into ``other`` (compaction); their ids there."""
        other._S, r, ids = K.transfer(self._S, self._cards, _ids(roots), other._S)
        other._check(int(r))
        return ids.tolist()

    def evaluate(self, f: int, E: np.ndarray, column: np.ndarray) -> np.ndarray:
        """Value of ``f`` at every row of ``E``; the variable at level l is ``E[:, column[l]]``."""
        E = np.ascontiguousarray(E, np.int64)
        if E.ndim != 2:
            E = E.reshape(E.shape[0], -1)
        return K.evaluate(self._S, self._cards, int(f), E, np.ascontiguousarray(column, np.int64))


@contextmanager
def deep_recursion(levels: int) -> Iterator[None]:
    """Room on the interpreter's stack for recursions as deep as the diagrams (2 frames a
    level: :meth:`Diagrams.split`), restored afterwards."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 4 * int(levels) + 2000))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)
