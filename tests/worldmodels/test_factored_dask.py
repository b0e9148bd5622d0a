"""The factored world model fitted from dask collections is the in-memory fit: the same trees
(splits, parents, node numbering), equal leaf counts, the same hold-out and α, the same reward
terms and values and the same solved values, whatever the partitioning; one pass per tree level.
The level-wise learner is checked against the per-node recursive one it replaced."""
from __future__ import annotations

import itertools
import warnings

import dask
import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.special import chdtrc

from spmn import DataError
from spmn.errors import CoverageWarning
from spmn.learn.splits import _g_stats
from spmn.worldmodels import FactoredWorldModel
from spmn.worldmodels.factored import dask_fit
from spmn.worldmodels.factored import trees as T

pytestmark = pytest.mark.xdist_group(name="numba-kernels")
DASK_SYNC = {"scheduler": "sync"}


def dbn_logs(seed: int, n: int, end: bool = True) -> pd.DataFrame:
    """Three state variables (cards 2-4), two actions; each next variable depends on itself,
    another and an action; a reward with a pair term; episodes end in state x0 = 0 often."""
    rng = np.random.default_rng(seed)
    x = np.c_[rng.integers(0, 3, n), rng.integers(0, 2, n), rng.integers(0, 4, n)]
    a = np.c_[rng.integers(0, 2, n), rng.integers(0, 3, n)]
    noise = rng.random((n, 3))
    xn = np.c_[np.where(noise[:, 0] < 0.7, (x[:, 0] + a[:, 0]) % 3, rng.integers(0, 3, n)),
               np.where(noise[:, 1] < 0.8, x[:, 2] % 2, 1 - x[:, 2] % 2),
               np.where(noise[:, 2] < 0.6, (x[:, 2] + a[:, 1]) % 4, x[:, 2])]
    df = pd.DataFrame({"x0": x[:, 0], "x1": x[:, 1], "x2": x[:, 2], "a0": a[:, 0], "a1": a[:, 1],
                       "x0_next": xn[:, 0], "x1_next": xn[:, 1], "x2_next": xn[:, 2],
                       "r": x[:, 0] - 0.5 * a[:, 0] + (x[:, 1] == a[:, 1]) * 2.0
                       + rng.integers(0, 2, n) * 0.25})
    if end:
        df["done"] = rng.random(n) < np.where(x[:, 0] == 0, 0.3, 0.05)
    return df


def kwargs(end: bool = True, **hyper):
    kw = {"states": ["x0", "x1", "x2"], "actions": ["a0", "a1"], "reward": "r",
              "terminated": "done" if end else None, "progress": False}
    kw.update(hyper)
    return kw


def assert_same_model(m1: FactoredWorldModel, m2: FactoredWorldModel) -> None:
    trees1 = m1.trees_ + ([m1.end_tree_] if m1.end_tree_ is not None else [])
    trees2 = m2.trees_ + ([m2.end_tree_] if m2.end_tree_ is not None else [])
    assert len(trees1) == len(trees2)
    for i, (a, b) in enumerate(zip(trees1, trees2)):
        for f in ("var", "child", "counts", "crit"):
            np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f"tree {i} {f}")
    assert m1.parents_ == m2.parents_
    assert m1.split_p_ == m2.split_p_ and m1.split_scores_ == m2.split_scores_
    r1, r2 = m1.reward_, m2.reward_
    assert r1.cols == r2.cols
    for t1, t2, c1, c2 in zip(r1.tables, r2.tables, r1.cells, r2.cells):
        np.testing.assert_allclose(t2, t1, rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(c1, c2)
    for f in ("intercept", "rss", "residual_max", "r2", "bic"):
        assert getattr(r2, f) == pytest.approx(getattr(r1, f), rel=1e-12, abs=1e-12), f
    assert r1.n == r2.n == m1.n_transitions_ == m2.n_transitions_
    for f in ("seen_states_", "joint_actions_", "state_cards_", "action_cards_"):
        np.testing.assert_array_equal(getattr(m1, f), getattr(m2, f), err_msg=f)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CoverageWarning)
        s1, s2 = m1.solve(0.9), m2.solve(0.9)
    np.testing.assert_array_equal(s1.states, s2.states)
    np.testing.assert_allclose(s2.values, s1.values, rtol=1e-12, atol=1e-12)


def pieces(df: pd.DataFrame, cuts) -> dd.DataFrame:
    """``df`` cut at ``cuts`` (repeated cuts: empty partitions), one partition per piece."""
    edges = [0, *cuts, len(df)]
    frames = [df.iloc[a:b] for a, b in itertools.pairwise(edges)]
    return dd.from_delayed([dask.delayed(f) for f in frames], meta=df.iloc[:0],
                           verify_meta=False)


