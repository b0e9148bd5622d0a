"""The compiled kernels: Cython equals Numba bit for bit, each equals the reference to 1e-12.

Every pass (log-likelihood, MEU, policy, MPE, sampling, node values, expected counts) on random
valid circuits (hypothesis), deep (1,000 layers) and wide (10,000 children) ones; chunking and
thread counts that change nothing; bad input that raises before any compiled code runs.
Rows where a max node's choice is a near tie are compared between the compiled backends only
(rounding may break such a tie either way; see kernel_strategies.near_tie_rows).
"""
from __future__ import annotations

import dataclasses

import kernel_strategies as ks
import numpy as np
import pytest
from conftest import REQUIRE_COMPILED
from hypothesis import HealthCheck, given, settings
from strategies import seeds

from spmn import DataError, kernels
from spmn.kernels import reference

pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
COMPILED = [b for b in ("cython", "numba") if b in kernels.available()]
HYP = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_compiled_backends_are_built():
    missing = {"cython", "numba"} - set(COMPILED)
    if missing and REQUIRE_COMPILED:
        pytest.fail(f"backends {missing} not built but SPMN_REQUIRE_CYTHON=1")
    if not COMPILED:
        pytest.skip("no compiled backend built")
    assert kernels.get(None).__name__.endswith(COMPILED[0])


def run_all(mod, flat, X, values, u, z, **kw):
    """Every pass of backend module ``mod``, as a dict of arrays."""
    nodes = np.arange(flat.n_nodes)
    filled, logp = mod.mpe(flat, X, **kw)
    L, U = mod.node_values(flat, X, values, nodes, **kw)
    edges, stats = mod.expected_counts(flat, X, values, **kw)
    return {"ll": mod.log_likelihood(flat, X, **kw), "meu": mod.meu(flat, X, values, **kw),
            "policy": mod.policy(flat, X, values, **kw), "mpe": filled, "mpe_logp": logp,
            "sample": mod.sample(flat, X, u, z, values, **kw), "L": L, "U": U, "edges": edges,
            "stats": stats}


def assert_same_bits(a: dict, b: dict) -> None:
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def assert_matches_reference(flat, X, values, u, z, got: dict) -> None:
    """``got`` (one compiled backend) against the reference on the tie-free rows."""
    ok = ~ks.near_tie_rows(flat, X, values)
    scale = ks.utility_scale(flat, X)
    Xo = X[ok]
    ref = run_all(reference, flat, Xo, values, u[ok], z[ok])
    for key in ("ll", "mpe_logp", "L"):
        np.testing.assert_allclose(got[key][ok], ref[key], rtol=1e-12, atol=1e-12, err_msg=key)
    for key in ("meu", "U"):
        np.testing.assert_allclose(got[key][ok], ref[key], rtol=1e-12, atol=1e-12 * scale,
                                   err_msg=key)
    np.testing.assert_array_equal(got["policy"][ok], ref["policy"])
    np.testing.assert_array_equal(got["mpe"][ok], ref["mpe"])
    np.testing.assert_allclose(got["sample"][ok], ref["sample"], rtol=1e-12, atol=1e-12 * scale)
    mod = kernels.get(COMPILED[0])
    edges, stats = mod.expected_counts(flat, Xo, values)
    np.testing.assert_allclose(edges, ref["edges"], rtol=1e-10, atol=1e-10 * max(1, ok.sum()))
    np.testing.assert_allclose(stats, ref["stats"], rtol=1e-10,
                               atol=1e-10 * max(1, ok.sum()) * scale)


def check_circuit(flat, X, values=None, seed=0, **kw):
    """Twins bitwise equal, and equal to the reference; returns the first backend's results."""
    rng = np.random.default_rng(seed)
    u = rng.random((X.shape[0], flat.n_nodes))
    z = rng.standard_normal((X.shape[0], flat.n_nodes))
    results = [run_all(kernels.get(b), flat, X, values, u, z, **kw) for b in COMPILED]
    for other in results[1:]:
        assert_same_bits(results[0], other)
    assert_matches_reference(flat, X, values, u, z, results[0])
    return results[0]


