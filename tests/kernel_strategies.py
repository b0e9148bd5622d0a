"""Random circuits and evidence for the kernel tests (tests/test_kernels*.py).

Generators take a ``numpy.random.Generator`` so that hypothesis drives them through a seed:
mixed circuits (discrete, Gaussian, histogram and utility leaves; with or without decisions),
deep chains (up to 1,000 layers, whose probabilities underflow outside log space) and wide sums
(up to 10,000 children). Also the oracles the comparisons need: the rows where a max node's
choice is a near tie (rounding may break it either way) and finite-difference edge counts.
"""
from __future__ import annotations

import numpy as np
from strategies import random_spmn, random_spn

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
    Variable,
)
from spmn.flat import K_MAX, FlatCircuit
from spmn.kernels import reference


def mixed_spn(rng, n_vars: int = 4, depth: int = 3) -> Circuit:
    """A random SPN over discrete and continuous chance variables and one utility."""
    variables = []
    for i in range(n_vars):
        if rng.random() < 0.5:
            variables.append(Variable.discrete(f"D{i}", int(rng.integers(2, 5))))
        else:
            variables.append(Variable.continuous(f"C{i}"))
    variables.append(Variable.utility("U"))
    return Circuit(random_spn(rng, variables, depth=depth, max_children=4), Schema(variables))


def random_circuit(rng) -> Circuit:
    """A mixed SPN or a random SPMN (decisions, utilities), half and half."""
    if rng.random() < 0.5:
        return mixed_spn(rng, int(rng.integers(1, 6)), int(rng.integers(1, 5)))
    return random_spmn(rng, n_before=int(rng.integers(1, 3)), n_mid=int(rng.integers(0, 2)),
                       n_after=int(rng.integers(1, 3)), two_decisions=bool(rng.random() < 0.5),
                       depth=int(rng.integers(1, 3)))


def _leaves(rng, var: Variable, count: int) -> list:
    """``count`` leaves over ``var`` with full support (categorical, or Gaussian/histogram)."""
    if var.is_discrete:
        return [Categorical(var.name, p) for p in rng.dirichlet(np.ones(var.k), count)]
    out = []
    for j in range(count):
        if j % 2:
            b = np.cumsum(np.r_[-12.0, rng.uniform(2, 8, 3)])
            out.append(Histogram(var.name, b, rng.dirichlet(np.ones(3)) / np.diff(b)))
        else:
            out.append(Gaussian(var.name, rng.normal(), rng.uniform(0.5, 3)))
    return out


