"""Encoders: frame checks, metrics, k-means, the numpy fallback, callables and the torch CNN."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from spmn.encoders import (
    CallableEncoder,
    Encoder,
    KMeans,
    PCAKMeansEncoder,
    TorchEncoder,
    check_frames,
    code_usage,
    inverse_purity,
    purity,
)
from spmn.errors import DataError, NotFittedError, SpmnError

pytest.importorskip("gymnasium")
from spmn.envs import GridRenderer, PixelMDP  # noqa: E402
from spmn.reference import TabularMDP  # noqa: E402


@pytest.fixture(scope="module")
def lake_env() -> PixelMDP:
    mdp = TabularMDP.from_gymnasium("FrozenLake-v1", is_slippery=True)
    return PixelMDP(mdp, GridRenderer.from_mdp(mdp, cell=4), noise=0.1)


@pytest.fixture(scope="module")
def lake_log(lake_env) -> dict:
    return lake_env.sample(6000, seed=0)


def _purity(enc, d, env) -> float:
    """Purity over the frames before and after each step (episode ends appear only after)."""
    z = np.concatenate([enc.transform(d["frames"]), enc.transform(d["next_frames"])])
    return purity(z, np.concatenate([d["states"], d["next_states"]]), env.frame_classes())


# ---------------------------------------------------------------------------- checks, metrics
def test_check_frames_shapes_dtypes_and_nan():
    x = check_frames(np.zeros((3, 8, 8)))
    assert x.shape == (3, 8, 8, 1) and x.dtype == np.float32
    u = check_frames(np.full((2, 8, 8, 3), 255, np.uint8))
    assert u.max() == 1.0
    with pytest.raises(DataError, match="shape"):
        check_frames(np.zeros((8, 8)))
    with pytest.raises(DataError, match="dtype"):
        check_frames(np.zeros((2, 8, 8), bool))
    with pytest.raises(DataError, match="dtype"):
        check_frames(np.array([["a"] * 8] * 8)[None])
    bad = np.zeros((4, 8, 8))
    bad[2, 3, 3] = np.nan
    with pytest.raises(DataError, match="frame 2 has NaN"):
        check_frames(bad)
    with pytest.raises(DataError, match="fitted on"):
        check_frames(np.zeros((2, 8, 8)), shape=(8, 9, 1))
    with pytest.raises(DataError, match="at least 4x4"):
        check_frames(np.zeros((2, 3, 3)))


def test_purity_and_code_usage_by_hand():
    codes = np.array([0, 0, 0, 1, 1, 2])
    states = np.array([5, 5, 6, 6, 6, 7])
    assert purity(codes, states) == pytest.approx(5 / 6)
    assert inverse_purity(codes, states) == pytest.approx(5 / 6)
    assert purity(codes, states, classes=np.array([0, 0, 0, 0, 0, 1, 1, 2])) == 1.0
    assert purity(np.arange(6), states) == 1.0 and inverse_purity(np.arange(6), states) == 0.5
    u = code_usage(np.array([0, 0, 1, 1]), 4)
    assert u["used"] == 2 and u["perplexity"] == pytest.approx(2.0)
    assert code_usage(np.zeros(10, int), 8)["perplexity"] == pytest.approx(1.0)
    with pytest.raises(DataError):
        purity(codes, states[:3])


def test_kmeans_finds_blobs_and_resets_dead_codes():
    rng = np.random.default_rng(0)
    centers = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    X = np.concatenate([c + 0.1 * rng.normal(size=(200, 2)) for c in centers])
    km = KMeans(3).fit(X, seed=1)
    assert purity(km.labels_, np.repeat(np.arange(3), 200)) == 1.0
    assert np.allclose(np.sort(km.centers_[:, 0]), [0, 0, 10], atol=0.05)
    # two points repeated: k-means++ can only seed 2 distinct centres, the rest are reset
    Y = np.repeat(np.array([[0.0], [1.0]]), 50, axis=0)
    km5 = KMeans(5, n_init=1).fit(np.concatenate([Y, [[0.5]], [[2.0]], [[3.0]]]), seed=0)
    assert len(np.unique(km5.labels_)) == 5
    assert np.array_equal(KMeans(3).fit(X, seed=4).labels_, KMeans(3).fit(X, seed=4).labels_)
    with pytest.raises(NotFittedError):
        KMeans(2).predict(X)
    with pytest.raises(DataError):
        KMeans(10).fit(X[:5])


# ---------------------------------------------------------------------------- callables
def test_callable_encoder_discrete_and_continuous(lake_env, lake_log):
    flat = lake_env.renderer.frames_.reshape(16, -1)

    def nearest(frames):
        f = frames.reshape(frames.shape[0], -1)
        return ((f[:, None, :] - flat[None]) ** 2).sum(-1).argmin(1)

    enc = CallableEncoder(nearest)
    with pytest.raises(NotFittedError):
        enc.schema
    enc.fit(lake_log["frames"][:500], next_frames=lake_log["next_frames"][:500])
    assert isinstance(enc, Encoder)
    assert enc.schema.kind == "discrete" and enc.schema.names == ("z",)
    z = enc.transform(lake_log["frames"][:300])
    assert z.shape == (300, 1) and z.dtype == np.int64
    cls = lake_env.frame_classes()
    assert purity(z, lake_log["states"][:300], cls) == 1.0
    cont = CallableEncoder(lambda f: f.reshape(f.shape[0], -1)[:, :3].astype(np.float64),
                           names=("a", "b", "c")).fit(lake_log["frames"][:10])
    assert cont.schema.kind == "continuous" and cont.transform(lake_log["frames"][:4]).shape == (4, 3)
    with pytest.raises(DataError, match="returned shape"):
        CallableEncoder(lambda f: np.zeros(3)).fit(lake_log["frames"][:10])
    with pytest.raises(DataError, match="callable"):
        CallableEncoder(42)
    with pytest.raises(DataError, match="frame shape"):
        enc.transform(np.zeros((2, 8, 8)))


# ---------------------------------------------------------------------------- numpy fallback
def test_pca_kmeans_encoder_on_noisy_frames(lake_env, lake_log):
    enc = PCAKMeansEncoder(n_codes=32, n_components=32)
    with pytest.raises(NotFittedError):
        enc.transform(lake_log["frames"])
    enc.fit(lake_log["frames"], next_frames=lake_log["next_frames"], seed=0)
    z = enc.transform(lake_log["frames"])
    assert z.shape == (6000, 1) and z.min() >= 0 and z.max() < 32
    assert _purity(enc, lake_log, lake_env) >= 0.99
    assert enc.usage_["used"] == 32 and enc.schema.cards == (32,)
    assert enc.features(lake_log["frames"][:5]).shape == (5, 32)
    again = PCAKMeansEncoder.from_saved(enc.get_config(), enc.get_arrays())
    assert np.array_equal(again.transform(lake_log["frames"]), z)
    with pytest.raises(DataError, match="frame shape"):
        enc.transform(np.zeros((2, 24, 24)))
    bad = lake_log["frames"][:50].copy()
    bad[7, 0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        enc.transform(bad)


def test_pca_kmeans_fails_under_shift_and_clutter(lake_env):
    env = PixelMDP(lake_env.mdp, lake_env.renderer, noise=0.05, shift=2, clutter=4)
    d = env.sample(4000, seed=1)
    enc = PCAKMeansEncoder().fit(d["frames"], next_frames=d["next_frames"], seed=0)
    assert _purity(enc, d, env) < 0.8


# ---------------------------------------------------------------------------- torch
def test_torch_missing_gives_a_clear_error(monkeypatch, lake_log):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(SpmnError, match="spmn\\[neural\\]"):
        TorchEncoder(steps=1).fit(lake_log["frames"][:200])


def test_torch_encoder_rejects_bad_settings_and_input(lake_log):
    with pytest.raises(DataError):
        TorchEncoder(output="pixels")
    with pytest.raises(DataError):
        TorchEncoder(temperature=0.0)
    with pytest.raises(DataError):
        TorchEncoder(balance=2.0)
    with pytest.raises(NotFittedError):
        TorchEncoder().transform(lake_log["frames"][:3])
    pytest.importorskip("torch")
    with pytest.raises(DataError, match="next_frames"):
        TorchEncoder(steps=1).fit(lake_log["frames"][:300], next_frames=lake_log["next_frames"][:200])
    with pytest.raises(DataError, match="actions"):
        TorchEncoder(steps=1).fit(lake_log["frames"][:300], lake_log["actions"][:10])


def test_torch_encoder_learns_codes_that_match_states(lake_env, lake_log):
    pytest.importorskip("torch")
    enc = TorchEncoder(n_codes=32, steps=200, batch_size=64, shift=1, threads=1)
    enc.fit(lake_log["frames"], lake_log["actions"], lake_log["next_frames"], seed=0)
    z = enc.transform(lake_log["frames"])
    assert z.shape == (6000, 1) and z.dtype == np.int64
    assert _purity(enc, lake_log, lake_env) >= 0.97
    assert enc.usage_["used"] == 32 and enc.usage_["perplexity"] > 5  # no collapse
    assert len(enc.history_["objective"]) == 200 and enc.history_["perplexity"]
    assert enc.history_["objective"][-1] < enc.history_["objective"][0]
    # weights survive a round trip through plain arrays (what model files store)
    again = TorchEncoder.from_saved(enc.get_config(), enc.get_arrays())
    assert np.array_equal(again.transform(lake_log["frames"][:500]), z[:500])
    feats = TorchEncoder(output="features", steps=0).fit(lake_log["frames"][:300], seed=0)
    assert feats.schema.kind == "continuous"
    E = feats.transform(lake_log["frames"][:10])
    assert E.shape == (10, 32) and np.allclose(np.linalg.norm(E, axis=1), 1.0)


def test_torch_encoder_is_deterministic_and_trains_without_next_frames(lake_log):
    """Without next frames the CNN is a denoising autoencoder (weaker; see the README)."""
    pytest.importorskip("torch")
    x = lake_log["frames"][:2000]
    a = TorchEncoder(n_codes=16, steps=30, batch_size=32, threads=1).fit(x, seed=3)
    b = TorchEncoder(n_codes=16, steps=30, batch_size=32, threads=1).fit(x, seed=3)
    assert np.array_equal(a.transform(x), b.transform(x))
    assert a.history_["objective"] == b.history_["objective"]
    rec = a.history_["objective"]
    assert np.mean(rec[-5:]) < 0.5 * np.mean(rec[:5])  # the reconstruction error falls
    assert a.usage_["used"] == 16 and a.usage_["perplexity"] > 4


def test_torch_encoder_reports_collapse(lake_log):
    pytest.importorskip("torch")
    same = np.repeat(lake_log["frames"][:1], 300, axis=0)
    with pytest.raises(SpmnError, match="collapsed"):
        TorchEncoder(steps=2, batch_size=32, aug_noise=0.0, shift=0).fit(same, seed=0)
