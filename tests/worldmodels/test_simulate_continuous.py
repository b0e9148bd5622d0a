"""The simulator on the continuous-state kind: check_env, sampled next states against the
(region, action) leaves and the exact landing probabilities, Monte Carlo returns of the greedy
region policy within 3 standard errors of the region model's exact value, an action grid, model
files and bad input.

What the value check asserts: the exact solution is over regions, with landing probabilities
the leaves' masses of each region's box; a next state drawn from the leaves lands in region j
with exactly that probability (checked directly by a chi-square test of the routed draws), and
the dynamics depend on a state only through its region, so the Monte Carlo return of the greedy
region policy from s0 estimates V(region of s0), the value ``solution.value(s0)`` reports."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chi2

import spmn
from spmn import DataError, SolverError
from spmn.worldmodels.continuous import ContinuousWorldModel
from spmn.worldmodels.simulate import InvalidActionError, dynamics_for, to_env

gym = pytest.importorskip("gymnasium")
from gymnasium.utils.env_checker import check_env

pytestmark = [pytest.mark.filterwarnings("ignore::spmn.errors.CoverageWarning"),
              pytest.mark.filterwarnings("ignore:.*render fps:UserWarning"),
              pytest.mark.filterwarnings("ignore:.*alternative render modes:UserWarning"),
              pytest.mark.filterwarnings("ignore:.*Box observation space m:UserWarning"),
              pytest.mark.filterwarnings("ignore:.*symmetric and normalized:UserWarning")]


def _chain(n=4000, seed=0):
    """x' = 0.9 x ± 0.1 (action) + noise, y a discrete counter moved by the action, episodes
    ending near x = 1 once y = 2."""
    rng = np.random.default_rng(seed)
    x, y, a = rng.uniform(-1, 1, n), rng.integers(0, 3, n), rng.integers(0, 2, n)
    xn = 0.9 * x + np.where(a == 1, 0.1, -0.1) + 0.05 * rng.normal(size=n)
    yn = np.minimum(y + (a == 1), 2)
    end = (xn > 0.5) & (y == 2) & (rng.random(n) < 0.5)
    return {"x": x, "y": y, "a": a, "x_next": xn, "y_next": yn,
            "r": -x ** 2 + 0.2 * (y == 2) + 10 * end, "done": end}


@pytest.fixture(scope="module", params=["histogram", "gaussian"])
def mixed(request):
    return ContinuousWorldModel(["x", "y"], "a", "r", "done", discrete=["y"], max_regions=24,
                                leaf=request.param, progress=False).fit(_chain())


def _p(counts, probs):
    n = counts.sum()
    keep = probs > 1e-12
    assert counts[~keep].sum() <= 1e-9 * n + 0.5  # never a region of (numerically) zero mass
    stat = float(((counts[keep] - n * probs[keep]) ** 2 / (n * probs[keep])).sum())
    return float(chi2.sf(stat, max(int(keep.sum()) - 1, 1)))


def test_env_passes_check_env(mixed):
    env = mixed.to_env(max_episode_steps=20, render_mode="ansi")
    check_env(env)
    assert env.observation_space.shape == (2,) and env.action_space == gym.spaces.Discrete(2)
    lo, hi = env.observation_space.low, env.observation_space.high
    if mixed.leaf == "histogram":  # draws stay in the logged range
        np.testing.assert_array_equal(lo, mixed.low_)
        np.testing.assert_array_equal(hi, mixed.high_)
    else:  # a Gaussian draw may leave it; the discrete code may not
        assert lo[0] == -np.inf and hi[0] == np.inf and (lo[1], hi[1]) == (0.0, 2.0)
    env.reset(seed=0)
    env.step(1)
    assert "x=" in env.render() and "region" in env.render()
    far = mixed.to_env(start=[[5.0, 0.0]]).observation_space  # widened to hold the start
    assert far.high[0] == (5.0 if mixed.leaf == "histogram" else np.inf)
    venv = mixed.to_env(64, seed=0, max_episode_steps=50)
    obs, _ = venv.reset()
    for _ in range(60):  # autoreset, and every observation stays in the space
        obs, *_ = venv.step(venv.action_space.sample())
        assert all(venv.single_observation_space.contains(o) for o in obs)


def test_steps_follow_the_leaves_and_land_with_the_exact_probabilities(mixed):
    dyn = dynamics_for(mixed)
    lv = mixed.leaves_
    P = mixed.landing_probabilities()
    N = 40_000
    rng = np.random.default_rng(0)
    busy = np.argsort(-lv.live[:, 0])[:3]
    for k in busy.tolist():
        for a in (0, 1):
            kk, aa = np.full(N, k), np.full(N, a)
            Xn = dyn.sample_next(kk, aa, rng)
            land = np.bincount(mixed.tree_.route(Xn), minlength=mixed.n_regions_)
            assert _p(land, P[a][k].toarray().ravel()) > 1e-4, (k, a)
            y = np.bincount(Xn[:, 1].astype(int), minlength=lv.cat.shape[3])
            assert _p(y, lv.cat[k, a, 0]) > 1e-4
            if mixed.leaf == "gaussian":
                mu, sd = lv.mean[k, a, 0], lv.std[k, a, 0]
                assert abs(Xn[:, 0].mean() - mu) <= 4 * sd / np.sqrt(N)
                assert abs(Xn[:, 0].std() / sd - 1) <= 4 / np.sqrt(2 * N)
            else:  # values fall in the histogram's bins with its fractions
                br = lv.break_lists()[0]
                row = (k * 2 + a) * 2
                h = lv.hist[row].toarray().ravel()[:br.size + 1]
                got = np.bincount(np.searchsorted(br, Xn[:, 0], side="left"),
                                  minlength=br.size + 1)
                assert _p(got, h / h.sum()) > 1e-4
                assert mixed.low_[0] <= Xn[:, 0].min() and Xn[:, 0].max() <= mixed.high_[0]
    env = to_env(mixed, N, start=[[0.3, 2.0]], seed=1)
    env.reset()
    _, r, term, _, _ = env.step(np.ones(N, np.int64))
    k = int(mixed.regions(np.array([[0.3, 2.0]]))[0])
    np.testing.assert_array_equal(r, np.full(N, lv.reward[k, 1]))  # E[r | s, a]
    pe = lv.p_end[k, 1]
    assert abs(term.mean() - pe) <= 4 * np.sqrt(max(pe * (1 - pe), 1e-12) / N) + 1e-12


@pytest.mark.parametrize("horizon", [None, 4])
def test_mc_return_of_the_region_policy_matches_the_region_value(mixed, horizon):
    sol = mixed.solve(0.8, horizon=horizon)
    for s0 in ([0.6, 2.0], [-0.4, 0.0]):
        s0 = np.array(s0)
        ro = mixed.rollout(sol, 20_000, horizon or 120, seed=1, start=s0[None], columns=False)
        assert abs(ro.mean_return - sol.value(s0)) <= 3 * ro.stderr, (ro.mean_return,
                                                                       sol.value(s0))
        if s0[1] == 2:  # near the end, episodes do end: the returns vary
            assert ro.stderr > 0.01 and ro.lengths.min() < (horizon or 120)
    if horizon is None:  # the default start: the logged states, uniformly
        ro = mixed.rollout(sol, 4000, 120, seed=2, columns=False)
        exact = sol.values[mixed.tree_.route(np.stack([_chain()["x"], _chain()["y"]], 1))]
        assert abs(ro.mean_return - exact.mean()) <= 3 * ro.stderr


def test_an_action_grid_is_a_box_mapped_to_the_nearest_grid_point():
    rng = np.random.default_rng(0)
    grid = np.array([-2.0, 0.0, 2.0])
    n = 3000
    x, u = rng.uniform(-1, 1, n), rng.choice(grid, n)
    logs = {"x": x, "u": u, "x_next": np.clip(0.8 * x + 0.1 * u + 0.05 * rng.normal(size=n),
                                              -1, 1), "r": -x ** 2 - 0.01 * u ** 2}
    m = ContinuousWorldModel("x", "u", action_grid=grid, max_regions=12,
                             progress=False).fit(logs)
    env = m.to_env(max_episode_steps=15)
    check_env(env)
    assert env.action_space == gym.spaces.Box(-2.0, 2.0, (1,), np.float64)
    dyn = dynamics_for(m)
    np.testing.assert_array_equal(dyn.joint_actions(np.array([[-1.5], [0.9], [1.1]]), 3),
                                  [0, 1, 2])
    sol = m.solve(0.9)
    ro = m.rollout(sol, 50, 20, seed=0)
    assert set(np.unique(ro.columns["u"]).tolist()) <= set(grid.tolist())  # as the logs hold
    pol = lambda obs: sol.policy(obs).reshape(-1, 1)  # a batch of (1,) actions, as a Box gives
    ro2 = m.rollout(pol, 50, 20, seed=0, gamma=0.9)
    np.testing.assert_array_equal(ro2.returns, ro.returns)
    with pytest.raises(DataError, match=r"expected shape \(50, 1\)"):
        m.rollout(lambda obs: np.zeros((obs.shape[0], 2)), 50, 5, seed=0)
    s0 = np.array([0.7])
    ro = m.rollout(sol, 3000, 100, seed=3, start=s0[None], columns=False)
    assert abs(ro.mean_return - sol.value(s0)) <= 3 * ro.stderr


def test_a_pair_whose_every_logged_row_ended_ends_and_keeps_its_state():
    rng = np.random.default_rng(0)
    n = 2000
    x, a = rng.uniform(-1, 1, n), rng.integers(0, 2, n)
    end = x > 0.5
    logs = {"x": x, "a": a, "x_next": np.clip(x + 0.1 * (2 * a - 1) + 0.05 * rng.normal(size=n),
                                              -1, 1), "r": end * 1.0, "done": end}
    m = ContinuousWorldModel("x", "a", "r", "done", max_regions=8, progress=False).fit(logs)
    k = int(m.regions(np.array([[0.9]]))[0])
    assert (m.leaves_.live[k] == 0).all() and (m.leaves_.p_end[k] == 1).all()
    env = m.to_env(5, start=[[0.9]], seed=0)
    env.reset()
    obs, r, term, _, _ = env.step(np.zeros(5, np.int64))
    np.testing.assert_array_equal(obs, np.full((5, 1), 0.9))
    assert term.all() and (r == 1.0).all()


def test_a_saved_model_simulates_the_same(mixed, tmp_path):
    spmn.save(mixed, tmp_path / "m.json")
    back = spmn.load(tmp_path / "m.json")
    with pytest.raises(DataError, match="pass start="):
        back.to_env()
    start = np.array([[0.1, 0.0], [0.5, 2.0]])
    a, b = mixed.rollout("random", 30, 25, seed=4, start=start), \
        back.rollout("random", 30, 25, seed=4, start=start)
    for k in a.columns:
        np.testing.assert_array_equal(a.columns[k], b.columns[k])


def test_bad_input(mixed):
    env = mixed.to_env(3, seed=0)
    env.reset()
    with pytest.raises(InvalidActionError, match=r"action 2 of environment 1 .*'a'"):
        env.step(np.array([0, 2, 1]))
    one = mixed.to_env()
    one.reset(seed=0)
    with pytest.raises(InvalidActionError, match="outside the action space"):
        one.step(5)
    with pytest.raises(DataError, match=r"2 coordinates \['x', 'y'\], got shape \(1, 3\)"):
        to_env(mixed, start=[[0.0, 1.0, 2.0]])
    with pytest.raises(DataError, match="discrete state 'y' must be an integer code"):
        to_env(mixed, start=[[0.0, 0.5]])
    with pytest.raises(DataError, match=r"sum to 1, they sum to 0.9"):
        to_env(mixed, start=[[0.0, 1.0], [0.2, 0.0]], start_probs=[0.5, 0.4])
    other = ContinuousWorldModel(["x", "y"], "a", "r", "done", discrete=["y"], max_regions=4,
                                 progress=False).fit(_chain(seed=1))
    with pytest.raises(SolverError, match="not solved from the simulated model"):
        mixed.rollout(other.solve(0.9), 5, 5, seed=0)
    with pytest.raises(Exception, match="not fitted"):
        ContinuousWorldModel("x", "a").to_env()
