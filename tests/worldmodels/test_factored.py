"""Factored world models: G-test trees per next variable, an additive reward, and exact solves
(structured value diagrams and flat value iteration agree with each other and with a tabular
oracle on the enumerated learned model)."""
from __future__ import annotations

import itertools
import time
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import spmn
from spmn import DataError, SolverError, Variable
from spmn.errors import CoverageWarning
from spmn.reference import TabularMDP
from spmn.worldmodels import FactoredWorldModel
from spmn.worldmodels.factored.flat import reachable, solve_flat
from spmn.worldmodels.factored.structured import solve_structured

SETTINGS = dict(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------------- domains
def random_dbn(seed: int, d: int, m: int, end: bool):
    """A random DBN: each variable depends on itself, up to two others and maybe an action
    variable; sparse CPTs (so few successors); an additive reward with a pair term."""
    rng = np.random.default_rng(seed)
    cards = rng.choice([2, 3], size=d)
    acards = rng.choice([2, 3], size=m)
    parents = []
    for i in range(d):
        others = [j for j in range(d) if j != i]
        pa = [i, *rng.choice(others, size=int(rng.integers(0, min(2, d - 1) + 1)), replace=False)]
        if rng.random() < 0.8:
            pa.append(d + int(rng.integers(m)))
        parents.append(sorted(int(j) for j in pa))
    allc = np.r_[cards, acards]
    cpts = []
    for i, pa in enumerate(parents):
        T = rng.dirichlet(np.ones(cards[i]) * 0.7, size=tuple(allc[pa]))
        T[T < 0.15] = 0.0
        T /= T.sum(axis=-1, keepdims=True)
        cpts.append(T)
    w = rng.normal(size=(d + m, 3))
    pair = (int(rng.integers(d)), d + int(rng.integers(m)))
    wp = rng.normal(size=(3, 3))

    def sample(n, seed2):
        g = np.random.default_rng(seed2)
        X = np.c_[g.integers(0, cards, (n, d)), g.integers(0, acards, (n, m))]
        Sn = np.zeros((n, d), np.int64)
        for i, pa in enumerate(parents):
            P = cpts[i][tuple(X[:, j] for j in pa)]
            Sn[:, i] = (g.random(n)[:, None] > np.cumsum(P, axis=1)).sum(axis=1)
        r = w[np.arange(d + m), X].sum(axis=1) + wp[X[:, pair[0]], X[:, pair[1]]]
        logs = {f"x{i}": X[:, i] for i in range(d)}
        logs.update({f"x{i}_next": Sn[:, i] for i in range(d)})
        logs.update({f"a{k}": X[:, d + k] for k in range(m)})
        logs["r"] = r
        if end:
            logs["done"] = g.random(n) < np.where(X[:, 0] == 0, 0.3, 0.05)
        return logs

    return sample, parents, cards, acards


def chain_logs(d: int, m: int, n: int, seed: int = 0, goal: int = 3):
    """d binary fluents: x_i' depends on x_i, x_{i-1} and action bit a_{i mod m}; reward
    Σ_{i < goal} x_i - 0.1 Σ_k a_k (additive)."""
    rng = np.random.default_rng(seed)
    S, A = rng.integers(0, 2, (n, d)), rng.integers(0, 2, (n, m))
    nb = np.c_[np.zeros((n, 1), np.int64), S[:, :-1]]
    act = A[:, np.arange(d) % m]
    p1 = np.where(act == 1, 0.85 + 0.1 * S, 0.05 + 0.7 * S + 0.2 * nb)
    Sn = (rng.random((n, d)) < p1).astype(np.int64)
    logs = {f"x{i}": S[:, i] for i in range(d)}
    logs.update({f"x{i}_next": Sn[:, i] for i in range(d)})
    logs.update({f"a{k}": A[:, k] for k in range(m)})
    logs["r"] = S[:, :goal].sum(axis=1) - 0.1 * A.sum(axis=1)
    return logs


def fit(logs, d, m, **kw):
    kw.setdefault("progress", False)
    return FactoredWorldModel([f"x{i}" for i in range(d)], [f"a{k}" for k in range(m)],
                              **kw).fit(logs)


def oracle(model, gamma, horizon):
    """The learned model enumerated over all joint states as a TabularMDP (with an absorbing
    end state when episodes end) and solved by its exact solvers."""
    mdp = model.mdp_
    S = np.array(list(itertools.product(*[range(k) for k in mdp.state_cards])), np.int64)
    N, A = S.shape[0], mdp.n_actions
    X = mdp.all_actions(S)
    P = np.ones((N * A, N))
    for i in range(mdp.d):
        P *= mdp.factor(i, X)[:, S[:, i]]
    cont = mdp.continuation(X)
    full = np.zeros((A, N + 1, N + 1))
    full[:, :N, :N] = (P * cont[:, None]).reshape(N, A, N).transpose(1, 0, 2)
    full[:, :N, N] = (1.0 - cont).reshape(N, A).T
    full[:, N, N] = 1.0
    R = np.zeros((A, N + 1))
    R[:, :N] = mdp.reward.predict(X).reshape(N, A).T
    tab = TabularMDP(full, R, terminal=[N])
    sol = tab.finite_horizon(horizon, gamma) if horizon else tab.policy_iteration(gamma)
    V = sol.values[..., :N]
    return S, V


# ---------------------------------------------------------------------------- exactness
@settings(**SETTINGS)
@given(st.integers(0, 2**31), st.integers(3, 6), st.integers(1, 2), st.booleans(),
       st.sampled_from([None, 3]))
def test_structured_equals_flat_and_the_enumerated_model(seed, d, m, end, horizon):
    sample, *_ = random_dbn(seed, d, m, end)
    model = fit(sample(800, seed + 1), d, m, terminated="done" if end else None)
    gamma, tol = (0.7, 1e-12) if horizon is None else (0.9, 1e-8)
    S, V_ref = oracle(model, gamma, horizon)
    mdp = model.mdp_
    states = reachable(mdp, S, 10 ** 6)
    flat = solve_flat(mdp, states.astype(np.int64), gamma, horizon, tol)
    dense = solve_structured(mdp, gamma, horizon, tol)
    steps = [0] if horizon is None else range(horizon)
    for t in steps:
        Qf, Qd = flat.q_rows(mdp, S, t), dense.q_rows(mdp, S, t)
        np.testing.assert_allclose(Qd, Qf, rtol=0, atol=1e-10)
        ref = V_ref if horizon is None else V_ref[t]
        np.testing.assert_allclose(Qd.max(axis=1), ref, rtol=0, atol=1e-10)
    # the same model as a validated SPMN: its MEU given the state is max_a E[r | s, a]
    c = model.circuit_
    R = mdp.reward.predict(mdp.all_actions(S)).reshape(len(S), -1).max(axis=1)
    np.testing.assert_allclose(c.meu(model.circuit_evidence(S)), R, atol=1e-10)
    if np.prod(mdp.state_cards) <= 48:
        # the same update recursing on the diagrams (no dense tensors)
        diag = solve_structured(mdp, gamma, horizon, tol, dense_cells=0)
        for t in steps:
            np.testing.assert_allclose(diag.q_rows(mdp, S, t), dense.q_rows(mdp, S, t),
                                       rtol=0, atol=1e-10)


def test_value_iteration_stops_within_its_bound():
    model = fit(chain_logs(5, 2, 3000, goal=2), 5, 2)
    S, V_ref = oracle(model, 0.9, None)
    for tol in (1e-4, 1e-8):
        sol = model.solve(0.9, tol=tol, method="structured", start=S)
        assert np.abs(sol.value(S) - V_ref).max() < tol
        assert sol.residual < tol * 20 and sol.iterations > 10
        np.testing.assert_allclose(sol.values, sol.value(S), atol=1e-12)


# ---------------------------------------------------------------------------- learning
def test_recovers_the_true_parents():
    seed, d, m = 3, 6, 2
    sample, parents, cards, acards = random_dbn(seed, d, m, False)
    model = fit(sample(20_000, 0), d, m)
    names = [*(f"x{i}" for i in range(d)), *(f"a{k}" for k in range(m))]
    for i in range(d):
        assert model.parents_[f"x{i}_next"] == [names[j] for j in parents[i]], i
    assert model.split_p_ in model.split_scores_
    # the chain's parents too (self, neighbour, action bit)
    chain = fit(chain_logs(12, 3, 6000), 12, 3)
    for i in range(12):
        want = [*([f"x{i - 1}"] if i else []), f"x{i}", f"a{i % 3}"]
        assert chain.parents_[f"x{i}_next"] == want


def test_split_rule_is_a_significance_test_not_impurity():
    rng = np.random.default_rng(0)
    n = 4000
    logs = {f"x{i}": rng.integers(0, 2, n) for i in range(8)}
    logs.update({f"x{i}_next": rng.integers(0, 2, n) for i in range(8)})  # pure noise
    logs["a"], logs["r"] = rng.integers(0, 2, n), np.zeros(n)
    model = FactoredWorldModel([f"x{i}" for i in range(8)], "a", progress=False).fit(logs)
    assert all(p == [] for p in model.parents_.values())  # no split fits noise
    assert all(c.tolist() == [n] for k, c in model.coverage_.items() if k.endswith("_next"))


def test_additive_reward_is_exact_on_the_logs_and_generalizes():
    rng = np.random.default_rng(1)
    n, d = 3000, 6
    S, a = rng.integers(0, 2, (n, d)), rng.integers(0, 3, n)
    r = 2 * S[:, 0] - S[:, 1] + 3 * S[:, 2] * S[:, 3] + 0.5 * S[:, 4] * (a == 2) - 0.1 * a
    logs = {f"x{i}": S[:, i] for i in range(d)}
    logs.update({f"x{i}_next": S[:, i] for i in range(d)})
    logs["a"], logs["r"] = a, r
    model = FactoredWorldModel([f"x{i}" for i in range(d)], "a", progress=False).fit(logs)
    rew = model.reward_
    assert rew.residual_max < 1e-9 and rew.r2 == pytest.approx(1.0)
    assert {tuple(c) for c in rew.cols} >= {(2, 3), (4, 6)}
    assert not any(5 in c for c in rew.cols)  # x5 plays no part
    # every (state, action), seen or not, gets the true reward: the terms add up
    grid = np.array(list(itertools.product([0, 1], repeat=d)))
    for act in range(3):
        X = np.c_[grid, np.full(len(grid), act)]
        true = 2 * grid[:, 0] - grid[:, 1] + 3 * grid[:, 2] * grid[:, 3] + \
            0.5 * grid[:, 4] * (act == 2) - 0.1 * act
        np.testing.assert_allclose(rew.predict(X), true, atol=1e-9)
    assert "f(x2, x3)" in str(model.explain())


def test_fits_repeat_given_a_seed():
    logs = chain_logs(6, 2, 2000)
    a, b = fit(logs, 6, 2, seed=4), fit(logs, 6, 2, seed=4)
    assert a.split_p_ == b.split_p_ and a.parents_ == b.parents_
    for s, t in zip(a.trees_, b.trees_):
        np.testing.assert_array_equal(s.counts, t.counts)


# ---------------------------------------------------------------------------- scale
def test_a_200_variable_domain_fits_and_solves_structurally():
    logs = chain_logs(200, 4, 2000)
    t0 = time.perf_counter()
    # α pinned: this test is about scale, and on 2,000 rows α = 0.01 and 0.05 score within
    # noise of each other (0.05 keeps ~70 more weak parents and larger diagrams)
    model = fit(logs, 200, 4, split_p=1e-3)
    t1 = time.perf_counter()
    sol = model.solve(0.9, horizon=8)  # auto: successors explode, so structured
    t2 = time.perf_counter()
    assert sol.method == "structured"
    tree = sol.value_tree(0)
    assert {"x0", "x1", "x2"} <= set(tree.depends_on) and len(tree.depends_on) <= 10
    assert "of 200 variables" in str(tree)
    V = sol.value(logs_states(logs, 200)[:50])
    assert np.all(np.isfinite(V))
    assert t1 - t0 < 60 and t2 - t1 < 60, (t1 - t0, t2 - t1)  # ~1.5 s and ~0.4 s here


@pytest.mark.slow
def test_a_500_variable_domain_fits_and_solves_structurally():
    """The README's claim: 500 binary state variables (2^500 joint states) fit and solve."""
    logs = chain_logs(500, 4, 2000)
    model = fit(logs, 500, 4, split_p=1e-3)
    sol = model.solve(0.9, horizon=8)
    assert sol.method == "structured"
    tree = sol.value_tree(0)
    assert {"x0", "x1", "x2"} <= set(tree.depends_on) and len(tree.depends_on) <= 10
    S = logs_states(logs, 500)[:20]
    unread = [i for i in range(500) if f"x{i}" not in set(tree.depends_on)]
    far = S.copy()
    far[:, unread] = 1 - far[:, unread]  # the 490+ variables the value does not read
    V = sol.value(S)
    assert np.all(np.isfinite(V)) and np.array_equal(sol.value(far), V)


def logs_states(logs, d):
    return np.stack([logs[f"x{i}"] for i in range(d)], axis=1)


def test_no_joint_code_over_the_state_variables():
    """100 binary variables: keys beyond int64 (2^100 joint states) still fit and solve."""
    logs = chain_logs(100, 1, 1500, goal=2)
    model = fit(logs, 100, 1, split_p=1e-6)
    sol = model.solve(0.9, horizon=4, method="structured")
    S = logs_states(logs, 100)[:20]
    assert np.all(np.isfinite(sol.value(S)))
    # auto: the set reachable from one state exceeds max_states, so the structured solver runs
    assert model.solve(0.9, horizon=2, start=S[:1], max_states=10).method == "structured"


def test_flat_solutions_say_which_states_they_enumerated():
    rng = np.random.default_rng(0)
    n = 2000
    x, y, a = rng.integers(0, 2, n), rng.integers(0, 2, n), rng.integers(0, 2, n)
    logs = {"x": x, "y": y, "a": a, "x_next": x, "y_next": rng.integers(0, 2, n),
            "r": x + 0.5 * a}
    model = FactoredWorldModel(["x", "y"], "a", progress=False).fit(logs)
    sol = model.solve(0.9, method="flat", start=[[0, 0]])
    assert sol.states.shape == (2, 2) and set(sol.states[:, 0]) == {0}
    with pytest.raises(SolverError, match="start="):
        sol.value([1, 0])


# ---------------------------------------------------------------------------- answers
def test_solution_answers_every_state_and_joint_action_columns():
    logs = chain_logs(4, 2, 3000, goal=2)
    model = fit(logs, 4, 2)
    sol = model.solve(0.9)
    assert sol.method == "flat" and sol.states.shape == (16, 4)
    pol = sol.policy(sol.states)
    assert pol.shape == (16, 2) and set(np.unique(pol)) <= {0, 1}
    Q = sol.q(sol.states)
    assert Q.shape == (16, 4)
    np.testing.assert_array_equal(sol.value(sol.states), Q.max(axis=1))
    np.testing.assert_allclose(sol.values, sol.value(sol.states), atol=1e-12)
    with pytest.raises(DataError, match="'x2'"):
        sol.value(np.array([0, 1, 5, 0]))


def test_unseen_combinations_are_answered_by_the_factors():
    logs = chain_logs(4, 1, 3000, goal=2)
    keep = ~((logs["x0"] == 1) & (logs["x1"] == 1) & (logs["a0"] == 1))  # never logged
    logs = {k: v[keep] for k, v in logs.items()}
    model = fit(logs, 4, 1)
    out = model.predict([1, 1, 0, 0], [1])
    for i in range(4):
        p = out[f"x{i}_next"]
        assert np.all(np.isfinite(p)) and p.sum() == pytest.approx(1.0)
    assert out["reward"] == pytest.approx(1.9, abs=1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CoverageWarning)
        sol = model.solve(0.9, method="structured")
    assert np.isfinite(sol.value([1, 1, 0, 0]))


def test_auto_picks_flat_when_small_and_both_agree_through_the_model():
    logs = chain_logs(5, 2, 3000, goal=2)
    model = fit(logs, 5, 2)
    flat = model.solve(0.8, horizon=5)
    struct = model.solve(0.8, horizon=5, method="structured")
    assert flat.method == "flat" and struct.method == "structured"
    for t in range(5):
        np.testing.assert_allclose(flat.q(flat.states, t), struct.q(flat.states, t), atol=1e-10)
        assert flat.value_tree(t).depends_on == struct.value_tree(t).depends_on
    with pytest.raises(SolverError, match="method"):
        model.solve(0.8, method="nope")


def test_value_tree_readout():
    model = fit(chain_logs(8, 2, 4000, goal=2), 8, 2)
    tree = model.solve(0.9, method="structured").value_tree()
    assert tree.depends_on == ["x0", "x1"] and tree.n_leaves == 4
    text = str(tree)
    assert "depends on these 2 of 8 variables: x0, x1" in text and "x1 = 1:" in text
    grid = np.zeros((4, 8), np.int64)
    grid[:, :2] = [[0, 0], [0, 1], [1, 0], [1, 1]]
    np.testing.assert_allclose(tree.evaluate(grid), model.solve(0.9).value(grid), atol=1e-10)


# ---------------------------------------------------------------------------- honest about data
def test_coverage_per_leaf_and_thin_policy_warning():
    logs = chain_logs(3, 1, 400, goal=2)
    model = fit(logs, 3, 1, min_count=500)
    cov = model.coverage_
    assert set(cov) >= {"x0_next", "x1_next", "x2_next", "reward term x0", "reward term a0"}
    assert all(c.sum() == 400 for k, c in cov.items() if k.endswith("_next"))
    with pytest.warns(CoverageWarning, match="fewer than 500"):
        model.solve(0.9)
    lc = model.leaf_coverage(np.zeros((2, 3), np.int64), 1)
    assert lc["x0_next"].shape == (2,) and np.all(lc["x0_next"] > 0)
    quiet = fit(logs, 3, 1, min_count=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CoverageWarning)
        quiet.solve(0.9)



# ---------------------------------------------------------------------------- bad input
def test_bad_input_names_the_column():
    logs = chain_logs(3, 1, 200)
    names = ["x0", "x1", "x2"]
    bad = dict(logs)
    del bad["x1_next"]
    with pytest.raises(DataError, match="'x1_next'"):
        FactoredWorldModel(names, "a0", progress=False).fit(bad)
    bad = dict(logs, x2=logs["x2"] + 0.5)
    with pytest.raises(DataError, match="'x2'.*integer"):
        FactoredWorldModel(names, "a0", progress=False).fit(bad)
    bad = dict(logs, r=np.where(np.arange(200) == 3, np.nan, logs["r"]))
    with pytest.raises(DataError, match="'r'"):
        FactoredWorldModel(names, "a0", progress=False).fit(bad)
    bad = dict(logs, a0=logs["a0"][:-1])
    with pytest.raises(DataError, match="'a0'"):
        FactoredWorldModel(names, "a0", progress=False).fit(bad)
    with pytest.raises(DataError, match="'x0'.*outside 0..0"):
        FactoredWorldModel([Variable.discrete("x0", 1), "x1", "x2"], "a0",
                           progress=False).fit(logs)
    with pytest.raises(spmn.NotFittedError):
        FactoredWorldModel(names, "a0").solve()


def test_too_many_joint_actions_names_the_limit_and_the_excess():
    rng = np.random.default_rng(0)
    logs = {"x": rng.integers(0, 2, 50), "x_next": rng.integers(0, 2, 50), "r": np.zeros(50)}
    acts = [f"b{k}" for k in range(13)]
    logs.update({b: rng.integers(0, 2, 50) for b in acts})
    with pytest.raises(DataError, match=r"8,192 joint actions.*max_joint_actions=4,096 by 4,096"):
        FactoredWorldModel("x", acts, joint_actions="all", progress=False).fit(logs)
    with pytest.raises(DataError, match=r"50 joint actions \(distinct logged.*=40 by 10"):
        FactoredWorldModel("x", acts, max_joint_actions=40, progress=False).fit(logs)
    m = FactoredWorldModel("x", acts, progress=False).fit(logs)  # 50 logged of 8,192
    assert m.mdp_.n_actions == 50 and m.mdp_.restricted
    m = FactoredWorldModel("x", acts[:3], joint_actions="all", progress=False).fit(logs)
    assert m.mdp_.n_actions == 8


def _one_hot_logs(n_act: int, n: int, seed: int = 0):
    """Concurrent boolean actions of which at most one is on (RDDL's max-nondef-actions=1):
    action b_k moves x to k; a combination of two is never logged."""
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, n_act + 1, n)  # n_act: the no-op
    logs = {f"b{k}": (pick == k).astype(np.int64) for k in range(n_act)}
    x = rng.integers(0, n_act + 1, n)
    logs.update(x=x, x_next=np.where(pick < n_act, pick, x), r=(x == 2).astype(float))
    return logs