# ---------------------------------------------------------------------------- the learner
def reference_grow(X, y, k, cards, rows, *, alpha, min_samples_leaf=5, max_depth=None):
    """The recursive learner of the first sessions (the oracle): a FIFO of nodes, each node's
    tables counted over its own rows, children's rows split off the parent's."""
    kmax, min_leaf = int(max(int(cards.max(initial=1)), 1)), max(int(min_samples_leaf), 1)
    var, child, counts, crit = [], [], [], []

    def new(r):
        var.append(-1)
        child.append(np.zeros(kmax, np.int64))
        counts.append(np.bincount(y[r], minlength=k).astype(np.float64))
        crit.append(np.inf)
        return len(var) - 1

    todo = [(new(rows), rows, 0, np.zeros(X.shape[1], np.bool_))]
    while todo:
        node, r, depth, used = todo.pop(0)
        if (counts[node] > 0).sum() < 2 or r.size < 2 * min_leaf or \
                (max_depth is not None and depth >= max_depth):
            continue
        tab, ok, top, keep = T._node_tables(X, y, r, k, kmax, used, min_leaf)
        p = tab.shape[0]
        G, df = _g_stats(tab.reshape(-1), np.arange(p + 1, dtype=np.int64) * (kmax * k),
                         np.full(p, kmax, np.int64), np.full(p, k, np.int64))
        cand = np.flatnonzero(ok & (df > 0))
        if cand.size == 0:
            continue
        G, df = G[cand], df[cand]
        reps = np.array([np.flatnonzero(df == f)[np.argmax(G[df == f])] for f in np.unique(df)])
        b = int(reps[np.lexsort((cand[reps], -G[reps] / df[reps], chdtrc(df[reps], G[reps])))[0]])
        j, c = int(cand[b]), float(chdtrc(df[b], G[b])) * cand.size
        if not c < alpha:
            continue
        seen, t = np.flatnonzero(keep[j]), int(top[j])
        rep = np.full(kmax, t, np.int64)
        rep[seen] = seen
        g = rep[X[r, j]]
        var[node], crit[node] = j, c
        kids = {int(v): (new(r[g == v]), r[g == v]) for v in seen}
        child[node][:] = kids[t][0]
        for v, (m, rv) in kids.items():
            child[node][v] = m
            sub = used.copy()
            sub[j] = True
            todo.append((m, rv, depth + 1, sub))
    return T.ConditionalTree(np.array(var, np.int64), np.array(child, np.int64),
                             np.array(counts), np.array(crit), int(k))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10 ** 6), n=st.integers(20, 1500), p=st.integers(1, 5),
       k=st.integers(2, 4), alpha=st.sampled_from([0.2, 1e-3]),
       max_depth=st.sampled_from([None, 1, 3]), min_leaf=st.sampled_from([1, 5]))
def test_level_wise_growth_is_the_per_node_recursion(seed, n, p, k, alpha, max_depth, min_leaf):
    """Breadth-first node numbering, the same splits, counts and crit as the recursive
    learner of the first sessions (``reference_grow``, kept in tests/worldmodels/)."""
    rng = np.random.default_rng(seed)
    cards = rng.integers(2, 5, p)
    X = rng.integers(0, cards, (n, p))
    y = (X[:, 0] + (X[:, -1] > 1) + rng.integers(0, 2, n)) % k
    rows = np.flatnonzero(rng.random(n) < 0.8)
    if rows.size == 0:
        rows = np.arange(n)
    Xs = T.small_codes(X, cards)
    want = reference_grow(Xs, y, k, cards, rows, alpha=alpha, min_samples_leaf=min_leaf,
                          max_depth=max_depth)
    got = T.grow_trees(T.RowsSource(Xs, [(y, rows)]), [k], int(cards.max()), p, alpha=alpha,
                       min_samples_leaf=min_leaf, max_depth=max_depth)[0]
    for f in ("var", "child", "counts", "crit"):
        np.testing.assert_array_equal(getattr(got, f), getattr(want, f), err_msg=f)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10 ** 6), n=st.integers(30, 800), p=st.integers(1, 4))
