"""Minari as a data source: a dataset recorded here with Minari's own DataCollector (no
download) becomes transitions with terminations and truncations apart, and fits the model."""
import dask
import gymnasium as gym
import minari  # in the test extra (CI installs it): never skipped
import numpy as np
import pytest

from spmn import DataError
from spmn.envs import minari as M
from spmn.worldmodels.tabular.model import WorldModel


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """40 random FrozenLake episodes cut at 6 steps (many truncations), and the same steps
    logged by hand beside the collector."""
    root = tmp_path_factory.mktemp("minari")
    mp = pytest.MonkeyPatch()
    mp.setenv("MINARI_DATASETS_PATH", str(root))
    env = minari.DataCollector(gym.make("FrozenLake-v1", is_slippery=True,
                                        max_episode_steps=6), data_format="arrow")
    rng = np.random.default_rng(0)
    log = {k: [] for k in ("s", "a", "r", "s_next", "terminated", "truncated")}
    for e in range(40):
        s, _ = env.reset(seed=e)
        done = False
        while not done:
            a = int(rng.integers(4))
            sn, r, term, trunc, _ = env.step(a)
            for k, v in zip(log, (s, a, r, sn, term, trunc)):
                log[k].append(v)
            s, done = sn, term or trunc
    ds = env.create_dataset("frozenlake/random-v0", ref_min_score=0.0, ref_max_score=1.0,
                            algorithm_name="random")
    env.close()
    yield ds, {k: np.asarray(v) for k, v in log.items()}
    mp.undo()


@pytest.mark.filterwarnings("ignore::UserWarning")  # Minari asks for authors and links
def test_episodes_become_transitions_with_ends_kept_apart(recorded):
    ds, log = recorded
    t = M.transitions(ds)
    assert len(t["r"]) == ds.total_steps == len(log["r"])
    for k in log:
        np.testing.assert_array_equal(t[k], log[k], err_msg=k)
    assert t["terminated"].any() and t["truncated"].any()
    assert (t["truncated"] & ~t["terminated"]).any()  # cut by the time limit, not ended
    ends = np.flatnonzero(t["terminated"] | t["truncated"])
    np.testing.assert_array_equal(t["episode"][ends], np.arange(40))  # one end per episode
    assert t["step"][0] == 0 and t["step"][ends[0]] == ends[0]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_fit_from_minari_in_memory_and_by_partitions(recorded):
    ds, log = recorded
    ref = WorldModel("s", "a", "r", "terminated", progress=False).fit(log)
    m1 = WorldModel("s", "a", "r", "terminated", progress=False).fit(M.transitions(ds))
    parts = M.partitions(ds.spec.data_path, episodes_per_partition=7)
    assert parts.npartitions == 6
    with dask.config.set(scheduler="sync"):
        m2 = WorldModel("s", "a", "r", "terminated", progress=False).fit(parts)
    for m in (m1, m2):
        for k in ref.tables_:
            np.testing.assert_array_equal(m.tables_[k], ref.tables_[k])
        np.testing.assert_array_equal(m.tree_.var, ref.tree_.var)


def test_vector_observations_and_missing_datasets(tmp_path, monkeypatch):
    ep = minari.EpisodeData(id=3, observations={"pos": np.arange(6).reshape(3, 2),
                                                "flag": np.array([0, 1, 0])},
                            actions=np.array([1, 0]), rewards=np.zeros(2),
                            terminations=np.array([False, True]),
                            truncations=np.array([False, False]), infos={})
    rows = M._episode_rows(ep, "s", "a", "episode")
    assert set(rows) >= {"s_pos0", "s_pos1", "s_flag", "s_pos0_next", "a", "truncated"}
    np.testing.assert_array_equal(rows["s_pos1_next"], [3, 5])
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    with pytest.raises(DataError, match="does not download"):
        M.open_dataset("nowhere/none-v0")
