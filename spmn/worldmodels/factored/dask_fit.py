"""The factored world model fitted from a dask collection: its sufficient statistics counted per
partition and merged by tree reductions (:mod:`spmn.learn.distributed`), the same model as the
in-memory :meth:`FactoredWorldModel.fit` of the same rows (same trees, equal leaf counts, the
same reward terms and values, bit for bit), whatever the partitioning.

Passes over the data (each one :func:`~spmn.learn.distributed.reduce_partitions`):

0. with ``groups=``: the largest code of every state column and the counts of rows where each
   boolean column, and each pair of them, is true (:func:`~.groups.true_counts`), from which
   the one-hot groups are found as in memory; every later pass reads the states grouped;
1. ``scan``: rows per partition (their global row indices, for the hold-out hash), the largest
   code of every column (the cards), the distinct joint actions, the distinct states in order
   of first occurrence, and the distinct (s, a, r) rows with their counts, which is all the
   additive reward reads (:class:`~.reward.RewardRows`);
2. with ``split_p=None``: one pass per level of the loose trees grown on the rows outside the
   hold-out, every target's frontier in the same pass (:func:`~.trees.grow_trees` fed by
   :func:`node_contingency` counts), then one pass scoring the held-out rows
   (:func:`~.trees.holdout_stats`: exact sums);
3. one pass per level of the final trees on every row. The leaf counts are the merged tables of
   the leaves' parents, so no pass follows the last level.

What travels: to the workers, the trees grown so far and their open nodes; back, sparse counts
of (node, column, value, y) for the open nodes only.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numba import njit

from ..._progress import progress_bar
from ...errors import DataError
from ...learn.distributed import (
    DistinctRows,
    FirstRows,
    KeyCounts,
    Partitions,
    reduce_partitions,
)
from ...schema import Variable
from ..columns import name as name_of
from ..tabular.counts import contingency_tables, node_contingency
from .groups import StateGroups, true_counts
from .reward import RewardRows, fit_reward_rows
from .trees import (
    ALPHA_GRID,
    MIN_HOLDOUT_ROWS,
    SMALL_DATA_ALPHA,
    ConditionalTree,
    Grower,
    choose_alpha,
    grow_trees,
    holdout_mask,
    holdout_stats,
    seed_key,
    small_codes,
)

__all__ = ["fit_partitions", "frontier_counts"]

#: Bits of a partition's local row index in the first-occurrence key of :class:`FirstRows`.
ROW_BITS = 40
#: Cells of dense frontier tables a partition may hold (else sparse keys are counted).
DENSE_CELLS = 1 << 22


# ---------------------------------------------------------------------------- per partition
def _read(model: Any, cols: dict[str, np.ndarray], i: int, groups: StateGroups | None = None):
    """The partition's (S, A, r, S', ended), its states in the model's layout."""
    try:
        S, A, r, Sn, term = model._read(cols)
        if groups is not None:
            S, Sn = groups.encode(S), groups.encode(Sn, "next-state")
    except DataError as exc:
        raise DataError(f"partition {i}: {exc}") from None
    return S, A, r, Sn, term


def _ones(cols, i, model, n_parts) -> dict[str, Any]:
    """What ``groups=`` needs: the largest code per state column and :func:`true_counts` of
    the current and next states stacked, as the in-memory fit stacks them."""
    S, _A, _r, Sn, _term = _read(model, cols, i)
    St = np.concatenate([S, Sn])
    ones, co = true_counts(St)
    smax = St.max(axis=0) if St.shape[0] else np.full(S.shape[1], -1)
    return {"n": np.int64(St.shape[0]), "ones": ones, "co": co,
            "smax": ("max", smax.astype(np.int64))}


def _scan(cols, i, model, n_parts, groups=None) -> dict[str, Any]:
    S, A, r, Sn, term = _read(model, cols, i, groups)
    n, d, m = S.shape[0], S.shape[1], A.shape[1]
    rows = np.zeros(n_parts, np.int64)
    rows[i] = n
    smax = np.maximum(S.max(axis=0), Sn.max(axis=0)) if n else np.full(d, -1)
    amax = A.max(axis=0) if n else np.full(m, -1)
    return {"rows": rows, "cont": np.int64((~term).sum()),
            "smax": ("max", smax.astype(np.int64)), "amax": ("max", amax.astype(np.int64)),
            "joint": DistinctRows.of(A),
            "seen": FirstRows.of(S, (np.int64(i) << ROW_BITS) + np.arange(n, dtype=np.int64)),
            "reward": RewardRows.stat(np.concatenate([S, A], axis=1), r)}


