"""The Numba backend's 16-row register blocks (spmn/kernels/_numba_block.py) and the blocked passes.

Each block against its obvious numpy twin, bit for bit, on rows with zeros, NaN, infinities and
negative values; then random circuits over batches that mix full blocks of 16 rows with
remainders and chunks of whole blocks (the MPE pass is blocked only then), Numba equal to Cython
bit for bit and to the reference.
"""
from __future__ import annotations

import kernel_strategies as ks
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from strategies import seeds
from test_kernels import COMPILED, check_circuit

from spmn import kernels

numba = pytest.importorskip("numba")
pytestmark = [pytest.mark.xdist_group(name="numba-kernels"),
              pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")]

from spmn.kernels._numba_block import (
    PERMD,
    blk_add,
    blk_catleaf8,
    blk_catprod,
    blk_catprod8,
    blk_fsum,
    blk_fsum_u,
    blk_prod,
    blk_summax,
)


@numba.njit
def _fold_blocks(cidx, lw, w, A, U, R, off):
    """Nodes 6..10 of A (and U) from children ``cidx``, rows off..off+16."""
    blk_prod(cidx, 0, cidx.shape[0], A, R, off, 6 * R + off)
    blk_add(cidx, 0, cidx.shape[0], A, R, off, 7 * R + off)
    blk_summax(cidx, lw, 0, cidx.shape[0], A, R, off, 8 * R + off)
    blk_fsum(cidx, w, 0, cidx.shape[0], A, R, off, 9 * R + off)
    blk_fsum_u(cidx, w, 0, cidx.shape[0], A, U, R, off, 10 * R + off)


@numba.njit
def _catprod_block(cidx, var, tptr, tab, code, R, off, V, o):
    blk_catprod(cidx, 0, cidx.shape[0], var, tptr, tab, code, R, off, V, o)


@pytest.mark.parametrize("seed", range(4))
def test_blocks_equal_their_numpy_twins_bit_for_bit(seed):
    rng = np.random.default_rng(seed)
    R, n, off = 48, 11, 16 * int(rng.integers(0, 3))
    A = rng.uniform(-2.0, 3.0, n * R)
    A[rng.random(n * R) < 0.15] = 0.0
    special = rng.choice(6 * R, 8, replace=False)  # only children's rows hold specials
    A[special] = rng.choice([np.nan, np.inf, -np.inf, 1e-310], 8)
    U = rng.normal(size=n * R)
    cidx = rng.integers(0, 6, int(rng.integers(0, 7))).astype(np.int64)
    w = rng.uniform(0.0, 1.0, cidx.size)
    w[rng.random(cidx.size) < 0.2] = 0.0
    with np.errstate(divide="ignore"):
        lw = np.log(w)
    got_A, got_U = A.copy(), U.copy()
    _fold_blocks(cidx, lw, w, got_A, got_U, R, off)
    rows = slice(off, off + 16)
    ch = [A[c * R:(c + 1) * R][rows] for c in cidx]
    uc = [U[c * R:(c + 1) * R][rows] for c in cidx]
    prod, add, mx, s, num = (np.ones(16), np.zeros(16), np.full(16, -np.inf), np.zeros(16),
                             np.zeros(16))
    with np.errstate(all="ignore"):
        for e, c in enumerate(ch):
            prod = prod * c
            add = add + c
            a = lw[e] + c
            mx = np.where(a > mx, a, mx)
            t = w[e] * c
            s = s + t
            num = num + t * uc[e]
        q = np.where(s > 0.0, num / s, 0.0)
    for node, want in ((6, prod), (7, add), (8, mx), (9, s), (10, s)):
        np.testing.assert_array_equal(got_A[node * R + off:node * R + off + 16], want,
                                      err_msg=str(node))
    np.testing.assert_array_equal(got_U[10 * R + off:10 * R + off + 16], q)
    untouched = np.ones(n * R, bool)
    for node in range(6, 11):
        untouched[node * R + off:node * R + off + 16] = False
    np.testing.assert_array_equal(got_A[untouched], A[untouched])  # nothing else written


def test_categorical_block_reads_each_leaf_table_at_the_codes():
    rng = np.random.default_rng(7)
    R, nv = 32, 3
    code = rng.integers(0, 4, nv * R).astype(np.int32)
    cidx = np.array([0, 1, 2, 3], np.int64)
    var = np.array([0, 1, 2, 0], np.int64)
    tptr = np.array([0, 5, 10, 15], np.int64)
    tab = rng.uniform(0.0, 1.0, 20)
    V = np.full(3 * R, -1.0)
    _catprod_block(cidx, var, tptr, tab, code, R, 16, V, R + 16)
    want = np.ones(16)
    for c in cidx:
        want = want * tab[tptr[c] + code[var[c] * R + 16:var[c] * R + 32]]
    np.testing.assert_array_equal(V[R + 16:R + 32], want)
    assert np.all(np.delete(V, np.arange(R + 16, R + 32)) == -1.0)


@numba.njit
def _catprod8_block(cidx, var, tptr8, tab8, code, R, off, V, o, t0, x0, o2):
    blk_catprod8(cidx, 0, cidx.shape[0], var, tptr8, tab8, code, R, off, V, o)
    blk_catleaf8(t0, tab8, code, x0, V, o2)


@pytest.mark.parametrize("seed", range(3))
def test_categorical_blocks_by_vpermd_read_the_8_double_tables(seed):
    """blk_catprod8 / blk_catleaf8 (vpermd on AVX2, else loads): every code 0..7 of tables of
    8 doubles per leaf, the products in edge order bit for bit as blk_catprod's."""
    rng = np.random.default_rng(seed)
    R, nv, k = 48, 3, int(rng.integers(1, 9))
    code = rng.integers(0, k, nv * R).astype(np.int32)
    code[:8] = np.arange(8) % k
    cidx = np.array([0, 1, 2, 3, 1], np.int64)
    var = np.array([0, 1, 2, 0], np.int64)
    tptr8 = np.array([0, 8, 16, 24], np.int64)
    tab8 = rng.uniform(0.0, 1.0, 40)
    tab8[rng.random(40) < 0.1] = 0.0
    V = np.full(4 * R, -1.0)
    _catprod8_block(cidx, var, tptr8, tab8, code, R, 16, V, R + 16, 16, 0, 3 * R)
    want = np.ones(16)
    for c in cidx:
        want = want * tab8[tptr8[c] + code[var[c] * R + 16:var[c] * R + 32]]
    np.testing.assert_array_equal(V[R + 16:R + 32], want)
    np.testing.assert_array_equal(V[3 * R:3 * R + 16], tab8[16 + code[:16]])
    V2 = np.full(4 * R, -1.0)  # the same products through blk_catprod's loads
    _catprod_block(cidx, var, tptr8, tab8, code, R, 16, V2, R + 16)
    np.testing.assert_array_equal(V[R + 16:R + 32], V2[R + 16:R + 32])
    keep = np.ones(4 * R, bool)
    keep[R + 16:R + 32] = keep[3 * R:3 * R + 16] = False
    assert np.all(V[keep] == -1.0)
    assert PERMD in (True, False)


@pytest.mark.parametrize("k", [7, 8, 12])
def test_circuits_with_many_categories_take_the_tables_that_fit(k):
    """Categorical leaves of up to 7 categories use the 8-double tables (the view's flag is
    1), larger ones the per-row loads (flag 0): both give Cython's bits and the reference's
    values."""
    from spmn import Categorical, Circuit, Product, Schema, Sum, Variable
    from spmn.kernels import _numba_entry as ne
    from spmn.kernels._prepare import prepare

    rng = np.random.default_rng(k)
    schema = Schema([Variable.discrete("A", k), Variable.discrete("B", 3)])
    leaves = [[Categorical("A", rng.dirichlet(np.ones(k))),
               Categorical("B", rng.dirichlet(np.ones(3)))] for _ in range(3)]
    root = Sum([Product(p) for p in leaves], rng.dirichlet(np.ones(3)))
    flat = Circuit(root, schema).compile()
    X = np.column_stack([rng.integers(0, k, 70), rng.integers(0, 3, 70)]).astype(float)
    X[rng.random(X.shape) < 0.2] = np.nan
    got = kernels.get("numba").log_likelihood(flat, X)
    assert ne._unpack(prepare(flat).views["numba"])[25][2] == (k <= 7)
    np.testing.assert_allclose(got, kernels.get("reference").log_likelihood(flat, X), rtol=1e-12,
                               atol=1e-12)
    if "cython" in COMPILED:
        np.testing.assert_array_equal(got, kernels.get("cython").log_likelihood(flat, X))


needs_both = pytest.mark.skipif(COMPILED != ["cython", "numba"], reason="needs both backends")


@needs_both
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=seeds)
def test_blocked_passes_over_blocks_and_remainders(seed):
    """Batches of 16-100 rows in chunks of 16, 32 or 64 (whole blocks, blocks and a remainder,
    a last chunk of a few rows), grouped sums included: every pass bitwise equal between the
    backends and equal to the reference."""
    rng = np.random.default_rng(seed)
    c = ks.grouped_circuit(rng) if rng.random() < 0.4 else ks.random_circuit(rng)
    flat = c.compile()
    X = ks.random_evidence(rng, flat, int(rng.integers(16, 101)))
    check_circuit(flat, X, seed=seed, chunk=int(rng.choice([16, 32, 64])))


@needs_both
def test_numba_view_is_built_once_and_read_only():
    rng = np.random.default_rng(3)
    flat = ks.random_circuit(rng).compile()
    X = ks.random_evidence(rng, flat, 40)
    mod = kernels.get("numba")
    first = mod.log_likelihood(flat, X)
    from spmn.kernels import _numba_entry as ne
    from spmn.kernels._prepare import prepare
    view = prepare(flat).views["numba"]
    assert len(view) == ne.PACK_LEN and all(not a.flags.writeable for a in view)
    tables = ne._unpack(view)  # the 29 tables, sliced out of the packed buffers
    assert len(tables) == 29 and all(not a.flags.writeable for a in tables)
    for a, b in zip(tables[:ne.CIRC_LEN], prepare(flat).circ):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype
    np.testing.assert_array_equal(mod.log_likelihood(flat, X), first)
    assert prepare(flat).views["numba"] is view
