"""The (L, U) pass without an exp or log per edge (csrc/_cfast.h, _cscaled.h and their Numba
twin spmn/kernels/_numba_fast.py): the linear fast path, its per-node bounds, and the exact
scaled (mantissa, exponent) pass that takes the rows the fast path cannot hold.

Checked here: the scaled arithmetic helpers (both backends, bit for bit, against numpy); the
bounds of spmn.kernels._common.fast_thresholds and the soundness of fast_checks (a node left
untested never breaks its bound, on random circuits); and batches mixing fast rows and rows far
below the smallest double, which must equal the reference whatever the chunking, on both
backends. The hypothesis comparisons of every pass on random circuits are in test_kernels.py.
"""
from __future__ import annotations

import kernel_strategies as ks
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from strategies import seeds

from spmn import (
    Categorical,
    Circuit,
    Max,
    Product,
    Schema,
    Sum,
    Utility,
    Variable,
    kernels,
)
from spmn.flat import K_MAX, K_PRODUCT, K_SUM
from spmn.kernels import reference
from spmn.kernels._common import FAST_LO, fast_checks, fast_thresholds, prepare

COMPILED = [b for b in ("cython", "numba") if b in kernels.available()]
needs_compiled = pytest.mark.skipif(not COMPILED, reason="no compiled backend built")
HYP = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------------- arithmetic
@needs_compiled
def test_scaled_helpers_twins_agree_and_are_accurate():
    from numba import njit

    from spmn.kernels._numba_fast import lin, to_mk, tolog

    @njit
    def numba_side(x, m, k, back, p):
        for i in range(x.shape[0]):
            m[i], k[i] = to_mk(x[i])
            back[i] = tolog(m[i], k[i])
            p[i] = lin(x[i])

    rng = np.random.default_rng(1)
    x = np.concatenate([rng.uniform(-800, 800, 20_000), -np.exp(rng.uniform(-40, 30, 5000)),
                        rng.uniform(-1e-8, 1e-8, 1000),
                        [0.0, -0.0, -np.inf, 1e-300, -1e15, -3e15, 700.0, -745.0]])
    got = [np.empty_like(x) for _ in range(8)]
    numba_side(x, *got[:4])
    if "cython" in COMPILED:
        from spmn.kernels import _ckernels
        _ckernels.scaled_check(x, *got[4:])
        for a, b in zip(got[:4], got[4:]):
            np.testing.assert_array_equal(a, b)
    m, k, back, p = got[:4]
    fin = np.isfinite(x)
    assert np.all((m[fin] >= 1.0) & (m[fin] < 2.0))
    assert np.all(k[fin] == np.round(k[fin]))
    assert m[x == -np.inf][0] == 0.0 and k[x == -np.inf][0] == -np.inf
    assert back[x == -np.inf][0] == -np.inf
    # m 2^k = exp(x): compare in log space (the value itself may be far outside doubles)
    mod = np.abs(x) < 700
    np.testing.assert_allclose(np.ldexp(m[mod], k[mod].astype(int)), np.exp(x[mod]), rtol=5e-16)
    ok = fin & (np.abs(x) < 1e14)
    # log(exp(x)) loses what exp's rounding loses (an absolute 1e-16 near 0), no more
    np.testing.assert_allclose(back[ok], x[ok], rtol=4.5e-16, atol=4.5e-16)
    # tolog itself: against numpy's log of m 2^k where that is a double, else against
    # log(m) + k log 2 in extended precision (|log p| > 690: no cancellation)
    mo, ko = m[ok], k[ok]
    small = np.abs(ko) < 1000
    ref = np.log(np.ldexp(mo, np.where(small, ko, 0).astype(int)))
    ld = np.log(mo.astype(np.longdouble)) + ko.astype(np.longdouble) * np.log(np.longdouble(2))
    ref = np.where(small, ref, ld.astype(float))
    np.testing.assert_allclose(back[ok], ref, rtol=4.5e-16, atol=1e-300)
    normal = fin & (x > -708) & (x < 709)
    np.testing.assert_allclose(p[normal], np.exp(x[normal]), rtol=5e-16)