needs_compiled = pytest.mark.skipif(not COMPILED, reason="no compiled backend built")


# ---------------------------------------------------------------------------- arithmetic
@needs_compiled
def test_exp_log_twins_agree_and_are_accurate():
    from numba import njit

    from spmn.kernels import _ckernels
    from spmn.kernels._numba_math import fexp, flog

    @njit
    def both(x, e, lg):
        for i in range(x.shape[0]):
            e[i] = fexp(x[i])
            lg[i] = flog(x[i])

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-760, 720, 20_000), -np.exp(rng.uniform(-30, 6, 5000)),
                        np.exp(rng.uniform(-745, 709, 20_000)),
                        [0.0, -0.0, -np.inf, 5e-324, 1e-310, 1.0, 2.0, 0.5, -745.2, 709.7]])
    e1, l1, e2, l2 = (np.empty_like(x) for _ in range(4))
    _ckernels.math_check(x, e1, l1)
    both(x, e2, l2)
    np.testing.assert_array_equal(e1, e2)
    np.testing.assert_array_equal(l1[x >= 0], l2[x >= 0])
    with np.errstate(over="ignore", divide="ignore"):
        ref_e, ref_l = np.exp(x), np.log(np.where(x > 0, x, 1.0))
    normal = (ref_e > 2.3e-308) & np.isfinite(ref_e)
    assert np.max(np.abs(e1[normal] / ref_e[normal] - 1)) < 4.5e-16
    inf = np.isinf(ref_e)
    assert np.all(e1[inf] == ref_e[inf])
    assert np.all(np.abs(e1[~normal & ~inf] - ref_e[~normal & ~inf]) < 1e-307)
    pos = x > 0
    err = np.abs(l1[pos] - ref_l[pos]) / np.maximum(np.abs(ref_l[pos]), 1e-300)
    assert err.max() < 4.5e-16
    assert e1[x == -np.inf][0] == 0.0 and l1[x == 0.0][0] == -np.inf


# ---------------------------------------------------------------------------- random circuits
@needs_compiled
@HYP
@given(seed=seeds)
def test_random_circuits(seed):
    rng = np.random.default_rng(seed)
    flat = ks.random_circuit(rng).compile()
    X = ks.random_evidence(rng, flat, int(rng.integers(1, 40)))
    check_circuit(flat, X, seed=seed, chunk=int(rng.choice([1, 3, 8, 64])))


@needs_compiled
@HYP
@given(seed=seeds)
def test_sum_groups_equal_the_plain_sums(seed):
    """Sums sharing one child list are evaluated together (one exp per child and row); with
    zero and 1e-300 weights some rows take the exact fallback. Every pass still equals the
    reference and the other backend bit for bit."""
    from spmn.kernels._common import prepare

    rng = np.random.default_rng(seed)
    flat = ks.grouped_circuit(rng).compile()
    assert np.any(prepare(flat).circ[10] >= 0)  # the circuit has sum groups
    X = ks.random_evidence(rng, flat, int(rng.integers(1, 40)))
    check_circuit(flat, X, seed=seed, chunk=int(rng.choice([1, 3, 8, 64])))


@needs_compiled
@settings(max_examples=15, deadline=None)
@given(seed=seeds)
def test_bellman_pass_with_interface_values(seed):
    rng = np.random.default_rng(seed)
    flat = ks.bellman_template(rng, int(rng.integers(2, 5))).compile()
    values = rng.normal(0, 10, flat.n_interface)
    X = ks.random_evidence(rng, flat, 12, missing=0.6)
    X[:, 1:] = np.nan  # the state only: decide, then read the interface values
    got = check_circuit(flat, X, values, seed=seed)
    # Bellman update V(s) = max_a E[R + values[S'] | s, a], read at the root
    ref_L, ref_U = reference.node_values(flat, X, values, [flat.root])
    np.testing.assert_allclose(got["meu"], ref_U[:, 0], rtol=1e-12, atol=1e-10)


@needs_compiled
@pytest.mark.slow
def test_deep_circuit_does_not_underflow():
    rng = np.random.default_rng(1)
    flat = ks.deep_chain(rng, 1000).compile()
    X = ks.random_evidence(rng, flat, 10, missing=0.1)
    got = check_circuit(flat, X)
    assert np.all(np.isfinite(got["ll"])) and got["ll"].min() < -745  # e^L underflows


