"""The simulator on the other kinds: factored (tree leaves), linear-Gaussian (the circuit's
sample pass on every kernel backend) and encoded (the inner model over codes): check_env,
sampled steps against the model's exact conditional, Monte Carlo returns of the exact policy
within 3 standard errors of the exact V(s0), and bad input."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chi2

import spmn
from spmn import DataError, SolverError, kernels
from spmn.worldmodels import EncodedWorldModel, FactoredWorldModel, GaussianWorldModel
from spmn.worldmodels.simulate import InvalidActionError, dynamics_for, to_env

gym = pytest.importorskip("gymnasium")
from gymnasium.utils.env_checker import check_env  # noqa: E402

pytestmark = [pytest.mark.xdist_group(name="numba-kernels"),
              pytest.mark.filterwarnings("ignore::spmn.errors.CoverageWarning"),
              pytest.mark.filterwarnings("ignore:.*render fps:UserWarning"),
              pytest.mark.filterwarnings("ignore:.*alternative render modes:UserWarning"),
              pytest.mark.filterwarnings("ignore:.*Box .* space:UserWarning"),
              pytest.mark.filterwarnings("ignore:.*symmetric and normalized:UserWarning")]


@pytest.fixture(scope="module")
def factored():
    rng = np.random.default_rng(0)
    n = 5000
    x, y, z = rng.integers(0, 2, n), rng.integers(0, 3, n), rng.integers(0, 2, n)
    a, b = rng.integers(0, 2, n), rng.integers(0, 2, n)
    yn = np.where(rng.random(n) < 0.7, np.minimum(y + b, 2), y)
    logs = {"x": x, "y": y, "z": z, "a": a, "b": b, "x_next": np.where(a == 1, 1 - x, x),
            "y_next": yn, "z_next": rng.integers(0, 2, n),
            "r": (y == 2) + 0.5 * x * a - 0.1 * b, "done": (y == 2) & (rng.random(n) < 0.2)}
    return FactoredWorldModel(["x", "y", "z"], ["a", "b"], "r", "done", progress=False).fit(logs)


@pytest.fixture(scope="module")
def gaussian():
    return GaussianWorldModel.from_system([[1.0, 0.1], [0.0, 1.0]], [[0.005], [0.1]],
                                          np.diag([1e-4, 1e-2]), cost=(np.eye(2), [[0.1]]))


def _p(counts, probs):
    n = counts.sum()
    keep = probs > 0
    assert counts[~keep].sum() == 0
    stat = float(((counts[keep] - n * probs[keep]) ** 2 / (n * probs[keep])).sum())
    return float(chi2.sf(stat, max(int(keep.sum()) - 1, 1)))


# ---------------------------------------------------------------------------- factored
def test_factored_env_passes_check_env(factored):
    env = factored.to_env(render_mode="ansi", max_episode_steps=20)
    check_env(env)
    assert env.observation_space.nvec.tolist() == [2, 3, 2]
    assert env.action_space.nvec.tolist() == [2, 2]
    env.reset(seed=0)
    env.step(np.array([1, 0]))
    assert "y=" in env.render()


def test_factored_steps_follow_each_factor(factored):
    N = 20_000
    for s, a in [((0, 0, 0), (1, 1)), ((1, 2, 1), (0, 1)), ((1, 1, 0), (1, 0))]:
        pred = factored.predict(np.array(s), np.array(a))
        env = to_env(factored, N, start=np.array([s]), seed=sum(s) + 3 * a[0])
        env.reset()
        obs, r, term, _, _ = env.step(np.tile(a, (N, 1)))
        for j, name in enumerate(factored.state_names_):
            p = pred[f"{name}_next"]
            assert _p(np.bincount(obs[:, j], minlength=p.size), p) > 1e-4, name
        np.testing.assert_array_equal(r, np.full(N, pred["reward"]))  # E[r | s, a]
        pe = pred["end_probability"]
        assert abs(term.mean() - pe) <= 4 * np.sqrt(max(pe * (1 - pe), 1e-12) / N) + 1e-12


@pytest.mark.parametrize("horizon", [None, 3])
def test_factored_mc_return_matches_the_exact_value(factored, horizon):
    sol = factored.solve(0.8, horizon=horizon)
    s0 = np.array([0, 0, 1])
    ro = factored.rollout(sol, 4000, horizon or 80, seed=1, start=s0[None], columns=False)
    assert abs(ro.mean_return - sol.value(s0)) <= 3 * ro.stderr, (ro.mean_return, sol.value(s0))


def test_factored_bad_actions(factored):
    env = factored.to_env(3, seed=0)
    env.reset()
    with pytest.raises(InvalidActionError, match=r"action \[0, 2\] of environment 1 .*'b'"):
        env.step(np.array([[0, 0], [0, 2], [1, 1]]))
    with pytest.raises(DataError, match=r"joint state \(12\): expected shape \(12,\), got \(7,\)"):
        to_env(factored, start_probs=np.ones(7) / 7)


# ---------------------------------------------------------------------------- Gaussian
def test_gaussian_env_passes_check_env(gaussian):
    env = gaussian.to_env(start=[[0.5, -0.2], [0.0, 0.1]], max_episode_steps=30,
                          render_mode="ansi")
    check_env(env)
    assert env.observation_space.shape == (2,) and env.action_space.shape == (1,)
    with pytest.raises(DataError, match="pass start="):
        gaussian.to_env()
    env.reset(seed=0)
    for bad in (np.array([np.nan]), np.array([1.0, 2.0])):
        with pytest.raises(InvalidActionError, match="outside the action space"):
            env.step(bad)
    venv = gaussian.to_env(4, start=[[0.5, -0.2]])
    venv.reset(seed=0)
    with pytest.raises(InvalidActionError, match=r"shape \(4, 1\)"):
        venv.step(np.zeros((4, 2)))
    with pytest.raises(SolverError, match="environment 0 overflowed"):  # never NaN
        venv.step(np.full((4, 1), 1e308))


def test_gaussian_steps_follow_the_conditional_gaussian(gaussian):
    dyn = dynamics_for(gaussian, start=[[0.0, 0.0]])
    N = 100_000
    x, u = np.array([0.5, -0.2]), np.array([0.3])
    Xn = dyn.sample_next(np.tile(x, (N, 1)), np.tile(u, (N, 1)), np.random.default_rng(0))
    mean, cov = gaussian.predict(x, u)
    se = np.sqrt(np.diag(cov) / N)
    assert np.all(np.abs(Xn.mean(axis=0) - mean) <= 4 * se)
    D = 1.0 / np.sqrt(np.diag(cov))  # in standard units: sampling error ~ 1/sqrt(N) = 0.003
    np.testing.assert_allclose(D[:, None] * np.cov(Xn.T) * D, D[:, None] * cov * D, atol=0.02)


def test_gaussian_sample_pass_agrees_across_backends(gaussian):
    sol = gaussian.solve(0.9)
    runs = {b: gaussian.rollout(sol, 20, 30, seed=2, start=[[0.5, -0.2]], backend=b)
            for b in kernels.available()}
    assert "reference" in runs and len(runs) >= 2
    ref = runs.pop("reference")
    compiled = list(runs.values())
    for r in compiled:  # the compiled twins bit for bit; the numpy oracle to 1e-12
        np.testing.assert_array_equal(r.columns["x0_next"], compiled[0].columns["x0_next"])
        np.testing.assert_array_equal(r.returns, compiled[0].returns)
        np.testing.assert_allclose(r.columns["x1_next"], ref.columns["x1_next"], rtol=1e-12,
                                   atol=1e-14)


def test_gaussian_mc_return_matches_the_riccati_value(gaussian):
    sol = gaussian.solve(0.9)
    x0 = np.array([0.5, -0.2])
    ro = gaussian.rollout(sol, 4000, 150, seed=0, start=x0[None], columns=False)
    assert abs(ro.mean_return - sol.value(x0)) <= 3 * ro.stderr, (ro.mean_return, sol.value(x0))
    ro2 = gaussian.rollout(lambda obs: -obs @ sol.K.T, 4000, 150, seed=0, start=x0[None],
                           gamma=0.9, columns=False)
    np.testing.assert_allclose(ro2.returns, ro.returns, rtol=1e-12)


def test_a_mixture_model_samples_its_components():
    rng = np.random.default_rng(0)
    n = 4000
    x, u = rng.normal(size=n), rng.normal(size=n)
    xn = np.where(x > 0, 0.9 * x + 0.5 * u, -0.5 * x) + 0.05 * rng.normal(size=n)
    m = GaussianWorldModel("x", "u", cost=([[1.0]], [[0.1]]), n_components=2, seed=0,
                           progress=False).fit({"x": x, "u": u, "x_next": xn})
    check_env(m.to_env(max_episode_steps=10))
    dyn = dynamics_for(m)
    N = 50_000
    for x0 in (-1.0, 1.0):
        Xn = dyn.sample_next(np.full((N, 1), x0), np.zeros((N, 1)), np.random.default_rng(1))
        mean, cov = m.predict([x0], [0.0])
        assert abs(Xn.mean() - mean[0]) <= 4 * np.sqrt(cov[0, 0] / N)


# ---------------------------------------------------------------------------- encoded
def test_encoded_env_over_codes_and_its_exact_value():
    from spmn.envs import GridRenderer, PixelMDP

    mdp = spmn.reference.TabularMDP.from_gymnasium("FrozenLake-v1", is_slippery=True)
    penv = PixelMDP(mdp, GridRenderer.from_mdp(mdp, cell=4), noise=0.05)
    d = penv.sample(4000, seed=0)
    m = EncodedWorldModel(spmn.encoders.PCAKMeansEncoder(n_codes=16, n_components=8),
                          progress=False).fit(d["frames"], d["actions"], d["rewards"],
                                              d["next_frames"], d["terminated"], seed=0)
    sol = m.solve(0.9)
    z0 = m.encode(penv.render(np.array([0]), seed=1))
    env = m.to_env(start=z0, render_mode="ansi")
    check_env(env)
    assert env.observation_space.n == m.world_model_.state_cards_[0]
    ro = m.rollout(sol, 4000, 150, seed=0, start=z0, columns=False)
    assert abs(ro.mean_return - sol.value(z0[0])) <= 3 * ro.stderr