# ---------------------------------------------------------------------------- bounds
def test_fast_thresholds_follow_products_sums_and_max_nodes():
    a = Variable.discrete("A", 2)
    d = Variable.decision("D", 2)
    leaves = [Categorical("A", [0.5, 0.5]) for _ in range(4)]
    prod = Product(leaves[:3])
    sm = Sum([prod, leaves[3]], [1e-10, 1.0 - 1e-10])
    top = Max("D", [sm, Product([Categorical("A", [0.3, 0.7])])])
    flat = Circuit(top, Schema([d, a], [["D"], ["A"]]), validate=False).compile()
    t = np.log2(fast_thresholds(flat.kind, flat.child_ptr, flat.child_idx, flat.log_weight))
    kind = flat.kind
    i_prod = int(np.flatnonzero((kind == K_PRODUCT) & (np.diff(flat.child_ptr) == 3))[0])
    i_sum = int(np.flatnonzero(kind == K_SUM)[0])
    i_max = int(np.flatnonzero(kind == K_MAX)[0])
    for c in flat.children(i_prod):
        assert t[c] == pytest.approx(FAST_LO / 3)
    # the child of the 1e-10 edge must stay >= 2^-1022 / 1e-10 after weighting
    assert t[i_prod] == pytest.approx(-1022 - np.log2(1e-10))
    assert t[i_sum] >= t[i_max] and t[i_max] == FAST_LO


@needs_compiled
@HYP
@given(seed=seeds)
def test_untested_nodes_never_break_their_bounds(seed):
    """fast_checks may skip a node only when no evidence can take its value out of bounds."""
    rng = np.random.default_rng(seed)
    circuit = ks.grouped_circuit(rng) if rng.random() < 0.5 else ks.random_circuit(rng)
    flat = circuit.compile()
    X = ks.random_evidence(rng, flat, 64)
    fthr = fast_thresholds(flat.kind, flat.child_ptr, flat.child_idx, flat.log_weight)
    skip = fast_checks(flat, fthr) == 0
    values = rng.normal(size=flat.n_interface) if flat.n_interface else None
    L, _ = reference.node_values(flat, X, values, np.arange(flat.n_nodes))
    p = np.exp(L[:, skip])
    inside = (p == 0) | ((p >= fthr[skip] * (1 - 1e-12)) & (p <= 2.0 ** 500))
    assert inside.all()


# ---------------------------------------------------------------------------- mixed batches
def _tiny_circuit(n: int = 60, utility: bool = False) -> Circuit:
    """Two products of n binary leaves; a 0 costs 1e-12 (or 1e-200) per variable, so rows
    with many zeros are far below the smallest double and leave the fast path."""
    variables = [Variable.discrete(f"X{i}", 2) for i in range(n)]
    if utility:
        variables.append(Variable.utility("U"))
    branches = []
    for eps, util in ((1e-12, [5.0, -1.0]), (1e-200, [2.0, 3.0])):
        kids = [Categorical(f"X{i}", [eps, 1.0 - eps]) for i in range(n)]
        if utility:
            kids.append(Utility("U", values=util, probs=[0.5, 0.5]))
        branches.append(Product(kids))
    return Circuit(Sum(branches, [0.3, 0.7]), Schema(variables), validate=False)


@needs_compiled
@pytest.mark.parametrize("utility", [False, True])
def test_rows_far_below_doubles_take_the_scaled_pass_exactly(utility):
    flat = _tiny_circuit(utility=utility).compile()
    rng = np.random.default_rng(3)
    rows = 300
    X = np.ones((rows, flat.n_vars))
    zeros = rng.integers(0, 61, rows)  # 0 .. 60 zeros per row: p from about 1 to 1e-720
    for r in range(rows):
        X[r, rng.permutation(60)[:zeros[r]]] = 0.0
    X[rng.random(X.shape) < 0.1] = np.nan
    if utility:
        X[:, -1] = np.nan
    ref_L = reference.log_likelihood(flat, X)
    assert ref_L.min() < -745 and ref_L.max() > -1  # both kinds of rows are there
    got = {}
    for b in COMPILED:
        mod = kernels.get(b)
        for chunk in (16, 48, 256):
            got[b, chunk] = (mod.log_likelihood(flat, X, chunk=chunk),
                             mod.meu(flat, X, chunk=chunk) if utility else None)
    base = next(iter(got.values()))
    for key, (L, U) in got.items():
        np.testing.assert_array_equal(L, base[0], err_msg=str(key))
        if utility:
            np.testing.assert_array_equal(U, base[1], err_msg=str(key))
    np.testing.assert_allclose(base[0], ref_L, rtol=1e-12, atol=1e-12)
    if utility:
        np.testing.assert_allclose(base[1], reference.meu(flat, X), rtol=1e-12, atol=1e-10)


