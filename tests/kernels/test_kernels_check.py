"""The evidence check the compiled kernels run in their first pass over each chunk
(``csrc/_ccheck.h``, ``_numba_entry.rows_ok``, table ``Schema.check_table``): the decision of
``Schema.valid_values``, the error of ``Schema.validate_data``, and the queries' results on the
fused path (Cython and Numba bit for bit, within 1e-12 of the reference backend)."""
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import random_spmn, seeds

from spmn import DataError, Schema, Variable, kernels

SETTINGS = {"max_examples": 25, "deadline": None,
            "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]}
NUMBA = pytest.mark.xdist_group(name="numba-kernels")
#: Cell values that sit on every edge of the check: NaN, infinities, the range ends of a code,
#: fractions, -0.0, the largest doubles, 2^52 and 2^53 (every double above is a whole number).
EDGES = np.array([np.nan, np.inf, -np.inf, -1.0, -0.0, 0.0, 0.5, 1.0, 1.0 - 2**-53, 2.0, 2.5,
                  3.0, 4.0, 1e300, -1e300, 2.0**52, 2.0**52 + 1, 2.0**53, 2.0**31, -2.0**31,
                  np.finfo(float).max, -np.finfo(float).max, 5e-324])


def edge_schema(rng) -> Schema:
    variables = []
    for j in range(int(rng.integers(1, 7))):
        if rng.random() < 0.6:
            variables.append(Variable.discrete(f"v{j}", int(rng.choice([1, 2, 3, 5, 2**40]))))
        else:
            variables.append(Variable.continuous(f"v{j}"))
    return Schema(variables)


def edge_rows(rng, schema: Schema, rows: int, bad: float) -> np.ndarray:
    """Mostly valid rows (codes, reals, NaN) with a ``bad`` share of cells drawn from EDGES."""
    X = np.empty((rows, len(schema)))
    for j, v in enumerate(schema):
        X[:, j] = rng.integers(0, min(v.k, 9), rows) if v.is_discrete else rng.normal(0, 1e3, rows)
    X[rng.random(X.shape) < 0.2] = np.nan
    hit = rng.random(X.shape) < bad
    X[hit] = rng.choice(EDGES, int(hit.sum()))
    return X


def nan_options(schema: Schema, rng):
    names = [v.name for v in schema]
    return [True, False, [n for n in names if rng.random() < 0.5]]


def compiled_checks():
    """(name, check(X, chk) -> bool) of each built compiled backend."""
    out = []
    if "cython" in kernels.available():
        from spmn.kernels import _ckernels
        out.append(("cython", _ckernels.rows_check))
    from spmn.kernels import _numba_entry
    out.append(("numba", lambda X, chk: bool(_numba_entry.rows_ok(X, 0, X.shape[0], chk))))
    return out


@NUMBA
@settings(**SETTINGS)
@given(seeds, st.sampled_from([1, 3, 40]), st.sampled_from([0.0, 0.02, 0.3]))
def test_compiled_check_decides_as_valid_values(seed, rows, bad):
    """Both compiled twins of the check accept exactly the arrays Schema.valid_values accepts
    (every edge value, every NaN permission), and a rejected array is one validate_data
    rejects."""
    rng = np.random.default_rng(seed)
    schema = edge_schema(rng)
    X = edge_rows(rng, schema, rows, bad)
    for allow in nan_options(schema, rng):
        want = schema.valid_values(X, allow)
        assert schema._valid_vector(X, allow) == schema._valid_small(X, allow) == want
        chk = schema.check_table(allow)
        for name, check in compiled_checks():
            assert check(X, chk) == want, (name, allow)
        if not want:
            with pytest.raises(DataError):
                schema.validate_data(X, allow_nan=allow)


def bad_evidence(rng, c, rows):
    """Evidence with one wrong cell: a code out of range, a fraction, an infinity, or a NaN in
    a column that must be observed (returned with the allow_missing flag it needs)."""
    flat = c.compile()
    X = np.floor(rng.random((rows, len(c.schema))) * np.maximum(flat.var_card, 1))
    X[:, flat.var_card == 0] = rng.normal(0, 1, (rows, int((flat.var_card == 0).sum())))
    r, j = int(rng.integers(rows)), int(rng.integers(len(c.schema)))
    v = c.schema[j]
    choice = int(rng.integers(4))
    allow = True
    if choice == 0 and v.is_discrete:
        X[r, j] = v.k + int(rng.integers(0, 3))
    elif choice == 1 and v.is_discrete:
        X[r, j] = 0.5
    elif choice == 2:
        X[r, j] = rng.choice([np.inf, -np.inf])
    else:
        X[r, j] = np.nan
        allow = False
    return X, allow


def message(fn):
    with pytest.raises(DataError) as err:
        fn()
    return str(err.value)


@NUMBA
@settings(**SETTINGS)
@given(seeds, st.sampled_from([1, 2, 17, 300, 1000]))
def test_fused_check_raises_the_errors_of_validate_data(seed, rows):
    """A query on evidence with a wrong cell raises, on every backend, the message that
    Schema.validate_data gives for it (variable, row, what was expected): the compiled
    kernels flag the chunk, then the per-variable checks name the cell."""
    rng = np.random.default_rng(seed)
    c = random_spmn(rng, n_before=int(rng.integers(0, 3)), n_mid=0,
                    n_after=int(rng.integers(1, 3)))
    X, allow = bad_evidence(rng, c, rows)
    try:
        c.schema.validate_data(X, allow_nan=allow)
    except DataError as exc:
        want = str(exc)
    else:  # the wrong cell was a NaN where NaN is allowed, or an infinity in a real column
        want = None
    for b in kernels.available():
        if allow is False:
            calls = [lambda b=b: c.log_likelihood(X, allow_missing=False, backend=b)]
        else:
            calls = [lambda b=b: c.log_likelihood(X, backend=b), lambda b=b: c.meu(X, backend=b),
                     lambda b=b: c.policy(X, backend=b), lambda b=b: c.mpe(X, backend=b)]
        for call in calls:
            if want is None:
                call()
            else:
                assert message(call) == want, b
    if want is not None and allow:  # one row as a 1-D array; the values' error comes second
        assert message(lambda: c.meu(X[0] if rows == 1 else X, interface_values=[1.0],
                                     backend=kernels.available()[0])) == want


def test_errors_come_in_the_order_of_validate_data():
    """Shape and column errors before value errors; evidence errors before an unknown backend
    or bad interface values (as when validate_data ran first)."""
    rng = np.random.default_rng(3)
    c = random_spmn(rng, n_before=1, n_mid=0, n_after=1)
    n = len(c.schema)
    for b in kernels.available():
        with pytest.raises(DataError, match=f"has {n + 1} columns; the schema has {n}"):
            c.meu(np.zeros((2, n + 1)), backend=b)
        with pytest.raises(DataError, match="must be 2-D"):
            c.meu(np.zeros((2, n, 1)), backend=b)
        with pytest.raises(DataError, match="must be numeric"):
            c.meu(np.array([["a"] * n]), backend=b)
        X = np.zeros((3, n))
        X[2, 0] = 99.0
        want = message(lambda X=X: c.schema.validate_data(X))
        assert message(lambda X=X, b=b: c.meu(X, interface_values=[1.0, 2.0], backend=b)) == want
        assert "interface_values" in message(lambda b=b: c.meu(np.zeros((3, n)),
                                                               interface_values=[1.0, 2.0],
                                                               backend=b))
    with pytest.raises(DataError, match="'" + c.schema[0].name + "' has value 99.0"):
        c.log_likelihood(X, backend="no-such-backend")


@NUMBA
@settings(**SETTINGS)
@given(seeds)
def test_fused_path_bits_across_backends(seed):
    """The queries on the fused path (no copy, the check in the kernels, the view's own work
    arrays for small calls): Cython and Numba bit for bit, within 1e-12 of the reference, at
    batch sizes that take every path (one row, the shared work arrays up to 16 rows, chunks on
    one thread, several threads) and in an order that reuses the work arrays at other sizes."""
    rng = np.random.default_rng(seed)
    c = random_spmn(rng, n_before=int(rng.integers(0, 3)), n_mid=0,
                    n_after=int(rng.integers(1, 3)))
    flat = c.compile()
    compiled = [b for b in ("cython", "numba") if b in kernels.available()]
    for rows in (1, 16, 3, 300, 1, 2):
        X = np.where(rng.random((rows, len(c.schema))) < 0.4, np.nan,
                     np.floor(rng.random((rows, len(c.schema))) * np.maximum(flat.var_card, 1)))
        X[:, flat.var_card == 0] = np.nan
        got = {b: (c.log_likelihood(X, backend=b), c.meu(X, backend=b), c.policy(X, backend=b),
                   *c.mpe(X, backend=b, return_log_prob=True)) for b in compiled}
        ref = (c.log_likelihood(X, backend="reference"), c.meu(X, backend="reference"),
               c.policy(X, backend="reference"), *c.mpe(X, backend="reference",
                                                        return_log_prob=True))
        for b in compiled:
            for g, w in zip(got[b], got[compiled[0]]):
                np.testing.assert_array_equal(g, w)
            for g, w in zip(got[b], ref):
                np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)  # log p near 0
        row = X[0]
        for b in compiled:  # one row as a 1-D array or a list: scalars, the same bits
            assert c.meu(row, backend=b) == got[b][1][0]
            assert c.meu(row.tolist(), backend=b) == got[b][1][0]
            assert c.policy(row, backend=b) == got[b][2][0]


