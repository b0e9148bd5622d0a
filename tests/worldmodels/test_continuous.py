"""ContinuousWorldModel: landing probabilities against numerical integration, the region solver
against a brute-force dense reference of the learned piecewise model, convergence to the
analytic value of a linear-Gaussian chain as regions are refined, bad input, files, and a small
CartPole run end to end."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

import spmn
from spmn.errors import (
    CoverageWarning,
    DataError,
    NotFittedError,
    SolverError,
    SpmnWarning,
)
from spmn.worldmodels.continuous import ContinuousWorldModel
from spmn.worldmodels.continuous import leaves as L


def _chain(n=4000, seed=0, actions=2):
    """x' = 0.9 x ± 0.1 (action) + noise, y' a discrete counter moved by the action."""
    rng = np.random.default_rng(seed)
    x, y, a = rng.uniform(-1, 1, n), rng.integers(0, 3, n), rng.integers(0, actions, n)
    xn = 0.9 * x + np.where(a == 1, 0.1, -0.1) + 0.05 * rng.normal(size=n)
    yn = np.minimum(y + (a == 1), 2)
    end = (xn > 0.95) & (y == 2)
    return {"x": x, "y": y, "a": a, "x_next": xn, "y_next": yn, "r": -x ** 2 + (y == 2),
            "done": end}


@pytest.fixture(scope="module", params=["histogram", "gaussian"])
def mixed(request):
    return ContinuousWorldModel(["x", "y"], "a", "r", "done", discrete=["y"], max_regions=24,
                                leaf=request.param, progress=False).fit(_chain())


def _box_reference(mu, sd, lo, hi):
    """∫ N(t; mu, sd) dt over (lo, hi] by adaptive quadrature (the slow, obvious oracle), in
    pieces cut at mu ± 0, 1, 4 sd so that no piece hides the peak from the quadrature."""
    pdf = lambda t: stats.norm.pdf(t, mu, sd)
    cuts = [c for c in mu + sd * np.array([-4, -1, 0, 1, 4]) if lo < c < hi]
    edges = [lo, *cuts, hi]
    with warnings.catch_warnings():  # far tails: the integrand underflows, quad says so
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        return sum(integrate.quad(pdf, a, b, epsabs=0.0, epsrel=1e-13, limit=200)[0]
                   for a, b in zip(edges[:-1], edges[1:]))


def _counted(model, logs, k, a, j):
    """P(region j | k, a) of histogram leaves, counted from the logs: the product over the
    variables of the fraction of (k, a)'s rows (episode not ended) whose next value lies in
    region j's interval (the slow, obvious oracle)."""
    X = np.stack([logs["x"], logs["y"]], 1)
    Xn = np.stack([logs["x_next"], logs["y_next"]], 1)
    rows = (model.regions(X) == k) & (logs["a"] == a) & ~logs["done"]
    lo, hi = model.tree_.boxes()
    inside = (Xn[rows] > lo[j]) & (Xn[rows] <= hi[j])
    return float(np.prod(inside.mean(axis=0)))


def test_landing_probabilities_equal_numerical_integration(mixed):
    lv, (lo, hi) = mixed.leaves_, mixed.tree_.boxes()
    P = mixed.landing_probabilities()
    K, A = lv.count.shape
    logs = _chain()
    assert not lv.fallback.any()
    for a in range(A):
        np.testing.assert_allclose(np.asarray(P[a].sum(axis=1)).ravel(), 1.0, atol=1e-12)
        for k in range(0, K, 5):
            for j in range(K):
                if mixed.leaf == "histogram":
                    ref = _counted(mixed, logs, k, a, j)
                else:
                    codes = np.arange(3)
                    ref = _box_reference(lv.mean[k, a, 0], lv.std[k, a, 0], lo[j, 0], hi[j, 0]) \
                        * lv.cat[k, a, 0][(codes > lo[j, 1]) & (codes <= hi[j, 1])].sum()
                assert P[a][k, j] == pytest.approx(ref, rel=1e-10, abs=1e-14)


