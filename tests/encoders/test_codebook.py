"""n_codes="auto": over-cluster, merge codes that the noise cannot tell apart; bad input."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from spmn.encoders import KMeans, PCAKMeansEncoder, TorchEncoder, check_frames, purity
from spmn.encoders.codebook import code_stats, merge_close_codes, separation
from spmn.errors import AliasingWarning, DataError

pytest.importorskip("gymnasium")
from spmn.envs import GridRenderer, PixelMDP  # noqa: E402
from spmn.reference import TabularMDP  # noqa: E402


@pytest.fixture(scope="module")
def lake_log():
    mdp = TabularMDP.from_gymnasium("FrozenLake-v1", is_slippery=True)
    env = PixelMDP(mdp, GridRenderer.from_mdp(mdp, cell=4), noise=0.1)
    return env, env.sample(3000, seed=0)


def _blobs(centres, n, sigma, seed):
    rng = np.random.default_rng(seed)
    X = np.concatenate([c + sigma * rng.normal(size=(n, len(c))) for c in centres])
    return X, np.repeat(np.arange(len(centres)), n)


def test_halves_of_one_gaussian_have_small_separation():
    """Two halves of one noisy cloud: d' = 2√(2/π) / √(1 − 2/π) ≈ 2.65 (the docstring's
    figure); two clouds 8σ apart: d' ≈ 8."""
    X, _ = _blobs([np.zeros(8)], 20000, 1.0, 0)
    lab = (X[:, 0] > 0).astype(int)
    dp = separation(*code_stats(X, lab, 2))
    assert dp[0, 1] == pytest.approx(2 * np.sqrt(2 / np.pi) / np.sqrt(1 - 2 / np.pi), rel=0.05)
    Y, lab2 = _blobs([np.zeros(8), np.r_[8.0, np.zeros(7)]], 5000, 1.0, 1)
    assert separation(*code_stats(Y, lab2, 2))[0, 1] == pytest.approx(8.0, rel=0.05)


def test_merge_close_codes_recovers_the_clouds():
    """Six clouds (6σ-12σ apart) over-clustered into 48 codes: merged back into exactly six,
    each cloud one code; clean duplicates (zero spread) merge only when identical."""
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(6, 16)) * 4.0
    X, y = _blobs(centres, 800, 0.3, 3)
    km = KMeans(48, n_init=1).fit(X, seed=0)
    cmap = merge_close_codes(X, km.labels_, km.centers_)
    z = cmap[km.labels_]
    assert cmap.max() + 1 == 6 and purity(z, y) == 1.0 and purity(y, z) == 1.0
    clean = np.repeat(np.eye(3), 5, axis=0)
    lab = np.r_[np.zeros(5, int), np.ones(5, int) * 1, np.ones(5, int) * 2]
    lab[:2] = 3  # a duplicate centre of the first row
    C = np.array([clean[0], clean[5], clean[10], clean[0]])
    assert merge_close_codes(clean, lab, C).tolist() == [0, 1, 2, 0]
    with pytest.raises(DataError, match="threshold"):
        merge_close_codes(X, km.labels_, km.centers_, threshold=-1.0)


def test_auto_codebook_finds_the_states_and_is_deterministic(lake_log):
    env, d = lake_log
    enc = PCAKMeansEncoder(n_components=32, max_codes=64)
    assert enc.n_codes == "auto"
    enc.fit(d["frames"], next_frames=d["next_frames"], seed=0)
    z = np.concatenate([enc.transform(d["frames"]), enc.transform(d["next_frames"])])
    y = np.concatenate([d["states"], d["next_states"]])
    assert 13 <= enc.n_codes_ <= 24 and enc.schema.cards == (enc.n_codes_,)
    assert purity(z, y, env.frame_classes()) >= 0.99
    assert enc.kmeans_.centers_.shape[0] == 64 and z.max() < enc.n_codes_
    again = PCAKMeansEncoder(n_components=32, max_codes=64).fit(
        d["frames"], next_frames=d["next_frames"], seed=0)
    assert np.array_equal(again.transform(d["frames"]), z[:3000])
    back = PCAKMeansEncoder.from_saved(enc.get_config(), enc.get_arrays())
    assert back.n_codes_ == enc.n_codes_ and np.array_equal(back.transform(d["frames"]), z[:3000])


def test_auto_codebook_warns_when_the_upper_limit_is_reached(lake_log):
    _, d = lake_log
    with pytest.warns(AliasingWarning, match="raise max_codes"):
        PCAKMeansEncoder(n_components=16, max_codes=8).fit(d["frames"], seed=0)


def test_bad_codebook_settings_and_too_few_frames(lake_log):
    _, d = lake_log
    for bad in ("many", 0, 2.5, True):
        with pytest.raises(DataError, match="n_codes"):
            PCAKMeansEncoder(n_codes=bad)
    with pytest.raises(DataError, match="max_codes"):
        PCAKMeansEncoder(max_codes=1)
    with pytest.raises(DataError, match="merge_threshold"):
        TorchEncoder(merge_threshold=-2)
    with pytest.raises(DataError, match="50 frames cannot fill 64 codes"):
        PCAKMeansEncoder(n_codes=64).fit(d["frames"][:50])
    with pytest.raises(DataError, match="50 frames cannot fill max_codes=128"):
        PCAKMeansEncoder().fit(d["frames"][:50])


def test_inconsistent_frames_in_one_log_name_the_row(lake_log):
    _, d = lake_log
    rows = list(d["frames"][:10])
    rows[7] = rows[7][:-1]
    with pytest.raises(DataError, match="row 7 is a frame of shape \\(15, 16\\)"):
        check_frames(rows)
    rows = list(d["frames"][:10])
    rows[4] = (rows[4] * 255).astype(np.uint8)
    with pytest.raises(DataError, match="row 4 .* dtype uint8"):
        PCAKMeansEncoder(n_codes=2).fit(rows)
    assert check_frames(list(d["frames"][:10])).shape == (10, 16, 16, 1)
    scaled = d["frames"][:10] * 255.0
    with pytest.raises(DataError, match="frame 0 has pixels in .* float frames must lie in"):
        check_frames(scaled)


def test_torch_auto_codebook_tiny(lake_log):
    pytest.importorskip("torch")
    env, d = lake_log
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AliasingWarning)
        enc = TorchEncoder(max_codes=32, steps=10, batch_size=32, threads=1).fit(
            d["frames"][:1500], d["actions"][:1500], d["next_frames"][:1500], seed=0)
    # the same merge as the numpy encoder's, on the CNN's embeddings (10 steps leave them a
    # continuum, so few codes are found: the mechanism is checked here, quality in test_encoded)
    E = enc.embed(np.concatenate([d["frames"][:1500], d["next_frames"][:1500]]))
    cmap = merge_close_codes(E, enc.kmeans_.labels_, enc.kmeans_.centers_)
    assert enc.n_codes == "auto" and enc.kmeans_.centers_.shape == (32, 32)
    assert np.array_equal(enc.code_map_, cmap) and enc.n_codes_ == cmap.max() + 1
    z = enc.transform(d["frames"])
    assert z.max() < enc.n_codes_ and enc.schema.cards == (enc.n_codes_,)
    back = TorchEncoder.from_saved(enc.get_config(), enc.get_arrays())
    assert np.array_equal(back.transform(d["frames"][:200]), z[:200])
    with pytest.raises(DataError, match="max_codes=128"):
        TorchEncoder(batch_size=8).fit(d["frames"][:100], seed=0)