@NUMBA
def test_small_calls_from_threads_share_nothing():
    """Calls from several Python threads at once on one circuit (the one-thread work arrays
    of small calls are taken by one call at a time; the others allocate their own) give the
    results of the same calls made one after another."""
    rng = np.random.default_rng(7)
    c = random_spmn(rng, n_before=2, n_mid=0, n_after=2)
    flat = c.compile()
    rows = [np.where(rng.random((int(rng.integers(1, 17)), len(c.schema))) < 0.4, np.nan,
                     np.floor(rng.random((1, len(c.schema))) * np.maximum(flat.var_card, 1)))
            for _ in range(24)]
    for X in rows:
        X[:, flat.var_card == 0] = np.nan
    for b in [b for b in ("cython", "numba") if b in kernels.available()]:
        want = [(c.meu(X, backend=b), c.policy(X, backend=b)) for X in rows]
        got: dict[int, list] = {}

        def work(t, b=b, got=got):
            got[t] = [[(c.meu(X, backend=b), c.policy(X, backend=b)) for X in rows]
                      for _ in range(20)]

        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        for t in range(4):
            for rep in got[t]:
                for (m, p), (wm, wp) in zip(rep, want):
                    np.testing.assert_array_equal(m, wm)
                    np.testing.assert_array_equal(p, wp)


