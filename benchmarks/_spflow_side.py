"""Runs inside SPFlow 0.0.48's own venv (driven by bench_inference.py through a subprocess).

    python _spflow_side.py learn OUT.json            # learn an SPN on 20,000 x 20 categorical rows
    python _spflow_side.py bench IN.json ROWS...     # time SPFlow's log_likelihood, print JSON

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


def bench(in_path, rows_list, seed=1):
    from spn.algorithms.Inference import log_likelihood

    with open(in_path) as fh:
        doc = json.load(fh)
    root = build(doc)
    rng = np.random.default_rng(seed)
    out = {}
    for rows in rows_list:
        X = (rng.random((rows, len(doc["cards"]))) * np.array(doc["cards"])).astype(int)
        X = X.astype(float)
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
                          "peak_bytes": peak, "ll_head": first[:5, 0].tolist()}
    print(json.dumps(out))


if __name__ == "__main__":
    if sys.argv[1] == "learn":
        learn(sys.argv[2])
    else:
        bench(sys.argv[2], [int(r) for r in sys.argv[3:]])
