"""Circuit: a root node plus its schema; validation, inspection, export and queries.

Queries compile the circuit once (``Circuit.compile``) and run a backend's passes over the flat
arrays (:mod:`spmn.circuit.queries`). This class sits at the top of the circuit layer: the
compiler, the validator and the query front below it read any :class:`~.structure.Structure`
and never import it, so its methods (``c.meu()``, ``c.log_likelihood(X)``) need no circle.
Node objects must not be mutated after the circuit is built; call :meth:`Circuit.refresh` if
they are (e.g. after re-fitting weights in place with :func:`spmn.learn.fit_weights`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from ..errors import ValidationError
from ..flat import FlatCircuit
from ..schema import Schema, Variable
from . import nodes as N
from . import queries
from .compile import compile_circuit
from .validation import _Supports
from .validation import validate as _validate


@dataclass(frozen=True)
class CircuitSummary:
    """Counts by node type, edges, depth and variables of a circuit."""

    nodes: dict[str, int]
    edges: dict[str, int]
    n_nodes: int
    n_edges: int
    depth: int
    variables: int
    decisions: tuple[str, ...]
    interface_slots: int

    def __str__(self) -> str:
        lines = [f"circuit: {self.n_nodes} nodes, {self.n_edges} edges, depth {self.depth}, "
                 f"{self.variables} variables"]
        if self.decisions:
            lines.append(f"decisions (in order): {', '.join(self.decisions)}")
        if self.interface_slots:
            lines.append(f"interface slots: {self.interface_slots}")
        lines.append(f"{'node type':<14}{'nodes':>8}{'out-edges':>11}")
        for k in sorted(self.nodes, key=lambda t: -self.nodes[t]):
            lines.append(f"{k:<14}{self.nodes[k]:>8}{self.edges.get(k, 0):>11}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"nodes": dict(self.nodes), "edges": dict(self.edges), "n_nodes": self.n_nodes,
                "n_edges": self.n_edges, "depth": self.depth, "variables": self.variables,
                "decisions": list(self.decisions), "interface_slots": self.interface_slots}


class Circuit:
    """A sum-product-max network over ``schema``.

    >>> c = Circuit(root, schema)          # validates; ``validate=False`` defers it
    >>> c.meu(), c.policy(), c.log_likelihood(X)
    """

    def __init__(self, root: N.Node, schema: Schema | Sequence[Variable], *,
                 validate: bool = True) -> None:
        if not isinstance(schema, Schema):
            schema = Schema(schema)
        if not isinstance(root, N.Node):
            raise ValidationError(f"root must be a Node, got {type(root).__name__}", rule="node-type")
        self.root = root
        self.schema = schema
        self.refresh()
        if validate:
            self.validate()

    # ------------------------------------------------------------------ structure
    def refresh(self) -> None:
        """Recompute order, scopes and drop the compiled form (after editing nodes in place)."""
        self.nodes: list[N.Node] = N.topological_order(self.root)
        self._scope: dict[int, frozenset[int]] = {}
        for nd in self.nodes:
            if isinstance(nd, N.Leaf):
                names = getattr(nd, "vars", None) or (getattr(nd, "var", ""),)
                sc = frozenset(self.schema.index(v) for v in names if v in self.schema)
            else:
                sc = frozenset().union(*(self._scope[id(c)] for c in nd.children)) \
                    if nd.children else frozenset()
                if isinstance(nd, N.Max) and nd.var in self.schema:
                    sc = sc | {self.schema.index(nd.var)}
            self._scope[id(nd)] = sc
        self._flat: FlatCircuit | None = None
        self._plans: dict = {}  # (backend, query) -> the backend's cached plan (queries._plan)
        self._sup: _Supports | None = None
        self._valid = False

    def scope(self, node: N.Node) -> frozenset[int]:
        """Schema columns of the variables below ``node`` (a max node includes its decision)."""
        return self._scope[id(node)]

    def scope_names(self, node: N.Node) -> list[str]:
        return [self.schema[j].name for j in sorted(self.scope(node))]

    def _supports(self) -> _Supports:
        if self._sup is None:
            self._sup = _Supports(self)
        return self._sup

    def validate(self) -> "Circuit":
        """Check every structural rule (see :mod:`spmn.circuit.validation`); returns ``self``."""
        _validate(self)
        self._valid = True
        return self

    def compile(self) -> FlatCircuit:
        """The flat arrays of this circuit (cached)."""
        if self._flat is None:
            self._flat = compile_circuit(self)
        return self._flat

    @property
    def decisions(self) -> tuple[str, ...]:
        return self.schema.ordered_decisions()

    # ------------------------------------------------------------------ inspection
    def summary(self) -> CircuitSummary:
        """Node and edge counts by type, depth (edges on the longest root-leaf path)."""
        counts: dict[str, int] = {}
        edges: dict[str, int] = {}
        depth: dict[int, int] = {}
        for nd in self.nodes:
            t = nd.kind
            counts[t] = counts.get(t, 0) + 1
            edges[t] = edges.get(t, 0) + len(nd.children)
            depth[id(nd)] = 1 + max((depth[id(c)] for c in nd.children), default=-1)
        return CircuitSummary(counts, edges, len(self.nodes), sum(edges.values()),
                              depth[id(self.root)], len(self.schema), self.decisions,
                              self.compile().n_interface)

    def node_id(self, node: N.Node) -> int:
        """Index of ``node`` in the topological order (the id used by exports and files)."""
        if not hasattr(self, "_pos"):
            self._pos = {id(nd): i for i, nd in enumerate(self.nodes)}
        return self._pos[id(node)]

    def _node_text(self, nd: N.Node) -> str:
        if isinstance(nd, N.Sum):
            return "+"
        if isinstance(nd, N.Product):
            return "×"
        if isinstance(nd, N.Max):
            return f"max {nd.var}"
        if isinstance(nd, N.Interface):
            return f"interface {nd.index}"
        if isinstance(nd, N.Utility):
            return f"U {nd.var}: E={nd.expectation():.6g}"
        if isinstance(nd, N.Categorical):
            return f"{nd.var}: [{', '.join(f'{x:.3g}' for x in nd.p)}]"
        if isinstance(nd, N.Gaussian):
            return f"{nd.var} ~ N({nd.mean:.4g}, {nd.std:.4g}²)"
        if isinstance(nd, N.MultivariateGaussian):
            mean = ", ".join(f"{x:.4g}" for x in nd.mean)
            return f"({', '.join(nd.vars)}) ~ N([{mean}], Σ {len(nd.vars)}x{len(nd.vars)})"
        if isinstance(nd, N.Histogram):
            return f"{nd.var}: histogram({len(nd.densities)} bins)"
        return type(nd).__name__

    def to_networkx(self):
        """A ``networkx.DiGraph``: nodes are topological ids with ``kind``, ``label``, ``var``,
        ``scope`` attributes; edges parent -> child with ``weight`` (sum) or ``value`` (max)."""
        import networkx as nx

        g = nx.DiGraph()
        for i, nd in enumerate(self.nodes):
            g.add_node(i, kind=nd.kind, label=self._node_text(nd), var=getattr(nd, "var", None),
                       scope=self.scope_names(nd), name=nd.label)
        for i, nd in enumerate(self.nodes):
            for j, c in enumerate(nd.children):
                attrs: dict[str, Any] = {}
                if isinstance(nd, N.Sum):
                    attrs["weight"] = float(nd.weights[j])
                elif isinstance(nd, N.Max):
                    attrs["value"] = j
                g.add_edge(i, self.node_id(c), **attrs)
        return g

    def to_dot(self, path: str | None = None) -> str:
        """Graphviz DOT text (written by spmn; rendering needs graphviz's ``dot``)."""
        shapes = {"sum": "circle", "product": "circle", "max": "invtriangle",
                  "utility": "diamond", "interface": "doublecircle"}
        lines = ["digraph spmn {", "  rankdir=TB;", "  node [fontname=Helvetica];"]
        for i, nd in enumerate(self.nodes):
            text = self._node_text(nd).replace("\\", "\\\\").replace('"', '\\"')
            shape = shapes.get(nd.kind, "box")
            lines.append(f'  n{i} [label="{text}", shape={shape}];')
        for i, nd in enumerate(self.nodes):
            for j, c in enumerate(nd.children):
                lab = ""
                if isinstance(nd, N.Sum):
                    lab = f' [label="{nd.weights[j]:.3g}"]'
                elif isinstance(nd, N.Max):
                    v = self.schema[nd.var]
                    name = v.labels[j] if v.labels else str(j)
                    lab = f' [label="{name}"]'.replace("\\", "\\\\")
                lines.append(f"  n{i} -> n{self.node_id(c)}{lab};")
        lines.append("}")
        text = "\n".join(lines) + "\n"
        if path is not None:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
        return text

    def __repr__(self) -> str:
        return (f"Circuit({len(self.nodes)} nodes over {list(self.schema.names)}, "
                f"decisions={list(self.decisions)})")

    # ------------------------------------------------------------------ queries
    def log_likelihood(self, X: Any, *, allow_missing: bool = True,
                       backend: str | None = None) -> np.ndarray:
        """``log p(x)`` per row; NaN entries are marginalized (unless ``allow_missing=False``)."""
        return queries.log_likelihood(self, X, allow_missing=allow_missing, backend=backend)

    def meu(self, X: Any = None, *, interface_values: Iterable[float] | None = None,
            backend: str | None = None):
        """Maximum expected utility given the evidence (a float when ``X`` is None)."""
        return queries.meu(self, X, interface_values=interface_values, backend=backend)

    def policy(self, X: Any = None, *, decision: str | None = None,
               interface_values: Iterable[float] | None = None, backend: str | None = None):
        """The MEU decision (code) for ``decision`` (default: the first one taken) per row;
        -1 where the evidence does not yet determine it. An int when ``X`` is None."""
        return queries.policy(self, X, decision=decision, interface_values=interface_values,
                              backend=backend)

    def mpe(self, X: Any = None, *, return_log_prob: bool = False, backend: str | None = None):
        """Most probable completion of each row's unobserved entries (max-product)."""
        return queries.mpe(self, X, return_log_prob=return_log_prob, backend=backend)

    def sample(self, n: int | None = None, *, seed=None, evidence: Any = None,
               backend: str | None = None) -> np.ndarray:
        """``n`` rows drawn from the circuit (or one completion per row of ``evidence``);
        unobserved decisions follow the MEU policy. Deterministic given ``seed``."""
        return queries.sample(self, n, seed=seed, evidence=evidence, backend=backend)
