"""Reading tables and turning user data into training matrices checked against a schema.

:func:`read_table` reads TSV/CSV files with any line ending (LF, CRLF, CR, ``\\r\\r\\n``),
skips an id column and maps columns to a schema. Everywhere in spmn, data may be a numpy array
(rows x variables, schema order), a dict of columns or a pandas DataFrame (columns by name).
"""
from __future__ import annotations

import csv
import io
import os
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .errors import DataError, SchemaError
from .schema import Schema, Variable

__all__ = ["read_table", "schema_from_spec", "infer_variables", "training_matrix", "as_columns",
           "MISSING_TOKENS", "ID_NAMES"]

#: Cells read as "unobserved" (NaN).
MISSING_TOKENS = ("", "?", "nan", "NaN", "NAN")
#: Header names of a leading column that ``id_column="auto"`` drops (case-insensitive).
ID_NAMES = ("", "id", "ids", "index", "row", "rowid", "row_id", "unnamed: 0")
#: Integer-valued columns with codes up to this value are inferred discrete.
MAX_INFERRED_CODE = 255


# ---------------------------------------------------------------------------- reading
def _split_lines(text: str) -> list[str]:
    """Lines of ``text`` whatever the line ending; empty lines (e.g. from ``\\r\\r\\n``) dropped."""
    return [ln for ln in text.replace("\r\n", "\n").replace("\r", "\n").split("\n") if ln.strip()]


def _sniff(header: str) -> str:
    for sep in ("\t", ",", ";"):
        if sep in header:
            return sep
    return " "


def _column_to_float(raw: Sequence[str], name: str, var: Variable | None,
                     codes: Sequence[Any] | None, missing: frozenset[str], path: str) -> np.ndarray:
    cells = [c.strip() for c in raw]
    if codes is not None:  # raw value -> its position in ``codes``
        lut: dict[str, int] = {}
        for i, v in enumerate(codes):
            lut[str(v)] = i
            try:
                f = float(v)
                lut[repr(f)] = i
                if f == int(f):
                    lut[str(int(f))] = i
            except (TypeError, ValueError):
                pass
        out = np.empty(len(cells))
        for r, c in enumerate(cells):
            if c in missing:
                out[r] = np.nan
                continue
            key = c if c in lut else _float_key(c)
            if key not in lut:
                raise DataError(f"{path}: column {name!r} has value {c!r} in data row {r}; "
                                f"expected one of {list(codes)}")
            out[r] = lut[key]
        return out
    try:
        return np.array([np.nan if c in missing else c for c in cells], dtype=np.float64)
    except ValueError:
        pass
    if var is not None and var.labels is not None:
        lut = {lab: i for i, lab in enumerate(var.labels)}
        out = np.empty(len(cells))
        for r, c in enumerate(cells):
            if c in missing:
                out[r] = np.nan
            elif c in lut:
                out[r] = lut[c]
            else:
                try:
                    out[r] = float(c)
                except ValueError:
                    raise DataError(f"{path}: column {name!r} has {c!r} in data row {r}: neither "
                                    f"a code nor one of its labels {list(var.labels)}") from None
        return out
    bad = next(r for r, c in enumerate(cells) if c not in missing and not _is_number(c))
    raise DataError(f"{path}: column {name!r} holds text ({cells[bad]!r} in data row {bad}) where "
                    "numbers are expected (integer codes for discrete variables); pass "
                    f"values={{{name!r}: [...]}} to map its values to codes")


def _map_numeric(x: np.ndarray, codes: Sequence[Any], name: str, path: str) -> np.ndarray:
    """Numeric raw values -> their positions in ``codes``; NaN stays NaN."""
    out = np.full(x.shape, np.nan)
    hit = np.isnan(x)
    for i, c in enumerate(codes):
        m = x == float(c)
        out[m] = i
        hit |= m
    if not hit.all():
        r = int(np.argmin(hit))
        raise DataError(f"{path}: column {name!r} has value {float(x[r])!r} in data row {r}; "
                        f"expected one of {list(codes)}")
    return out


def _is_number(c: str) -> bool:
    try:
        float(c)
        return True
    except ValueError:
        return False


def _float_key(c: str) -> str:
    try:
        return repr(float(c))
    except ValueError:
        return c