@NUMBA
def test_raw_entries_count_the_chunks_that_fail_on_several_threads():
    """The raw entries with a check table on 2 threads and 16-row chunks: 0 and the protocol
    method's bits for valid rows; for rows with wrong cells, the number of chunks holding
    one (those chunks are skipped, the others still run)."""
    from spmn.kernels._common import prepare

    rng = np.random.default_rng(11)
    c = random_spmn(rng, n_before=2, n_mid=0, n_after=2)
    flat = c.compile()
    X = np.where(rng.random((100, len(c.schema))) < 0.3, np.nan,
                 np.floor(rng.random((100, len(c.schema))) * np.maximum(flat.var_card, 1)))
    X[:, flat.var_card == 0] = np.nan
    chk = c.schema.check_table(True)
    root, zeros = np.array([flat.root]), np.zeros(flat.n_interface)
    for b in [b for b in ("cython", "numba") if b in kernels.available()]:
        K = kernels.get(b)._K
        circ = K._circ(prepare(flat))
        outL, outU = np.empty((100, 1)), np.empty((100, 1))
        assert K.raw.upward(circ, X, zeros, root, outL, outU, True, True, 16, 2, chk) == 0
        np.testing.assert_array_equal(outU[:, 0], K.meu(flat, X, threads=2, chunk=16))
        out = np.full(X.shape, np.nan)
        assert K.raw.policy(circ, X, zeros, out, 16, 2, chk) == 0
        np.testing.assert_array_equal(out, K.policy(flat, X, threads=2, chunk=16))
        Y = X.copy()
        Y[[3, 40, 47], 0] = [np.inf, 0.5, -1.0]  # chunks 0 and 2
        assert K.raw.upward(circ, Y, zeros, root, outL, outU, True, True, 16, 2, chk) == 2
        assert K.raw.policy(circ, Y, zeros, out, 16, 2, chk) == 2
        assert K.raw.mpe(circ, Y, Y.copy(), np.empty(100), 16, 2, chk) == 2
        assert K.raw.mpe(circ, X, X.copy(), np.empty(100), 16, 2, chk) == 0


@NUMBA
@settings(**SETTINGS)
@given(seeds, st.integers(1, 11), st.sampled_from([1, 3, 4, 7, 16, 37]),
       st.sampled_from([0.0, 0.02, 0.3]), st.booleans())
def test_numba_chunk_loader_checks_and_codes_as_rows_ok(seed, nvars, rows, bad, needx):
    """The Numba passes check each chunk as they load it (``_numba_entry._load_chunk``: 4 x 4
    register blocks and the cells around them): the same decision as ``rows_ok`` and
    Schema.valid_values, and, on a chunk that passes, the codes (NaN: the variable's
    categories) and the transposed values the passes read."""
    from spmn.kernels import _numba_entry as ne

    rng = np.random.default_rng(seed)
    variables = [Variable.discrete(f"v{j}", int(rng.choice([1, 2, 3, 5])))
                 if rng.random() < 0.7 else Variable.continuous(f"v{j}") for j in range(nvars)]
    schema = Schema(variables)
    X = edge_rows(rng, schema, rows + 3, bad)
    lo, R = 3, rows + int(rng.integers(0, 5))  # a chunk past the first rows, R >= its rows
    kk = np.array([v.k if v.is_discrete else 0 for v in schema], np.int32)
    for allow in nan_options(schema, rng):
        chk = schema.check_table(allow)
        want = schema.valid_values(X[lo:], allow)
        xt, code = np.full(nvars * R + 1, -7.0), np.full(nvars * R + 1, -7, np.int32)
        got = ne._load_chunk(ne._ro(X), lo, rows, R, xt, code, ne._ro(chk), needx, kk, chk.copy())
        assert got == want == bool(ne.rows_ok(X, lo, rows, chk)), allow
        got = ne._load_chunk(ne._ro(X), lo, rows, R, xt, code, ne._RF0, needx, kk,
                             np.zeros(4 * nvars))
        assert got  # no table: no check
        for j, v in enumerate(schema):
            x = X[lo:, j]
            if needx:
                assert np.array_equal(xt[j * R:j * R + rows], x, equal_nan=True)
            if v.is_discrete and want:
                ok = ~np.isnan(x)
                assert np.array_equal(code[j * R:j * R + rows][ok], x[ok].astype(np.int32))
                assert (code[j * R:j * R + rows][~ok] == v.k).all()
