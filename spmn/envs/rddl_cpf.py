"""Exact evaluation of a grounded RDDL instance's expressions over batches of (state, action) rows.

Each expression of pyRDDLGym's lifted model (a CPF, the reward, a precondition, a termination, an
invariant) is grounded here by substituting objects for its parameters and compiled into a closure
over a batch ``env`` (ground fluent name -> array of RDDL values: bool, enum index or int). Non-fluents
are folded into constants, so a grounded CPF keeps only the branches its instance can reach.

A compiled node is ``("c", value)`` (constant), ``("d", fn)`` (deterministic: ``fn(env)`` is an array)
or ``("r", fn)`` (random: ``fn(env)`` lists ``(value, probability)`` pairs). Every random node of an
RDDL expression is an independent draw (as in pyRDDLGym's simulator), so a node over random
children is the product of their pairs, ``if`` on a random condition is a mixture and ``Bernoulli``
of a random p is Bernoulli of its mean: a CPF's distribution comes out exact. Supported
distributions are those with a finite support: ``KronDelta``, ``Bernoulli``, ``Discrete``,
``UnnormDiscrete`` (and ``DiracDelta`` of a finite value). Anything else raises a DataError that
names the fluent. No pyRDDLGym import here: the lifted model is read through its attributes.
"""
from __future__ import annotations

import itertools
from functools import reduce
from typing import Any, Callable

import numpy as np

from spmn.errors import DataError

MAX_PAIRS = 1 << 16  # (value, probability) pairs one random sub-expression may expand to
ROW_SUM_ATOL = 1e-9

Node = tuple  # ("c", value) | ("d", fn) | ("r", fn)

_UNARY: dict[str, Callable[[Any], Any]] = {
    "abs": np.abs, "sgn": lambda x: np.sign(x).astype(np.int64),
    "round": lambda x: np.round(x).astype(np.int64), "floor": lambda x: np.floor(x).astype(np.int64),
    "ceil": lambda x: np.ceil(x).astype(np.int64), "cos": np.cos, "sin": np.sin, "tan": np.tan,
    "acos": np.arccos, "asin": np.arcsin, "atan": np.arctan, "cosh": np.cosh, "sinh": np.sinh,
    "tanh": np.tanh, "exp": np.exp, "ln": np.log, "sqrt": np.sqrt,
}
_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "div": lambda x, y: np.floor_divide(x, y).astype(np.int64),
    "mod": lambda x, y: np.mod(x, y).astype(np.int64), "fmod": np.mod, "min": np.minimum,
    "max": np.maximum, "pow": np.power, "log": lambda x, y: np.log(x) / np.log(y), "hypot": np.hypot,
}
_ARITH = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide}
_REL = {">=": np.greater_equal, "<=": np.less_equal, "<": np.less, ">": np.greater,
        "==": np.equal, "~=": np.not_equal}


def _num(x: Any) -> Any:
    """RDDL arithmetic reads booleans as 0/1 (pyRDDLGym multiplies by 1)."""
    return 1 * x


def pairs(node: Node, env: dict) -> list[tuple[Any, Any]]:
    kind, x = node
    if kind == "c":
        return [(x, 1.0)]
    if kind == "d":
        return [(x(env), 1.0)]
    return x(env)


def lift(op: Callable[..., Any], nodes: list[Node], where: str) -> Node:
    """Apply ``op`` to the children's values: folded when constant, a product of pairs when random."""
    if all(k == "c" for k, _ in nodes):
        return ("c", op(*[x for _, x in nodes]))
    if all(k != "r" for k, _ in nodes):
        fns = [(lambda env, v=x: v) if k == "c" else x for k, x in nodes]
        if len(fns) == 1:
            f0 = fns[0]
            return ("d", lambda env: op(f0(env)))
        if len(fns) == 2:
            f0, f1 = fns
            return ("d", lambda env: op(f0(env), f1(env)))
        return ("d", lambda env: op(*[f(env) for f in fns]))

    def rfn(env: dict) -> list:
        out: list[tuple[tuple, Any]] = [((), 1.0)]
        for n in nodes:
            ps = pairs(n, env)
            out = [(vs + (v,), p * q) for vs, p in out for v, q in ps]
            if len(out) > MAX_PAIRS:
                raise DataError(f"{where}: a random sub-expression has more than {MAX_PAIRS} outcomes; "
                                "the exact compile cannot enumerate it")
        return [(op(*vs), p) for vs, p in out]
    return ("r", rfn)