@needs_compiled
@pytest.mark.slow
def test_wide_sum_of_ten_thousand_children():
    rng = np.random.default_rng(2)
    flat = ks.wide_sum(rng, 10_000).compile()
    X = ks.random_evidence(rng, flat, 12, missing=0.3)
    got = check_circuit(flat, X)
    root_edges = got["edges"][flat.child_ptr[flat.root]:]
    assert np.isclose(root_edges.sum(), np.isfinite(got["ll"]).sum(), rtol=1e-12)


# ---------------------------------------------------------------------------- invariance
@needs_compiled
def test_threads_and_chunks_change_no_bit():
    rng = np.random.default_rng(3)
    flat = ks.bellman_template(rng, 3).compile()
    X = ks.random_evidence(rng, flat, 300)
    u = rng.random((300, flat.n_nodes))
    z = rng.standard_normal((300, flat.n_nodes))
    for b in COMPILED:
        mod = kernels.get(b)
        base = run_all(mod, flat, X, None, u, z, chunk=16)
        for threads in (1, 3):
            assert_same_bits(base, run_all(mod, flat, X, None, u, z, chunk=16, threads=threads))
        assert_same_bits(base, run_all(mod, flat, X, None, u, z, chunk=16, progress=True))
        for chunk in (1, 7, 256):  # counts are summed chunk by chunk: equal to rounding only
            other = run_all(mod, flat, X, None, u, z, chunk=chunk, threads=2)
            for key in ("edges", "stats"):
                np.testing.assert_allclose(other.pop(key), base[key], rtol=1e-13, atol=1e-12)
            assert_same_bits(other, {k: v for k, v in base.items() if k in other})


@needs_compiled
def test_avx2_build_equals_baseline_build():
    from spmn.kernels import _ckernels
    from spmn.kernels._common import Kernels

    if not _ckernels.cpu_has_avx2():
        pytest.skip("CPU without AVX2")
    try:
        from spmn.kernels import _ckernels_avx2
    except ImportError:
        if REQUIRE_COMPILED:
            pytest.fail("the AVX2 build is missing on an AVX2 CPU with SPMN_REQUIRE_CYTHON=1")
        pytest.skip("AVX2 build not present")
    rng = np.random.default_rng(4)
    for _ in range(5):
        flat = ks.random_circuit(rng).compile()
        X = ks.random_evidence(rng, flat, 50)
        u, z = rng.random((50, flat.n_nodes)), rng.standard_normal((50, flat.n_nodes))
        assert_same_bits(run_all(Kernels(_ckernels, "sse2"), flat, X, None, u, z),
                         run_all(Kernels(_ckernels_avx2, "avx2"), flat, X, None, u, z))


# ---------------------------------------------------------------------------- expected counts
def _total_loglik(flat, X, **changes) -> float:
    return float(np.sum(reference.log_likelihood(dataclasses.replace(flat, **changes), X)))


@pytest.mark.parametrize("backend_name", ["reference", *COMPILED])
def test_expected_counts_are_parameter_derivatives(backend_name):
    """count(edge j of a sum) = w_j d/dw_j Σ_r log p(x_r), and the expected count of value j
    at a categorical leaf = p_j d/dp_j Σ_r log p(x_r) (p is linear in each parameter);
    checked by central differences."""
    rng = np.random.default_rng(5)
    flat = ks.mixed_spn(rng, 3, 3).compile()
    X = ks.random_evidence(rng, flat, 40, missing=0.3)
    X = X[np.isfinite(reference.log_likelihood(flat, X))]
    edges, stats = kernels.get(backend_name).expected_counts(flat, X)
    h = 1e-6
    parent = np.repeat(np.arange(flat.n_nodes), np.diff(flat.child_ptr))
    checked = 0
    for e in np.flatnonzero(flat.kind[parent] == 0):
        w = np.exp(flat.log_weight[e])
        if w < 1e-3:
            continue
        plus, minus = flat.log_weight.copy(), flat.log_weight.copy()
        plus[e], minus[e] = np.log(w + h), np.log(w - h)
        d = _total_loglik(flat, X, log_weight=plus) - _total_loglik(flat, X, log_weight=minus)
        np.testing.assert_allclose(edges[e], w * d / (2 * h), rtol=1e-5, atol=1e-6)
        checked += 1
    for i in np.flatnonzero(flat.kind == 3):
        for j in range(flat.param_ptr[i], flat.param_ptr[i + 1]):
            p = np.exp(flat.params[j])
            if p < 1e-3:
                continue
            plus, minus = flat.params.copy(), flat.params.copy()
            plus[j], minus[j] = np.log(p + h), np.log(p - h)
            d = _total_loglik(flat, X, params=plus) - _total_loglik(flat, X, params=minus)
            np.testing.assert_allclose(stats[j], p * d / (2 * h), rtol=1e-5, atol=1e-6)
            checked += 1
    assert checked > 3


