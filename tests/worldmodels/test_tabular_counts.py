"""The tabular world model fitted from dask collections equals the in-memory fit: the same
region tree, equal count tables and coverage, values within 1e-12, whatever the partitioning."""
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

from spmn import DataError, Variable
from spmn.errors import CoverageWarning
from spmn.reference import TabularMDP
from spmn.worldmodels.tabular.model import WorldModel

DASK_SYNC = {"scheduler": "sync"}


def logs(seed: int, n: int, k: int = 6, n_rewards: int = 3) -> pd.DataFrame:
    """Random transitions over two state variables and one action with structure and noise."""
    rng = np.random.default_rng(seed)
    x, y, a = rng.integers(0, k, n), rng.integers(0, 3, n), rng.integers(0, 3, n)
    xn = np.where(rng.random(n) < 0.2, rng.integers(0, k, n), (x + a) % k)
    yn = np.where(x == 0, 0, rng.integers(0, 3, n))
    r = (xn == k - 1) + rng.integers(0, n_rewards, n) * 0.25
    return pd.DataFrame({"x": x, "x_next": xn, "y": y, "y_next": yn, "a": a, "r": r,
                         "done": rng.random(n) < 0.05})


def assert_same_model(m1: WorldModel, m2: WorldModel) -> None:
    t1, t2 = m1.tree_.to_arrays(), m2.tree_.to_arrays()
    for k in t1:
        np.testing.assert_array_equal(t1[k], t2[k], err_msg=f"tree {k}")
    assert m1.tables_.keys() == m2.tables_.keys()
    for k in m1.tables_:
        assert m1.tables_[k].dtype == m2.tables_[k].dtype, k
        np.testing.assert_array_equal(m1.tables_[k], m2.tables_[k], err_msg=f"table {k}")
    for k in ("seen_states_", "seen_counts_", "terminal_states_", "state_cards_",
              "action_cards_"):
        np.testing.assert_array_equal(getattr(m1, k), getattr(m2, k), err_msg=k)
    assert m1.n_transitions_ == m2.n_transitions_
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CoverageWarning)
        v1, v2 = m1.solve(0.9).values, m2.solve(0.9).values
    np.testing.assert_allclose(v2, v1, rtol=1e-12, atol=1e-12)


def fit_both(df, parts, **hyper):
    kw = {"states": ["x", "y"], "actions": ["a"], "reward": "r", "terminated": "done",
          "progress": False}
    kw.update(hyper)
    m1 = WorldModel(**kw).fit(df)
    with dask.config.set(DASK_SYNC):
        m2 = WorldModel(**kw).fit(parts)
    return m1, m2


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10 ** 6), n=st.integers(30, 600), npart=st.integers(1, 9),
       n_rewards=st.sampled_from([1, 3, 40]), structure=st.sampled_from(["learn", "full"]),
       max_regions=st.sampled_from([None, 4]))
def test_any_partitioning_gives_the_in_memory_model(seed, n, npart, n_rewards, structure,
                                                    max_regions):
    """Reward classes by value and by quantile, both structures, region caps."""
    df = logs(seed, n, n_rewards=n_rewards)
    m1, m2 = fit_both(df, dd.from_pandas(df, npartitions=npart), structure=structure,
                      max_regions=max_regions, min_samples_split=5, split_p=0.05)
    assert_same_model(m1, m2)
    if structure == "full" and max_regions is None:
        assert m1.n_regions_ > 1


def test_frozenlake_logs_with_schema_variables_and_dask_arrays():
    mdp = TabularMDP.from_gymnasium("FrozenLake-v1", is_slippery=True)
    data = mdp.sample_transitions(20_000, seed=3)
    states = [Variable.discrete("s", 16)]
    acts = [Variable.discrete("a", 4, role="decision")]
    m1 = WorldModel(states, acts, "r", "terminated", progress=False).fit(data)
    cols = {k: da.from_array(np.asarray(v), chunks=3000) for k, v in data.items()}
    with dask.config.set(DASK_SYNC):
        m2 = WorldModel(states, acts, "r", "terminated", progress=False).fit(cols)
    assert m1.n_regions_ == m2.n_regions_ > 1
    assert_same_model(m1, m2)


def test_empty_partitions_are_fine():
    df = logs(5, 400)
    pieces = [df.iloc[:0], df.iloc[:150], df.iloc[150:150], df.iloc[150:], df.iloc[:0]]
    ddf = dd.concat([dd.from_pandas(p, npartitions=1, sort=False) for p in pieces])
    assert ddf.npartitions == 5
    m1, m2 = fit_both(df, ddf)
    assert_same_model(m1, m2)


def test_parquet_files_on_a_local_cluster(tmp_path):
    """Parquet read by dask, counted on two in-process workers; the active client is used."""
    df = logs(11, 3000)
    for i in range(4):
        df.iloc[i * 750:(i + 1) * 750].to_parquet(tmp_path / f"part{i}.parquet")
    m1 = WorldModel(["x", "y"], ["a"], "r", "done", progress=False).fit(df)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        ddf = dd.read_parquet(str(tmp_path / "*.parquet"))
        m2 = WorldModel(["x", "y"], ["a"], "r", "done", progress=False).fit(ddf)
        m3 = WorldModel(["x", "y"], ["a"], "r", "done", progress=False).fit(ddf, client=client)
    assert_same_model(m1, m2)
    assert_same_model(m1, m3)


def _delayed_frame(frames):
    return dd.from_delayed([dask.delayed(f) for f in frames], meta=frames[0],
                           verify_meta=False)


