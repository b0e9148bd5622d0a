"""EncodedWorldModel: from frames to an exact policy, bad input, and model files."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

import spmn
from spmn.encoders import (
    CallableEncoder,
    PCAKMeansEncoder,
    TorchEncoder,
    purity,
)
from spmn.errors import DataError, ModelFileError, NotFittedError
from spmn.worldmodels import EncodedWorldModel

pytest.importorskip("gymnasium")
from spmn.envs import GridRenderer, PixelMDP  # noqa: E402
from spmn.reference import TabularMDP  # noqa: E402

GAMMA = 0.95
V_STAR = 0.1804715784


@pytest.fixture(scope="module")
def lake():
    return TabularMDP.from_gymnasium("FrozenLake-v1", is_slippery=True)


@pytest.fixture(scope="module")
def small(lake):
    env = PixelMDP(lake, GridRenderer.from_mdp(lake, cell=4), noise=0.1)
    return env, env.sample(20000, seed=0)


def _purity(m, d, env) -> float:
    """Purity over every logged frame: the frames before and after each step (episode ends,
    e.g. holes and the goal, appear only after)."""
    z = np.concatenate([m.encode(d["frames"]), m.encode(d["next_frames"])])
    return purity(z, np.concatenate([d["states"], d["next_states"]]), env.frame_classes())


def _fit(model, d, **kw):
    return model.fit(d["frames"], d["actions"], d["rewards"], d["next_frames"],
                     d["terminated"], **kw)


@pytest.mark.slow
def test_numpy_fallback_reaches_the_optimal_policy_from_noisy_frames(lake):
    """The issue's check: σ = 0.1, 100,000 transitions, purity >= 0.99, value >= 99% of V*."""
    env = PixelMDP(lake, noise=0.1)
    d = env.sample(100_000, seed=0)
    m = _fit(EncodedWorldModel(PCAKMeansEncoder()), d, seed=0)
    assert _purity(m, d, env) >= 0.99
    m.solve(GAMMA)
    assert env.optimal_value(GAMMA) == pytest.approx(V_STAR, abs=1e-9)
    assert env.policy_value(m.policy, GAMMA, views=32, seed=1) >= 0.99 * V_STAR


def test_torch_encoder_reaches_the_optimal_policy_from_noisy_frames(small):
    pytest.importorskip("torch")
    env, d = small
    enc = TorchEncoder(n_codes=32, steps=400, batch_size=64, shift=1, threads=1)
    m = _fit(EncodedWorldModel(enc), d, seed=0)
    assert _purity(m, d, env) >= 0.99
    m.solve(GAMMA)
    assert env.policy_value(m.policy, GAMMA, views=16, seed=1) >= 0.99 * V_STAR
    assert m.encoder.usage_["perplexity"] > 5  # codes in use, no collapse


def test_torch_model_file_round_trip(small, tmp_path):
    pytest.importorskip("torch")
    env, d = small
    enc = TorchEncoder(n_codes=16, steps=40, batch_size=32, shift=1, threads=1)
    m = _fit(EncodedWorldModel(enc), d, seed=1)
    m.solve(GAMMA)
    path = spmn.save(m, tmp_path / "lake.json")
    doc = json.loads(path.read_text())
    assert doc["kind"] == "encoded_world_model" and doc["payload"]["encoder"]["type"] == "torch_cnn"
    with np.load(path.with_suffix(".npz"), allow_pickle=False) as z:
        assert any(k.startswith("enc_net.") for k in z.files)
    back = spmn.load(path)
    frames = env.render(np.repeat(np.arange(16), 4), seed=3)
    assert np.array_equal(back.encode(frames), m.encode(frames))
    assert np.array_equal(back.policy(frames), m.policy(frames))
    assert np.allclose(back.value(frames), m.value(frames), atol=1e-12)


