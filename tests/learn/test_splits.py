"""Independence tests and clusterings of spmn.learn.splits against scipy and known answers."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chi2_contingency

from spmn.learn import splits as S
from spmn.learn.clusters import fit_clusters


def _codes(rng, n, k):
    return rng.integers(0, k, n).astype(np.int32)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(2, 4), st.integers(2, 5), st.integers(30, 400))
def test_g_test_matches_scipy_log_likelihood_ratio(seed, ka, kb, n):
    rng = np.random.default_rng(seed)
    a = _codes(rng, n, ka)
    b = np.where(rng.random(n) < 0.3, a % kb, _codes(rng, n, kb)).astype(np.int32)
    P = S.g_test_matrix(np.column_stack([a, b]), [ka, kb])
    table = np.zeros((ka, kb))
    np.add.at(table, (a, b), 1)
    table = table[table.sum(1) > 0][:, table.sum(0) > 0]
    if min(table.shape) < 2:
        assert P[0, 1] == 1.0
        return
    _, p, dof, _ = chi2_contingency(table, correction=False, lambda_="log-likelihood")
    assert P[0, 1] == pytest.approx(p, rel=1e-9, abs=1e-300)
    assert P[1, 0] == P[0, 1] and P[0, 0] == 1.0


def test_pair_counts_are_contingency_tables():
    rng = np.random.default_rng(1)
    codes = np.column_stack([_codes(rng, 500, 3), _codes(rng, 500, 2), _codes(rng, 500, 4)])
    tables = S.pair_counts(codes, [3, 2, 4])
    assert list(tables) == [(0, 1), (0, 2), (1, 2)]
    for (a, b), t in tables.items():
        ref = np.zeros(t.shape)
        np.add.at(ref, (codes[:, a], codes[:, b]), 1)
        np.testing.assert_array_equal(t, ref)


def test_rdc_detects_nonlinear_dependence_and_not_noise():
    rng = np.random.default_rng(0)
    n = 2000
    x = rng.normal(size=n)
    X = np.column_stack([x, x ** 2 + 0.1 * rng.normal(size=n), np.sin(3 * x),
                         rng.normal(size=n), rng.normal(size=n)])
    R = S.rdc_matrix(X, [0] * 5, seed=0)
    assert R[0, 1] > 0.8 and R[0, 2] > 0.8          # x², sin x: not linearly correlated
    assert abs(np.corrcoef(x, x ** 2)[0, 1]) < 0.2
    assert R[3, 4] < 0.15 and R[0, 3] < 0.15
    np.testing.assert_allclose(R, R.T)
    assert np.all((R >= 0) & (R <= 1))


def test_rdc_of_discrete_pair_is_the_maximal_correlation():
    """Indicator features span every function of a discrete column, so the RDC is the largest
    non-trivial singular value of D_a^{-1/2} P_ab D_b^{-1/2} (Rényi's maximal correlation)."""
    rng = np.random.default_rng(3)
    n = 3000
    a = _codes(rng, n, 3)
    b = np.where(rng.random(n) < 0.5, (a * 2) % 4, _codes(rng, n, 4)).astype(np.int32)
    R = S.rdc_matrix(np.column_stack([a, b]).astype(float), [3, 4], seed=0)
    P = np.zeros((3, 4))
    np.add.at(P, (a, b), 1.0 / n)
    pa, pb = P.sum(1), P.sum(0)
    M = (P - np.outer(pa, pb)) / np.sqrt(np.outer(pa, pb))
    assert R[0, 1] == pytest.approx(np.linalg.svd(M, compute_uv=False)[0], rel=1e-9)


def test_rdc_of_a_constant_column_is_zero():
    rng = np.random.default_rng(0)
    X = np.column_stack([np.ones(100), rng.normal(size=100), np.zeros(100)])
    R = S.rdc_matrix(X, [0, 0, 2], seed=1)
    assert R[0, 1] == 0.0 and R[1, 2] == 0.0


def test_dependency_matrix_mixes_tests_and_groups_follow():
    rng = np.random.default_rng(5)
    n = 3000
    a = _codes(rng, n, 3)
    b = ((a + (rng.random(n) < 0.2)) % 3).astype(np.int32)       # depends on a
    c = _codes(rng, n, 2)                                         # independent
    y = a + rng.normal(0, 0.3, n)                                 # continuous, depends on a
    X = np.column_stack([a, b, c, y]).astype(float)
    codes = np.column_stack([a, b, c, np.zeros(n, np.int32)])
    dep, strength = S.dependency_matrix(X, codes, [3, 3, 2, 0], seed=0)
    assert dep[0, 1] and dep[0, 3] and not dep[0, 2] and not dep[2, 3]
    assert strength[0, 1] > 0.99
    groups = S.independent_groups(dep)
    assert [g.tolist() for g in groups] == [[0, 1, 3], [2]]
    glued = S.independent_groups(dep, glue=[2, 3])
    assert [g.tolist() for g in glued] == [[0, 1, 2, 3]]
    with pytest.raises(ValueError, match="discrete"):
        S.dependency_matrix(X, codes, [3, 3, 2, 0], method="gtest")


def test_kmeans_separates_clusters_and_is_deterministic():
    rng = np.random.default_rng(2)
    n = 400
    truth = rng.integers(0, 2, n)
    y = np.where(truth == 1, 10.0, -10.0) + rng.normal(size=n)
    a = np.where(rng.random(n) < 0.9, truth, 1 - truth).astype(np.int32)
    X = np.column_stack([a, y])
    codes = np.column_stack([a, np.zeros(n, np.int32)])
    lab = S.kmeans(X, codes, [2, 0], 2, seed=7)
    agree = max(np.mean(lab == truth), np.mean(lab != truth))
    assert agree == 1.0
    np.testing.assert_array_equal(lab, S.kmeans(X, codes, [2, 0], 2, seed=7))


def test_em_recovers_a_naive_bayes_mixture():
    rng = np.random.default_rng(4)
    n = 3000
    z = rng.integers(0, 2, n)
    cols = [np.where(rng.random(n) < 0.85, z, 1 - z) for _ in range(6)]
    codes = np.column_stack(cols).astype(np.int32)
    lab = S.em_naive_bayes(codes.astype(float), codes, [2] * 6, 2, seed=0)
    agree = max(np.mean(lab == z), np.mean(lab != z))
    assert agree > 0.95


def test_cluster_rows_on_identical_rows_gives_none():
    X = np.ones((50, 2))
    codes = np.ones((50, 2), np.int32)
    for method in ("kmeans", "em"):
        assert S.cluster_rows(X, codes, [2, 2], 2, method=method, seed=0) is None
    with pytest.raises(ValueError, match="clustering"):
        S.cluster_rows(X, codes, [2, 2], 2, method="dbscan")


def test_cluster_rows_partitions_the_rows():
    rng = np.random.default_rng(9)
    X = rng.normal(size=(300, 3))
    parts = S.cluster_rows(X, np.zeros((300, 3), np.int32), [0, 0, 0], 3, seed=1)
    allrows = np.sort(np.concatenate(parts))
    np.testing.assert_array_equal(allrows, np.arange(300))
    assert [p.size for p in parts] == sorted((p.size for p in parts), reverse=True)


def test_as_generator_accepts_ints_and_generators():
    g = np.random.default_rng(3)
    assert S.as_generator(g) is g
    assert S.as_generator(3).random() == np.random.default_rng(3).random()


@pytest.mark.parametrize("method", ["kmeans", "em"])
def test_clustering_fitted_on_a_sample_assigns_every_row(method):
    rng = np.random.default_rng(6)
    n = 5000
    z = rng.integers(0, 2, n)
    codes = np.column_stack([np.where(rng.random(n) < 0.9, z, 1 - z) for _ in range(5)])
    y = 6.0 * z + rng.normal(size=n)
    X = np.column_stack([codes, y]).astype(float)
    C = np.column_stack([codes, np.zeros(n)]).astype(np.int32)
    parts = S.cluster_rows(X, C, [2] * 5 + [0], 2, method=method, seed=0, sample=500)
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(n))
    lab = np.zeros(n, int)
    lab[parts[1]] = 1
    assert max(np.mean(lab == z), np.mean(lab != z)) > 0.99