def _targets(S, A, Sn, term, ctx) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """(X, [(y, rows)] per target) of a partition, as the in-memory fit makes them."""
    X = small_codes(np.concatenate([S, A], axis=1), ctx["cards"])
    n = X.shape[0]
    cont = np.flatnonzero(~term) if ctx["some_cont"] else np.arange(n)
    targets = [(Sn[:, j], cont) for j in range(S.shape[1])]
    if ctx["end"]:
        targets.append((term.astype(np.int64), np.arange(n)))
    return X, targets


def _prepared(cols, i, model, ctx):
    S, A, _r, Sn, term = _read(model, cols, i, ctx["groups"])
    X, targets = _targets(S, A, Sn, term, ctx)
    index = ctx["offsets"][i] + np.arange(X.shape[0], dtype=np.int64)
    return X, targets, index


def _level(cols, i, model, ctx, trees, cands, train_only) -> dict[str, Any]:
    """Counts of (open node, column, value, y) of every tree (``cands[t]``: its open nodes;
    ``trees[t]``: its (var, child) so far, None when it has none open) over the partition's
    rows, as :func:`node_contingency` keys them."""
    X, targets, index = _prepared(cols, i, model, ctx)
    val = holdout_mask(ctx["key"], index) if train_only else None
    out: dict[str, Any] = {}
    for t, ((y, rows), arr, cand) in enumerate(zip(targets, trees, cands)):
        if arr is None:
            continue
        if val is not None:
            rows = rows[~val[rows]]
        out[f"t{t}"] = frontier_counts(X, y, rows, *arr, cand, ctx["kmax"], ctx["ks"][t])
    return out


@njit(cache=True, nogil=True)
def _count_frontier(X, y, rows, var, child, pos, T):
    """``T[pos[node], j, X[r, j], y[r]] += 1`` for every row r, node the frontier node it
    reaches, when that node is open (pos >= 0)."""
    p = X.shape[1]
    for t in range(rows.shape[0]):
        r = rows[t]
        node = 0
        while var[node] >= 0:
            node = child[node, X[r, var[node]]]
        c = pos[node]
        if c >= 0:
            for j in range(p):
                T[c, j, X[r, j], y[r]] += 1


def frontier_counts(X: np.ndarray, y: np.ndarray, rows: np.ndarray, var: np.ndarray,
                    child: np.ndarray, cands: np.ndarray, kmax: int, k: int) -> KeyCounts:
    """:func:`node_contingency`'s ``joint`` counts of the rows ``rows`` routed through the tree
    so far (``var``, ``child``) to its open nodes ``cands``: one compiled walk per row into
    dense tables when they have at most :data:`DENSE_CELLS` cells, else
    :func:`node_contingency` itself (sparse keys)."""
    n_c, p = cands.size, X.shape[1]
    if n_c * p * kmax * k <= DENSE_CELLS:
        pos = np.full(var.size, -1, np.int64)
        pos[cands] = np.arange(n_c)
        T = np.zeros((n_c, p, kmax, k), np.int64)
        _count_frontier(X, np.asarray(y, np.int64), rows, var, child, pos, T)
        flat = T.ravel()
        keys = np.flatnonzero(flat)
        return KeyCounts(keys.astype(np.int64), flat[keys])
    node = _route(var, child, X[rows])
    return node_contingency(node, X[rows], cands, kmax, y[rows], k)["joint"]


def _holdout(cols, i, model, ctx, loose) -> dict[str, Any]:
    X, targets, index = _prepared(cols, i, model, ctx)
    return holdout_stats(loose, X, targets, holdout_mask(ctx["key"], index))


