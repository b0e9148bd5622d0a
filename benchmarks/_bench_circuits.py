"""Circuits and baselines for bench_inference.py (not part of the package).

- :func:`layered_circuit`: a random layered (RAT-SPN-like) circuit over categorical
  variables: random balanced splits of the variables, ``K`` sums per region, all ``K x K``
  products per split, one product of leaves per input distribution.
- :func:`to_exchange` / :func:`from_exchange`: a plain JSON form of a sum-product circuit with
  categorical leaves, used to hand circuits to and from SPFlow's venv (written here, no SPFlow
  code).
- :class:`NumpyLayers`: a plain numpy layer-by-layer log-space evaluator (the baseline).
"""
from __future__ import annotations

import numpy as np

from spmn import Categorical, Circuit, Product, Schema, Sum, Utility, Variable
from spmn.flat import K_PRODUCT, K_SUM, FlatCircuit


def layered_circuit(n_vars: int = 32, k: int = 4, depth: int = 3, K: int = 5, inputs: int = 8,
                    reps: int = 14, seed: int = 0, utility: bool = False) -> Circuit:
    """A random valid layered circuit; the defaults give 9,605 nodes / 36,092 edges.
    ``utility=True`` adds a utility variable ``U`` whose leaves sit in the input products of
    the region holding ``X0`` (so MEU passes carry U up through every sum above them)."""
    rng = np.random.default_rng(seed)
    variables = [Variable.discrete(f"X{i}", k) for i in range(n_vars)]
    if utility:
        variables.append(Variable.utility("U"))
    schema = Schema(variables)

    def utility_leaf(vs):
        if utility and 0 in vs:
            return [Utility("U", values=rng.normal(0, 10, 3), probs=rng.dirichlet(np.ones(3)))]
        return []

    def region(vs, d):
        if d == 0 or len(vs) < 2:
            return [Product([*(Categorical(f"X{v}", rng.dirichlet(np.ones(k))) for v in vs),
                             *utility_leaf(vs)]) for _ in range(inputs)]
        cut = len(vs) // 2
        left, right = region(vs[:cut], d - 1), region(vs[cut:], d - 1)
        prods = [Product([a, b]) for a in left for b in right]
        return [Sum(prods, rng.dirichlet(np.ones(len(prods)))) for _ in range(K)]

    tops = []
    for _ in range(reps):
        tops.extend(region(list(rng.permutation(n_vars)), depth))
    return Circuit(Sum(tops, rng.dirichlet(np.ones(len(tops)))), schema, validate=False)


def random_rows(flat: FlatCircuit, rows: int, missing: float = 0.0, seed: int = 0) -> np.ndarray:
    """Uniform random codes for every discrete column, a share ``missing`` set to NaN."""
    rng = np.random.default_rng(seed)
    X = (rng.random((rows, flat.n_vars)) * flat.var_card).astype(np.int64).astype(np.float64)
    X[:, flat.var_card == 0] = np.nan  # utilities unobserved
    if missing:
        X[rng.random(X.shape) < missing] = np.nan
    return X


# ---------------------------------------------------------------------------- exchange form
def to_exchange(circuit: Circuit) -> dict:
    """{"cards": [...], "nodes": [...]} in topological order (children first)."""
    flat = circuit.compile()
    nodes = []
    for i in range(flat.n_nodes):
        kd = int(flat.kind[i])
        ch = flat.children(i).tolist()
        if kd == K_SUM:
            w = np.exp(flat.log_weight[flat.child_ptr[i]:flat.child_ptr[i + 1]])
            nodes.append({"type": "sum", "children": ch, "weights": (w / w.sum()).tolist()})
        elif kd == K_PRODUCT:
            nodes.append({"type": "product", "children": ch})
        else:
            p = np.exp(flat.leaf_params(i))
            nodes.append({"type": "categorical", "var": int(flat.var[i]),
                          "p": (p / p.sum()).tolist()})
    return {"cards": flat.var_card.tolist(), "nodes": nodes}


def from_exchange(doc: dict) -> Circuit:
    """The inverse of :func:`to_exchange` (SPFlow's learned SPNs come back this way)."""
    cards = doc["cards"]
    schema = Schema([Variable.discrete(f"X{i}", int(k)) for i, k in enumerate(cards)])
    built: list = []
    for nd in doc["nodes"]:
        if nd["type"] == "sum":
            built.append(Sum([built[c] for c in nd["children"]], nd["weights"]))
        elif nd["type"] == "product":
            built.append(Product([built[c] for c in nd["children"]]))
        else:
            p = np.zeros(cards[nd["var"]])
            p[:len(nd["p"])] = nd["p"]
            built.append(Categorical(f"X{nd['var']}", p / p.sum()))
    return Circuit(built[-1], schema, validate=False)


