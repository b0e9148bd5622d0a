"""World models learned from logs: exact for the learned model, close to the true MDP."""
import numpy as np
import pytest

import spmn
from spmn import DataError, NotFittedError, SolverError, Variable
from spmn.reference import TabularMDP
from spmn.worldmodels.tabular.model import WorldModel

V_STAR = 0.1804715784


@pytest.fixture(scope="module")
def frozenlake():
    mdp = TabularMDP.from_gymnasium("FrozenLake-v1", is_slippery=True)
    return mdp, mdp.sample_transitions(100_000, seed=0)


@pytest.fixture(scope="module")
def learned(frozenlake):
    _, logs = frozenlake
    return WorldModel("s", "a", "r", "terminated", progress=False).fit(logs)


def counts_mdp(mdp, logs):
    """The certainty-equivalent tabular MDP: transition and reward frequencies of the logs."""
    S, A = mdp.n_states, mdp.n_actions
    s, a, r, sn, t = (logs[k] for k in ("s", "a", "r", "s_next", "terminated"))
    N = np.zeros((A, S, S))
    Rsum = np.zeros((A, S, S))
    np.add.at(N, (a, s, sn), 1.0)
    np.add.at(Rsum, (a, s, sn), r)
    tot = N.sum(axis=2, keepdims=True)
    seen_s = np.unique(s)
    terminal = np.setdiff1d(np.unique(sn[t]), seen_s)
    P = np.where(tot > 0, N / np.maximum(tot, 1), np.eye(S)[None])
    R = np.where(N > 0, Rsum / np.maximum(N, 1), 0.0)
    return TabularMDP(P, R, terminal=terminal), seen_s


@pytest.mark.slow
def test_frozenlake_from_random_logs(frozenlake, learned):
    mdp, _ = frozenlake
    sol = learned.solve(0.95)
    start = int(np.argmax(mdp.start))
    assert abs(sol.value([start])[0] - V_STAR) < 0.01
    greedy = sol.policy(np.arange(16))
    true_value = mdp.policy_evaluation(greedy, 0.95).values[start]
    assert true_value >= 0.99 * V_STAR
    assert learned.n_regions_ == 11  # one per non-terminal state: the splits were all needed
    vi = learned.solve(0.95, method="value_iteration", tol=1e-10)
    np.testing.assert_allclose(vi.values, sol.values, atol=1e-10)


def test_unrestricted_structure_equals_certainty_equivalent(frozenlake):
    mdp, logs = frozenlake
    wm = WorldModel("s", "a", "r", "terminated", structure="full", progress=False).fit(logs)
    ce, seen = counts_mdp(mdp, logs)
    exact = ce.policy_iteration(0.95)
    sol = wm.solve(0.95)
    np.testing.assert_allclose(sol.value(np.arange(16)), exact.values, atol=1e-8)
    assert wm.n_regions_ == seen.size


def test_the_circuit_is_the_model(learned):
    sol = learned.solve(0.95)
    c = learned.circuit_
    seen = np.array([s for s in range(16) if s not in learned.terminal_states_.ravel()])
    X = np.full((seen.size, len(c.schema)), np.nan)
    X[:, 0] = seen
    bound = 0.95 * sol.values
    np.testing.assert_allclose(c.meu(X, interface_values=bound), sol.value(seen), atol=1e-12)
    np.testing.assert_array_equal(c.policy(X, interface_values=bound), sol.policy(seen))
    # predict() is the circuit's conditional p(s', r | s, a) = p(s, a, r, s') / p(s, a)
    p = learned.predict([14], 2)
    assert p["prob"].sum() == pytest.approx(1.0, abs=1e-12)
    E = np.array([[14, 2, r, sn] for sn, r in zip(p["next"][:, 0], p["reward"])], float)
    E0 = E.copy()
    E0[:, 2:] = np.nan
    np.testing.assert_allclose(np.exp(c.log_likelihood(E) - c.log_likelihood(E0)), p["prob"], atol=1e-12)
    assert set(p["next"][:, 0]) == {10, 14, 15} and p["reward"][p["next"][:, 0] == 15].tolist() == [1.0]