def test_the_max_runs_over_the_logged_joint_actions_only():
    logs = _one_hot_logs(4, 4000)
    acts = [f"b{k}" for k in range(4)]
    m = FactoredWorldModel("x", acts, progress=False, seed=0).fit(logs)
    assert m.joint_actions_.shape == (5, 4) and (m.joint_actions_.sum(axis=1) <= 1).all()
    everything = FactoredWorldModel("x", acts, joint_actions="all", progress=False, seed=0).fit(logs)
    assert everything.mdp_.n_actions == 16
    for method in ("structured", "flat"):
        sol = m.solve(0.9, method=method)
        pol = np.atleast_2d(sol.policy(np.arange(5)[:, None]))
        assert (pol.sum(axis=1) <= 1).all(), "a never-logged combination was chosen"
        assert (pol[[0, 1, 3, 4], 2] == 1).all()  # go to x = 2 ...
        assert pol[2].tolist() in ([0, 0, 0, 0], [0, 0, 1, 0])  # ... and stay (a tie)
    s1, s2 = m.solve(0.9, method="structured"), m.solve(0.9, method="flat")
    S = np.arange(5)[:, None]
    np.testing.assert_allclose(s1.value(S), s2.value(S), rtol=0, atol=1e-8)
    np.testing.assert_allclose(s1.q(S), s2.q(S), rtol=0, atol=1e-8)
    fin1, fin2 = m.solve(1.0, horizon=4, method="structured"), m.solve(1.0, horizon=4, method="flat")
    for t in range(4):
        np.testing.assert_allclose(fin1.value(S, t), fin2.value(S, t), rtol=0, atol=1e-10)
    # the circuit's one-step MEU is the best allowed action's expected reward
    circ = m.to_circuit()
    E = m.circuit_evidence(S)
    one = m.solve(1.0, horizon=1, method="flat")
    np.testing.assert_allclose(circ.meu(E), one.value(S, 0), rtol=0, atol=1e-12)
    # an explicit set, saved and loaded with the model
    rows = np.eye(4, dtype=np.int64)[[0, 2]]
    g = FactoredWorldModel("x", acts, joint_actions=rows, progress=False, seed=0).fit(logs)
    assert g.mdp_.n_actions == 2
    with pytest.raises(DataError, match="joint_actions row 0"):
        FactoredWorldModel("x", acts, joint_actions=np.full((1, 4), 2), progress=False).fit(logs)
    with pytest.raises(DataError, match="one column per action"):
        FactoredWorldModel("x", acts, joint_actions=np.zeros((2, 3), int), progress=False).fit(logs)