# ---------------------------------------------------------------------------- numpy baseline
class NumpyLayers:
    """Log-likelihood layer by layer with numpy: each layer's nodes evaluated at once
    (``reduceat`` over their edges), rows in blocks of ``block``."""

    def __init__(self, flat: FlatCircuit, block: int = 2000) -> None:
        self.flat = flat
        self.block = block
        n = flat.n_nodes
        depth = np.zeros(n, np.int64)
        for i in range(n):
            ch = flat.children(i)
            if ch.size:
                depth[i] = depth[ch].max() + 1
        self.leaves = np.flatnonzero(depth == 0)
        self.layers = []
        for d in range(1, depth.max() + 1):
            for kd in (K_SUM, K_PRODUCT):
                ids = np.flatnonzero((depth == d) & (flat.kind == kd))
                if ids.size == 0:
                    continue
                deg = flat.child_ptr[ids + 1] - flat.child_ptr[ids]
                edges = np.concatenate([np.arange(flat.child_ptr[i], flat.child_ptr[i + 1])
                                        for i in ids])
                starts = np.r_[0, np.cumsum(deg)[:-1]]
                self.layers.append((kd, ids, flat.child_idx[edges], flat.log_weight[edges],
                                    starts, np.repeat(np.arange(ids.size), deg)))
        self.leaf_var = flat.var[self.leaves]
        width = int(flat.var_card.max())
        self.table = np.full((self.leaves.size, width), -np.inf)
        for j, i in enumerate(self.leaves):
            p = flat.leaf_params(i)
            self.table[j, :p.size] = p

    def log_likelihood(self, X: np.ndarray) -> np.ndarray:
        out = np.empty(X.shape[0])
        for lo in range(0, X.shape[0], self.block):
            out[lo:lo + self.block] = self._block(X[lo:lo + self.block])
        return out

    def _block(self, X: np.ndarray) -> np.ndarray:
        V = np.empty((X.shape[0], self.flat.n_nodes))
        x = X[:, self.leaf_var]
        obs = ~np.isnan(x)
        codes = np.where(obs, x, 0).astype(np.int64)
        leafL = self.table[np.arange(self.leaves.size)[None, :], codes]
        V[:, self.leaves] = np.where(obs, leafL, 0.0)
        for kd, ids, child, lw, starts, owner in self.layers:
            if kd == K_PRODUCT:
                V[:, ids] = np.add.reduceat(V[:, child], starts, axis=1)
            else:
                a = V[:, child] + lw
                m = np.maximum.reduceat(a, starts, axis=1)
                mm = np.where(np.isfinite(m), m, 0.0)
                with np.errstate(divide="ignore", invalid="ignore"):
                    s = np.add.reduceat(np.exp(a - mm[:, owner]), starts, axis=1)
                    V[:, ids] = mm + np.log(s)
        return V[:, -1]


# ---------------------------------------------------------------------------- small circuits
def small_spn(seed: int = 5, rows: int = 2000) -> Circuit:
    """An SPN learned by ``spmn.learn_spn`` from 16 categorical variables (2-4 values; two
    latent causes with noise): the small circuit of one rollout step. The benchmarks time the
    84-node one shipped in ``benchmarks/circuits/`` (this made it before the learners' per-node
    random streams; it now makes 112 nodes)."""
    from spmn import learn_spn

    rng = np.random.default_rng(seed)
    z, z2 = rng.integers(0, 3, rows), rng.integers(0, 2, rows)
    X = np.empty((rows, 16))
    for i in range(16):
        k = 2 + i % 3
        base = z if i < 8 else z + z2
        X[:, i] = np.where(rng.random(rows) < 0.6, base % k, rng.integers(0, k, rows))
    return learn_spn(X, seed=0)


def small_spmn(seed: int = 0, rows: int = 2000) -> Circuit:
    """An SPMN learned by ``spmn.learn_spmn`` (the benchmarks time the 100-node one shipped in
    ``benchmarks/circuits/``): two observations before a
    three-valued decision ``d``, two outcomes and a utility after it."""
    from spmn import learn_spmn

    rng = np.random.default_rng(seed)
    x0, x1, d = rng.integers(0, 3, rows), rng.integers(0, 2, rows), rng.integers(0, 3, rows)
    y0 = (x0 + d + rng.integers(0, 2, rows)) % 3
    y1 = np.where(rng.random(rows) < 0.7, x1, rng.integers(0, 2, rows))
    u = (y0 == 2) * 5.0 + y1 * 2.0 - (d == 1) + rng.normal(0, 0.1, rows)
    data = {"x0": x0, "x1": x1, "d": d, "y0": y0, "y1": y1, "u": u}
    return learn_spmn(data, [["x0", "x1"], ["d"], ["y0", "y1", "u"]], decisions="d",
                      utility="u", kinds={"u": "continuous"}, seed=0)
