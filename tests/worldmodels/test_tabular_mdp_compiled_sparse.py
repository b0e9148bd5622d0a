"""CompiledMDP on sparse (CSR) P (worldmodels/tabular/mdp.py, kernels/_numba_mdp_sparse.py)
against the numpy reference TabularMDP: the whole solve (1e-12 relative, the same policies and
iterations), its passes against their numpy twins, the fallbacks (fewer than 64 states, a banded
P_π, a slowly mixing P_π, rows too uneven to pad) and the reference's errors word for word."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from spmn.errors import DataError
from spmn.kernels import _numba_mdp_sparse as KS
from spmn.reference import TabularMDP, random_mdp
from spmn.reference import _linsolve as L
from spmn.reference import tabular as T
from spmn.worldmodels.tabular import CompiledMDP

pytestmark = pytest.mark.xdist_group(name="numba-kernels")
RTOL = 1e-12


def _csr_rows(P: np.ndarray, zeros: np.ndarray | None = None) -> list[sp.csr_array]:
    """P (A, S, S) as A CSR matrices; ``zeros`` marks entries stored as explicit zeros."""
    out = []
    for a in range(P.shape[0]):
        keep = P[a] != 0.0 if zeros is None else (P[a] != 0.0) | zeros[a]
        rows, cols = np.nonzero(keep)
        out.append(sp.csr_array((P[a][rows, cols], (rows, cols)), shape=P[a].shape))
    return out


def _dense(mdp: TabularMDP) -> np.ndarray:
    """P (A, S, S) of a generated MDP, dense whatever its storage."""
    return np.array([m.toarray() for m in mdp.P]) if mdp.is_sparse else np.array(mdp.P)


@st.composite
def _sparse_case(draw, S_range=(2, 120)):
    """(P as A CSR matrices, R (A, S), terminal, dense P): random successors, stored zeros,
    a slowly mixing ring or a band; terminal states whose rows are sometimes left empty."""
    S = draw(st.integers(*S_range))
    A = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["random", "random", "zeros", "ring", "band"]))
    density = draw(st.sampled_from([0.05, 0.15, 0.4]))
    P = _dense(random_mdp(S, A, density, seed, sparse=True))
    if kind == "ring":  # |λ₂| near 1: Richardson stalls, the reference's GMRES / LU answer
        for a in range(A):
            P[a] = 0.97 * np.roll(np.eye(S), a - 1, axis=1) + 0.03 * P[a]
    elif kind == "band":  # every P_π banded: the reference's banded solve
        P = _dense(random_mdp(S, A, 1.0, seed, bandwidth=3))
    terminal = rng.random(S) < draw(st.floats(0.0, 0.3))
    terminal[rng.integers(S)] = False
    if draw(st.booleans()):
        P[:, terminal] = 0.0  # a terminal state's rows may be empty
    zeros = rng.random(P.shape) < 0.02 if kind == "zeros" else None
    R = rng.normal(size=(A, S)) * draw(st.sampled_from([1.0, 100.0]))
    return _csr_rows(P, zeros), R, terminal, P


def _lu_values(P, r, terminal, policy, gamma):
    S = r.shape[1]
    Ppi = P[policy, np.arange(S)].copy()
    Ppi[terminal] = 0.0
    return np.linalg.solve(np.eye(S) - gamma * Ppi, r[policy, np.arange(S)])


@settings(max_examples=60, deadline=None)
@given(case=_sparse_case(), gamma=st.floats(0.0, 0.99))
def test_compiled_sparse_solve_equals_the_reference(case, gamma):
    mats, R, terminal, P = case
    ref = TabularMDP(mats, R, terminal=terminal).policy_iteration(gamma)
    sol = CompiledMDP(mats, R, terminal=terminal).policy_iteration(gamma)
    scale = max(1.0, np.abs(ref.values).max())
    assert np.array_equal(sol.policy, ref.policy)
    assert sol.iterations == ref.iterations
    V_pi = _lu_values(P, np.where(terminal, 0.0, R), terminal, sol.policy, gamma)
    assert np.abs(sol.values - V_pi).max() <= RTOL * scale
    assert np.abs(sol.values - ref.values).max() <= 2 * RTOL * scale
    assert sol.residual <= RTOL * scale


def _solve_calls(monkeypatch):
    """Counts of (compiled solves that finished, reference policy iterations)."""
    calls = {"compiled": 0, "reference": 0}
    real_solve, real_pi = KS.csr_solve_all, TabularMDP.policy_iteration

    def solve(*a):
        out = real_solve(*a)
        calls["compiled"] += out[0] == 0
        return out

    def reference(self, *a, **k):
        calls["reference"] += 1
        return real_pi(self, *a, **k)

    monkeypatch.setattr(KS, "csr_solve_all", solve)
    monkeypatch.setattr(TabularMDP, "policy_iteration", reference)
    return calls


def test_the_benchmark_case_is_solved_compiled(monkeypatch):
    """S = 500, A = 4, 10 random successors a row (benchmarks/bench_mdp.py): one compiled call,
    the reference's answer, and pymdptoolbox's policy."""
    base = random_mdp(500, 4, 10 / 500, 0, sparse=True)
    mats, R = list(base.P), base.expected_reward
    ref = TabularMDP(mats, R).policy_iteration(0.95)
    calls = _solve_calls(monkeypatch)
    sol = CompiledMDP(mats, R).policy_iteration(0.95)
    assert calls == {"compiled": 1, "reference": 0}
    assert np.array_equal(sol.policy, ref.policy) and sol.iterations == ref.iterations
    assert np.abs(sol.values - ref.values).max() <= 2 * RTOL * np.abs(ref.values).max()
    mdptoolbox = pytest.importorskip("mdptoolbox.mdp", exc_type=ImportError)
    tool = mdptoolbox.PolicyIteration([sp.csr_matrix(m) for m in mats], R.T, 0.95)
    tool.run()
    assert np.array_equal(sol.policy, np.asarray(tool.policy))


@pytest.mark.parametrize("case", ["small", "band", "ring", "uneven", "policy0"])
def test_what_the_compiled_sparse_solve_hands_to_the_reference(monkeypatch, case):
    """Fewer than 64 states (the reference's LU), a banded P_π (its banded solve), a slowly
    mixing P_π (its GMRES / LU), rows too uneven to pad, a given policy0: the reference's code
    and answer."""
    S, A, kw = 80, 3, {}
    if case == "small":
        P = _dense(random_mdp(40, A, 0.2, 1))
    elif case == "band":
        P = _dense(random_mdp(S, A, 1.0, 1, bandwidth=4))
    elif case == "ring":
        P = np.stack([0.98 * np.roll(np.eye(S), s, axis=1) + 0.02 / S for s in (1, -1, 0)])
    else:
        P = _dense(random_mdp(S, A, 0.05, 1))
        if case == "uneven":  # one dense row: padding every row to it would cost too much
            P[0, 0] = 1.0 / S
        else:
            kw = {"policy0": np.zeros(S, int)}
    mats = _csr_rows(P)
    R = np.random.default_rng(2).random((A, P.shape[1]))
    ref = TabularMDP(mats, R).policy_iteration(0.9, **kw)
    calls = _solve_calls(monkeypatch)
    sol = CompiledMDP(mats, R).policy_iteration(0.9, **kw)
    assert calls == {"compiled": 0, "reference": 1}
    assert np.array_equal(sol.values, ref.values) and np.array_equal(sol.policy, ref.policy)


@pytest.mark.parametrize("what", ["nan", "inf", "negative", "sum", "empty"])
def test_bad_sparse_p_raises_the_references_error(what):
    P = _dense(random_mdp(30, 2, 0.3, 3))
    if what == "nan":
        P[1, 7, 3] = np.nan
    elif what == "inf":
        P[0, 29, 0] = np.inf
    elif what == "negative":
        P[1, 4, 5] = -1e-3
        P[1, 4, 6] += 1e-3
        P[0, 20, 2] = -0.5  # a later row: the reference names the first in row order
    elif what == "sum":
        P[0, 11] *= 1.0 + 1e-6
    else:
        P[1, 2] = 0.0  # an empty row of a live state
    mats = _csr_rows(P)
    R = np.random.default_rng(0).random((2, 30))
    with pytest.raises(DataError) as ref:
        TabularMDP(mats, R)
    with pytest.raises(DataError) as got:
        CompiledMDP(mats, R)
    assert str(got.value) == str(ref.value) and "a=" in str(ref.value)


def test_a_sparse_row_flagged_by_rounding_alone_is_judged_by_the_reference(monkeypatch):
    base = random_mdp(70, 2, 0.1, 5, sparse=True)
    monkeypatch.setattr(KS, "csr_check_pass", lambda *a: 1)  # as if a sum had rounded off
    got = CompiledMDP(list(base.P), base.expected_reward)
    ref = TabularMDP(list(base.P), base.expected_reward)
    assert got.is_sparse and got._guess is None and (got._Pf != ref._Pf).nnz == 0


@settings(max_examples=40, deadline=None)
@given(case=_sparse_case((2, 90)), gamma=st.floats(0.0, 0.99), seed=st.integers(0, 99))
def test_sparse_passes_equal_numpy(case, gamma, seed):
    """Padded rows, P_π x and Q (scipy's sums, bit for bit), the bandwidth and the check pass
    against the reference's; Richardson against the reference's deflated_richardson."""
    mats, R, terminal, _ = case
    A, S = R.shape
    rng = np.random.default_rng(seed)
    mdp = TabularMDP(mats, R, terminal=terminal)
    Pf, pi = mdp._Pf, rng.integers(0, A, S)
    assert KS.csr_check_pass(Pf.indptr, Pf.indices, Pf.data, S, terminal, T.ROW_SUM_ATOL) == 0
    w, E, C = KS.padded_rows(Pf.indptr, Pf.indices, Pf.data, S, 1000)
    Ppi, b = mdp._policy_system(pi)
    assert KS.csr_policy_bandwidth(w, E, C, pi, terminal, bool(terminal.any())) == L.bandwidth(Ppi)
    x0 = rng.normal(size=S)
    y = np.empty(S)
    KS.csr_product(w, E, C, pi, terminal, x0, y)
    want = np.where(terminal, 0.0, Pf[pi * S + np.arange(S)] @ x0)  # the rows in index order
    assert np.array_equal(y, want)  # (the reference's P_π with terminal states: any order)
    np.testing.assert_allclose(y, Ppi @ x0, rtol=0, atol=1e-15 * max(1.0, np.abs(x0).max()))
    U = np.empty((A, S))
    KS.csr_q_values(w, E, C, mdp._r, terminal, x0, gamma, U)
    assert np.array_equal(U, mdp._q(x0, gamma))
    live = (~terminal).astype(float)
    res0 = b - (x0 - gamma * (Ppi @ x0))
    xr, nr, _, _ = L.deflated_richardson(Ppi, b, gamma, x0.copy(), res0.copy(), w=live)
    x, res = x0.copy(), res0.copy()
    n, rn = KS.csr_richardson(w, E, C, pi, terminal, b, live, gamma, x, res,
                              L.RESIDUAL_RTOL * (1.0 - gamma), 200)
    if nr <= 3 or n != nr:  # a stalled run may stop one product apart on rounding alone
        assert abs(n - nr) <= 1
        return
    scale = max(1.0, np.abs(xr).max())
    np.testing.assert_allclose(x, xr, rtol=0, atol=1e-10 * scale)
    np.testing.assert_allclose(res, b - (x - gamma * (Ppi @ x)), rtol=0, atol=1e-13 * scale)
    assert rn == np.abs(res).max()


def test_check_pass_flags_what_the_reference_rejects():
    ip, ix = np.array([0, 2, 2, 4]), np.array([0, 1, 0, 1])
    term = np.array([False, True])
    good = np.array([0.25, 0.75, 0.5, 0.5])
    assert KS.csr_check_pass(ip, ix, good, 2, term, 1e-9) == 0  # row 1: a terminal's empty row
    for px, ix2 in ((np.array([0.25, 0.75, np.nan, 0.5]), ix), (np.array([-0.25, 1.25, 0.5, 0.5]), ix),
                    (np.array([0.25, 0.7, 0.5, 0.5]), ix), (good, np.array([1, 0, 0, 1]))):
        assert KS.csr_check_pass(ip, ix2, px, 2, term, 1e-9) == 1
    assert KS.csr_check_pass(ip, ix, good, 2, np.array([False, False]), 1e-9) == 1  # live, empty


def test_padding_is_refused_when_rows_are_too_uneven():
    ip = np.concatenate([np.arange(21), [120]])  # 20 rows of one entry, one of 100
    ix = np.concatenate([np.arange(20), np.arange(100)])
    w, E, C = KS.padded_rows(ip, ix, np.ones(120), 100, 4)
    assert w == -1 and E.size == 0
    w, E, C = KS.padded_rows(ip, ix, np.ones(120), 100, 1000)
    assert w == 100 and C[0] == 0 and C[100 + 5] == 1 and E[100 + 5] == 0.0
    assert np.array_equal(C[20 * 100:], np.arange(100)) and E.sum() == 120


def test_sparse_rewards_per_transition_are_solved_compiled(monkeypatch):
    """R[a, s, s'] with sparse P: policy iteration reads only r[a, s], so it is compiled too."""
    base = random_mdp(90, 3, 0.1, 6, sparse=True)
    mats = list(base.P)
    Rsas = np.random.default_rng(6).random((3, 90, 90))
    ref = TabularMDP(mats, Rsas).policy_iteration(0.9)
    calls = _solve_calls(monkeypatch)
    sol = CompiledMDP(mats, Rsas).policy_iteration(0.9)
    assert calls == {"compiled": 1, "reference": 0}
    assert np.array_equal(sol.policy, ref.policy) and sol.iterations == ref.iterations
    assert np.abs(sol.values - ref.values).max() <= 2 * RTOL * max(1.0, np.abs(ref.values).max())
