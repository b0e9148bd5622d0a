"""GaussianWorldModel: exact Riccati/Kalman on the model's own joint Gaussian, learning from
linear-Gaussian logs, mixtures, the discrete engine on the discretized system, bad input."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

import spmn
from spmn import DataError, NotFittedError, SolverError, SpmnError
from spmn.circuit.quadratic import Quadratic
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
