"""Numba core of the algebraic decision diagrams of the structured solver: the node store, its
tables and the reading passes; the operations are in :mod:`._numba_add_ops`
(:class:`spmn.worldmodels.factored.add.Diagrams` wraps both; the pure-Python twin they are
tested against is :mod:`spmn.worldmodels.factored.add_reference`).

Flat arrays only. A store is the tuple ``S = (lev, info, val, pool, tab, meta)``:

- ``lev``  int32 (cap,): node i's level; ``TERM`` for a constant (read by the callers only)
- ``info`` int64 (cap,): ``off << 31 | level``, where node i's kids start in ``pool``
  (``cards[level]`` of them) and its level: one load reads both
- ``val``  float64 (cap,): a constant's value (0.0 for inner nodes)
- ``pool`` int32 (pcap,): the kids of every inner node, back to back
- ``tab``  int64 (2^k,): the unique table, open addressing, ``fingerprint << 32 | id`` (-1
  empty), keyed on (level, kids) for inner nodes and on the value for constants: a probe
  reads a node only when the 31-bit fingerprint of its hash matches
- ``meta`` int64 (4,): [nodes, pool used, max_nodes (-1: none), table entries]

A memo is ``M = (mem int64 (2 · 2^k,), count int64 (1,))``, open addressing, slot s holding
key ``mem[2s]`` (-1 empty) and result ``mem[2s + 1]`` side by side. Every array doubles when
full (the tables at half load), inside the kernels, which return the (possibly new) tuples.
Recursion is an explicit stack (depth <= the number of levels + 1). A kernel's result below 0
is an error: ``MAX_NODES`` (a new inner node would be number ``max_nodes``) or ``NAN`` (a NaN
leaf); the store stays consistent either way.

The arithmetic is the reference's, operation for operation (``a + b``, ``a - b``, ``a * b``,
``b if b > a else a``, ``a * v + b``), with the same shortcuts at the same places, and nodes
are made in the reference's order, so leaves and node ids agree with it bit for bit.
"""
from __future__ import annotations

import glob
import hashlib
import math
import os

import numpy as np
from numba import njit

_opts = {"cache": True, "nogil": True}

#: Level of terminal nodes (below every variable).
TERM = 1 << 30
#: Error results.
MAX_NODES = -1
NAN = -2
#: A stack machine's request for room (internal).
NEED_NODES = -10
NEED_MEMO = -11
#: :func:`fma`'s answer where the composed operations must decide (a NaN or 0 · inf leaf).
FALLBACK = -12
#: Binary operations.
ADD, SUB, MUL, MAX = 0, 1, 2, 3
#: Unary operations.
RESTRICT, AFFINE, RELABEL, LEAFMAP = 0, 1, 2, 3
_LMASK = (1 << 31) - 1

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_M3 = np.uint64(0x94D049BB133111EB)


def new_store(n_cap: int = 1024, max_nodes: int = -1) -> tuple:
    """An empty store (no constants yet)."""
    t = 1
    while t < 2 * n_cap:
        t *= 2
    return (np.empty(n_cap, np.int32), np.empty(n_cap, np.int64), np.empty(n_cap, np.float64),
            np.empty(2 * n_cap, np.int32), np.full(t, -1, np.int64),
            np.array([0, 0, max_nodes, 0], np.int64))


def new_memo(cap: int = 1024) -> tuple:
    return np.full(2 * cap, -1, np.int64), np.zeros(1, np.int64)


# ---------------------------------------------------------------------- hashing
@njit(inline="always", **_opts)
def _mix(h):
    h = (h ^ (h >> np.uint64(30))) * _M2
    h = (h ^ (h >> np.uint64(27))) * _M3
    return h ^ (h >> np.uint64(31))


@njit(inline="always", **_opts)
def _hash_val(v):
    if v == math.inf:
        return _mix(np.uint64(1))
    if v == -math.inf:
        return _mix(np.uint64(2))
    m, e = math.frexp(v)
    return _mix(np.uint64(np.int64(m * 9007199254740992.0) & 0x3FFFFFFFFFFFFFFF)
                ^ (np.uint64(e + 2048) << np.uint64(52)))


@njit(inline="always", **_opts)
def _hash_kids(level, buf, b0, k):
    h = np.uint64(level) * _M1
    for i in range(k):
        h = _mix(h ^ np.uint64(buf[b0 + i]))
    return h


@njit(inline="always", **_opts)
def _fp(h):
    """The slot entry's fingerprint bits of hash h (31 bits, so entries stay >= 0)."""
    return np.int64(h >> np.uint64(33)) << 32