@settings(max_examples=25, deadline=None)
@given(mu=st.floats(-3, 3), sd=st.floats(0.05, 2), a=st.floats(-6, 6), w=st.floats(0.01, 4))
def test_box_masses_keep_relative_precision_in_the_tails(mu, sd, a, w):
    got = L.box_masses(np.array([mu]), np.array([sd]), np.array([a, -np.inf, a]),
                       np.array([a + w, a, np.inf]))[0]
    for g, (lo, hi) in zip(got, [(a, a + w), (-np.inf, a), (a, np.inf)]):
        assert g == pytest.approx(_box_reference(mu, sd, lo, hi), rel=1e-10, abs=1e-300)


def _dense_reference(model, gamma, horizon=None):
    """Brute force over the learned piecewise model: P from the logs' counts (histogram
    leaves) or the direct box formula (Gaussian leaves; every region pair, no edge sharing),
    then plain value iteration / backward induction."""
    lv, (lo, hi) = model.leaves_, model.tree_.boxes()
    K, A = lv.count.shape
    P = np.ones((A, K, K))
    logs = _chain()
    for a in range(A):
        if model.leaf == "histogram":
            P[a] = [[_counted(model, logs, k, a, j) for j in range(K)] for k in range(K)]
            continue
        for j in range(model.leaves_.mean.shape[2]):
            if model.discrete_[j]:
                P[a] *= L.cat_masses(lv.cat[:, a, 0], lo[:, j], hi[:, j])
            else:
                P[a] *= L.box_masses(lv.mean[:, a, j], lv.std[:, a, j], lo[:, j], hi[:, j])
    c = 1.0 - lv.p_end
    V = np.zeros(K)
    for _ in range(horizon or 5000):
        V = (lv.reward + gamma * c * np.einsum("akj,j->ka", P, V)).max(axis=1)
    return V, P


def test_region_solver_matches_the_brute_force_reference(mixed):
    Vref, Pref = _dense_reference(mixed, 0.9)
    for a, Pa in enumerate(mixed.landing_probabilities()):
        np.testing.assert_allclose(Pa.toarray(), Pref[a], rtol=1e-10, atol=1e-15)
    for method in ("policy_iteration", "value_iteration"):
        sol = mixed.solve(0.9, method=method, tol=1e-12, warn=False)
        np.testing.assert_allclose(sol.values, Vref, rtol=1e-10, atol=1e-10)
        assert sol.residual < 1e-9
        np.testing.assert_allclose(sol.region_q.max(axis=1), sol.values, rtol=1e-12)
    Vh, _ = _dense_reference(mixed, 1.0, horizon=6)
    fin = mixed.solve(1.0, horizon=6, warn=False)
    np.testing.assert_allclose(fin.values[0], Vh, rtol=1e-12, atol=1e-12)
    assert np.all(fin.values[6] == 0)


def test_values_converge_to_the_analytic_chain_as_regions_are_refined():
    # x' = ρ x + σ ε, r = -x²: V(x) = -(x² + γ σ² / (1 - γ)) / (1 - γ ρ²)
    rho, sigma, gamma, n = 0.8, 0.3, 0.9, 40_000
    rng = np.random.default_rng(1)
    x = rng.uniform(-3, 3, n)
    logs = {"x": x, "a": np.zeros(n), "r": -x ** 2,
            "x_next": rho * x + sigma * rng.normal(size=n)}
    grid = np.linspace(-1.5, 1.5, 61)
    exact = -(grid ** 2 + gamma * sigma ** 2 / (1 - gamma)) / (1 - gamma * rho ** 2)
    errors = []
    for K in (4, 16, 64):
        m = ContinuousWorldModel("x", "a", max_regions=K, min_samples_leaf=50,
                                 progress=False).fit(logs)
        assert m.n_regions_ == K
        errors.append(np.abs(m.solve(gamma, warn=False).value(grid) - exact).max())
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.05 * np.abs(exact).max()
    # value-directed refinement: split where the Bellman targets vary most, then re-solve
    m = ContinuousWorldModel("x", "a", max_regions=16, min_samples_leaf=50,
                             progress=False).fit(logs)
    m.refine(gamma, 0.5)
    assert m.n_regions_ == 24
    assert np.abs(m.solve(gamma, warn=False).value(grid) - exact).max() < errors[1]