def test_compiled_counts_and_scores_are_the_numpy_ones(seed, n, p):
    """The per-partition frontier walk gives node_contingency's keys; the one-walk held-out
    scores are holdout_loglik's per α, bit for bit, under the exact sums."""
    from spmn.learn.distributed import ExactSums
    from spmn.worldmodels.tabular.counts import node_contingency

    rng = np.random.default_rng(seed)
    cards = rng.integers(2, 5, p)
    X = T.small_codes(rng.integers(0, cards, (n, p)), cards)
    y = (X[:, 0] + rng.integers(0, 3, n)) % 3
    tree = T.grow_trees(T.RowsSource(X, [(y, np.arange(n // 2))]), [3], int(cards.max()), p,
                        alpha=0.2, min_samples_leaf=2)[0]
    var, child = tree.var, tree.child  # the grown tree as a frontier: its leaves open
    cands = np.flatnonzero(var < 0)
    rows = np.flatnonzero(rng.random(n) < 0.7)
    got = dask_fit.frontier_counts(X, y, rows, var, child, cands, int(cards.max()), 3)
    want = node_contingency(tree.route(X[rows]), X[rows], cands, int(cards.max()), y[rows],
                            3)["joint"]
    np.testing.assert_array_equal(got.keys, want.keys)
    np.testing.assert_array_equal(got.counts, want.counts)
    val = rng.random(n) < 0.3
    st_ = T.holdout_stats([tree], X, [(y, rows)], val)
    va = rows[val[rows]]
    where = np.flatnonzero(val)
    ll = np.zeros((where.size, len(T.ALPHA_GRID)))
    for i, a in enumerate(T.ALPHA_GRID):
        ll[np.searchsorted(where, va), i] += T.holdout_loglik(tree, X[va], y[va], a)
    a, b = np.triu_indices(len(T.ALPHA_GRID), 1)
    assert st_["ll"] == ExactSums.of(np.concatenate([ll, (ll[:, a] - ll[:, b]) ** 2], axis=1))
    assert st_["n_val"] == where.size


def test_the_hold_out_is_a_hash_of_the_row_index():
    idx = np.arange(200_000)
    val = T.holdout_mask(T.seed_key(7), idx)
    assert abs(val.mean() - T.HOLDOUT) < 0.005
    np.testing.assert_array_equal(T.holdout_mask(T.seed_key(7), idx[5000:9000]), val[5000:9000])
    assert (T.holdout_mask(T.seed_key(8), idx) != val).mean() > 0.25
    assert T.seed_key(None) == 0 and T.seed_key(np.random.default_rng(3)) == \
        T.seed_key(np.random.default_rng(3))


# ---------------------------------------------------------------------------- equality
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10 ** 6), n=st.integers(210, 1200),
       cuts=st.lists(st.floats(0, 1), max_size=6), end=st.booleans(),
       split_p=st.sampled_from([None, None, 1e-3]), max_depth=st.sampled_from([None, 2]))
def test_any_partitioning_gives_the_in_memory_model(seed, n, cuts, end, split_p, max_depth):
    """Hold-out and α chosen (or given), episode ends or none, depth caps; empty partitions
    wherever two cuts coincide."""
    df = dbn_logs(seed, n, end)
    kw = kwargs(end, split_p=split_p, max_depth=max_depth, seed=seed % 3)
    m1 = FactoredWorldModel(**kw).fit(df)
    with dask.config.set(DASK_SYNC):
        m2 = FactoredWorldModel(**kw).fit(pieces(df, sorted(int(c * n) for c in cuts)))
    assert_same_model(m1, m2)


def test_empty_partitions_dask_arrays_and_small_data(monkeypatch):
    monkeypatch.setattr(dask_fit, "DENSE_CELLS", 0)  # the sparse per-partition counts too
    df = dbn_logs(4, 900)
    ddf = pieces(df, [0, 0, 300, 300, 900])  # empty first, middle and last partitions
    assert ddf.npartitions == 6
    m1 = FactoredWorldModel(**kwargs()).fit(df)
    with dask.config.set(DASK_SYNC):
        assert_same_model(m1, FactoredWorldModel(**kwargs()).fit(ddf))
        cols = {c: da.from_array(df[c].to_numpy(), chunks=250) for c in df.columns}
        assert_same_model(m1, FactoredWorldModel(**kwargs()).fit(cols))
        num = df.drop(columns="done")  # one dtype: every column as float64
        arr = da.from_array(num.to_numpy(np.float64), chunks=(200, -1))
        with pytest.raises(DataError, match="needs columns="):
            FactoredWorldModel(**kwargs(False)).fit(arr)
        assert_same_model(FactoredWorldModel(**kwargs(False)).fit(num),
                          FactoredWorldModel(**kwargs(False)).fit(arr, columns=list(num)))
        small = df.iloc[:150]  # below MIN_HOLDOUT_ROWS: the fixed α, no hold-out
        s1 = FactoredWorldModel(**kwargs()).fit(small)
        s2 = FactoredWorldModel(**kwargs()).fit(dd.from_pandas(small, npartitions=4))
        assert s1.split_p_ == T.SMALL_DATA_ALPHA
        assert_same_model(s1, s2)


def test_one_pass_per_tree_level(monkeypatch):
    """Passes: the scan, a level of the loose trees each (all targets' frontiers together),
    the hold-out score, a level of the final trees each."""
    df = dbn_logs(9, 3000)
    calls = []
    real = dask_fit.reduce_partitions

    def counting(parts, fn, *args, **kw):
        calls.append(fn.__name__)
        return real(parts, fn, *args, **kw)

    monkeypatch.setattr(dask_fit, "reduce_partitions", counting)
    with dask.config.set(DASK_SYNC):
        m = FactoredWorldModel(**kwargs()).fit(dd.from_pandas(df, npartitions=5))
    depth = max(_depth(t) for t in [*m.trees_, m.end_tree_])
    assert calls[0] == "_scan" and calls.count("_holdout") == 1 and depth >= 2
    loose = calls.index("_holdout") - 1
    final = len(calls) - calls.index("_holdout") - 1
    assert final == depth + 1  # the last level's nodes are read to find they do not split
    assert loose >= 1 and len(calls) == 2 + loose + final


def _depth(tree) -> int:
    depth = np.zeros(tree.n_nodes, np.int64)
    for nd in range(tree.n_nodes):
        if tree.var[nd] >= 0:
            depth[np.unique(tree.child[nd])] = depth[nd] + 1
    return int(depth.max())


# ---------------------------------------------------------------------------- RDDL, cluster
@pytest.mark.slow
def test_an_rddl_log_from_parquet_on_a_local_cluster(tmp_path):
    """Elevators (IPPC 2011, instance 1): 4,000 logged steps in Parquet files, counted on two
    in-process workers; the same model, policy and values as the in-memory fit."""
    from spmn.envs.rddl import RDDLDomain, log_transitions

    d = RDDLDomain("Elevators_MDP_ippc2011", 1)
    logs = pd.DataFrame(log_transitions(d, 4000, seed=0, backend="compiled"))
    for i, (a, b) in enumerate([(0, 1000), (1000, 1000), (1000, 2500), (2500, 4000)]):
        logs.iloc[a:b].to_parquet(tmp_path / f"part{i}.parquet")
    kw = {"states": d.state_fluents, "actions": d.action_fluents, "progress": False, "seed": 0}
    m1 = FactoredWorldModel(**kw).fit(logs)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        m2 = FactoredWorldModel(**kw).fit(dd.read_parquet(str(tmp_path / "*.parquet")),
                                          client=client)
    assert sum(len(p) for p in m1.parents_.values()) > len(d.state_fluents)
    assert_same_model(m1, m2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CoverageWarning)
        s1 = m1.solve(gamma=d.discount, horizon=5, start=d.initial_row)
        s2 = m2.solve(gamma=d.discount, horizon=5, start=d.initial_row)
    for t in range(5):
        np.testing.assert_array_equal(s1.policy(s1.states, t), s2.policy(s2.states, t))
        np.testing.assert_allclose(s2.q(s1.states, t), s1.q(s1.states, t), rtol=1e-12,
                                   atol=1e-12)


# ---------------------------------------------------------------------------- bad input
def test_partitions_that_disagree_are_named(tmp_path):
    df = dbn_logs(2, 300)
    a, b, c = df.iloc[:100], df.iloc[100:200].copy(), df.iloc[200:]
    b["x1"] = b["x1"].astype(np.float64)
    with dask.config.set(DASK_SYNC), pytest.raises(DataError, match=r"partition 1: column 'x1' "
                                                                    r"has dtype float64"):
        FactoredWorldModel(**kwargs()).fit(_frames([a, b, c]))
    with dask.config.set(DASK_SYNC), pytest.raises(DataError, match=r"partition 2 lacks "
                                                                    r"column 'x2_next'"):
        FactoredWorldModel(**kwargs()).fit(_frames([a, df.iloc[100:200],
                                                    c.drop(columns="x2_next")]))
    bad = c.copy()
    bad.loc[bad.index[3], "a1"] = -2
    with dask.config.set(DASK_SYNC), pytest.raises(DataError, match=r"partition 2: column 'a1' "
                                                                    r"has negative code"):
        FactoredWorldModel(**kwargs()).fit(_frames([a, df.iloc[100:200], bad]))
    b = df.iloc[100:200].copy()
    b["x0"] = b["x0"].astype(np.int32)
    for name, part in (("a", a), ("b", b), ("c", c)):
        part.to_parquet(tmp_path / f"{name}.parquet")
    with dask.config.set(DASK_SYNC), pytest.raises(DataError, match=r"partition 1: column 'x0' "
                                                                    r"has dtype int32"):
        FactoredWorldModel(**kwargs()).fit(dd.read_parquet(str(tmp_path / "*.parquet")))
    with dask.config.set(DASK_SYNC), pytest.raises(DataError, match="no transitions"):
        FactoredWorldModel(**kwargs()).fit(dd.from_pandas(df.iloc[:0], npartitions=1))


def _frames(frames):
    return dd.from_delayed([dask.delayed(f) for f in frames], meta=frames[0],
                           verify_meta=False)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10 ** 6), n=st.integers(40, 600), cut=st.integers(0, 600))
