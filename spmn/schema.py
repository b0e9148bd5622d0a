"""Variables, roles, the partial order of information sets, and data validation.

A :class:`Schema` fixes the column order of every evidence array: row ``i`` column ``j`` is the
value of ``schema.variables[j]`` in case ``i``; NaN means unobserved. Discrete values are the
integer codes ``0..k-1`` stored as floats.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .errors import DataError, SchemaError

ROLES = ("chance", "decision", "utility")
#: Evidence of at most this many cells is checked by a loop over Python floats
#: (:meth:`Schema._valid_small`), larger evidence by numpy passes over the whole array.
SMALL_CELLS = 64
#: Cells of the per-schema bound tiles (:meth:`Schema._tiles`): evidence is checked in blocks
#: of this many cells against same-shape tiles, as numpy runs a ufunc over two contiguous
#: arrays of one shape several times faster than against a broadcast row of column bounds.
TILE_CELLS = 16384
KINDS = ("discrete", "continuous")


@dataclass(frozen=True)
class Variable:
    """One random, decision or utility variable.

    Decisions are discrete; utilities are continuous (real-valued payoffs).
    """

    name: str
    kind: str = "discrete"
    k: int | None = None
    labels: tuple[str, ...] | None = None
    role: str = "chance"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise SchemaError(f"variable name must be a non-empty string, got {self.name!r}")
        if self.kind not in KINDS:
            raise SchemaError(f"variable {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.role not in ROLES:
            raise SchemaError(f"variable {self.name!r}: role must be one of {ROLES}, got {self.role!r}")
        if self.kind == "discrete":
            if not isinstance(self.k, (int, np.integer)) or isinstance(self.k, bool) or self.k < 1:
                raise SchemaError(f"discrete variable {self.name!r} needs k >= 1 values, got k={self.k!r}")
            object.__setattr__(self, "k", int(self.k))
            if self.labels is not None:
                labels = tuple(str(x) for x in self.labels)
                if len(labels) != self.k:
                    raise SchemaError(
                        f"variable {self.name!r}: {len(labels)} labels for k={self.k} values")
                object.__setattr__(self, "labels", labels)
        else:
            if self.k is not None or self.labels is not None:
                raise SchemaError(f"continuous variable {self.name!r} takes no k or labels")
        if self.role == "decision" and self.kind != "discrete":
            raise SchemaError(f"decision variable {self.name!r} must be discrete")
        if self.role == "utility" and self.kind != "continuous":
            raise SchemaError(f"utility variable {self.name!r} must be continuous (real-valued)")

    @classmethod
    def discrete(cls, name: str, k: int, labels: Sequence[str] | None = None,
                 role: str = "chance") -> "Variable":
        return cls(name, "discrete", k, None if labels is None else tuple(labels), role)

    @classmethod
    def continuous(cls, name: str, role: str = "chance") -> "Variable":
        return cls(name, "continuous", None, None, role)

    @classmethod
    def decision(cls, name: str, k: int, labels: Sequence[str] | None = None) -> "Variable":
        return cls.discrete(name, k, labels, role="decision")

    @classmethod
    def utility(cls, name: str) -> "Variable":
        return cls(name, "continuous", None, None, "utility")

    @property
    def is_discrete(self) -> bool:
        return self.kind == "discrete"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "kind": self.kind, "role": self.role}
        if self.kind == "discrete":
            d["k"] = self.k
            if self.labels is not None:
                d["labels"] = list(self.labels)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Variable":
        try:
            labels = d.get("labels")
            return cls(d["name"], d.get("kind", "discrete"), d.get("k"),
                       None if labels is None else tuple(labels), d.get("role", "chance"))
        except (KeyError, TypeError) as exc:
            raise SchemaError(f"malformed variable entry {dict(d)!r}: {exc}") from None


class Schema:
    """An ordered set of variables plus the partial order (information sets, earliest first).

    ``partial_order`` lists every variable exactly once; a set holding a decision holds only
    decisions. Variable ``x`` precedes decision ``D`` when its set comes earlier: it is known
    when ``D`` is taken.
    """

    def __init__(self, variables: Iterable[Variable],
                 partial_order: Sequence[Sequence[str]] | None = None) -> None:
        self.variables: tuple[Variable, ...] = tuple(variables)
        if not self.variables:
            raise SchemaError("a schema needs at least one variable")
        for v in self.variables:
            if not isinstance(v, Variable):
                raise SchemaError(f"schema entries must be Variable, got {type(v).__name__}")
        self._index = {}
        for i, v in enumerate(self.variables):
            if v.name in self._index:
                raise SchemaError(f"variable {v.name!r} appears twice in the schema")
            self._index[v.name] = i
        self.partial_order: tuple[tuple[str, ...], ...] | None = None
        self._rank: dict[str, int] = {}
        if partial_order is not None:
            self._set_partial_order(partial_order)
        elif self.decisions:
            raise SchemaError(
                f"decisions {[v.name for v in self.decisions]} need a partial_order "
                "(information sets, earliest first)")

    def _set_partial_order(self, order: Sequence[Sequence[str]]) -> None:
        if isinstance(order, str):
            raise SchemaError("partial_order must be a list of lists of variable names")
        sets = []
        seen: dict[str, int] = {}
        for r, group in enumerate(order):
            if isinstance(group, str):
                group = [group]
            group = tuple(group)
            if not group:
                raise SchemaError(f"partial_order set {r} is empty")
            for name in group:
                if name not in self._index:
                    raise SchemaError(f"partial_order names unknown variable {name!r}; "
                                      f"known: {list(self._index)}")
                if name in seen:
                    raise SchemaError(f"variable {name!r} appears twice in the partial_order "
                                      f"(sets {seen[name]} and {r})")
                seen[name] = r
            roles = {self[name].role == "decision" for name in group}
            if len(roles) > 1:
                raise SchemaError(f"partial_order set {r} {list(group)} mixes decisions with "
                                  "other variables; a decision set holds only decisions")
            sets.append(group)
        missing = [v.name for v in self.variables if v.name not in seen]
        if missing:
            raise SchemaError(f"partial_order misses variables {missing}")
        self.partial_order = tuple(sets)
        self._rank = seen

    # ------------------------------------------------------------------ lookup
    def __len__(self) -> int:
        return len(self.variables)

    def __iter__(self):
        return iter(self.variables)

    def __getitem__(self, key: str | int) -> Variable:
        if isinstance(key, (int, np.integer)):
            return self.variables[int(key)]
        return self.variables[self.index(key)]

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Schema) and self.variables == other.variables
                and self.partial_order == other.partial_order)

    def __repr__(self) -> str:
        return f"Schema({[v.name for v in self.variables]}, partial_order={self.partial_order})"

    def index(self, name: str) -> int:
        """Column of variable ``name``; unknown names raise :class:`SchemaError`."""
        try:
            return self._index[name]
        except (KeyError, TypeError):
            raise SchemaError(f"unknown variable {name!r}; known: {list(self._index)}") from None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.variables)

    @property
    def decisions(self) -> tuple[Variable, ...]:
        return tuple(v for v in self.variables if v.role == "decision")

    @property
    def utilities(self) -> tuple[Variable, ...]:
        return tuple(v for v in self.variables if v.role == "utility")

    def ordered_decisions(self) -> tuple[str, ...]:
        """Decision names in the order they are taken (partial order; schema order if none)."""
        got = self.__dict__.get("_ordered")
        if got is None:  # variables and order are fixed at construction: sort once
            names = [v.name for v in self.decisions]
            got = self._ordered = tuple(sorted(names, key=lambda n: (self.rank(n), self.index(n))))
        return got

    def rank(self, name: str) -> int:
        """Position of ``name``'s information set (0 = known first); 0 when no order is set."""
        self.index(name)
        return self._rank.get(name, 0)

    def precedes(self, name: str, decision: str) -> bool:
        """True when ``name`` is known before ``decision`` is taken."""
        return self.rank(name) < self.rank(decision)

    @property
    def cardinalities(self) -> np.ndarray:
        """k for discrete variables, 0 for continuous ones (int64, schema order)."""
        return np.array([v.k if v.is_discrete else 0 for v in self.variables], dtype=np.int64)

    # ------------------------------------------------------------------ data
    def _tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        """Per-column bounds of an observed value, built once per schema: ``lo`` and ``top``
        (0 and k - 1 for a discrete column, the most negative and most positive finite doubles
        otherwise), ``cont`` (True for a continuous column: no integrality test) and whether
        every column is discrete."""
        got = self.__dict__.get("_bounds")
        if got is None:
            disc = np.array([v.is_discrete for v in self.variables])
            big = np.finfo(np.float64).max
            lo = np.where(disc, 0.0, -big)
            top = np.where(disc, self.cardinalities.astype(np.float64) - 1.0, big)
            got = self._bounds = (lo, top, ~disc, bool(disc.all()))
        return got

    def _nan_mask(self, allow_nan: bool | Sequence[str]) -> np.ndarray | None:
        """Columns that may be NaN (None: every one), cached per ``allow_nan``."""
        if allow_nan is True:
            return None
        key = False if allow_nan is False else tuple(allow_nan)
        cache = self.__dict__.setdefault("_nan_masks", {})
        got = cache.get(key)
        if got is None:
            names = () if key is False else set(key)
            got = cache[key] = np.array([v.name in names for v in self.variables])
        return got

    def valid_values(self, X: np.ndarray, allow_nan: bool | Sequence[str] = True) -> bool:
        """One pass over a float64 (rows x variables) array: True when every observed entry is
        finite and every discrete one an integer code in 0..k-1, and NaN appears only where
        ``allow_nan`` permits. The fast twin of :meth:`_check_columns`: numpy passes over the
        whole array, or a loop over Python floats for at most :data:`SMALL_CELLS` cells.

        An entry is valid when it equals itself rounded down (discrete columns only) and
        clamped to its column's ``[lo, top]``: NaN never equals anything, an infinite value is
        clamped to a finite one, a fraction or an out-of-range code moves."""
        if X.size <= SMALL_CELLS:
            return self._valid_small(X, allow_nan)
        return self._valid_vector(X, allow_nan)

    def _tiles(self, allow_nan: bool | Sequence[str]):
        """(rows B, lo, top, cont, may): the column bounds of :meth:`_tables` (and the NaN mask
        of ``allow_nan``, None when every column may be NaN) repeated over B rows, C-contiguous,
        built once per schema (and ``allow_nan``): the operands of the blocked checks."""
        key = True if allow_nan is True else (False if allow_nan is False else tuple(allow_nan))
        cache = self.__dict__.setdefault("_tile_cache", {})
        got = cache.get(key)
        if got is None:
            lo, top, cont, _ = self._tables()
            B = max(1, TILE_CELLS // max(1, len(self)))

            def tile(a):
                return np.ascontiguousarray(np.broadcast_to(a, (B, a.size)))
            may = self._nan_mask(allow_nan)
            got = cache[key] = (B, tile(lo), tile(top), tile(cont),
                                None if may is None else tile(may))
        return got

    def _valid_vector(self, X: np.ndarray, allow_nan: bool | Sequence[str] = True) -> bool:
        """:meth:`valid_values` by numpy passes over blocks of the array against same-shape
        tiles of the column bounds (:meth:`_tiles`; see there)."""
        all_disc = self._tables()[3]
        B, lo, top, cont, may = self._tiles(allow_nan)
        for a in range(0, X.shape[0], B):
            x = X[a:a + B]
            m = x.shape[0]
            t = np.floor(x)
            if not all_disc:
                np.copyto(t, x, where=cont[:m])
            np.maximum(t, lo[:m], out=t)
            np.minimum(t, top[:m], out=t)
            ok = t == x
            if ok.all():
                continue
            nan = np.isnan(x)
            if may is not None:
                nan &= may[:m]
            if not (ok | nan).all():
                return False
        return True

    def _valid_small(self, X: np.ndarray, allow_nan: bool | Sequence[str] = True) -> bool:
        """:meth:`valid_values` for a few cells (one row of a rollout step), as a loop over
        Python floats: cheaper than the numpy calls' fixed costs there; the same decision."""
        lo, top, cont, _ = self._tables()
        may = self._nan_mask(allow_nan)
        cols = self.__dict__.get("_cols")
        if cols is None:
            cols = self._cols = tuple(zip(lo.tolist(), top.tolist(), cont.tolist()))
        nan_ok = [True] * len(cols) if may is None else may.tolist()
        for row in X.tolist():
            for x, (a, b, c), ok_nan in zip(row, cols, nan_ok):
                if math.isnan(x):
                    if not ok_nan:
                        return False
                elif not (a <= x <= b) or (not c and x != math.floor(x)):
                    return False
        return True

    def check_table(self, allow_nan: bool | Sequence[str] = True) -> np.ndarray:
        """The table of the compiled evidence check (``csrc/_ccheck.h``, the kernels' first pass
        over each chunk; the decision of :meth:`valid_values`): 4 blocks of ``len(self)``
        doubles, per column the lowest and the highest valid value (0 and k - 1 for a discrete
        column, the most negative and most positive finite doubles otherwise), 1 for an integer
        code, 1 where NaN is allowed. Read-only, built once per schema and ``allow_nan``."""
        if allow_nan is True:  # the queries' default: one attribute look-up
            got = self.__dict__.get("_check_any_nan")
            if got is not None:
                return got
        key = True if allow_nan is True else (False if allow_nan is False else tuple(allow_nan))
        cache = self.__dict__.setdefault("_check_tables", {})
        got = cache.get(key)
        if got is None:
            lo, top, cont, _ = self._tables()
            may = self._nan_mask(allow_nan)
            nan_ok = np.ones(len(self)) if may is None else may.astype(np.float64)
            got = np.concatenate([lo, top, (~cont).astype(np.float64), nan_ok])
            got.setflags(write=False)
            cache[key] = got
            if key is True:
                self._check_any_nan = got
        return got

    def raise_invalid(self, X: np.ndarray, allow_nan: bool | Sequence[str] = True,
                      what: str = "evidence") -> None:
        """Raise the :class:`DataError` of :meth:`validate_data` for ``X`` (float64, rows x
        variables), which a compiled check (:meth:`check_table`) found invalid: the
        per-variable checks name the first column at fault, its row and what was expected."""
        self._check_columns(X, allow_nan, what)
        raise DataError(f"{what}: the compiled evidence check and the per-variable checks "
                        "disagree (please report this)")  # pragma: no cover - a bug if reached

    def _check_columns(self, X: np.ndarray, allow_nan: bool | Sequence[str], what: str) -> None:
        """The per-variable checks (the slow reference of :meth:`valid_values`): raise
        :class:`DataError` for the first column at fault, naming the variable, the row and what
        was expected (a NaN where a value is required, an infinite value, or a bad code)."""
        nan = np.isnan(X)
        for j, v in enumerate(self.variables):
            col = X[:, j]
            obs = ~nan[:, j]
            may_nan = allow_nan is True or (not isinstance(allow_nan, bool) and v.name in allow_nan)
            if not may_nan and not obs.all():
                row = int(np.argmin(obs))
                raise DataError(f"{what}: variable {v.name!r} is NaN in row {row}, "
                                "where a value is required")
            vals = col[obs]
            if np.isinf(vals).any():
                row = int(np.flatnonzero(obs)[np.argmax(np.isinf(vals))])
                raise DataError(f"{what}: variable {v.name!r} is infinite in row {row}")
            if v.is_discrete and vals.size:
                bad = (vals != np.round(vals)) | (vals < 0) | (vals >= v.k)
                if bad.any():
                    row = int(np.flatnonzero(obs)[np.argmax(bad)])
                    raise DataError(f"{what}: variable {v.name!r} has value {float(col[row])!r} in row "
                                    f"{row}; expected an integer code in 0..{v.k - 1}")

    def validate_data(self, X: Any, *, allow_nan: bool | Sequence[str] = True,
                      what: str = "evidence") -> np.ndarray:
        """Check ``X`` against the schema and return it as a C-contiguous float64 copy.

        ``allow_nan`` is True (any column may be unobserved), False, or the names of the
        columns that may be NaN. One vectorized pass decides (:meth:`valid_values`); only
        when it fails do the per-variable checks run, to raise :class:`DataError` naming the
        first column at fault, its row and what was expected.
        """
        X = np.array(self.as_evidence(X, what), dtype=np.float64, order="C", copy=True)
        if not self.valid_values(X, allow_nan):
            self._check_columns(X, allow_nan, what)
        return X

    def as_evidence(self, X: Any, what: str = "evidence") -> np.ndarray:
        """The first half of :meth:`validate_data`: ``X`` (array, dict of columns or DataFrame;
        one row may be 1-D) as a C-contiguous float64 (rows, variables) array, with its errors
        (shape, columns, dtype), but its values not checked and no copy made when ``X`` already
        is such an array: for the compiled queries, which check the values in their first pass
        over the rows (:meth:`check_table`) and raise :meth:`raise_invalid`'s error."""
        X = self.as_array(X, what=what)
        if X.ndim == 1:
            X = X[None, :]
        if X.ndim != 2:
            raise DataError(f"{what} must be 2-D (rows x {len(self)} variables), got shape {X.shape}")
        if X.shape[1] != len(self):
            raise DataError(f"{what} has {X.shape[1]} columns; the schema has {len(self)} "
                            f"variables {list(self.names)}")
        return X if X.flags.c_contiguous else np.ascontiguousarray(X)

    def as_array(self, X: Any, what: str = "evidence") -> np.ndarray:
        """Accept a numpy array, a dict of columns or a pandas DataFrame (columns by name)."""
        if isinstance(X, np.ndarray) and X.dtype.kind in "biuf":
            return X if X.dtype == np.float64 else X.astype(np.float64)
        if isinstance(X, Mapping) or hasattr(X, "columns"):
            cols = list(X.keys()) if isinstance(X, Mapping) else list(X.columns)
            unknown = [c for c in cols if c not in self._index]
            if unknown:
                raise DataError(f"{what} has unknown columns {unknown}; known: {list(self.names)}")
            if not cols:
                raise DataError(f"{what} has no columns")
            if not isinstance(X, Mapping) and all(
                    isinstance(t, np.dtype) and t.kind in "biuf" for t in X.dtypes) and X.columns.is_unique:
                # a numeric DataFrame: one conversion, then the columns put in schema order
                block = X.to_numpy(dtype=np.float64)
                if cols == list(self.names):
                    return block
                out = np.full((block.shape[0], len(self)), np.nan)
                out[:, [self._index[c] for c in cols]] = block
                return out
            n = None
            out = None
            for name in cols:
                col = _numeric_column(X[name], name, what)
                if n is None:
                    n = col.shape[0]
                    out = np.full((n, len(self)), np.nan)
                elif col.shape[0] != n:
                    raise DataError(f"{what}: column {name!r} has {col.shape[0]} rows, expected {n}")
                out[:, self.index(name)] = col
            return out
        try:
            arr = np.asarray(X)
        except Exception as exc:  # ragged lists etc.
            raise DataError(f"{what} cannot be read as an array: {exc}") from None
        if arr.dtype.kind not in "biuf":
            raise DataError(f"{what} must be numeric (codes for discrete variables), got dtype {arr.dtype}")
        return arr.astype(np.float64, copy=False)

    # ------------------------------------------------------------------ io
    def to_dict(self) -> dict[str, Any]:
        return {"variables": [v.to_dict() for v in self.variables],
                "partial_order": None if self.partial_order is None
                else [list(s) for s in self.partial_order]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Schema":
        try:
            variables = [Variable.from_dict(v) for v in d["variables"]]
        except (KeyError, TypeError) as exc:
            raise SchemaError(f"malformed schema: {exc}") from None
        return cls(variables, d.get("partial_order"))


def _numeric_column(col: Any, name: str, what: str) -> np.ndarray:
    arr = np.asarray(col)
    if arr.ndim != 1:
        raise DataError(f"{what}: column {name!r} must be 1-D, got shape {arr.shape}")
    if arr.dtype.kind == "b":
        arr = arr.astype(np.float64)
    if arr.dtype.kind not in "iuf":
        raise DataError(f"{what}: column {name!r} holds {arr.dtype} values; expected numbers "
                        "(integer codes for discrete variables)")
    return arr.astype(np.float64)