def test_the_solution_answers_by_region_and_q_takes_candidate_actions(mixed):
    sol = mixed.solve(0.9, warn=False)
    X = np.array([[0.0, 0], [0.5, 2], [-0.9, 1]])
    k = mixed.regions(X)
    np.testing.assert_array_equal(sol.value(X), sol.values[k])
    np.testing.assert_array_equal(sol.policy(X), sol.region_policy[k])
    Q = sol.q(X)
    assert Q.shape == (3, 2)
    np.testing.assert_array_equal(sol.q(X, actions=[1]), Q[:, [1]])
    with pytest.raises(DataError, match="not one of the model's actions"):
        sol.q(X, actions=[5])


def test_nan_and_inf_name_row_and_column():
    logs = _chain(500)
    logs["x_next"] = logs["x_next"].copy()
    logs["x_next"][7] = np.nan
    with pytest.raises(DataError, match=r"row 7, column 'x_next'"):
        ContinuousWorldModel(["x", "y"], "a", discrete=["y"]).fit(logs)
    m = ContinuousWorldModel(["x", "y"], "a", discrete=["y"], max_regions=4,
                             progress=False).fit(_chain(500))
    with pytest.raises(DataError, match=r"row 1, column 'y'"):
        m.regions(np.array([[0.0, 1], [0.0, np.inf]]))
    with pytest.raises(DataError, match="integer codes"):
        ContinuousWorldModel(["x", "y"], "a", discrete=["y"]).fit(
            {**_chain(100), "y": np.full(100, 0.5)})
    with pytest.raises(NotFittedError):
        ContinuousWorldModel("x", "a").solve()
    with pytest.raises(DataError, match="leaf"):
        ContinuousWorldModel("x", "a", leaf="kde")
    with pytest.raises(DataError, match="split_penalty"):
        ContinuousWorldModel("x", "a", split_penalty=-1.0)
    grown = ContinuousWorldModel(["x", "y"], "a", discrete=["y"], max_regions=40,
                                 split_penalty=0.0, progress=False).fit(_chain(500))
    assert grown.n_regions_ == 40  # no BIC stop: grown to max_regions
    with pytest.raises(SolverError, match="gamma"):
        m.solve(1.0)


