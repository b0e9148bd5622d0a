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
from .distributed import gather, is_dask
from .learnspn import CellProgress, LearnOptions, SliceLearner, Table, flatten_products
from .splits import as_generator, independent_groups

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
    def __init__(self, table: Table, opts: LearnOptions, rng, progress, unseen: str,
                 bins: int) -> None:
        self.t = table
        self.opts = opts
        self.spn = SliceLearner(table, opts, rng, progress)
        self.levels = _levels(table.schema)
        self.last_dec = max(i for i, (k, _) in enumerate(self.levels) if k == "decision")
        self.unseen = unseen
        self.bins = bins
        self.utils = [j for j, v in enumerate(table.schema.variables) if v.role == "utility"]
        # a full payoff range below the worst payoff in the data (1 below if all are equal)
        self.worst = {j: float(table.lo[j] - ((table.hi[j] - table.lo[j]) or 1.0))
                      for j in self.utils}

    def _count(self, k: int) -> None:
        if self.spn.progress is not None:
            self.spn.progress.update(k)

    def after(self, li: int) -> list[int]:
        return [j for _, cols in self.levels[li + 1:] for j in cols]

    # -------------------------------------------------------------- levels
    def level(self, rows: np.ndarray, li: int, pess: dict | None) -> N.Node:
        kind, cols = self.levels[li]
        if kind == "decision":
            return self.decide(rows, li, 0, pess)
        return self.chance(rows, li, list(cols), pess, tested=False)

    def free(self, rows: np.ndarray, cols: list[int], pess: dict | None) -> N.Node:
        """After the last decision: LearnSPN; pessimistic utilities are constants."""
        if pess is None:
            return self.spn.learn(rows, cols)
        chance = [j for j in cols if j not in pess]
        kids = [self.spn.learn(rows, chance)] if chance else []
        kids += [N.Utility.constant(self.t.schema[j].name, pess[j]) for j in cols if j in pess]
        return kids[0] if len(kids) == 1 else flatten_products(N.Product(kids))

    def decide(self, rows: np.ndarray, li: int, k: int, pess: dict | None) -> N.Node:
        cols = self.levels[li][1]
        if k == len(cols):
            return self.level(rows, li + 1, pess)
        j = cols[k]
        var = self.t.schema[j]
        self._count(rows.size)
        x = self.t.codes[rows, j]
        kids = []
        for v in range(var.k):
            sub = rows[x == v]
            if sub.size:
                kids.append(self.decide(sub, li, k + 1, pess))
            else:
                kids.append(self.missing_value(rows, li, k, pess, var, v))
        return N.Max(var.name, kids)

    def missing_value(self, rows, li, k, pess, var: Variable, v: int) -> N.Node:
        """The child of a decision value the context's rows never show (module docstring)."""
        if self.unseen == "error":
            raise DataError(f"decision {var.name!r} never takes value {v} in a context of "
                            f"{rows.size} rows; pass unseen='pessimistic' or 'pooled'")
        if self.unseen == "pessimistic":
            pess = {j: self.worst[j] for j in self.utils}
        saved, self.spn.progress = self.spn.progress, None  # pooled cells are counted once
        try:
            return self.decide(rows, li, k + 1, pess)
        finally:
            self.spn.progress = saved

    def chance(self, rows: np.ndarray, li: int, pending: list[int], pess: dict | None,
               tested: bool) -> N.Node:
        if li > self.last_dec:
            return self.free(rows, pending + self.after(li), pess)
        if not pending:
            return self.level(rows, li + 1, pess)
        if rows.size < self.opts.min_instances_slice:
            return flatten_products(N.Product([*(self.spn.leaf(j, rows) for j in pending),
                                       self.level(rows, li + 1, pess)]))
        below = [j for j in self.after(li) if j not in self.utils or pess is None]
        cols = pending + below
        dep, strength = self.spn.dependencies(rows, cols)
        # given the later decisions too: with random decisions an observation can matter only
        # through its interaction with a decision (u = f(x, d)) and look independent of u
        later = [j for kind, cs in self.levels[li + 1:] if kind == "decision" for j in cs]
        strata = np.zeros(rows.size, np.int64)
        for j in later:
            strata = strata * self.t.card[j] + self.t.codes[rows, j]
        dep_s, strength_s = self.spn.dependencies(rows, cols, strata)
        dep, strength = dep | dep_s, np.maximum(strength, strength_s)
        glue = list(range(len(pending), len(cols)))
        groups = independent_groups(dep, glue)
        main = next(g for g in groups if glue[0] in g)
        others = [g for g in groups if glue[0] not in g]
        if others and not tested:
            keep = [cols[i] for i in main if i < len(pending)]
            kids = [self.spn.learn(rows, [cols[i] for i in g]) for g in others]
            kids.append(self.chance(rows, li, keep, pess, tested=True))
            return flatten_products(N.Product(kids))
        score = [float(strength[i, glue].max()) for i in range(len(pending))]
        at = int(np.argmax(score))  # first maximum: partial-order order breaks ties
        return self.split(rows, li, pending, pending[at], pess)

    def split(self, rows, li, pending, j, pess) -> N.Node:
        """Deterministic sum on variable ``j``: one branch per observed value / interval."""
        rest = [c for c in pending if c != j]
        var = self.t.schema[j]
        self._count(rows.size)
        if var.is_discrete:
            x = self.t.codes[rows, j]
            values = np.flatnonzero(np.bincount(x, minlength=var.k))
            parts = [(rows[x == v], N.Categorical(var.name, np.eye(var.k)[v])) for v in values]
        else:
            parts = self._intervals(rows, j)
        kids = [flatten_products(N.Product([leaf, self.chance(sub, li, rest, pess, False)]))
                for sub, leaf in parts]
        if len(kids) == 1:
            return kids[0]
        w = np.array([sub.size for sub, _ in parts], np.float64) / rows.size
        return N.Sum(kids, w / math.fsum(w.tolist()))

    def _intervals(self, rows, j):
        """Quantile intervals of continuous ``j``: (rows, histogram confined to the interval);
        interval ``i`` is ``[c_i, c_{i+1})`` and ends just below ``c_{i+1}`` (disjoint)."""
        x = self.t.X[rows, j]
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
            out.append((sub, _interval_histogram(self.t.X[sub, j], a, b, self.opts, name)))
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
               **hyper: Any) -> Circuit:
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
    on a terminal) and the summary after. The result has passed ``Circuit.validate()``. A
    dask collection is gathered into memory with an :class:`~spmn.errors.InMemoryWarning`.
    """
    if is_dask(data):  # clustering is no count statistic: gathered, with a warning
        data = gather(data, "learn_spmn")
    opts, extra = LearnOptions.split(hyper)
    if extra:
        raise TypeError(f"learn_spmn got unknown hyper-parameters {sorted(extra)}")
    if unseen not in UNSEEN:
        raise ValueError(f"unseen must be one of {UNSEEN}, got {unseen!r}")
    if int(continuous_bins) < 2:
        raise ValueError(f"continuous_bins must be >= 2, got {continuous_bins}")
    sch = spmn_schema(data, partial_order, decisions, utility, schema=schema, kinds=kinds,
                      columns=columns)
    if schema is None and _is_array(data):
        data = as_columns(data, columns)
    X = training_matrix(data, sch, allow_constant=allow_constant)
    table = Table(X, sch, opts)
    bar = CellProgress(X.size, progress, "learn_spmn")
    builder = _Builder(table, opts, as_generator(seed), bar, unseen, int(continuous_bins))
    root = builder.level(np.arange(X.shape[0]), 0, None)
    circuit = Circuit(flatten_products(root), sch)
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
