"""Queries over dask arrays (local scheduler) equal the in-memory ones."""
from __future__ import annotations

import kernel_strategies as ks
import numpy as np
import pytest
from strategies import random_spmn

from spmn import DataError, kernels

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
from spmn.kernels import dask as dk  # noqa: E402


@pytest.fixture(params=["sync", "threads"])
def scheduler(request):
    with dask.config.set(scheduler="synchronous" if request.param == "sync" else "threads"):
        yield


def _case(seed=0, rows=103):
    rng = np.random.default_rng(seed)
    flat = ks.bellman_template(rng, 3).compile()
    X = ks.random_evidence(rng, flat, rows)
    values = rng.normal(0, 5, flat.n_interface)
    return flat, X, values


def test_every_pass_equals_in_memory(backend, scheduler):
    flat, X, values = _case()
    mod = kernels.get(backend)
    Xd = da.from_array(X, chunks=(17, 2))  # columns split too: gathered into one chunk
    np.testing.assert_array_equal(dk.log_likelihood(flat, Xd, backend=backend).compute(),
                                  mod.log_likelihood(flat, X))
    np.testing.assert_array_equal(dk.meu(flat, Xd, values, backend=backend).compute(),
                                  mod.meu(flat, X, values))
    np.testing.assert_array_equal(dk.policy(flat, Xd, values, backend=backend).compute(),
                                  mod.policy(flat, X, values))
    filled, logp = dk.mpe(flat, Xd, backend=backend)
    want_filled, want_logp = mod.mpe(flat, X)
    np.testing.assert_array_equal(filled.compute(), want_filled)
    np.testing.assert_array_equal(logp.compute(), want_logp)
    nodes = [0, flat.root, flat.root - 1]
    L, U = dk.node_values(flat, Xd, values, nodes, backend=backend)
    want_L, want_U = mod.node_values(flat, X, values, nodes)
    np.testing.assert_array_equal(L.compute(), want_L)
    np.testing.assert_array_equal(U.compute(), want_U)


def test_expected_counts_are_summed_across_blocks(backend, scheduler):
    flat, X, values = _case(1, 250)
    edges, stats = dk.expected_counts(flat, da.from_array(X, chunks=(40, -1)), values,
                                      backend=backend)
    want_edges, want_stats = kernels.get(backend).expected_counts(flat, X, values)
    np.testing.assert_allclose(edges, want_edges, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(stats, want_stats, rtol=1e-12, atol=1e-10)
    lazy, _ = dk.expected_counts(flat, da.from_array(X, chunks=(40, -1)), values,
                                 backend=backend, compute=False)
    assert isinstance(lazy, da.Array)


def test_circuit_ships_once_and_queries_dispatch_dask():
    rng = np.random.default_rng(2)
    circuit = random_spmn(rng)
    flat = circuit.compile()
    X = ks.random_evidence(rng, flat, 60)
    Xd = da.from_array(X, chunks=(10, -1))
    ll = circuit.log_likelihood(Xd)
    assert isinstance(ll, da.Array)
    np.testing.assert_array_equal(ll.compute(), circuit.log_likelihood(X))
    graph = dict(ll.__dask_graph__())
    shipped = [k for k, v in graph.items() if hasattr(v, "kind") or
               type(getattr(v, "value", None)).__name__ == "FlatCircuit"]
    assert len(shipped) == 1 and len(graph) <= 2 * Xd.numblocks[0] + 1
    np.testing.assert_array_equal(circuit.meu(Xd).compute(), circuit.meu(X))
    np.testing.assert_array_equal(circuit.policy(Xd).compute(), circuit.policy(X))
    np.testing.assert_array_equal(circuit.mpe(Xd).compute(), circuit.mpe(X))


def test_dask_bad_input():
    flat, X, _ = _case()
    with pytest.raises(DataError):
        dk.log_likelihood(flat, da.from_array(X[:, :-1]))
    bad = X.copy()
    bad[5, 0] = 7  # not a code of S
    with pytest.raises(DataError):
        dk.log_likelihood(flat, da.from_array(bad, chunks=(10, -1))).compute()
    with pytest.raises(DataError):
        dk.node_values(flat, da.from_array(X), None, [flat.n_nodes])
