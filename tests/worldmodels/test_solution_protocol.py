"""One Solution protocol: the same calls on every solved world-model kind (tabular discounted
and finite-horizon, Gaussian closed form and grid, encoded frames, factored discounted and
finite-horizon), with every input form."""
from __future__ import annotations

import numpy as np
import pytest

import spmn
from spmn import DataError, SolverError
from spmn.cli.demo import frozenlake_mdp
from spmn.worldmodels import (
    ContinuousWorldModel,
    EncodedWorldModel,
    FactoredWorldModel,
    GaussianWorldModel,
    SolutionProtocol,
    WorldModel,
)
from spmn.worldmodels.solution import check_step, state_rows


def _tabular(horizon):
    mdp = frozenlake_mdp()
    model = WorldModel("s", "a", "r", "terminated").fit(mdp.sample_transitions(20_000, seed=0))
    return model.solve(0.9, horizon=horizon), ["s"], np.array([[0], [6], [14]])


def _two_state_vars(horizon):
    rng = np.random.default_rng(0)
    n = 4000
    x, y, a = rng.integers(0, 3, n), rng.integers(0, 2, n), rng.integers(0, 2, n)
    logs = {"x": x, "y": y, "a": a, "r": (x == 2).astype(float) - 0.1 * a,
            "x_next": np.minimum(x + a, 2), "y_next": rng.integers(0, 2, n)}
    sol = WorldModel(["x", "y"], "a", "r").fit(logs).solve(0.9, horizon=horizon)
    return sol, ["x", "y"], np.array([[0, 0], [1, 1], [2, 0]])


def _gaussian(method):
    model = GaussianWorldModel.from_system([[1.0, 0.1], [0.0, 1.0]], [[0.005], [0.1]],
                                           np.diag([1e-4, 1e-2]), cost=(np.eye(2), [[0.1]]))
    X = np.array([[0.5, -0.2], [0.0, 0.0], [-1.0, 0.3]])
    if method == "grid":
        g = np.linspace(-1.5, 1.5, 7)
        anchors = np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2)
        return model.solve(0.9, method="grid", anchors=anchors, n_bumps=5,
                           action_grid=np.linspace(-6, 6, 61)), ["x0", "x1"], X
    return model.solve(0.9), ["x0", "x1"], X


def _factored(horizon):
    rng = np.random.default_rng(0)
    n = 4000
    x, y, z = rng.integers(0, 2, n), rng.integers(0, 3, n), rng.integers(0, 2, n)
    a, b = rng.integers(0, 2, n), rng.integers(0, 2, n)
    logs = {"x": x, "y": y, "z": z, "a": a, "b": b,
            "x_next": np.where(a == 1, 1 - x, x), "y_next": np.minimum(y + b, 2),
            "z_next": rng.integers(0, 2, n), "r": (y == 2) + 0.5 * x * a - 0.1 * b}
    model = FactoredWorldModel(["x", "y", "z"], ["a", "b"], progress=False).fit(logs)
    return model.solve(0.9, horizon=horizon), ["x", "y", "z"], \
        np.array([[0, 0, 0], [1, 1, 0], [0, 2, 1]])


def _encoded():
    pytest.importorskip("gymnasium")
    from spmn.envs import GridRenderer, PixelMDP

    mdp = spmn.reference.TabularMDP.from_gymnasium("FrozenLake-v1", is_slippery=True)
    env = PixelMDP(mdp, GridRenderer.from_mdp(mdp, cell=4), noise=0.05)
    d = env.sample(4000, seed=0)
    m = EncodedWorldModel(spmn.encoders.PCAKMeansEncoder(n_codes=16, n_components=8)).fit(
        d["frames"], d["actions"], d["rewards"], d["next_frames"], d["terminated"], seed=0)
    sol = m.solve(0.9)
    names = m.state_names
    codes = m.encode(env.render(np.array([0, 6, 14]), seed=1)).reshape(3, -1)
    return sol, names, codes


def _continuous(horizon):
    rng = np.random.default_rng(0)
    n = 3000
    x, y, a = rng.uniform(-1, 1, n), rng.integers(0, 2, n), rng.integers(0, 2, n)
    logs = {"x": x, "y": y, "a": a, "r": -x ** 2 + y, "y_next": rng.integers(0, 2, n),
            "x_next": 0.9 * x + np.where(a == 1, 0.1, -0.1) + 0.05 * rng.normal(size=n)}
    model = ContinuousWorldModel(["x", "y"], "a", discrete=["y"], max_regions=12,
                                 progress=False).fit(logs)
    return model.solve(0.9, horizon=horizon, warn=False), ["x", "y"], \
        np.array([[-0.5, 0], [0.1, 1], [0.8, 0]])


KINDS = {
    "tabular": lambda: _tabular(None),
    "tabular-finite": lambda: _tabular(4),
    "tabular-2vars": lambda: _two_state_vars(None),
    "tabular-2vars-finite": lambda: _two_state_vars(3),
    "gaussian": lambda: _gaussian("policy_iteration"),
    "gaussian-grid": lambda: _gaussian("grid"),
    "encoded": _encoded,
    "factored": lambda: _factored(None),
    "factored-finite": lambda: _factored(3),
    "continuous": lambda: _continuous(None),
    "continuous-finite": lambda: _continuous(3),
}