def test_states_outside_the_logged_range_get_the_nearest_region(mixed):
    sol = mixed.solve(0.9, warn=False)
    with pytest.warns(CoverageWarning, match="outside the logged range"):
        v = sol.value(np.array([[50.0, 2], [-50.0, 0]]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        edge = sol.value(np.array([[mixed.high_[0], 2], [mixed.low_[0], 0]]))
    np.testing.assert_array_equal(v, edge)
    assert np.all(np.isfinite(v))


def test_an_action_grid_stands_for_continuous_actions():
    rng = np.random.default_rng(2)
    n = 3000
    x, u = rng.uniform(-1, 1, n), rng.choice([-1.0, 0.0, 1.0], n)
    logs = {"x": x, "u": u, "x_next": x + 0.2 * u, "r": -x ** 2}
    m = ContinuousWorldModel("x", "u", action_grid=[-1, 0, 1], max_regions=10,
                             progress=False).fit(logs)
    sol = m.solve(0.8, warn=False)
    assert set(np.unique(sol.policy(np.linspace(-1, 1, 9)))) <= {-1.0, 0.0, 1.0}
    assert sol.policy(0.9) == -1.0 and sol.policy(-0.9) == 1.0
    assert sol.q(0.5, actions=[1.0]).shape == (1,)
    with pytest.warns(SpmnWarning, match="not on the action grid"):
        ContinuousWorldModel("x", "u", action_grid=[-1, 1], max_regions=4,
                             progress=False).fit(logs)


def test_files_round_trip_and_the_circuit_validates(mixed, tmp_path):
    path = tmp_path / "cont.json"
    spmn.save(mixed, path)
    back = spmn.load(path)
    assert type(back) is ContinuousWorldModel
    a, b = mixed.solve(0.9, warn=False), back.solve(0.9, warn=False)
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.region_policy, b.region_policy)
    assert str(back.explain()) == str(mixed.explain())
    with pytest.raises(NotFittedError, match="logged data"):
        back.refine(0.9)
    c = mixed.to_circuit()
    c.validate()
    lo, hi = mixed.tree_.boxes()  # region boxes enter the circuit with the tree's own edges
    for k, region in enumerate(c.root.children):
        box = region.children[0].breaks
        assert box[0] == max(lo[k, 0], mixed.low_[0]) and box[1] == min(hi[k, 0], mixed.high_[0])
    k = mixed.regions(np.array([[0.3, 1.0]]))[0]
    E = np.array([[0.3, 1.0] + [np.nan] * 5])  # the MEU given the state: max_a R(k, a)
    assert c.meu(E) == pytest.approx(mixed.leaves_.reward[k].max(), rel=1e-12)
    text = str(mixed.explain())
    assert "x_next" in text and "<- x" in text


def test_plot_draws_regions_and_policy(mixed, tmp_path):
    pytest.importorskip("matplotlib")
    ax = mixed.plot_regions(mixed.solve(0.9, warn=False), "x", "y", path=tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 0 and "regions" in ax.get_title()


@pytest.mark.slow
def test_cartpole_end_to_end():
    gym = pytest.importorskip("gymnasium")
    env = gym.make("CartPole-v1")
    rng = np.random.default_rng(0)
    lo, hi = np.array([-2.4, -1, -0.21, -1.5]), np.array([2.4, 1, 0.21, 1.5])
    rows = []
    env.reset(seed=0)
    while len(rows) < 20_000:  # resets to random states, random actions, two steps per action
        env.reset(seed=int(rng.integers(2 ** 31)))
        env.unwrapped.state = s = rng.uniform(lo, hi)
        for _ in range(10):
            a = int(rng.integers(2))
            r = 0.0
            for _ in range(2):
                s2, ri, term, trunc, _ = env.step(a)
                r += ri
                if term:
                    break
            rows.append((*s, a, r, *s2, term))
            s = s2
            if term:
                break
    D = np.array(rows, float)
    names = ["x", "v", "theta", "omega"]
    logs = {nm: D[:, j] for j, nm in enumerate(names)}
    logs.update({f"{nm}_next": D[:, 6 + j] for j, nm in enumerate(names)})
    logs.update({"a": D[:, 4], "r": D[:, 5], "done": D[:, 10].astype(bool)})
    model = ContinuousWorldModel(names, "a", "r", "done", max_regions=300,
                                 progress=False).fit(logs)
    sol = model.solve(0.995, warn=False)
    returns = []
    for e in range(3):
        obs, _ = env.reset(seed=100 + e)
        total, done = 0.0, False
        while not done:
            a = int(sol.policy(np.asarray(obs, float)))
            for _ in range(2):
                obs, r, term, trunc, _ = env.step(a)
                total += r
                done = term or trunc
                if done:
                    break
        returns.append(total)
    assert np.mean(returns) > 100  # a random policy lasts about 22 steps


def test_a_never_logged_pair_uses_its_region_pooled_over_actions():
    rng = np.random.default_rng(3)
    n = 3000
    x = rng.uniform(-1, 1, n)
    a = np.where(x < 0, rng.integers(0, 2, n), 0)  # action 1 never logged where x >= 0
    logs = {"x": x, "a": a, "r": -x ** 2, "x_next": 0.9 * x + 0.1 * a}
    m = ContinuousWorldModel("x", "a", max_regions=8, progress=False).fit(logs)
    lv = m.leaves_
    assert lv.fallback[:, 1].any() and not lv.fallback[:, 0].any()
    P = [Pa.toarray() for Pa in m.landing_probabilities()]
    lo, hi = m.tree_.boxes()
    k_rows, k_next = m.regions(x[:, None]), m.regions(logs["x_next"][:, None])
    for k in np.flatnonzero(lv.fallback[:, 1]):
        pooled = np.bincount(k_next[k_rows == k], minlength=m.n_regions_) / (k_rows == k).sum()
        np.testing.assert_allclose(P[1][k], pooled, rtol=1e-12, atol=1e-15)
    assert np.all(m.coverage_[lv.fallback] == 0)
    Q = m.solve(0.9, warn=False).region_q  # pooled over the actions logged there: action 0's
    np.testing.assert_allclose(Q[lv.fallback[:, 1], 1], Q[lv.fallback[:, 1], 0], rtol=1e-12)
