"""The tabular world model as a simulator (spmn.worldmodels.simulate): Gymnasium's env checker,
sampled frequencies against the model's exact p(s', r | s, a), the compiled pass against its
numpy twin bit for bit, Monte Carlo returns against the exact values, autoreset, and bad input."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chi2

from spmn import DataError, SolverError
from spmn.cli.demo import frozenlake_mdp
from spmn.worldmodels import WorldModel
from spmn.worldmodels.simulate import InvalidActionError, dynamics_for, to_env

gym = pytest.importorskip("gymnasium")
from gymnasium.utils.env_checker import check_env  # noqa: E402

pytestmark = [pytest.mark.xdist_group(name="numba-kernels"),
              pytest.mark.filterwarnings("ignore::spmn.errors.CoverageWarning"),
              pytest.mark.filterwarnings("ignore:.*render fps:UserWarning"),
              pytest.mark.filterwarnings("ignore:.*alternative render modes:UserWarning")]


@pytest.fixture(scope="module")
def frozen():
    mdp = frozenlake_mdp()
    model = WorldModel("s", "a", "r", "terminated", progress=False).fit(
        mdp.sample_transitions(20_000, seed=0))
    return model


@pytest.fixture(scope="module")
def two_vars():
    """Two state variables, two action variables, a stochastic reward and episode ends."""
    rng = np.random.default_rng(1)
    n = 6000
    x, y = rng.integers(0, 3, n), rng.integers(0, 2, n)
    a, b = rng.integers(0, 2, n), rng.integers(0, 3, n)
    xn = np.where(rng.random(n) < 0.8, np.minimum(x + a, 2), x)
    end = (xn == 2) & (rng.random(n) < 0.3)
    logs = {"x": x, "y": y, "a": a, "b": b, "x_next": xn, "y_next": rng.integers(0, 2, n),
            "r": (x == 2) + 0.5 * (rng.random(n) < 0.5) - 0.1 * b, "done": end}
    return WorldModel(["x", "y"], ["a", "b"], "r", "done", progress=False).fit(logs)


def _chi2_p(counts: np.ndarray, probs: np.ndarray) -> float:
    n = counts.sum()
    keep = probs > 0
    assert counts[~keep].sum() == 0, "drew an outcome of probability 0"
    stat = float(((counts[keep] - n * probs[keep]) ** 2 / (n * probs[keep])).sum())
    return float(chi2.sf(stat, max(int(keep.sum()) - 1, 1)))


@pytest.mark.parametrize("case", ["frozen", "two_vars"])
def test_sampled_steps_follow_the_exact_conditional(case, request):
    model = request.getfixturevalue(case)
    names = model.state_names_
    N = 20_000
    states = model.seen_states_[:: max(1, len(model.seen_states_) // 4)][:4]
    for s in states:
        for a in [0, int(np.prod(model.action_cards_)) - 1]:
            acts = a if len(model.action_names_) == 1 else \
                np.unravel_index(a, model.action_cards_)
            pred = model.predict(s if len(names) > 1 else int(s[0]), np.asarray(acts))
            env = to_env(model, N, start=s[None, :], seed=int(a + 7 * s.sum()))
            env.reset()
            act = np.full(N, a) if len(model.action_names_) == 1 else \
                np.tile(np.asarray(acts), (N, 1))
            obs, r, term, trunc, _ = env.step(act)
            obs = obs.reshape(N, -1)
            keys = [tuple(row) + (v,) for row, v in zip(pred["next"].tolist(), pred["reward"])]
            table = {k: i for i, k in enumerate(keys)}
            probs = np.zeros(len(keys))
            for k, p in zip(keys, pred["prob"]):
                probs[table[k]] += p
            idx = np.array([table.get(tuple(o) + (v,), -1) for o, v in zip(obs.tolist(), r)])
            assert (idx >= 0).all(), "a sampled (s', r) has probability 0 under the model"
            assert _chi2_p(np.bincount(idx, minlength=len(keys)), probs) > 1e-4
            pe = pred["end_probability"]
            se = np.sqrt(max(pe * (1 - pe), 1e-12) / N)
            assert abs(term.mean() - pe) <= 4 * se + 1e-12
            assert not trunc.any()


def test_region_outcomes_keep_the_region(two_vars):
    dyn = dynamics_for(two_vars, start=two_vars.seen_states_)
    state = dyn.new_state(5000)
    rng = np.random.default_rng(0)
    term = np.ones(5000, bool)
    for _ in range(4):
        was = term
        _, term = dyn.step(state, dyn.random_actions(rng, 5000), term, rng)
        live = ~term
        np.testing.assert_array_equal(two_vars.tree_.route(state["codes"][live]),
                                      state["region"][live])
    assert not was.all() and term.any()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 40), p_done=st.floats(0, 1))
def test_compiled_pass_equals_its_numpy_twin_bit_for_bit(two_vars, seed, n, p_done):
    outs = []
    for backend in ("numba", "reference"):
        dyn = dynamics_for(two_vars, backend=backend)
        rng = np.random.default_rng(seed)
        state = dyn.new_state(n)
        dyn.step(state, np.zeros(n, np.int64), np.ones(n, bool), rng)
        res, ended = [], np.zeros(n, bool)
        for _ in range(6):
            done = ended | (rng.random(n) < p_done)
            r, ended = dyn.step(state, dyn.random_actions(rng, n), done, rng)
            res += [r.copy(), ended.copy(), state["codes"].copy(), state["region"].copy()]
        outs.append(res)
        if ended.any():
            with pytest.raises(DataError, match="after its episode ended"):
                dyn.step(state, np.zeros(n, np.int64), np.zeros(n, bool), rng)
    for x, y in zip(*outs):
        np.testing.assert_array_equal(x, y)


def test_rollouts_are_the_same_on_both_backends_and_seeded(frozen):
    sol = frozen.solve(0.9)
    a = frozen.rollout(sol, 30, 40, seed=3, start=[0])
    b = frozen.rollout(sol, 30, 40, seed=3, start=[0], backend="reference")
    c = frozen.rollout(sol, 30, 40, seed=4, start=[0])
    for k in a.columns:
        np.testing.assert_array_equal(a.columns[k], b.columns[k])
    np.testing.assert_array_equal(a.returns, b.returns)
    assert not np.array_equal(a.columns["s_next"][:50], c.columns["s_next"][:50])


def test_check_env_passes_for_one_and_several_variables(frozen, two_vars):
    env = to_env(frozen, start=[0], render_mode="ansi", max_episode_steps=50)
    check_env(env)
    assert isinstance(env.observation_space, gym.spaces.Discrete) and env.observation_space.n == 16
    env.reset(seed=0)
    env.step(1)
    assert "s=" in env.render() and "action 1" in env.render()
    env2 = to_env(two_vars, render_mode="ansi")
    check_env(env2)
    assert isinstance(env2.observation_space, gym.spaces.MultiDiscrete)
    assert env2.action_space.nvec.tolist() == [2, 3]


def test_vector_env_autoresets_on_the_next_step(frozen):
    start = np.array([[0], [14]])
    env = frozen.to_env(64, start=start, start_probs=[0.5, 0.5], max_episode_steps=5, seed=1)
    assert env.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    obs, _ = env.reset(seed=2)
    assert set(obs.tolist()) <= {0, 14} and env.observation_space.shape == (64,)
    prev_end = np.zeros(64, bool)
    for t in range(12):
        obs, r, term, trunc, _ = env.step(np.full(64, 2))
        assert set(obs[prev_end].tolist()) <= {0, 14}
        assert (r[prev_end] == 0).all() and not term[prev_end].any()
        assert not (term & trunc).any()
        prev_end = term | trunc
    assert prev_end.any()
    before = env.step(np.full(64, 2))[0]
    mask = np.arange(64) < 3
    obs, _ = env.reset(options={"reset_mask": mask})
    np.testing.assert_array_equal(obs[~mask], before[~mask])  # the others keep their states
    assert set(obs[mask].tolist()) <= {0, 14}
    with pytest.raises(DataError, match="reset_mask"):
        env.reset(options={"reset_mask": np.ones(3, bool)})
    assert env.render() is None


def test_mc_return_of_the_exact_policy_matches_the_exact_value(frozen, two_vars):
    for horizon in (None, 6):
        sol = frozen.solve(0.9, horizon=horizon)
        ro = frozen.rollout(sol, 20_000, horizon or 250, seed=11, start=[0], columns=False)
        assert abs(ro.mean_return - sol.value(0)) <= 3 * ro.stderr, (ro.mean_return, sol.value(0))
    sol = two_vars.solve(0.8)
    s0 = np.array([[0, 1]])
    ro = two_vars.rollout(sol, 20_000, 120, seed=5, start=s0, columns=False)
    assert abs(ro.mean_return - sol.value(s0[0])) <= 3 * ro.stderr


def test_rollout_columns_are_logs_the_models_learn_from(two_vars):
    ro = two_vars.rollout("random", 300, 20, seed=0)
    cols = ro.columns
    assert set(cols) >= {"x", "y", "x_next", "y_next", "a", "b", "r", "done", "truncated",
                         "episode", "t"}
    assert cols["x"].shape[0] == ro.lengths.sum()
    # per episode the steps run 0, 1, ... and chain: s_next of a step is s of the next one
    same = cols["episode"][1:] == cols["episode"][:-1]
    np.testing.assert_array_equal(cols["t"][1:][same], cols["t"][:-1][same] + 1)
    np.testing.assert_array_equal(cols["x"][1:][same], cols["x_next"][:-1][same])
    assert (cols["done"] | cols["truncated"])[:-1][~same].all()
    assert (cols["done"] | cols["truncated"])[-1]
    g = np.zeros(300)
    np.add.at(g, cols["episode"], cols["r"])
    np.testing.assert_allclose(g, ro.returns, rtol=1e-12, atol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        refit = WorldModel(["x", "y"], ["a", "b"], "r", "done", progress=False).fit(cols)
    assert refit.n_transitions_ == cols["x"].shape[0]


def test_callable_policies_and_their_shapes(frozen, two_vars):
    ro = frozen.rollout(lambda obs: np.where(obs < 8, 1, 2), 50, 10, seed=0, start=[0])
    assert set(ro.columns["a"].tolist()) <= {1, 2}
    ro = two_vars.rollout(lambda obs: np.stack([obs[:, 0] % 2, obs[:, 1]], axis=1), 20, 5,
                          seed=0)
    assert ro.columns["b"].max() <= 1
    with pytest.raises(DataError, match=r"expected shape \(50,\)"):
        frozen.rollout(lambda obs: np.zeros((50, 2), int), 50, 10, seed=0)
    with pytest.raises(DataError, match=r"expected shape \(20, 2\)"):
        two_vars.rollout(lambda obs: np.zeros(20, int), 20, 5, seed=0)
    with pytest.raises(DataError, match="policy must be"):
        frozen.rollout("greedy", 5, 5)
    with pytest.raises(SolverError, match="not solved from the simulated model"):
        frozen.rollout(two_vars.solve(0.9), 5, 5)
    with pytest.raises(SolverError, match="horizon 3"):
        frozen.rollout(frozen.solve(0.9, horizon=3), 5, 10, start=[0])


def test_actions_outside_the_space_are_named(frozen, two_vars):
    env = to_env(frozen, start=[0])
    env.reset(seed=0)
    for bad in (4, -1, 1.5, "up"):
        with pytest.raises(InvalidActionError, match=f"action {bad!r} is outside"):
            env.step(bad)
    assert issubclass(InvalidActionError, gym.error.InvalidAction)
    assert issubclass(InvalidActionError, DataError)
    venv = to_env(frozen, 8, start=[0])
    venv.reset(seed=0)
    acts = np.zeros(8, np.int64)
    acts[3] = 7
    with pytest.raises(InvalidActionError, match="action 7 of environment 3"):
        venv.step(acts)
    with pytest.raises(InvalidActionError, match="shape"):
        venv.step(np.zeros(5, np.int64))
    v2 = to_env(two_vars, 4)
    v2.reset(seed=0)
    with pytest.raises(InvalidActionError, match="'b' takes codes 0..2"):
        v2.step(np.array([[0, 0], [1, 3], [0, 0], [0, 0]]))


def test_bad_start_distributions_say_the_figures(frozen):
    with pytest.raises(DataError, match=r"expected shape \(16,\), got \(15,\)"):
        to_env(frozen, start_probs=np.full(15, 1 / 15))
    with pytest.raises(DataError, match="sum to 0.9"):
        to_env(frozen, start=[[0], [1]], start_probs=[0.5, 0.4])
    with pytest.raises(DataError, match=r"start_probs\[1\] = -0.5"):
        to_env(frozen, start=[[0], [1]], start_probs=[1.5, -0.5])
    with pytest.raises(DataError, match="terminal"):
        to_env(frozen, start=[[5]])
    p = np.zeros(16)
    p[[0, 4]] = 0.5
    env = to_env(frozen, 100, start_probs=p, seed=0)
    obs, _ = env.reset()
    assert set(obs.tolist()) == {0, 4}
    with pytest.raises(DataError, match="num_envs"):
        to_env(frozen, 0)
    with pytest.raises(DataError, match="render_mode"):
        to_env(frozen, render_mode="human")
    with pytest.raises(DataError, match="no simulator"):
        to_env(object())
    with pytest.raises(Exception, match="not fitted"):
        WorldModel("s", "a").to_env()


def test_a_saved_model_simulates_the_same(frozen, tmp_path):
    import spmn

    spmn.save(frozen, tmp_path / "m.json")
    back = spmn.load(tmp_path / "m.json")
    a = frozen.rollout("random", 40, 30, seed=9)
    b = back.rollout("random", 40, 30, seed=9)
    for k in a.columns:
        np.testing.assert_array_equal(a.columns[k], b.columns[k])


def test_unravel_rows_is_numpys_unravel_beyond_its_64_axes():
    from spmn.worldmodels.simulate.dynamics import unravel_rows
    cards = np.array([3, 1, 4, 2, 5])
    idx = np.arange(int(np.prod(cards)))
    np.testing.assert_array_equal(unravel_rows(idx, cards),
                                  np.stack(np.unravel_index(idx, cards), axis=1))
    many = np.array([1] * 70 + [2, 3])  # 72 axes, 6 joint states
    rows = unravel_rows(np.arange(6), many)
    assert rows.shape == (6, 72) and not rows[:, :70].any()
    np.testing.assert_array_equal(rows[:, 70:], np.stack(np.unravel_index(np.arange(6), (2, 3)),
                                                         axis=1))
