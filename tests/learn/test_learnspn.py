"""LearnSPN (spmn.learn_spn) and parameter learning (fit_weights) on data of known structure."""
from __future__ import annotations

import numpy as np
import pytest

from spmn import (
    Categorical,
    Circuit,
    DataError,
    Gaussian,
    Histogram,
    Product,
    Schema,
    SchemaError,
    SpmnError,
    Sum,
    Variable,
    kernels,
)
from spmn.learn import fit_weights, learn_spn, sufficient_statistics
from spmn.learn.learnspn import LearnOptions


def chain_data(n, seed, d=6, k=3, noise=0.2):
    """A Markov chain x0 -> x1 -> ... (copy with prob 1 - noise) and its exact log-likelihood."""
    rng = np.random.default_rng(seed)
    X = np.zeros((n, d))
    X[:, 0] = rng.integers(0, k, n)
    for j in range(1, d):
        keep = rng.random(n) >= noise
        X[:, j] = np.where(keep, X[:, j - 1], rng.integers(0, k, n))
    same = X[:, 1:] == X[:, :-1]
    ll = -np.log(k) + np.where(same, np.log(1 - noise + noise / k), np.log(noise / k)).sum(1)
    return X, ll


def schema_d(d=6, k=3):
    return Schema([Variable.discrete(f"x{j}", k) for j in range(d)])


@pytest.fixture(scope="module")
def chain():
    Xtr, _ = chain_data(6000, 0)
    Xte, ll = chain_data(2000, 1)
    return Xtr, Xte, ll


def test_learn_spn_is_valid_and_close_to_the_truth(chain):
    Xtr, Xte, ll_true = chain
    c = learn_spn(Xtr, schema_d(), seed=0)
    assert isinstance(c, Circuit)
    c.validate()
    ll = c.log_likelihood(Xte).mean()
    indep = sum(np.log(np.bincount(Xtr[:, j].astype(int), minlength=3)[Xte[:, j].astype(int)]
                       / len(Xtr)) for j in range(6)).mean()
    assert ll > indep + 1.0                  # captures the dependencies
    assert ll > ll_true.mean() - 0.15        # and is near the true model
    assert ll <= ll_true.mean() + 0.05
    s = c.summary()
    assert s.nodes.get("sum", 0) >= 1 and s.n_nodes == len(c.nodes)


@pytest.mark.parametrize("hyper", [dict(clustering="em"), dict(independence="rdc"),
                                   dict(independence="gtest", p_value=1e-6, n_clusters=3)])
def test_hyper_parameters_give_valid_models(chain, hyper):
    Xtr, Xte, ll_true = chain
    c = learn_spn(Xtr, schema_d(), seed=1, **hyper)
    assert c.log_likelihood(Xte).mean() > ll_true.mean() - 0.3
    if hyper.get("n_clusters") == 3:
        assert any(len(nd.children) == 3 for nd in c.nodes if isinstance(nd, Sum))


def test_same_seed_same_circuit_and_seed_types(chain):
    Xtr = chain[0][:2000]
    a = learn_spn(Xtr, schema_d(), seed=5, clustering="em")
    b = learn_spn(Xtr, schema_d(), seed=np.random.default_rng(5), clustering="em")
    assert [type(n).__name__ for n in a.nodes] == [type(n).__name__ for n in b.nodes]
    for x, y in zip(a.nodes, b.nodes):
        if isinstance(x, Sum):
            np.testing.assert_array_equal(x.weights, y.weights)
        elif x.is_leaf:
            assert x.params() == y.params()


def test_small_data_is_fully_factorized_with_laplace_leaves():
    X, _ = chain_data(50, 3, d=3, k=3)
    c = learn_spn(X, schema_d(3), min_instances_slice=100, alpha=2.0)
    assert isinstance(c.root, Product) and len(c.root.children) == 3
    cnt = np.bincount(X[:, 0].astype(int), minlength=3)
    np.testing.assert_allclose(c.root.children[0].p, (cnt + 2.0) / (50 + 6.0))


def test_independent_variables_become_a_product():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 2, (3000, 4)).astype(float)
    c = learn_spn(X, ["discrete"] * 4, seed=0)
    assert isinstance(c.root, Product) and len(c.root.children) == 4


