import networkx as nx
import numpy as np
import pytest
from strategies import brute_force_meu

from spmn import (
    Categorical,
    Circuit,
    Gaussian,
    Histogram,
    Interface,
    Max,
    Product,
    Schema,
    Sum,
    Utility,
    ValidationError,
    Variable,
)
from spmn.cli.examples import export_textiles


def schema():
    return Schema([Variable.discrete("X", 2), Variable.decision("D", 2), Variable.discrete("Y", 2),
                   Variable.continuous("C"), Variable.utility("U")],
                  partial_order=[["X"], ["D"], ["Y", "C", "U"]])


def cat(v="Y", p=(0.5, 0.5)):
    return Categorical(v, p)


def util(x=1.0):
    return Utility.constant("U", x)


def branch():
    return Product([cat("Y"), Gaussian("C", 0, 1), util()])


def test_valid_circuit_passes_and_summarizes():
    c = Circuit(Sum([Product([Categorical("X", [1, 0]), Max("D", [branch(), branch()])]),
                     Product([Categorical("X", [0, 1]), Max("D", [branch(), branch()])])],
                    [0.3, 0.7]), schema())
    s = c.summary()
    assert s.nodes["max"] == 2 and s.nodes["sum"] == 1 and s.n_nodes == len(c.nodes)
    assert s.depth == 4 and s.decisions == ("D",)
    assert "max" in str(s)
    g = c.to_networkx()
    assert isinstance(g, nx.DiGraph) and nx.is_directed_acyclic_graph(g)
    assert g.number_of_nodes() == s.n_nodes and g.number_of_edges() == s.n_edges
    root = len(c.nodes) - 1
    assert sorted(d["weight"] for _, _, d in g.out_edges(root, data=True)) == [0.3, 0.7]
    dot = c.to_dot()
    assert dot.startswith("digraph spmn {") and dot.count("->") == s.n_edges