# ---------------------------------------------------------------------------- as an SPMN
def test_circuit_validates_and_reproduces_the_model():
    logs = chain_logs(4, 2, 3000, goal=2)
    logs["done"] = (logs["x3"] == 1) & (logs["a1"] == 1)
    model = fit(logs, 4, 2, terminated="done")
    c = model.circuit_
    c.validate()
    assert c.decisions == ("a0", "a1")
    S = np.array(list(itertools.product([0, 1], repeat=4)), np.int64)
    mdp = model.mdp_
    R = mdp.reward.predict(mdp.all_actions(S)).reshape(len(S), -1)
    np.testing.assert_allclose(c.meu(model.circuit_evidence(S)), R.max(axis=1), atol=1e-12)
    # with the joint action and the next state observed: log p(s' | s, a) + a constant
    rng = np.random.default_rng(0)
    Sn, joint = rng.integers(0, 2, S.shape), rng.integers(0, 4, len(S))
    E = model.circuit_evidence(S, joint, Sn)
    X = mdp.with_actions(S, joint)
    logp = sum(np.log(mdp.factor(i, X)[np.arange(len(S)), Sn[:, i]]) for i in range(4))
    ll = c.log_likelihood(E)
    copies = [v for v in c.schema if "|" in v.name]
    const = -sum(np.log(v.k) for v in copies)
    np.testing.assert_allclose(ll[np.isfinite(logp)], logp[np.isfinite(logp)] + const, atol=1e-10)