def test_continuous_and_mixed_data_with_both_leaf_types():
    rng = np.random.default_rng(2)
    n = 4000
    z = rng.integers(0, 2, n)
    X = {"a": z + 0.0, "y": np.where(z == 1, 3.0, -3.0) + rng.normal(size=n),
         "w": rng.normal(size=n) * (1 + z)}
    for leaf, cls in (("gaussian", Gaussian), ("histogram", Histogram)):
        c = learn_spn(X, {"a": "discrete", "y": "continuous", "w": "continuous"}, seed=0,
                      leaf=leaf)
        assert any(isinstance(nd, cls) for nd in c.nodes)
        test = {"a": np.array([0.0, 1.0]), "y": np.array([-3.0, 3.0]), "w": np.zeros(2)}
        swapped = {"a": np.array([0.0, 1.0]), "y": np.array([3.0, -3.0]), "w": np.zeros(2)}
        assert np.all(c.log_likelihood(test) > c.log_likelihood(swapped) + 5)
        assert np.all(np.isfinite(c.log_likelihood(test)))


def test_histogram_leaves_cover_the_whole_column_range():
    rng = np.random.default_rng(1)
    n = 2000
    z = rng.integers(0, 2, n)
    X = np.column_stack([z, rng.normal(size=n) + 4 * z])
    c = learn_spn(X, [Variable.discrete("z", 2), Variable.continuous("y")], seed=0)
    edge = np.array([[0.0, X[:, 1].min()], [1.0, X[:, 1].max()], [0.0, X[:, 1].max()]])
    assert np.all(np.isfinite(c.log_likelihood(edge)))


def test_schema_inference_from_arrays_dicts_and_dataframes():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 3, 500).astype(float)
    y = rng.normal(size=500)
    c = learn_spn(np.column_stack([a, y]), seed=0)
    assert c.schema.names == ("x0", "x1")
    assert c.schema["x0"].k == 3 and not c.schema["x1"].is_discrete
    c2 = learn_spn({"a": a, "y": y}, {"a": 4}, seed=0)
    assert c2.schema["a"].k == 4
    pd = pytest.importorskip("pandas")
    c3 = learn_spn(pd.DataFrame({"a": a.astype(int), "y": y}), seed=0)
    assert c3.schema.names == ("a", "y") and c3.schema["a"].is_discrete


def test_bad_input_names_the_variable():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2, 100).astype(float)
    with pytest.raises(DataError, match="'b'.*constant"):
        learn_spn({"a": a, "b": np.ones(100)})
    c = learn_spn({"a": a, "b": np.ones(100)}, allow_constant=True)
    assert c.schema.names == ("a", "b")
    with pytest.raises(DataError, match="'s'.*text"):
        learn_spn({"a": a, "s": np.array(["u", "v"] * 50)})
    bad = np.column_stack([a, a]).astype(object)
    bad[3, 1] = "zz"
    with pytest.raises(DataError, match="'x1'"):
        learn_spn(bad)
    nan = np.column_stack([a, a])
    nan[7, 0] = np.nan
    with pytest.raises(DataError, match="'x0' is NaN in row 7"):
        learn_spn(nan)
    with pytest.raises(DataError, match="'a'.*value 5"):
        learn_spn({"a": np.r_[a, 5.0]}, {"a": 2})
    with pytest.raises(TypeError, match="unknown hyper"):
        learn_spn({"a": a}, thresold=0.2)
    with pytest.raises(ValueError, match="clustering"):
        learn_spn({"a": a}, clustering="dbscan")
    with pytest.raises(SchemaError, match="learn_spmn"):
        learn_spn({"a": a, "d": a}, Schema([Variable.discrete("a", 2), Variable.decision("d", 2)],
                                           [["d"], ["a"]]))
    assert issubclass(DataError, SpmnError)


def test_progress_bar_and_summary(capsys, chain):
    pytest.importorskip("tqdm")
    learn_spn(chain[0][:1000], schema_d(), seed=0, progress=True)
    err = capsys.readouterr().err
    assert "learn_spn" in err and "circuit:" in err and "node type" in err


def test_learn_options_validation():
    with pytest.raises(ValueError):
        LearnOptions(min_instances_slice=0)
    with pytest.raises(ValueError):
        LearnOptions(n_clusters=1)
    opts, rest = LearnOptions.split({"threshold": 0.2, "other": 1})
    assert opts.threshold == 0.2 and rest == {"other": 1}