def read_table(path: str | os.PathLike, schema: Schema | Sequence[Variable] | None = None, *,
               sep: str | None = None, id_column: str | None = "auto",
               values: Mapping[str, Sequence[Any]] | None = None, drop: Iterable[str] = (),
               missing: Iterable[str] = MISSING_TOKENS) -> np.ndarray | dict[str, np.ndarray]:
    """Read a delimited text table with a header row.

    With a ``schema``: a float64 array (rows x variables, schema order), checked against the
    schema (codes in range; NaN where a cell is one of ``missing``). Without: a dict of float64
    columns in file order. ``sep`` defaults to the header's tab, comma or semicolon.
    ``id_column``: ``"auto"`` drops a first column named like an id (:data:`ID_NAMES`) that is
    not a schema variable, a name drops that column, None keeps every column. ``values`` maps a
    column's raw values to codes: ``{"Days": [3, 4]}`` reads 3 as code 0 and 4 as code 1;
    discrete variables with labels also accept their labels. Columns in ``drop`` are skipped.
    Raises :class:`DataError` naming the file and column at fault.
    """
    path = os.fspath(path)
    if schema is not None and not isinstance(schema, Schema):
        schema = Schema(schema)
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        if raw[:2] == b"\x1f\x8b":  # gzip-compressed table
            import gzip

            raw = gzip.decompress(raw)
    except OSError as exc:
        raise DataError(f"cannot read table {path!r}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    lines = _split_lines(text)
    if not lines:
        raise DataError(f"{path}: the file is empty (expected a header row)")
    sep = sep or _sniff(lines[0])
    if sep == " ":
        rows = [ln.split() for ln in lines]
    elif '"' not in text:
        rows = [ln.split(sep) for ln in lines]
    else:
        rows = list(csv.reader(io.StringIO("\n".join(lines)), delimiter=sep))
    header = [h.strip() for h in rows[0]]
    body = rows[1:]
    width = len(header)
    for r, row in enumerate(body):
        if len(row) != width:
            raise DataError(f"{path}: data row {r} has {len(row)} fields; the header has {width} "
                            f"({header})")
    names_in_schema = set(schema.names) if schema is not None else set()
    skip = set(drop)
    if id_column == "auto":
        if header and header[0].lower() in ID_NAMES and header[0] not in names_in_schema:
            skip.add(header[0])
    elif id_column is not None:
        if id_column not in header:
            raise DataError(f"{path}: id column {id_column!r} not in the header {header}")
        skip.add(id_column)
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise DataError(f"{path}: columns {dup} appear more than once in the header")
    values = dict(values or {})
    unknown_maps = [k for k in values if k not in header]
    if unknown_maps:
        raise DataError(f"{path}: values= names columns {unknown_maps} that the file lacks")
    missing = frozenset(missing)
    keep = [j for j, h in enumerate(header) if h not in skip]
    if schema is not None:
        extra = [header[j] for j in keep if header[j] not in names_in_schema]
        if extra:
            raise DataError(f"{path}: columns {extra} are not schema variables; known: "
                            f"{list(schema.names)} (use drop= to skip them)")
        absent = [n for n in schema.names if n not in header]
        if absent:
            raise DataError(f"{path}: schema variables {absent} have no column in the file")
    out: dict[str, np.ndarray] = {}
    fast = None
    if body:
        try:  # all cells plain numbers: one conversion
            fast = np.array(body, dtype=np.float64)
        except ValueError:
            fast = None
    cols_t = None
    for j in keep:
        name = header[j]
        codes = values.get(name)
        if fast is not None and (codes is None or all(_is_number(str(c)) for c in codes)):
            out[name] = fast[:, j] if codes is None else _map_numeric(fast[:, j], codes, name, path)
            continue
        if cols_t is None:
            cols_t = list(zip(*body)) if body else [() for _ in header]
        var = schema[name] if schema is not None and name in schema else None
        out[name] = _column_to_float(cols_t[j], name, var, codes, missing, path)
    if schema is None:
        return out
    X = np.column_stack([out[n] for n in schema.names]) if body else np.empty((0, len(schema)))
    try:
        return schema.validate_data(X, what=path)
    except DataError as exc:
        raise DataError(f"{exc} (pass values= to map raw values to codes)") from None


# ---------------------------------------------------------------------------- schemas
def schema_from_spec(spec: Mapping[str, Any], partial_order: Sequence[Sequence[str]] | None = None
                     ) -> tuple[Schema, dict[str, list]]:
    """Schema and raw-value maps from a problem description.

    ``spec = {"columns": [...], "variables": {name: {"kind": "chance" | "decision" |
    "utility" | "continuous", "values": [...], "labels": {...}}}, "partial_order": [...]}``
    (the format of ``shared/data/decisions/problems.json``). Variables follow ``columns``
    order; a discrete variable's ``values`` list its raw values in code order, and the returned
    maps (for :func:`read_table`'s ``values=``) hold those that are not already ``0..k-1``.
    """
    try:
        var_specs = spec["variables"]
    except (KeyError, TypeError):
        raise SchemaError("a problem spec needs a 'variables' mapping") from None
    order = [c for c in spec.get("columns", list(var_specs)) if c in var_specs]
    variables, maps = [], {}
    for name in order:
        v = var_specs[name]
        kind = v.get("kind", "chance")
        vals = list(v.get("values", []))
        labels_map = v.get("labels") or {}
        labels = [str(labels_map.get(str(x), x)) for x in vals] if labels_map else None
        if kind == "utility":
            variables.append(Variable.utility(name))
        elif kind == "continuous":
            variables.append(Variable.continuous(name))
        elif kind in ("chance", "decision"):
            if not vals:
                raise SchemaError(f"variable {name!r}: a {kind} variable needs its 'values'")
            make = Variable.decision if kind == "decision" else Variable.discrete
            variables.append(make(name, len(vals), labels))
            if vals != list(range(len(vals))):
                maps[name] = vals
        else:
            raise SchemaError(f"variable {name!r}: unknown kind {kind!r}")
    po = partial_order if partial_order is not None else spec.get("partial_order")
    return Schema(variables, po), maps


def _column_names(data: Any, columns: Sequence[str] | None) -> list[str] | None:
    if isinstance(data, Mapping):
        return [str(c) for c in data.keys()]
    if hasattr(data, "columns"):
        return [str(c) for c in data.columns]
    return None if columns is None else list(columns)


def _to_float_column(col: Any, name: str) -> np.ndarray:
    arr = np.asarray(col)
    if arr.ndim != 1:
        raise DataError(f"column {name!r} must be 1-D, got shape {arr.shape}")
    if arr.dtype.kind in "biuf":
        return arr.astype(np.float64)
    try:
        return arr.astype(np.float64)
    except (TypeError, ValueError):
        bad = next((v for v in arr.tolist() if not _is_number(str(v))), None)
        raise DataError(f"column {name!r} holds text ({bad!r}) where numbers are expected "
                        "(integer codes for discrete variables)") from None


def as_columns(data: Any, columns: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Data as a dict of float64 columns (names from the dict/DataFrame, or ``columns``)."""
    names = _column_names(data, columns)
    if isinstance(data, Mapping) or hasattr(data, "columns"):
        cols = {n: _to_float_column(data[k], n) for n, k in zip(names, list(data.keys())
                                                                  if isinstance(data, Mapping)
                                                                  else list(data.columns))}
    else:
        try:
            arr = np.asarray(data)
        except Exception as exc:
            raise DataError(f"data cannot be read as an array: {exc}") from None
        if arr.ndim != 2:
            raise DataError(f"data must be 2-D (rows x variables), got shape {arr.shape}")
        if names is None:
            names = [f"x{j}" for j in range(arr.shape[1])]
        if len(names) != arr.shape[1]:
            raise DataError(f"data has {arr.shape[1]} columns but {len(names)} names {names}")
        cols = {n: _to_float_column(arr[:, j], n) for j, n in enumerate(names)}
    lengths = {c.shape[0] for c in cols.values()}
    if len(lengths) > 1:
        raise DataError(f"columns have different lengths {sorted(lengths)}")
    return cols


def infer_variables(cols: Mapping[str, np.ndarray], kinds: Mapping[str, Any] | None = None,
                    decisions: Sequence[str] = (), utilities: Sequence[str] = ()) -> list[Variable]:
    """Variables for named columns. ``kinds[name]`` is ``"discrete"``, ``"continuous"`` or an
    int k; otherwise a column of integer codes ``0..c`` with ``c <= 255`` is discrete
    (k = c + 1) and any other column continuous. Decisions are discrete, utilities continuous."""
    kinds = dict(kinds or {})
    unknown = [k for k in kinds if k not in cols]
    if unknown:
        raise DataError(f"kinds names columns {unknown} that the data lacks; columns: {list(cols)}")
    out = []
    for name, x in cols.items():
        obs = x[~np.isnan(x)]
        role = "decision" if name in decisions else "utility" if name in utilities else "chance"
        kind = kinds.get(name)
        if role == "utility":
            if kind not in (None, "continuous"):
                raise SchemaError(f"utility {name!r} is continuous, got kind {kind!r}")
            out.append(Variable.utility(name))
            continue
        if isinstance(kind, (int, np.integer)) and not isinstance(kind, bool):
            k = int(kind)
        elif kind == "continuous":
            if role == "decision":
                raise SchemaError(f"decision {name!r} must be discrete")
            out.append(Variable.continuous(name))
            continue
        else:
            integral = obs.size > 0 and np.all(obs == np.round(obs)) and obs.min() >= 0
            if kind == "discrete" or role == "decision":
                if not integral:
                    raise DataError(f"column {name!r} must hold integer codes >= 0 to be "
                                    "discrete")
            elif kind is not None:
                raise SchemaError(f"column {name!r}: kind must be 'discrete', 'continuous' or "
                                  f"an int k, got {kind!r}")
            many = kind is None and role == "chance" and obs.max() > MAX_INFERRED_CODE
            if not integral or many:
                out.append(Variable.continuous(name))
                continue
            k = int(obs.max()) + 1
        out.append(Variable(name, "discrete", k, None, role))
    return out


def training_matrix(data: Any, schema: Schema, *, allow_constant: bool = False,
                    what: str = "training data") -> np.ndarray:
    """Complete training data as a float64 array in schema order, or a :class:`DataError`.

    Every schema variable needs a column (a missing decision is named as such), values must be
    numbers (codes in range for discrete variables), no NaN (structure learning needs complete
    rows), and no column may be constant unless ``allow_constant``.
    """
    if isinstance(data, Mapping) or hasattr(data, "columns"):
        cols = as_columns(data)
        absent = [v for v in schema.variables if v.name not in cols]
        if absent:
            v = absent[0]
            role = {"decision": "decision", "utility": "utility"}.get(v.role, "variable")
            raise DataError(f"{what}: {role} {v.name!r} is absent from the data; columns: "
                            f"{list(cols)}")
        extra = [c for c in cols if c not in schema]
        if extra:
            raise DataError(f"{what}: columns {extra} are not in the schema {list(schema.names)}")
        X = np.column_stack([cols[n] for n in schema.names])
    else:
        arr = np.asarray(data)
        if arr.ndim != 2 or arr.shape[1] != len(schema):
            raise DataError(f"{what} must be rows x {len(schema)} variables "
                            f"{list(schema.names)}, got shape {arr.shape}")
        X = np.column_stack([_to_float_column(arr[:, j], n) for j, n in enumerate(schema.names)])
    if X.shape[0] == 0:
        raise DataError(f"{what} has no rows")
    for j, v in enumerate(schema.variables):
        nan = np.isnan(X[:, j])
        if nan.all() and v.role == "decision":
            raise DataError(f"{what}: decision {v.name!r} is absent from the data (all NaN)")
        if nan.any():
            kind = {"utility": "utility column", "decision": "decision"}.get(v.role, "variable")
            raise DataError(f"{what}: {kind} {v.name!r} is NaN in row {int(np.argmax(nan))}; "
                            "structure learning needs complete rows")
    X = schema.validate_data(X, allow_nan=False, what=what)
    if not allow_constant and X.shape[0] > 1:
        for j, v in enumerate(schema.variables):
            if np.all(X[:, j] == X[0, j]):
                raise DataError(f"{what}: {v.role} variable {v.name!r} is constant "
                                f"({X[0, j]!r} in all {X.shape[0]} rows): it carries no "
                                "information; drop it or pass allow_constant=True")
    return X