@pytest.mark.xdist_group(name="numba-kernels")
@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(5, 300), st.integers(2, 4),
       st.sampled_from(["kmeans", "em"]))
def test_a_fitted_cluster_model_assigns_rows_as_numpy_does(seed, n, k, method):
    """ClusterModel.assign (numba) against the obvious numpy: nearest centre of the one-hot
    (x 1/√2) and z-scored features, or the largest log posterior; the first on ties (a label
    that differs only where the two best scores tie to 1e-9)."""
    rng = np.random.default_rng(seed)
    cards = np.array([2, 3, 4, 0])
    codes = np.column_stack([rng.integers(0, c, n) for c in cards[:3]] + [np.zeros(n, int)])
    X = codes.astype(float)
    X[:, 3] = rng.normal(size=n) + codes[:, 0]
    model, _ = fit_clusters(X, codes, cards, k, method=method, seed=seed)
    got = model.assign(X, codes)
    if method == "kmeans":
        F, FF, M, cnt, zmean, zsd = model.arrays
        Z = (X[:, 3:] - zmean) / zsd
        score = -np.stack([sum(0.5 * (1 - 2 * F[c, j, codes[:, j]] + FF[c, j]) for j in range(3))
                           + ((Z - M[c]) ** 2).sum(axis=1) for c in range(k)], axis=1)
        score[:, cnt == 0] = -np.inf
    else:
        logw, logt, mu, var = model.arrays
        score = np.stack([logw[c] + sum(logt[c, j, codes[:, j]] for j in range(3))
                          - 0.5 * ((X[:, 3] - mu[c, 0]) ** 2 / var[c, 0] + np.log(var[c, 0])
                                   + np.log(2 * np.pi)) for c in range(k)], axis=1)
    want = np.argmax(score, axis=1)
    best = score[np.arange(n), want]
    off = got != want
    np.testing.assert_allclose(score[np.flatnonzero(off), got[off]], best[off], rtol=1e-9,
                               atol=1e-9)
    assert got.min() >= 0 and got.max() < k
