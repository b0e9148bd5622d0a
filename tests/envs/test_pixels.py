"""Pixel environments: renderers, corruptions, logged frames beside true states, evaluation."""
from __future__ import annotations

import os

import numpy as np
import pytest

from spmn.envs import Corruption, GridRenderer, GymRenderer, PixelMDP
from spmn.errors import DataError, SpmnError
from spmn.reference import TabularMDP

pytest.importorskip("gymnasium")


@pytest.fixture(scope="module")
def lake() -> TabularMDP:
    return TabularMDP.from_gymnasium("FrozenLake-v1", is_slippery=True)


def test_grid_renderer_frozenlake_has_13_distinct_frames(lake):
    r = GridRenderer.from_mdp(lake, cell=6)
    assert r.frames_.shape == (16, 24, 24) and r.frames_.dtype == np.float32
    assert r.frames_.min() >= 0.0 and r.frames_.max() <= 1.0
    env = PixelMDP(lake, r)
    cls = env.frame_classes()
    assert len(np.unique(cls)) == 13
    holes = [5, 7, 11, 12]
    assert len(set(cls[holes])) == 1 and cls[0] == 0
    assert np.array_equal(r.frames_[5], r.frames_[12])
    # the agent is drawn everywhere else: its pixels differ from the map without it
    assert not np.array_equal(r.frames_[15], r.frames_[5])
    assert r.sprites_[0].sum() == 16 and r.sprites_[5].sum() == 0


def test_grid_renderer_cliffwalking_and_rgb():
    cliff = TabularMDP.from_gymnasium("CliffWalking-v1")
    r = GridRenderer.from_mdp(cliff, cell=4, rgb=True)
    assert r.frames_.shape == (48, 16, 48, 3)
    assert len(np.unique(r.frames_.reshape(48, -1), axis=0)) == 48 - 10 + 1  # cliff cells hide it


def test_grid_renderer_rejects_bad_maps(lake):
    with pytest.raises(DataError, match="unknown tiles"):
        GridRenderer(["SFX"])
    with pytest.raises(DataError, match="equal-length"):
        GridRenderer(["SF", "F"])
    with pytest.raises(DataError, match="cell"):
        GridRenderer(["SF"], cell=2)
    mdp = TabularMDP(np.ones((1, 2, 2)) / 2, np.zeros((1, 2)))
    with pytest.raises(SpmnError, match="FrozenLake and CliffWalking"):
        GridRenderer.from_mdp(mdp)


def test_gym_renderer_frozenlake_matches_the_state_count(lake):
    pytest.importorskip("pygame")
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    g = GymRenderer.from_mdp(lake, size=(16, 16))
    assert g.frames_.shape == (16, 16, 16)
    assert len(np.unique(g.frames_.reshape(16, -1), axis=0)) == 13  # four identical holes
    env = PixelMDP(lake, g, noise=0.05)
    d = env.sample(50, seed=0)
    assert d["frames"].shape == (50, 16, 16)
    with pytest.raises(DataError):
        GymRenderer.from_mdp(lake, size=(512, 8))


def test_corruption_noise_shift_and_clutter(lake):
    r = GridRenderer.from_mdp(lake)
    x = np.repeat(r.frames_[:1], 400, axis=0)
    noisy = Corruption(noise=0.1, clip=False).apply(x, seed=0)
    assert abs(float((noisy - x).std()) - 0.1) < 0.005 and abs(float((noisy - x).mean())) < 0.005
    assert np.array_equal(Corruption(noise=0.1).apply(x, seed=3), Corruption(noise=0.1).apply(x, seed=3))
    clipped = Corruption(noise=0.5).apply(x, seed=0)
    assert clipped.min() >= 0.0 and clipped.max() <= 1.0
    shifted = Corruption(shift=2).apply(x[:50], seed=1)
    pad = np.pad(x[0], 2, mode="edge")
    views = {(dy, dx): pad[2 - dy:26 - dy, 2 - dx:26 - dx] for dy in range(-2, 3) for dx in range(-2, 3)}
    for f in shifted:
        assert any(np.array_equal(f, v) for v in views.values())
    assert len({f.tobytes() for f in shifted}) > 5
    sprite = np.repeat(r.sprites_[:1], 400, axis=0)
    cl = Corruption(clutter=6).apply(x, seed=2, sprites=sprite)
    assert np.array_equal(cl[sprite], x[sprite])  # distractors lie behind the agent
    assert (cl != x).any(axis=(1, 2)).mean() > 0.9
    occ = Corruption(clutter=6, occlude=True).apply(x, seed=2, sprites=sprite)
    assert not np.array_equal(occ[sprite], x[sprite])
    with pytest.raises(DataError):
        Corruption(noise=-1.0)
    with pytest.raises(DataError):
        Corruption(shift=-1)


def test_sample_logs_frames_beside_true_states(lake):
    env = PixelMDP(lake, noise=0.1, shift=1, clutter=2)
    d = env.sample(3000, seed=7)
    ref = lake.sample_transitions(3000, seed=np.random.default_rng(7))
    assert np.array_equal(d["states"], ref["s"]) and np.array_equal(d["actions"], ref["a"])
    assert np.array_equal(d["next_states"], ref["s_next"])
    assert d["frames"].shape == (3000, 24, 24) and d["next_frames"].dtype == np.float32
    go = ~(d["terminated"] | d["truncated"])[:-1]
    i = np.flatnonzero(go)
    assert np.array_equal(d["next_frames"][i], d["frames"][i + 1])  # one frame per time step
    ends = np.flatnonzero(~go)
    assert not np.array_equal(d["next_frames"][ends], d["frames"][ends + 1])
    d2 = env.sample(3000, seed=7)
    assert np.array_equal(d["frames"], d2["frames"])
    clean = PixelMDP(lake).sample(100, seed=1)
    assert np.array_equal(clean["frames"], env.clean(clean["states"]))
    with pytest.raises(DataError):
        env.clean([16])


def test_policy_value_of_frame_policies(lake):
    env = PixelMDP(lake, noise=0.1)
    gamma = 0.95
    vstar = env.optimal_value(gamma)
    assert vstar == pytest.approx(0.1804715784, abs=1e-9)
    opt = lake.value_iteration(gamma, tol=1e-12).policy
    flat = env.renderer.frames_.reshape(16, -1)

    def act(frames):  # nearest clean frame, then the optimal action: an oracle encoder
        f = frames.reshape(frames.shape[0], -1)
        d = (f ** 2).sum(1)[:, None] - 2 * f @ flat.T + (flat ** 2).sum(1)[None]
        return opt[d.argmin(1)]

    assert env.policy_value(act, gamma, views=8, seed=0) == pytest.approx(vstar, rel=1e-9)
    left = env.policy_value(lambda f: np.zeros(f.shape[0], int), gamma, views=2, seed=0)
    assert left < 0.5 * vstar
    with pytest.raises(DataError, match="one action"):
        env.policy_value(lambda f: np.full(f.shape[0], 9), gamma, views=2, seed=0)