def _mix(cond: Node, a: Node, b: Node, where: str) -> Node:
    """``if cond then a else b``."""
    if cond[0] == "c":
        return a if bool(cond[1]) else b
    if cond[0] == "d" and a[0] != "r" and b[0] != "r":
        return lift(lambda c, x, y: np.where(c, x, y), [cond, a, b], where)

    def rfn(env: dict) -> list:
        if cond[0] == "d":
            c = np.asarray(cond[1](env), dtype=bool)
            pt: Any = c.astype(np.float64)
        else:
            pt = sum(np.where(np.asarray(v, dtype=bool), q, 0.0) for v, q in cond[1](env))
        out = [(v, np.where(pt > 0, pt * q, 0.0)) for v, q in pairs(a, env)]
        out += [(v, np.where(pt < 1, (1.0 - pt) * q, 0.0)) for v, q in pairs(b, env)]
        return out
    return ("r", rfn)


def _select(pred: Node, cases: list[Node], where: str) -> Node:
    """``switch (pred) { case k: cases[k] }`` over an enum index."""
    if pred[0] == "c":
        return cases[int(pred[1])]
    if pred[0] == "r":
        raise DataError(f"{where}: a switch on a random value is not supported by the exact compile")
    if all(c[0] != "r" for c in cases):
        def pick(p: Any, *vals: Any) -> Any:
            p = np.asarray(p)
            return np.select([p == k for k in range(len(vals))], np.broadcast_arrays(*vals, p)[:-1])
        return lift(pick, [pred, *cases], where)

    def rfn(env: dict) -> list:
        p = np.asarray(pred[1](env))
        out = []
        for k, c in enumerate(cases):
            m = p == k
            if m.any():
                out += [(v, np.where(m, q, 0.0)) for v, q in pairs(c, env)]
        return out
    return ("r", rfn)


def _and(nodes: list[Node], where: str) -> Node:
    keep = []
    for n in nodes:
        if n[0] == "c":
            if not bool(n[1]):
                return ("c", False)
            continue
        keep.append(n)
    if not keep:
        return ("c", True)
    return lift(lambda *xs: reduce(np.logical_and, xs) if len(xs) > 1 else np.asarray(xs[0], dtype=bool),
                keep, where)


def _or(nodes: list[Node], where: str) -> Node:
    keep = []
    for n in nodes:
        if n[0] == "c":
            if bool(n[1]):
                return ("c", True)
            continue
        keep.append(n)
    if not keep:
        return ("c", False)
    return lift(lambda *xs: reduce(np.logical_or, xs) if len(xs) > 1 else np.asarray(xs[0], dtype=bool),
                keep, where)


def _sum(nodes: list[Node], where: str) -> Node:
    const = sum(_num(x) for k, x in nodes if k == "c")
    keep = [n for n in nodes if n[0] != "c"]
    if not keep:
        return ("c", const)
    if not (np.isscalar(const) and const == 0):
        keep.append(("c", const))
    return lift(lambda *xs: reduce(np.add, [_num(x) for x in xs]), keep, where)


def _prod(nodes: list[Node], where: str) -> Node:
    const = 1
    for k, x in nodes:
        if k == "c":
            const = const * _num(x)
    if np.isscalar(const) and const == 0:  # pyRDDLGym short-circuits a zero factor too
        return ("c", const)
    keep = [n for n in nodes if n[0] != "c"]
    if not keep:
        return ("c", const)
    if not (np.isscalar(const) and const == 1):
        keep.append(("c", const))
    return lift(lambda *xs: reduce(np.multiply, [_num(x) for x in xs]), keep, where)


def expectation(node: Node, env: dict, B: int) -> np.ndarray:
    """E[value] per row, float64 (B,)."""
    total = np.zeros(B)
    for v, p in pairs(node, env):
        total = total + np.where(np.asarray(p) > 0, np.asarray(p, dtype=np.float64) * _num(v), 0.0)
    return np.broadcast_to(total, (B,)).astype(np.float64)


def deterministic(node: Node, env: dict, B: int, where: str) -> np.ndarray:
    """The value per row of a node that must not be random."""
    if node[0] == "r":
        raise DataError(f"{where} is random; the adapter needs it deterministic")
    v = node[1] if node[0] == "c" else node[1](env)
    return np.broadcast_to(np.asarray(v), (B,))


def sample(node: Node, env: dict, B: int, rng: np.random.Generator) -> np.ndarray:
    """One draw per row (for rewards and checks that are random)."""
    if node[0] != "r":
        return deterministic(node, env, B, "")
    ps = pairs(node, env)
    u = rng.random(B)
    out = np.broadcast_to(np.asarray(ps[-1][0]), (B,)).copy()
    acc = np.zeros(B)
    done = np.zeros(B, dtype=bool)
    for v, p in ps:
        acc = acc + np.broadcast_to(p, (B,))
        take = ~done & (u < acc)
        out[take] = np.broadcast_to(np.asarray(v), (B,))[take]
        done |= take
    return out


