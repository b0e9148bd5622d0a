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
from .distributed import is_dask
from .slices import (  # noqa: F401 (Table, make_leaf, utility_leaf: re-exported)
    MemSlice,
    Table,
    Task,
    answer_in_memory,
    base_seed,
    make_leaf,
    node_rng,
    run_tasks,
    utility_leaf,
)
from .splits import independent_groups

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
    their this many rows of smallest hash of (seed, slice, global row index), then every row
    is assigned (any partitioning of the rows picks the same ones; None: whole slices).
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


# ---------------------------------------------------------------------------- recursion
class SliceLearner:
    """LearnSPN over slices (:mod:`spmn.learn.slices`): :meth:`learn` gives the task of a
    sub-circuit, for :func:`~spmn.learn.slices.run_tasks` to run. ``table`` holds the column
    facts (cards, payoff values, ranges); the rows come with the slices."""

    def __init__(self, table: Table, opts: LearnOptions, base: int,
                 progress: CellProgress | None = None) -> None:
        self.t = table
        self.opts = opts
        self.base = base
        self.progress = progress

    def leaf(self, st: Any, j: int, quiet: bool = False) -> N.Leaf:
        if self.progress is not None and not quiet:
            self.progress.update(st.n)
        return st.leaf(j)

    def factorize(self, st: Any, cols: Sequence[int], quiet: bool = False) -> N.Node:
        leaves = [self.leaf(st, j, quiet) for j in cols]
        return leaves[0] if len(leaves) == 1 else N.Product(leaves)

    def learn(self, sl: Any, cols: Sequence[int], path: tuple[int, ...] = (),
              quiet: bool = False) -> Task:
        """The task of LearnSPN on the slice ``sl`` x ``cols``; ``path`` names the node (its
        random stream); ``quiet``: its cells are not counted by the progress bar."""
        return Task(self._step, sl, list(cols), True, tuple(path), quiet)

    def _step(self, sl, c, try_split, path, quiet):
        (st,) = yield [sl]
        sl, o = st.slice, self.opts
        if len(c) == 1:
            return self.leaf(st, c[0], quiet)
        if st.n < o.min_instances_slice:
            return self.factorize(st, c, quiet)
        rng = node_rng(self.base, path)
        if try_split:
            dep, _ = st.dependencies(c, None, rng)
            groups = independent_groups(dep)
            if len(groups) > 1:
                return N.Product([Task(self._step, sl, [c[i] for i in g], False, (*path, gi),
                                       quiet) for gi, g in enumerate(groups)])
        model, labels = st.fit_clusters(c, rng, self.base)
        kids = yield sl.partition(model, c, labels, [(*path, k) for k in range(o.n_clusters)])
        live = sorted((s for s in kids if s.n), key=lambda s: (-s.n, s.first))
        if len(live) < 2:
            return self.factorize(st, c, quiet)
        w = np.array([s.n / st.n for s in live])
        return N.Sum([Task(self._step, s.slice, c, True, s.slice.key, quiet) for s in live],
                     w / math.fsum(w.tolist()))


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
              progress: bool | None = None, allow_constant: bool = False, client: Any = None,
              **hyper: Any) -> Circuit:
    """Learn a sum-product network for ``p(x)`` with LearnSPN.

    ``data``: array (rows x variables), dict of columns or DataFrame, complete (no NaN); or a
    dask DataFrame / 2-D dask array (``columns=`` names it) / dict of dask arrays, e.g.
    ``dask.dataframe.read_parquet(...)``. ``schema``: a :class:`Schema`, Variables,
    ``{name: "discrete" | "continuous" | k}``, a list of kinds, or None to infer kinds (integer
    codes -> discrete). ``columns`` names the columns of a bare array (default ``x0, x1,
    ...``). Hyper-parameters: the fields of :class:`LearnOptions` (``min_instances_slice=200,
    independence="auto", threshold=0.3, p_value=1e-3, clustering="em", n_clusters=2,
    leaf="histogram", alpha=0.1`` ...). ``seed`` (int or Generator) makes the result
    deterministic: each node draws from its own stream, so the order nodes are learned in does
    not matter. ``progress`` shows a tqdm bar (None: only on a terminal) and the summary after.
    A constant column raises :class:`spmn.DataError` unless ``allow_constant``.

    A dask collection of discrete columns is learned from counts per partition on the
    ``client``'s cluster (else the active client, else dask's scheduler): one pass per level
    of the circuit, slices of at most ``cluster_sample`` rows gathered and learned in memory,
    the same circuit as the in-memory fit (:mod:`spmn.learn.dask_spn`). With continuous
    columns, ``independence="rdc"`` or ``cluster_sample=None`` it is gathered into memory
    with an :class:`~spmn.errors.InMemoryWarning`.
    """
    opts, extra = LearnOptions.split(hyper)
    if extra:
        raise TypeError(f"learn_spn got unknown hyper-parameters {sorted(extra)}; known: "
                        f"{[f.name for f in fields(LearnOptions)]}")
    src = None
    if is_dask(data):
        from .dask_spn import DaskSource

        src = DaskSource(data, columns, client, opts, _utility_names(schema))
        data = src.proxy()
    sch = make_schema(data, schema, columns=columns)
    if sch.decisions:
        names = [v.name for v in sch.decisions]
        raise SchemaError(f"learn_spn learns densities; decisions {names} "
                          "need learn_spmn")
    if src is not None:
        table = src.prepare(sch, allow_constant, "learn_spn")
        if table is None:
            data = src.gather("learn_spn")
            src = None
    if src is None:
        X = training_matrix(data, sch, allow_constant=allow_constant)
        table = Table(X, sch, opts)
    n, d = (src.n if src is not None else table.X.shape[0]), len(sch)
    bar = CellProgress(n * d, progress, "learn_spn")
    learner = SliceLearner(table, opts, base_seed(seed), bar)
    if src is None:
        root, answer = MemSlice(table, np.arange(n), ()), answer_in_memory(opts)
    else:
        root, answer = src.root(), src.answer(learner.base)
    known = (lambda r: True) if src is None else src.known
    circuit = Circuit(flatten_products(run_tasks(learner.learn(root, list(range(d))), answer,
                                                 known)), sch)
    bar.close(str(circuit.summary()) if progress else None)
    return circuit


def _utility_names(schema: Any) -> list[str]:
    """Utilities a schema argument declares (their payoffs are counted by a dask scan)."""
    vs = schema.variables if isinstance(schema, Schema) else schema
    if isinstance(vs, (list, tuple)):
        return [v.name for v in vs if isinstance(v, Variable) and v.role == "utility"]
    return []
