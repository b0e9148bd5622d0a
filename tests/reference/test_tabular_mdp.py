"""spmn.reference tabular MDPs: known values, pymdptoolbox agreement, random-MDP properties, logged data,
Gymnasium import and bad input."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from spmn.errors import SpmnError
from spmn.reference import MDPSolution, TabularMDP, random_mdp

# pymdptoolbox 4.0b3 compares sparse matrices with 0 when validating: harmless under scipy 1.17
pytestmark = pytest.mark.filterwarnings(
    "ignore:Comparing a sparse matrix with 0:scipy.sparse.SparseEfficiencyWarning")


def _exact(mdp: TabularMDP, policy: np.ndarray, gamma: float) -> np.ndarray:
    """Dense numpy solve of (I - γ P_π) V = r_π with terminal rows zeroed (independent of the solvers)."""
    S = mdp.n_states
    P = mdp.P if not mdp.is_sparse else np.stack([m.toarray() for m in mdp.P])
    Ppi = P[policy, np.arange(S)].copy()
    Ppi[mdp.terminal] = 0.0
    b = mdp.expected_reward[policy, np.arange(S)]
    return np.linalg.solve(np.eye(S) - gamma * Ppi, b)


def _toolbox_args(mdp: TabularMDP):
    """pymdptoolbox wants P as (A, S, S) (or a list of sparse (S, S)) and R as (S, A)."""
    P = list(mdp.P) if mdp.is_sparse else np.array(mdp.P)
    return P, mdp.expected_reward.T.copy()


# ---------------------------------------------------------------------------- known values
def test_deterministic_frozenlake_value_is_gamma_to_the_fifth():
    pytest.importorskip("gymnasium")
    mdp = TabularMDP.from_gymnasium("FrozenLake-v1", is_slippery=False)
    for sol in (mdp.value_iteration(0.9, tol=1e-12), mdp.policy_iteration(0.9)):
        assert abs(sol.values[0] - 0.9 ** 5) < 1e-12
        assert mdp.start_value(sol.values) == pytest.approx(0.59049, abs=1e-12)


def test_slippery_frozenlake_known_value():
    pytest.importorskip("gymnasium")
    mdp = TabularMDP.from_gymnasium("FrozenLake-v1", map_name="4x4", is_slippery=True)
    pi = mdp.policy_iteration(0.95)
    vi = mdp.value_iteration(0.95, tol=1e-11)
    assert abs(pi.values[0] - 0.1804715784) < 1e-10
    assert abs(vi.values[0] - 0.1804715784) < 1e-10
    assert np.array_equal(vi.policy, pi.policy)
    assert np.all(pi.values[mdp.terminal] == 0.0)


def test_taxi_known_value_over_start_states():
    pytest.importorskip("gymnasium")
    mdp = TabularMDP.from_gymnasium("Taxi-v4")
    pi = mdp.policy_iteration(0.99)
    vi = mdp.value_iteration(0.99, tol=1e-10)
    assert abs(mdp.start_value(pi.values) - 6.3274643149) < 1e-9
    assert np.abs(vi.values - pi.values).max() < 1e-10
    assert pi.residual <= 1e-10


# ---------------------------------------------------------------------------- pymdptoolbox
@pytest.mark.parametrize("gamma", [0.9, 0.99])
@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_policy_iteration_matches_pymdptoolbox(gamma, kind):
    mdptoolbox = pytest.importorskip("mdptoolbox.mdp", exc_type=ImportError)
    mdp = random_mdp(60, 4, 1.0 if kind == "dense" else 0.1, seed=3)
    P, R = _toolbox_args(mdp)
    ref = mdptoolbox.PolicyIteration(P, R, gamma)
    ref.run()
    ours = mdp.policy_iteration(gamma)
    assert np.abs(ours.values - np.asarray(ref.V)).max() < 1e-9
    assert np.array_equal(ours.policy, np.asarray(ref.policy))
    vi = mdp.value_iteration(gamma, tol=1e-10)
    assert np.abs(vi.values - np.asarray(ref.V)).max() < 1e-9
    assert np.array_equal(vi.policy, np.asarray(ref.policy))


def test_pymdptoolbox_value_iteration_is_our_backward_induction():
    """pymdptoolbox's ValueIteration returns T^k 0 after k sweeps: our finite_horizon(k) reproduces it,
    and shows why its values are off while ours are within tol of V*."""
    mdptoolbox = pytest.importorskip("mdptoolbox.mdp", exc_type=ImportError)
    mdp = random_mdp(80, 3, 1.0, seed=11)
    P, R = _toolbox_args(mdp)
    gamma = 0.95
    ref = mdptoolbox.ValueIteration(P, R, gamma, epsilon=1e-6)
    ref.run()
    fh = mdp.finite_horizon(ref.iter, gamma)
    assert np.abs(fh.values[0] - np.asarray(ref.V)).max() < 1e-9
    assert np.array_equal(fh.policy[0], np.asarray(ref.policy))
    exact = _exact(mdp, mdp.policy_iteration(gamma).policy, gamma)
    ours = mdp.value_iteration(gamma, tol=1e-9)
    assert np.abs(ours.values - exact).max() < 1e-9
    assert np.abs(np.asarray(ref.V) - exact).max() > 1e-3  # the toolbox stops on the span only


def test_finite_horizon_matches_pymdptoolbox():
    mdptoolbox = pytest.importorskip("mdptoolbox.mdp", exc_type=ImportError)
    mdp = random_mdp(40, 3, 0.2, seed=5)
    P, R = _toolbox_args(mdp)
    ref = mdptoolbox.FiniteHorizon(P, R, 0.9, 7)
    ref.run()
    ours = mdp.finite_horizon(7, 0.9)
    assert ours.values.shape == (8, 40) and ours.policy.shape == (7, 40)
    assert np.abs(ours.values - np.asarray(ref.V).T).max() < 1e-12
    assert np.array_equal(ours.policy, np.asarray(ref.policy).T)
    assert np.all(ours.values[7] == 0.0)


# ---------------------------------------------------------------------------- properties
@st.composite
def mdps(draw):
    S = draw(st.integers(1, 25))
    A = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**31 - 1))
    shape = draw(st.sampled_from(["dense", "sparse", "banded"]))
    base = random_mdp(S, A, 1.0 if shape == "dense" else draw(st.floats(0.05, 0.6)), seed,
                      bandwidth=draw(st.integers(0, 3)) if shape == "banded" else None)
    rng = np.random.default_rng(seed)
    terminal = rng.random(S) < draw(st.floats(0.0, 0.4))
    terminal[rng.integers(S)] = False
    R = rng.normal(size=(A, S, S)) if draw(st.booleans()) else base.expected_reward
    return TabularMDP(base.P, R, terminal=terminal)


@settings(max_examples=60, deadline=None)
@given(mdp=mdps(), gamma=st.floats(0.0, 0.99))
def test_solvers_agree_on_random_mdps(mdp, gamma):
    pi = mdp.policy_iteration(gamma)
    vi = mdp.value_iteration(gamma, tol=1e-10)
    exact = _exact(mdp, pi.policy, gamma)
    scale = max(1.0, np.abs(exact).max())
    assert np.abs(pi.values - exact).max() <= 1e-10 * scale
    assert np.abs(vi.values - exact).max() < 1e-10
    assert pi.residual <= 1e-10 * scale and vi.residual <= 1e-10 * scale
    assert np.all(pi.values[mdp.terminal] == 0) and np.all(vi.values[mdp.terminal] == 0)
    # exact policy evaluation by every linear-solve method
    for method in ("direct", "banded", "iterative"):
        ev = mdp.policy_evaluation(pi.policy, gamma, method=method)
        assert np.abs(ev.values - exact).max() <= 1e-10 * scale
        assert ev.residual <= 1e-10 * scale
    # the optimal value dominates the value of a random policy
    other = np.random.default_rng(0).integers(mdp.n_actions, size=mdp.n_states)
    assert np.all(mdp.policy_evaluation(other, gamma).values <= pi.values + 1e-9 * scale)


@settings(max_examples=30, deadline=None)
@given(mdp=mdps(), gamma=st.floats(0.0, 0.95))
def test_q_values_and_stochastic_policies(mdp, gamma):
    sol = mdp.policy_iteration(gamma)
    Q = mdp.q_values(sol.values, gamma)
    assert Q.shape == (mdp.n_actions, mdp.n_states)
    assert np.abs(Q.max(axis=0) - sol.values).max() <= 1e-9 * max(1.0, np.abs(sol.values).max())
    assert np.array_equal(Q.argmax(axis=0)[~mdp.terminal], sol.policy[~mdp.terminal]) or \
        np.allclose(Q[sol.policy, np.arange(mdp.n_states)], Q.max(axis=0), atol=1e-9)
    # a one-hot stochastic policy is the deterministic one; a mixture is the mixture of Bellman rows
    onehot = np.eye(mdp.n_actions)[sol.policy]
    ev = mdp.policy_evaluation(onehot, gamma)
    assert np.allclose(ev.values, sol.values, atol=1e-9 * max(1.0, np.abs(sol.values).max()))
    mix = np.full((mdp.n_states, mdp.n_actions), 1.0 / mdp.n_actions)
    vm = mdp.policy_evaluation(mix, gamma).values
    Qm = mdp.q_values(vm, gamma)
    assert np.allclose(Qm.mean(axis=0), vm, atol=1e-9 * max(1.0, np.abs(vm).max()))


def test_value_iteration_tolerance_on_slow_mixing_mdp():
    mdp = random_mdp(400, 3, bandwidth=2, seed=1)
    for gamma, tol in [(0.99, 1e-6), (0.999, 1e-5)]:
        pi = mdp.policy_iteration(gamma)
        exact = _exact(mdp, pi.policy, gamma)
        vi = mdp.value_iteration(gamma, tol=tol)
        assert np.abs(vi.values - exact).max() < tol
        assert np.abs(pi.values - exact).max() < 1e-9


def test_dense_and_sparse_storage_agree():
    sparse = random_mdp(50, 3, 0.3, seed=2)
    dense = TabularMDP(np.stack([m.toarray() for m in sparse.P]), sparse.expected_reward)
    assert sparse.is_sparse and not dense.is_sparse
    coo = TabularMDP(sp.coo_array(np.asarray(dense.P)), sparse.expected_reward)  # 3-D sparse input
    a, b = sparse.policy_iteration(0.97), dense.policy_iteration(0.97)
    assert np.abs(a.values - b.values).max() < 1e-11 and np.array_equal(a.policy, b.policy)
    c = coo.value_iteration(0.97, tol=1e-10)
    assert coo.is_sparse and np.abs(c.values - b.values).max() < 1e-10


def test_terminal_rewards_excluded_and_entry_reward_counted():
    # 0 -a0-> 1 (reward 2, terminal) ; 0 -a1-> 0 (reward 0.5). Terminal 1 has a self-loop worth 5.
    P = np.array([[[0, 1], [0, 1]], [[1, 0], [0, 1]]], dtype=float)
    R = np.array([[[0, 2], [0, 5]], [[0.5, 0], [0, 5]]], dtype=float)
    mdp = TabularMDP(P, R, terminal=[1])
    sol = mdp.policy_iteration(0.9)
    assert sol.values[1] == 0.0
    assert sol.values[0] == pytest.approx(max(2.0, 0.5 / (1 - 0.9)))
    assert sol.policy.dtype == np.int64 and sol.values.dtype == np.float64
    assert isinstance(sol, MDPSolution)
    fh = mdp.finite_horizon(3)
    # undiscounted, k steps to go: collect 0.5 for k-1 steps, then enter the terminal for 2
    assert fh.values[:, 0].tolist() == [3.0, 2.5, 2.0, 0.0]
    assert fh.policy[:, 0].tolist() == [1, 1, 0]


def test_ties_broken_by_lowest_action():
    P = np.tile(np.eye(3), (4, 1, 1))
    mdp = TabularMDP(P, np.ones((4, 3)))
    for sol in (mdp.value_iteration(0.5), mdp.policy_iteration(0.5), mdp.finite_horizon(2)):
        assert np.all(sol.policy == 0)


# ---------------------------------------------------------------------------- logged data
def test_sample_transitions_columns_and_frequencies():
    mdp = random_mdp(6, 2, 1.0, seed=4)
    mdp = TabularMDP(mdp.P, mdp.expected_reward, terminal=[5], max_episode_steps=7)
    d = mdp.sample_transitions(20_000, seed=9)
    assert set(d) >= {"s", "a", "r", "s_next", "terminated"}
    assert all(len(v) == 20_000 for v in d.values())
    assert d["terminated"].dtype == bool and d["s"].dtype == np.int64
    assert np.array_equal(d["terminated"], d["s_next"] == 5)
    assert np.allclose(d["r"], mdp.expected_reward[d["a"], d["s"]])
    # episode boundaries: after terminated/truncated the next state is a fresh start, else s_next
    cont = ~(d["terminated"] | d["truncated"])[:-1]
    assert np.array_equal(d["s"][1:][cont], d["s_next"][:-1][cont])
    ends = np.flatnonzero(d["terminated"] | d["truncated"])
    assert np.all(np.diff(np.concatenate([[-1], ends])) <= 7)
    assert not (d["terminated"] & d["truncated"]).any()
    # empirical P[a, s, ·] against the model
    P = mdp.P
    for a, s in [(0, 0), (1, 2)]:
        m = (d["a"] == a) & (d["s"] == s)
        freq = np.bincount(d["s_next"][m], minlength=6) / m.sum()
        assert np.abs(freq - P[a, s]).max() < 5 / np.sqrt(m.sum())
    again = mdp.sample_transitions(20_000, seed=9)
    assert all(np.array_equal(d[k], again[k]) for k in d)


def test_sample_transitions_transition_rewards():
    base = random_mdp(5, 2, 1.0, seed=8)
    R = np.random.default_rng(0).normal(size=(2, 5, 5))
    for P in (np.asarray(base.P), [sp.csr_array(m) for m in base.P]):
        Rin = R if isinstance(P, np.ndarray) else [sp.csr_array(r) for r in R]
        mdp = TabularMDP(P, Rin, terminal=[4])
        d = mdp.sample_transitions(2000, seed=1, max_episode_steps=10)
        assert np.array_equal(d["r"], R[d["a"], d["s"], d["s_next"]])
        assert np.allclose(mdp.expected_reward[:, :4], (np.asarray(base.P) * R).sum(axis=2)[:, :4])
        assert np.all(mdp.expected_reward[:, 4] == 0.0)


def test_sample_transitions_policies():
    mdp = random_mdp(30, 4, 0.2, seed=6)
    pol = np.arange(30) % 4
    d = mdp.sample_transitions(3000, policy=pol, seed=np.random.default_rng(1))
    assert np.array_equal(d["a"], pol[d["s"]])
    d = mdp.sample_transitions(3000, policy=pol, epsilon=0.5, seed=1)
    off = np.mean(d["a"] != pol[d["s"]])
    assert abs(off - 0.5 * 0.75) < 0.05
    d = mdp.sample_transitions(500, policy=lambda s: 3, seed=1)
    assert np.all(d["a"] == 3)
    probs = np.tile([0.0, 0.0, 0.25, 0.75], (30, 1))
    d = mdp.sample_transitions(4000, policy=probs, seed=2)
    assert set(np.unique(d["a"])) <= {2, 3} and abs(np.mean(d["a"] == 3) - 0.75) < 0.03
    r = mdp.sample_transitions(4000, seed=2)
    assert abs(np.bincount(r["a"], minlength=4) / 4000 - 0.25).max() < 0.03


def test_sample_transitions_replays_gymnasium_exactly():
    gym = pytest.importorskip("gymnasium")
    for env_id, kw in [("FrozenLake-v1", {"is_slippery": False}), ("Taxi-v4", {})]:
        mdp = TabularMDP.from_gymnasium(env_id, **kw)
        opt = mdp.policy_iteration(0.95).policy
        d = mdp.sample_transitions(3000, policy=opt, epsilon=0.2, seed=3)
        assert d["terminated"].sum() > 5 and d["truncated"].sum() >= 0
        env = gym.make(env_id, **kw)
        env.reset(seed=0)
        fresh = True
        for s, a, r, s2, term, trunc in zip(d["s"], d["a"], d["r"], d["s_next"], d["terminated"],
                                            d["truncated"]):
            if fresh:
                env.reset()
                env.unwrapped.s = int(s)
            obs, rew, te, tr, _ = env.step(int(a))
            assert (obs, rew, te, tr) == (s2, r, term, trunc)
            fresh = te or tr
        env.close()


# ---------------------------------------------------------------------------- Gymnasium import
def test_gymnasium_models_match_env_dynamics():
    gym = pytest.importorskip("gymnasium")
    cases = [("FrozenLake-v1", {}), ("FrozenLake-v1", {"map_name": "8x8", "is_slippery": False}),
             ("FrozenLake8x8-v1", {}), ("Taxi-v4", {}), ("CliffWalking-v1", {}),
             ("CliffWalkingSlippery-v1", {})]
    for env_id, kw in cases:
        if env_id not in gym.envs.registry:
            continue
        mdp = TabularMDP.from_gymnasium(env_id, **kw)
        env = gym.make(env_id, **kw)
        u = env.unwrapped
        nS = u.observation_space.n
        assert mdp.env_id == env_id and mdp.n_actions == u.action_space.n
        assert np.allclose(mdp.start[:nS], u.initial_state_distrib)
        assert mdp.max_episode_steps == (env.spec.max_episode_steps or 200)
        r = mdp.expected_reward
        for s in np.flatnonzero(~mdp.terminal[:nS]):
            for a in range(mdp.n_actions):
                assert r[a, s] == pytest.approx(sum(p * rr for p, _, rr, _ in u.P[s][a]), abs=1e-12)
        env.close()
    fl = TabularMDP.from_gymnasium("FrozenLake-v1")
    assert fl.env_kwargs["map_name"] == "4x4" and fl.env_kwargs["is_slippery"] is True
    assert fl.terminal.sum() == 5 and fl.n_states == 16 and fl.max_episode_steps == 100
    taxi = TabularMDP.from_gymnasium("Taxi-v4")
    assert taxi.n_states == 504 and taxi.terminal.sum() == 4
    assert np.count_nonzero(taxi.start) == 300 and np.allclose(taxi.start[taxi.start > 0], 1 / 300)
    env = gym.make("Taxi-v4").unwrapped
    for copy_of in taxi.observation[500:]:
        row, col, pas, dest = env.decode(int(copy_of))
        assert pas == dest and (row, col) == env.locs[dest]  # the drop-off state
    # the same 8x8 map loaded both ways has the same optimal values
    a = TabularMDP.from_gymnasium("FrozenLake8x8-v1").policy_iteration(0.95).values
    b = TabularMDP.from_gymnasium("FrozenLake-v1", map_name="8x8").policy_iteration(0.95).values
    assert np.abs(a - b).max() < 1e-12


# ---------------------------------------------------------------------------- bad input
def test_bad_input_raises_clear_errors():
    P = np.full((2, 3, 3), 1 / 3)
    R = np.zeros((2, 3))
    bad = P.copy()
    bad[1, 2, 0] = 0.5
    with pytest.raises(SpmnError, match=r"P\[a=1, s=2, :\] sums to"):
        TabularMDP(bad, R)
    neg = P.copy()
    neg[0, 1] = [1.2, -0.2, 0.0]
    with pytest.raises(SpmnError, match="negative probability"):
        TabularMDP(neg, R)
    with pytest.raises(SpmnError, match="negative probability"):
        TabularMDP([sp.csr_array(neg[0]), sp.csr_array(P[1])], R)
    with pytest.raises(SpmnError, match=r"shape \(A, S, S\)"):
        TabularMDP(np.full((2, 3, 4), 0.25), R)
    with pytest.raises(SpmnError, match="R has shape"):
        TabularMDP(P, np.zeros((3, 2)))
    with pytest.raises(SpmnError, match="NaN"):
        TabularMDP(P, np.full((2, 3), np.nan))
    with pytest.raises(SpmnError, match="terminal"):
        TabularMDP(P, R, terminal=[5])
    with pytest.raises(SpmnError, match="start puts mass on terminal"):
        TabularMDP(P, R, terminal=[0], start=0)
    mdp = TabularMDP(P, R)
    for g in (1.0, -0.1, 1.5):
        with pytest.raises(SpmnError, match="gamma"):
            mdp.value_iteration(g)
        with pytest.raises(SpmnError, match="gamma"):
            mdp.policy_iteration(g)
    with pytest.raises(SpmnError, match="policy"):
        mdp.policy_evaluation(np.array([0, 1]), 0.9)
    with pytest.raises(SpmnError, match="actions must lie"):
        mdp.policy_evaluation(np.array([0, 1, 2]), 0.9)
    with pytest.raises(SpmnError, match="rounding floor"):
        random_mdp(5, 2, seed=0).value_iteration(0.99, tol=1e-17)
    with pytest.raises(SpmnError, match="policy"):
        mdp.sample_transitions(5, policy="greedy")
    pytest.importorskip("gymnasium")
    with pytest.raises(SpmnError, match="unknown Gymnasium id 'FrozenLake-v9'"):
        TabularMDP.from_gymnasium("FrozenLake-v9")
    with pytest.raises(SpmnError, match="fickle_passenger"):
        TabularMDP.from_gymnasium("Taxi-v4", fickle_passenger=True)
    with pytest.raises(SpmnError, match="no tabular model"):
        TabularMDP.from_gymnasium("CartPole-v1")


@pytest.mark.parametrize("kind", ["dense", "sparse", "chain"])
def test_krylov_first_evaluation_is_exact_or_falls_back_to_lu(kind):
    """evaluate_policy's GMRES cycles before the LU of a small system: on a fast-mixing dense
    or sparse P_π they meet the residual target (no LU); on a slowly mixing chain (a dense
    array that is nearly a cycle) they may not, and the LU answers. Exact either way."""
    from spmn.reference._linsolve import is_exact
    from spmn.reference.tabular import evaluate_policy

    S, g = 200, 0.99
    rng = np.random.default_rng(3)
    if kind == "chain":
        P = np.roll(np.eye(S), 1, axis=1) * 0.999 + 0.001 / S
        P /= P.sum(axis=1, keepdims=True)
    else:
        mdp = random_mdp(S, 1, 1.0 if kind == "dense" else 10 / S, 0, sparse=kind == "sparse")
        P = mdp.P[0]
    b = rng.random(S)
    x, iters, res = evaluate_policy(P, b, g)
    want = np.linalg.solve(np.eye(S) - g * (P.toarray() if sp.issparse(P) else P), b)
    np.testing.assert_allclose(x, want, rtol=1e-10, atol=1e-10)
    assert is_exact(b, x, res, g)
    if kind != "chain":
        assert 2 <= iters <= 2 * 41  # matrix-vector products: the Krylov cycles answered
