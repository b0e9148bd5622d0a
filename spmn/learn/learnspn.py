"""LearnSPN (Gens & Domingos, 2013): density estimation by recursive splitting.

A slice (rows x columns) becomes a leaf when it has one column; a product of leaves when it has
fewer than ``min_instances_slice`` rows; a product when its columns fall into groups that the
independence tests find mutually independent (:mod:`spmn.learn.splits`); otherwise a sum whose
children are clusters of its rows (weights = cluster fractions). Leaves: ``Categorical`` with
Laplace smoothing ``(n_v + α) / (n + kα)``, ``Gaussian`` or ``Histogram`` for continuous
variables, and ``Utility`` leaves (the empirical payoff distribution, so expectations are exact).
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, fields
from typing import Any, Mapping, Sequence

import numpy as np

from ..circuit import nodes as N
from ..circuit.circuit import Circuit
from ..data import as_columns, infer_variables, training_matrix
from ..errors import SchemaError
from ..schema import Schema, Variable
from .distributed import gather, is_dask
from .splits import (
    as_generator,
    cluster_rows,
    codes_of,
    dependency_matrix,
    independent_groups,
)

__all__ = ["learn_spn", "LearnOptions", "Table", "SliceLearner", "make_schema"]


@dataclass(frozen=True)
class LearnOptions:
    """Hyper-parameters shared by :func:`learn_spn` and :func:`spmn.learn_spmn`.

    ``min_instances_slice``: below this many rows a slice is fully factorized.
    ``independence``: ``"auto"`` (G-test between discrete columns, RDC otherwise), ``"gtest"``
    or ``"rdc"``; ``threshold``: RDC above which two columns are dependent; ``p_value``: G-test
    significance below which they are. ``clustering``: ``"kmeans"`` or ``"em"`` (naive-Bayes
    mixture) into ``n_clusters`` groups. ``leaf``: ``"histogram"`` or ``"gaussian"`` for
    continuous chance variables; ``alpha``: Laplace smoothing of categorical and histogram
    leaves. ``utility_max_values``: a utility with at most this many distinct payoffs in a slice
    gets a discrete ``Utility`` leaf, else a histogram. ``hist_bins``: bins of histogram leaves
    (``"auto"`` = numpy's rule, at most ``max_bins``). ``min_std``: Gaussian std floor relative
    to the column's global std. ``cluster_sample``: clusterings of larger slices are fitted on
    this many random rows, then every row is assigned.
    """

    min_instances_slice: int = 200
    independence: str = "auto"
    threshold: float = 0.3
    p_value: float = 1e-3
    rdc_features: int = 10
    clustering: str = "em"
    n_clusters: int = 2
    leaf: str = "histogram"
    alpha: float = 0.1
    utility_max_values: int = 64
    hist_bins: Any = "auto"
    max_bins: int = 50
    min_std: float = 1e-3
    cluster_sample: int = 10000

    def __post_init__(self) -> None:
        if int(self.min_instances_slice) < 1:
            raise ValueError(f"min_instances_slice must be >= 1, got {self.min_instances_slice}")
        if int(self.n_clusters) < 2:
            raise ValueError(f"n_clusters must be >= 2, got {self.n_clusters}")
        if self.independence not in ("auto", "gtest", "rdc"):
            raise ValueError(f"independence must be 'auto', 'gtest' or 'rdc', got "
                             f"{self.independence!r}")
        if self.clustering not in ("kmeans", "em"):
            raise ValueError(f"clustering must be 'kmeans' or 'em', got {self.clustering!r}")
        if self.leaf not in ("histogram", "gaussian"):
            raise ValueError(f"leaf must be 'histogram' or 'gaussian', got {self.leaf!r}")
        if not self.alpha >= 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha}")
        if not 0.0 <= self.threshold <= 1.0 or not 0.0 < self.p_value < 1.0:
            raise ValueError("threshold must lie in [0, 1] and p_value in (0, 1)")

    @classmethod
    def split(cls, hyper: Mapping[str, Any]) -> tuple["LearnOptions", dict[str, Any]]:
        """(options from the known keys of ``hyper``, the remaining keys)."""
        names = {f.name for f in fields(cls)}
        opts = cls(**{k: v for k, v in hyper.items() if k in names})
        return opts, {k: v for k, v in hyper.items() if k not in names}


class Table:
    """Training data ready for learning: values, integer codes and a card per column.

    ``card[j] = k`` for discrete columns and for utilities with at most ``utility_max_values``
    distinct payoffs (codes index ``uvalues[j]``); 0 for continuous columns.
    """

    def __init__(self, X: np.ndarray, schema: Schema, opts: LearnOptions) -> None:
        self.X = X
        self.schema = schema
        n, d = X.shape
        self.codes = np.zeros((n, d), np.int32)
        self.card = np.zeros(d, np.int64)
        self.uvalues: dict[int, np.ndarray] = {}
        for j, v in enumerate(schema.variables):
            if v.is_discrete:
                self.codes[:, j] = X[:, j].astype(np.int32)
                self.card[j] = v.k
            else:
                vals, codes = codes_of(X[:, j])
                if v.role == "utility" and vals.size <= opts.utility_max_values:
                    self.codes[:, j] = codes
                    self.card[j] = vals.size
                    self.uvalues[j] = vals
        self.lo = X.min(axis=0)
        self.hi = X.max(axis=0)
        self.std = X.std(axis=0)


class CellProgress:
    """Cells (row, variable) covered by finished leaves: every cell ends in exactly one leaf."""

    def __init__(self, total: int, show: bool | None, desc: str) -> None:
        self.bar = None
        if show is False:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:  # optional dependency
            return
        self.bar = tqdm(total=total, desc=desc, unit="cell", unit_scale=True, leave=False,
                        disable=None if show is None else not show, file=sys.stderr,
                        delay=1.5)

    def update(self, k: int) -> None:
        if self.bar is not None:
            self.bar.update(k)

    def close(self, summary: str | None = None) -> None:
        if self.bar is not None:
            if summary and not self.bar.disable:
                self.bar.write(summary, file=sys.stderr)
            self.bar.close()


# ---------------------------------------------------------------------------- leaves
def _histogram(x: np.ndarray, lo: float, hi: float, opts: LearnOptions, alpha: float):
    """(breaks, densities): numpy's bins over the slice, widened to the column's range
    [lo, hi] by outer bins, smoothed ``(c_j + α) / (n + mα) / width_j``."""
    a, b = float(x.min()), float(x.max())
    if b - a <= 1e-12 * max(1.0, abs(a), abs(b)):
        half = max((hi - lo) * 1e-3, 1e-9 * max(1.0, abs(a)))
        edges = np.array([a - half, a + half])
    else:
        bins = opts.hist_bins
        edges = np.histogram_bin_edges(x, bins=bins)
        if edges.size - 1 > opts.max_bins:
            edges = np.linspace(a, b, opts.max_bins + 1)
    counts = np.histogram(x, bins=edges)[0].astype(np.float64)
    if lo < edges[0]:
        edges = np.r_[lo, edges]
        counts = np.r_[0.0, counts]
    if hi > edges[-1]:
        edges = np.r_[edges, hi]
        counts = np.r_[counts, 0.0]
    widths = np.diff(edges)
    m = counts.size
    dens = (counts + alpha) / (counts.sum() + m * alpha) / widths
    dens /= math.fsum((dens * widths).tolist())
    return edges, dens


def make_leaf(table: Table, j: int, rows: np.ndarray, opts: LearnOptions) -> N.Leaf:
    """The leaf of variable ``j`` fitted to ``rows`` (module docstring)."""
    v = table.schema[j]
    if v.role == "utility":
        return utility_leaf(table, j, rows, opts)
    if v.is_discrete:
        cnt = np.bincount(table.codes[rows, j], minlength=v.k).astype(np.float64)
        p = (cnt + opts.alpha) / (cnt.sum() + v.k * opts.alpha)
        return N.Categorical(v.name, p / math.fsum(p.tolist()))
    x = table.X[rows, j]
    if opts.leaf == "gaussian":
        floor = opts.min_std * (table.std[j] if table.std[j] > 0 else 1.0)
        return N.Gaussian(v.name, float(x.mean()), max(float(x.std()), floor, 1e-300))
    b, d = _histogram(x, table.lo[j], table.hi[j], opts, opts.alpha)
    return N.Histogram(v.name, b, d)


def utility_leaf(table: Table, j: int, rows: np.ndarray, opts: LearnOptions) -> N.Utility:
    """Empirical payoff distribution of ``rows``: discrete values when few, else a histogram."""
    name = table.schema[j].name
    if j in table.uvalues:
        cnt = np.bincount(table.codes[rows, j], minlength=table.card[j]).astype(np.float64)
        keep = cnt > 0
        vals, p = table.uvalues[j][keep], cnt[keep] / cnt.sum()
    else:
        vals, cnt = np.unique(table.X[rows, j], return_counts=True)
        if vals.size > opts.utility_max_values:
            b, d = _histogram(table.X[rows, j], vals[0], vals[-1], opts, 0.0)
            return N.Utility(name, breaks=b, densities=d)
        p = cnt / cnt.sum()
    return N.Utility(name, values=vals, probs=p / math.fsum(p.tolist()))


# ---------------------------------------------------------------------------- recursion
class SliceLearner:
    """LearnSPN over slices of one :class:`Table`; :meth:`learn` returns the sub-circuit."""

    def __init__(self, table: Table, opts: LearnOptions, rng: np.random.Generator,
                 progress: CellProgress | None = None) -> None:
        self.t = table
        self.opts = opts
        self.rng = rng
        self.progress = progress

    def leaf(self, j: int, rows: np.ndarray) -> N.Leaf:
        if self.progress is not None:
            self.progress.update(int(rows.size))
        return make_leaf(self.t, j, rows, self.opts)

    def factorize(self, rows: np.ndarray, cols: Sequence[int]) -> N.Node:
        leaves = [self.leaf(j, rows) for j in cols]
        return leaves[0] if len(leaves) == 1 else N.Product(leaves)

    def dependencies(self, rows: np.ndarray, cols: Sequence[int],
                     strata: np.ndarray | None = None):
        """(dependent?, strength) between the columns ``cols`` on ``rows`` (within ``strata``,
        a code per row, when given)."""
        cols = np.asarray(cols, np.int64)
        t, o = self.t, self.opts
        return dependency_matrix(t.X[np.ix_(rows, cols)], t.codes[np.ix_(rows, cols)],
                                 t.card[cols], method=o.independence, threshold=o.threshold,
                                 p_value=o.p_value, rdc_features=o.rdc_features, seed=self.rng,
                                 strata=strata)

    def learn(self, rows: np.ndarray, cols: Sequence[int]) -> N.Node:
        """LearnSPN on the slice ``rows x cols`` (iterative: no recursion limit)."""
        root: list[N.Node | None] = [None]
        # task: rows, cols, holder list, index in holder, may a product split be tried?
        stack: list[tuple[np.ndarray, list[int], list, int, bool]] = [
            (np.asarray(rows, np.int64), list(cols), root, 0, True)]
        while stack:
            r, c, holder, at, try_split = stack.pop()
            holder[at] = self._step(r, c, try_split, stack)
        return flatten_products(root[0])

    def _step(self, r, c, try_split, stack) -> N.Node:
        o = self.opts
        if len(c) == 1:
            return self.leaf(c[0], r)
        if r.size < o.min_instances_slice:
            return self.factorize(r, c)
        if try_split:
            dep, _ = self.dependencies(r, c)
            groups = independent_groups(dep)
            if len(groups) > 1:
                node = N.Product([None] * len(groups))
                for g_i in range(len(groups) - 1, -1, -1):
                    stack.append((r, [c[i] for i in groups[g_i]], node.children, g_i, False))
                return node
        t = self.t
        cc = np.asarray(c, np.int64)
        parts = cluster_rows(t.X[np.ix_(r, cc)], t.codes[np.ix_(r, cc)], t.card[cc],
                             o.n_clusters, method=o.clustering, seed=self.rng, alpha=o.alpha,
                             sample=o.cluster_sample)
        if parts is None:
            return self.factorize(r, c)
        node = N.Sum([None] * len(parts), [p.size / r.size for p in parts])
        node.weights = node.weights / math.fsum(node.weights.tolist())
        for k in range(len(parts) - 1, -1, -1):
            stack.append((r[parts[k]], c, node.children, k, True))
        return node


def flatten_products(root: N.Node) -> N.Node:
    """Merge products into parent products (a tree, so each node is visited once)."""
    stack = [root]
    while stack:
        nd = stack.pop()
        if isinstance(nd, N.Product):
            kids: list[N.Node] = []
            todo = list(nd.children)
            while todo:
                ch = todo.pop(0)
                if isinstance(ch, N.Product):
                    todo[:0] = ch.children
                else:
                    kids.append(ch)
            nd.children = kids
        stack.extend(nd.children)
    return root


# ---------------------------------------------------------------------------- public
def make_schema(data: Any, schema: Any = None, *, columns: Sequence[str] | None = None,
                decisions: Sequence[str] = (), utilities: Sequence[str] = (),
                partial_order: Sequence[Sequence[str]] | None = None) -> Schema:
    """A :class:`Schema` from a Schema, a list of Variables, a mapping ``{name: kind}``, a list
    of kinds (one per column) or None (kinds inferred from the data; see
    :func:`spmn.data.infer_variables`)."""
    if isinstance(schema, Schema):
        return schema
    if isinstance(schema, (list, tuple)) and schema and \
            all(isinstance(v, Variable) for v in schema):
        return Schema(schema, partial_order)
    cols = as_columns(data, columns)
    if schema is None:
        kinds: Mapping[str, Any] = {}
    elif isinstance(schema, Mapping):
        kinds = schema
    elif isinstance(schema, (list, tuple)):
        if len(schema) != len(cols):
            raise SchemaError(f"{len(schema)} kinds for {len(cols)} columns {list(cols)}")
        kinds = dict(zip(cols, schema))
    else:
        raise SchemaError("schema must be a Schema, a list of Variables, a mapping "
                          f"name -> kind or a list of kinds, got {type(schema).__name__}")
    return Schema(infer_variables(cols, kinds, decisions, utilities), partial_order)


def learn_spn(data: Any, schema: Schema | Sequence[Variable] | Mapping[str, Any] |
              Sequence[str] | None = None, *, columns: Sequence[str] | None = None, seed=None,
              progress: bool | None = None, allow_constant: bool = False,
              **hyper: Any) -> Circuit:
    """Learn a sum-product network for ``p(x)`` with LearnSPN.

    ``data``: array (rows x variables), dict of columns or DataFrame, complete (no NaN).
    ``schema``: a :class:`Schema`, Variables, ``{name: "discrete" | "continuous" | k}``, a
    list of kinds, or None to infer kinds (integer codes -> discrete). ``columns`` names the
    columns of a bare array (default ``x0, x1, ...``). Hyper-parameters: the fields of
    :class:`LearnOptions` (``min_instances_slice=200, independence="auto", threshold=0.3,
    p_value=1e-3, clustering="em", n_clusters=2, leaf="histogram", alpha=0.1`` ...).
    ``seed`` (int or Generator) makes the result deterministic; ``progress`` shows a tqdm bar
    (None: only on a terminal) and the summary after. A constant column raises
    :class:`spmn.DataError` unless ``allow_constant``. A dask collection is gathered into
    memory with an :class:`~spmn.errors.InMemoryWarning`.
    """
    if is_dask(data):  # clustering is no count statistic: gathered, with a warning
        data = gather(data, "learn_spn")
    opts, extra = LearnOptions.split(hyper)
    if extra:
        raise TypeError(f"learn_spn got unknown hyper-parameters {sorted(extra)}; known: "
                        f"{[f.name for f in fields(LearnOptions)]}")
    sch = make_schema(data, schema, columns=columns)
    if sch.decisions:
        names = [v.name for v in sch.decisions]
        raise SchemaError(f"learn_spn learns densities; decisions {names} "
                          "need learn_spmn")
    X = training_matrix(data, sch, allow_constant=allow_constant)
    table = Table(X, sch, opts)
    bar = CellProgress(X.size, progress, "learn_spn")
    learner = SliceLearner(table, opts, as_generator(seed), bar)
    root = learner.learn(np.arange(X.shape[0]), list(range(X.shape[1])))
    circuit = Circuit(root, sch)
    bar.close(str(circuit.summary()) if progress else None)
    return circuit
