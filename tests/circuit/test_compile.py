import numpy as np
import pytest
from strategies import random_spmn

from spmn import Circuit, Variable
from spmn.circuit.compile import compile_circuit
from spmn.cli.examples import export_textiles
from spmn.flat import K_CATEGORICAL, K_MAX, K_SUM, K_UTILITY_DISCRETE, FlatCircuit


def test_layout_of_export_textiles():
    c = export_textiles()
    f = c.compile()
    assert f.n_nodes == 31 and f.root == 30 and f.kind[f.root] == K_MAX
    assert f.n_edges == 30 and f.n_vars == 3
    parents = np.repeat(np.arange(f.n_nodes), np.diff(f.child_ptr))
    assert (f.child_idx < parents).all()
    sums = np.flatnonzero(f.kind == K_SUM)
    np.testing.assert_allclose(np.exp(f.log_weight[f.child_ptr[sums[0]]:f.child_ptr[sums[0] + 1]]),
                               [0.4, 0.3, 0.3])
    cat = np.flatnonzero(f.kind == K_CATEGORICAL)[0]
    assert f.leaf_params(cat)[0] == 0.0 and f.leaf_params(cat)[1] == -np.inf
    u = np.flatnonzero(f.kind == K_UTILITY_DISCRETE)[0]
    assert list(f.leaf_params(u)) == [1.0, 2726000.0, 2726000.0, 0.0]
    assert f.node_map[f.root] is c.root
    assert not f.kind.flags.writeable and not f.params.flags.writeable


def test_compile_does_not_touch_nodes_and_is_cached():
    c = random_spmn(np.random.default_rng(3))
    before = [(type(n), len(n.children), id(n)) for n in c.nodes]
    f = compile_circuit(c)
    assert [(type(n), len(n.children), id(n)) for n in c.nodes] == before
    assert c.compile() is c.compile()
    np.testing.assert_array_equal(f.child_idx, c.compile().child_idx)


def test_invariants_are_asserted():
    f = export_textiles().compile()
    bad_idx = f.child_idx.copy()
    bad_idx[0] = f.n_nodes - 1  # a child after its parent
    with pytest.raises(AssertionError):
        FlatCircuit(f.kind, f.child_ptr, bad_idx, f.log_weight, f.var, f.param_ptr, f.params,
                    f.var_card, f.n_interface)
    with pytest.raises(AssertionError):
        FlatCircuit(f.kind, f.child_ptr[:-1], f.child_idx, f.log_weight, f.var, f.param_ptr,
                    f.params, f.var_card, f.n_interface)
