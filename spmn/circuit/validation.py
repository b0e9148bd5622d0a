"""Structural rules of a valid SPMN, checked node by node (``Circuit.validate``).

Rules (the name in brackets is ``ValidationError.rule``):
[acyclic] no cycles; [leaf-variable] a leaf names a known variable of the right role and kind;
[leaf-parameters] probabilities >= 0 summing to 1, std > 0, increasing breaks, a multivariate
Gaussian's covariance symmetric positive definite (not singular), ...;
[sum-weights] one weight per child, >= 0, summing to 1; [sum-complete] children share one
scope; [product-decomposable] children's scopes are disjoint; [max-variable] a max node's
variable is a decision; [max-unique] one child per decision value, the decision not below;
[max-complete] children share one scope; [partial-order] a max node for D has no variable that
precedes D below it, nor a max node for a decision taken before D; [sum-deterministic] a sum
above a max node for D has children with pairwise disjoint supports over the variables that
precede D (DESIGN.md, "Determinism above decisions": without it the MEU is overstated).
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import ValidationError
from . import nodes as N
from .structure import Structure

TOL = 1e-9


def _fail(name: str, rule: str, what: str) -> ValidationError:
    return ValidationError(f"{name}: rule '{rule}' broken: {what}", node=name, rule=rule)


def _check_prob_vector(p: np.ndarray, name: str, what: str, n: int | None = None) -> None:
    if n is not None and p.shape != (n,):
        raise _fail(name, "leaf-parameters", f"{what} has {p.size} entries, expected {n}")
    if p.size == 0:
        raise _fail(name, "leaf-parameters", f"{what} is empty")
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise _fail(name, "leaf-parameters", f"{what} must be finite and >= 0, got {p.tolist()}")
    if abs(math.fsum(p.tolist()) - 1.0) > TOL:
        raise _fail(name, "leaf-parameters", f"{what} sums to {math.fsum(p.tolist())!r}, expected 1")


def _check_histogram(b: np.ndarray, d: np.ndarray, name: str) -> None:
    if b.ndim != 1 or b.size < 2 or d.size != b.size - 1:
        raise _fail(name, "leaf-parameters",
                    f"{b.size} breaks and {d.size} densities; expected m + 1 breaks for m >= 1 bins")
    if not np.all(np.isfinite(b)) or np.any(np.diff(b) <= 0):
        raise _fail(name, "leaf-parameters", "breaks must be finite and strictly increasing")
    if not np.all(np.isfinite(d)) or np.any(d < 0):
        raise _fail(name, "leaf-parameters", "densities must be finite and >= 0")
    mass = math.fsum((d * np.diff(b)).tolist())
    if abs(mass - 1.0) > TOL:
        raise _fail(name, "leaf-parameters", f"Σ density x bin width = {mass!r}, expected 1")


def check_leaf(node: N.Leaf, name: str, schema) -> None:
    """[leaf-variable] and [leaf-parameters] for one leaf."""
    if isinstance(node, N.Interface):
        if node.index < 0:
            raise _fail(name, "leaf-parameters", f"interface slot {node.index} must be >= 0")
        return
    if isinstance(node, N.MultivariateGaussian):
        _check_mvgaussian(node, name, schema)
        return
    if node.var not in schema:
        raise _fail(name, "leaf-variable", f"unknown variable {node.var!r}; known: {list(schema.names)}")
    v = schema[node.var]
    if isinstance(node, N.Utility):
        if v.role != "utility":
            raise _fail(name, "leaf-variable", f"Utility leaf over {v.role} variable {v.name!r}; "
                        "expected a utility variable")
        if node.is_histogram:
            _check_histogram(node.breaks, node.densities, name)
        else:
            if node.values.shape != node.probs.shape:
                raise _fail(name, "leaf-parameters", f"{node.values.size} values but "
                            f"{node.probs.size} probabilities")
            if not np.all(np.isfinite(node.values)):
                raise _fail(name, "leaf-parameters", "utility values must be finite")
            _check_prob_vector(node.probs, name, "probs")
        return
    if v.role != "chance":
        raise _fail(name, "leaf-variable", f"{type(node).__name__} leaf over {v.role} variable "
                    f"{v.name!r}; decisions belong to Max nodes, utilities to Utility leaves")
    if isinstance(node, N.Categorical):
        if not v.is_discrete:
            raise _fail(name, "leaf-variable", f"Categorical leaf over continuous variable {v.name!r}")
        _check_prob_vector(node.p, name, "p", v.k)
    elif isinstance(node, (N.Gaussian, N.Histogram)):
        if v.is_discrete:
            raise _fail(name, "leaf-variable",
                        f"{type(node).__name__} leaf over discrete variable {v.name!r}")
        if isinstance(node, N.Gaussian):
            if not (math.isfinite(node.mean) and math.isfinite(node.std) and node.std > 0):
                raise _fail(name, "leaf-parameters", f"mean {node.mean!r}, std {node.std!r}: "
                            "expected finite values and std > 0")
        else:
            _check_histogram(node.breaks, node.densities, name)
    else:
        raise _fail(name, "node-type", f"unknown leaf type {type(node).__name__}")


def _check_mvgaussian(node: N.MultivariateGaussian, name: str, schema) -> None:
    from ..gaussian import covariance_problem

    if not node.vars:
        raise _fail(name, "leaf-variable", "a MultivariateGaussian needs at least one variable")
    if len(set(node.vars)) != len(node.vars):
        raise _fail(name, "leaf-variable", f"variables {list(node.vars)} repeat a name")
    for v in node.vars:
        if v not in schema:
            raise _fail(name, "leaf-variable", f"unknown variable {v!r}; known: {list(schema.names)}")
        var = schema[v]
        if var.role != "chance" or var.is_discrete:
            raise _fail(name, "leaf-variable", f"MultivariateGaussian over {var.kind} {var.role} "
                        f"variable {v!r}; expected continuous chance variables")
    d = len(node.vars)
    if node.mean.shape != (d,):
        raise _fail(name, "leaf-parameters", f"mean has {node.mean.size} entries for {d} variables")
    problem = covariance_problem(node.mean, node.cov, node.vars)
    if problem:
        raise _fail(name, "leaf-parameters", problem)


# ---------------------------------------------------------------------------- supports
class _Supports:
    """Support of a node over one variable: a set of codes (discrete) or a list of intervals
    ``(lo, hi, closed_hi)`` (continuous). Sums and max nodes unite, products delegate to the
    child holding the variable."""

    def __init__(self, circuit: Structure) -> None:
        self.c = circuit
        self.memo: dict[tuple[int, int], object] = {}

    def of(self, node: N.Node, var: int):
        key = (id(node), var)
        if key in self.memo:
            return self.memo[key]
        schema = self.c.schema
        if isinstance(node, N.Leaf):
            res = self._leaf(node, var, schema)
        elif isinstance(node, N.Product):
            holder = [c for c in node.children if var in self.c.scope(c)]
            res = self.of(holder[0], var) if holder else None
        else:
            parts = [self.of(c, var) for c in node.children]
            res = _union([p for p in parts if p is not None], schema[var].is_discrete)
        self.memo[key] = res
        return res

    @staticmethod
    def _leaf(node: N.Leaf, var: int, schema):
        if isinstance(node, N.MultivariateGaussian):
            vs = {schema.index(v) for v in node.vars}
            return [(-math.inf, math.inf, False)] if var in vs else None
        if isinstance(node, N.Interface) or schema.index(node.var) != var:
            return None
        if isinstance(node, N.Categorical):
            return frozenset(np.flatnonzero(node.p > 0).tolist())
        if isinstance(node, N.Gaussian):
            return [(-math.inf, math.inf, False)]
        if isinstance(node, N.Utility) and not node.is_histogram:
            return [(float(v), float(v), True) for v, p in zip(node.values, node.probs) if p > 0]
        b, d = node.breaks, node.densities
        m = len(d)
        return [(float(b[j]), float(b[j + 1]), j == m - 1) for j in range(m) if d[j] > 0]


def _union(parts, discrete: bool):
    if discrete:
        out: frozenset = frozenset()
        for p in parts:
            out = out | p
        return out
    return [iv for p in parts for iv in p]


def _overlap(a, b, discrete: bool) -> bool:
    """True when the two supports share a set of positive probability: a common value, an
    interval overlap of positive length, or the same point mass (touching bin edges do not)."""
    if a is None or b is None:
        return True
    if discrete:
        return bool(a & b)
    for lo1, hi1, _ in a:
        for lo2, hi2, _ in b:
            if max(lo1, lo2) < min(hi1, hi2):
                return True
            if lo1 == hi1 == lo2 == hi2:
                return True
    return False


# ---------------------------------------------------------------------------- driver
def validate(circuit: Structure) -> None:
    """Check every rule of the module docstring; raise the first :class:`ValidationError`."""
    schema = circuit.schema
    order = circuit.nodes  # acyclic already (topological_order raised otherwise)
    names = {id(nd): N.describe(nd, i) for i, nd in enumerate(order)}
    # decisions below each node (as ranks of their information sets)
    below: dict[int, frozenset[str]] = {}
    for i, nd in enumerate(order):
        name = names[id(nd)]
        dec = frozenset().union(*(below[id(c)] for c in nd.children)) if nd.children else frozenset()
        if isinstance(nd, N.Leaf):
            check_leaf(nd, name, schema)
        elif isinstance(nd, N.Sum):
            _check_sum(circuit, nd, name)
        elif isinstance(nd, N.Product):
            if not nd.children:
                raise _fail(name, "product-decomposable", "a product needs at least one child")
            seen: set[int] = set()
            for c in nd.children:
                sc = circuit.scope(c)
                both = seen & sc
                if both:
                    raise _fail(name, "product-decomposable", "children overlap on variables "
                                f"{sorted(schema[j].name for j in both)}")
                seen |= sc
        elif isinstance(nd, N.Max):
            _check_max(circuit, nd, name)
            dec = dec | {nd.var}
        else:
            raise _fail(name, "node-type", f"unknown node type {type(nd).__name__}")
        below[id(nd)] = dec
        if isinstance(nd, N.Sum) and dec and len(nd.children) > 1:
            _check_deterministic(circuit, nd, name, dec)


def _check_sum(circuit: Structure, nd: N.Sum, name: str) -> None:
    w = nd.weights
    if not nd.children:
        raise _fail(name, "sum-weights", "a sum needs at least one child")
    if w.shape != (len(nd.children),):
        raise _fail(name, "sum-weights", f"{w.size} weights for {len(nd.children)} children")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise _fail(name, "sum-weights", f"weights must be finite and >= 0, got {w.tolist()}")
    total = math.fsum(w.tolist())
    if abs(total - 1.0) > TOL:
        raise _fail(name, "sum-weights", f"weights sum to {total!r}, expected 1")
    s0 = circuit.scope(nd.children[0])
    for c in nd.children[1:]:
        if circuit.scope(c) != s0:
            diff = s0 ^ circuit.scope(c)
            raise _fail(name, "sum-complete", "children have different scopes (they differ on "
                        f"{sorted(circuit.schema[j].name for j in diff)})")


def _check_max(circuit: Structure, nd: N.Max, name: str) -> None:
    schema = circuit.schema
    if nd.var not in schema:
        raise _fail(name, "max-variable", f"unknown variable {nd.var!r}")
    v = schema[nd.var]
    if v.role != "decision":
        raise _fail(name, "max-variable", f"variable {v.name!r} is a {v.role} variable, "
                    "expected a decision")
    if len(nd.children) != v.k:
        raise _fail(name, "max-unique", f"{len(nd.children)} children for decision {v.name!r} "
                    f"with {v.k} values; expected one child per value")
    d = schema.index(nd.var)
    s0 = circuit.scope(nd.children[0])
    for c in nd.children:
        if d in circuit.scope(c):
            raise _fail(name, "max-unique", f"decision {v.name!r} appears again below its own max node")
        if circuit.scope(c) != s0:
            raise _fail(name, "max-complete", "children have different scopes")
    early = [schema[j].name for j in s0 if schema.precedes(schema[j].name, nd.var)]
    if early:
        # this also catches a max node of an earlier decision placed below this one
        raise _fail(name, "partial-order", f"variables {sorted(early)} are known before decision "
                    f"{v.name!r} but appear below its max node")


def _check_deterministic(circuit: Structure, nd: N.Sum, name: str, dec: frozenset) -> None:
    """Children pairwise disjoint on some variable that precedes the earliest decision below."""
    schema = circuit.schema
    first = min(dec, key=schema.rank)
    pre = sorted(j for j in circuit.scope(nd) if schema.precedes(schema[j].name, first))
    sup = circuit._supports()
    ch = nd.children
    for j in pre:  # fast path: one variable splits every child apart (O(children))
        parts = [sup.of(c, j) for c in ch]
        if schema[j].is_discrete and all(p is not None for p in parts) and \
                sum(len(p) for p in parts) == len(frozenset().union(*parts)):
            return
    for a in range(len(ch)):
        for b in range(a + 1, len(ch)):
            if not any(not _overlap(sup.of(ch[a], j), sup.of(ch[b], j), schema[j].is_discrete)
                       for j in pre):
                raise _fail(name, "sum-deterministic",
                            f"children {a} and {b} overlap on every variable known before "
                            f"decision {first!r} ({[schema[j].name for j in pre]}); a sum above a "
                            "decision must split on observed values (a latent cluster there "
                            "lets the decision see it and overstates the MEU)")
