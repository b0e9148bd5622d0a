"""spmn.reference linear-Gaussian systems: LQR (known values, python-control, closed-loop costs),
Kalman filter and RTS smoother (filterpy, joint-Gaussian likelihood), simulation and bad input."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sla
from scipy.stats import multivariate_normal

from spmn.errors import SpmnError
from spmn.reference import LinearGaussianSystem

A2 = np.array([[1.0, 0.1], [0.0, 1.0]])
B2 = np.array([[0.005], [0.1]])
W2 = np.diag([1e-4, 1e-2])


def _random_system(seed: int, n: int = 3, m: int = 2, p: int = 2) -> LinearGaussianSystem:
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n, n)) / np.sqrt(n)
    G = rng.normal(size=(n, n))
    H = rng.normal(size=(p, p))
    return LinearGaussianSystem(A, rng.normal(size=(n, m)), 0.1 * G @ G.T + 0.01 * np.eye(n),
                                rng.normal(size=(p, n)), 0.2 * H @ H.T + 0.05 * np.eye(p))


def _discounted_cost(sys, K, Q, R, gamma, x0, T):
    """E Σ_{t<T} γ^t (x'Qx + u'Ru) under u = -K x by exact mean/covariance propagation."""
    M = Q + K.T @ R @ K
    F = sys.A - sys.B @ K
    mu, Sig, total = np.asarray(x0, float), np.zeros_like(sys.A), 0.0
    for t in range(T):
        total += gamma ** t * (mu @ M @ mu + np.trace(M @ Sig))
        mu, Sig = F @ mu, F @ Sig @ F.T + sys.W
    return total


# ---------------------------------------------------------------------------- LQR
def test_double_integrator_known_values():
    sys = LinearGaussianSystem(A2, B2, W2)
    sol = sys.lqr(np.eye(2), 0.1, gamma=0.95)
    assert np.abs(sol.P - [[9.863315, 2.331751], [2.331751, 4.173696]]).max() < 5e-7
    assert np.abs(sol.K - [[1.888586, 3.057108]]).max() < 5e-7
    assert sol.value([1.0, 0.0]) == pytest.approx(10.675057, abs=5e-7)
    assert sol.c == pytest.approx(0.95 / 0.05 * np.trace(W2 @ sol.P), rel=1e-14)
    # value(x) is the exact expected discounted cost of u = -Kx (series summed to γ^T < 1e-16)
    assert sol.value([1.0, 0.0]) == pytest.approx(
        _discounted_cost(sys, sol.K, np.eye(2), np.array([[0.1]]), 0.95, [1.0, 0.0], 800), abs=1e-9)
    assert np.allclose(sol.control([1.0, 0.0]), -sol.K[:, 0])


@pytest.mark.parametrize("gamma", [1.0, 0.9])
def test_lqr_matches_python_control(gamma):
    control = pytest.importorskip("control")
    for seed in range(3):
        sys = _random_system(seed)
        Q, R = np.diag([1.0, 2.0, 0.5]), np.array([[0.3, 0.1], [0.1, 0.4]])
        sol = sys.lqr(Q, R, gamma)
        g = np.sqrt(gamma)  # the discounted problem is the undiscounted one for (√γA, √γB)
        K, P, _ = control.dlqr(g * sys.A, g * sys.B, Q, R)
        assert np.abs(sol.P - P).max() < 1e-9 * max(1.0, np.abs(P).max())
        assert np.abs(sol.K - K).max() < 1e-9 * max(1.0, np.abs(K).max())
        # Bellman check independent of the DARE: P is the closed-loop Lyapunov solution
        F = g * (sys.A - sys.B @ sol.K)
        PL = sla.solve_discrete_lyapunov(F.T, Q + sol.K.T @ R @ sol.K)
        assert np.abs(PL - sol.P).max() < 1e-8 * np.abs(PL).max()
        if gamma == 1.0:
            assert sol.c == 0.0 and sol.noise_cost == pytest.approx(np.trace(sys.W @ sol.P))


def test_finite_horizon_riccati():
    sys = LinearGaussianSystem(A2, B2, W2)
    Q, R = np.eye(2), np.array([[0.1]])
    fin = sys.lqr_finite_horizon(Q, R, H=12, Qf=np.zeros((2, 2)), gamma=0.95)
    assert fin.K.shape == (12, 1, 2) and fin.P.shape == (13, 2, 2) and fin.c[12] == 0.0
    x0 = np.array([1.0, -0.5])
    # the time-varying cost-to-go equals the exactly propagated expected cost of u_t = -K_t x_t
    mu, Sig, total = x0, np.zeros((2, 2)), 0.0
    for t in range(12):
        M = Q + fin.K[t].T @ R @ fin.K[t]
        total += 0.95 ** t * (mu @ M @ mu + np.trace(M @ Sig))
        F = A2 - B2 @ fin.K[t]
        mu, Sig = F @ mu, F @ Sig @ F.T + W2
    assert fin.value(x0) == pytest.approx(total, abs=1e-12)
    assert np.allclose(fin.control(x0, 3), -fin.K[3] @ x0)
    # long horizons converge to the stationary solution
    inf = sys.lqr(Q, R, 0.95)
    long = sys.lqr_finite_horizon(Q, R, H=2000, gamma=0.95)
    assert np.abs(long.P[0] - inf.P).max() < 1e-9 and np.abs(long.K[0] - inf.K).max() < 1e-9
    assert long.c[0] == pytest.approx(inf.c, abs=1e-9)


# ---------------------------------------------------------------------------- Kalman filter
def _filterpy_run(sys, y, u, m0, P0):
    filterpy = pytest.importorskip("filterpy.kalman")
    kf = filterpy.KalmanFilter(dim_x=sys.n, dim_z=y.shape[1], dim_u=sys.m)
    kf.F, kf.B, kf.H, kf.Q, kf.R = sys.A, sys.B, sys.C, sys.W, sys.V
    kf.x, kf.P = m0.copy(), P0.copy()
    means, covs, ll = [], [], 0.0
    for t in range(len(y)):
        if t > 0:
            kf.predict(u=u[t - 1])
        kf.update(y[t])
        ll += kf.log_likelihood
        means.append(kf.x.copy())
        covs.append(kf.P.copy())
    return kf, np.array(means), np.array(covs), ll


def test_kalman_filter_and_smoother_match_filterpy():
    sys = _random_system(7)
    traj = sys.simulate(np.zeros(3), np.random.default_rng(0).normal(size=(40, 2)), seed=1)
    m0, P0 = np.array([0.5, -0.2, 0.1]), 2.0 * np.eye(3)
    res = sys.kalman_filter(traj.y, traj.u, m0, P0)
    kf, means, covs, ll = _filterpy_run(sys, traj.y, traj.u, m0, P0)
    assert np.abs(res.means - means).max() < 1e-9
    assert np.abs(res.covs - covs).max() < 1e-9
    assert res.loglik == pytest.approx(ll, abs=1e-9)
    # filterpy's RTS smoother with B u folded into the smoothed prediction: run it with u = 0 data
    traj0 = sys.simulate(np.zeros(3), None, T=40, seed=2)
    sm = sys.rts_smoother(traj0.y, None, m0, P0)
    kf, means, covs, _ = _filterpy_run(sys, traj0.y, np.zeros((40, 2)), m0, P0)
    xs, Ps, _, _ = kf.rts_smoother(means, covs)
    assert np.abs(sm.means - xs).max() < 1e-9 and np.abs(sm.covs - Ps).max() < 1e-9
    assert sm.gains.shape == (39, 3, 3)


def test_loglik_and_smoother_are_exact_gaussian_conditioning():
    """Stack x_0..x_{T-1}, y_0..y_{T-1} as one Gaussian: the filter's log-likelihood is log N(y) and the
    smoother's means/covariances are the exact conditionals E[x | y], Cov[x | y]."""
    sys = _random_system(3, n=2, m=1, p=1)
    T, m0, P0 = 6, np.array([1.0, -1.0]), np.diag([0.5, 2.0])
    u = np.random.default_rng(4).normal(size=(T - 1, 1))
    n = 2
    Phi = np.zeros((T * n, T * n))  # x = mean + Phi ε, ε = (x_0 - m0, w_0, ..., w_{T-2})
    mean = np.zeros(T * n)
    mean[:n] = m0
    Phi[:n, :n] = np.eye(n)
    for t in range(1, T):
        mean[t * n:(t + 1) * n] = sys.A @ mean[(t - 1) * n:t * n] + sys.B @ u[t - 1]
        Phi[t * n:(t + 1) * n] = sys.A @ Phi[(t - 1) * n:t * n]
        Phi[t * n:(t + 1) * n, t * n:(t + 1) * n] += np.eye(n)
    Sx = Phi @ sla.block_diag(P0, *[sys.W] * (T - 1)) @ Phi.T
    Cbig = np.kron(np.eye(T), sys.C)
    Sy = Cbig @ Sx @ Cbig.T + np.kron(np.eye(T), sys.V)
    y = sys.simulate(np.array([0.3, 0.2]), np.vstack([u, [[0.0]]]), seed=5).y
    ll = multivariate_normal(Cbig @ mean, Sy).logpdf(y.ravel())
    sm = sys.rts_smoother(y, u, m0, P0)
    assert sm.loglik == pytest.approx(ll, abs=1e-10)
    gain = Sx @ Cbig.T @ np.linalg.inv(Sy)
    post_mean = mean + gain @ (y.ravel() - Cbig @ mean)
    post_cov = Sx - gain @ Cbig @ Sx
    assert np.abs(sm.means.ravel() - post_mean).max() < 1e-10
    for t in range(T):
        assert np.abs(sm.covs[t] - post_cov[t * n:(t + 1) * n, t * n:(t + 1) * n]).max() < 1e-10


