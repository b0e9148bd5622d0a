"""MiniGrid from pixels: the enumerated table, the optimum two ways, the real env, and (slow)
the learned policy from frames run in the real env beside the optimum."""
from __future__ import annotations

import numpy as np
import pytest

from spmn.errors import DataError

pytest.importorskip("minigrid")
from spmn.envs.minigrid import MiniGridTask  # noqa: E402

GAMMA = 0.95


@pytest.fixture(scope="module")
def empty():
    return MiniGridTask("MiniGrid-Empty-6x6-v0", tile_size=4)


@pytest.fixture(scope="module")
def doorkey():
    return MiniGridTask("MiniGrid-DoorKey-5x5-v0", tile_size=4)


def test_enumeration_frames_and_optimum(empty, doorkey):
    # Empty 6x6: 4x4 floor, goal in the corner: 15 cells x 4 directions + 2 ways onto the goal
    assert empty.n_states == 62 and empty.terminal_.sum() == 2 and empty.n_actions == 3
    assert empty.frames_.shape == (62, 24, 24, 3) and empty.frames_.dtype == np.float32
    for t in (empty, doorkey):
        flat = t.frames_.reshape(t.n_states, -1)
        assert len(np.unique(flat, axis=0)) == t.n_states      # fully observable: one frame each
        assert np.allclose(t.mdp.P.sum(2), 1.0)
    assert empty.shortest_path() == 7 and doorkey.shortest_path() == 11
    # value iteration (ours) = γ^(d-1) for the shortest path d (BFS), = the tabular solver's
    for t in (empty, doorkey):
        v = t.optimal_values(GAMMA)
        assert v[0] == pytest.approx(GAMMA ** (t.shortest_path() - 1), abs=1e-12)
        ref = t.mdp.value_iteration(GAMMA, tol=1e-13).values
        np.testing.assert_allclose(v, ref, atol=1e-10)
        assert t.optimal_value(GAMMA) == pytest.approx(v[0])


def test_rollout_in_the_real_env(doorkey):
    """The optimal policy of the table, read from the real env's frames, reaches V* in the
    real env (so the table is the real env's dynamics); a policy that only turns never
    arrives."""
    pi = doorkey.mdp.value_iteration(GAMMA, tol=1e-12).policy
    flat = doorkey.frames_.reshape(doorkey.n_states, -1)

    def act(frames):
        d = ((frames.reshape(1, -1) - flat) ** 2).sum(1)
        assert d.min() == 0.0  # every real frame is one of the enumerated frames
        return pi[d.argmin()]

    r = doorkey.rollout(act, GAMMA)
    assert r["reached"] and r["steps"] == 11
    assert r["return"] == pytest.approx(doorkey.optimal_value(GAMMA), abs=1e-12)
    assert 0 < r["minigrid_reward"] < 1
    spin = doorkey.rollout(lambda f: 0, GAMMA, max_steps=20)
    assert not spin["reached"] and spin["return"] == 0.0
    with pytest.raises(DataError, match="action 7"):
        doorkey.rollout(lambda f: 7, GAMMA)


def test_logged_transitions_and_bad_input(empty):
    d = empty.sample(500, seed=0)
    assert d["frames"].shape == (500, 24, 24, 3)
    go = ~(d["terminated"] | d["truncated"])[:-1]
    i = np.flatnonzero(go)
    assert np.array_equal(d["next_frames"][i], d["frames"][i + 1])
    assert np.array_equal(d["frames"], empty.frames_[d["states"]])
    assert np.array_equal(empty.sample(500, seed=0)["actions"], d["actions"])
    noisy = empty.sample(50, seed=1, noise=0.05)
    assert not np.array_equal(noisy["frames"], empty.frames_[noisy["states"]])
    with pytest.raises(DataError, match="starts"):
        empty.pixels(starts="anywhere")
    with pytest.raises(DataError, match="no default actions"):
        MiniGridTask("MiniGrid-FourRooms-v0")
    with pytest.raises(DataError, match="cannot make"):
        MiniGridTask("MiniGrid-Nowhere-v0", actions=(0, 1))
    with pytest.raises(DataError, match="tile_size"):
        MiniGridTask(tile_size=1)
    with pytest.raises(DataError, match="max_states"):
        MiniGridTask(max_states=10)


@pytest.mark.slow
@pytest.mark.parametrize("env_id", ["MiniGrid-Empty-6x6-v0", "MiniGrid-DoorKey-5x5-v0"])
def test_policy_from_pixels_reaches_the_optimum_in_the_real_env(env_id, empty, doorkey):
    """Random actions from exploring starts, frames only; the default encoder (codebook size
    found from the frames) and the exact solve; the greedy policy run in the real env reaches
    >= 99% of V* (it reaches V* itself here)."""
    import warnings

    from spmn.errors import AliasingWarning
    from spmn.worldmodels import EncodedWorldModel

    task = empty if env_id.startswith("MiniGrid-Empty") else doorkey
    d = task.sample(5000 if task is empty else 10000, seed=0)  # DoorKey: 5,000 leave gaps
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AliasingWarning)
        m = EncodedWorldModel(progress=False).fit(d["frames"], d["actions"], d["rewards"],
                                                  d["next_frames"], d["terminated"], seed=0)
    alias = [w for w in caught if issubclass(w.category, AliasingWarning)]
    m.solve(GAMMA)
    r = task.rollout(m.policy, GAMMA)
    assert r["return"] >= 0.99 * task.optimal_value(GAMMA) or alias
    assert m.diagnostics_["encoder_codes"] == task.n_states and not alias