def test_explain_dbn_and_dot():
    model = fit(chain_logs(4, 2, 3000, goal=2), 4, 2)
    text = str(model.explain())
    assert "x1_next          <- x0, x1, a1" in text and "reward: E[r | s, a]" in text
    g = model.to_networkx()
    assert set(g.predecessors("x2_next")) == {"x1", "x2", "a0"}
    assert set(g.predecessors("r")) == {"x0", "x1", "a0", "a1"}
    dot = model.to_dot()
    assert dot.startswith("digraph dbn") and '"x0" -> "x1_next";' in dot


def test_save_load_round_trip(tmp_path):
    logs = chain_logs(4, 2, 2000, goal=2)
    logs["done"] = logs["x3"] == 1
    model = fit(logs, 4, 2, terminated="done")
    path = spmn.save(model, tmp_path / "factored.json")
    back = spmn.load(path)
    assert isinstance(back, FactoredWorldModel) and back.parents_ == model.parents_
    assert "pickle" not in path.read_text()
    S = np.array(list(itertools.product([0, 1], repeat=4)))
    for h in (None, 3):
        a, b = model.solve(0.9, horizon=h), back.solve(0.9, horizon=h)
        np.testing.assert_array_equal(a.value(S), b.value(S))
        np.testing.assert_array_equal(a.policy(S), b.policy(S))
    np.testing.assert_array_equal(back.reward_.predict(np.zeros((1, 6), np.int64)),
                                  model.reward_.predict(np.zeros((1, 6), np.int64)))


