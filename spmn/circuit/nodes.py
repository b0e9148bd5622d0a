"""Node objects of a sum-product-max network: for building, reading and learning circuits.

Inner nodes: :class:`Sum` (weighted mixture), :class:`Product` (independent factors),
:class:`Max` (a decision: one child per decision value). Leaves: :class:`Categorical`,
:class:`Gaussian`, :class:`Histogram`, :class:`Utility`, the latent :class:`Interface` and
:class:`MultivariateGaussian` (the one leaf over several variables: ``vars``).
Leaves name their variable; :mod:`spmn.circuit` resolves names against a schema and checks
every rule. Parameters are stored as given; ``Circuit.validate`` says what is wrong with them.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = ["Node", "Sum", "Product", "Max", "Leaf", "Categorical", "Gaussian", "Histogram",
           "Utility", "Interface", "MultivariateGaussian"]


class Node:
    """Base class. ``children`` is a list of nodes; ``label`` an optional human name."""

    kind: str = "node"

    def __init__(self, children: Sequence["Node"] = (), label: str | None = None) -> None:
        self.children: list[Node] = list(children)
        self.label = label

    def __repr__(self) -> str:
        lab = f" {self.label!r}" if self.label else ""
        return f"<{type(self).__name__}{lab} children={len(self.children)}>"

    @property
    def is_leaf(self) -> bool:
        return False


class Sum(Node):
    """Mixture: ``p(x) = Σ_i w_i p_i(x)``; weights are non-negative and sum to one."""

    kind = "sum"

    def __init__(self, children: Sequence[Node], weights: Sequence[float],
                 label: str | None = None) -> None:
        super().__init__(children, label)
        self.weights = np.array(weights, dtype=np.float64).reshape(-1)


class Product(Node):
    """Independent factors over disjoint scopes: ``p(x) = Π_i p_i(x_i)``; utilities add."""

    kind = "product"


class Max(Node):
    """Decision node for ``var``: child ``j`` is the sub-circuit after decision value ``j``."""

    kind = "max"

    def __init__(self, var: str, children: Sequence[Node], label: str | None = None) -> None:
        super().__init__(children, label)
        self.var = var


class Leaf(Node):
    """A distribution over one variable ``var``."""

    kind = "leaf"

    def __init__(self, var: str, label: str | None = None) -> None:
        super().__init__((), label)
        self.var = var

    @property
    def is_leaf(self) -> bool:
        return True

    def params(self) -> dict[str, list[float]]:
        """Parameters as plain lists (for files and equality); concrete leaves override it."""
        return {}


class Categorical(Leaf):
    """``p(var = j) = p[j]`` for a discrete chance variable with k values."""

    kind = "categorical"

    def __init__(self, var: str, p: Sequence[float], label: str | None = None) -> None:
        super().__init__(var, label)
        self.p = np.array(p, dtype=np.float64).reshape(-1)

    def params(self) -> dict[str, list[float]]:
        return {"p": self.p.tolist()}


class Gaussian(Leaf):
    """Normal density ``N(mean, std²)`` over a continuous chance variable."""

    kind = "gaussian"

    def __init__(self, var: str, mean: float, std: float, label: str | None = None) -> None:
        super().__init__(var, label)
        self.mean = float(mean)
        self.std = float(std)

    def params(self) -> dict[str, list[float]]:
        return {"mean": [self.mean], "std": [self.std]}


class MultivariateGaussian(Leaf):
    """Joint normal ``N(mean, cov)`` (full covariance) over the continuous variables ``vars``.

    Any subset may be unobserved (marginalized exactly); ``var`` is ``vars[0]``. Mixtures of
    these leaves under sum nodes are ordinary circuits.
    """

    kind = "mvgaussian"

    def __init__(self, vars: Sequence[str], mean: Sequence[float], cov,
                 label: str | None = None) -> None:
        names = (vars,) if isinstance(vars, str) else tuple(vars)
        super().__init__(names[0] if names else "", label)
        self.vars: tuple[str, ...] = names
        self.mean = np.array(mean, dtype=np.float64).reshape(-1)
        self.cov = np.atleast_2d(np.array(cov, dtype=np.float64))

    def params(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "cov": self.cov.reshape(-1).tolist()}


class Histogram(Leaf):
    """Piecewise-constant density: ``p(x) = densities[j]`` for ``breaks[j] <= x < breaks[j+1]``.

    The last bin includes its right edge; ``Σ_j densities[j] (breaks[j+1] - breaks[j]) = 1``.
    """

    kind = "histogram"

    def __init__(self, var: str, breaks: Sequence[float], densities: Sequence[float],
                 label: str | None = None) -> None:
        super().__init__(var, label)
        self.breaks = np.array(breaks, dtype=np.float64).reshape(-1)
        self.densities = np.array(densities, dtype=np.float64).reshape(-1)

    def params(self) -> dict[str, list[float]]:
        return {"breaks": self.breaks.tolist(), "densities": self.densities.tolist()}

    def mean(self) -> float:
        """Exact mean of the piecewise-uniform density: ``Σ_j d_j w_j (b_j + b_{j+1}) / 2``."""
        b, d = self.breaks, self.densities
        return math.fsum(float(d[j] * (b[j + 1] - b[j]) * (b[j] + b[j + 1]) / 2.0)
                         for j in range(len(d)))


class Utility(Leaf):
    """Distribution of a utility variable whose expectation is exact.

    Discrete: ``Utility(var, values=[...], probs=[...])``, ``E[U] = Σ_i v_i p_i``.
    Histogram: ``Utility(var, breaks=[...], densities=[...])`` (piecewise-uniform density,
    ``E[U] = Σ_j d_j w_j (b_j + b_{j+1}) / 2`` with bin widths ``w_j``). A constant payoff is
    ``Utility(var, values=[c], probs=[1])``.
    """

    kind = "utility"

    def __init__(self, var: str, values: Sequence[float] | None = None,
                 probs: Sequence[float] | None = None, *, breaks: Sequence[float] | None = None,
                 densities: Sequence[float] | None = None, label: str | None = None) -> None:
        super().__init__(var, label)
        discrete = values is not None or probs is not None
        hist = breaks is not None or densities is not None
        if discrete == hist:
            raise TypeError("Utility takes either values= and probs= (discrete) or "
                            "breaks= and densities= (histogram)")
        self.is_histogram = hist
        if discrete:
            self.values = np.array(values if values is not None else [], dtype=np.float64).reshape(-1)
            self.probs = np.array(probs if probs is not None else [], dtype=np.float64).reshape(-1)
            self.breaks = self.densities = None
        else:
            self.breaks = np.array(breaks if breaks is not None else [], dtype=np.float64).reshape(-1)
            self.densities = np.array(densities if densities is not None else [],
                                      dtype=np.float64).reshape(-1)
            self.values = self.probs = None

    @classmethod
    def constant(cls, var: str, value: float, label: str | None = None) -> "Utility":
        return cls(var, values=[value], probs=[1.0], label=label)

    def params(self) -> dict[str, list[float]]:
        if self.is_histogram:
            return {"breaks": self.breaks.tolist(), "densities": self.densities.tolist()}
        return {"values": self.values.tolist(), "probs": self.probs.tolist()}

    def expectation(self) -> float:
        """Exact ``E[U]`` (fsum), bin widths included for histograms."""
        if self.is_histogram:
            b, d = self.breaks, self.densities
            return math.fsum(float(d[j] * (b[j + 1] - b[j]) * (b[j] + b[j + 1]) / 2.0)
                             for j in range(len(d)))
        return math.fsum(float(v * p) for v, p in zip(self.values, self.probs))


class Interface(Leaf):
    """Latent interface leaf of a recurrent template, bound to value slot ``index``.

    It has an empty scope and ``L = 0``; its utility is the value bound to its slot
    (``U = γ V_{t+1}(ir_index)`` in a Bellman update, 0 by default).
    """

    kind = "interface"

    def __init__(self, index: int, label: str | None = None) -> None:
        super().__init__("", label)
        self.index = int(index)

    def params(self) -> dict[str, list[float]]:
        return {"index": [float(self.index)]}


def topological_order(root: Node) -> list[Node]:
    """Nodes reachable from ``root``, children before parents, root last (iterative DFS).

    A cycle raises :class:`spmn.errors.ValidationError` (rule ``acyclic``).
    """
    from ..errors import ValidationError

    order: list[Node] = []
    state: dict[int, int] = {}  # 1 = on the stack, 2 = done
    stack: list[tuple[Node, int]] = [(root, 0)]
    state[id(root)] = 1
    while stack:
        node, i = stack[-1]
        if not isinstance(node, Node):
            raise ValidationError(f"circuit contains {type(node).__name__} {node!r}, not a Node",
                                  rule="node-type")
        if i < len(node.children):
            stack[-1] = (node, i + 1)
            child = node.children[i]
            s = state.get(id(child), 0)
            if s == 1:
                name = describe(node)
                raise ValidationError(f"{name}: rule 'acyclic' broken: child {describe(child)} "
                                      "is also its ancestor", node=name, rule="acyclic")
            if s == 0:
                state[id(child)] = 1
                stack.append((child, 0))
        else:
            stack.pop()
            state[id(node)] = 2
            order.append(node)
    return order


def describe(node: object, index: int | None = None) -> str:
    """Short name of a node for messages: ``Sum#3 'label'``."""
    name = type(node).__name__
    if index is not None:
        name += f"#{index}"
    label = getattr(node, "label", None)
    if label:
        name += f" {label!r}"
    var = getattr(node, "var", None)
    if var:
        name += f" over {var!r}"
    return name
