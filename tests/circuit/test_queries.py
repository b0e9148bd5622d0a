"""Exactness of every query against brute force, on every backend."""
import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from strategies import (
    brute_force_meu,
    n_policies,
    random_selective_spn,
    random_spmn,
    random_spn,
    seeds,
)

from spmn import (
    Categorical,
    Circuit,
    DataError,
    Gaussian,
    Histogram,
    Max,
    Product,
    Schema,
    SchemaError,
    Sum,
    Utility,
    Variable,
)

SETTINGS = dict(max_examples=25, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def discrete_spn(seed, n_vars=None):
    rng = np.random.default_rng(seed)
    n = n_vars or int(rng.integers(1, 5))
    variables = [Variable.discrete(f"V{i}", int(rng.integers(2, 4))) for i in range(n)]
    return Circuit(random_spn(rng, variables, depth=int(rng.integers(1, 5))), variables), rng


def complete_assignments(schema):
    return np.array(list(itertools.product(*[range(v.k) for v in schema])), dtype=float)


@settings(**SETTINGS)
@given(seeds)
def test_probabilities_of_all_assignments_sum_to_one(backend, seed):
    c, _ = discrete_spn(seed)
    X = complete_assignments(c.schema)
    ll = c.log_likelihood(X, backend=backend)
    assert np.isclose(np.exp(ll).sum(), 1.0, rtol=1e-12, atol=0)
    np.testing.assert_allclose(ll, c.log_likelihood(X, backend="reference"), rtol=1e-12)


@settings(**SETTINGS)
@given(seeds)
def test_nan_marginalizes_a_variable(backend, seed):
    c, rng = discrete_spn(seed)
    X = complete_assignments(c.schema)
    j = int(rng.integers(len(c.schema)))
    Xm = X[X[:, j] == 0].copy()
    Xm[:, j] = np.nan
    total = np.zeros(len(Xm))
    for v in range(c.schema[j].k):
        Xv = Xm.copy()
        Xv[:, j] = v
        total += np.exp(c.log_likelihood(Xv, backend=backend))
    np.testing.assert_allclose(np.exp(c.log_likelihood(Xm, backend=backend)), total, rtol=1e-12)
    assert c.log_likelihood(np.full((1, len(c.schema)), np.nan), backend=backend)[0] == \
        pytest.approx(0.0, abs=1e-12)


@settings(**SETTINGS)
@given(seeds)
def test_mpe_equals_brute_force_on_selective_circuits(backend, seed):
    rng = np.random.default_rng(seed)
    variables = [Variable.discrete(f"V{i}", int(rng.integers(2, 4))) for i in range(int(rng.integers(1, 5)))]
    c = Circuit(random_selective_spn(rng, variables, depth=4), variables)
    X = complete_assignments(c.schema)
    ll = c.log_likelihood(X, backend="reference")
    filled, logp = c.mpe(np.full((1, len(c.schema)), np.nan), return_log_prob=True, backend=backend)
    assert logp[0] == pytest.approx(ll.max(), rel=1e-12, abs=1e-12)
    assert c.log_likelihood(filled, backend="reference")[0] == pytest.approx(ll.max(), rel=1e-12, abs=1e-12)
    j = int(rng.integers(len(c.schema)))
    E = np.full((1, len(c.schema)), np.nan)
    E[0, j] = 1
    filled, logp = c.mpe(E, return_log_prob=True, backend=backend)
    assert filled[0, j] == 1
    assert logp[0] == pytest.approx(ll[X[:, j] == 1].max(), rel=1e-12, abs=1e-12)


@settings(**SETTINGS)
@given(seeds)
def test_mpe_on_general_circuits_is_the_max_product_bound(backend, seed):
    """With latent (non-deterministic) sums max-product is a lower bound of the true maximum,
    attained by the completion it returns."""
    c, _ = discrete_spn(seed)
    ll = c.log_likelihood(complete_assignments(c.schema), backend="reference")
    filled, logp = c.mpe(np.full((1, len(c.schema)), np.nan), return_log_prob=True, backend=backend)
    assert logp[0] <= ll.max() + 1e-12
    assert c.log_likelihood(filled, backend="reference")[0] >= logp[0] - 1e-12
    ref = c.mpe(np.full((1, len(c.schema)), np.nan), return_log_prob=True, backend="reference")
    np.testing.assert_array_equal(filled, ref[0])


@settings(**SETTINGS)
@given(seeds)
def test_meu_equals_brute_force_over_policies(backend, seed):
    rng = np.random.default_rng(seed)
    two = bool(rng.integers(2))
    c = random_spmn(rng, n_before=int(rng.integers(0, 3)), n_mid=int(rng.integers(0, 2)),
                    n_after=int(rng.integers(1, 3)), two_decisions=two)
    if n_policies(c) > 5000:
        c = random_spmn(rng, n_before=1, n_mid=0, n_after=1, two_decisions=two)
    exact = brute_force_meu(c)
    assert c.meu(backend=backend) == pytest.approx(exact, rel=1e-12, abs=1e-12)
    # the policy's first decision is optimal: fixing it keeps the MEU
    d = c.decisions[0]
    E = np.full((1, len(c.schema)), np.nan)
    seen = [v for v in c.schema if c.schema.precedes(v.name, d) and v.role == "chance"]
    for vals in itertools.product(*(range(v.k) for v in seen)):  # first possible observation
        for v, x in zip(seen, vals):
            E[0, c.schema.index(v.name)] = x
        if c.log_likelihood(E, backend="reference")[0] > -np.inf:
            break
    choice = c.policy(E, backend=backend)[0]
    assert choice >= 0
    E[0, c.schema.index(d)] = choice
    assert c.meu(E, backend=backend)[0] == pytest.approx(c.meu(np.where(
        np.arange(len(c.schema)) == c.schema.index(d), np.nan, E), backend=backend)[0], rel=1e-12)


def test_sampling_matches_probabilities_and_keeps_evidence(backend):
    c, _ = discrete_spn(7, n_vars=3)
    X = complete_assignments(c.schema)
    p = np.exp(c.log_likelihood(X))
    S = c.sample(40000, seed=1, backend=backend)
    assert S.shape == (40000, 3) and not np.isnan(S).any()
    codes = np.ravel_multi_index(S.astype(int).T, [v.k for v in c.schema])
    freq = np.bincount(codes, minlength=len(p)) / len(S)
    assert np.abs(freq - p).max() < 0.015
    np.testing.assert_array_equal(S, c.sample(40000, seed=1, backend=backend))
    E = np.full((5, 3), np.nan)
    E[:, 0] = 1
    S = c.sample(evidence=E, seed=3, backend=backend)
    assert (S[:, 0] == 1).all() and not np.isnan(S).any()


def test_sampling_is_identical_across_backends(backend):
    rng = np.random.default_rng(5)
    variables = [Variable.discrete("A", 3), Variable.continuous("B"), Variable.continuous("C")]
    c = Circuit(random_spn(rng, variables, depth=4), variables)
    ref = c.sample(2000, seed=11, backend="reference")
    np.testing.assert_allclose(c.sample(2000, seed=11, backend=backend), ref, rtol=1e-12)


def test_continuous_leaves_and_utility_expectations(backend):
    s = Schema([Variable.continuous("C"), Variable.decision("D", 2), Variable.utility("U")],
               partial_order=[["C"], ["D"], ["U"]])
    # histogram utility: E = Σ_j d_j w_j (b_j + b_j+1)/2 = 0.25*1*0.5 + 0.75*... (bin widths matter)
    hu = Utility("U", breaks=[0, 1, 3], densities=[0.25, 0.375])
    assert hu.expectation() == pytest.approx(0.25 * 0.5 + 0.75 * 2.0)
    root = Product([Gaussian("C", 1.0, 2.0), Max("D", [hu, Utility("U", values=[1, 4], probs=[0.5, 0.5])])])
    c = Circuit(root, s)
    assert c.meu(backend=backend) == pytest.approx(2.5)
    assert c.policy(backend=backend) == 1
    x = np.array([[1.0, np.nan, np.nan], [3.0, 0, 2.0], [3.0, 0, 5.0]])
    ll = c.log_likelihood(x, backend=backend)
    g = -0.5 * np.log(2 * np.pi * 4.0)
    np.testing.assert_allclose(ll[:2], [g, g - 0.5 + np.log(0.375)], rtol=1e-12)
    assert ll[2] == -np.inf
    np.testing.assert_allclose(c.meu(x[:2], backend=backend), [2.5, 2.0], rtol=1e-12)
    h = Circuit(Histogram("C", [0, 1, 2], [0.2, 0.8]), [Variable.continuous("C")])
    np.testing.assert_allclose(h.log_likelihood(np.array([[0.5], [2.0], [2.5], [-1]]), backend=backend),
                               [np.log(0.2), np.log(0.8), -np.inf, -np.inf])
    assert h.mpe(np.array([np.nan]), backend=backend)[0] == 1.5


def test_deep_circuits_do_not_underflow(backend):
    variables = [Variable.discrete(f"V{i}", 2) for i in range(1500)]
    root = Product([Categorical(v.name, [0.01, 0.99]) for v in variables])
    for i in range(300):  # a chain of single-child sums and products: depth 600
        root = Sum([Product([root])], [1.0])
    c = Circuit(root, variables)
    X = np.zeros((3, 1500))
    ll = c.log_likelihood(X, backend=backend)
    np.testing.assert_allclose(ll, 1500 * np.log(0.01), rtol=1e-12)
    assert np.isfinite(ll).all()


def test_query_errors_name_what_is_wrong(backend):
    c, _ = discrete_spn(3, n_vars=2)
    with pytest.raises(DataError, match="has 3 columns; the schema has 2"):
        c.log_likelihood(np.zeros((1, 3)), backend=backend)
    with pytest.raises(DataError, match="'V0' is NaN in row 0"):
        c.log_likelihood(np.array([[np.nan, 0]]), allow_missing=False, backend=backend)
    with pytest.raises(DataError, match="'V1' has value 7.0"):
        c.mpe(np.array([[0, 7]]), backend=backend)
    with pytest.raises(SchemaError, match="no decision variables"):
        c.policy(backend=backend)


# the reference sampler's posterior of a sum below an impossible node computes -inf - -inf
# (the node is never reached, its NaN never read)
@pytest.mark.filterwarnings("ignore:invalid value encountered in subtract:RuntimeWarning")
@settings(**SETTINGS)
@given(seeds)
def test_cached_query_plans_give_the_protocol_methods_bits(backend, seed):
    """The queries run a backend's cached plan on evidence validated once; it must give the
    bits of the backend's protocol method (which checks the evidence itself) at every batch
    size, and be built once per circuit and query."""
    from spmn import kernels

    rng = np.random.default_rng(seed)
    c = random_spmn(rng, n_before=int(rng.integers(0, 3)), n_mid=0, n_after=int(rng.integers(1, 3)))
    flat, be = c.compile(), kernels.get(backend)
    for rows in (1, 2, 17, 300):
        X = np.where(rng.random((rows, len(c.schema))) < 0.4, np.nan,
                     np.floor(rng.random((rows, len(c.schema))) * np.maximum(flat.var_card, 1)))
        X[:, flat.var_card == 0] = np.nan
        got = (c.log_likelihood(X, backend=backend), c.meu(X, backend=backend),
               c.policy(X, backend=backend), c.mpe(X, backend=backend, return_log_prob=True))
        d = c.schema.index(c.decisions[0])
        dec = be.policy(flat, X)[:, d]
        want = (be.log_likelihood(flat, X), be.meu(flat, X),
                np.where(np.isnan(dec), -1, dec).astype(np.int64), be.mpe(flat, X))
        for g, w in zip(got[:3], want[:3]):
            np.testing.assert_array_equal(g, w)
        np.testing.assert_array_equal(got[3][0], want[3][0])
        np.testing.assert_array_equal(got[3][1], want[3][1])
        Xs = np.ascontiguousarray(X[np.isfinite(got[0])])  # possible evidence: a sample exists
        draws = np.random.default_rng(seed)
        u = draws.random((Xs.shape[0], flat.n_nodes))
        z = draws.standard_normal((Xs.shape[0], flat.n_draws))
        np.testing.assert_array_equal(be.plan(flat, "sample")(Xs, None, u, z),
                                      be.sample(flat, Xs, u, z))
    assert be.plan(flat, "meu") is be.plan(flat, "meu") or backend == "reference"
    with pytest.raises(ValueError, match="no plan"):
        be.plan(flat, "counts")