def test_flat_row_index_is_exact_even_when_hashes_collide(monkeypatch):
    from spmn.worldmodels.factored import flat
    rng = np.random.default_rng(3)
    S = np.unique(rng.integers(0, 3, (300, 6)), axis=0)
    T = np.concatenate([S[rng.permutation(len(S))[:100]], rng.integers(0, 4, (200, 6))])

    def brute(S, T):
        return np.array([next((i for i, r in enumerate(S) if (r == t).all()), -1) for t in T])
    want = brute(S, T)
    np.testing.assert_array_equal(flat._Index(S).find(T), want)
    # a weak hash (the row sum) collides everywhere: lookups stay exact
    monkeypatch.setattr(flat, "_MULT", np.ones(4096, np.uint64))
    np.testing.assert_array_equal(flat._Index(S).find(T), want)
    one = S[:1]  # unique hashes in the index, but an unknown row with a known hash
    q = np.array([[S[0, 1], S[0, 0], *S[0, 2:]]])
    got = flat._Index(one).find(q)
    assert got[0] == (0 if (q == one).all() else -1)


def test_flat_solver_bounds_its_memory_and_says_so(monkeypatch):
    from spmn.errors import SolverError
    from spmn.worldmodels.factored import flat
    logs = chain_logs(5, 2, 3000, goal=2)
    m = FactoredWorldModel([f"x{i}" for i in range(5)], ["a0", "a1"], progress=False,
                           smoothing=0.5, seed=0).fit(logs)
    S = m.seen_states_
    X = m.mdp_.all_actions(S)
    whole = flat.successors(m.mdp_, X)
    monkeypatch.setattr(flat, "BUDGET", 7)  # chunks of at most 7 successors (or one row)
    parts = list(flat.chunked_successors(m.mdp_, X))
    assert len(parts) > 1
    src = np.concatenate([off + s for off, s, _, _ in parts])
    np.testing.assert_array_equal(src, whole[0])
    np.testing.assert_array_equal(np.concatenate([n for _, _, n, _ in parts]), whole[1])
    np.testing.assert_array_equal(np.concatenate([p for _, _, _, p in parts]), whole[2])
    np.testing.assert_array_equal(flat.row_counts(m.mdp_, X), np.bincount(whole[0]))
    states = flat.reachable(m.mdp_, S, 10_000)
    small = flat.reachable(m.mdp_, S, 10_000, max_transitions=10)
    assert states is not None and small is None
    ref = m.solve(0.9, method="flat")  # chunked build, same values as the structured solver
    np.testing.assert_allclose(ref.value(S), m.solve(0.9, method="structured").value(S),
                               rtol=0, atol=1e-8)
    monkeypatch.setattr(flat, "MAX_TRANSITIONS", 10)
    with pytest.raises(SolverError, match=r"more than 10 \(s, a, s'\) transitions, the flat solver's limit"):
        m.solve(0.9, method="flat")
    m.solve(0.9)  # auto: falls back to the structured solver