@njit(**_opts)
def _rehash(lev, info, val, pool, meta, cards, size):
    tab = np.full(size, -1, np.int64)
    mask = size - 1
    for i in range(meta[0]):
        li = lev[i]
        if li == TERM:
            h = _hash_val(val[i])
        else:
            h = _hash_kids(li, pool, info[i] >> 31, cards[li])
        s = np.int64(h & np.uint64(mask))
        while tab[s] >= 0:
            s = (s + 1) & mask
        tab[s] = _fp(h) | i
    return tab


@njit(inline="always", **_opts)
def _room(S, kmax):
    """Whether one more node (of up to kmax kids) fits without growing anything."""
    meta = S[5]
    return meta[0] < S[0].size and meta[1] + kmax <= S[3].size and 2 * (meta[3] + 1) <= S[4].size


@njit(**_opts)
def _grow(S, cards, nodes, kids):
    """S with room for ``nodes`` more nodes holding ``kids`` kids in all: the arrays doubled
    as often as needed (the table rehashed)."""
    lev, info, val, pool, tab, meta = S
    n = meta[0]
    if n + nodes > lev.size:
        cap = 2 * lev.size
        while cap < n + nodes:
            cap *= 2
        lev2 = np.empty(cap, np.int32)
        lev2[:n] = lev[:n]
        info2 = np.empty(cap, np.int64)
        info2[:n] = info[:n]
        val2 = np.empty(cap, np.float64)
        val2[:n] = val[:n]
        lev, info, val = lev2, info2, val2
    if meta[1] + kids > pool.size:
        cap = 2 * pool.size
        while cap < meta[1] + kids:
            cap *= 2
        pool2 = np.empty(cap, np.int32)
        pool2[:meta[1]] = pool[:meta[1]]
        pool = pool2
    if 2 * (meta[3] + nodes) > tab.size:
        size = 2 * tab.size
        while size < 2 * (meta[3] + nodes):
            size *= 2
        tab = _rehash(lev, info, val, pool, meta, cards, size)
    return (lev, info, val, pool, tab, meta)


# ---------------------------------------------------------------------- nodes
@njit(inline="always", **_opts)
def _const(S, v):
    """Id of the constant v (not NaN, not -0.0), added if new; needs ``_room``."""
    lev, info, val, _, tab, meta = S
    mask = tab.size - 1
    h = _hash_val(v)
    fp = _fp(h)
    s = np.int64(h & np.uint64(mask))
    while True:
        e = tab[s]
        if e < 0:
            break
        if (e & ~0xFFFFFFFF) == fp:
            i = e & 0xFFFFFFFF
            if lev[i] == TERM and val[i] == v:
                return np.int64(i)
        s = (s + 1) & mask
    n = meta[0]
    lev[n] = TERM
    info[n] = TERM
    val[n] = v
    tab[s] = fp | n
    meta[0] = n + 1
    meta[3] += 1
    return np.int64(n)


@njit(inline="always", **_opts)
def _node(S, cards, level, buf, b0):
    """Id of (level, buf[b0 : b0 + cards[level]]): its one kid when all are equal, else the
    unique node, added if new (MAX_NODES when that would pass max_nodes); needs ``_room``."""
    k = cards[level]
    k0 = buf[b0]
    same = True
    for i in range(1, k):
        if buf[b0 + i] != k0:
            same = False
            break
    if same:
        return np.int64(k0)
    lev, info, val, pool, tab, meta = S
    mask = tab.size - 1
    h = _hash_kids(level, buf, b0, k)
    fp = _fp(h)
    s = np.int64(h & np.uint64(mask))
    while True:
        e = tab[s]
        if e < 0:
            break
        if (e & ~0xFFFFFFFF) == fp:
            i = e & 0xFFFFFFFF
            inf = info[i]
            if (inf & _LMASK) == level:
                o = inf >> 31
                eq = True
                for j in range(k):
                    if pool[o + j] != buf[b0 + j]:
                        eq = False
                        break
                if eq:
                    return np.int64(i)
        s = (s + 1) & mask
    n = meta[0]
    if meta[2] >= 0 and n >= meta[2]:
        return np.int64(MAX_NODES)
    p = meta[1]
    for j in range(k):
        pool[p + j] = buf[b0 + j]
    lev[n] = level
    info[n] = (p << 31) | level
    val[n] = 0.0
    tab[s] = fp | n
    meta[0] = n + 1
    meta[1] = p + k
    meta[3] += 1
    return np.int64(n)


