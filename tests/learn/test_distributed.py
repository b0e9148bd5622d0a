"""Statistics per partition merged by tree reductions: exact merges, numpy's quantiles from
counts, partitions checked, and a worker killed mid-fit (dask retries, or a clear error)."""
import itertools
import signal
import time

import dask
import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from dask_faults import fit_while_killing, worker_process
from hypothesis import given, settings
from hypothesis import strategies as st

from spmn import DataError
from spmn.errors import DistributedError
from spmn.learn import distributed as D
from spmn.worldmodels.tabular.model import WorldModel

PRELOAD = "spmn.worldmodels.tabular.model"  # what a killed worker process imports at start

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(x=st.lists(st.one_of(finite, st.integers(-3, 3).map(float)), min_size=1, max_size=80),
       q=st.lists(st.floats(0, 1), min_size=1, max_size=17))
def test_quantiles_from_counts_are_numpys(x, q):
    x, q = np.array(x), np.array(q)
    vals, cnt = np.unique(x, return_counts=True)
    np.testing.assert_array_equal(D.quantiles_from_counts(vals, cnt, q), np.quantile(x, q))


@settings(max_examples=60, deadline=None)
@given(keys=st.lists(st.integers(0, 300), max_size=200), cut=st.integers(0, 200),
       size=st.sampled_from([None, 301]))
def test_counts_merge_exactly_in_any_split(keys, cut, size):
    k = np.array(keys, np.int64)
    whole = D.count_keys(k, size)
    parts = D.count_keys(k[:cut], size).merge(D.count_keys(k[cut:], None))
    np.testing.assert_array_equal(parts.keys, whole.keys)
    np.testing.assert_array_equal(parts.counts, whole.counts)
    np.testing.assert_array_equal(whole.dense(301), np.bincount(k, minlength=301))


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.tuples(st.integers(-1, 3), st.integers(0, 2)), max_size=60),
       cut=st.integers(0, 60))
def test_distinct_rows_merge(rows, cut):
    """Both paths: small non-negative codes (one int key) and any rows (void sort)."""
    X = np.array(rows, np.int64).reshape(-1, 2)
    a = D.DistinctRows.of(X[:cut]).merge(D.DistinctRows.of(X[cut:]))
    want, cnt = np.unique(X, axis=0, return_counts=True)
    order = np.lexsort(a.rows.T[::-1]) if a.rows.size else np.zeros(0, int)
    np.testing.assert_array_equal(a.rows[order], want)
    np.testing.assert_array_equal(a.counts[order], cnt)


@settings(max_examples=60, deadline=None)
@given(pairs=st.lists(st.tuples(st.integers(0, 40), st.one_of(finite, st.integers(-2, 2).map(
    float))), min_size=1, max_size=60), negative=st.booleans())
def test_distinct_pairs_are_numpy_unique_on_columns(pairs, negative):
    """The int-key fast path (and, with a negative key, numpy's own) equal np.unique(axis=1)."""
    P = np.array(pairs, np.float64).T.copy()
    if negative:
        P[0, 0] = -1.0
    u, c = D.distinct_pairs(P)
    want, inv = np.unique(P, axis=1, return_inverse=True)
    np.testing.assert_array_equal(u, want)
    np.testing.assert_array_equal(c, np.bincount(inv.ravel()))


def test_pairs_merge_as_numpy_unique_on_columns():
    rng = np.random.default_rng(0)
    P = np.stack([rng.integers(0, 5, 300).astype(float), rng.integers(0, 3, 300) * 0.5])
    u, c = D.merge_pairs(D.distinct_pairs(P[:, :100]), D.distinct_pairs(P[:, 100:]))
    want, inv = np.unique(P, axis=1, return_inverse=True)
    np.testing.assert_array_equal(u, want)
    np.testing.assert_array_equal(c, np.bincount(inv.ravel()))


def _sum_x(cols, i):
    return {"s": np.array([cols["x"].sum()]), "n": cols["x"].size}


