"""learn_spn / learn_spmn fitted from dask collections are the in-memory fits: the same
structure, equal weights and leaf parameters, the same likelihoods and MEU, whatever the
partitioning (empty partitions too), on a distributed LocalCluster and from Parquet; one pass
per level of the circuit; partitions that disagree are named; continuous data are gathered."""
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

from spmn import DataError, Schema, Variable, learn_spmn, learn_spn
from spmn.circuit import nodes as N
from spmn.errors import DistributedError, InMemoryWarning
from spmn.learn import clusters as C
from spmn.learn import dask_spn
from spmn.learn import slices as S
from spmn.learn.learnspn import (
    LearnOptions,
    SliceLearner,
    flatten_products,
    make_schema,
)
from spmn.learn.slices import MemSlice, MemStats, Table

pytestmark = pytest.mark.xdist_group(name="numba-kernels")
SYNC = {"scheduler": "sync"}
SMALL = {"min_instances_slice": 40, "cluster_sample": 150}  # count path, then in memory


def assert_same_circuit(a: N.Node, b: N.Node, where: str = "root") -> None:
    """Node by node: the same types, variables, weights and leaf parameters (bit for bit)."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, N.Leaf):
        assert a.var == b.var and a.params() == b.params(), where
        return
    if isinstance(a, N.Sum):
        np.testing.assert_array_equal(a.weights, b.weights, err_msg=where)
    if isinstance(a, N.Max):
        assert a.var == b.var, where
    assert len(a.children) == len(b.children), where
    for i, (x, y) in enumerate(zip(a.children, b.children)):
        assert_same_circuit(x, y, f"{where}/{i}")


def latent_data(seed: int, n: int, d: int = 6) -> pd.DataFrame:
    """Columns that depend on a latent class (clusters) and a pair of independent ones."""
    rng = np.random.default_rng(seed)
    z = rng.integers(0, 3, n)
    cols = {f"x{j}": np.where(rng.random(n) < 0.65, (z * (j + 1)) % 3, rng.integers(0, 3, n))
            for j in range(d)}
    cols["y"] = rng.integers(0, 2, n)
    cols["w"] = np.where(rng.random(n) < 0.9, cols["y"], rng.integers(0, 4, n))
    return pd.DataFrame(cols)


def pieces(df: pd.DataFrame, cuts) -> dd.DataFrame:
    """``df`` cut at ``cuts`` (repeated cuts: empty partitions), one partition per piece."""
    edges = [0, *cuts, len(df)]
    frames = [df.iloc[a:b] for a, b in itertools.pairwise(edges)]
    return dd.from_delayed([dask.delayed(f) for f in frames], meta=df.iloc[:0],
                           verify_meta=False)


def depth(node: N.Node) -> int:
    kids = getattr(node, "children", [])
    return 1 + max((depth(k) for k in kids), default=0)


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster) as c:
        yield c


# ---------------------------------------------------------------------------- learn_spn
@pytest.mark.parametrize("hyper", [{"clustering": "kmeans"},
                                   {"clustering": "em", "n_clusters": 3, "seed": 5}])
def test_learn_spn_on_a_cluster_is_the_in_memory_fit(client, hyper):
    df = latent_data(0, 3000)
    kw = {**SMALL, "seed": 1, **hyper}
    ref = learn_spn(df, **kw)
    X = df.to_numpy(np.float64)
    assert any(isinstance(nd, N.Sum) for nd in ref.nodes)
    for cuts in ([1500], [0, 700, 700, 2999, 3000]):  # empty first, middle and last pieces
        with warnings.catch_warnings():
            warnings.simplefilter("error", InMemoryWarning)
            got = learn_spn(pieces(df, cuts), client=client, **kw)
        assert_same_circuit(ref.root, got.root)
        np.testing.assert_allclose(got.log_likelihood(X), ref.log_likelihood(X), rtol=1e-12,
                                   atol=0)


def test_one_pass_per_level_and_large_slices_use_the_sample(monkeypatch):
    """Passes: the scan, then at most one per level of the circuit; the slices larger than
    ``cluster_sample`` are clustered from merged counts and their bottom-k rows."""
    df = latent_data(1, 4000, d=8)
    kw = {"min_instances_slice": 30, "cluster_sample": 200, "clustering": "kmeans", "seed": 3}
    ref = learn_spn(df, **kw)
    seen = {"passes": 0, "counted": 0}
    real_run, real_init = dask_spn.DaskSource._run, dask_spn.DaskStats.__init__

    def run(self, fn, *args):
        seen["passes"] += 1
        return real_run(self, fn, *args)

    def init(self, *args):
        seen["counted"] += 1
        real_init(self, *args)

    monkeypatch.setattr(dask_spn.DaskSource, "_run", run)
    monkeypatch.setattr(dask_spn.DaskStats, "__init__", init)
    with dask.config.set(SYNC):
        got = learn_spn(dd.from_pandas(df, npartitions=5), **kw)
    assert_same_circuit(ref.root, got.root)
    assert seen["counted"] >= 5                      # several levels learned from counts
    assert seen["passes"] <= 1 + depth(ref.root)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10 ** 6), n=st.integers(60, 700),
       cuts=st.lists(st.floats(0, 1), max_size=4), sample=st.integers(20, 200),
       method=st.sampled_from(["kmeans", "em"]))
def test_any_partitioning_gives_the_in_memory_circuit(seed, n, cuts, sample, method):
    df = latent_data(seed, n, d=4)
    kw = {"min_instances_slice": 20, "cluster_sample": sample, "clustering": method,
          "seed": seed, "allow_constant": True}
    ref = learn_spn(df, **kw)
    with dask.config.set(SYNC):
        got = learn_spn(pieces(df, sorted(int(c * n) for c in cuts)), **kw)
    assert_same_circuit(ref.root, got.root)


def test_parquet_dask_arrays_and_dicts_of_arrays(tmp_path):
    df = latent_data(2, 1800)
    for i, (a, b) in enumerate([(0, 400), (400, 400), (400, 1800)]):
        df.iloc[a:b].to_parquet(tmp_path / f"part{i}.parquet")
    ref = learn_spn(df, seed=0, **SMALL)
    with dask.config.set(SYNC):
        assert_same_circuit(ref.root, learn_spn(dd.read_parquet(str(tmp_path / "*.parquet")),
                                                seed=0, **SMALL).root)
        arr = da.from_array(df.to_numpy(np.int64), chunks=(500, -1))
        assert_same_circuit(ref.root, learn_spn(arr, columns=list(df), seed=0, **SMALL).root)
        cols = {c: da.from_array(df[c].to_numpy(), chunks=700) for c in df}
        assert_same_circuit(ref.root, learn_spn(cols, seed=0, **SMALL).root)
        sch = Schema([Variable.discrete(c, 4) for c in df])  # declared cards
        assert_same_circuit(learn_spn(df, sch, seed=0, **SMALL).root,
                            learn_spn(dd.from_pandas(df, npartitions=3), sch, seed=0,
                                      **SMALL).root)


def test_the_sample_is_a_bottom_k_that_merges_exactly():
    """Both paths choose the rows of the k smallest hashes: positions as numpy sorts them."""
    rng = np.random.default_rng(0)
    gid = np.sort(rng.choice(10 ** 6, 500, replace=False))
    h = C.row_hash(77, gid)
    assert np.unique(h).size == gid.size
    pos = C.bottom_k(77, gid, 40)
    np.testing.assert_array_equal(pos, np.sort(np.argsort(h)[:40]))
    codes = rng.integers(0, 3, (500, 2)).astype(np.int32)
    parts = [dask_spn.slice_counts(codes, gid, rows, ((0, 1), [], 77, 40), np.array([3, 3]))
             for rows in np.array_split(np.arange(500), 7)]
    merged = parts[0]
    for p in parts[1:]:
        merged = merged.merge(p)
    np.testing.assert_array_equal(np.sort(merged.gid), gid[pos])
    np.testing.assert_array_equal(merged.counts[0], np.bincount(codes[:, 0], minlength=3))
    assert merged.n == 500 and merged.first == gid[0]


def test_per_node_streams_make_the_result_independent_of_the_order_of_work():
    """A task's draws come from its node's own stream: learning level by level (every
    request batched, as a cluster does) instead of depth first gives the same circuit."""
    df = latent_data(3, 1500)
    ref = learn_spn(df, seed=4, **SMALL)
    opts = LearnOptions(**SMALL)
    table = Table(df.to_numpy(np.float64), make_schema(df), opts)
    learner = SliceLearner(table, opts, S.base_seed(4))
    order = []

    def answer(requests):
        order.append(len(requests))
        return [[MemStats(sl, opts) for sl in req] for req in requests]

    root = S.run_tasks(learner.learn(MemSlice(table, np.arange(1500), ()), range(8)), answer,
                       lambda r: False)
    assert max(order) > 1  # several tasks waited together
    assert_same_circuit(ref.root, flatten_products(root))


# ---------------------------------------------------------------------------- learn_spmn
def decision_problem(seed: int, n: int) -> pd.DataFrame:
    """O seen before D1; Y after D1; D2 sees Y; U depends on (H, D1, D2, Z); D1 = 2 never
    taken when O = 1 (an unseen decision value in a context)."""
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 2, n)
    o = np.where(rng.random(n) < 0.8, h, 1 - h)
    d1 = np.where(o == 1, rng.integers(0, 2, n), rng.integers(0, 3, n))
    y = np.where(rng.random(n) < 0.75, (h + d1) % 2, rng.integers(0, 2, n))
    d2 = rng.integers(0, 2, n)
    z = rng.integers(0, 3, n)
    u = 4.0 * (d2 == h) + 1.5 * (d1 == 1) + z - 2.0 * (d1 == 2) * h
    return pd.DataFrame({"O": o, "D1": d1, "Y": y, "D2": d2, "H": h, "Z": z, "U": u})


ORDER = [["O"], ["D1"], ["Y"], ["D2"], ["H", "Z", "U"]]


@pytest.mark.parametrize("unseen", ["pessimistic", "pooled"])
def test_learn_spmn_on_a_cluster_is_the_in_memory_fit(client, unseen):
    df = decision_problem(0, 3000)
    kw = {"unseen": unseen, "seed": 2, **SMALL}
    ref = learn_spmn(df, ORDER, ["D1", "D2"], "U", **kw)
    assert sum(isinstance(nd, N.Max) for nd in ref.nodes) >= 3
    got = learn_spmn(pieces(df, [0, 1000, 2000, 2000]), ORDER, ["D1", "D2"], "U",
                     client=client, **kw)
    assert_same_circuit(ref.root, got.root)
    X = df.to_numpy(np.float64)
    np.testing.assert_allclose(got.log_likelihood(X), ref.log_likelihood(X), rtol=1e-12)
    assert got.meu() == pytest.approx(ref.meu(), rel=1e-12)
    np.testing.assert_array_equal(got.policy(df[["O"]].to_dict("list")),
                                  ref.policy(df[["O"]].to_dict("list")))


def test_learn_spmn_simultaneous_decisions_and_a_given_schema():
    df = decision_problem(1, 1500)
    order = [["O"], ["D1", "D2"], ["Y", "H", "Z", "U"]]
    sch = Schema([Variable.discrete("O", 2), Variable.decision("D1", 3),
                  Variable.discrete("Y", 2), Variable.decision("D2", 2),
                  Variable.discrete("H", 2), Variable.discrete("Z", 3), Variable.utility("U")],
                 order)
    with dask.config.set(SYNC):
        for kw in ({"schema": sch}, {"decisions": ["D1", "D2"], "utility": "U"}):
            ref = learn_spmn(df, order, seed=0, **kw, **SMALL)
            got = learn_spmn(dd.from_pandas(df, npartitions=4), order, seed=0, **kw, **SMALL)
            assert_same_circuit(ref.root, got.root)
        with pytest.raises(DataError, match="'D1' never takes value 2"):
            learn_spmn(dd.from_pandas(df, npartitions=2), order, schema=sch, unseen="error")


# ---------------------------------------------------------------------------- bad input
def test_partitions_that_disagree_are_named(tmp_path):
    df = latent_data(4, 600)
    a, b, c = df.iloc[:200], df.iloc[200:400].copy(), df.iloc[400:]
    b["x1"] = b["x1"].astype(np.float64)
    with dask.config.set(SYNC):
        frames = [a, b, c]
        bad = dd.from_delayed([dask.delayed(f) for f in frames], meta=df.iloc[:0],
                              verify_meta=False)
        with pytest.raises(DataError, match=r"partition 1: column 'x1' has dtype float64"):
            learn_spn(bad, seed=0)
        frames = [a, df.iloc[200:400], c.drop(columns="w")]
        bad = dd.from_delayed([dask.delayed(f) for f in frames], meta=df.iloc[:0],
                              verify_meta=False)
        with pytest.raises(DataError, match=r"partition 2 lacks column 'w'"):
            learn_spn(bad, seed=0)
        b = df.iloc[200:400].copy()
        b["x0"] = b["x0"].astype(np.int32)
        for name, part in (("a", a), ("b", b), ("c", c)):
            part.to_parquet(tmp_path / f"{name}.parquet")
        with pytest.raises(DataError, match=r"partition 1: column 'x0' has dtype int32"):
            learn_spn(dd.read_parquet(str(tmp_path / "*.parquet")), seed=0)


def test_bad_values_name_the_partition_and_the_variable():
    df = latent_data(5, 600)
    sch = Schema([Variable.discrete(c, 3 if c.startswith("x") else 4) for c in df])
    with dask.config.set(SYNC):
        bad = df.astype(np.float64)
        bad.iloc[450, 2] = np.nan
        with pytest.raises(DataError, match=r"partition 2: variable 'x2' is NaN in row 50"):
            learn_spn(dd.from_pandas(bad, npartitions=3), sch, seed=0)
        bad = df.copy()
        bad.iloc[10, 0] = 7
        with pytest.raises(DataError, match=r"partition 0.*'x0'"):
            learn_spn(dd.from_pandas(bad, npartitions=3), sch, seed=0)
        const = df.assign(k=1)
        with pytest.raises(DataError, match="'k' is constant"):
            learn_spn(dd.from_pandas(const, npartitions=3), seed=0)
        with pytest.raises(DataError, match="no rows"):
            learn_spn(pieces(df.iloc[:0], []), seed=0)


def test_a_lost_worker_is_a_clear_error_never_a_partial_model(monkeypatch):
    """After the scheduler's retries a lost worker surfaces as a DistributedError (the
    worker-kill test itself is in tests/learn/test_distributed.py)."""
    class KilledWorker(Exception):
        pass

    df = latent_data(6, 900)
    real = dask_spn._level

    def flaky(cols, i, *args):  # every level pass loses partition 1 (the scan goes through)
        if i == 1:
            raise KilledWorker(f"partition {i}: worker lost")
        return real(cols, i, *args)

    monkeypatch.setattr(dask_spn, "_level", flaky)
    with dask.config.set(SYNC), pytest.raises(DistributedError, match="worker was lost"):
        learn_spn(dd.from_pandas(df, npartitions=3), seed=0, **SMALL)


def test_what_is_no_count_statistic_is_gathered_with_a_warning():
    df = latent_data(7, 800)
    with dask.config.set(SYNC):
        for hyper, why in (({"independence": "rdc"}, "rdc"),
                           ({"cluster_sample": None}, "cluster_sample")):
            ref = learn_spn(df, seed=0, min_instances_slice=100, **hyper)
            with pytest.warns(InMemoryWarning, match=why):
                got = learn_spn(dd.from_pandas(df, npartitions=2), seed=0,
                                min_instances_slice=100, **hyper)
            assert_same_circuit(ref.root, got.root)