def test_expected_counts_of_a_gaussian_mixture_are_responsibilities():
    from spmn import Circuit, Gaussian, Schema, Sum, Variable

    c = Circuit(Sum([Gaussian("x", -1.0, 1.0), Gaussian("x", 2.0, 0.5)], [0.3, 0.7]),
                Schema([Variable.continuous("x")]))
    flat = c.compile()
    X = np.array([[-1.5], [0.4], [2.2], [np.nan]])
    dens = np.stack([0.3 * np.exp(-0.5 * (X[:3, 0] + 1) ** 2) / np.sqrt(2 * np.pi),
                     0.7 * np.exp(-0.5 * ((X[:3, 0] - 2) / 0.5) ** 2) / (0.5 * np.sqrt(2 * np.pi))])
    resp = np.c_[dens / dens.sum(axis=0), [0.3, 0.7]]
    for b in ["reference", *COMPILED]:
        edges, stats = kernels.get(b).expected_counts(flat, X)
        np.testing.assert_allclose(edges, resp.sum(axis=1), rtol=1e-12)
        g = stats[flat.param_ptr[0]:flat.param_ptr[1]]
        np.testing.assert_allclose(g, [resp[0].sum(), resp[0, :3] @ X[:3, 0] - 0.3,
                                       resp[0, :3] @ X[:3, 0] ** 2 + 0.3 * 2.0], rtol=1e-12)


# ---------------------------------------------------------------------------- bad input
@pytest.fixture(params=COMPILED or ["reference"])
def compiled(request):
    if request.param == "reference":
        pytest.skip("no compiled backend built")
    return kernels.get(request.param)


def _small(seed=7):
    rng = np.random.default_rng(seed)
    flat = ks.bellman_template(rng).compile()
    return flat, ks.random_evidence(rng, flat, 20)


def test_fortran_and_float32_evidence_are_converted(compiled):
    flat, X = _small()
    base = compiled.meu(flat, X)
    np.testing.assert_array_equal(compiled.meu(flat, np.asfortranarray(X)), base)
    X32 = X.astype(np.float32)
    np.testing.assert_array_equal(compiled.meu(flat, X32), compiled.meu(flat, X32.astype(float)))
    ro = X.copy()
    ro.setflags(write=False)
    np.testing.assert_array_equal(compiled.meu(flat, ro[::1]), base)
    assert compiled.log_likelihood(flat, X[:0]).shape == (0,)


@pytest.mark.parametrize("bad", ["columns", "code", "fraction", "negative", "ndim"])
def test_bad_evidence_raises_before_the_kernels(compiled, bad):
    flat, X = _small()
    X = X.copy()
    if bad == "columns":
        X = X[:, :-1]
    elif bad == "ndim":
        X = X[0]
    else:
        col = int(np.flatnonzero(flat.var_card > 0)[0])
        X[3, col] = {"code": flat.var_card[col], "fraction": 0.5, "negative": -1}[bad]
    for call in (lambda: compiled.log_likelihood(flat, X), lambda: compiled.mpe(flat, X),
                 lambda: compiled.expected_counts(flat, X)):
        with pytest.raises(DataError):
            call()