# ---------------------------------------------------------------------------- fit_weights
def _perturb(c, seed, leaves=True):
    rng = np.random.default_rng(seed)
    for nd in c.nodes:
        if isinstance(nd, Sum):
            nd.weights = rng.dirichlet(np.ones(len(nd.weights)))
        elif isinstance(nd, Categorical) and leaves:
            nd.p = rng.dirichlet(np.ones(len(nd.p)))
    c.refresh()


@pytest.mark.parametrize("method", ["counts", "em"])
def test_fit_weights_restores_a_perturbed_model(chain, method):
    """EM recovers from scrambled weights and leaves; one hard pass from scrambled weights
    (the leaves still route each row to its cluster)."""
    Xtr, Xte, _ = chain
    c = learn_spn(Xtr, schema_d(), seed=0, clustering="em")
    before = c.log_likelihood(Xte).mean()
    _perturb(c, 1, leaves=method == "em")
    assert c.log_likelihood(Xte).mean() < before - 0.2
    out = fit_weights(c, Xtr, method)
    assert out is c
    c.validate()
    assert c.log_likelihood(Xte).mean() > before - 0.05


def test_em_does_not_decrease_the_training_likelihood(chain):
    Xtr = chain[0][:3000]
    c = learn_spn(Xtr, schema_d(), seed=0)
    _perturb(c, 2)
    lls = [c.log_likelihood(Xtr).mean()]
    for _ in range(4):
        fit_weights(c, Xtr, "em", max_iter=1, alpha=0.0)
        lls.append(c.log_likelihood(Xtr).mean())
    assert np.all(np.diff(lls) > -1e-9)


def test_counts_on_a_tiny_mixture_by_hand():
    """Hard assignment sends x=0 rows to component 0 (p=0.9 on 0) and x=1 rows to component 1."""
    schema = Schema([Variable.discrete("x", 2)])
    c = Circuit(Sum([Categorical("x", [0.9, 0.1]), Categorical("x", [0.2, 0.8])], [0.5, 0.5]),
                schema)
    X = np.array([[0.0]] * 3 + [[1.0]] * 7)
    fit_weights(c, X, "counts", alpha=0.0)
    np.testing.assert_allclose(c.root.weights, [0.3, 0.7])
    np.testing.assert_allclose(c.root.children[0].p, [1.0, 0.0])   # zeros stay zeros next time
    fit_weights(c, X, "counts", alpha=1.0)
    np.testing.assert_allclose(c.root.children[0].p, [1.0, 0.0])


def test_fit_weights_handles_missing_values_and_gaussians():
    rng = np.random.default_rng(0)
    schema = Schema([Variable.discrete("z", 2), Variable.continuous("y")])
    c = Circuit(Sum([Product([Categorical("z", [0.5, 0.5]), Gaussian("y", -1.0, 1.0)]),
                     Product([Categorical("z", [0.5, 0.5]), Gaussian("y", 1.0, 1.0)])],
                    [0.5, 0.5]), schema)
    n = 4000
    z = rng.integers(0, 2, n)
    X = np.column_stack([z, np.where(z == 1, 5.0, -5.0) + rng.normal(size=n)])
    X[::7, 1] = np.nan
    fit_weights(c, X, "em", alpha=0.0)
    g = sorted((nd for nd in c.nodes if isinstance(nd, Gaussian)), key=lambda g: g.mean)
    assert g[0].mean == pytest.approx(-5, abs=0.1) and g[1].mean == pytest.approx(5, abs=0.1)
    assert g[0].std == pytest.approx(1, abs=0.1)
    with pytest.raises(ValueError, match="method"):
        fit_weights(c, X, "sgd")


def test_own_statistics_match_the_backends(chain):
    Xtr = chain[0][:500].copy()
    c = learn_spn(chain[0], schema_d(), seed=0, leaf="gaussian")
    flat = c.compile()
    edge, leaf, ll, bad = sufficient_statistics(flat, Xtr)
    assert bad == 0
    assert ll == pytest.approx(float(c.log_likelihood(Xtr, backend="reference").sum()), rel=1e-10)
    for name in {"reference", kernels.available()[0]}:  # the oracle and the default backend
        be = kernels.get(name)
        if not hasattr(be, "expected_counts"):
            continue
        e2, l2 = be.expected_counts(flat, Xtr)
        np.testing.assert_allclose(edge, e2, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(leaf, l2, rtol=1e-9, atol=1e-9)
