"""Runs inside an SPFlow venv (driven by bench_inference.py through a subprocess).

    python _spflow_side.py learn OUT.json            # learn an SPN on 20,000 x 20 categorical rows
    python _spflow_side.py bench IN.json ROWS...     # time SPFlow's log_likelihood, print JSON
    python _spflow_side.py bench1 IN.json ROWS...    # the same with the torch SPFlow 1.x

``learn`` and ``bench`` need SPFlow 0.0.48 (numpy 1.26); ``bench1`` the torch-based SPFlow 1.x
(1.1.0 from the package index, CPU torch), whose tree is built from its ``Sum``, ``Product``
and ``Categorical`` modules, one module per node of the exchange form, in float64.

The circuit travels in the plain exchange form of _bench_circuits.to_exchange (topological
order, children first; sums with weights, products, categorical leaves). Only SPFlow's public
API is called; no SPFlow code is copied.
"""
from __future__ import annotations

import json
import sys
import time
import tracemalloc

import numpy as np


def make_data(rows=20_000, n_vars=20, k=4, clusters=12, seed=0):
    """Rows from a mixture of product distributions with chained dependencies."""
    rng = np.random.default_rng(seed)
    z = rng.integers(0, clusters, rows)
    probs = rng.dirichlet(np.full(k, 0.4), (clusters, n_vars))
    X = np.empty((rows, n_vars), np.int64)
    for j in range(n_vars):
        cum = probs[z, j].cumsum(axis=1)
        X[:, j] = (rng.random(rows)[:, None] > cum).sum(axis=1)
        if j and j % 3 == 0:  # a dependency the clustering must capture
            X[:, j] = np.where(rng.random(rows) < 0.6, X[:, j - 1], X[:, j])
    return np.minimum(X, k - 1).astype(float)


def learn(out_path):
    from spn.algorithms.LearningWrappers import learn_parametric
    from spn.structure.Base import Context, Product, Sum, get_topological_order
    from spn.structure.leaves.parametric.Parametric import Categorical

    data = make_data()
    ctx = Context(parametric_types=[Categorical] * data.shape[1]).add_domains(data)
    t = time.perf_counter()
    spn = learn_parametric(data, ctx, min_instances_slice=200, threshold=0.3)
    learn_s = time.perf_counter() - t
    order = get_topological_order(spn)
    index = {id(nd): i for i, nd in enumerate(order)}
    nodes = []
    for nd in order:
        if isinstance(nd, Sum):
            nodes.append({"type": "sum", "children": [index[id(c)] for c in nd.children],
                          "weights": [float(w) for w in nd.weights]})
        elif isinstance(nd, Product):
            nodes.append({"type": "product", "children": [index[id(c)] for c in nd.children]})
        else:
            nodes.append({"type": "categorical", "var": int(nd.scope[0]),
                          "p": [float(p) for p in nd.p]})
    with open(out_path, "w") as fh:
        json.dump({"cards": [4] * data.shape[1], "nodes": nodes, "learn_s": learn_s}, fh)


def build(doc):
    """SPFlow node objects from the exchange form."""
    from spn.structure.Base import Product, Sum, assign_ids, rebuild_scopes_bottom_up
    from spn.structure.leaves.parametric.Parametric import Categorical

    built = []
    for nd in doc["nodes"]:
        if nd["type"] == "sum":
            built.append(Sum(weights=nd["weights"], children=[built[c] for c in nd["children"]]))
        elif nd["type"] == "product":
            built.append(Product(children=[built[c] for c in nd["children"]]))
        else:
            built.append(Categorical(p=nd["p"], scope=[nd["var"]]))
    root = built[-1]
    assign_ids(root)
    rebuild_scopes_bottom_up(root)
    return root


def build1(doc):
    """The same tree from the torch SPFlow 1.x modules (float64): a Categorical module per
    leaf, a Product per product node, a Sum (weights of shape (1, children, 1, 1)) per sum."""
    import torch
    from spflow.meta import Scope
    from spflow.modules.leaves import Categorical
    from spflow.modules.products import Product
    from spflow.modules.sums import Sum

    torch.set_default_dtype(torch.float64)
    built = []
    for nd in doc["nodes"]:
        if nd["type"] == "sum":
            w = torch.tensor(nd["weights"]).reshape(1, -1, 1, 1)
            built.append(Sum([built[c] for c in nd["children"]], weights=w))
        elif nd["type"] == "product":
            built.append(Product([built[c] for c in nd["children"]]))
        else:
            k = doc["cards"][nd["var"]]
            p = np.zeros(k)
            p[:len(nd["p"])] = nd["p"]
            built.append(Categorical(Scope([nd["var"]]), K=k,
                                     probs=torch.tensor(p / p.sum()).reshape(1, 1, 1, k)))
    root = built[-1]

    def ll(X):
        with torch.no_grad():
            return root.log_likelihood(torch.from_numpy(X)).reshape(X.shape[0], -1).numpy()
    return ll


def bench(in_path, rows_list, torch_spflow=False):
    with open(in_path) as fh:
        doc = json.load(fh)
    if torch_spflow:
        import torch

        log_likelihood = (lambda root, X: root(X))
        root = build1(doc)
        version = f"spflow {_version('spflow')}, torch {torch.__version__}, " \
                  f"{torch.get_num_threads()} threads"
    else:
        from spn.algorithms.Inference import log_likelihood

        root = build(doc)
        version = "spflow 0.0.48"
    out = {}
    for rows in rows_list:
        # the rows of _bench_circuits.random_rows(flat, rows, seed=rows): the same on both sides
        rng = np.random.default_rng(rows)
        X = (rng.random((rows, len(doc["cards"]))) * np.array(doc["cards"])).astype(np.int64)
        X = X.astype(np.float64)
        tracemalloc.start()
        t = time.perf_counter()
        first = log_likelihood(root, X)
        first_s = time.perf_counter() - t
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        times = []
        reps = 3 if rows <= 10_000 else 1
        for _ in range(reps):
            t = time.perf_counter()
            log_likelihood(root, X)
            times.append(time.perf_counter() - t)
        out[str(rows)] = {"first_s": first_s, "steady_s": float(np.median(times)),
                          "peak_bytes": peak, "ll_head": first[:5, 0].tolist(),
                          "version": version}
    print(json.dumps(out))


def _version(name):
    from importlib.metadata import version

    return version(name)


if __name__ == "__main__":
    if sys.argv[1] == "learn":
        learn(sys.argv[2])
    else:
        bench(sys.argv[2], [int(r) for r in sys.argv[3:]], torch_spflow=sys.argv[1] == "bench1")