def test_reduction_over_a_deep_tree_and_every_input_kind():
    x = np.arange(1000, dtype=np.int64)
    kinds = [dd.from_pandas(pd.DataFrame({"x": x}), npartitions=37),
             {"x": da.from_array(x, chunks=13)},
             da.from_array(x[:, None], chunks=(29, 1))]
    with dask.config.set(scheduler="sync"):
        for data in kinds:
            parts = D.Partitions(data, columns=["x"])
            out = D.reduce_partitions(parts, _sum_x, split_every=2)
            assert out["s"][0] == x.sum() and out["n"] == 1000


def test_a_partial_reduction_is_refused(monkeypatch):
    """If a merge lost a partition's statistics, the driver sees it and makes no model."""
    real = D._merge_many
    monkeypatch.setattr(D, "_merge_many", lambda *s: real(*s[:-1]) if len(s) > 2 else real(*s))
    parts = D.Partitions(dd.from_pandas(pd.DataFrame({"x": np.arange(50)}), npartitions=6))
    with dask.config.set(scheduler="sync"), pytest.raises(DistributedError, match="partitions"):
        D.reduce_partitions(parts, _sum_x, split_every=3)


def test_bad_collections_are_named():
    with pytest.raises(DataError, match="needs columns="):
        D.Partitions(da.zeros((10, 3), chunks=5))
    with pytest.raises(DataError, match="different lengths"):
        D.Partitions({"a": da.zeros(10, chunks=5), "b": da.zeros(9, chunks=5)})
    with pytest.raises(DataError, match="dask DataFrame"):
        D.Partitions([1, 2, 3])
    assert not D.is_dask({"a": np.zeros(3)}) and D.is_dask({"a": da.zeros(3)})


# ---------------------------------------------------------------------------- faults
def _slow_logs(i, n_parts, seed):
    """Partition ``i`` of a fixed random log, read slowly (a worker can be killed meanwhile)."""
    time.sleep(0.05)
    rng = np.random.default_rng(seed)
    n = 400 * n_parts
    s, a = rng.integers(0, 8, n), rng.integers(0, 2, n)
    df = pd.DataFrame({"s": s, "a": a, "s_next": (s + a + (rng.random(n) < 0.3)) % 8,
                       "r": (s == 7).astype(float)})
    return df.iloc[i * 400:(i + 1) * 400]


@pytest.mark.slow
def test_a_worker_killed_mid_fit_is_retried_or_fails_clearly():
    """Killed with retries left: the scheduler reruns its tasks elsewhere and the model is the
    in-memory one. Killed with none left: DistributedError, and the model stays unfitted."""
    from distributed import Client, LocalCluster

    n_parts, seed = 8, 4
    frames = [_slow_logs(i, n_parts, seed) for i in range(n_parts)]
    ref = WorldModel("s", "a", "r", progress=False).fit(pd.concat(frames))
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp",
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        ddf = dd.from_map(_slow_logs, range(n_parts), n_parts=n_parts, seed=seed,
                          meta=frames[0].iloc[:0])
        proc = worker_process(client, cluster.scheduler_address, PRELOAD)
        model = fit_while_killing(client, proc, ddf, 0.3, WorldModel("s", "a", "r",
                                                                      progress=False))
        assert proc.returncode == -signal.SIGKILL
        for k in ref.tables_:
            np.testing.assert_array_equal(model.tables_[k], ref.tables_[k])
        np.testing.assert_array_equal(model.tree_.var, ref.tree_.var)
        client.run_on_scheduler(lambda dask_scheduler: setattr(
            dask_scheduler, "allowed_failures", 0))
        proc = worker_process(client, cluster.scheduler_address, PRELOAD)
        failed = WorldModel("s", "a", "r", progress=False)
        with pytest.raises(DistributedError, match="worker was lost"):
            fit_while_killing(client, proc, ddf, 0.3, failed)
        assert not hasattr(failed, "tree_") and not hasattr(failed, "template_")


