"""Structure: what the compiler, the validator and the query front read of a circuit.

A :class:`typing.Protocol`, so that those modules sit *below* :class:`~spmn.circuit.Circuit`
(which calls them from its methods) without importing it: the circle circuit -> compile ->
circuit is cut by typing against this shape instead of the class.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from ..schema import Schema
from .nodes import Node

if TYPE_CHECKING:  # pragma: no cover  (flat.py imports nothing of spmn: no circle)
    from ..flat import FlatCircuit


class Structure(Protocol):
    """A root, its schema, its nodes in topological order (children first) and scopes."""

    root: Node
    schema: Schema
    nodes: list[Node]

    @property
    def decisions(self) -> tuple[str, ...]: ...

    def scope(self, node: Node) -> frozenset[int]: ...

    def node_id(self, node: Node) -> int: ...

    def compile(self) -> "FlatCircuit": ...

    def _supports(self): ...  # the validator's cached support sets