def test_layered_flat_solve_is_exact_where_it_answers():
    """Finite horizon from start states: the states within H - 1 steps suffice, and V_t is
    exact for every state reachable by step t (equal to the closed solve); later lookups raise."""
    from spmn.errors import SolverError
    from spmn.worldmodels.factored import flat
    rng = np.random.default_rng(0)
    n = 4000
    x, a, z = rng.integers(0, 10, n), rng.integers(0, 2, n), rng.integers(0, 2, n)
    logs = {"x": x, "z": z, "a": a, "x_next": np.minimum(x + a, 9),
            "z_next": rng.integers(0, 2, n), "r": (x >= 2).astype(float) + 0.1 * z}
    m = FactoredWorldModel(["x", "z"], "a", progress=False, seed=0).fit(logs)
    H, start = 4, np.array([[0, 0]])
    closed = flat.solve_flat(m.mdp_, flat.reachable(m.mdp_, start, 10_000), 1.0, H)
    S, steps = flat.reachable(m.mdp_, start, 10_000, depth=H - 1)
    assert steps.max() >= 2 and len(S) < len(closed.model.states)
    lay = flat.solve_flat(m.mdp_, S.astype(np.int64), 1.0, H, steps=steps)
    for t in range(H):
        ok = S[steps <= t].astype(np.int64)
        np.testing.assert_allclose(lay.q_rows(m.mdp_, ok, t), closed.q_rows(m.mdp_, ok, t),
                                   rtol=0, atol=1e-12)
    late = S[steps == steps.max()][:1].astype(np.int64)
    with pytest.raises(SolverError, match="steps from the start states"):
        lay.q_rows(m.mdp_, late, 0)
    with pytest.raises(SolverError, match="needs a finite horizon"):
        flat.solve_flat(m.mdp_, S.astype(np.int64), 0.9, None, steps=steps)
    # the model picks the layered set when the closed one is over max_states
    small = m.solve(1.0, horizon=H, start=start, max_states=10)
    assert small.method == "flat" and small.result.model.steps is not None
    assert small.value(start[0]) == pytest.approx(closed.q_rows(m.mdp_, start, 0).max(), abs=1e-12)
    # covers() says exactly which (state, step) lookups answer, without trying them one by one
    every = np.array([[x, z] for x in range(10) for z in (0, 1)], np.int64)
    for t in range(H):
        mask = small.covers(every, t)
        for row, ok in zip(every, mask):
            try:
                small.value(row, t)
                answered = True
            except SolverError:
                answered = False
            assert answered == ok
        assert mask.any() and not mask.all() if t < H - 1 else mask.any()
    assert m.solve(1.0, horizon=H, method="structured").covers(every, 0).all()


def test_many_constant_columns_need_no_joint_code():
    """84 columns, most constant (Navigation 10's layout): no code over more than 64 axes."""
    rng = np.random.default_rng(0)
    n, d = 3000, 84
    S = np.zeros((n, d), np.int64)
    S[:, 0] = rng.integers(0, 2, n)
    a = rng.integers(0, 2, n)
    logs = {f"x{i}": S[:, i] for i in range(d)}
    logs.update({f"x{i}_next": S[:, i] for i in range(d)})
    logs["x0_next"] = a
    logs.update(a=a, r=S[:, 0].astype(float) + a)
    m = FactoredWorldModel([Variable.discrete(f"x{i}", 2) for i in range(d)], ["a"],
                           progress=False, seed=0).fit(logs)
    assert m.parents_["x0_next"] == ["a"]
    sol = m.solve(0.9, horizon=3, start=S[:1])
    assert sol.value(S[0]) == pytest.approx(2.0 + 0.9 * 2.0 + 0.81 * 2.0)