@pytest.fixture(scope="module", params=list(KINDS))
def solved(request):
    return request.param, *KINDS[request.param]()


def test_every_kind_answers_the_same_calls(solved):
    kind, sol, names, X = solved
    assert isinstance(sol, SolutionProtocol)
    assert sol.horizon is None or sol.horizon >= 1
    assert 0 < sol.gamma < 1 and sol.iterations >= 1 and np.isfinite(sol.residual)
    assert np.all(np.isfinite(sol.values))
    steps = [0] if sol.horizon is None else list(range(sol.horizon))
    for t in steps:
        V = sol.value(X, t=t)
        pol = sol.policy(X, t=t)
        Q = sol.q(X, t=t)
        assert V.shape == (X.shape[0],) and np.all(np.isfinite(V))
        assert len(pol) == X.shape[0] and Q.shape[0] == X.shape[0] and np.all(np.isfinite(Q))
        if kind.startswith(("tabular", "factored", "continuous")) or kind == "encoded":
            # V = max_a Q and the policy takes the maximum (exact for the learned model)
            np.testing.assert_allclose(V, Q.max(axis=1), rtol=1e-12, atol=1e-12)
            joint = pol if np.ndim(pol) == 1 else sol.joint_policy(X, t=t)  # action columns
            np.testing.assert_allclose(Q[np.arange(len(pol)), joint], V, rtol=1e-12, atol=1e-12)
        elif kind == "gaussian":
            np.testing.assert_allclose(Q[:, 0], V, rtol=1e-10)  # Q(x, π(x)) = V(x)
        else:
            np.testing.assert_allclose(Q.max(axis=1), V, rtol=0.05, atol=0.05)
        # the same states as a dict of columns, and one by one as 1-D rows
        cols = {n: X[:, j] for j, n in enumerate(names)}
        np.testing.assert_array_equal(sol.value(cols, t=t), V)
        np.testing.assert_array_equal(np.asarray(sol.policy(cols, t=t)), np.asarray(pol))
        np.testing.assert_array_equal(sol.q(cols, t=t), Q)
        for i in range(X.shape[0]):
            one = X[i] if len(names) > 1 else X[i, 0]
            v = sol.value(one, t=t)
            assert isinstance(v, float) and v == pytest.approx(V[i], rel=1e-12, abs=1e-14)
            np.testing.assert_allclose(np.asarray(sol.policy(one, t=t)), np.asarray(pol[i]),
                                       rtol=1e-12, atol=1e-14)  # one row: BLAS may round apart
            np.testing.assert_allclose(sol.q(one, t=t), Q[i], rtol=1e-12, atol=1e-14)


def test_every_kind_says_how_much_data_is_behind_it(solved):
    kind, sol, names, X = solved
    model = getattr(sol, "model", None)
    if model is None:  # the Gaussian solution carries no model: checked in test_gaussian
        return
    cov = np.asarray(model.coverage_)
    assert cov.ndim == 2 and cov.min() >= 0 and cov.sum() == model.n_transitions_


def test_dataframes_are_states_too(solved):
    pd = pytest.importorskip("pandas")
    _, sol, names, X = solved
    df = pd.DataFrame({n: X[:, j] for j, n in enumerate(names)})
    np.testing.assert_array_equal(sol.value(df), sol.value(X))


def test_finite_horizon_steps_differ_and_are_checked(solved):
    kind, sol, names, X = solved
    if sol.horizon is None:
        assert sol.value(X, t=7).tolist() == sol.value(X).tolist()  # stationary
        with pytest.raises(SolverError, match="t=-1"):
            sol.value(X, t=-1)
        return
    H = sol.horizon
    with pytest.raises(SolverError, match=f"outside 0..{H - 1}"):
        sol.value(X, t=H)
    with pytest.raises(SolverError, match="outside"):
        sol.policy(X, t=-1)
    with pytest.raises(SolverError, match="integer"):
        sol.q(X, t=0.5)
    # fewer steps to go, no more value: V_{H-1} <= V_0 where rewards are >= 0
    if kind == "tabular-finite":
        assert np.all(sol.value(X, t=H - 1) <= sol.value(X, t=0) + 1e-12)
        assert np.any(sol.value(X, t=H - 1) < sol.value(X, t=0))


def test_wrong_state_shapes_name_the_variables(solved):
    _, sol, names, X = solved
    with pytest.raises(DataError, match="state"):
        sol.value(np.zeros((2, len(names) + 1)))
    with pytest.raises(DataError, match=repr(names[0])):
        sol.value({"nope": X[:, 0]})


def test_state_rows_forms():
    assert state_rows(3, ["s"])[0].shape == (1, 1) and state_rows(3, ["s"])[1]
    assert state_rows([1, 2, 3], ["s"])[0].shape == (3, 1)
    assert state_rows([1, 2], ["x", "y"]) [1] and state_rows([1, 2], ["x", "y"])[0].shape == (1, 2)
    with pytest.raises(DataError, match="one entry per state variable"):
        state_rows([1, 2, 3], ["x", "y"])
    with pytest.raises(DataError, match="one-variable"):
        state_rows(3, ["x", "y"])
    assert check_step(np.int64(2), 3) == 2
    with pytest.raises(SolverError):
        check_step(True, 3)