BAD = {
    "sum-weights": lambda: Sum([cat(), cat()], [0.6, 0.6]),
    "sum-weights-negative": lambda: Sum([cat(), cat()], [1.5, -0.5]),
    "sum-weights-count": lambda: Sum([cat(), cat()], [1.0]),
    "sum-complete": lambda: Sum([cat("Y"), cat("X")], [0.5, 0.5]),
    "product-decomposable": lambda: Product([cat("Y"), cat("Y")]),
    "max-variable": lambda: Max("Y", [cat("X"), cat("X")]),
    "max-unique": lambda: Max("D", [branch(), branch(), branch()]),
    "max-complete": lambda: Max("D", [branch(), Product([cat("Y"), util()])]),
    "leaf-variable": lambda: Categorical("Q", [1.0]),
    "leaf-variable-role": lambda: Categorical("D", [0.5, 0.5]),
    "leaf-variable-kind": lambda: Gaussian("Y", 0, 1),
    "leaf-parameters": lambda: Categorical("Y", [0.5, 0.6]),
    "leaf-parameters-std": lambda: Gaussian("C", 0, 0),
    "leaf-parameters-hist": lambda: Histogram("C", [0, 1, 1], [0.5, 0.5]),
    "leaf-parameters-hist-mass": lambda: Histogram("C", [0, 1, 2], [0.5, 0.6]),
    "leaf-parameters-utility": lambda: Utility("U", values=[1, 2], probs=[0.5]),
    "partial-order": lambda: Max("D", [Product([cat("X"), util()]), Product([cat("X"), util()])]),
    "sum-deterministic": lambda: Sum([Product([cat("X"), Max("D", [branch(), branch()])]),
                                      Product([cat("X"), Max("D", [branch(), branch()])])], [0.5, 0.5]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_validate_rejects_each_rule(case):
    rules = ("sum-weights", "sum-complete", "product-decomposable", "max-variable", "max-unique",
             "max-complete", "leaf-variable", "leaf-parameters", "partial-order", "sum-deterministic")
    rule = max((r for r in rules if case.startswith(r)), key=len)
    with pytest.raises(ValidationError) as err:
        Circuit(BAD[case](), schema())
    assert err.value.rule == rule
    assert f"rule '{rule}' broken" in str(err.value)
    assert err.value.node and err.value.node.split("#")[0] in str(err.value)


def test_cycles_and_non_nodes_are_rejected():
    a = Product([cat("Y")])
    b = Sum([a], [1.0])
    a.children.append(b)
    with pytest.raises(ValidationError, match="acyclic"):
        Circuit(b, schema())
    with pytest.raises(ValidationError, match="not a Node"):
        Circuit(Product([cat("Y"), "oops"]), schema())


def test_partial_order_of_nested_decisions():
    s = Schema([Variable.decision("D1", 2), Variable.decision("D2", 2), Variable.utility("U")],
               partial_order=[["D1"], ["D2"], ["U"]])
    inner = lambda: Max("D1", [util(1), util(2)])  # noqa: E731
    with pytest.raises(ValidationError, match="rule 'partial-order' broken: variables \\['D1'\\] are known before decision 'D2'"):
        Circuit(Max("D2", [inner(), inner()]), s)
    ok = Circuit(Max("D1", [Max("D2", [util(1), util(2)]), Max("D2", [util(3), util(0)])]), s)
    assert ok.meu() == 3.0


def test_interface_leaves_have_empty_scope():
    c = Circuit(Product([cat("Y"), Interface(2)]), [Variable.discrete("Y", 2)])
    assert c.compile().n_interface == 3
    assert c.meu(interface_values=[0, 0, 5.0]) == 5.0
    with pytest.raises(ValidationError, match="slot -1"):
        Circuit(Product([cat("Y"), Interface(-1)]), [Variable.discrete("Y", 2)])


def latent_cluster_circuit():
    """A latent mixture above a decision: each cluster 'knows' its best decision."""
    s = Schema([Variable.discrete("X", 2), Variable.decision("D", 2), Variable.utility("U")],
               partial_order=[["X"], ["D"], ["U"]])
    c1 = Product([Categorical("X", [0.5, 0.5]), Max("D", [util(10.0), util(0.0)])])
    c2 = Product([Categorical("X", [0.5, 0.5]), Max("D", [util(0.0), util(10.0)])])
    return Circuit(Sum([c1, c2], [0.5, 0.5]), s, validate=False)


def test_latent_cluster_above_decision_is_rejected_because_it_overstates_the_meu():
    c = latent_cluster_circuit()
    naive = c.meu(backend="reference")
    exact = brute_force_meu(c)
    assert naive == pytest.approx(10.0) and exact == pytest.approx(5.0)
    assert naive > exact
    with pytest.raises(ValidationError, match="sum-deterministic"):
        c.validate()


def test_deterministic_split_on_continuous_intervals_is_accepted():
    s = Schema([Variable.continuous("C"), Variable.decision("D", 2), Variable.utility("U")],
               partial_order=[["C"], ["D"], ["U"]])
    lo = Product([Histogram("C", [0, 1], [1.0]), Max("D", [util(1), util(2)])])
    hi = Product([Histogram("C", [1, 3], [0.5]), Max("D", [util(4), util(3)])])
    c = Circuit(Sum([lo, hi], [0.25, 0.75]), s)
    assert c.meu() == pytest.approx(0.25 * 2 + 0.75 * 4)
    assert list(c.policy(np.array([[0.5, np.nan, np.nan], [2.0, np.nan, np.nan]]))) == [1, 0]
    overlap = Sum([Product([Histogram("C", [0, 2], [0.5]), Max("D", [util(1), util(2)])]), hi],
                  [0.5, 0.5])
    with pytest.raises(ValidationError, match="sum-deterministic"):
        Circuit(overlap, s)


def test_export_textiles():
    c = export_textiles()
    assert c.meu() == pytest.approx(1721300.0, rel=1e-12)
    assert c.policy() == 1
    X = np.full((3, 3), np.nan)
    X[:, 0] = [0, 1, 2]
    np.testing.assert_allclose(c.meu(X), [1438100.0, 1721300.0, 741300.0], rtol=1e-12)
    assert brute_force_meu(c) == pytest.approx(1721300.0, rel=1e-12)
