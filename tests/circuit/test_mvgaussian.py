"""MultivariateGaussian leaf: exact marginals and conditionals, validation, files, compiled
layout, quadratic utilities' exact expectations, and the passes of every backend."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import multivariate_normal as mvn

import spmn
from spmn import Categorical, Circuit, Gaussian, Product, Sum, ValidationError, Variable
from spmn.circuit.nodes import MultivariateGaussian
from spmn.circuit.quadratic import Quadratic, moments
from spmn.flat import K_MVGAUSSIAN
from spmn.gaussian import Conditioned, conditional, logpdf


def _gauss(d: int, seed: int):
    rng = np.random.default_rng(seed)
    G = rng.normal(size=(d, d))
    return rng.normal(size=d), G @ G.T + 0.3 * np.eye(d)


def _mixture_circuit(seed: int = 0):
    """Sum of two 3-D Gaussians over (a, b, c), times a categorical k and a Gaussian g."""
    schema = [Variable.continuous("a"), Variable.continuous("b"), Variable.discrete("k", 3),
              Variable.continuous("c"), Variable.continuous("g")]
    (m1, S1), (m2, S2) = _gauss(3, seed), _gauss(3, seed + 1)
    mix = Sum([MultivariateGaussian(["a", "b", "c"], m1, S1),
               MultivariateGaussian(["a", "b", "c"], m2 + 2.0, S2)], [0.3, 0.7])
    root = Product([mix, Categorical("k", [0.2, 0.5, 0.3]), Gaussian("g", -1.0, 0.5)])
    return Circuit(root, schema), (m1, S1, m2 + 2.0, S2)


# ---------------------------------------------------------------------------- Gaussian algebra
@settings(max_examples=40, deadline=None)
@given(d=st.integers(1, 4), seed=st.integers(0, 10_000), data=st.data())
def test_marginal_logpdf_and_conditionals_are_exact(d, seed, data):
    mean, cov = _gauss(d, seed)
    rows = 6
    rng = np.random.default_rng(seed + 1)
    X = rng.normal(size=(rows, d)) * 2
    mask = np.array(data.draw(st.lists(st.lists(st.booleans(), min_size=d, max_size=d),
                                       min_size=rows, max_size=rows)))
    X[mask] = np.nan
    cond = Conditioned(mean, cov, X)
    for r in range(rows):
        o, u = np.flatnonzero(~mask[r]), np.flatnonzero(mask[r])
        want = mvn(mean[o], cov[np.ix_(o, o)]).logpdf(X[r, o]) if o.size else 0.0
        assert cond.logpdf[r] == pytest.approx(want, abs=1e-10)
        if u.size and o.size:
            F, f, S = conditional(mean, cov, o, u)
            np.testing.assert_allclose(cond.mean[r, u], F @ X[r, o] + f, atol=1e-10)
            np.testing.assert_allclose(cond.cov[r][np.ix_(u, u)], S, atol=1e-10)
            assert cond.mode_logpdf[r] == pytest.approx(
                want + mvn(np.zeros(u.size), S).logpdf(np.zeros(u.size)), abs=1e-10)
        np.testing.assert_array_equal(cond.mean[r, o], X[r, o])
        assert np.all(cond.cov[r][o] == 0)
    np.testing.assert_allclose(logpdf(mean, cov, X), cond.logpdf)


def test_conditional_sampling_has_the_conditional_moments():
    mean, cov = _gauss(3, 7)
    n = 40_000
    X = np.full((n, 3), np.nan)
    X[:, 1] = 0.8
    z = np.random.default_rng(3).standard_normal((n, 3))
    draws = Conditioned(mean, cov, X).sample(z)
    F, f, S = conditional(mean, cov, [1], [0, 2])
    assert np.all(draws[:, 1] == 0.8)
    np.testing.assert_allclose(draws[:, [0, 2]].mean(axis=0), F @ [0.8] + f, atol=0.03)
    np.testing.assert_allclose(np.cov(draws[:, [0, 2]].T), S, rtol=0.05, atol=0.02)


# ---------------------------------------------------------------------------- circuits, files
def test_validation_names_the_problem():
    schema = [Variable.continuous("x"), Variable.continuous("y"), Variable.discrete("d", 2)]
    ok = MultivariateGaussian(["x", "y"], [0, 0], [[1.0, 0.5], [0.5, 2.0]])
    Circuit(ok, schema)
    cases = [
        (MultivariateGaussian(["x", "y"], [0, 0], [[1.0, 1.0], [1.0, 1.0]]), "singular"),
        (MultivariateGaussian(["x", "y"], [0, 0], [[1.0, 2.0], [2.0, 1.0]]),
         "not positive definite"),
        (MultivariateGaussian(["x", "y"], [0, 0], [[1.0, 0.0], [0.0, 0.0]]),
         "'y' has zero variance"),
        (MultivariateGaussian(["x", "y"], [0, 0], [[1.0, 0.1], [0.0, 1.0]]), "not symmetric"),
        (MultivariateGaussian(["x", "y"], [0, 0, 0], np.eye(2)), "mean has 3 entries"),
        (MultivariateGaussian(["x", "y"], [0, 0], np.eye(3)), "shape"),
        (MultivariateGaussian(["x", "d"], [0, 0], np.eye(2)), "continuous chance"),
        (MultivariateGaussian(["x", "z"], [0, 0], np.eye(2)), "unknown variable 'z'"),
        (MultivariateGaussian(["x", "x"], [0, 0], np.eye(2)), "repeat"),
        (MultivariateGaussian(["x", "y"], [np.nan, 0], np.eye(2)), "finite"),
    ]
    for leaf, msg in cases:
        with pytest.raises(ValidationError, match=msg):
            Circuit(leaf, schema)
    # scope covers every variable: a product may not hold y twice, a sum's children must agree
    with pytest.raises(ValidationError, match="product-decomposable"):
        Circuit(Product([ok, Gaussian("y", 0.0, 1.0)]), schema)
    with pytest.raises(ValidationError, match="sum-complete"):
        Circuit(Sum([ok, Gaussian("x", 0.0, 1.0)], [0.5, 0.5]), schema)


def test_save_load_summary_and_layout(tmp_path):
    c, _ = _mixture_circuit()
    back = spmn.load(spmn.save(c, tmp_path / "mv.json"))
    assert [type(n).__name__ for n in back.nodes] == [type(n).__name__ for n in c.nodes]
    for a, b in zip(c.nodes, back.nodes):
        if isinstance(a, MultivariateGaussian):
            assert a.vars == b.vars
            np.testing.assert_array_equal(a.cov, b.cov)
    assert back.summary().nodes["mvgaussian"] == 2
    assert "(a, b, c) ~ N(" in c.to_dot()
    flat = c.compile()
    mv = np.flatnonzero(flat.kind == K_MVGAUSSIAN)
    assert flat.n_draws == flat.n_nodes + 2 * 2
    p0, p1 = flat.leaf_params(mv[0]), flat.leaf_params(mv[1])
    assert p0[:5].tolist() == [3.0, 0.0, 0.0, 1.0, 3.0] and p1[1] == 2.0  # d, zoff, columns
    assert flat.var[mv[0]] == 0
    big = np.eye(20) + 0.1  # 400 numbers: stored in the npz
    names = [f"v{i}" for i in range(20)]
    leaf = MultivariateGaussian(names, np.arange(20.0), big)
    path = spmn.save(Circuit(leaf, [Variable.continuous(v) for v in names]), tmp_path / "big.json")
    assert path.with_suffix(".npz").exists()
    np.testing.assert_array_equal(spmn.load(path).root.cov, big)


# ---------------------------------------------------------------------------- quadratic utilities
def _brute_moments(c, params, e):
    """Posterior moments of (a, b, c, k, g) given evidence e on (a, b, c) by explicit formulas."""
    m1, S1, m2, S2 = params
    o = np.flatnonzero(~np.isnan(e[[0, 1, 3]]))
    u = np.setdiff1d(np.arange(3), o)
    xo = e[[0, 1, 3]][o]
    comps = []
    for w, m, S in ((0.3, m1, S1), (0.7, m2, S2)):
        lw = math.log(w) + (mvn(m[o], S[np.ix_(o, o)]).logpdf(xo) if o.size else 0.0)
        mean, cov = np.zeros(3), np.zeros((3, 3))
        mean[o] = xo
        if u.size:
            if o.size:
                F, f, Sc = conditional(m, S, o, u)
                mean[u], cov[np.ix_(u, u)] = F @ xo + f, Sc
            else:
                mean[u], cov[np.ix_(u, u)] = m[u], S[np.ix_(u, u)]
        comps.append((lw, mean, cov + np.outer(mean, mean)))
    lws = np.array([x[0] for x in comps])
    pi = np.exp(lws - lws.max())
    pi /= pi.sum()
    mean = sum(p * x[1] for p, x in zip(pi, comps))
    second = sum(p * x[2] for p, x in zip(pi, comps))
    return mean, second


def test_quadratic_expectation_is_exact_under_mixtures_and_products():
    c, params = _mixture_circuit(3)
    rng = np.random.default_rng(0)
    names = ["a", "b", "c", "k", "g"]
    M = rng.normal(size=(5, 5))
    q = Quadratic(names, M, m=rng.normal(size=5), c=0.7)
    E = np.full((4, 5), np.nan)
    E[0, 0] = 0.5
    E[1, [0, 3]] = [1.0, -2.0]
    E[2, [1, 2]] = [0.3, 2.0]  # k observed: its code is a constant
    got = q.expectation(c, E)
    for r in range(4):
        m3, s3 = _brute_moments(c, params, E[r])
        mk = E[r, 2] if not np.isnan(E[r, 2]) else 0.5 + 2 * 0.3
        sk = mk ** 2 if not np.isnan(E[r, 2]) else 0.5 + 4 * 0.3
        mean = np.array([m3[0], m3[1], m3[2], mk, -1.0])
        second = np.outer(mean, mean)
        second[:3, :3] = s3
        second[3, 3], second[4, 4] = sk, 1.0 + 0.25
        want = np.trace(q.M @ second) + q.m @ mean + q.c
        assert got[r] == pytest.approx(want, rel=1e-10, abs=1e-10)
    mo = moments(c, E[:1], ["b", "a"])
    np.testing.assert_allclose(mo.mean[0], _brute_moments(c, params, E[0])[0][[1, 0]], atol=1e-10)
    assert np.all(np.linalg.eigvalsh(mo.cov[0]) > 0)
    assert q.expectation(c) == pytest.approx(q.expectation(c, np.full(5, np.nan)))


def test_quadratic_forms_and_fit():
    rng = np.random.default_rng(1)
    q = Quadratic(["x", "y"], [[2.0, 0.5], [0.5, -1.0]], m=[1.0, 0.0], c=3.0)
    X = rng.normal(size=(50, 2))
    np.testing.assert_allclose(Quadratic.from_augmented(q.names, q.augmented())(X), q(X))
    np.testing.assert_allclose(Quadratic.fit(q.names, X, q(X)).M, q.M, atol=1e-10)
    both = q + Quadratic(["z"], [[1.0]])
    assert both.names == ("x", "y", "z")
    assert both(np.array([1.0, 2.0, 3.0])) == pytest.approx(q(np.array([1.0, 2.0])) + 9.0)
    assert (-q)(X[:1])[0] == pytest.approx(-q(X[:1])[0])
    with pytest.raises(spmn.DataError, match="coordinates"):
        q(np.zeros(3))
    with pytest.raises(spmn.DataError, match="cannot determine"):
        Quadratic.fit(["x", "y"], X[:3], q(X[:3]))
    c, _ = _mixture_circuit()
    with pytest.raises(spmn.DataError, match="unknown variable"):
        Quadratic(["zz"], [[1.0]]).expectation(c)
