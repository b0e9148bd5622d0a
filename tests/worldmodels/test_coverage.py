"""Coverage made visible: counts behind every (region / state, action), CoverageWarning when the
greedy policy rests on thin data or a state was never logged, never 'terminal' for unseen."""
import warnings

import numpy as np
import pytest

import spmn
from spmn import DataError
from spmn.errors import CoverageWarning
from spmn.reference import TabularMDP
from spmn.worldmodels.tabular import coverage
from spmn.worldmodels.tabular.model import WorldModel


N_OBS = 500  # Taxi's observations (the MDP adds absorbing copies of the episode ends)


@pytest.fixture(scope="module")
def taxi():
    mdp = TabularMDP.from_gymnasium("Taxi-v4")
    logs = mdp.sample_transitions(20_000, seed=0)
    return mdp, logs, WorldModel("s", "a", "r", "terminated", progress=False).fit(logs)


def test_counts_are_readable_and_equal_the_logs(taxi):
    mdp, logs, m = taxi
    assert m.coverage_.shape == (m.n_regions_, mdp.n_actions)
    assert m.coverage_.sum() == 20_000
    C = m.state_coverage(np.arange(N_OBS))
    brute = np.zeros((N_OBS, mdp.n_actions), np.int64)
    np.add.at(brute, (logs["s"], logs["a"]), 1)
    np.testing.assert_array_equal(C, brute)
    assert m.state_coverage(int(logs["s"][0])).shape == (mdp.n_actions,)


def test_thin_taxi_logs_warn_with_counts_and_data_needed(taxi):
    mdp, logs, m = taxi
    with pytest.warns(CoverageWarning, match=r"relies on actions logged fewer than 30 times in "
                      r"\d+ of the logged states.*needs 185 samples.*times the data") as rec:
        sol = m.solve(0.95)
    report = coverage.policy_coverage(m, sol.result.policy, 30)
    assert report.thin_states > 0 and report.fewest < 30
    per_state = m.state_coverage(m.seen_states_)[np.arange(m.seen_states_.shape[0]),
                                                 sol.result.policy[m.tree_.route(m.seen_states_)]]
    assert report.thin_states == int((per_state < 30).sum())
    assert report.unseen_states == N_OBS - len(np.unique(np.r_[logs["s"], logs["s_next"]]))
    assert f"{report.unseen_states} states were never logged" in str(rec[0].message)
    # every never-logged state is reported as unseen when asked for, and never as terminal
    never = np.setdiff1d(np.arange(N_OBS), np.r_[logs["s"], logs["s_next"]])
    assert never.size > 50
    with pytest.warns(CoverageWarning, match=f"{never.size} of {N_OBS} states asked for "
                      "were never logged"):
        sol.value(np.arange(N_OBS))
    with pytest.warns(CoverageWarning, match="never logged"):
        out = m.predict(s=[int(never[0])], a=[0])
    assert out["prob"].sum() == pytest.approx(1.0)


def test_hoeffding_samples():
    # ln(2/δ) / (2ε²) at ε = 0.1, δ = 0.05 is 184.4
    assert coverage.samples_needed() == 185
    assert coverage.samples_needed(0.05, 0.05) == 738


def test_plenty_of_data_is_silent():
    mdp = TabularMDP.from_gymnasium("FrozenLake-v1", is_slippery=True)
    m = WorldModel("s", "a", "r", "terminated", progress=False).fit(
        mdp.sample_transitions(100_000, seed=0))
    with warnings.catch_warnings():
        warnings.simplefilter("error", CoverageWarning)
        sol = m.solve(0.95)
        sol.value(np.arange(16))  # every state logged (holes and goal as episode ends)


def test_episode_ends_stay_terminal_and_say_why(taxi):
    mdp, logs, m = taxi
    end = m.terminal_states_[0]
    with pytest.raises(DataError, match="logged only as the end of an episode"):
        m.predict(s=end.tolist(), a=[0])


def test_rows_are_matched_without_joint_codes():
    """find() matches rows of any width (no product of cardinalities is formed)."""
    rng = np.random.default_rng(0)
    table = rng.integers(0, 2, (500, 300))
    S = np.vstack([table[rng.integers(0, 500, 40)], rng.integers(0, 2, (10, 300))])
    idx = coverage.find(table, S)
    for i, row in enumerate(S):
        hits = np.flatnonzero((table == row).all(axis=1))
        assert (idx[i] in hits) if hits.size else idx[i] == -1


def test_coverage_survives_save_and_load(taxi, tmp_path):
    _, _, m = taxi
    back = spmn.load(spmn.save(m, tmp_path / "taxi.json"))
    np.testing.assert_array_equal(back.coverage_, m.coverage_)
    np.testing.assert_array_equal(back.seen_counts_, m.seen_counts_)
    assert back.min_count == 30


def test_taxi_model_file_is_small(tmp_path):
    mdp = TabularMDP.from_gymnasium("Taxi-v4")
    m = WorldModel("s", "a", "r", "terminated", progress=False).fit(
        mdp.sample_transitions(200_000, seed=1))
    path = spmn.save(m, tmp_path / "taxi.json")
    size = path.stat().st_size + path.with_suffix(".npz").stat().st_size
    assert size < 1_000_000, size
    back = spmn.load(path)
    for k, v in m.tables_.items():
        np.testing.assert_array_equal(back.tables_[k], v)


def test_continuous_columns_name_the_kind_that_takes_them():
    logs = {"s": np.array([0.5, 1.5]), "a": np.array([0, 1]), "r": np.zeros(2),
            "s_next": np.array([1.5, 0.5])}
    with pytest.raises(DataError, match="ContinuousWorldModel.*GaussianWorldModel"):
        WorldModel("s", "a", "r").fit(logs)
