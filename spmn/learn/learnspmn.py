"""LearnSPMN: structure learning of a sum-product-max network over a partial order.

The partial order ``I_0 ≺ D_1 ≺ I_1 ≺ ... ≺ D_m ≺ I_m`` is followed level by level:

- a **decision** set becomes a ``Max`` node with one child per value of the decision in the
  schema; child ``d`` is learned on the rows with ``D = d``. A value the data never show
  (``unseen=``): ``"pessimistic"`` (default) learns that child on all rows of the context (the
  decision marginalized) with every utility replaced by the constant ``min - (max - min)`` of
  that utility's payoffs in the data (``min - 1`` if they are all equal): strictly worse than
  any outcome seen, so the policy never picks a decision without data while one with data
  exists (not even on a tie), and every number stays finite (no NaN, whatever the batch);
  ``"pooled"`` keeps the pooled utilities (assumes the decision has no effect); ``"error"``
  raises :class:`spmn.DataError`.
- a **chance** set ``I_k`` with decisions below: variables that the independence tests find
  independent of everything later become product factors (free LearnSPN sub-circuits); the
  others are split **deterministically** on observed values, the variable most dependent on
  what follows first: one branch per observed code of a discrete variable (a one-hot leaf),
  quantile intervals of a continuous one (a histogram leaf confined to the interval); weights
  are the branch frequencies. Such a sum is what a decision may see (DESIGN.md, "Determinism
  above decisions"): latent clustering there would let the decision see the cluster and
  overstate the MEU. Slices under ``min_instances_slice`` rows factorize the set instead.
- after the last decision: LearnSPN (:mod:`spmn.learn.learnspn`) on the remaining chance and
  utility variables; utilities become ``Utility`` leaves with the empirical payoff
  distribution, so ``E[U | context, decisions]`` is exact for the learned structure.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from ..circuit import nodes as N
from ..circuit.circuit import Circuit
from ..data import as_columns, infer_variables, training_matrix
from ..errors import DataError, SchemaError
from ..schema import Schema, Variable
from .distributed import is_dask
from .learnspn import CellProgress, LearnOptions, SliceLearner, flatten_products
from .slices import (
    MemSlice,
    Table,
    Task,
    answer_in_memory,
    base_seed,
    node_rng,
    run_tasks,
)
from .splits import independent_groups

__all__ = ["learn_spmn", "spmn_schema", "empirical_meu"]

UNSEEN = ("pessimistic", "pooled", "error")


def _names(x: str | Sequence[str] | None) -> list[str]:
    if x is None:
        return []
    return [x] if isinstance(x, str) else list(x)


def spmn_schema(data: Any, partial_order: Sequence[Sequence[str]] | None,
                decisions: str | Sequence[str] | None, utility: str | Sequence[str] | None, *,
                schema: Schema | Sequence[Variable] | None = None,
                kinds: Mapping[str, Any] | None = None,
                columns: Sequence[str] | None = None) -> Schema:
    """The schema of a decision problem, checked: every decision and utility in the data,
    utilities after the last decision, a partial order that names each variable once."""
    decs, utils = _names(decisions), _names(utility)
    if schema is not None:
        sch = schema if isinstance(schema, Schema) else Schema(schema, partial_order)
        given = None if partial_order is None else tuple(tuple(s) for s in partial_order)
        if given is not None and sch.partial_order != given:
            sch = Schema(sch.variables, partial_order)
        for name in decs:
            if name not in sch or sch[name].role != "decision":
                raise SchemaError(f"decision {name!r} is not a decision variable of the schema")
        for name in utils:
            if name not in sch or sch[name].role != "utility":
                raise SchemaError(f"utility {name!r} is not a utility variable of the schema")
    else:
        if partial_order is None:
            raise SchemaError("learn_spmn needs a partial_order (information sets, earliest "
                              "first) or a schema that has one")
        if _is_array(data) and columns is None:
            raise DataError("data is a bare array: pass columns= (its column names in order) "
                            "or schema=")
        cols = as_columns(data, columns)
        for role, names in (("decision", decs), ("utility", utils)):
            for name in names:
                if name not in cols:
                    raise DataError(f"{role} {name!r} is absent from the data; columns: "
                                    f"{list(cols)}")
        sch = Schema(infer_variables(cols, kinds, decs, utils), partial_order)
    if sch.partial_order is None:
        raise SchemaError("learn_spmn needs a partial_order")
    if not sch.decisions:
        raise SchemaError("learn_spmn needs at least one decision variable")
    if not sch.utilities:
        raise SchemaError("learn_spmn needs a utility variable (utility=...)")
    last = max(sch.rank(v.name) for v in sch.decisions)
    for u in sch.utilities:
        if sch.rank(u.name) < last:
            raise SchemaError(f"utility {u.name!r} is placed before decision "
                              f"{sch.ordered_decisions()[-1]!r}; utilities must come after the "
                              "last decision in the partial order")
    return sch


def _levels(schema: Schema) -> list[tuple[str, list[int]]]:
    """(kind, columns) per level; consecutive chance sets merged (only decisions separate)."""
    out: list[tuple[str, list[int]]] = []
    for group in schema.partial_order:
        cols = [schema.index(n) for n in group]
        kind = "decision" if schema[group[0]].role == "decision" else "chance"
        if kind == "chance" and out and out[-1][0] == "chance":
            out[-1][1].extend(cols)
        else:
            out.append((kind, cols))
    return out


class _Builder:
    """LearnSPMN as tasks (:mod:`spmn.learn.slices`): every method taking a slice is a step
    that reads the slice's statistics and returns a node whose children are further steps;
    ``path`` names the node (its random stream), ``quiet``: cells not counted (pooled)."""

    def __init__(self, table: Table, opts: LearnOptions, base: int, progress, unseen: str,
                 bins: int) -> None:
        self.t = table
        self.opts = opts
        self.spn = SliceLearner(table, opts, base, progress)
        self.levels = _levels(table.schema)
        self.last_dec = max(i for i, (k, _) in enumerate(self.levels) if k == "decision")
        self.unseen = unseen
        self.bins = bins
        self.utils = [j for j, v in enumerate(table.schema.variables) if v.role == "utility"]
        # a full payoff range below the worst payoff in the data (1 below if all are equal)
        self.worst = {j: float(table.lo[j] - ((table.hi[j] - table.lo[j]) or 1.0))
                      for j in self.utils}
        # the columns a slice at level li can be asked about (what a dask slice counts)
        self.track = [sorted(j for _, cols in self.levels[li:] for j in cols)
                      for li in range(len(self.levels))]

    def _count(self, k: int, quiet: bool) -> None:
        if self.spn.progress is not None and not quiet:
            self.spn.progress.update(k)

    def after(self, li: int) -> list[int]:
        return [j for _, cols in self.levels[li + 1:] for j in cols]

    # -------------------------------------------------------------- levels
    def level(self, sl, li: int, pess: dict | None, path: tuple, quiet: bool) -> Task:
        kind, cols = self.levels[li]
        if kind == "decision":
            return Task(self.decide, sl, li, 0, pess, path, quiet)
        return Task(self.chance, sl, li, list(cols), pess, False, path, quiet)

    def free(self, sl, cols: list[int], pess: dict | None, path: tuple, quiet: bool):
        """After the last decision: LearnSPN; pessimistic utilities are constants."""
        if pess is None:
            return self.spn.learn(sl, cols, path, quiet)
        chance = [j for j in cols if j not in pess]
        kids = [self.spn.learn(sl, chance, (*path, 0), quiet)] if chance else []
        kids += [N.Utility.constant(self.t.schema[j].name, pess[j]) for j in cols if j in pess]
        return kids[0] if len(kids) == 1 else N.Product(kids)

    def decide(self, sl, li: int, k: int, pess: dict | None, path: tuple, quiet: bool):
        cols = self.levels[li][1]
        if k == len(cols):
            return self.level(sl, li + 1, pess, path, quiet)
        j = cols[k]
        var = self.t.schema[j]
        (st,) = yield [sl]
        sl = st.slice
        self._count(st.n, quiet)
        seen = st.counts(j) > 0
        kids = []
        for v in range(var.k):
            p = (*path, v)
            if seen[v]:
                kids.append(Task(self.decide, sl.where(j, v, p, self.track[li]), li, k + 1,
                                 pess, p, quiet))
            else:
                kids.append(self.missing_value(sl, st.n, li, k, pess, var, v, p))
        return N.Max(var.name, kids)

    def missing_value(self, sl, n: int, li, k, pess, var: Variable, v: int, path) -> Task:
        """The child of a decision value the context's rows never show (module docstring);
        its cells are not counted again (they are the context's)."""
        if self.unseen == "error":
            raise DataError(f"decision {var.name!r} never takes value {v} in a context of "
                            f"{n} rows; pass unseen='pessimistic' or 'pooled'")
        if self.unseen == "pessimistic":
            pess = {j: self.worst[j] for j in self.utils}
        return Task(self.decide, sl, li, k + 1, pess, path, True)

    def chance(self, sl, li: int, pending: list[int], pess: dict | None, tested: bool,
               path: tuple, quiet: bool):
        if li > self.last_dec:
            return self.free(sl, pending + self.after(li), pess, path, quiet)
        if not pending:
            return self.level(sl, li + 1, pess, path, quiet)
        (st,) = yield [sl]
        sl = st.slice
        if st.n < self.opts.min_instances_slice:
            return N.Product([*(self.spn.leaf(st, j, quiet) for j in pending),
                              self.level(sl, li + 1, pess, path, quiet)])
        below = [j for j in self.after(li) if j not in self.utils or pess is None]
        cols = pending + below
        rng = node_rng(self.spn.base, path)
        dep, strength = st.dependencies(cols, None, rng)
        # given the later decisions too: with random decisions an observation can matter only
        # through its interaction with a decision (u = f(x, d)) and look independent of u
        later = [j for kind, cs in self.levels[li + 1:] if kind == "decision" for j in cs]
        dep_s, strength_s = st.dependencies(cols, later, rng)
        dep, strength = dep | dep_s, np.maximum(strength, strength_s)
        glue = list(range(len(pending), len(cols)))
        groups = independent_groups(dep, glue)
        main = next(g for g in groups if glue[0] in g)
        others = [g for g in groups if glue[0] not in g]
        if others and not tested:
            keep = [cols[i] for i in main if i < len(pending)]
            kids: list = [self.spn.learn(sl, [cols[i] for i in g], (*path, gi), quiet)
                          for gi, g in enumerate(others)]
            kids.append(Task(self.chance, sl, li, keep, pess, True, (*path, len(others)),
                             quiet))
            return N.Product(kids)
        score = [float(strength[i, glue].max()) for i in range(len(pending))]
        at = int(np.argmax(score))  # first maximum: partial-order order breaks ties
        return self.split(st, li, pending, pending[at], pess, path, quiet)

    def split(self, st, li, pending, j, pess, path, quiet) -> N.Node:
        """Deterministic sum on variable ``j``: one branch per observed value / interval."""
        rest = [c for c in pending if c != j]
        var = self.t.schema[j]
        self._count(st.n, quiet)
        sl = st.slice
        if var.is_discrete:
            values = np.flatnonzero(st.counts(j))
            cnt = st.counts(j)[values]
            parts = [(sl.where(j, int(v), (*path, int(v)), self.track[li]),
                      N.Categorical(var.name, np.eye(var.k)[v]), float(c), (*path, int(v)))
                     for v, c in zip(values, cnt)]
        else:
            parts = [(sub, leaf, float(sub.rows.size), (*path, i))
                     for i, (sub, leaf) in enumerate(self._intervals(st, j, path))]
        kids = [N.Product([leaf, Task(self.chance, sub, li, rest, pess, False, p, quiet)])
                for sub, leaf, _, p in parts]
        if len(kids) == 1:
            return kids[0]
        w = np.array([c for _, _, c, _ in parts], np.float64) / st.n
        return N.Sum(kids, w / math.fsum(w.tolist()))

    def _intervals(self, st, j, path):
        """Quantile intervals of continuous ``j`` (in memory): (slice, histogram confined to
        the interval); interval ``i`` is ``[c_i, c_{i+1})`` and ends just below ``c_{i+1}``."""
        x = st.values(j)
        rows, t = st.slice.rows, st.slice.table
        qs = np.quantile(x, np.linspace(0.0, 1.0, self.bins + 1)[1:-1])
        cuts = np.unique(qs[(qs > x.min()) & (qs <= x.max())])
        idx = np.searchsorted(cuts, x, side="right")
        lo, hi = self.t.lo[j], self.t.hi[j]
        bounds = np.r_[lo, cuts, hi]
        name = self.t.schema[j].name
        out = []
        for i in range(cuts.size + 1):
            sub = rows[idx == i]
            if not sub.size:
                continue
            a = bounds[i]
            b = bounds[i + 1] if i == cuts.size else np.nextafter(bounds[i + 1], -np.inf)
            out.append((MemSlice(t, sub, (*path, i)),
                        _interval_histogram(t.X[sub, j], a, b, self.opts, name)))
        return out


def _interval_histogram(x: np.ndarray, a: float, b: float, opts: LearnOptions,
                        name: str) -> N.Histogram:
    """Histogram of ``x`` with support exactly ``[a, b]`` (smoothed by ``opts.alpha``)."""
    if b <= a:
        b = np.nextafter(a, np.inf)
    inner = np.histogram_bin_edges(x, bins=opts.hist_bins) if x.max() > x.min() else np.r_[a, b]
    if inner.size - 1 > opts.max_bins:
        inner = np.linspace(x.min(), x.max(), opts.max_bins + 1)
    edges = np.unique(np.clip(np.r_[a, inner, b], a, b))
    counts = np.histogram(np.clip(x, a, b), bins=edges)[0].astype(np.float64)
    widths = np.diff(edges)
    dens = (counts + opts.alpha) / (counts.sum() + counts.size * opts.alpha) / widths
    dens = dens / math.fsum((dens * widths).tolist())
    return N.Histogram(name, edges, dens)


def learn_spmn(data: Any, partial_order: Sequence[Sequence[str]] | None = None,
               decisions: str | Sequence[str] | None = None,
               utility: str | Sequence[str] | None = None, *,
               schema: Schema | Sequence[Variable] | None = None,
               kinds: Mapping[str, Any] | None = None, columns: Sequence[str] | None = None,
               unseen: str = "pessimistic", continuous_bins: int = 4, seed=None,
               progress: bool | None = None, allow_constant: bool = False,
               client: Any = None, **hyper: Any) -> Circuit:
    """Learn a sum-product-max network from decision data with LearnSPMN (module docstring).

    ``data``: array, dict of columns or DataFrame, complete. ``partial_order``: information
    sets earliest first, each decision in a set of its own kind; ``decisions``, ``utility``:
    names (a str or a list). Variables are read from ``schema`` or inferred (``kinds``:
    ``{name: "discrete" | "continuous" | k}``; a decision's k defaults to its largest code + 1).
    ``unseen``: treatment of decision values absent from a context (module docstring).
    ``continuous_bins``: intervals of a continuous variable split above a decision. Other
    hyper-parameters are those of :class:`LearnOptions` (``min_instances_slice``,
    ``independence``, ``threshold``, ``p_value``, ``clustering``, ``n_clusters``, ``leaf``,
    ``alpha`` ...). ``seed`` makes it deterministic; ``progress`` shows a tqdm bar (None: only
    on a terminal) and the summary after. The result has passed ``Circuit.validate()``.

    ``data`` may be a dask collection (as :func:`~spmn.learn.learn_spn` takes it): discrete
    variables and utilities of few payoffs are learned from counts per partition on the
    ``client``'s cluster, one pass per level, the same circuit as in memory; with continuous
    variables it is gathered into memory with an :class:`~spmn.errors.InMemoryWarning`.
    """
    opts, extra = LearnOptions.split(hyper)
    if extra:
        raise TypeError(f"learn_spmn got unknown hyper-parameters {sorted(extra)}")
    if unseen not in UNSEEN:
        raise ValueError(f"unseen must be one of {UNSEEN}, got {unseen!r}")
    if int(continuous_bins) < 2:
        raise ValueError(f"continuous_bins must be >= 2, got {continuous_bins}")
    src = None
    if is_dask(data):
        from .dask_spn import DaskSource

        given = [v.name for v in schema if v.role == "utility"] if schema is not None else []
        src = DaskSource(data, columns, client, opts, _names(utility) + given)
        data = src.proxy()
    sch = spmn_schema(data, partial_order, decisions, utility, schema=schema, kinds=kinds,
                      columns=columns)
    if src is not None:
        table = src.prepare(sch, allow_constant, "learn_spmn")
        if table is None:
            data = src.gather("learn_spmn")
            src = None
    if src is None:
        if schema is None and _is_array(data):
            data = as_columns(data, columns)
        X = training_matrix(data, sch, allow_constant=allow_constant)
        table = Table(X, sch, opts)
    n, d = (src.n if src is not None else table.X.shape[0]), len(sch)
    bar = CellProgress(n * d, progress, "learn_spmn")
    builder = _Builder(table, opts, base_seed(seed), bar, unseen, int(continuous_bins))
    if src is None:
        root, answer = MemSlice(table, np.arange(n), ()), answer_in_memory(opts)
    else:
        root, answer = src.root(), src.answer(builder.spn.base)
    known = (lambda r: True) if src is None else src.known
    circuit = Circuit(flatten_products(run_tasks(builder.level(root, 0, None, (), False),
                                                 answer, known)), sch)
    bar.close(str(circuit.summary()) if progress else None)
    return circuit


def _is_array(data: Any) -> bool:
    return not isinstance(data, Mapping) and not hasattr(data, "columns")


# ---------------------------------------------------------------------------- reference
def empirical_meu(data: Any, schema: Schema, weights: np.ndarray | None = None, *,
                  return_values: bool = False):
    """The plug-in MEU of the empirical distribution: ``Σ_{i_0} p̂(i_0) max_{d_1} Σ_{i_1}
    p̂(i_1 | i_0, d_1) ... max_{d_m} Ê[U | i_0, d_1, ..., d_m]`` by counting (discrete
    variables before the last decision; decision values absent from a context are skipped).

    The tabular decision-tree estimate that a fully deterministic SPMN reaches. ``weights``
    (per row, e.g. bootstrap multiplicities) make it a weighted estimate; a 2-D array
    (replicates x rows) gives a list, one result per replicate. With ``return_values``:
    ``(meu, names, values)`` where ``values[prefix]`` is the value of every observed prefix of
    codes of ``names`` (the variables up to the last decision, in partial order):
    ``values[(i_0, d_1)]`` is the value of taking ``d_1`` after seeing ``i_0``.
    """
    if not schema.decisions or not schema.utilities or schema.partial_order is None:
        raise SchemaError("empirical_meu needs decisions, a utility and a partial order")
    X = training_matrix(data, schema, allow_constant=True)
    levels = _levels(schema)
    last = max(i for i, (k, _) in enumerate(levels) if k == "decision")
    seq = [j for _, cols in levels[:last + 1] for j in cols]
    for j in seq:
        if not schema[j].is_discrete:
            raise SchemaError(f"empirical_meu needs discrete variables before the last "
                              f"decision; {schema[j].name!r} is continuous")
    u = np.zeros(X.shape[0])
    for j, v in enumerate(schema.variables):
        if v.role == "utility":
            u += X[:, j]
    key = np.zeros(X.shape[0], np.int64)
    for j in seq:
        key = key * schema[j].k + X[:, j].astype(np.int64)
    uk, inv = np.unique(key, return_inverse=True)
    W = np.ones((1, X.shape[0])) if weights is None else np.asarray(weights, np.float64)
    out = [_tabular(uk, inv, u, w, seq, schema, return_values) for w in np.atleast_2d(W)]
    return out if W.ndim == 2 and weights is not None else out[0]


def _tabular(uk, inv, u, w, seq, schema, return_values):
    """Backward induction over the prefixes of the observed keys ``uk`` (see empirical_meu)."""
    sw = np.bincount(inv, w, minlength=uk.size)
    val = np.bincount(inv, w * u, minlength=uk.size) / np.where(sw > 0, sw, 1.0)
    ok = sw > 0
    uk, val, sw = uk[ok], val[ok], sw[ok]
    table: dict[tuple[int, ...], float] = {}
    for i in range(len(seq) - 1, -1, -1):
        if return_values:
            for key, value in zip(uk.tolist(), val.tolist()):
                table[_digits(key, seq[:i + 1], schema)] = value
        j = seq[i]
        parent = uk // schema[j].k
        pk, pinv = np.unique(parent, return_inverse=True)
        if schema[j].role == "decision":
            v = np.full(pk.size, -np.inf)
            np.maximum.at(v, pinv, val)
        else:
            v = np.bincount(pinv, sw * val) / np.bincount(pinv, sw)
        sw = np.bincount(pinv, sw)
        uk, val = pk, v
    meu = float(val[0])
    if return_values:
        table[()] = meu
        return meu, [schema[j].name for j in seq], table
    return meu


def _digits(key: int, cols: list[int], schema: Schema) -> tuple[int, ...]:
    out = []
    for j in reversed(cols):
        key, r = divmod(key, schema[j].k)
        out.append(r)
    return tuple(reversed(out))