def test_bad_arguments_raise(compiled):
    flat, X = _small()
    with pytest.raises(DataError):
        compiled.meu(flat, X, np.zeros(flat.n_interface + 1))
    with pytest.raises(DataError):
        compiled.sample(flat, X, np.zeros((len(X), 2)), np.zeros((len(X), flat.n_nodes)))
    with pytest.raises(DataError):
        compiled.node_values(flat, X, None, [flat.n_nodes])
    leaf = int(np.flatnonzero(flat.kind == 3)[0])
    ptr = flat.param_ptr.copy()
    ptr[leaf + 1:] -= 1  # drop one probability of a categorical leaf
    broken = dataclasses.replace(flat, param_ptr=ptr,
                                 params=np.delete(flat.params, flat.param_ptr[leaf]))
    with pytest.raises(DataError):
        compiled.log_likelihood(broken, X)


# ---------------------------------------------------------------------------- queries
def test_queries_on_every_backend(backend):
    rng = np.random.default_rng(8)
    from strategies import random_spmn

    circuit = random_spmn(rng)
    flat = circuit.compile()
    X = ks.random_evidence(rng, flat, 30)
    X = X[~ks.near_tie_rows(flat, X)]
    np.testing.assert_allclose(circuit.log_likelihood(X, backend=backend),
                               circuit.log_likelihood(X, backend="reference"), rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_allclose(circuit.meu(X, backend=backend),
                               circuit.meu(X, backend="reference"), rtol=1e-12, atol=1e-10)
    np.testing.assert_array_equal(circuit.policy(X, backend=backend),
                                  circuit.policy(X, backend="reference"))
    np.testing.assert_array_equal(circuit.mpe(X, backend=backend),
                                  circuit.mpe(X, backend="reference"))
    assert circuit.sample(5, seed=1, backend=backend).shape == (5, flat.n_vars)


@needs_compiled
def test_progress_bar_is_shown_when_asked(capsys):
    pytest.importorskip("tqdm")
    flat, X = _small()
    kernels.get(COMPILED[0]).log_likelihood(flat, X, progress=True)
    assert "spmn[" in capsys.readouterr().err
    kernels.get(COMPILED[0]).log_likelihood(flat, X)
    assert "spmn[" not in capsys.readouterr().err


@pytest.mark.parametrize("backend", ["reference", *COMPILED])
def test_exact_ties_go_to_the_first_child_in_every_backend(backend):
    """Options whose expected utilities are equal in exact arithmetic but reached through
    different mixtures (so np.exp and the kernels' exp round them differently) are a tie: every
    backend takes the first, and the MEU is the tied value to 1e-12."""
    from spmn import Categorical, Circuit, Max, Product, Schema, Sum, Utility, Variable

    schema = Schema([Variable.discrete("X", 2), Variable.decision("D", 3), Variable.utility("U")],
                    partial_order=[["X"], ["D"], ["U"]])
    thirds = Sum([Utility.constant("U", 3.0), Utility.constant("U", 0.0)], [1 / 3, 2 / 3])
    halves = Sum([Utility.constant("U", 1.7), Utility.constant("U", 0.3)], [0.5, 0.5])
    tenths = Sum([Utility.constant("U", 10.0), Utility.constant("U", 0.0)], [0.1, 0.9])
    worse = Utility.constant("U", 0.999)

    def branch(x, kids):
        return Product([Categorical("X", np.eye(2)[x]), Max("D", kids)])

    # computed: thirds 0.9999999999999997, halves 1.0, tenths 1.0000000000000002 (a strict
    # first maximum would pick option 2 in both branches)
    c = Circuit(Sum([branch(0, [worse, thirds, tenths]), branch(1, [thirds, halves, tenths])],
                    [0.4, 0.6]), schema)
    X = np.array([[0, np.nan, np.nan], [1, np.nan, np.nan], [np.nan, np.nan, np.nan]])
    pol = c.policy(X, backend=backend)
    np.testing.assert_array_equal(pol[:2], [1, 0])
    np.testing.assert_array_equal(pol[2:], [-1])  # X unobserved: D is not decided (-1)
    np.testing.assert_allclose(c.meu(X, backend=backend), [1.0, 1.0, 1.0], rtol=1e-12)
