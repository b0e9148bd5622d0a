"""spmn.data: read_table with any line ending, id columns, value maps; training-data checks."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from spmn import DataError, Schema, SchemaError, Variable
from spmn.data import infer_variables, read_table, schema_from_spec, training_matrix

_SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "decisions")
# the shared folder when present, else the gzipped copy shipped with the tests
DECISIONS = _SHARED if os.path.isdir(_SHARED) else os.path.join(os.path.dirname(__file__), "data",
                                                                 "decisions")

SCHEMA = Schema([Variable.decision("D", 2), Variable.discrete("S", 3, ["lo", "mid", "hi"]),
                 Variable.utility("U")], [["D"], ["S", "U"]])


def _write(tmp_path, text: str | bytes, name="t.tsv"):
    p = tmp_path / name
    p.write_bytes(text.encode() if isinstance(text, str) else text)
    return p


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r\r\n", "\r"])
def test_any_line_ending(tmp_path, eol):
    text = eol.join(["ids\tD\tS\tU", "1\t0\t2\t1.5", "2\t1\t0\t-3", "3\t1\t1\t0"]) + eol
    X = read_table(_write(tmp_path, text), SCHEMA)
    np.testing.assert_array_equal(X, [[0, 2, 1.5], [1, 0, -3], [1, 1, 0]])
    assert X.dtype == np.float64 and X.flags.c_contiguous


def test_csv_semicolon_quotes_bom_and_column_order(tmp_path):
    p = _write(tmp_path, "\ufeffU,S,D\r\n1.5,2,0\r\n\"-3\",0,1\r\n", "t.csv")
    X = read_table(p, SCHEMA)
    np.testing.assert_array_equal(X, [[0, 2, 1.5], [1, 0, -3]])
    p2 = _write(tmp_path, "D;S;U\n0;2;1,5\n", "t2.csv")
    with pytest.raises(DataError, match="'U'"):
        read_table(p2, SCHEMA)
    p3 = _write(tmp_path, "D;S;U\n0;2;1.5\n", "t3.csv")
    np.testing.assert_array_equal(read_table(p3, SCHEMA), [[0, 2, 1.5]])


def test_without_schema_returns_named_columns(tmp_path):
    p = _write(tmp_path, "id\ta\tb\n1\t0\t2.5\n2\t1\t-1\n")
    cols = read_table(p)
    assert list(cols) == ["a", "b"]
    np.testing.assert_array_equal(cols["b"], [2.5, -1])
    assert list(read_table(p, id_column=None)) == ["id", "a", "b"]
    assert list(read_table(p, id_column="a")) == ["id", "b"]
    assert list(read_table(p, drop=["b"])) == ["a"]
    with pytest.raises(DataError, match="id column 'zz'"):
        read_table(p, id_column="zz")


def test_value_maps_labels_and_missing_cells(tmp_path):
    p = _write(tmp_path, "D\tS\tU\n0\thi\t1\n1\tlo\t\n0\t?\t2\n")
    X = read_table(p, SCHEMA)                          # labels of S accepted
    np.testing.assert_array_equal(X[:, 1], [2, 0, np.nan])
    assert np.isnan(X[1, 2])
    q = _write(tmp_path, "D\tS\tU\n7\t3\t1\n9\t4\t2\n", "q.tsv")
    X = read_table(q, SCHEMA, values={"D": [7, 9], "S": [4, 3, 5]})
    np.testing.assert_array_equal(X[:, :2], [[0, 1], [1, 0]])
    with pytest.raises(DataError, match="'D' has value 8.0"):
        read_table(_write(tmp_path, "D\tS\tU\n8\t3\t1\n", "r.tsv"), SCHEMA,
                   values={"D": [7, 9], "S": [4, 3, 5]})
    s = _write(tmp_path, "D\tS\tU\nno\t1\t1\nyes\t0\t1\n", "s.tsv")
    np.testing.assert_array_equal(read_table(s, SCHEMA, values={"D": ["no", "yes"]})[:, 0],
                                  [0, 1])


def test_errors_name_the_file_and_column(tmp_path):
    with pytest.raises(DataError, match="'S' holds text|'S' has 'x'"):
        read_table(_write(tmp_path, "D\tS\tU\n0\tx\t1\n"), SCHEMA)
    with pytest.raises(DataError, match="'S' has value 3.0"):
        read_table(_write(tmp_path, "D\tS\tU\n0\t3\t1\n", "b.tsv"), SCHEMA)
    with pytest.raises(DataError, match="row 1 has 2 fields"):
        read_table(_write(tmp_path, "D\tS\tU\n0\t1\t1\n0\t1\n", "c.tsv"), SCHEMA)
    with pytest.raises(DataError, match="\\['extra'\\] are not schema variables"):
        read_table(_write(tmp_path, "D\tS\tU\textra\n0\t1\t1\t5\n", "d.tsv"), SCHEMA)
    with pytest.raises(DataError, match="\\['U'\\] have no column"):
        read_table(_write(tmp_path, "D\tS\n0\t1\n", "e.tsv"), SCHEMA)
    with pytest.raises(DataError, match="empty"):
        read_table(_write(tmp_path, "\r\n\r\n", "f.tsv"), SCHEMA)
    with pytest.raises(DataError, match="cannot read"):
        read_table(tmp_path / "missing.tsv", SCHEMA)
    with pytest.raises(DataError, match="more than once"):
        read_table(_write(tmp_path, "a\ta\n1\t2\n", "g.tsv"))
    with pytest.raises(DataError, match="holds text"):
        read_table(_write(tmp_path, "a\tb\n1\tzz\n", "h.tsv"))


def test_header_only_gives_zero_rows(tmp_path):
    X = read_table(_write(tmp_path, "D\tS\tU\n"), SCHEMA)
    assert X.shape == (0, 3)


def test_schema_from_spec_and_problem_files():
    if not os.path.isdir(DECISIONS):
        pytest.skip("shared/data/decisions not present")
    specs = json.load(open(os.path.join(DECISIONS, "problems.json")))
    line_endings = set()
    for name, spec in specs.items():
        schema, maps = schema_from_spec(spec)
        assert schema.partial_order == tuple(tuple(s) for s in spec["partial_order"])
        path = os.path.join(DECISIONS, spec["file"])
        if not os.path.exists(path):
            path += ".gz"
        raw = open(path, "rb").read()
        if path.endswith(".gz"):
            import gzip
            raw = gzip.decompress(raw)
        raw = raw[:4096]
        line_endings.add(b"\r\r\n" in raw and "CRCRLF" or b"\r\n" in raw and "CRLF" or "LF")
        X = read_table(path, schema, values=maps)
        assert X.shape == (100000, len(spec["columns"]) - 1)
        assert not np.isnan(X).any()
        for j, v in enumerate(schema.variables):
            if v.is_discrete:
                assert set(np.unique(X[:, j])) <= set(range(v.k))
        assert [v.name for v in schema.decisions] == spec["decisions"]
    assert line_endings == {"LF", "CRLF", "CRCRLF"}
    strep, maps = schema_from_spec(specs["Test_Strep"])
    assert maps == {"Days_with_sore_throat": [3, 4]}
    assert strep["Test_Result"].labels == ("-ve", "+ve", "NA")


def test_schema_from_spec_errors():
    with pytest.raises(SchemaError, match="variables"):
        schema_from_spec({})
    with pytest.raises(SchemaError, match="'x'.*values"):
        schema_from_spec({"variables": {"x": {"kind": "chance", "values": []}}})
    with pytest.raises(SchemaError, match="unknown kind"):
        schema_from_spec({"variables": {"x": {"kind": "latent", "values": [0]}}})
    s, _ = schema_from_spec({"variables": {"y": {"kind": "continuous"}}})
    assert not s["y"].is_discrete


def test_infer_variables_and_training_matrix():
    cols = {"a": np.array([0.0, 2.0, 1.0]), "y": np.array([0.5, 1.0, 2.0]),
            "d": np.array([1.0, 0.0, 1.0]), "u": np.array([3.0, 4.0, 5.0]),
            "big": np.array([0.0, 1000.0, 3.0])}
    vs = {v.name: v for v in infer_variables(cols, {"y": "continuous"}, ["d"], ["u"])}
    assert vs["a"].k == 3 and vs["d"].role == "decision" and vs["d"].k == 2
    assert vs["u"].role == "utility" and not vs["y"].is_discrete and not vs["big"].is_discrete
    with pytest.raises(DataError, match="'y' must hold integer codes"):
        infer_variables(cols, {"y": "discrete"})
    with pytest.raises(DataError, match="kinds names columns"):
        infer_variables(cols, {"zz": 3})
    schema = Schema(list(vs.values()), [["a", "y", "big"], ["d"], ["u"]])
    X = training_matrix(cols, schema)
    assert X.shape == (3, 5)
    with pytest.raises(DataError, match="decision 'd' is absent"):
        training_matrix({k: v for k, v in cols.items() if k != "d"}, schema)
    with pytest.raises(DataError, match="not in the schema"):
        training_matrix(dict(cols, extra=np.zeros(3)), schema)
    with pytest.raises(DataError, match="rows x 5 variables"):
        training_matrix(np.zeros((3, 4)), schema)