def test_the_reward_from_distinct_rows_is_least_squares_on_every_row(seed, n, cut):
    """The terms fitted from the distinct (x, r) counts are the least-squares fit of those
    terms on every logged row (numpy lstsq on the full one-hot design), and the statistic of
    two halves merged gives the same fit."""
    from spmn.worldmodels.factored.reward import (
        RewardRows,
        fit_additive_reward,
        fit_reward_rows,
    )

    rng = np.random.default_rng(seed)
    cards = np.array([2, 3, 2, 3])
    X = rng.integers(0, cards, (n, 4))
    r = X[:, 0] - 0.5 * (X[:, 1] == 2) + 1.5 * (X[:, 2] == 1) * (X[:, 3] == 2) \
        + rng.integers(0, 3, n) * 0.25
    model = fit_additive_reward(X, r, cards)
    cols = [np.ones(n)]
    for c in model.cols:  # every cell indicator of each chosen term (rank-deficient is fine)
        flat = np.ravel_multi_index(tuple(X[:, j] for j in c), tuple(cards[list(c)]))
        cols += [(flat == v).astype(float) for v in range(int(np.prod(cards[list(c)])))]
    D = np.stack(cols, axis=1)
    coef = np.linalg.lstsq(D, r, rcond=None)[0]
    np.testing.assert_allclose(model.predict(X), D @ coef, atol=1e-9)
    assert model.rss == pytest.approx(float(np.sum((r - D @ coef) ** 2)), rel=1e-9, abs=1e-9)
    cut = min(cut, n)
    merged = RewardRows.stat(X[:cut], r[:cut]).merge(RewardRows.stat(X[cut:], r[cut:]))
    again = fit_reward_rows(RewardRows.from_stat(merged), cards)
    assert again.cols == model.cols and again.rss == model.rss
    for a, b in zip(again.tables, model.tables):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------- faults