class ExprCompiler:
    """Grounds and compiles the lifted expressions of one instance.

    ``model`` is pyRDDLGym's lifted model, ``init`` its initial value tensors (``sampler.init_values``,
    enum values as indices).
    """

    def __init__(self, model: Any, init: dict[str, Any]) -> None:
        self.model = model
        self.init = init
        self.refs: set[str] = set()  # ground fluent names read by the node being compiled

    # ------------------------------------------------------------------ entry point
    def compile(self, expr: Any, bind: dict[str, str] | None, where: str) -> tuple[Node, set[str]]:
        """(node, ground fluent names it reads) for ``expr`` with parameters bound to objects."""
        self.refs = set()
        with np.errstate(all="ignore"):
            node = self._c(expr, dict(bind or {}), where)
        return node, set(self.refs)

    def _unsupported(self, where: str, what: str) -> DataError:
        return DataError(f"{where}: {what} is not supported by the RDDL adapter's exact grounding")

    def _c(self, expr: Any, bind: dict[str, str], where: str) -> Node:
        etype, op = expr.etype
        if etype == "constant":
            return ("c", expr.args)
        if etype == "pvar":
            return self._pvar(expr, bind, where)
        if etype == "arithmetic":
            kids = [self._c(a, bind, where) for a in expr.args]
            if op == "-" and len(kids) == 1:
                return lift(lambda x: -1 * _num(x), kids, where)
            if op == "+":
                return _sum(kids, where)
            if op == "*":
                return _prod(kids, where)
            f = _ARITH[op]
            return lift(lambda *xs: reduce(lambda a, b: f(_num(a), _num(b)), xs), kids, where)
        if etype == "relational":
            f = _REL[op]
            kids = [self._c(a, bind, where) for a in expr.args]
            return lift(lambda a, b: f(_num(a), _num(b)), kids, where)
        if etype == "boolean":
            kids = [self._c(a, bind, where) for a in expr.args]
            if op == "~" and len(kids) == 1:
                return lift(lambda x: np.logical_not(x), kids, where)
            if op in ("^", "&"):
                return _and(kids, where)
            if op == "|":
                return _or(kids, where)
            f = {"~": np.logical_xor, "=>": lambda x, y: np.logical_or(np.logical_not(x), y),
                 "<=>": np.equal}[op]
            return lift(lambda *xs: reduce(f, xs), kids, where)
        if etype == "aggregation":
            return self._aggregation(expr, op, bind, where)
        if etype == "func":
            kids = [self._c(a, bind, where) for a in expr.args]
            if op in _UNARY and len(kids) == 1:
                f1 = _UNARY[op]
                return lift(lambda x: f1(_num(x)), kids, where)
            if op in _BINARY and len(kids) == 2:
                f2 = _BINARY[op]
                return lift(lambda x, y: f2(_num(x), _num(y)), kids, where)
            raise self._unsupported(where, f"function {op!r}")
        if etype == "control":
            if op == "if":
                c, a, b = (self._c(x, bind, where) for x in expr.args)
                return _mix(c, a, b, where)
            return self._switch(expr, bind, where)
        if etype == "randomvar":
            return self._random(expr, op, bind, where)
        raise self._unsupported(where, f"expression type {etype!r} ({op})")

    # ------------------------------------------------------------------ leaves
    def _object_index(self, name: str, where: str) -> int:
        idx = self.model.object_to_index.get(name)
        if idx is None:
            raise DataError(f"{where}: unknown object {name!r}")
        return int(idx)

    def _pvar(self, expr: Any, bind: dict[str, str], where: str) -> Node:
        name, params = expr.args
        model = self.model
        if params is None:
            if name.startswith("?"):
                if name not in bind:
                    raise DataError(f"{where}: free parameter {name} is not bound")
                return ("c", self._object_index(bind[name], where))
            if name.startswith("@"):
                return ("c", self._object_index(name[1:], where))
            if name not in model.variable_types and name in model.object_to_index:
                return ("c", self._object_index(name, where))
            objs: list[str] = []
        else:
            objs = []
            for p in params:
                if not isinstance(p, str):
                    raise self._unsupported(where, f"the nested pvariable argument in {name}(...)")
                if p.startswith("?"):
                    if p not in bind:
                        raise DataError(f"{where}: free parameter {p} is not bound")
                    objs.append(bind[p])
                else:
                    objs.append(p[1:] if p.startswith("@") else p)
        vtype = model.variable_types.get(name)
        if vtype is None:
            raise DataError(f"{where}: unknown variable {name!r}")
        if vtype == "non-fluent":
            value = self.init[name]
            if objs:
                value = np.asarray(value)[tuple(self._object_index(o, where) for o in objs)]
            return ("c", value.item() if isinstance(value, np.generic) else value)
        gname = model.ground_var(name, objs)
        self.refs.add(gname)
        return ("d", lambda env: env[gname])

    def _aggregation(self, expr: Any, op: str, bind: dict[str, str], where: str) -> Node:
        *typed, body = expr.args
        names, types = [], []
        for t in typed:
            if not (isinstance(t, tuple) and t and t[0] == "typed_var"):
                raise self._unsupported(where, f"aggregation {op} with argument {t!r}")
            names.append(t[1][0])
            types.append(t[1][1])
        objs = [self.model.type_to_objects[t] for t in types]
        kids = []
        for combo in itertools.product(*objs):
            b = dict(bind)
            b.update(zip(names, combo))
            kids.append(self._c(body, b, where))
        if op == "sum":
            return _sum(kids, where)
        if op == "avg":
            return lift(lambda s: _num(s) / len(kids), [_sum(kids, where)], where)
        if op == "prod":
            return _prod(kids, where)
        if op == "forall":
            return _and(kids, where)
        if op == "exists":
            return _or(kids, where)
        if op in ("minimum", "maximum"):
            f = np.minimum if op == "minimum" else np.maximum
            return lift(lambda *xs: reduce(lambda a, b: f(_num(a), _num(b)), xs), kids, where)
        if op in ("argmin", "argmax") and len(names) == 1:
            g = np.argmin if op == "argmin" else np.argmax
            return lift(lambda *xs: g(np.stack(np.broadcast_arrays(*[_num(x) for x in xs])), axis=0),
                        kids, where)
        raise self._unsupported(where, f"aggregation {op!r}")

    def _switch(self, expr: Any, bind: dict[str, str], where: str) -> Node:
        pred_expr, *cases = expr.args
        if pred_expr.etype[0] != "pvar":
            raise self._unsupported(where, "a switch predicate that is not a pvariable")
        var = pred_expr.args[0]
        enum_type = self.model.variable_ranges.get(var)
        objects = self.model.type_to_objects.get(enum_type)
        if objects is None:
            raise self._unsupported(where, f"a switch on {var} of type {enum_type}")
        table: dict[str, Any] = {}
        default = None
        for kind, value in cases:
            if kind == "case":
                lit, e = value
                table[lit[1:] if lit.startswith("@") else lit] = e
            else:
                default = value
        nodes = []
        for obj in objects:
            e = table.get(obj, default)
            if e is None:
                raise DataError(f"{where}: switch has no case for {obj} and no default")
            nodes.append(self._c(e, bind, where))
        return _select(self._c(pred_expr, bind, where), nodes, where)

    def _random(self, expr: Any, op: str, bind: dict[str, str], where: str) -> Node:
        if op in ("KronDelta", "DiracDelta"):
            (arg,) = expr.args
            return self._c(arg, bind, where)
        if op == "Bernoulli":
            (arg,) = expr.args
            p = self._c(arg, bind, where)
            if p[0] == "c":
                c = float(p[1])
                if c == 1.0:
                    return ("c", True)
                if c == 0.0:
                    return ("c", False)
                return ("r", lambda env: [(True, c), (False, 1.0 - c)])
            if p[0] == "d":
                fp = p[1]

                def bern(env: dict) -> list:
                    q = np.asarray(fp(env), dtype=np.float64)
                    return [(True, q), (False, 1.0 - q)]
                return ("r", bern)

            def bern_mix(env: dict) -> list:
                q = sum(np.asarray(q, dtype=np.float64) * v for v, q in pairs(p, env))
                return [(True, q), (False, 1.0 - q)]
            return ("r", bern_mix)
        if op in ("Discrete", "UnnormDiscrete"):
            (_, enum_type), *cases = expr.args
            objects = self.model.type_to_objects.get(enum_type)
            if objects is None:
                raise DataError(f"{where}: Discrete over unknown type {enum_type!r}")
            table = {}
            for _, (lit, e) in cases:
                table[lit[1:] if lit.startswith("@") else lit] = e
            probs = []
            for obj in objects:
                if obj not in table:
                    raise DataError(f"{where}: Discrete({enum_type}) has no case for {obj}")
                probs.append(self._c(table[obj], bind, where))
            unnorm = op == "UnnormDiscrete"

            def disc(env: dict) -> list:
                qs = [expectation(n, env, 1)[0] if n[0] == "c" else
                      (np.asarray(n[1](env), dtype=np.float64) if n[0] == "d"
                       else sum(np.asarray(q, dtype=np.float64) * v for v, q in pairs(n, env)))
                      for n in probs]
                if unnorm:
                    tot = reduce(np.add, qs)
                    qs = [q / tot for q in qs]
                return [(k, q) for k, q in enumerate(qs)]
            return ("r", disc)
        raise self._unsupported(where, f"distribution {op} (no finite support to enumerate)")