def deep_chain(rng, layers: int = 1000) -> Circuit:
    """``layers`` alternating sum / product layers over ``layers // 2`` variables:
    ``N_d = Sum(Product(a_d(X_d), N_{d-1}), Product(b_d(X_d), N_{d-1}))`` (a shared child).
    Far from the mode its probabilities are far below the smallest double."""
    n = max(2, layers // 2)
    variables = [Variable.discrete(f"X{i}", 3) if i % 2 else Variable.continuous(f"X{i}")
                 for i in range(n)]
    node = _leaves(rng, variables[0], 1)[0]
    for d in range(1, n):
        a, b = _leaves(rng, variables[d], 2)
        node = Sum([Product([a, node]), Product([b, node])], rng.dirichlet(np.ones(2)))
    return Circuit(node, Schema(variables), validate=False)


def grouped_circuit(rng, utility: bool | None = None) -> Circuit:
    """A small layered circuit whose regions hold K sums over one child list (the kernels' sum
    groups), with zero, tiny (1e-300: rows where a member's sum leaves the group's safe range
    and falls back to the exact sum) and ordinary weights; with a utility half the time."""
    n_vars = int(rng.integers(2, 6))
    variables = [Variable.discrete(f"X{i}", int(rng.integers(2, 4))) if rng.random() < 0.7
                 else Variable.continuous(f"X{i}") for i in range(n_vars)]
    utility = bool(rng.random() < 0.5) if utility is None else utility
    if utility:
        variables.append(Variable.utility("U"))

    def weights(m: int) -> np.ndarray:
        w = rng.dirichlet(np.ones(m))
        u = rng.random(m)
        w[u < 0.15] = 0.0
        w[(u >= 0.15) & (u < 0.3)] = 1e-300
        if w.max() < 1e-200:
            w[int(rng.integers(m))] = 1.0
        return w / w.sum()

    def region(vs: list[int], K: int) -> list:
        if len(vs) == 1:
            kids = _leaves(rng, variables[vs[0]], 3)
            if utility and vs[0] == 0:
                kids = [Product([leaf, Utility("U", values=rng.normal(0, 5, 2), probs=[0.5, 0.5])])
                        for leaf in kids]
            return [Sum(kids, weights(3)) for _ in range(K)]
        cut = int(rng.integers(1, len(vs)))
        prods = [Product([a, b]) for a in region(vs[:cut], K) for b in region(vs[cut:], K)]
        return [Sum(prods, weights(len(prods))) for _ in range(K)]

    K = int(rng.integers(2, 4))
    return Circuit(Sum(region(list(range(n_vars)), K), weights(K)), Schema(variables))


def wide_sum(rng, width: int = 10_000) -> Circuit:
    """One sum over ``width`` products of two leaves (a discrete and a continuous variable)."""
    variables = [Variable.discrete("A", 4), Variable.continuous("B")]
    kids = [Product([a, b]) for a, b in zip(_leaves(rng, variables[0], width),
                                            _leaves(rng, variables[1], width))]
    return Circuit(Sum(kids, rng.dirichlet(np.ones(width))), Schema(variables), validate=False)


def bellman_template(rng, slots: int = 3) -> Circuit:
    """A one-step template: state S (k = slots), action A, reward R, next state S' whose
    branches end in interface leaves (the latent leaves of a recurrent template)."""
    s = Variable.discrete("S", slots)
    a = Variable.decision("A", 2)
    r = Variable.utility("R")
    s2 = Variable.discrete("S2", slots)
    schema = Schema([s, a, r, s2], [["S"], ["A"], ["R", "S2"]])
    branches = []
    for v in range(slots):
        acts = []
        for _ in range(2):
            nxt = [Product([Categorical("S2", np.eye(slots)[j]), Interface(j)])
                   for j in range(slots)]
            acts.append(Product([Utility("R", values=rng.normal(0, 3, 2), probs=[0.5, 0.5]),
                                 Sum(nxt, rng.dirichlet(np.ones(slots)))]))
        branches.append(Product([Categorical("S", np.eye(slots)[v]), Max("A", acts)]))
    return Circuit(Sum(branches, rng.dirichlet(np.ones(slots))), schema)


def random_evidence(rng, flat: FlatCircuit, rows: int, missing: float | None = None):
    """Rows of valid evidence for the circuit's variables with a share of NaN (up to 50%)."""
    missing = rng.uniform(0, 0.5) if missing is None else missing
    X = np.empty((rows, flat.n_vars))
    for j in range(flat.n_vars):
        k = int(flat.var_card[j])
        if k:
            X[:, j] = rng.integers(0, k, rows)
        else:
            X[:, j] = np.round(rng.normal(0, 3, rows), 2)
    # utility values that a discrete utility leaf lists, so some rows have L > -inf
    for i in np.flatnonzero(flat.kind == 6):
        p = flat.leaf_params(i)
        k = int(p[0])
        pick = rng.random(rows) < 0.5
        X[pick, flat.var[i]] = rng.choice(p[2:2 + k], pick.sum())
    X[rng.random(X.shape) < missing] = np.nan
    return X


def near_tie_rows(flat: FlatCircuit, X: np.ndarray, values=None, band: float = 0.5):
    """Rows where some open max node has an admissible child whose U lies within
    ``band * TIE_RTOL`` (relative) of the tie threshold ``best - TIE_RTOL * max(1, |best|)``:
    rounding may put such a child on either side of it, so these rows are compared between the
    compiled backends only. Exact ties (well inside the threshold) are compared with the
    reference: every backend picks the first tied child."""
    if not np.any(flat.kind == K_MAX):
        return np.zeros(X.shape[0], bool)
    L, U, _ = reference.upward(flat, X, values)
    tie = np.zeros(X.shape[0], bool)
    for i in np.flatnonzero(flat.kind == K_MAX):
        ch = flat.children(i)
        score = np.where(L[ch] > -np.inf, U[ch], -np.inf)
        best = score.max(axis=0)
        with np.errstate(invalid="ignore"):
            scale = np.maximum(1.0, np.abs(best))
            gap = (best - score) / scale
            close = np.isfinite(score) & np.isfinite(best) & \
                (np.abs(gap - reference.TIE_RTOL) <= band * reference.TIE_RTOL)
        tie |= close.any(axis=0) & np.isnan(X[:, flat.var[i]])
    return tie


def utility_scale(flat: FlatCircuit, X: np.ndarray) -> float:
    """A magnitude for absolute tolerances on U: 1 + the largest utility in play."""
    big = 1.0
    for i in np.flatnonzero((flat.kind == 6) | (flat.kind == 7)):
        big = max(big, float(np.abs(flat.leaf_params(i)[2:]).max()))
    obs = X[~np.isnan(X)]
    return big + (float(np.abs(obs).max()) if obs.size else 0.0)