@njit(inline="always", **_opts)
def _leaf(S, cards, kmax, v):
    """(S, id of the constant v) with -0.0 -> 0.0; NAN for a NaN."""
    v = v + 0.0
    if v != v:
        return S, np.int64(NAN)
    if not _room(S, kmax):
        S = _grow(S, cards, 1, kmax)
    return S, _const(S, v)


@njit(**_opts)
def const(S, cards, v):
    """(S, the id of the constant v) with -0.0 -> 0.0; NAN for a NaN."""
    return _leaf(S, cards, 1, v)


@njit(**_opts)
def node(S, cards, level, buf, b0):
    """(S, the id of the node (level, buf[b0 : b0 + cards[level]])), reduced and unique."""
    if not _room(S, cards[level]):
        S = _grow(S, cards, 1, cards[level])
    return S, _node(S, cards, level, buf, b0)


@njit(**_opts)
def const_in_place(lev, info, val, pool, tab, meta, v):
    """:func:`const` without growing (one call from Python costs a quarter of one passing
    the store as a tuple): the id, NAN, or NEED_NODES when the arrays are full."""
    S = (lev, info, val, pool, tab, meta)
    v = v + 0.0
    if v != v:
        return np.int64(NAN)
    if not _room(S, 1):
        return np.int64(NEED_NODES)
    return _const(S, v)


@njit(**_opts)
def node_in_place(lev, info, val, pool, tab, meta, cards, level, kids):
    """:func:`node` without growing: the id, MAX_NODES, or NEED_NODES when the arrays are full."""
    S = (lev, info, val, pool, tab, meta)
    if not _room(S, cards[level]):
        return np.int64(NEED_NODES)
    return _node(S, cards, level, kids, 0)


# ---------------------------------------------------------------------- memo tables
@njit(inline="always", **_opts)
def _get(mem, key):
    mask = (mem.size >> 1) - 1
    s = np.int64(_mix(np.uint64(key)) & np.uint64(mask))
    while True:
        k = mem[2 * s]
        if k == key:
            return mem[2 * s + 1]
        if k < 0:
            return np.int64(-1)
        s = (s + 1) & mask


@njit(**_opts)
def _memo_grow(mem):
    size = mem.size  # slots after doubling
    m2 = np.full(2 * size, -1, np.int64)
    for s in range(mem.size >> 1):
        k = mem[2 * s]
        if k >= 0:
            t = np.int64(_mix(np.uint64(k)) & np.uint64(size - 1))
            while m2[2 * t] >= 0:
                t = (t + 1) & (size - 1)
            m2[2 * t] = k
            m2[2 * t + 1] = mem[2 * s + 1]
    return m2


@njit(inline="always", **_opts)
def _put(mem, cnt, key, r):
    """key -> r (the caller keeps the table under half load)."""
    mask = (mem.size >> 1) - 1
    s = np.int64(_mix(np.uint64(key)) & np.uint64(mask))
    while True:
        k = mem[2 * s]
        if k < 0:
            cnt[0] += 1
            break
        if k == key:
            break
        s = (s + 1) & mask
    mem[2 * s] = key
    mem[2 * s + 1] = r


@njit(**_opts)
def from_dense(S, cards, levels, T):
    """(S, the diagram of the C-ordered tensor ``T`` (flat) whose axis i is the variable at
    ``levels[i]`` (increasing)), reduced bottom-up one axis at a time."""
    S = _grow(S, cards, 2 * T.size + 1, 2 * T.size + 1)  # room for every node it can make
    ids = np.empty(T.size, np.int64)
    for j in range(T.size):
        x = T[j] + 0.0
        if x != x:
            return S, np.int64(NAN)
        ids[j] = _const(S, x)
    m = T.size
    for ax in range(levels.size - 1, -1, -1):
        lv = levels[ax]
        k = cards[lv]
        m //= k
        for j in range(m):
            r = _node(S, cards, lv, ids, j * k)
            if r < 0:
                return S, r
            ids[j] = r
    return S, ids[0]


