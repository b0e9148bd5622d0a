"""The circuit's model-file payload (kind ``"circuit"``): nodes listed children first.

::

    {"schema": {...}, "root": 7,
     "nodes": [{"id": 0, "type": "categorical", "var": "X", "params": {"p": [...]}},
               {"id": 5, "type": "sum", "children": [0, 3], "weights": [...]}, ...]}

Other kinds (world models) embed this payload for their template circuits.
"""
from __future__ import annotations

from typing import Any

from ..errors import ModelFileError
from ..io import Arrays, register_kind
from ..schema import Schema
from . import nodes as N
from .circuit import Circuit


def circuit_to_payload(circuit: Circuit, arrays: Arrays) -> dict[str, Any]:
    out = []
    for i, nd in enumerate(circuit.nodes):
        rec: dict[str, Any] = {"id": i, "type": nd.kind}
        if nd.label is not None:
            rec["label"] = nd.label
        if isinstance(nd, N.Leaf):
            if isinstance(nd, N.MultivariateGaussian):
                rec["vars"] = list(nd.vars)
            elif not isinstance(nd, N.Interface):
                rec["var"] = nd.var
            rec["params"] = {k: arrays.put(f"n{i}_{k}", v) for k, v in nd.params().items()}
        else:
            rec["children"] = [circuit.node_id(c) for c in nd.children]
            if isinstance(nd, N.Sum):
                rec["weights"] = arrays.put(f"n{i}_weights", nd.weights)
            if isinstance(nd, N.Max):
                rec["var"] = nd.var
        out.append(rec)
    return {"schema": circuit.schema.to_dict(), "root": len(out) - 1, "nodes": out}


def _build_node(rec: dict[str, Any], built: list, arrays: Arrays) -> N.Node:
    t = rec["type"]
    label = rec.get("label")
    if t in ("sum", "product", "max"):
        ids = rec["children"]
        if not isinstance(ids, list) or any(not isinstance(c, int) or not 0 <= c < len(built)
                                            for c in ids):
            raise ModelFileError(f"node {rec.get('id')}: children {ids!r} must be ids of "
                                 "earlier nodes")
        kids = [built[c] for c in ids]
        if t == "sum":
            return N.Sum(kids, arrays.get(rec["weights"]), label=label)
        if t == "product":
            return N.Product(kids, label=label)
        return N.Max(rec["var"], kids, label=label)
    p = {k: arrays.get(v) for k, v in rec["params"].items()}
    if t == "categorical":
        return N.Categorical(rec["var"], p["p"], label=label)
    if t == "gaussian":
        return N.Gaussian(rec["var"], float(p["mean"][0]), float(p["std"][0]), label=label)
    if t == "histogram":
        return N.Histogram(rec["var"], p["breaks"], p["densities"], label=label)
    if t == "utility":
        if "breaks" in p:
            return N.Utility(rec["var"], breaks=p["breaks"], densities=p["densities"], label=label)
        return N.Utility(rec["var"], values=p["values"], probs=p["probs"], label=label)
    if t == "interface":
        return N.Interface(int(p["index"][0]), label=label)
    if t == "mvgaussian":
        names = rec["vars"]
        if not isinstance(names, list) or not all(isinstance(v, str) for v in names):
            raise ModelFileError(f"node {rec.get('id')}: 'vars' must be a list of names")
        d = len(names)
        cov = p["cov"]
        if cov.size != d * d:
            raise ModelFileError(f"node {rec.get('id')}: covariance has {cov.size} entries, "
                                 f"expected {d * d} for {d} variables")
        return N.MultivariateGaussian(names, p["mean"], cov.reshape(d, d), label=label)
    raise ModelFileError(f"node {rec.get('id')}: unknown node type {t!r}")


def circuit_from_payload(payload: dict[str, Any], arrays: Arrays) -> Circuit:

    schema = Schema.from_dict(payload["schema"])
    built: list[N.Node] = []
    for i, rec in enumerate(payload["nodes"]):
        if rec.get("id") != i:
            raise ModelFileError(f"node record {i} has id {rec.get('id')!r}; ids must be 0, 1, 2, ...")
        built.append(_build_node(rec, built, arrays))
    root = payload["root"]
    if not isinstance(root, int) or not 0 <= root < len(built):
        raise ModelFileError(f"root id {root!r} is not a node id")
    return Circuit(built[root], schema)


register_kind("circuit", Circuit, circuit_to_payload, circuit_from_payload)
