"""TabularMDP's fast exact solve against slow references (1e-12 relative): the deflated-Richardson
policy evaluation, the policy-iteration start read off the constructor's check pass, and the whole
solve against a numpy LU per policy, Howard's policy iteration written out in numpy, and brute force
over every policy of tiny MDPs."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spmn.reference import TabularMDP, random_mdp
from spmn.reference import _linsolve as L

RTOL = 1e-12


# ---------------------------------------------------------------------------- slow references
def _dense(mdp: TabularMDP) -> np.ndarray:
    return np.stack([m.toarray() for m in mdp.P]) if mdp.is_sparse else np.array(mdp.P)


def _lu_values(P: np.ndarray, r: np.ndarray, terminal: np.ndarray, policy: np.ndarray,
               gamma: float) -> np.ndarray:
    """(I - γ P_π) V = r_π by numpy's LU, terminal rows zeroed."""
    S = r.shape[1]
    Ppi = P[policy, np.arange(S)].copy()
    Ppi[terminal] = 0.0
    return np.linalg.solve(np.eye(S) - gamma * Ppi, r[policy, np.arange(S)])


def _q(P: np.ndarray, r: np.ndarray, terminal: np.ndarray, V: np.ndarray, gamma: float) -> np.ndarray:
    Q = r + gamma * np.einsum("ast,t->as", P, V)
    Q[:, terminal] = 0.0
    return Q


def _lowest_argmax(Q: np.ndarray) -> np.ndarray:
    qmax = Q.max(axis=0)
    return np.argmax(Q >= qmax - RTOL * max(1.0, np.abs(qmax).max()), axis=0)