# ---------------------------------------------------------------------- reading
@njit(**_opts)
def reachable(S, cards, roots):
    """Nodes below ``roots`` (each once), children before parents, in the order of the
    reference's depth-first walk."""
    _, info, _, pool, _, meta = S
    seen = np.zeros(meta[0], np.uint8)
    order = np.empty(16, np.int64)
    no = 0
    stack = np.empty(max(16, 2 * roots.size), np.int64)  # 2 f + (1: done)
    sp = 0
    for j in range(roots.size):
        stack[sp] = 2 * roots[j]
        sp += 1
    while sp > 0:
        sp -= 1
        e = stack[sp]
        f = e >> 1
        if e & 1:
            if no == order.size:
                o2 = np.empty(2 * no, np.int64)
                o2[:no] = order
                order = o2
            order[no] = f
            no += 1
            continue
        if seen[f]:
            continue
        seen[f] = 1
        inf = info[f]
        k = 0 if inf == TERM else cards[inf & _LMASK]
        if sp + 1 + k > stack.size:
            s2 = np.empty(2 * (sp + 1 + k), np.int64)
            s2[:sp] = stack[:sp]
            stack = s2
        stack[sp] = 2 * f + 1
        sp += 1
        o = inf >> 31
        for i in range(k):
            c = pool[o + i]
            if not seen[c]:
                stack[sp] = 2 * np.int64(c)
                sp += 1
    return order[:no]


@njit(**_opts)
def evaluate(S, cards, f, E, column):
    """Value of ``f`` at every row of ``E``; the variable at level l is ``E[:, column[l]]``."""
    _, info, val, pool, _, _ = S
    out = np.empty(E.shape[0], np.float64)
    for r in range(E.shape[0]):
        x = f
        while info[x] != TERM:
            lx = info[x] & _LMASK
            c = E[r, column[lx]]
            if c < 0 or c >= cards[lx]:
                raise IndexError("a code outside its variable's values")
            x = pool[(info[x] >> 31) + c]
        out[r] = val[x]
    return out


@njit(**_opts)
def transfer(S, cards, roots, D):
    """(D, 0, the ids in ``D`` of the diagrams ``roots`` of ``S``), or (D, error, []). A kid's
    id is below its parent's, so one sweep down the ids marks what is reachable and one sweep
    up copies it, children first (sequential reads, no stack)."""
    _, info, val, pool, _, meta = S
    n = meta[0]
    keep = np.zeros(n, np.uint8)
    for j in range(roots.size):
        keep[roots[j]] = 1
    nodes = 0
    kids = 0
    for f in range(n - 1, -1, -1):
        if keep[f]:
            nodes += 1
            inf = info[f]
            if inf != TERM:
                k = cards[inf & _LMASK]
                kids += k
                o = inf >> 31
                for i in range(k):
                    keep[pool[o + i]] = 1
    D = _grow(D, cards, nodes, kids)
    new = np.full(n, -1, np.int64)
    kmax = 1
    for c in cards:
        kmax = max(kmax, c)
    buf = np.empty(kmax, np.int64)
    for f in range(n):
        if not keep[f]:
            continue
        inf = info[f]
        if inf == TERM:
            r = _const(D, val[f])
        else:
            o = inf >> 31
            for i in range(cards[inf & _LMASK]):
                buf[i] = new[pool[o + i]]
            r = _node(D, cards, inf & _LMASK, buf, 0)
        if r < 0:
            return D, r, np.empty(0, np.int64)
        new[f] = r
    out = np.empty(roots.size, np.int64)
    for j in range(roots.size):
        out[j] = new[roots[j]]
    return D, np.int64(0), out


def _drop_stale_cache() -> None:
    """Numba keys a cached kernel on its own source file only, but :mod:`._numba_add_ops`
    inlines this file's code: when either file changed since the cache was written, drop the
    cached kernels of both (a stamp beside Numba's cache files, in the user cache folder of
    :mod:`spmn._cache`, never in the package folder), so that none runs stale code."""
    here = os.path.dirname(os.path.abspath(__file__))
    digest = hashlib.sha256()
    for name in ("_numba_add.py", "_numba_add_ops.py"):
        try:
            with open(os.path.join(here, name), "rb") as fh:
                digest.update(fh.read())
        except OSError:  # pragma: no cover - an installation without sources
            return
    try:
        path = os.path.abspath(const._cache._cache_path)
    except AttributeError:  # pragma: no cover - numba internals changed: nothing to do
        return
    package = os.path.dirname(here)
    try:
        if os.path.commonpath([path, package]) == package:  # pragma: no cover
            return
    except ValueError:  # pragma: no cover - another drive (Windows)
        pass
    stamp = os.path.join(path, "spmn_numba_add.stamp")
    try:
        with open(stamp) as fh:
            if fh.read() == digest.hexdigest():
                return
    except OSError:
        pass
    try:
        for f in glob.glob(os.path.join(path, "_numba_add*.nb[ic]")):
            os.remove(f)
        os.makedirs(path, exist_ok=True)
        with open(stamp, "w") as fh:
            fh.write(digest.hexdigest())
    except OSError:  # pragma: no cover - read-only cache: numba checks its own files
        pass


_drop_stale_cache()