def _slow_dbn(i: int, n_parts: int, seed: int) -> pd.DataFrame:
    """Partition ``i`` of a fixed DBN log, read slowly (a worker can be killed meanwhile)."""
    import time

    time.sleep(0.05)
    return dbn_logs(seed, 300 * n_parts).iloc[i * 300:(i + 1) * 300]


@pytest.mark.slow
def test_a_worker_killed_mid_fit_is_retried_or_fails_clearly():
    """As the tabular model's (tests/learn/test_distributed.py): a worker process SIGKILLed
    mid-fit with retries left is rerun elsewhere and the model is the in-memory one; with none
    left the fit raises DistributedError and the model stays unfitted."""
    import signal

    from dask_faults import fit_while_killing, worker_process

    from spmn.errors import DistributedError

    preload = "spmn.worldmodels.factored.model"
    n_parts, seed = 8, 3
    frames = [_slow_dbn(i, n_parts, seed) for i in range(n_parts)]
    kw = kwargs(split_p=0.05)
    ref = FactoredWorldModel(**kw).fit(pd.concat(frames))

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp",
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        ddf = dd.from_map(_slow_dbn, range(n_parts), n_parts=n_parts, seed=seed,
                          meta=frames[0].iloc[:0])
        proc = worker_process(client, cluster.scheduler_address, preload)
        model = fit_while_killing(client, proc, ddf, 0.3, FactoredWorldModel(**kw))
        assert proc.returncode == -signal.SIGKILL
        assert_same_model(ref, model)
        client.run_on_scheduler(lambda dask_scheduler: setattr(
            dask_scheduler, "allowed_failures", 0))
        proc = worker_process(client, cluster.scheduler_address, preload)
        failed = FactoredWorldModel(**kw)
        with pytest.raises(DistributedError, match="worker was lost"):
            fit_while_killing(client, proc, ddf, 0.3, failed)
        assert not hasattr(failed, "trees_") and not hasattr(failed, "template_")