def test_unrolled_learned_template_matches_finite_horizon(learned):
    H = 3
    U = learned.template_.unroll(H, 0.9)
    fh = learned.solve(0.9, horizon=H)
    X = np.full((1, len(U.schema)), np.nan)
    X[0, U.schema.index("s_0")] = 0
    assert U.meu(X)[0] == pytest.approx(fh.value([0])[0], abs=1e-12)


def test_explain_save_load_and_unseen_states(tmp_path, learned):
    ex = learned.explain()
    assert ex.parents["s_next"] == {"state": ["s"], "action": ["a"]}
    assert ex.parents["r"] == {"state": ["s"], "action": ["a"]}
    assert "s_next" in str(ex)
    path = spmn.save(learned, tmp_path / "wm.json")
    back = spmn.load(path)
    a, b = learned.solve(0.95), back.solve(0.95)
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.policy(np.arange(16)), b.policy(np.arange(16)))
    # holes and the goal are never logged as a state: terminal, value 0, never NaN
    v = a.value(np.arange(16))
    assert np.isfinite(v).all() and (v[[5, 7, 11, 12, 15]] == 0).all()


def test_bad_input(frozenlake):
    _, logs = frozenlake
    small = {k: v[:500] for k, v in logs.items()}
    with pytest.raises(DataError, match="state column 'pos' is missing"):
        WorldModel("pos", "a", "r", "terminated").fit(small)
    with pytest.raises(DataError, match="next-state column 's_next' is missing"):
        WorldModel("s", "a", "r", "terminated").fit({k: v for k, v in small.items() if k != "s_next"})
    bad = dict(small, terminated=np.where(small["terminated"], 2, 0))
    with pytest.raises(DataError, match="must be boolean"):
        WorldModel("s", "a", "r", "terminated").fit(bad)
    with pytest.raises(DataError, match="column 'a' has code 3, outside 0..1"):
        WorldModel("s", Variable.decision("a", 2), "r", "terminated").fit(small)
    with pytest.raises(DataError, match="reward column 'r' has NaN"):
        WorldModel("s", "a", "r", "terminated").fit(dict(small, r=np.full(500, np.nan)))
    with pytest.raises(NotFittedError, match="not fitted"):
        WorldModel("s", "a").solve()
    wm = WorldModel("s", "a", "r", "terminated", progress=False).fit(small)
    with pytest.raises(SolverError, match="without a horizon"):
        wm.solve(1.0)
    assert np.isfinite(wm.solve(1.0, horizon=5).values).all()


def taxi_columns(mdp, logs):
    def decode(s):
        s = np.asarray(s)
        dest, s = s % 4, s // 4
        p, s = s % 5, s // 5
        return s // 5, s % 5, p, dest
    names = ["row", "col", "passenger", "destination"]
    cols = {n: x for n, x in zip(names, decode(logs["s"]))}
    cols.update({f"{n}_next": x for n, x in zip(names, decode(logs["s_next"]))})
    cols.update(a=logs["a"], r=logs["r"], terminated=logs["terminated"])
    return names, cols, np.stack(decode(mdp.observation), axis=1)


@pytest.mark.slow
def test_taxi_factored_state():
    mdp = TabularMDP.from_gymnasium("Taxi-v4")
    logs = mdp.sample_transitions(200_000, seed=1)
    names, cols, states = taxi_columns(mdp, logs)
    wm = WorldModel(names, "a", "r", "terminated", progress=False).fit(cols)
    sol = wm.solve(0.99)
    greedy = sol.policy(states)
    exact = mdp.policy_iteration(0.99)
    true_v = mdp.start @ mdp.policy_evaluation(greedy, 0.99).values
    v_star = mdp.start @ exact.values
    assert v_star == pytest.approx(6.3274643149, abs=1e-8)
    assert abs(true_v - v_star) < 0.05
    starts = np.flatnonzero(mdp.start > 0)
    Q = mdp.q_values(exact.values, 0.99)
    share = np.isclose(Q[greedy[starts], starts], exact.values[starts], atol=1e-9).mean()
    assert share > 0.95
    ex = wm.explain()
    assert "row" in ex.parents["row_next"]["state"] and "a" in ex.parents["row_next"]["action"]
