"""Templates compiled from tabular MDPs reproduce the tabular solvers exactly."""
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spmn import SolverError, ValidationError
from spmn.reference import TabularMDP, random_mdp
from spmn.worldmodels.recurrent import Template
from spmn.worldmodels.tabular.compile_mdp import compile_mdp

SETTINGS = dict(max_examples=20, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def make_mdp(seed, S, A, density, n_terminal, sas):
    rng = np.random.default_rng(seed)
    base = random_mdp(S, A, density=density, seed=rng)
    P = base.P
    P = np.stack([p.toarray() for p in P]) if isinstance(P, tuple) else np.asarray(P)
    R = rng.normal(size=(A, S, S)) if sas else rng.normal(size=(A, S))
    n_terminal = min(n_terminal, S - 1)
    term = rng.choice(S, size=n_terminal, replace=False) if n_terminal else None
    if density < 1 and rng.random() < 0.5:
        P = [sp.csr_array(P[a]) for a in range(A)]
    return TabularMDP(P, R, terminal=term)


mdps = st.builds(make_mdp, st.integers(0, 2**31), st.integers(2, 12), st.integers(1, 4),
                 st.sampled_from([1.0, 0.3]), st.integers(0, 3), st.booleans())


@settings(**SETTINGS)
@given(mdps, st.sampled_from([0.0, 0.5, 0.9, 0.99]))
def test_template_equals_tabular_solvers(backend, mdp, gamma):
    T = compile_mdp(mdp, backend=backend)
    exact = mdp.policy_iteration(gamma)
    vi = T.value_iteration(gamma, tol=1e-11)
    pi = T.policy_iteration(gamma)
    np.testing.assert_allclose(vi.values, exact.values, rtol=0, atol=1e-10)
    np.testing.assert_allclose(pi.values, exact.values, rtol=0, atol=1e-10)
    # optimal actions agree (compare Q, since ties may be broken differently by rounding)
    Q = mdp.q_values(exact.values, gamma)
    S = np.arange(mdp.n_states)
    for pol in (vi.policy, pi.policy):
        np.testing.assert_allclose(Q[pol, S], exact.values, atol=1e-9)
    np.testing.assert_allclose(pi.q, Q.T, atol=1e-9)
    assert vi.residual <= 1e-10 * max(1, np.abs(exact.values).max()) / max(1e-3, 1 - gamma) + 1e-12
    assert np.all(vi.values[mdp.terminal] == 0) and np.all(pi.values[mdp.terminal] == 0)


@settings(**SETTINGS)
@given(mdps, st.integers(0, 6), st.sampled_from([1.0, 0.9]))
def test_finite_horizon_equals_backward_induction(backend, mdp, H, gamma):
    T = compile_mdp(mdp, backend=backend)
    ours = T.finite_horizon(H, gamma)
    ref = mdp.finite_horizon(H, gamma)
    np.testing.assert_allclose(ours.values, ref.values, atol=1e-10, rtol=0)
    assert ours.values.shape == (H + 1, mdp.n_states)


def test_frozenlake_anchors():
    mdp = TabularMDP.from_gymnasium("FrozenLake-v1", is_slippery=True)
    T = compile_mdp(mdp)
    start = int(np.argmax(mdp.start))
    assert T.policy_iteration(0.95).values[start] == pytest.approx(0.1804715784, abs=1e-10)
    # the published RSPMN's FrozenLake anchor: undiscounted H = 300 (0.822947)
    assert T.finite_horizon(300, 1.0).values[0, start] == pytest.approx(0.822947, abs=1e-6)


def test_unrolled_template_is_a_valid_spmn_with_the_finite_horizon_meu():
    mdp = make_mdp(3, 6, 2, 0.5, 1, True)
    T = compile_mdp(mdp)
    for H, gamma in ((1, 1.0), (3, 0.9)):
        U = T.unroll(H, gamma)  # validated on construction, determinism included
        assert U.decisions == tuple(f"a_{t}" for t in range(H))
        X = np.full((mdp.n_states, len(U.schema)), np.nan)
        X[:, U.schema.index("s_0")] = np.arange(mdp.n_states)
        np.testing.assert_allclose(U.meu(X), T.finite_horizon(H, gamma).values[0], atol=1e-12)
        pol = U.policy(X)
        np.testing.assert_array_equal(pol, T.finite_horizon(H, gamma).policy[0])


def test_policy_system_is_the_exact_linear_map():
    mdp = make_mdp(5, 7, 3, 0.5, 2, True)
    T = compile_mdp(mdp)
    rng = np.random.default_rng(0)
    pol = rng.integers(0, 3, 7)
    M, r = T.policy_system(pol)
    x = rng.normal(size=7)
    Q = T.q_values(x, 1.0)
    np.testing.assert_allclose(M @ x + r, Q[np.arange(7), pol], atol=1e-12)
    V = T.policy_evaluation(pol, 0.9)
    np.testing.assert_allclose(V, mdp.policy_evaluation(pol, 0.9).values, atol=1e-10)


def test_bad_input():
    T = compile_mdp(make_mdp(1, 4, 2, 1.0, 0, False))
    with pytest.raises(SolverError, match="gamma=1.0 must lie in \\[0, 1\\) without a horizon"):
        T.solve(1.0)
    with pytest.raises(SolverError, match="unknown method"):
        T.solve(0.9, method="magic")
    with pytest.raises(SolverError, match="horizon"):
        T.finite_horizon(-1)
    with pytest.raises(ValidationError, match="max node"):
        Template(T.circuit, [T.circuit.root])
    with pytest.raises(ValidationError, match="not a node of the template"):
        Template(T.circuit, [compile_mdp(make_mdp(1, 4, 2, 1.0, 0, False)).interface_roots[0]])
    with pytest.raises(ValidationError, match="4 slots but the template has 2"):
        Template(T.circuit, T.interface_roots[:2])
