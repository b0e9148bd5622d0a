"""Small hand-built circuits used by the demo, the docs and the tests."""
from __future__ import annotations

from ..circuit.circuit import Circuit
from ..circuit.nodes import Categorical, Max, Product, Utility
from ..schema import Schema, Variable

#: P(economy) and profit table U[economy][decision] of the Export Textiles problem.
EXPORT_ECONOMY_P = (0.4, 0.3, 0.3)
EXPORT_PROFIT = {0: (2726000.0, 2357000.0, 210000.0),
                 1: (-711000.0, 900500.0, 766000.0),
                 2: (1870000.0, 1694500.0, 1425000.0)}


def export_textiles() -> Circuit:
    """Export Textiles: decide when to export (D) before the economy (ES) is known.

    Max(D) -> for each decision d: Sum over ES with P(ES), each branch ES=e x Utility(U[e][d]).
    Expected utilities by decision: 1438100, 1721300, 741300; MEU 1721300 at d = 1.
    """
    from ..circuit.nodes import Sum

    schema = Schema([Variable.decision("Export_Decision", 3, ["Now", "After_6_mos", "After_12_mos"]),
                     Variable.discrete("Economical_State", 3, ["Same", "Severely_bad", "Slightly_worse"]),
                     Variable.utility("Profit")],
                    partial_order=[["Export_Decision"], ["Economical_State", "Profit"]])
    branches = []
    for d in range(3):
        kids = []
        for e in range(3):
            onehot = [1.0 if j == e else 0.0 for j in range(3)]
            kids.append(Product([Categorical("Economical_State", onehot),
                                 Utility.constant("Profit", EXPORT_PROFIT[e][d])]))
        branches.append(Sum(kids, EXPORT_ECONOMY_P, label=f"economy | D={d}"))
    return Circuit(Max("Export_Decision", branches, label="export decision"), schema)