def _route(var: np.ndarray, child: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Node of the tree so far (frontier nodes have var -1) reached by every row of ``X``."""
    node = np.zeros(X.shape[0], np.int64)
    idx = np.arange(X.shape[0])
    while idx.size:
        v = var[node[idx]]
        inner = v >= 0
        idx, v = idx[inner], v[inner]
        node[idx] = child[node[idx], X[idx, v]]
    return node


# ---------------------------------------------------------------------------- the driver
def _source(run, ctx, train_only: bool, bar):
    """The dask :data:`~.trees.TableSource`: one pass per level for every tree's open nodes."""
    p, kmax = ctx["p"], ctx["kmax"]

    def source(gs: Sequence[Grower], cands: Sequence[Sequence[int]]):
        trees = [g.arrays() if c else None for g, c in zip(gs, cands)]
        cand = [np.asarray(c, np.int64) for c in cands]
        stats = run(_level, ctx, trees, cand, train_only)
        bar.update(1)

        def table(t: int, n: int) -> np.ndarray:
            k = gs[t].k
            size = p * kmax * k
            c = int(np.searchsorted(cand[t], n))
            keys, counts = stats[f"t{t}"].between(c * size, (c + 1) * size)
            one = {"joint": KeyCounts(keys - c * size, counts)}
            return contingency_tables(one, 1, p, kmax, k)[0]

        return table

    return source


def fit_partitions(model: Any, data: Any, *, client: Any = None,
                   columns: Sequence[str] | None = None, split_every: int = 8) -> Any:
    """Fit ``model`` (a :class:`~.model.FactoredWorldModel`) from a dask collection of
    transitions: the attributes the in-memory fit sets, from merged counts (module docstring)."""
    parts = Partitions(data, columns)

    def run(fn, *args):
        return reduce_partitions(parts, fn, model, *args, client=client, split_every=split_every)

    if not model.actions:
        raise DataError("a factored world model needs at least one action variable")
    snames = [name_of(v) for v in model.states]
    anames = [name_of(v) for v in model.actions]
    given = {name_of(v): v.k for v in (*model.states, *model.actions) if isinstance(v, Variable)}
    groups = None
    if getattr(model, "groups", None) is not None:  # one more pass: the one-hot groups
        ones = run(_ones, parts.n)
        if int(ones["n"]) == 0:
            raise DataError("no transitions to learn from (every partition is empty)")
        raw = np.array([given.get(x) or int(ones["smax"][1][j]) + 1
                        for j, x in enumerate(snames)], np.int64)
        groups = StateGroups.from_counts(ones["ones"], ones["co"], int(ones["n"]), snames, raw,
                                         model.groups)
    scan = run(_scan, parts.n, groups)
    lengths = scan["rows"]
    n = int(lengths.sum())
    if n == 0:
        raise DataError("no transitions to learn from (every partition is empty)")
    smax, amax = scan["smax"][1], scan["amax"][1]
    if groups is not None:
        snames, scards = list(groups.names), groups.cards
    else:
        scards = np.array([given.get(x) or int(smax[j]) + 1 for j, x in enumerate(snames)],
                          np.int64)
    acards = np.array([given.get(x) or int(amax[j]) + 1 for j, x in enumerate(anames)], np.int64)
    allowed = model._allowed(scan["joint"].rows.astype(np.int64), anames, acards)
    cards = np.r_[scards, acards]
    d = len(snames)
    end = model.terminated is not None
    ks = [int(k) for k in scards] + ([2] if end else [])
    ctx = {"cards": cards, "kmax": int(max(int(cards.max(initial=1)), 1)), "p": cards.size,
           "ks": ks, "end": end, "some_cont": int(scan["cont"]) > 0,
           "offsets": np.r_[0, np.cumsum(lengths)[:-1]].astype(np.int64),
           "key": seed_key(model.seed), "groups": groups}
    kw = {"min_samples_leaf": model.leaf_minimums(d, len(anames)), "max_depth": model.max_depth}
    scores: dict[float, float] = {}
    alpha = model.split_p
    with progress_bar(model.progress and n > 20000, desc="growing factor trees (dask)",
                      unit="pass") as bar:
        if alpha is None:
            if n < MIN_HOLDOUT_ROWS:
                alpha = SMALL_DATA_ALPHA
            else:
                loose = grow_trees(_source(run, ctx, True, bar), ks, ctx["kmax"], ctx["p"],
                                   alpha=max(ALPHA_GRID), **kw)
                loose_: list[ConditionalTree | None] = [
                    t if t.counts[0].sum() > 0 else None for t in loose]
                alpha, scores = choose_alpha(run(_holdout, ctx, loose_))
                bar.update(1)
        trees = grow_trees(_source(run, ctx, False, bar), ks, ctx["kmax"], ctx["p"],
                           alpha=float(alpha), **kw)
    out: dict[str, Any] = {
        "state_names_": snames, "action_names_": anames, "state_cards_": scards,
        "action_cards_": acards, "trees_": trees[:d], "end_tree_": trees[d] if end else None,
        "reward_": fit_reward_rows(RewardRows.from_stat(scan["reward"]), cards),
        "split_p_": float(alpha), "split_scores_": scores, "n_transitions_": n,
        "joint_actions_": allowed, "seen_states_": scan["seen"].ordered(), "groups_": groups}
    vars(model).update(out)  # all at once: a failed pass leaves no half-fitted model
    model._build()
    return model