def test_numpy_model_file_round_trip_and_callables(small, tmp_path):
    env, d = small
    m = _fit(EncodedWorldModel(PCAKMeansEncoder()), d, seed=0)
    frames = env.render(np.repeat(np.arange(16), 4), seed=3)
    with pytest.raises(NotFittedError, match="solve"):
        m.policy(frames)
    m.solve(GAMMA)
    back = spmn.load(spmn.save(m, tmp_path / "np.json"))
    assert back.encoder.n_codes == "auto" and back.encoder.n_codes_ == m.encoder.n_codes_
    assert np.array_equal(back.policy(frames), m.policy(frames))
    assert np.allclose(back.q(frames), m.q(frames), atol=1e-12)
    unsolved = _fit(EncodedWorldModel(PCAKMeansEncoder()), d, seed=0)
    assert getattr(spmn.load(spmn.save(unsolved, tmp_path / "u.json")), "solution_", None) is None
    fn = CallableEncoder(lambda f: np.zeros(f.shape[0], np.int64) + (f.mean((1, 2)) > 0.5))
    cm = _fit(EncodedWorldModel(fn), d)
    with pytest.raises(ModelFileError, match="CallableEncoder"):
        spmn.save(cm, tmp_path / "c.json")


def test_common_keywords_progress_seed_backend(small, tmp_path):
    """``progress``, ``seed``, ``backend`` as on every kind: kept, passed to the inner world
    model; the model's seed is fit's default; the reference backend gives the default's Q."""
    env, d = small
    sub = {k: v[:4000] for k, v in d.items()}
    enc = lambda: PCAKMeansEncoder(n_codes=16, n_components=8)  # noqa: E731
    base = _fit(EncodedWorldModel(enc()), sub, seed=0)
    assert (base.progress, base.seed, base.backend) == (True, None, None)
    m = _fit(EncodedWorldModel(enc(), progress=False, seed=0, backend="reference"), sub)
    assert (m.progress, m.seed, m.backend) == (False, 0, "reference")
    wm = m.world_model_
    assert (wm.progress, wm.backend, wm.seed) == (False, "reference", 0)
    frames = env.render(np.repeat(np.arange(16), 4), seed=3)
    assert np.array_equal(m.encode(frames), base.encode(frames))
    np.testing.assert_allclose(m.solve(GAMMA).values, base.solve(GAMMA).values, rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_allclose(m.q(frames), base.q(frames), rtol=1e-12, atol=1e-12)
    back = spmn.load(spmn.save(m, tmp_path / "kw.json"))
    assert back.seed == 0 and back.world_model_args == {}
    np.testing.assert_allclose(back.q(frames), m.q(frames), rtol=1e-12, atol=1e-12)
    # the keywords of before still work: WorldModel hyper-parameters ride in **world_model_args
    old = EncodedWorldModel(enc(), structure="full", smoothing=0.5, progress=False)
    assert old.world_model_args == {"structure": "full", "smoothing": 0.5} and not old.progress
    # files of the previous version: no "seed", progress/backend among world_model_args
    path = spmn.save(base, tmp_path / "old.json")
    doc = json.loads(path.read_text())
    doc["payload"].pop("seed")
    doc["payload"]["world_model_args"] = {"progress": False, "backend": "reference"}
    path.write_text(json.dumps(doc))
    old = spmn.load(path)
    assert old.seed is None and old.backend == "reference" and old.world_model_args == {}
    assert old.world_model_.template_.backend == "reference"
    np.testing.assert_allclose(old.q(frames), base.q(frames), rtol=1e-12, atol=1e-12)
    models = os.path.join(os.path.dirname(__file__), "..", "data", "models")
    saved = spmn.load(os.path.join(models, "pixels_v1.json"))
    assert (saved.progress, saved.seed, saved.backend) == (True, None, None)
    np.testing.assert_allclose(saved.q(np.load(os.path.join(models, "pixels_v1_frames.npy"))),
                               np.load(os.path.join(models, "pixels_v1_q.npy")), rtol=1e-12,
                               atol=1e-12)


def test_callable_encoders_feed_the_world_model(lake, small):
    env, d = small
    flat = env.renderer.frames_.reshape(16, -1)

    def nearest(frames):  # an oracle: the index of the nearest clean frame
        f = frames.reshape(frames.shape[0], -1)
        return ((f[:, None, :] - flat[None]) ** 2).sum(-1).argmin(1)

    m = _fit(EncodedWorldModel(CallableEncoder(nearest, cards=(16,)), structure="full"), d)
    m.solve(GAMMA)
    assert env.policy_value(m.policy, GAMMA, views=4, seed=0) == pytest.approx(V_STAR, rel=1e-3)
    # continuous features (a fitted PCA's coordinates) are quantized by k-means into codes
    pca = PCAKMeansEncoder(n_codes=2, n_components=12).fit(d["frames"], next_frames=d["next_frames"],
                                                           seed=0)
    mc = _fit(EncodedWorldModel(CallableEncoder(pca.features)), d, seed=0)
    assert mc.encoder.schema.kind == "continuous" and mc.quantizer_ is not None
    assert mc.world_model_.state_names_ == ["z"] and mc.diagnostics_["end_code_mixing"] < 0.01
    assert mc.encode(d["frames"]).shape == (20000, 1)
    assert _purity(mc, d, env) >= 0.99
    mc.solve(GAMMA)
    assert env.policy_value(mc.policy, GAMMA, views=4, seed=0) >= 0.99 * V_STAR


def test_bad_input_raises_clear_errors(small):
    env, d = small
    m = EncodedWorldModel(PCAKMeansEncoder())
    with pytest.raises(NotFittedError, match="fit"):
        m.policy(d["frames"][:3])
    with pytest.raises(DataError, match="next_frames"):
        m.fit(d["frames"][:100], d["actions"][:100], d["rewards"][:100], d["next_frames"][:99],
              d["terminated"][:100])
    with pytest.raises(DataError, match="actions"):
        m.fit(d["frames"][:100], d["actions"][:90], d["rewards"][:100], d["next_frames"][:100])
    with pytest.raises(DataError, match="rewards"):
        m.fit(d["frames"][:100], d["actions"][:100], d["rewards"][:10], d["next_frames"][:100])
    with pytest.raises(DataError, match="terminated"):
        m.fit(d["frames"][:100], d["actions"][:100], d["rewards"][:100], d["next_frames"][:100],
              np.zeros(5, bool))
    nan = d["frames"][:100].copy()
    nan[4, 1, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        m.fit(nan, d["actions"][:100], d["rewards"][:100], d["next_frames"][:100])
    with pytest.raises(DataError, match="dtype"):
        m.fit(d["frames"][:100].astype(bool), d["actions"][:100], d["rewards"][:100],
              d["next_frames"][:100])
    with pytest.raises(DataError, match="shape"):
        m.fit(d["frames"][:100, 0], d["actions"][:100], d["rewards"][:100], d["next_frames"][:100])
    with pytest.raises(DataError, match="no transitions"):
        m.fit(d["frames"][:0], d["actions"][:0], d["rewards"][:0], d["next_frames"][:0])
    with pytest.raises(DataError, match="set by EncodedWorldModel"):
        EncodedWorldModel(reward="u")
    with pytest.raises(DataError, match="no fit"):
        EncodedWorldModel(object())
    _fit(m, {k: v[:3000] for k, v in d.items()}, seed=0).solve(GAMMA)
    with pytest.raises(DataError, match="frame shape"):
        m.policy(np.zeros((2, 24, 24), np.float32))
    assert m.policy((d["frames"][:5] * 255).astype(np.uint8)).shape == (5,)


def test_merge_codes_joins_the_codes_of_one_state_only(lake):
    """FrozenLake's true states, each split over two codes at random: the merge recovers the
    states (every pair joined, no two states joined); episode-end codes stay apart."""
    from spmn.worldmodels.encoded import merge_codes

    log = lake.sample_transitions(50_000, seed=0)
    rng = np.random.default_rng(1)
    split = lambda s: 2 * s + rng.integers(0, 2, s.size)  # noqa: E731
    z, zn = split(log["s"]), split(log["s_next"])
    block = merge_codes(z, log["a"], (log["r"] > 0).astype(np.int64), zn, log["terminated"], 32)
    live = np.unique(log["s"])
    for s in live:
        assert block[2 * s] == block[2 * s + 1]
    assert len({int(block[2 * s]) for s in live}) == live.size
    ends = np.setdiff1d(np.unique(log["s_next"]), live)
    assert len({int(block[c]) for s in ends for c in (2 * s, 2 * s + 1)}) == 2 * ends.size