def test_missing_observations_skip_the_update():
    sys = _random_system(2)
    y = sys.simulate(np.ones(3), None, T=12, seed=3).y
    y_miss = y.copy()
    y_miss[[3, 7]] = np.nan
    res = sys.kalman_filter(y_miss)
    filterpy = pytest.importorskip("filterpy.kalman")
    kf = filterpy.KalmanFilter(dim_x=3, dim_z=2)
    kf.F, kf.H, kf.Q, kf.R, kf.x, kf.P = sys.A, sys.C, sys.W, sys.V, np.zeros(3), np.eye(3)
    for t in range(12):
        if t > 0:
            kf.predict()
        kf.update(None if t in (3, 7) else y[t])
        assert np.abs(res.means[t] - kf.x).max() < 1e-10 and np.abs(res.covs[t] - kf.P).max() < 1e-10


def test_steady_state_kalman_matches_dlqe_and_filter_limit():
    control = pytest.importorskip("control")
    sys = _random_system(11)
    ss = sys.steady_state_kalman()
    L, P, _ = control.dlqe(sys.A, np.eye(3), sys.C, sys.W, sys.V)
    assert np.abs(ss.predictor_gain - L).max() < 1e-9  # dlqe's gain is the predictor form A·K
    assert np.abs(ss.P_prior - P).max() < 1e-9
    y = sys.simulate(np.zeros(3), None, T=300, seed=0).y
    res = sys.kalman_filter(y)
    assert np.abs(res.covs[-1] - ss.P_post).max() < 1e-9
    assert np.abs(res.pred_covs[-1] - ss.P_prior).max() < 1e-9


