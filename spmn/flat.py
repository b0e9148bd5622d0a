"""FlatCircuit: the flat, read-only arrays of a compiled circuit, and the node-kind codes.

The one type between the compiler (:mod:`spmn.circuit.compile`, which writes it) and the kernels
(:mod:`spmn.kernels`, which read it); it imports nothing but numpy, so the kernels stay below
every node object.

Layout (``n`` nodes in topological order, children before parents, the root is ``n - 1``):

- ``kind[i]``: one of the ``K_*`` codes below (int8).
- ``child_ptr[i]:child_ptr[i+1]`` index ``child_idx`` / ``log_weight``: the children of node
  ``i`` (CSR, int64). Sum edges carry ``log w`` (``-inf`` for a zero weight); product and max
  edges carry 0. A max node's child ``j`` follows decision value ``j``.
- ``var[i]``: schema column of a leaf's variable or a max node's decision; -1 otherwise.
- ``param_ptr[i]:param_ptr[i+1]`` index ``params`` (float64), per leaf kind:

  ==================  ==========================================================
  K_CATEGORICAL       ``log p_0 .. log p_{k-1}``
  K_GAUSSIAN          ``mean, std, log_norm`` with ``log_norm = -log std - ½ log 2π``
  K_HISTOGRAM         ``m, mean, b_0 .. b_m, log d_0 .. log d_{m-1}``
  K_UTILITY_DISCRETE  ``k, mean, v_0 .. v_{k-1}, log p_0 .. log p_{k-1}``
  K_UTILITY_HISTOGRAM ``m, mean, b_0 .. b_m, log d_0 .. log d_{m-1}``
  K_INTERFACE         ``slot``
  K_MVGAUSSIAN        ``d, zoff, c_0 .. c_{d-1}, μ_0 .. μ_{d-1}, Σ_00 .. Σ_{d-1,d-1}``
  ==================  ==========================================================

  ``mean`` is the exact expectation, computed once by the compiler with ``math.fsum``. A multivariate
  Gaussian lists its ``d`` schema columns ``c_j`` (``var[i] = c_0``), its mean and its
  covariance row by row; ``zoff`` places its extra normal draws: variable 0 uses draw column
  ``i`` (its node), variable ``j >= 1`` column ``n_nodes + zoff + j - 1`` (``n_draws`` columns
  in all).
- ``var_card[j]``: k of discrete column ``j``, 0 for continuous ones.
- ``node_map``: the node objects, index-aligned (for reading results back; kernels never
  see it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

K_SUM, K_PRODUCT, K_MAX = 0, 1, 2
K_CATEGORICAL, K_GAUSSIAN, K_HISTOGRAM = 3, 4, 5
K_UTILITY_DISCRETE, K_UTILITY_HISTOGRAM, K_INTERFACE = 6, 7, 8
K_MVGAUSSIAN = 9
KIND_NAMES = ("sum", "product", "max", "categorical", "gaussian", "histogram",
              "utility_discrete", "utility_histogram", "interface", "mvgaussian")
LOG_2PI = math.log(2.0 * math.pi)


def _ro(a: np.ndarray, dtype) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=dtype)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class FlatCircuit:
    """Flat, read-only arrays of a compiled circuit (see the module docstring)."""

    kind: np.ndarray
    child_ptr: np.ndarray
    child_idx: np.ndarray
    log_weight: np.ndarray
    var: np.ndarray
    param_ptr: np.ndarray
    params: np.ndarray
    var_card: np.ndarray
    n_interface: int
    node_map: tuple = field(default=(), repr=False)

    def __post_init__(self) -> None:
        for name, dt in (("kind", np.int8), ("child_ptr", np.int64), ("child_idx", np.int64),
                         ("log_weight", np.float64), ("var", np.int64), ("param_ptr", np.int64),
                         ("params", np.float64), ("var_card", np.int64)):
            object.__setattr__(self, name, _ro(getattr(self, name), dt))
        n = self.kind.shape[0]
        assert n >= 1, "a FlatCircuit needs at least one node"
        assert self.child_ptr.shape == (n + 1,) and self.param_ptr.shape == (n + 1,)
        assert self.child_ptr[0] == 0 and self.child_ptr[-1] == self.child_idx.shape[0]
        assert self.param_ptr[0] == 0 and self.param_ptr[-1] == self.params.shape[0]
        assert np.all(np.diff(self.child_ptr) >= 0) and np.all(np.diff(self.param_ptr) >= 0)
        assert self.log_weight.shape == self.child_idx.shape
        assert self.var.shape == (n,)
        assert np.all((self.kind >= K_SUM) & (self.kind <= K_MVGAUSSIAN))
        parent = np.repeat(np.arange(n), np.diff(self.child_ptr))
        assert np.all(self.child_idx < parent), "children must precede their parents"
        assert np.all(self.child_idx >= 0)
        inner = self.kind <= K_MAX
        assert np.all(np.diff(self.child_ptr)[~inner] == 0), "leaves have no children"
        nv = self.var_card.shape[0]
        needs_var = (self.kind == K_MAX) | ((self.kind >= K_CATEGORICAL) & (self.kind != K_INTERFACE))
        assert np.all((self.var[needs_var] >= 0) & (self.var[needs_var] < nv))
        mx = np.flatnonzero(self.kind == K_MAX)
        assert np.all(np.diff(self.child_ptr)[mx] == self.var_card[self.var[mx]]), \
            "a max node has one child per decision value"
        assert not np.isnan(self.log_weight).any() and not np.isnan(self.params).any()
        assert self.n_interface >= 0
        assert not self.node_map or len(self.node_map) == n

    @property
    def n_nodes(self) -> int:
        return int(self.kind.shape[0])

    @property
    def n_edges(self) -> int:
        return int(self.child_idx.shape[0])

    @property
    def n_vars(self) -> int:
        return int(self.var_card.shape[0])

    @property
    def root(self) -> int:
        return self.n_nodes - 1

    @property
    def n_draws(self) -> int:
        """Columns of the uniform/normal draws a sampling pass reads: one per node plus
        ``d - 1`` per multivariate Gaussian leaf."""
        mv = np.flatnonzero(self.kind == K_MVGAUSSIAN)
        return self.n_nodes + int((self.params[self.param_ptr[mv]] - 1).sum())

    def leaf_params(self, i: int) -> np.ndarray:
        return self.params[self.param_ptr[i]:self.param_ptr[i + 1]]

    def children(self, i: int) -> np.ndarray:
        return self.child_idx[self.child_ptr[i]:self.child_ptr[i + 1]]
