import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spmn import DataError, Schema, SchemaError, Variable


def make():
    return Schema([Variable.discrete("X", 3), Variable.decision("D", 2),
                   Variable.continuous("Y"), Variable.utility("U")],
                  partial_order=[["X"], ["D"], ["Y", "U"]])


def test_roles_order_and_lookup():
    s = make()
    assert s.names == ("X", "D", "Y", "U")
    assert [v.name for v in s.decisions] == ["D"]
    assert s.precedes("X", "D") and not s.precedes("Y", "D")
    assert s.index("Y") == 2 and s["D"].k == 2
    np.testing.assert_array_equal(s.cardinalities, [3, 2, 0, 0])
    assert Schema.from_dict(s.to_dict()) == s


@pytest.mark.parametrize("order, msg", [
    ([["X"], ["D"], ["Y"]], "misses variables \\['U'\\]"),
    ([["X", "X"], ["D"], ["Y", "U"]], "'X' appears twice"),
    ([["X", "D"], ["Y", "U"]], "mixes decisions"),
    ([["X"], ["D"], ["Y", "U", "Q"]], "unknown variable 'Q'"),
])
def test_bad_partial_orders(order, msg):
    with pytest.raises(SchemaError, match=msg):
        Schema(make().variables, order)


def test_decisions_need_an_order_and_bad_variables():
    with pytest.raises(SchemaError, match="need a partial_order"):
        Schema([Variable.decision("D", 2)])
    with pytest.raises(SchemaError, match="k >= 1"):
        Variable.discrete("X", 0)
    with pytest.raises(SchemaError, match="must be discrete"):
        Variable("D", "continuous", role="decision")
    with pytest.raises(SchemaError, match="2 labels for k=3"):
        Variable.discrete("X", 3, ["a", "b"])
    with pytest.raises(SchemaError, match="twice"):
        Schema([Variable.discrete("X", 2), Variable.discrete("X", 3)])
    with pytest.raises(SchemaError, match="unknown variable 'Z'"):
        make().index("Z")


def test_validate_data_accepts_and_copies():
    s = make()
    X = np.array([[0, 1, 0.5, np.nan], [2, np.nan, -1.0, 3.0]], dtype=np.float32, order="F")
    out = s.validate_data(X)
    assert out.dtype == np.float64 and out.flags.c_contiguous
    out2 = s.validate_data({"X": [1, 2], "Y": [0.0, 1.0]})
    assert np.isnan(out2[:, 1]).all() and out2[1, 0] == 2


@pytest.mark.parametrize("X, msg", [
    (np.zeros((2, 3)), "has 3 columns; the schema has 4"),
    (np.array([[3, 0, 0, 0]]), "variable 'X' has value 3.0 in row 0; expected an integer code in 0..2"),
    (np.array([[0.5, 0, 0, 0]]), "variable 'X' has value 0.5"),
    (np.array([[0, -1, 0, 0]]), "variable 'D'"),
    (np.array([[0, 0, np.inf, 0]]), "'Y' is infinite"),
    (np.array([["a", "b", "c", "d"]]), "must be numeric"),
    (np.zeros((2, 2, 4)), "must be 2-D"),
])
def test_validate_data_errors(X, msg):
    with pytest.raises(DataError, match=msg):
        make().validate_data(X)


def test_nan_where_required_and_unknown_columns():
    s = make()
    with pytest.raises(DataError, match="'Y' is NaN in row 1"):
        s.validate_data(np.array([[0, 0, 0, 0], [0, 0, np.nan, 0]]), allow_nan=["U"])
    with pytest.raises(DataError, match="unknown columns \\['Q'\\]"):
        s.validate_data({"Q": [1.0]})
    with pytest.raises(DataError, match="column 'X' holds <U1"):
        s.validate_data({"X": np.array(["a"])})


# ---------------------------------------------------------------- one-pass validation

_CELLS = st.sampled_from([0.0, 1.0, 2.0, 3.0, -1.0, 0.5, 2.5, -0.0, np.nan, np.inf, -np.inf,
                          1e300, -1e300, 7.0, np.nextafter(1.0, 2.0)])


@st.composite
def _schema_and_rows(draw):
    kinds = draw(st.lists(st.one_of(st.none(), st.integers(1, 4)), min_size=1, max_size=5))
    vs = [Variable.continuous(f"v{j}") if k is None else Variable.discrete(f"v{j}", k)
          for j, k in enumerate(kinds)]
    rows = draw(st.integers(0, 6))
    X = np.array(draw(st.lists(st.lists(_CELLS, min_size=len(vs), max_size=len(vs)),
                               min_size=rows, max_size=rows)), dtype=np.float64)
    X = X.reshape(rows, len(vs))
    allow = draw(st.one_of(st.booleans(),
                           st.lists(st.sampled_from([v.name for v in vs]), unique=True)))
    return Schema(vs), X, allow


@settings(max_examples=400, deadline=None)
@given(_schema_and_rows())
def test_one_pass_validation_accepts_exactly_what_the_per_variable_checks_accept(case):
    """The one-pass checks (valid_values: numpy passes, or a loop for a few cells) and the
    per-variable reference (_check_columns) accept and reject the same arrays, and
    validate_data raises the reference's message."""
    s, X, allow = case
    try:
        s._check_columns(X, allow, "evidence")
        ref = None
    except DataError as exc:
        ref = str(exc)
    assert s.valid_values(X, allow) == (ref is None)
    assert s._valid_small(X, allow) == s._valid_vector(X, allow) == (ref is None)
    big = np.repeat(X, 70 // max(1, X.size) + 1, axis=0)  # the same cells, past SMALL_CELLS
    assert s.valid_values(big, allow) == (ref is None)
    if ref is None:
        np.testing.assert_array_equal(s.validate_data(X, allow_nan=allow), X)
    else:
        with pytest.raises(DataError) as got:
            s.validate_data(X, allow_nan=allow)
        assert str(got.value) == ref


def test_dataframe_is_converted_once_in_schema_order():
    import pandas as pd
    s = make()
    df = pd.DataFrame({"Y": [0.5, 1.0], "X": [1, 2], "D": [True, False]})
    want = s.validate_data({"Y": [0.5, 1.0], "X": [1, 2], "D": np.array([True, False])})
    np.testing.assert_array_equal(s.validate_data(df), want)
    assert np.isnan(want[:, 3]).all() and want[0, 1] == 1.0
    with pytest.raises(DataError, match="variable 'X' has value 3.0 in row 1"):
        s.validate_data(pd.DataFrame({"X": [1, 3]}))
    with pytest.raises(DataError, match="column 'X' holds object"):
        s.validate_data(pd.DataFrame({"X": ["a", "b"]}))


@settings(max_examples=60, deadline=None)
@given(_schema_and_rows(), st.integers(1, 12))
def test_blocked_validation_decides_as_the_reference_over_many_tiles(case, tile_cells):
    """valid_values checks blocks of TILE_CELLS cells against tiles of the column bounds:
    with tiles of a few cells (many blocks, a short last one) it decides as _check_columns."""
    import spmn.schema as schema_mod

    s, X, allow = case
    big = np.repeat(X, 3, axis=0)
    try:
        s._check_columns(big, allow, "evidence")
        ref = True
    except DataError:
        ref = False
    old = schema_mod.TILE_CELLS
    schema_mod.TILE_CELLS = tile_cells
    try:
        s.__dict__.pop("_tile_cache", None)
        assert s._valid_vector(big, allow) == ref
    finally:
        schema_mod.TILE_CELLS = old
        s.__dict__.pop("_tile_cache", None)