# ---------------------------------------------------------------------------- simulation
def test_simulate_noise_free_recursion_and_reproducibility():
    rng = np.random.default_rng(0)
    A, B, C = rng.normal(size=(2, 2)) * 0.5, rng.normal(size=(2, 1)), rng.normal(size=(1, 2))
    sys = LinearGaussianSystem(A, B, np.zeros((2, 2)), C, np.zeros((1, 1)))
    u = rng.normal(size=(5, 1))
    tr = sys.simulate([1.0, 2.0], u, seed=3)
    x = np.array([1.0, 2.0])
    for t in range(5):
        assert np.allclose(tr.x[t], x) and np.allclose(tr.y[t], C @ x)
        x = A @ x + B @ u[t]
    assert np.allclose(tr.x[5], x) and tr.x.shape == (6, 2) and tr.y.shape == (5, 1)
    noisy = _random_system(1)
    a = noisy.simulate(np.zeros(3), None, T=10, seed=np.random.default_rng(8))
    b = noisy.simulate(np.zeros(3), None, T=10, seed=8)
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)


def test_simulate_noise_covariance_and_policy():
    sys = _random_system(5)
    sol = sys.lqr(np.eye(3), np.eye(2), 0.9)
    tr = sys.simulate(np.ones(3), sol.control, T=20_000, seed=1)
    assert np.allclose(tr.u, -tr.x[:-1] @ sol.K.T)
    w = tr.x[1:] - tr.x[:-1] @ sys.A.T - tr.u @ sys.B.T
    assert np.abs(np.cov(w.T) - sys.W).max() < 0.05 * np.abs(sys.W).max()
    v = tr.y - tr.x[:-1] @ sys.C.T
    assert np.abs(np.cov(v.T) - sys.V).max() < 0.05 * np.abs(sys.V).max()


# ---------------------------------------------------------------------------- bad input
def test_bad_input_raises_clear_errors():
    with pytest.raises(SpmnError, match="A must be square"):
        LinearGaussianSystem(np.ones((2, 3)), None, np.eye(2))
    with pytest.raises(SpmnError, match="B has shape"):
        LinearGaussianSystem(A2, np.ones((3, 1)), W2)
    with pytest.raises(SpmnError, match="W must be positive semidefinite"):
        LinearGaussianSystem(A2, B2, -np.eye(2))
    with pytest.raises(SpmnError, match="C given without V"):
        LinearGaussianSystem(A2, B2, W2, C=np.ones((1, 2)))
    sys = LinearGaussianSystem(A2, B2, W2)
    with pytest.raises(SpmnError, match="R must be positive definite"):
        sys.lqr(np.eye(2), 0.0)
    with pytest.raises(SpmnError, match="gamma"):
        sys.lqr(np.eye(2), 0.1, gamma=1.5)
    with pytest.raises(SpmnError, match="no observation model"):
        sys.kalman_filter(np.zeros((3, 1)))
    with pytest.raises(SpmnError, match="x0 must have shape"):
        sys.simulate([1.0, 2.0, 3.0], None, T=3)
    with pytest.raises(SpmnError, match="not stabilisable"):
        LinearGaussianSystem(np.diag([2.0, 0.5]), [[0.0], [1.0]], W2).lqr(np.eye(2), 1.0)
    obs = LinearGaussianSystem(A2, B2, W2, [[1.0, 0.0]], [[0.1]])
    with pytest.raises(SpmnError, match="y must have shape"):
        obs.kalman_filter(np.zeros((4, 3)))
