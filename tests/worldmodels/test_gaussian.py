"""GaussianWorldModel: exact Riccati/Kalman on the model's own joint Gaussian, learning from
linear-Gaussian logs, mixtures, the discrete engine on the discretized system, bad input."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

import spmn
from spmn import DataError, NotFittedError, SolverError, SpmnError
from spmn.circuit.quadratic import Quadratic
from spmn.errors import SpmnWarning
from spmn.reference import LinearGaussianSystem
from spmn.worldmodels.gaussian.model import GaussianWorldModel, transitions_from_system

A2 = np.array([[1.0, 0.1], [0.0, 1.0]])
B2 = np.array([[0.005], [0.1]])
W2 = np.diag([1e-4, 1e-2])
Q2, R2 = np.eye(2), np.array([[0.1]])
V_TRUE = 10.675057


def _random_system(seed: int, n: int = 3, m: int = 2):
    rng = np.random.default_rng(seed)
    G = rng.normal(size=(n, n))
    return (rng.normal(size=(n, n)) / np.sqrt(n), rng.normal(size=(n, m)),
            0.1 * G @ G.T + 0.01 * np.eye(n))


def _lstsq(logs, states, actions, intercept):
    Z = np.stack([logs[v] for v in states + actions], axis=1)
    Y = np.stack([logs[f"{v}_next"] for v in states], axis=1)
    if intercept:
        Z = np.hstack([Z, np.ones((Z.shape[0], 1))])
    theta, *_ = np.linalg.lstsq(Z, Y, rcond=None)
    resid = Y - Z @ theta
    return theta.T, resid.T @ resid / Z.shape[0]


@pytest.fixture(scope="module")
def di_logs():
    return transitions_from_system(LinearGaussianSystem(A2, B2, W2), 20_000, cost=(Q2, R2), seed=3)


# ---------------------------------------------------------------------------- true model
@pytest.mark.parametrize("method", ["policy_iteration", "value_iteration"])
def test_true_model_solution_is_the_riccati_solution(method):
    control = pytest.importorskip("control")
    cases = [(A2, B2, W2, Q2, R2, 0.95)]
    for seed in range(2):
        A, B, W = _random_system(seed)
        cases.append((A, B, W, np.diag([1.0, 2.0, 0.5]), np.array([[0.3, 0.1], [0.1, 0.4]]), 0.9))
    for A, B, W, Q, R, g in cases:
        ref = LinearGaussianSystem(A, B, W).lqr(Q, R, g)
        K, P, _ = control.dlqr(np.sqrt(g) * A, np.sqrt(g) * B, Q, R)  # the reference's own check
        np.testing.assert_allclose(ref.P, P, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(ref.K, K, rtol=1e-8, atol=1e-10)
        sol = GaussianWorldModel.from_system(A, B, W, cost=(Q, R)).solve(g, method=method)
        assert np.abs(sol.P - ref.P).max() < 1e-8 and np.abs(sol.K - ref.K).max() < 1e-8
        assert abs(sol.c - ref.c) < 1e-8
        assert sol.noise_cost == pytest.approx(ref.noise_cost, abs=1e-8)
        assert np.abs(sol.p).max() < 1e-10 and np.abs(sol.k).max() < 1e-10
        x = np.random.default_rng(0).normal(size=(5, A.shape[0]))
        np.testing.assert_allclose(sol.cost(x), ref.value(x), rtol=1e-9)
        np.testing.assert_allclose(sol.value(x), -ref.value(x), rtol=1e-9)
        np.testing.assert_allclose(sol.policy(x), -(x @ ref.K.T), atol=1e-8)
        assert sol.residual < 1e-9
    assert sol.cost(np.zeros(3)) == pytest.approx(sol.c)


def test_circuit_expectation_is_the_bellman_expectation():
    """E[V(x') | x, u] through the circuit (moments of its Gaussian leaf) is the closed form."""
    A, B, W = _random_system(4)
    model = GaussianWorldModel.from_system(A, B, W, cost=(np.eye(3), np.eye(2)),
                                           offset=[0.3, -1, 2])
    rng = np.random.default_rng(1)
    x, u = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    M = rng.normal(size=(3, 3))
    V = Quadratic(["x0", "x1", "x2"], M + M.T, m=[1.0, 2.0, -1.0], c=0.5)
    mean = x @ A.T + u @ B.T + [0.3, -1, 2]
    want = V(mean) + np.trace((M + M.T) @ W)
    np.testing.assert_allclose(model.expected_value(V, x, u), want, rtol=1e-10)
    pm, pc = model.predict(x, u)
    np.testing.assert_allclose(pm, mean, atol=1e-10)
    np.testing.assert_allclose(pc, np.broadcast_to(W, (6, 3, 3)), atol=1e-10)
    d = model.linear_dynamics()
    np.testing.assert_allclose(d.A, A, atol=1e-12)
    np.testing.assert_allclose(d.offset, [0.3, -1, 2], atol=1e-12)
    sol = model.solve(0.9)  # the affine case: value has a linear term, policy an offset
    vi = model.solve(0.9, method="value_iteration")
    np.testing.assert_allclose([sol.c, *sol.p, *sol.k], [vi.c, *vi.p, *vi.k], rtol=1e-9)
    assert np.abs(sol.p).max() > 1e-3


def test_filter_matches_reference_kalman_and_filterpy():
    A, B, W = _random_system(2)
    rng = np.random.default_rng(5)
    C, V = rng.normal(size=(2, 3)), np.array([[0.3, 0.05], [0.05, 0.2]])
    sys_ = LinearGaussianSystem(A, B, W, C, V)
    u = rng.normal(size=(60, 2))
    y = sys_.simulate(np.zeros(3), u, seed=6).y
    y[11] = np.nan  # a missing observation
    model = GaussianWorldModel.from_system(A, B, W, cost=(np.eye(3), np.eye(2)))
    for yy in (y, np.where(np.arange(60)[:, None] * [1, 0] == 7, np.nan, y)):  # + one partial
        got, ref = model.filter(yy, u, C, V), sys_.kalman_filter(yy, u)
        for a, b in [(got.means, ref.means), (got.covs, ref.covs), (got.pred_means, ref.pred_means),
                     (got.pred_covs, ref.pred_covs)]:
            np.testing.assert_allclose(a, b, atol=1e-10, rtol=0)
        assert got.loglik == pytest.approx(ref.loglik, abs=1e-10)
    got = model.filter(y, u, C, V)
    kalman = pytest.importorskip("filterpy.kalman")
    kf = kalman.KalmanFilter(dim_x=3, dim_z=2, dim_u=2)
    kf.x, kf.P, kf.F, kf.B, kf.Q, kf.H, kf.R = np.zeros(3), np.eye(3), A, B, W, C, V
    for t in range(60):
        if t:
            kf.predict(u=u[t - 1])
        kf.update(None if t == 11 else y[t])
        np.testing.assert_allclose(got.means[t], kf.x, atol=1e-10, rtol=0)
        np.testing.assert_allclose(got.covs[t], kf.P, atol=1e-10, rtol=0)


# ---------------------------------------------------------------------------- learned
@pytest.mark.parametrize("intercept", [False, True])
def test_double_integrator_learned_equals_least_squares(di_logs, intercept):
    model = GaussianWorldModel(["x0", "x1"], ["u0"], "r", intercept=intercept).fit(di_logs)
    theta, W_ls = _lstsq(di_logs, ["x0", "x1"], ["u0"], intercept)
    d = model.linear_dynamics()
    assert np.abs(d.A - theta[:, :2]).max() < 1e-8 and np.abs(d.B - theta[:, 2:3]).max() < 1e-8
    assert np.abs(d.W - W_ls).max() < 1e-8
    assert np.abs(d.offset - (theta[:, 3] if intercept else 0.0)).max() < 1e-8
    # the learned reward is the quadratic that generated it
    np.testing.assert_allclose(-model.reward_.M, np.diag([1.0, 1.0, 0.1]), atol=1e-8)
    sol = model.solve(0.95)
    if not intercept:
        ref = LinearGaussianSystem(theta[:, :2], theta[:, 2:3], W_ls).lqr(Q2, R2, 0.95)
        assert np.abs(sol.P - ref.P).max() < 1e-8 and np.abs(sol.K - ref.K).max() < 1e-8
        assert abs(sol.c - ref.c) < 1e-8
    assert sol.cost([1.0, 0.0]) == pytest.approx(V_TRUE, rel=0.01)


def test_verify_uses_the_learned_model():
    from spmn.cli.verify import verify

    rep = verify("lqr:double-integrator", transitions=20_000, seed=1)
    assert rep["passed"] and rep["relative_error"] < 0.01 and rep["A_error"] < 0.01


def test_save_load_and_summary(tmp_path, di_logs):
    model = GaussianWorldModel(["x0", "x1"], ["u0"], "r").fit(di_logs)
    path = spmn.save(model, tmp_path / "lg.json")
    back = spmn.load(path)
    assert isinstance(back, GaussianWorldModel)
    a, b = model.solve(0.95), back.solve(0.95)
    np.testing.assert_array_equal(a.P, b.P)
    assert a.c == b.c
    assert back.summary().nodes == {"mvgaussian": 1}
    mix = GaussianWorldModel("x", "u", "r", n_components=2).fit(_piecewise_logs(2000, seed=1))
    back = spmn.load(spmn.save(mix, tmp_path / "mix.json"))
    np.testing.assert_array_equal(back.weights, mix.weights)
    X = np.array([[-1.0], [0.5]])
    U = [[0.2], [0.1]]
    np.testing.assert_array_equal(back.predict(X, U)[0], mix.predict(X, U)[0])


# ---------------------------------------------------------------------------- common keywords
def test_progress_seed_backend_keywords_and_backends_agree(di_logs):
    """``progress``, ``seed``, ``backend`` are taken and kept. Answers that do not call the
    kernels (dynamics, predict, solve) are identical on every backend; the kernels' answers
    (log-likelihood, samples) equal the reference to 1e-12 on a well-conditioned model."""
    from spmn import kernels

    default = GaussianWorldModel(["x0", "x1"], ["u0"], "r").fit(di_logs)
    assert (default.progress, default.seed, default.backend) == (True, 0, None)
    rng = np.random.default_rng(7)
    x, u = rng.normal(size=(6, 2)), rng.normal(size=(6, 1))
    sub = {k: v[:500] for k, v in di_logs.items()}
    sol = default.solve(0.95)
    V = Quadratic(["x0", "x1"], np.eye(2))
    A, B, W = _random_system(4)
    well = GaussianWorldModel.from_system(A, B, W, cost=(np.eye(3), np.eye(2)))
    X, U = rng.normal(size=(40, 3)), rng.normal(size=(40, 2))
    logs = {**{f"x{i}": X[:, i] for i in range(3)}, **{f"u{j}": U[:, j] for j in range(2)},
            **{f"x{i}_next": (X @ A.T + U @ B.T)[:, i] + 0.3 for i in range(3)}}
    for be in kernels.available():
        m = GaussianWorldModel(["x0", "x1"], ["u0"], "r", progress=False, backend=be,
                               seed=0).fit(di_logs)
        assert (m.progress, m.seed, m.backend) == (False, 0, be)
        np.testing.assert_array_equal(m.linear_dynamics().A, default.linear_dynamics().A)
        np.testing.assert_array_equal(m.predict(x, u)[1], default.predict(x, u)[1])
        np.testing.assert_array_equal(m.expected_value(V, x, u), default.expected_value(V, x, u))
        np.testing.assert_array_equal(m.solve(0.95).P, sol.P)
        # this fitted joint has cond(Σ) ≈ 2e6: the backends' Cholesky factors differ by rounding
        np.testing.assert_allclose(m.log_likelihood(sub), default.log_likelihood(sub),
                                   rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(m.sample_next(x, u), default.sample_next(x, u), rtol=1e-11,
                                   atol=1e-11)
        w = GaussianWorldModel.from_system(A, B, W, cost=(np.eye(3), np.eye(2)), backend=be)
        np.testing.assert_allclose(w.log_likelihood(logs), well.log_likelihood(logs),
                                   rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(w.sample_next(X, U), well.sample_next(X, U), rtol=1e-12,
                                   atol=1e-12)
    assert np.array_equal(default.sample_next(x, u), default.sample_next(x, u))  # seeded
    assert not np.array_equal(default.sample_next(x, u, seed=1), default.sample_next(x, u))
    assert default.sample_next(x[0], u[0]).shape == (2,)
    # the samples follow p(x' | x, u) = N(A x + B u + offset, W)
    d = default.linear_dynamics()
    draws = default.sample_next(np.zeros((20_000, 2)), np.ones((20_000, 1)), seed=2)
    assert np.all(np.abs(draws.mean(axis=0) - d.B[:, 0] - d.offset)
                  < 5 * np.sqrt(np.diag(d.W) / 20_000))
    np.testing.assert_allclose(np.cov(draws.T), d.W, rtol=0.05,
                               atol=5 * np.sqrt(d.W[0, 0] * d.W[1, 1] / 20_000))
    # mixtures: the bar (EM rounds) changes nothing; log-likelihoods agree across backends
    logs, test = _piecewise_logs(2000, seed=1), _piecewise_logs(50, seed=2)
    mix = [GaussianWorldModel("x", "u", "r", n_components=2, progress=p, backend=b).fit(logs)
           for p, b in ((False, "reference"), (True, None))]
    np.testing.assert_array_equal(mix[0].weights, mix[1].weights)
    np.testing.assert_allclose(mix[0].log_likelihood(test), mix[1].log_likelihood(test),
                               rtol=1e-12, atol=1e-12)
    with pytest.raises(SpmnError, match="backend"):
        GaussianWorldModel(["x0", "x1"], ["u0"], "r", backend="nope").fit(di_logs).log_likelihood(sub)


# ---------------------------------------------------------------------------- noise-free dynamics
def _ridge_fit(logs, states, actions, **kw):
    with pytest.warns(SpmnWarning, match="noise ridge"):
        return GaussianWorldModel(states, actions, "r", **kw).fit(logs)


@pytest.mark.parametrize("intercept", [True, False])
def test_deterministic_double_integrator_fits_and_solves_exactly(tmp_path, intercept):
    """W = 0: the fit adds the documented ridge reg x Var(x') to W, keeps A and B exact, and
    the Riccati solution is the noise-free system's (P, K; c is the ridge's noise cost)."""
    logs = transitions_from_system(LinearGaussianSystem(A2, B2, np.zeros((2, 2))), 4000,
                                   cost=(Q2, R2), seed=0)
    model = _ridge_fit(logs, ["x0", "x1"], ["u0"], intercept=intercept)
    assert model.ridge_directions_ == 2
    d = model.linear_dynamics()
    assert np.abs(d.A - A2).max() < 1e-10 and np.abs(d.B - B2).max() < 1e-10
    assert np.abs(d.offset).max() < 1e-10
    Xn = np.stack([logs["x0_next"], logs["x1_next"]], axis=1)
    s = Xn.var(axis=0) if intercept else (Xn ** 2).mean(axis=0)
    np.testing.assert_allclose(d.W, np.diag(1e-6 * s), rtol=1e-6, atol=1e-12 * s.max())
    model.validate()
    sol = model.solve(0.95)
    ref = LinearGaussianSystem(A2, B2, np.zeros((2, 2))).lqr(Q2, R2, 0.95)
    assert np.abs(sol.P - ref.P).max() < 1e-9 and np.abs(sol.K - ref.K).max() < 1e-9
    ridge = LinearGaussianSystem(A2, B2, d.W).lqr(Q2, R2, 0.95)
    assert abs(sol.c - ridge.c) < 1e-10 and 0 < sol.c < 0.95 / 0.05 * 1e-6 * s.sum() * ref.P.max()
    back = spmn.load(spmn.save(model, tmp_path / "det.json"))
    np.testing.assert_array_equal(back.solve(0.95).P, sol.P)
    np.testing.assert_array_equal(back.linear_dynamics().W, d.W)
    # a larger reg= gives a larger ridge, the same dynamics; reg=0 has no ridge and says why
    big = _ridge_fit(logs, ["x0", "x1"], ["u0"], intercept=intercept, reg=1e-3)
    np.testing.assert_allclose(big.linear_dynamics().W, 1e3 * d.W, rtol=1e-6, atol=1e-12 * s.max())
    assert np.abs(big.linear_dynamics().A - A2).max() < 1e-10
    with pytest.raises(DataError, match="noise-free.*reg=0 is off"):
        GaussianWorldModel(["x0", "x1"], ["u0"], "r", intercept=intercept, reg=0).fit(logs)


def test_cartpole_like_deterministic_system_fits():
    """A linearized cart-pole (4 states, 1 force, Euler step 0.02 s), logged by hand without
    noise: exact A, B, and the Riccati solution of the noise-free system."""
    dt, M, mp, ln, g = 0.02, 1.0, 0.1, 0.5, 9.8
    Ac = np.array([[0, 1, 0, 0], [0, 0, -mp * g / M, 0], [0, 0, 0, 1],
                   [0, 0, (M + mp) * g / (M * ln), 0]])
    A, B = np.eye(4) + dt * Ac, dt * np.array([[0.0], [1 / M], [0.0], [-1 / (M * ln)]])
    rng = np.random.default_rng(0)
    X, U, Xn = [], [], []
    for _ in range(250):  # 250 episodes of 20 steps from random states, random pushes
        x = rng.normal(0.0, [0.5, 0.5, 0.1, 0.3])
        for _ in range(20):
            u = rng.normal(0.0, 2.0, 1)
            X.append(x), U.append(u)
            x = A @ x + B @ u
            Xn.append(x)
    X, U, Xn = np.array(X), np.array(U), np.array(Xn)
    names = ["pos", "vel", "angle", "spin"]
    logs = {nm: X[:, i] for i, nm in enumerate(names)}
    logs.update({f"{nm}_next": Xn[:, i] for i, nm in enumerate(names)})
    logs["force"] = U[:, 0]
    Q, R = np.diag([1.0, 0.1, 10.0, 0.1]), np.array([[0.01]])
    model = _ridge_fit(logs, names, "force", cost=(Q, R))
    d = model.linear_dynamics()
    assert np.abs(d.A - A).max() < 1e-10 and np.abs(d.B - B).max() < 1e-10
    model.validate()
    sol = model.solve(0.99)
    ref = LinearGaussianSystem(A, B, np.zeros((4, 4))).lqr(Q, R, 0.99)
    assert np.abs(sol.P - ref.P).max() < 1e-8 * np.abs(ref.P).max()
    assert np.abs(sol.K - ref.K).max() < 1e-8 * np.abs(ref.K).max()


def test_partly_deterministic_dynamics_keep_the_fitted_noise(di_logs):
    """Noise on the velocity only: W keeps the least-squares residual variance there, the
    ridge goes to the noise-free position direction only."""
    W = np.diag([0.0, 1e-2])
    logs = transitions_from_system(LinearGaussianSystem(A2, B2, W), 4000, cost=(Q2, R2), seed=1)
    model = _ridge_fit(logs, ["x0", "x1"], ["u0"], intercept=False)
    assert model.ridge_directions_ == 1
    theta, W_ls = _lstsq(logs, ["x0", "x1"], ["u0"], False)
    d = model.linear_dynamics()
    assert np.abs(d.A - theta[:, :2]).max() < 1e-10 and np.abs(d.B - theta[:, 2:]).max() < 1e-10
    assert np.abs(d.A[0] - A2[0]).max() < 1e-12 and abs(d.B[0, 0] - B2[0, 0]) < 1e-12
    assert d.W[1, 1] == pytest.approx(W_ls[1, 1], rel=1e-9)
    assert d.W[0, 0] == pytest.approx(1e-6 * (logs["x0_next"] ** 2).mean(), rel=1e-6)
    # noisy logs are fitted as before: no ridge, no warning
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert GaussianWorldModel(["x0", "x1"], ["u0"], "r").fit(di_logs).ridge_directions_ == 0


def test_degenerate_logs_that_no_ridge_fixes_name_the_variables(di_logs):
    logs = dict(di_logs)
    logs["x1"] = 2.0 * logs["x0"]  # a duplicated state: (x, u) itself is singular
    with pytest.raises(DataError, match=r"cannot fix.*|'x0', 'x1'") as err:
        GaussianWorldModel(["x0", "x1"], ["u0"], "r").fit(logs)
    assert "'x0'" in str(err.value) and "'x1'" in str(err.value)
    assert "ridge on the noise covariance cannot fix" in str(err.value)
    logs = dict(di_logs)
    logs["x1_next"] = np.full_like(logs["x1_next"], 3.0)
    with pytest.raises(DataError, match="'x1_next' is constant"):
        GaussianWorldModel(["x0", "x1"], ["u0"], "r").fit(logs)
    for bad in (-1.0, np.nan, "big"):
        with pytest.raises(DataError, match="reg"):
            GaussianWorldModel("x", "u", reg=bad)


def test_deterministic_piecewise_mixture_fits():
    """EM's floor (reg x each variable's variance) keeps noise-free mixtures valid too."""
    logs = _piecewise_logs(4000, seed=3)
    logs["x_next"] = np.where(logs["x"] < 0, 0.7, 1.2) * logs["x"] + 0.5 * logs["u"]
    model = GaussianWorldModel("x", "u", "r", n_components=2, progress=False).fit(logs)
    model.validate()
    slopes = sorted(model.linear_dynamics(k).A[0, 0] for k in range(2))
    assert slopes == pytest.approx([0.7, 1.2], abs=1e-3)  # the floor shrinks A by O(reg)


# ---------------------------------------------------------------------------- mixtures
def _piecewise_logs(n: int, seed: int):
    """x' = 0.7 x + 0.5 u + w (x < 0), 1.2 x + 0.5 u + w (x >= 0), w ~ N(0, 0.1²)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2.0, 2.0, n)
    u = rng.normal(0.0, 1.0, n)
    a = np.where(x < 0, 0.7, 1.2)
    xn = a * x + 0.5 * u + rng.normal(0.0, 0.1, n)
    return {"x": x, "u": u, "x_next": xn, "r": -(x ** 2 + 0.1 * u ** 2)}


def test_grid_solver_on_one_component_approaches_riccati():
    model = GaussianWorldModel.from_system([[1.0]], [[0.5]], [[0.09]], cost=([[1.0]], [[0.1]]))
    exact = model.solve(0.95)
    X = np.linspace(-2, 2, 41)[:, None]
    grid = model.solve(0.95, method="grid", anchors=X, action_grid=np.linspace(-4, 4, 161))
    np.testing.assert_allclose(grid.cost(X), exact.cost(X), rtol=2e-3)
    np.testing.assert_allclose(grid.policy(X), exact.policy(X), atol=0.03)


def test_mixture_learns_piecewise_linear_dynamics():
    logs = _piecewise_logs(8000, seed=0)
    model = GaussianWorldModel("x", "u", "r", n_components=2, seed=0).fit(logs)
    assert model.summary().nodes == {"mvgaussian": 2, "sum": 1}
    slopes = sorted(model.linear_dynamics(k).A[0, 0] for k in range(2))
    assert slopes[0] == pytest.approx(0.7, abs=0.08) and slopes[1] == pytest.approx(1.2, abs=0.08)
    for x in (-1.5, 1.5):
        mean, _ = model.predict([x], [0.0])
        assert mean[0] == pytest.approx((0.7 if x < 0 else 1.2) * x, abs=0.1)
    sol = model.solve(0.95, grid_size=41, n_anchors=200)
    assert sol.method == "grid" and sol.K is None
    # policies on either side follow each piece's own LQR gain (to the grid's resolution)
    for a, x in ((0.7, -1.0), (1.2, 1.0)):
        k = GaussianWorldModel.from_system([[a]], [[0.5]], [[0.01]],
                                           cost=([[1.0]], [[0.1]])).solve(0.95).K[0, 0]
        assert sol.policy([x])[0] == pytest.approx(-k * x, abs=0.35)
    # the fitted value is close to the piecewise system's own (a fine tabular discretization)
    V = _tabular_piecewise_value()
    for x in (-1.0, -0.5, 0.5, 1.0):
        assert -sol.value([x]) == pytest.approx(V(x), rel=0.08)


def _tabular_piecewise_value():
    """Cost-to-go of the true piecewise system on a fine state x action grid (value iteration)."""
    h, L = 0.05, 3.0
    edges = np.arange(-L, L + h / 2, h)
    c = (edges[:-1] + edges[1:]) / 2
    ug = np.linspace(-6, 6, 61)
    mu = np.where(c < 0, 0.7, 1.2)[:, None] * c[:, None] + 0.5 * ug[None]
    cdf = norm.cdf((edges[None, None, :] - mu[..., None]) / 0.1)
    cdf[..., 0], cdf[..., -1] = 0.0, 1.0
    P = np.diff(cdf, axis=-1)
    R = c[:, None] ** 2 + 0.1 * ug[None] ** 2
    V = np.zeros(c.size)
    for _ in range(3000):
        Vn = (R + 0.95 * P @ V).min(axis=1)
        if np.abs(Vn - V).max() < 1e-9:
            break
        V = Vn
    return lambda x: float(np.interp(x, c, V))


# ---------------------------------------------------------------------------- bad input
def test_bad_input_is_a_clear_error(di_logs):
    logs = dict(di_logs)
    logs["u0"] = np.zeros_like(logs["u0"])  # no excitation: (x, u, x') is singular
    with pytest.raises(DataError, match="singular"):
        GaussianWorldModel(["x0", "x1"], "u0", "r").fit(logs)
    with pytest.raises(DataError, match="missing"):
        GaussianWorldModel(["x0", "x2"], "u0", "r").fit(di_logs)
    with pytest.raises(DataError, match="NaN"):
        GaussianWorldModel(["x0", "x1"], "u0", "r").fit({**di_logs, "x0": np.full(20_000, np.nan)})
    with pytest.raises(NotFittedError):
        GaussianWorldModel("x", "u").solve()
    with pytest.raises(DataError, match="shape"):
        GaussianWorldModel.from_system(A2, B2, np.eye(3), cost=(Q2, R2))
    with pytest.raises(DataError, match="shape"):
        GaussianWorldModel.from_system(A2, B2, W2, cost=(np.eye(3), R2))
    model = GaussianWorldModel.from_system(A2, B2, W2, cost=(Q2, R2))
    with pytest.raises(SolverError, match="gamma"):
        model.solve(1.0)
    with pytest.raises(DataError, match="one entry per state variable"):
        model.solve(0.9).cost([1.0, 2.0, 3.0])
    with pytest.raises(DataError, match="shape"):
        model.filter(np.zeros((5, 1)), None, [[1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]])
    # an unstable mode that the action cannot reach: no stabilizing Riccati solution
    bad = GaussianWorldModel.from_system([[1.2, 0.0], [0.0, 0.5]], [[0.0], [1.0]], np.eye(2) * 0.01,
                                         cost=(np.eye(2), [[1.0]]))
    with pytest.raises(SolverError, match="not stabilizable"):
        bad.solve(0.95)
    free = GaussianWorldModel.from_system(A2, B2, W2, cost=(Q2, [[0.0]]))
    free.reward_ = free.reward_ + Quadratic(["u0"], [[0.5]])  # rewards pushing u to infinity
    with pytest.raises(SolverError, match="concave"):
        free.solve(0.95)
    assert issubclass(SolverError, SpmnError)


@pytest.mark.slow
def test_discretized_system_discrete_and_continuous_engines_agree():
    """x' = x + 0.5u + w, σ = 0.3, r = −(x² + 0.1u²), γ = 0.95: exact V = 1.302270 x² + 2.226881.

    Logs: every (state bin, action) pair of the grid is tried 128 times; the offsets within the
    bin and the noise draws are stratified samples drawn per state bin and shared by all actions
    of that bin (common random numbers: the max over actions compares actions, not sampling
    noise). The discrete WorldModel learns from the bin codes, the GaussianWorldModel from the
    continuous columns of the same logs.
    """
    from spmn.worldmodels.tabular.model import WorldModel

    h, L, du, umax, n, sig = 0.06, 1.5, 0.12, 2.4, 128, 0.3
    edges = np.arange(-L, L + h / 2, h)
    cent = (edges[:-1] + edges[1:]) / 2
    ug = np.arange(-umax, umax + du / 2, du)
    S, A = cent.size, ug.size
    rng = np.random.default_rng(0)
    strata = lambda: (rng.permuted(np.tile(np.arange(n), (S, 1)), axis=1) + rng.random((S, n))) / n
    off, z = h * (strata() - 0.5), norm.ppf(strata())
    s = np.repeat(np.arange(S), A * n)
    a = np.tile(np.repeat(np.arange(A), n), S)
    i = np.tile(np.arange(n), S * A)
    x, u = cent[s] + off[s, i], ug[a]
    xn = x + 0.5 * u + sig * z[s, i]
    sn = np.clip(np.searchsorted(edges, xn, side="right") - 1, 0, S - 1)
    r = -(x ** 2 + 0.1 * u ** 2)
    disc = WorldModel("s", "a", "r", structure="full", progress=False).fit(
        {"s": s, "a": a, "r": r, "s_next": sn}).solve(0.95)
    cont = GaussianWorldModel("x", "u", "r").fit({"x": x, "u": u, "x_next": xn, "r": r}).solve(0.95)
    riccati = LinearGaussianSystem([[1.0]], [[0.5]], [[sig ** 2]]).lqr([[1.0]], [[0.1]], 0.95)
    assert riccati.value([0.0]) == pytest.approx(2.226881, abs=1e-6)
    assert riccati.P[0, 0] == pytest.approx(1.302270, abs=1e-6)
    inner = np.flatnonzero(np.abs(cent) <= 1.0)  # half a unit from the grid's edges
    v_disc = -disc.value(inner)
    v_cont = cont.cost(cent[inner][:, None])
    v_true = riccati.value(cent[inner][:, None])
    np.testing.assert_allclose(v_cont, v_true, rtol=0.01)
    np.testing.assert_allclose(v_disc, v_true, rtol=0.03)
    np.testing.assert_allclose(v_disc, v_cont, rtol=0.03)
    # the discrete policy is the continuous one, to the resolution of the two grids
    u_disc = ug[disc.policy(inner)]
    np.testing.assert_allclose(u_disc, cont.policy(cent[inner][:, None])[:, 0], atol=0.2)


def test_coverage_counts_the_transitions_behind_each_component():
    logs = _piecewise_logs(4000, seed=1)
    model = GaussianWorldModel("x", "u", "r", n_components=2, seed=0, progress=False).fit(logs)
    np.testing.assert_allclose(model.coverage_.sum(), 4000)
    assert model.coverage_.shape == (2,) and model.coverage_.min() > 1000