# ---------------------------------------------------------------------------- learners
@pytest.mark.xdist_group(name="numba-kernels")
def test_learners_with_continuous_columns_gather_with_a_warning():
    """learn_spn / learn_spmn on continuous columns (no count statistics): a dask collection
    is gathered (InMemoryWarning naming the columns) and gives the in-memory circuit."""
    from spmn import learn_spmn, learn_spn
    from spmn.errors import InMemoryWarning

    rng = np.random.default_rng(0)
    n = 1500
    o, d = rng.integers(0, 2, n), rng.integers(0, 3, n)
    h = np.where(rng.random(n) < 0.8, o, 1 - o)
    df = pd.DataFrame({"O": o, "D": d, "H": h, "U": (h == d % 2) * 10.0 + (d == 2) * 3.0
                       + rng.normal(0, 0.1, n)})
    ddf = dd.from_pandas(df, npartitions=4)
    order = [["O"], ["D"], ["H", "U"]]
    X = df.to_numpy(np.float64)
    with dask.config.set(scheduler="sync"):
        c1 = learn_spmn(df, order, "D", "U", seed=0)
        with pytest.warns(InMemoryWarning, match=r"\['U'\] are continuous.*1,500 rows"):
            c2 = learn_spmn(ddf, order, "D", "U", seed=0)
        np.testing.assert_array_equal(c1.meu(X), c2.meu(X))
        df["H"] = h + rng.normal(0, 0.1, n)
        s1 = learn_spn(df[["O", "H"]], seed=1, min_instances_slice=100)
        with pytest.warns(InMemoryWarning, match="continuous"):
            s2 = learn_spn({k: da.from_array(df[k].to_numpy(), chunks=400) for k in "OH"},
                           seed=1, min_instances_slice=100)
        XH = df[["O", "H"]].to_numpy(np.float64)
        np.testing.assert_array_equal(s1.log_likelihood(XH), s2.log_likelihood(XH))


# ---------------------------------------------------------------------------- exact float sums
@pytest.mark.xdist_group(name="numba-kernels")
@settings(max_examples=80, deadline=None)
@given(x=st.lists(st.one_of(st.floats(allow_nan=False, allow_infinity=False, width=64),
                            finite, st.sampled_from([0.0, -0.0, 5e-324, -1e-310, 1e300])),
                  min_size=1, max_size=40),
       cut=st.integers(0, 40), q=st.integers(1, 3))
def test_exact_sums_are_the_correctly_rounded_sum_in_any_split(x, cut, q):
    """The numerators add exactly: any split merges to the same sums, which are the exact
    (rational) sums rounded once; a sum beyond float64's range rounds to infinity."""
    from fractions import Fraction

    V = np.array(x, np.float64)[:, None] * np.array([1.0, -0.5, 0.25])[None, :q]
    whole = D.ExactSums.of(V)
    assert D.ExactSums.of(V[:cut]).merge(D.ExactSums.of(V[cut:])) == whole
    for j in range(q):
        exact = sum((Fraction(v) for v in V[:, j]), Fraction(0))
        try:
            want = float(exact)
        except OverflowError:
            want = np.inf if exact > 0 else -np.inf
        assert whole.values()[j] == want
    with pytest.raises(DataError, match="finite"):
        D.ExactSums.of(np.array([[1.0], [np.nan]]))


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2)), max_size=60),
       cuts=st.lists(st.integers(0, 60), max_size=3))
def test_first_rows_keep_the_order_of_first_occurrence(rows, cuts):
    X = np.array(rows, np.int64).reshape(-1, 2)
    edges = [0, *sorted(min(c, len(X)) for c in cuts), len(X)]
    parts = [D.FirstRows.of(X[a:b], (i << 40) + np.arange(b - a))
             for i, (a, b) in enumerate(itertools.pairwise(edges))]
    merged = parts[0]
    for p in parts[1:]:
        merged = merged.merge(p)
    _, first = np.unique(X, axis=0, return_index=True) if len(X) else (None, np.zeros(0, int))
    np.testing.assert_array_equal(merged.ordered(), X[np.sort(first)])