@needs_compiled
def test_circuit_tables_mark_the_proven_nodes():
    """The products of many small leaves cannot be proven in bounds: they are tested."""
    flat = _tiny_circuit().compile()
    fchk = prepare(flat).circ[14]
    assert fchk.sum() > 0
    kind = flat.kind
    assert fchk[kind == K_PRODUCT].all()  # 1e-200^60 is far below 2^-1000


@needs_compiled
def test_fused_leaf_products_match_their_leaves():
    """A product of categorical leaves reads their tables itself and the leaves are skipped;
    asking for a leaf turns that off. Both ways give the same bits and the reference values."""
    rng = np.random.default_rng(5)
    variables = [Variable.discrete(f"X{i}", 3) for i in range(3)]
    prods = [Product([Categorical(f"X{i}", rng.dirichlet(np.ones(3))) for i in range(3)])
             for _ in range(4)]
    flat = Circuit(Sum(prods, rng.dirichlet(np.ones(4))), Schema(variables)).compile()
    fuse = prepare(flat).circ[17]
    assert (fuse == 1).sum() == 4 and (fuse == 2).sum() == 12
    leaf = int(np.flatnonzero(fuse == 2)[0])
    X = ks.random_evidence(rng, flat, 100, missing=0.3)
    ref_L, _ = reference.node_values(flat, X, None, np.array([flat.root, leaf]))
    outs = []
    for b in COMPILED:
        mod = kernels.get(b)
        outs.append(mod.log_likelihood(flat, X))
        L, _ = mod.node_values(flat, X, None, [flat.root, leaf])
        outs.append(L[:, 0])
        np.testing.assert_allclose(L, ref_L, rtol=1e-12, atol=1e-12)
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])


@pytest.mark.skipif("cython" not in COMPILED, reason="Cython backend not built")
def test_cython_tables_are_built_once_per_circuit():
    """The Cython kernels' per-circuit tables (weights as mantissa/exponent and probabilities,
    leaf tables) are built on the first call and reused, with the same bits as a fresh build."""
    from spmn.kernels.cython import raw

    flat = _tiny_circuit(n=8).compile()
    X = ks.random_evidence(np.random.default_rng(2), flat, 40)
    mod = kernels.get("cython")
    first = mod.log_likelihood(flat, X)
    prep = prepare(flat)
    view = prep.views["cython"]
    np.testing.assert_array_equal(mod.log_likelihood(flat, X), first)
    assert prep.views["cython"] is view
    out = np.empty((40, 1))
    raw.upward(prep.circ, X, np.zeros(0), np.array([flat.root]), out, np.empty((0, 1)), False,
               False, 16, 1)
    np.testing.assert_array_equal(out[:, 0], first)


@pytest.mark.skipif(COMPILED != ["cython", "numba"], reason="needs both backends")
@pytest.mark.parametrize("k, gauss", [(3, False), (7, False), (8, False), (5, True)])
def test_cython_loads_codes_without_values_where_nothing_reads_them(k, gauss):
    """Cython's chunk loader (csrc/_cload.pxi: 4-row blocks, the values transposed only when a
    node reads them) and its 8-double leaf tables (every leaf of <= 7 categories): both builds
    give Numba's bits at every batch size, remainders of 4 and 16 rows included."""
    from spmn import Gaussian
    from spmn.kernels import _ckernels

    rng = np.random.default_rng(k)
    names = ["A", "B", "C"]
    variables = [Variable.discrete("A", k), Variable.discrete("B", 3), Variable.discrete("C", 4)]
    if gauss:
        variables.append(Variable.continuous("G"))
    schema = Schema(variables)
    prods = []
    for _ in range(3):
        leaves = [Categorical(v, rng.dirichlet(np.ones(n))) for v, n in zip(names, (k, 3, 4))]
        if gauss:
            leaves.append(Gaussian("G", float(rng.normal()), 1.5))
        prods.append(Product(leaves))
    flat = Circuit(Sum(prods, rng.dirichlet(np.ones(3))), schema).compile()
    cy, nb = kernels.get("cython"), kernels.get("numba")
    for rows in (1, 3, 4, 5, 15, 16, 17, 37, 300):
        X = ks.random_evidence(np.random.default_rng(rows), flat, rows)
        want = nb.log_likelihood(flat, X)
        np.testing.assert_array_equal(cy.log_likelihood(flat, X), want)
        out = np.empty((rows, 1))
        _ckernels.upward(_ckernels.view(prepare(flat).circ), X, np.zeros(0),
                         np.array([flat.root]), out, np.empty((0, 1)), False, False, 64, 1)
        np.testing.assert_array_equal(out[:, 0], want)