def _howard(P: np.ndarray, r: np.ndarray, terminal: np.ndarray, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """Howard's policy iteration, written out: LU evaluation, switch only on a strict gain."""
    S = r.shape[1]
    pi = np.zeros(S, dtype=np.int64)
    for _ in range(1000):
        V = _lu_values(P, r, terminal, pi, gamma)
        Q = _q(P, r, terminal, V, gamma)
        cur = Q[pi, np.arange(S)]
        better = Q.max(axis=0) > cur + RTOL * max(1.0, np.abs(cur).max())
        if not better.any():
            return V, _lowest_argmax(Q)
        pi = np.where(better, Q.argmax(axis=0), pi)
    raise AssertionError("reference policy iteration did not stop")


def _brute_force(P: np.ndarray, r: np.ndarray, terminal: np.ndarray, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """V* = the componentwise maximum over every deterministic policy's LU value; its greedy policy."""
    A, S = r.shape
    best = None
    for pol in itertools.product(range(A), repeat=S):
        V = _lu_values(P, r, terminal, np.array(pol), gamma)
        best = V if best is None else np.maximum(best, V)
    return best, _lowest_argmax(_q(P, r, terminal, best, gamma))


def _check_against(mdp: TabularMDP, gamma: float, V_ref: np.ndarray, pi_ref: np.ndarray) -> None:
    sol = mdp.policy_iteration(gamma)
    scale = max(1.0, np.abs(V_ref).max())
    assert np.abs(sol.values - V_ref).max() <= RTOL * scale  # the residual target gives this bound
    assert np.array_equal(sol.policy, pi_ref)
    P, r = _dense(mdp), mdp.expected_reward
    V_pi = _lu_values(P, r, mdp.terminal, sol.policy, gamma)  # the returned values are its policy's
    assert np.abs(sol.values - V_pi).max() <= RTOL * scale
    assert sol.residual <= RTOL * scale  # Bellman residual |max_a Q - V|∞


# ---------------------------------------------------------------------------- strategies
@st.composite
def _mdp(draw, S_range: tuple[int, int], kinds=("dense", "sparse")):
    S = draw(st.integers(*S_range))
    A = draw(st.integers(1, 3 if S_range[1] <= 6 else 4))
    seed = draw(st.integers(0, 2**31 - 1))
    kind = draw(st.sampled_from(kinds))
    base = random_mdp(S, A, 1.0 if kind == "dense" else draw(st.floats(0.08, 0.4)), seed)
    rng = np.random.default_rng(seed)
    terminal = rng.random(S) < draw(st.floats(0.0, 0.3))
    terminal[rng.integers(S)] = False
    R = rng.normal(size=(A, S, S)) if draw(st.booleans()) else rng.normal(size=(A, S))
    return TabularMDP(base.P, R, terminal=terminal)


@pytest.fixture
def iterative_always(monkeypatch):
    """Send every policy system, however small, down the Richardson/GMRES path (the patch holds
    for every example of the test, which is what it is for)."""
    monkeypatch.setattr(L, "KRYLOV_MIN_S", 1)


# ---------------------------------------------------------------------------- the whole solve
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mdp=_mdp((1, 6), kinds=("dense",)), gamma=st.floats(0.0, 0.99))
def test_policy_iteration_equals_brute_force_on_tiny_mdps(iterative_always, mdp, gamma):
    P, r = _dense(mdp), mdp.expected_reward
    V, pi = _brute_force(P, r, mdp.terminal, gamma)
    _check_against(mdp, gamma, V, pi)


@settings(max_examples=25, deadline=None)
@given(mdp=_mdp((64, 140)), gamma=st.floats(0.0, 0.99))
def test_policy_iteration_equals_howard_with_lu(mdp, gamma):
    """S >= KRYLOV_MIN_S: the deflated-Richardson evaluations and the check-pass start are used."""
    P, r = _dense(mdp), mdp.expected_reward
    V, pi = _howard(P, r, mdp.terminal, gamma)
    _check_against(mdp, gamma, V, pi)


@pytest.mark.parametrize("gamma", [0.9, 0.999])
def test_slowly_mixing_mdp_falls_back_and_stays_exact(gamma):
    """A near-deterministic ring (|λ₂| ≈ 1): Richardson gains too little per step, so GMRES or the
    LU answers; values and policy still equal the reference's."""
    S, A = 120, 3
    rng = np.random.default_rng(4)
    P = np.zeros((A, S, S))
    for a, shift in enumerate((1, -1, 0)):
        P[a] = 0.98 * np.roll(np.eye(S), shift, axis=1) + 0.02 / S
    mdp = TabularMDP(P, rng.random((A, S)))
    V, pi = _howard(P, mdp.expected_reward, mdp.terminal, gamma)
    _check_against(mdp, gamma, V, pi)


def test_dense_s500_solve_matches_lu_and_pymdptoolbox():
    """The benchmark's case (dense, S = 500, A = 4, γ = 0.95): one policy evaluated, exact."""
    mdptoolbox = pytest.importorskip("mdptoolbox.mdp", exc_type=ImportError)
    base = random_mdp(500, 4, 1.0, 0)
    P, R = np.array(base.P), base.expected_reward
    mdp = TabularMDP(P, R)
    sol = mdp.policy_iteration(0.95)
    V_ref = _lu_values(P, R, mdp.terminal, sol.policy, 0.95)
    assert np.abs(sol.values - V_ref).max() <= RTOL * np.abs(V_ref).max()
    Q = _q(P, R, mdp.terminal, V_ref, 0.95)
    assert np.array_equal(sol.policy, _lowest_argmax(Q))  # no action improves on the exact values
    tool = mdptoolbox.PolicyIteration(P, R.T, 0.95)
    tool.run()
    assert np.array_equal(sol.policy, np.asarray(tool.policy))


# ---------------------------------------------------------------------------- the pieces
def test_check_pass_products_equal_numpy():
    base = random_mdp(300, 3, 1.0, 7)
    rng = np.random.default_rng(7)
    R = rng.random((3, 300))
    for terminal in (None, rng.random(300) < 0.2):
        mdp = TabularMDP(base.P, R, terminal=terminal)
        pi0, b0, live, Pb, Pl = mdp._guess
        flat = np.array(base.P).reshape(900, 300)
        assert np.array_equal(pi0, _lowest_argmax(mdp.expected_reward))
        np.testing.assert_allclose(Pb, flat @ b0, rtol=1e-14, atol=0)
        np.testing.assert_allclose(Pl, flat @ live, rtol=1e-14, atol=0)
    assert TabularMDP(base.P, rng.random((3, 300, 300)))._guess is None  # R[a, s, s']: no start kept
    assert random_mdp(300, 3, 0.1, 7)._guess is None  # sparse P: products are cheap when needed


@pytest.mark.parametrize("kind", ["dense", "sparse", "terminal"])
def test_deflated_richardson_is_exact_in_a_few_products(kind):
    S, g = 300, 0.95
    mdp = random_mdp(S, 1, 1.0 if kind != "sparse" else 20 / S, 2, sparse=kind == "sparse")
    Ppi = mdp.P[0]
    if kind == "terminal":
        Ppi = Ppi.copy()
        Ppi[::7] = 0.0  # zero rows (terminal states): P_π 1 != 1
    b = np.random.default_rng(2).normal(size=S)
    w = None if kind != "terminal" else Ppi @ np.ones(S)  # deflate w uᵀ, w = P_π 1
    x, n, res, done = L.deflated_richardson(Ppi, b, g, np.zeros(S), b.copy(), w=w)
    dense = Ppi.toarray() if sp.issparse(Ppi) else Ppi
    want = np.linalg.solve(np.eye(S) - g * dense, b)
    assert done and n <= (12 if kind != "sparse" else 40)
    np.testing.assert_allclose(x, want, rtol=RTOL * 10, atol=RTOL * np.abs(want).max())
    np.testing.assert_allclose(res, b - (x - g * (dense @ x)), rtol=0, atol=1e-15 * np.abs(x).max())
    assert L.is_exact(b, x, res, g)
    x2, n2, res2 = L.evaluate_policy(Ppi, b, g)  # computes P_π 1 itself: one product more
    np.testing.assert_allclose(x2, want, rtol=RTOL * 10, atol=RTOL * np.abs(want).max())
    assert n2 <= n + 1 and L.is_exact(b, x2, res2, g)


def test_deflated_richardson_hands_over_on_a_ring():
    S, g = 200, 0.99
    P = 0.999 * np.roll(np.eye(S), 1, axis=1) + 0.001 / S
    b = np.random.default_rng(0).random(S)
    _, n, _, done = L.deflated_richardson(P, b, g, np.zeros(S), b.copy())
    assert not done and n <= 3  # it stops after the first step that gains less than half
    x, _, res = L.evaluate_policy(P, b, g)  # GMRES cycles, then the LU if needed
    np.testing.assert_allclose(x, np.linalg.solve(np.eye(S) - g * P, b), rtol=RTOL * 10)
    assert L.is_exact(b, x, res, g)
