"""CompiledMDP (worldmodels/tabular/mdp.py, kernels/_numba_mdp.py) against the numpy reference
TabularMDP: every compiled pass against its numpy twin (1e-12 relative), the whole solve against
the reference, a numpy LU per policy and brute force, the reference's errors word for word, and the
fallbacks (R[a, s, s'], policy0, a slowly mixing P_π); sparse P: test_tabular_mdp_compiled_sparse.py."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import spmn.worldmodels.tabular.mdp as M
from spmn.errors import DataError, SolverError
from spmn.kernels import _numba_mdp as K
from spmn.reference import TabularMDP, random_mdp
from spmn.reference import _linsolve as L
from spmn.reference import tabular as T
from spmn.worldmodels.tabular import CompiledMDP

pytestmark = pytest.mark.xdist_group(name="numba-kernels")
RTOL = 1e-12


def _lu_values(P, r, terminal, policy, gamma):
    S = r.shape[1]
    Ppi = P[policy, np.arange(S)].copy()
    Ppi[terminal] = 0.0
    return np.linalg.solve(np.eye(S) - gamma * Ppi, r[policy, np.arange(S)])


def _q(P, r, terminal, V, gamma):
    Q = r + gamma * np.einsum("ast,t->as", P, V)
    Q[:, terminal] = 0.0
    return Q


def _lowest_argmax(Q):
    qmax = Q.max(axis=0)
    return np.argmax(Q >= qmax - RTOL * max(1.0, np.abs(qmax).max()), axis=0)


@st.composite
def _dense_case(draw, S_range=(1, 90)):
    """(P, R, terminal): random dense rows, some with zeros, or a slowly mixing ring; terminal
    states whose rows are sometimes left empty."""
    S = draw(st.integers(*S_range))
    A = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["dense", "holes", "ring"]))
    P = np.array(random_mdp(S, A, 1.0, seed).P)
    if kind == "holes":  # zero entries, renormalised
        P = P * (rng.random(P.shape) < 0.3)
        P[..., 0] += P.sum(axis=2) == 0
        P /= P.sum(axis=2, keepdims=True)
    elif kind == "ring":  # |λ₂| near 1: Richardson stalls, the reference's GMRES / LU answer
        for a in range(A):
            P[a] = 0.97 * np.roll(np.eye(S), a - 1, axis=1) + 0.03 * P[a]
    terminal = rng.random(S) < draw(st.floats(0.0, 0.3))
    terminal[rng.integers(S)] = False
    if draw(st.booleans()):
        P[:, terminal] = 0.0  # a terminal state's rows may be empty
    R = rng.normal(size=(A, S)) * draw(st.sampled_from([1.0, 100.0]))
    return P, R, terminal


# ---------------------------------------------------------------------------- the whole solve
@settings(max_examples=60, deadline=None)
@given(case=_dense_case(), gamma=st.floats(0.0, 0.99), lean=st.booleans())
def test_compiled_solve_equals_the_reference(case, gamma, lean):
    """``lean``: the one-call constructor; else (a start given) the reference's constructor
    with the compiled check pass."""
    P, R, terminal = case
    kw = {} if lean else {"start": (~terminal) / (~terminal).sum()}
    ref = TabularMDP(P, R, terminal=terminal, **kw).policy_iteration(gamma)
    sol = CompiledMDP(P, R, terminal=terminal, **kw).policy_iteration(gamma)
    scale = max(1.0, np.abs(ref.values).max())
    assert np.array_equal(sol.policy, ref.policy)
    assert sol.iterations == ref.iterations
    V_pi = _lu_values(P, np.where(terminal, 0.0, R), terminal, sol.policy, gamma)
    assert np.abs(sol.values - V_pi).max() <= RTOL * scale  # the stated residual gives this bound
    assert np.abs(sol.values - ref.values).max() <= 2 * RTOL * scale
    assert sol.residual <= RTOL * scale


@settings(max_examples=25, deadline=None)
@given(case=_dense_case((1, 5)), gamma=st.floats(0.0, 0.99))
def test_compiled_solve_equals_brute_force_on_tiny_mdps(case, gamma):
    P, R, terminal = case
    r = np.where(terminal, 0.0, R)
    A, S = r.shape
    best = None
    for pol in itertools.product(range(A), repeat=S):
        V = _lu_values(P, r, terminal, np.array(pol), gamma)
        best = V if best is None else np.maximum(best, V)
    sol = CompiledMDP(P, R, terminal=terminal).policy_iteration(gamma)
    assert np.abs(sol.values - best).max() <= RTOL * max(1.0, np.abs(best).max())
    assert np.array_equal(sol.policy, _lowest_argmax(_q(P, r, terminal, best, gamma)))


def test_benchmark_case_s500_matches_lu_and_pymdptoolbox():
    mdptoolbox = pytest.importorskip("mdptoolbox.mdp", exc_type=ImportError)
    base = random_mdp(500, 4, 1.0, 0)
    P, R = np.array(base.P), base.expected_reward
    sol = CompiledMDP(P, R).policy_iteration(0.95)
    V = _lu_values(P, R, np.zeros(500, bool), sol.policy, 0.95)
    assert np.abs(sol.values - V).max() <= RTOL * np.abs(V).max()
    tool = mdptoolbox.PolicyIteration(P, R.T, 0.95)
    tool.run()
    assert np.array_equal(sol.policy, np.asarray(tool.policy))
    assert sol.iterations == TabularMDP(P, R).policy_iteration(0.95).iterations == 1


def test_a_stalled_evaluation_goes_to_the_reference_solver(monkeypatch):
    """The ring: the compiled Richardson stops early, evaluate_policy (GMRES, LU) finishes."""
    S, A = 120, 3
    P = np.stack([0.98 * np.roll(np.eye(S), s, axis=1) + 0.02 / S for s in (1, -1, 0)])
    R = np.random.default_rng(4).random((A, S))
    calls = []
    real = M.evaluate_policy
    monkeypatch.setattr(M, "evaluate_policy", lambda *a, **k: calls.append(1) or real(*a, **k))
    sol = CompiledMDP(P, R).policy_iteration(0.999)
    ref = TabularMDP(P, R).policy_iteration(0.999)
    assert calls and np.array_equal(sol.policy, ref.policy)
    assert np.abs(sol.values - ref.values).max() <= 2 * RTOL * np.abs(ref.values).max()


def _two_step_mdp():
    """An MDP whose policy iteration evaluates more than one policy."""
    for seed in range(50):
        P, R = np.array(random_mdp(70, 3, 0.05, seed, sparse=False).P), None
        R = np.random.default_rng(seed).normal(size=(3, 70))
        if TabularMDP(P, R).policy_iteration(0.9).iterations >= 2:
            return P, R
    raise AssertionError("no two-step case found")


def test_a_full_history_or_max_iter_goes_to_the_step_driver(monkeypatch):
    P, R = _two_step_mdp()
    ref = TabularMDP(P, R).policy_iteration(0.9)
    monkeypatch.setattr(M, "HISTORY", 1)  # the one-call solve gives up after one policy
    calls = []
    real = CompiledMDP._steps
    monkeypatch.setattr(CompiledMDP, "_steps", lambda self, *a: calls.append(1) or real(self, *a))
    sol = CompiledMDP(P, R).policy_iteration(0.9)
    assert calls and np.array_equal(sol.policy, ref.policy) and sol.iterations == ref.iterations
    assert np.abs(sol.values - ref.values).max() <= 2 * RTOL * max(1.0, np.abs(ref.values).max())
    with pytest.raises(SolverError) as want:
        TabularMDP(P, R).policy_iteration(0.9, max_iter=1)
    with pytest.raises(SolverError) as got:
        CompiledMDP(P, R).policy_iteration(0.9, max_iter=1)
    assert str(got.value) == str(want.value)


@pytest.mark.parametrize("terminal", [None, [0, 5, 9]])
def test_the_one_call_constructor_builds_the_references_model(terminal):
    base = random_mdp(40, 3, 1.0, 8)
    P, R = np.array(base.P), np.random.default_rng(8).normal(size=(3, 40))
    if terminal is not None:
        P[:, terminal[:1]] = 0.0  # an empty terminal row
    ref, got = TabularMDP(P, R, terminal=terminal), CompiledMDP(P, R, terminal=terminal)
    assert ref.__dict__.keys() == got.__dict__.keys()
    for key, want in ref.__dict__.items():
        have = got.__dict__[key]
        if key == "_guess":
            for x, y in zip(have, want):
                np.testing.assert_allclose(x, y, rtol=RTOL, atol=0)
        elif isinstance(want, np.ndarray):
            assert have.dtype == want.dtype and np.array_equal(have, want), key
        else:
            assert have == want, key
    R[0, 0] = np.inf  # the reference raises, in its order (P before R, R before the start)
    with pytest.raises(DataError, match="R contains NaN or infinite"):
        CompiledMDP(P, R, terminal=terminal)
    with pytest.raises(DataError, match="every state is terminal"):
        CompiledMDP(P, np.zeros((3, 40)), terminal=np.ones(40, bool))


def test_what_is_not_compiled_is_the_reference():
    """Dense P with R[a, s, s'], a given policy0 or method: the reference's code, the same answer
    (sparse P: tests/worldmodels/test_tabular_mdp_compiled_sparse.py)."""
    rng = np.random.default_rng(1)
    sparse = random_mdp(80, 3, 0.1, 1)
    dense = np.array(random_mdp(80, 3, 1.0, 1).P)
    cases = [(dense, rng.random((3, 80, 80)), {}),
             (dense, rng.random((3, 80)), {"policy0": np.zeros(80, int)}),
             (dense, rng.random((3, 80)), {"method": "direct"})]
    for P, R, kw in cases:
        a = CompiledMDP(P, R).policy_iteration(0.9, **kw)
        b = TabularMDP(P, R).policy_iteration(0.9, **kw)
        assert np.array_equal(a.values, b.values) and np.array_equal(a.policy, b.policy)
    assert CompiledMDP(list(sparse.P), sparse.expected_reward)._guess is None


# ---------------------------------------------------------------------------- errors
def _bad_inputs():
    P = np.array(random_mdp(30, 2, 1.0, 3).P)
    out = []
    for what in ("nan", "inf", "negative", "sum", "empty"):
        Q = P.copy()
        if what == "nan":
            Q[1, 7, 3] = np.nan
        elif what == "inf":
            Q[0, 29, 0] = np.inf
        elif what == "negative":
            Q[1, 4, 5] = -1e-3
            Q[1, 4, 6] += 1e-3
            Q[0, 20, 2] = -0.5  # a later row: the reference names the first in row order
        elif what == "sum":
            Q[0, 11] *= 1.0 + 1e-6
        else:
            Q[1, 2] = 0.0  # an empty row of a live state
        out.append(Q)
    return out


@pytest.mark.parametrize("P", _bad_inputs(), ids=["nan", "inf", "negative", "sum", "empty"])
def test_bad_p_raises_the_references_error(P):
    R = np.random.default_rng(0).random((2, 30))
    with pytest.raises(DataError) as ref:
        TabularMDP(P, R)
    with pytest.raises(DataError) as got:
        CompiledMDP(P, R)
    assert str(got.value) == str(ref.value) and ("a=" in str(ref.value))


def test_bad_r_after_a_good_p_raises_as_the_reference():
    P = np.array(random_mdp(20, 2, 1.0, 3).P)
    R = np.zeros((2, 20))
    R[1, 3] = np.nan
    with pytest.raises(DataError, match="R contains NaN"):
        CompiledMDP(P, R)


def test_a_row_flagged_by_rounding_alone_is_judged_by_the_reference(monkeypatch):
    base = random_mdp(50, 2, 1.0, 5)
    P, R = np.array(base.P), base.expected_reward
    want = TabularMDP(P, R)._guess
    monkeypatch.setattr(K, "check_pass", lambda *a: 1)  # as if a sum had rounded past the tolerance
    got = CompiledMDP(P, R)._guess
    for x, y in zip(got, want):
        np.testing.assert_allclose(x, y, rtol=1e-14, atol=0)


# ---------------------------------------------------------------------------- the passes
@settings(max_examples=30, deadline=None)
@given(case=_dense_case((1, 70)))
def test_check_pass_and_start_equal_the_reference(case):
    P, R, terminal = case
    ref, got = TabularMDP(P, R, terminal=terminal), CompiledMDP(P, R, terminal=terminal)
    assert np.array_equal(got._guess[0], ref._guess[0])  # π0 = greedy(r), same tie rule
    for x, y in zip(got._guess[1:], ref._guess[1:]):
        np.testing.assert_allclose(x, y, rtol=RTOL, atol=RTOL)
    A, S = R.shape
    U, V, pi, res = np.empty((A, S)), np.empty(S), np.empty(S, np.int64), np.empty(S)
    K.start_policy(got._r, terminal, *got._guess[3:], got._guess[1], got._guess[2], 0.9,
                   T.TIE_RTOL, U, V, pi, res)
    _, b, live, Pb, Pl = ref._guess
    m = 0.9 / 0.1 * b.mean()
    U_ref = (0.9 * (Pb + m * Pl)).reshape(A, S) + ref._r
    U_ref[:, terminal] = 0.0
    np.testing.assert_allclose(U, U_ref, rtol=RTOL, atol=RTOL * max(1.0, np.abs(U_ref).max()))
    np.testing.assert_allclose(V, b + m * live, rtol=RTOL, atol=RTOL)
    assert np.array_equal(pi, T._greedy(U))
    np.testing.assert_allclose(res, U[pi, np.arange(S)] - V, rtol=0, atol=0)


@settings(max_examples=30, deadline=None)
@given(case=_dense_case((2, 90)), gamma=st.floats(0.0, 0.99), seed=st.integers(0, 99))
def test_richardson_and_products_equal_numpy(case, gamma, seed):
    P, R, terminal = case
    A, S = R.shape
    rng = np.random.default_rng(seed)
    mdp = TabularMDP(P, R, terminal=terminal)
    Pf, pi = mdp._Pf, rng.integers(0, A, S)
    Ppi, b = mdp._policy_system(pi)
    live = (~terminal).astype(float)
    x0 = rng.normal(size=S)
    res0 = b - (x0 - gamma * (Ppi @ x0))
    y = np.empty(S)
    K.policy_product(Pf, pi, terminal, x0, y)
    np.testing.assert_allclose(y, Ppi @ x0, rtol=RTOL, atol=RTOL * np.abs(x0).max())
    U = np.empty((A, S))
    K.q_values(Pf, mdp._r, terminal, x0, gamma, U)
    Q = mdp._q(x0, gamma)
    np.testing.assert_allclose(U, Q, rtol=RTOL, atol=RTOL * max(1.0, np.abs(Q).max()))
    rel = L.RESIDUAL_RTOL * (1.0 - gamma)
    xr, nr, _, _ = L.deflated_richardson(Ppi, b, gamma, x0.copy(), res0.copy(), w=live)
    x, res = x0.copy(), res0.copy()
    n, rn = K.richardson(Pf, pi, terminal, b, live, gamma, x, res, rel, 200)
    if nr <= 3 or n != nr:  # a stalled run may stop one product apart on rounding alone
        assert abs(n - nr) <= 1
        return
    scale = max(1.0, np.abs(xr).max())
    np.testing.assert_allclose(x, xr, rtol=0, atol=1e-10 * scale)
    np.testing.assert_allclose(res, b - (x - gamma * (Ppi @ x)), rtol=0, atol=1e-13 * scale)
    assert rn == np.abs(res).max()


def _improve_numpy(mdp, pi, V_old, V, res, U, g):
    """The improvement lines of the reference's policy_iteration (the non-fresh branch), verbatim."""
    S, A = mdp.n_states, mdp.n_actions
    ar, live = np.arange(S), ~mdp.terminal
    cur = V + res
    delta = V - V_old
    hi = float(delta.max())
    U = U + g * (hi + T.ROW_SUM_ATOL * abs(hi)) + 1e-13 * max(1.0, float(np.abs(U).max()))
    U[:, mdp.terminal] = 0.0
    U[pi, ar] = cur
    atol = T.TIE_RTOL * max(1.0, float(np.abs(U).max()))
    cand = (U >= cur - 4 * atol) & live
    cand[pi, ar] = False
    ca, cs = np.nonzero(cand)
    if ca.size > A * S // 4:
        U = mdp._q(V, g)
        U[pi, ar] = cur
    elif ca.size:
        U[ca, cs] = mdp._q_rows(ca, cs, V, g)
    qmax = U.max(axis=0)
    best = T._greedy(U, qmax)
    better = cur < qmax - atol
    return U, np.where(better, best, pi), best, qmax


@settings(max_examples=30, deadline=None)
@given(case=_dense_case((2, 60)), gamma=st.floats(0.0, 0.99), seed=st.integers(0, 99),
       slack=st.sampled_from([0.0, 1e-3, 1.0]))
def test_improve_equals_the_references_lines(case, gamma, seed, slack):
    P, R, terminal = case
    A, S = R.shape
    rng = np.random.default_rng(seed)
    mdp = TabularMDP(P, R, terminal=terminal)
    pi = rng.integers(0, A, S)
    V_old = rng.normal(size=S)
    V_old[terminal] = 0.0
    U0 = mdp._q(V_old, gamma) + slack * rng.random((A, S))  # bounds above the exact Q
    V = V_old + 0.1 * rng.normal(size=S)
    V[terminal] = 0.0
    res = 1e-3 * rng.normal(size=S)
    U_ref, new_ref, best_ref, qmax_ref = _improve_numpy(mdp, pi, V_old, V, res, U0, gamma)
    U = U0.copy()
    new, best, qmax = np.empty(S, np.int64), np.empty(S, np.int64), np.empty(S)
    changed = K.improve(mdp._Pf, mdp._r, terminal, pi, V_old, V, res, U, gamma, T.ROW_SUM_ATOL,
                        T.TIE_RTOL, new, best, qmax)
    scale = max(1.0, np.abs(U_ref).max())
    np.testing.assert_allclose(U, U_ref, rtol=0, atol=RTOL * scale)
    np.testing.assert_allclose(qmax, qmax_ref, rtol=0, atol=RTOL * scale)
    assert np.array_equal(new, new_ref) and np.array_equal(best, best_ref)
    assert changed == int((new_ref != pi).sum())


def test_greedy_rewards_is_the_references_tie_rule():
    r = np.array([[1.0, 2.0, 0.5, -3.0], [1.0 + 1e-13, 2.5, 0.5, -3.0], [0.9, 2.5, 0.6, -2.0]])
    pi, b = np.empty(4, np.int64), np.empty(4)
    K.greedy_rewards(r, T.TIE_RTOL, pi, b)
    assert np.array_equal(pi, T._greedy(r)) and np.array_equal(pi, [0, 1, 2, 2])
    assert np.array_equal(b, r[pi, np.arange(4)])


def test_sparse_rows_given_as_a_list_keep_no_start_guess():
    sparse = random_mdp(40, 2, 0.2, 2)
    m = CompiledMDP([sp.csr_array(x) for x in sparse.P], sparse.expected_reward)
    assert m.is_sparse and m._guess is None
