"""Circuit (node objects) -> :class:`~spmn.flat.FlatCircuit` (the arrays the kernels read).

The layout of the arrays is documented in :mod:`spmn.flat`; this module only writes it. The
node objects are read, never modified.
"""
from __future__ import annotations

import math

import numpy as np

from ..flat import (
    K_CATEGORICAL,
    K_GAUSSIAN,
    K_HISTOGRAM,
    K_INTERFACE,
    K_MAX,
    K_MVGAUSSIAN,
    K_PRODUCT,
    K_SUM,
    K_UTILITY_DISCRETE,
    K_UTILITY_HISTOGRAM,
    LOG_2PI,
    FlatCircuit,
)
from . import nodes as N
from .structure import Structure


def _safe_log(a: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(np.asarray(a, dtype=np.float64))


def leaf_record(node: N.Leaf, schema=None, zoff: int = 0) -> tuple[int, list[float]]:
    """Kind code and flat parameters of one leaf (layout in the module docstring); a
    multivariate Gaussian needs the ``schema`` (its columns) and its draw offset ``zoff``."""
    if isinstance(node, N.MultivariateGaussian):
        cols = [float(schema.index(v)) for v in node.vars]
        cov = (node.cov + node.cov.T) / 2
        return K_MVGAUSSIAN, [float(len(cols)), float(zoff), *cols, *node.mean.tolist(),
                              *cov.reshape(-1).tolist()]
    if isinstance(node, N.Categorical):
        return K_CATEGORICAL, _safe_log(node.p).tolist()
    if isinstance(node, N.Gaussian):
        return K_GAUSSIAN, [node.mean, node.std, -math.log(node.std) - 0.5 * LOG_2PI]
    if isinstance(node, N.Histogram):
        m = len(node.densities)
        return K_HISTOGRAM, [float(m), node.mean(), *node.breaks.tolist(),
                             *_safe_log(node.densities).tolist()]
    if isinstance(node, N.Utility):
        if node.is_histogram:
            m = len(node.densities)
            return K_UTILITY_HISTOGRAM, [float(m), node.expectation(), *node.breaks.tolist(),
                                         *_safe_log(node.densities).tolist()]
        k = len(node.values)
        return K_UTILITY_DISCRETE, [float(k), node.expectation(), *node.values.tolist(),
                                    *_safe_log(node.probs).tolist()]
    if isinstance(node, N.Interface):
        return K_INTERFACE, [float(node.index)]
    raise TypeError(f"cannot compile leaf of type {type(node).__name__}")


def compile_circuit(circuit: Structure) -> FlatCircuit:
    """Flatten a validated circuit; the node objects are read, never modified."""
    order = circuit.nodes
    pos = {id(nd): i for i, nd in enumerate(order)}
    schema = circuit.schema
    n = len(order)
    kind = np.empty(n, np.int8)
    var = np.full(n, -1, np.int64)
    child_ptr = np.zeros(n + 1, np.int64)
    param_ptr = np.zeros(n + 1, np.int64)
    child_idx: list[int] = []
    log_weight: list[float] = []
    params: list[float] = []
    n_interface = 0
    zoff = 0
    for i, nd in enumerate(order):
        if isinstance(nd, N.Sum):
            kind[i] = K_SUM
            log_weight.extend(_safe_log(nd.weights).tolist())
        elif isinstance(nd, N.Product):
            kind[i] = K_PRODUCT
            log_weight.extend([0.0] * len(nd.children))
        elif isinstance(nd, N.Max):
            kind[i] = K_MAX
            var[i] = schema.index(nd.var)
            log_weight.extend([0.0] * len(nd.children))
        else:
            code, rec = leaf_record(nd, schema, zoff)
            kind[i] = code
            params.extend(rec)
            if code == K_MVGAUSSIAN:
                zoff += len(nd.vars) - 1
                var[i] = int(rec[2])
            elif code == K_INTERFACE:
                n_interface = max(n_interface, nd.index + 1)
            else:
                var[i] = schema.index(nd.var)
        child_idx.extend(pos[id(c)] for c in nd.children)
        child_ptr[i + 1] = len(child_idx)
        param_ptr[i + 1] = len(params)
    return FlatCircuit(kind=kind, child_ptr=child_ptr, child_idx=np.array(child_idx, np.int64),
                       log_weight=np.array(log_weight, np.float64), var=var, param_ptr=param_ptr,
                       params=np.array(params, np.float64), var_card=schema.cardinalities,
                       n_interface=n_interface, node_map=tuple(order))
