"""The tabular world model fitted from a dask collection: its sufficient statistics counted per
partition and merged by tree reductions (:mod:`spmn.learn.distributed`), the same model as the
in-memory :meth:`WorldModel.fit` of the same rows (same region tree, equal count tables).

Passes over the data (each one :func:`~spmn.learn.distributed.reduce_partitions`):

1. ``scan``: rows, the largest code of every column (the cards), the distinct rewards with
   their counts (reward classes: exact values, or numpy's quantiles read from the counts), the
   distinct (state, action) rows and the distinct episode ends (coverage, terminal states);
2. one per refinement round of :func:`spmn.learn.regions.learn_regions`: per candidate region
   and state variable, the value counts and the contingency counts (action, value, (next
   region or end, reward class)) that its stratified G-test reads; the split rule is the
   in-memory one replayed on counts (:func:`grow_regions`), so the tree is the same;
3. ``tables``: the template's count tables of :func:`spmn.worldmodels.tabular.model._count_tables`.

:func:`node_contingency` is the generic per-partition piece (counts of (node, column, value,
target) for rows routed to tree nodes) that any tree grown by split tests can call.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.special import chdtrc

from ..._progress import progress_bar
from ...errors import DataError
from ...learn.distributed import (
    DistinctRows,
    Partitions,
    count_keys,
    distinct_pairs,
    quantiles_from_counts,
    reduce_partitions,
)
from ...learn.regions import TERMINAL, RegionTree, _g_test
from ...schema import Variable
from ..columns import name as name_of
from ..columns import read_transitions
from . import coverage

__all__ = [
    "MAX_REWARD_CLASSES",
    "contingency_tables",
    "fit_partitions",
    "grow_regions",
    "node_contingency",
]

#: As :func:`spmn.learn.regions.reward_classes`: exact values up to this many, else quantiles.
MAX_REWARD_CLASSES = 16


# ---------------------------------------------------------------------------- per partition
def _read(cols: dict[str, np.ndarray], i: int, spec: tuple):
    states, actions, reward, terminated = spec
    try:
        return read_transitions(cols, states, actions, reward, terminated)
    except DataError as exc:
        raise DataError(f"partition {i}: {exc}") from None


def _scan(cols, i, spec) -> dict[str, Any]:
    S, A, r, Sn, term = _read(cols, i, spec)
    d, m = S.shape[1], A.shape[1]
    smax = np.maximum(S.max(axis=0), Sn.max(axis=0)) if S.shape[0] else np.full(d, -1)
    amax = A.max(axis=0) if A.shape[0] else np.full(m, -1)
    vals, cnt = np.unique(r, return_counts=True)
    return {"n": np.int64(S.shape[0]), "smax": ("max", smax.astype(np.int64)),
            "amax": ("max", amax.astype(np.int64)),
            "rewards": ("pairs", (np.stack([vals, np.zeros_like(vals)]), cnt.astype(np.int64))),
            "sa": DistinctRows.of(np.concatenate([S, A], axis=1)),
            "ends": DistinctRows.of(Sn[term])}


def _classes(r: np.ndarray, rc: tuple[str, np.ndarray]) -> np.ndarray:
    kind, edges = rc
    if kind == "values":
        return np.searchsorted(edges, r)
    return np.searchsorted(edges, r, side="right")


def node_contingency(node: np.ndarray, X: np.ndarray, cands: np.ndarray, kmax: int,
                     y: np.ndarray | None = None, ny: int = 1,
                     strata: np.ndarray | None = None, n_strata: int = 1) -> dict[str, Any]:
    """Per candidate node, column and value: counts over the rows at that node.

    ``node``: tree node of each row; ``X``: (rows, columns) integer codes < ``kmax``;
    ``cands``: candidate node ids (sorted; position ``c`` in the output). Returns ``marg``
    (dense (cands, columns, kmax) counts of each value) and, with a target ``y`` (codes <
    ``ny``), ``joint``: :class:`KeyCounts` of ``((c * columns + j) * n_strata + stratum) *
    kmax + x) * ny + y``. Mergeable across partitions (:func:`merge_stats`)."""
    cands = np.asarray(cands, np.int64)
    n_c, p = cands.size, X.shape[1]
    pos = np.searchsorted(cands, node)
    at = (pos < n_c) & (cands[np.minimum(pos, max(n_c - 1, 0))] == node) if n_c else \
        np.zeros(node.shape[0], bool)
    c = pos[at]
    Xc = X[at].astype(np.int64)
    base = c[:, None] * p + np.arange(p)[None, :]
    marg = np.bincount((base * kmax + Xc).ravel(), minlength=n_c * p * kmax)
    out: dict[str, Any] = {"marg": marg.reshape(n_c, p, kmax).astype(np.int64)}
    if y is not None:
        s = np.zeros(c.size, np.int64) if strata is None else strata[at].astype(np.int64)
        key = ((base * n_strata + s[:, None]) * kmax + Xc) * ny + y[at][:, None]
        out["joint"] = count_keys(key, n_c * p * n_strata * kmax * ny)
    return out


def contingency_tables(stats: dict[str, Any], n_cands: int, n_columns: int, kmax: int,
                       ny: int) -> np.ndarray:
    """The merged ``joint`` of :func:`node_contingency` (one stratum) as dense float64 tables
    ``T[c, j, x, y]``: per candidate node ``c`` and column ``j`` the (value, target) counts
    that a split test reads (the raw tables of the factored learner's ``_node_tables``)."""
    size = n_cands * n_columns * kmax * ny
    return stats["joint"].dense(size).astype(np.float64).reshape(n_cands, n_columns, kmax, ny)


def _round(cols, i, spec, tree_arrays, cands, rc, nr, n_actions, acards, learn) -> dict:
    S, A, r, Sn, term = _read(cols, i, spec)
    tree = RegionTree.from_arrays(tree_arrays)
    node = _leaf_node(tree, S)
    kmax = int(tree.cards.max())
    if not learn:
        return node_contingency(node, S, cands, kmax)
    a = np.ravel_multi_index(A.T, acards) if A.shape[1] else np.zeros(S.shape[0], np.int64)
    outcome = np.where(term, TERMINAL, tree.route(Sn))
    y = (outcome + 1) * nr + _classes(r, rc)
    return node_contingency(node, S, cands, kmax, y, (tree.n_regions + 1) * nr, a, n_actions)


def _leaf_node(tree: RegionTree, S: np.ndarray) -> np.ndarray:
    """The tree node (not the region id) each row of ``S`` ends in."""
    node = np.zeros(S.shape[0], np.int64)
    while True:
        v = tree.var[node]
        inner = v >= 0
        if not inner.any():
            return node
        idx = np.flatnonzero(inner)
        node[idx] = tree.child[node[idx], S[idx, v[idx]]]


def _tables(cols, i, spec, tree_arrays, end_rows, n_actions, acards) -> dict[str, Any]:
    S, A, r, Sn, term = _read(cols, i, spec)
    tree = RegionTree.from_arrays(tree_arrays)
    K, d, kmax = tree.n_regions, S.shape[1], int(tree.cards.max())
    n_out = K + end_rows.shape[0]
    a = np.ravel_multi_index(A.T, acards) if A.shape[1] else np.zeros(S.shape[0], np.int64)
    k_of = tree.route(S)
    o = tree.route(Sn)
    if term.any():
        o[term] = K + coverage.find(end_rows, Sn[term])
    key = (k_of * n_actions + a) * n_out + o
    trans = np.bincount(key, minlength=K * n_actions * n_out)
    pairs = distinct_pairs(np.stack([key, r]))
    nxt = np.bincount(((o[:, None] * d + np.arange(d)) * kmax + Sn).ravel(),
                      minlength=n_out * d * kmax)
    nodes = len(tree.var)
    state = np.zeros(nodes * d * kmax, np.int64)
    node = np.zeros(S.shape[0], np.int64)
    idx = np.arange(S.shape[0])
    while idx.size:
        nd = node[idx]
        state += np.bincount(((nd[:, None] * d + np.arange(d)) * kmax + S[idx]).ravel(),
                             minlength=nodes * d * kmax)
        v = tree.var[nd]
        inner = v >= 0
        idx = idx[inner]
        node[idx] = tree.child[nd[inner], S[idx, v[inner]]]
    return {"trans": trans.astype(np.int64), "pairs": ("pairs", pairs),
            "next": nxt.astype(np.int64), "state": state}


# ---------------------------------------------------------------------------- the driver
def _g_from_counts(keys: np.ndarray, counts: np.ndarray, lo: int, n_actions: int, kmax: int,
                   ny: int) -> tuple[float, int]:
    """:func:`spmn.learn.regions._g_test` from the contingency counts of one (node, column)
    (keys in ``[lo, lo + n_actions * kmax * ny)``): the same matrices, the same operations."""
    rel = keys - lo
    a, rest = np.divmod(rel, kmax * ny)
    x, y = np.divmod(rest, ny)
    return _g_test(x, y, a, counts)


def grow_regions(stats_of_round: Callable[[RegionTree, np.ndarray], dict[str, Any]], n: int,
                 d: int, cards: np.ndarray, n_actions: int, ny_of: Callable[[int], int], *,
                 structure: str = "learn", split_p: float = 1e-3, min_samples_split: int = 20,
                 max_regions: int | None = None, progress=None) -> RegionTree:
    """:func:`spmn.learn.regions.learn_regions` on counts: ``stats_of_round(tree, cands)``
    gives :func:`node_contingency`'s statistics of the candidate leaves (one pass over the
    data); the rule, the order of the leaves and the ties are those of the in-memory learner."""
    if structure not in ("learn", "full"):
        raise DataError(f"structure must be 'learn' or 'full', got {structure!r}")
    kmax = int(cards.max())
    var = [-1]
    child: list[np.ndarray] = [np.full(kmax, -1, np.int64)]
    leaf_size = {0: n}  # leaf node -> rows, in the in-memory learner's dict order
    frozen: set[int] = set()

    def as_tree() -> RegionTree:
        region = np.full(len(var), -1, np.int64)
        for r, nd in enumerate(sorted(leaf_size)):
            region[nd] = r
        return RegionTree(np.array(var, np.int64), np.array(child, np.int64), region, cards)

    learn = structure == "learn"
    while True:
        tree = as_tree()
        cands = np.array(sorted(nd for nd, size in leaf_size.items() if nd not in frozen and
                                not (size < 2 * min_samples_split and learn)), np.int64)
        if not cands.size:
            break
        st = stats_of_round(tree, cands)
        marg, joint = st["marg"], st.get("joint")
        ny = ny_of(tree.n_regions)
        splits = []
        for nd, size in leaf_size.items():
            if nd in frozen or (size < 2 * min_samples_split and learn):
                continue
            c = int(np.searchsorted(cands, nd))
            best, splittable = None, False
            for j in range(d):
                if np.count_nonzero(marg[c, j]) < 2:
                    continue
                splittable = True
                if not learn:
                    best = (0.0, 0.0, j)
                    break
                lo = (c * d + j) * n_actions * kmax * ny
                keys, cnt = joint.between(lo, lo + n_actions * kmax * ny)
                G, df = _g_from_counts(keys, cnt, lo, n_actions, kmax, ny)
                if df == 0:
                    continue
                p = float(chdtrc(df, G))
                key = (p, -G / df, j)
                if p < split_p and (best is None or key < best):
                    best = key
            if not splittable:
                frozen.add(nd)
            elif best is not None:
                splits.append((nd, c, best[2]))
        if not splits:
            break
        if max_regions is not None and max_regions - len(leaf_size) <= 0:
            break
        for nd, c, j in splits:
            size = leaf_size.pop(nd)
            vals = np.flatnonzero(marg[c, j])
            counts = marg[c, j, vals]
            if max_regions is not None and len(leaf_size) + len(vals) > max_regions:
                leaf_size[nd] = size
                frozen.add(nd)
                continue
            var[nd] = j
            most = int(vals[np.argmax(counts)])
            kids = {}
            for v, cv in zip(vals.tolist(), counts.tolist()):
                m = len(var)
                var.append(-1)
                child.append(np.full(kmax, -1, np.int64))
                kids[v] = m
                leaf_size[m] = int(cv)
            child[nd][:] = kids[most]
            for v, m in kids.items():
                child[nd][v] = m
        if progress is not None:
            progress(len(leaf_size))
    return as_tree()


def reward_code(vals: np.ndarray, counts: np.ndarray) -> tuple[tuple[str, np.ndarray], int]:
    """Reward classes of :func:`spmn.learn.regions.reward_classes` from the distinct rewards
    and their counts: ``((kind, table), number of classes)``."""
    if vals.size <= MAX_REWARD_CLASSES:
        return ("values", vals), int(vals.size)
    edges = quantiles_from_counts(vals, counts,
                                  np.linspace(0, 1, MAX_REWARD_CLASSES + 1)[1:-1])
    return ("edges", edges), int(np.searchsorted(edges, vals[-1], side="right")) + 1


def fit_partitions(model: Any, data: Any, *, client: Any = None, columns: Sequence[str] | None
                   = None, split_every: int = 8) -> Any:
    """Fit ``model`` (a :class:`~spmn.worldmodels.tabular.model.WorldModel`) from a dask
    collection of transitions: the attributes the in-memory fit sets, from counts."""
    parts = Partitions(data, columns)
    spec = (tuple(model.states), tuple(model.actions), model.reward, model.terminated)

    def run(fn, *args):
        return reduce_partitions(parts, fn, spec, *args, client=client, split_every=split_every)

    scan = run(_scan)
    n = int(scan["n"])
    if n == 0:
        raise DataError("no transitions to learn from (every partition is empty)")
    out: dict[str, Any] = {}
    out["state_names_"] = [name_of(v) for v in model.states]
    out["action_names_"] = [name_of(v) for v in model.actions]
    given = {name_of(v): v.k for v in (*model.states, *model.actions) if isinstance(v, Variable)}
    smax, amax = scan["smax"][1], scan["amax"][1]
    out["state_cards_"] = np.array([given.get(nm) or int(smax[j]) + 1
                                   for j, nm in enumerate(out["state_names_"])], np.int64)
    out["action_cards_"] = np.array([given.get(nm) or int(amax[j]) + 1
                                    for j, nm in enumerate(out["action_names_"])], np.int64)
    acards = out["action_cards_"]
    n_actions = int(np.prod(acards))
    d = len(out["state_names_"])
    rvals, rcnt = scan["rewards"][1]
    rc, nr = reward_code(rvals[0], rcnt)
    learn = model.structure == "learn"

    def stats_of_round(tree: RegionTree, cands: np.ndarray) -> dict[str, Any]:
        return run(_round, tree.to_arrays(), cands, rc, nr, n_actions, acards, learn)

    with progress_bar(model.progress and n > 20000, desc="refining regions",
                      unit="round") as bar:
        tree = grow_regions(stats_of_round, n, d, out["state_cards_"], n_actions,
                            lambda K: (K + 1) * nr, structure=model.structure,
                            split_p=model.split_p, min_samples_split=model.min_samples_split,
                            max_regions=model.max_regions,
                            progress=lambda k: (bar.set_postfix(regions=k, refresh=False),
                                                bar.update(1)))
    out["tree_"] = tree
    sa = scan["sa"]
    S_sa = sa.rows[:, :d]
    a_sa = np.ravel_multi_index(sa.rows[:, d:].T, acards) if sa.rows.shape[1] > d else \
        np.zeros(sa.rows.shape[0], np.int64)
    keys = coverage._rows(S_sa)
    _, first, inv = np.unique(keys, return_index=True, return_inverse=True)
    seen_counts = np.zeros((first.size, n_actions), np.int64)
    np.add.at(seen_counts, (inv.ravel(), a_sa), sa.counts)
    out["seen_states_"], out["seen_counts_"] = S_sa[first], seen_counts
    ends = scan["ends"].rows
    ends, _ = coverage.state_action_counts(ends, np.zeros(ends.shape[0], np.int64), 1)
    out["terminal_states_"] = ends[coverage.find(out["seen_states_"], ends) < 0]
    end_rows = np.unique(ends.reshape(-1, d), axis=0)  # lexicographic, as the in-memory fit
    tab = run(_tables, tree.to_arrays(), end_rows, n_actions, acards)
    K, n_out, kmax = tree.n_regions, tree.n_regions + end_rows.shape[0], int(tree.cards.max())
    pair, rcount = tab["pairs"][1]
    out["tables_"] = {"trans": tab["trans"].reshape(K, n_actions, n_out).astype(np.float64),
                     "reward_key": pair[0].astype(np.int64), "reward_value": pair[1],
                     "reward_count": rcount.astype(np.float64),
                     "next": tab["next"].reshape(n_out, d, kmax).astype(np.float64),
                     "state": tab["state"].reshape(len(tree.var), d, kmax).astype(np.float64)}
    out["n_transitions_"] = n
    vars(model).update(out)  # all at once: a failed pass leaves no half-fitted model
    model._build()
    return model