def test_partitions_that_disagree_are_named():
    df = logs(2, 90)
    a, b, c = df.iloc[:30], df.iloc[30:60].copy(), df.iloc[60:]
    b["x"] = b["x"].astype(np.float64)
    with dask.config.set(DASK_SYNC), pytest.raises(DataError, match=r"partition 1: column 'x' "
                                                                    r"has dtype float64"):
        WorldModel(["x", "y"], ["a"], "r", "done", progress=False).fit(_delayed_frame([a, b, c]))
    with dask.config.set(DASK_SYNC), pytest.raises(DataError, match=r"partition 2 lacks "
                                                                    r"column 'y_next'"):
        WorldModel(["x", "y"], ["a"], "r", "done", progress=False).fit(
            _delayed_frame([a, df.iloc[30:60], c.drop(columns="y_next")]))
    bad = c.copy()
    bad.loc[bad.index[3], "x"] = -1
    with dask.config.set(DASK_SYNC), pytest.raises(DataError, match=r"partition 2: column 'x' "
                                                                    r"has negative code"):
        WorldModel(["x", "y"], ["a"], "r", "done", progress=False).fit(_delayed_frame([a, b.astype(
            {"x": np.int64}), bad]))


def test_parquet_files_whose_dtypes_differ_are_named(tmp_path):
    df = logs(1, 300)
    b = df.iloc[100:200].copy()
    b["y"] = b["y"].astype(np.int32)
    for name, part in (("a", df.iloc[:100]), ("b", b), ("c", df.iloc[200:])):
        part.to_parquet(tmp_path / f"{name}.parquet")
    with dask.config.set(DASK_SYNC), pytest.raises(DataError, match=r"partition 1: column 'y' "
                                                                    r"has dtype int32"):
        WorldModel(["x", "y"], ["a"], "r", "done", progress=False).fit(
            dd.read_parquet(str(tmp_path / "*.parquet")))


def test_no_rows_at_all_is_an_error():
    df = logs(2, 50).iloc[:0]
    with dask.config.set(DASK_SYNC), pytest.raises(DataError, match="no transitions"):
        WorldModel(["x", "y"], ["a"], "r", "done", progress=False).fit(
            dd.from_pandas(df, npartitions=1))


@pytest.mark.xdist_group(name="numba-kernels")
def test_node_contingency_gives_the_factored_split_tables():
    """What a tree grown by split tests reads at its frontier, counted per partition: the raw
    (value, target) tables of the factored learner's numba ``_node_tables`` (min_leaf=1)."""
    from spmn.learn.distributed import merge_stats
    from spmn.worldmodels.factored.trees import _node_tables
    from spmn.worldmodels.tabular.counts import contingency_tables, node_contingency

    rng = np.random.default_rng(7)
    n, p, kmax, k = 3000, 4, 5, 3
    X = rng.integers(0, kmax, (n, p))
    y = (X[:, 0] + rng.integers(0, 2, n)) % k
    node = rng.choice([0, 2, 3, 6], n)
    cands = np.array([2, 3, 6])
    cuts = [0, 700, 700, 2100, n]  # an empty partition too
    parts = [node_contingency(node[a:b], X[a:b], cands, kmax, y[a:b], k)
             for a, b in itertools.pairwise(cuts)]
    st_all = parts[0]
    for s in parts[1:]:
        st_all = merge_stats(st_all, s)
    T = contingency_tables(st_all, cands.size, p, kmax, k)
    for c, nd in enumerate(cands):
        rows = np.flatnonzero(node == nd)
        want = _node_tables(X.astype(np.int8), y, rows, k, kmax, np.zeros(p, np.bool_), 1)[0]
        np.testing.assert_array_equal(T[c], want)
        np.testing.assert_array_equal(st_all["marg"][c], want.sum(axis=2))


@pytest.mark.parametrize("structure", ["learn", "full"])
def test_more_state_variables_than_numpy_has_axes(structure):
    """80 boolean state columns (numpy's index arithmetic takes at most 64 axes): episode ends
    are told apart by their rows, in memory and on dask, and the model solves and simulates."""
    rng = np.random.default_rng(3)
    n, d = 2000, 80
    S = np.zeros((n, d), np.int64)
    S[:, :3] = rng.integers(0, 2, (n, 3))
    S[:, 70:] = rng.integers(0, 2, (n, 10))  # columns past the 64th vary too
    a = rng.integers(0, 3, n)
    Sn = S.copy()
    Sn[:, 0] = np.where(rng.random(n) < 0.8, a % 2, S[:, 0])
    Sn[:, 75] = np.where(rng.random(n) < 0.5, S[:, 1], Sn[:, 75])
    done = (S[:, 1] == 1) & (rng.random(n) < 0.3)
    df = pd.DataFrame({**{f"s{j}": S[:, j] for j in range(d)},
                       **{f"s{j}_next": Sn[:, j] for j in range(d)},
                       "a": a, "r": S[:, 0] + 0.5 * Sn[:, 75], "done": done})
    kw = {"states": [f"s{j}" for j in range(d)], "actions": ["a"], "reward": "r",
          "terminated": "done", "progress": False, "structure": structure, "seed": 0}
    m1 = WorldModel(**kw).fit(df)
    with dask.config.set(DASK_SYNC):
        m2 = WorldModel(**kw).fit(dd.from_pandas(df, npartitions=3))
    assert_same_model(m1, m2)
    ends = np.unique(Sn[done], axis=0)
    assert m1.tables_["trans"].shape[2] == m1.tree_.n_regions + ends.shape[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CoverageWarning)
        sol = m1.solve(0.9, horizon=4)
    assert np.isfinite(sol.value(S[0]))
    roll = m1.rollout(lambda s: np.zeros(len(s), np.int64), 4, 5, seed=0)
    assert roll is not None
