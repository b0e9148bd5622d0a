"""Random valid circuits for property tests, and brute-force oracles over them.

Generators take a ``numpy.random.Generator`` so that hypothesis drives them through a seed.
"""
from __future__ import annotations

import itertools

import numpy as np
from hypothesis import strategies as st

from spmn import (
    Categorical,
    Circuit,
    Gaussian,
    Histogram,
    Max,
    Product,
    Schema,
    Sum,
    Utility,
    Variable,
)

seeds = st.integers(min_value=0, max_value=2**32 - 1)


def _dirichlet(rng, k, sparse=False):
    p = rng.dirichlet(np.ones(k))
    if sparse and k > 1 and rng.random() < 0.3:
        p[rng.integers(k)] = 0.0
        p /= p.sum()
    return p


def random_leaf(rng, var: Variable):
    if var.role == "utility":
        if rng.random() < 0.5:
            k = int(rng.integers(1, 4))
            return Utility(var.name, values=np.round(rng.normal(0, 10, k), 3), probs=_dirichlet(rng, k))
        m = int(rng.integers(1, 4))
        b = np.cumsum(np.r_[rng.normal(0, 5), rng.uniform(0.5, 3, m)])
        q = _dirichlet(rng, m)
        return Utility(var.name, breaks=b, densities=q / np.diff(b))
    if var.is_discrete:
        return Categorical(var.name, _dirichlet(rng, var.k, sparse=True))
    if rng.random() < 0.5:
        return Gaussian(var.name, rng.normal(), rng.uniform(0.3, 2.0))
    m = int(rng.integers(1, 5))
    b = np.cumsum(np.r_[rng.normal(-2, 1), rng.uniform(0.2, 2, m)])
    q = _dirichlet(rng, m, sparse=True)
    return Histogram(var.name, b, q / np.diff(b))


def random_spn(rng, variables, depth=3, max_children=3):
    """A random complete and decomposable circuit over ``variables`` (no decisions)."""
    variables = list(variables)
    if len(variables) == 1 and (depth <= 0 or rng.random() < 0.4):
        return random_leaf(rng, variables[0])
    if depth <= 0:
        return Product([random_leaf(rng, v) for v in variables])
    if len(variables) > 1 and rng.random() < 0.5:
        perm = rng.permutation(len(variables))
        cut = int(rng.integers(1, len(variables)))
        parts = [[variables[i] for i in perm[:cut]], [variables[i] for i in perm[cut:]]]
        return Product([random_spn(rng, p, depth - 1, max_children) for p in parts])
    k = int(rng.integers(2, max_children + 1))
    return Sum([random_spn(rng, variables, depth - 1, max_children) for _ in range(k)],
               _dirichlet(rng, k))


def random_selective_spn(rng, variables, depth=3):
    """A random circuit whose sums are deterministic (each child fixes one value of a split
    variable), so that max-product MPE is exact on it."""
    variables = list(variables)
    if len(variables) == 1:
        return random_leaf(rng, variables[0])
    if depth <= 0 or rng.random() < 0.3:
        perm = rng.permutation(len(variables))
        cut = int(rng.integers(1, len(variables)))
        parts = [[variables[i] for i in perm[:cut]], [variables[i] for i in perm[cut:]]]
        return Product([random_selective_spn(rng, p, depth - 1) for p in parts])
    j = int(rng.integers(len(variables)))
    x, rest = variables[j], variables[:j] + variables[j + 1:]
    kids = [Product([Categorical(x.name, np.eye(x.k)[v]), random_selective_spn(rng, rest, depth - 1)])
            for v in range(x.k)]
    return Sum(kids, _dirichlet(rng, x.k))


def _split_level(rng, chance, rest, levels, depth):
    """Deterministic splits / products over this level's chance variables, then the next
    decision (a max node) or, after the last decision, a free SPN."""
    if chance:
        x, others = chance[0], chance[1:]
        if x.is_discrete and rng.random() < 0.7:
            # deterministic sum on x: branch v holds the one-hot leaf x = v
            kids, w = [], _dirichlet(rng, x.k)
            for v in range(x.k):
                onehot = np.eye(x.k)[v]
                kids.append(Product([Categorical(x.name, onehot),
                                     *_as_list(_split_level(rng, others, rest, levels, depth))]))
            return Sum(kids, w)
        return Product([random_leaf(rng, x), *_as_list(_split_level(rng, others, rest, levels, depth))])
    if levels:
        (d, nxt), later = levels[0], levels[1:]
        return Max(d.name, [_split_level(rng, list(nxt), rest, later, depth) for _ in range(d.k)])
    return random_spn(rng, rest, depth)


def _as_list(node):
    return list(node.children) if isinstance(node, Product) else [node]


def random_spmn(rng, n_before=1, n_mid=1, n_after=1, two_decisions=True, k=2, depth=2):
    """A random valid SPMN: X0.. < D1 < Y.. < D2 < Z.., U (discrete chance variables)."""
    xs = [Variable.discrete(f"X{i}", int(rng.integers(2, k + 1))) for i in range(n_before)]
    d1 = Variable.decision("D1", int(rng.integers(2, 4)))
    ys = [Variable.discrete(f"Y{i}", int(rng.integers(2, k + 1))) for i in range(n_mid)]
    d2 = Variable.decision("D2", 2)
    zs = [Variable.discrete(f"Z{i}", int(rng.integers(2, k + 1))) for i in range(n_after)]
    u = Variable.utility("U")
    if two_decisions:
        variables = [*xs, d1, *ys, d2, *zs, u]
        order = [[v.name for v in xs], ["D1"], [v.name for v in ys], ["D2"], [*(v.name for v in zs), "U"]]
        levels = [(d1, ys), (d2, [])]
        last = [*zs, u]
    else:
        variables = [*xs, d1, *ys, *zs, u]
        order = [[v.name for v in xs], ["D1"], [*(v.name for v in ys + zs), "U"]]
        levels = [(d1, [])]
        last = [*ys, *zs, u]
    order = [s for s in order if s]
    schema = Schema(variables, order)
    root = _split_level(rng, list(xs), last, levels, depth)
    return Circuit(root, schema)


# ---------------------------------------------------------------------------- oracles
def all_assignments(schema, names):
    cards = [schema[n].k for n in names]
    return list(itertools.product(*[range(k) for k in cards]))


def brute_force_meu(circuit: Circuit) -> float:
    """max over every deterministic policy (decision rules on everything known before each
    decision) of Σ_x p(x | δ) E[U | x, δ], by enumerating policies and chance assignments."""
    schema = circuit.schema
    decs = list(circuit.decisions)
    chance = [v.name for v in schema if v.role == "chance"]
    # the domain of each decision rule: assignments to the chance and decision vars before it
    rules_domain = []
    for d in decs:
        known = [v.name for v in schema if v.role != "utility" and schema.precedes(v.name, d)]
        rules_domain.append((known, all_assignments(schema, known)))
    rule_choices = [list(itertools.product(range(schema[d].k), repeat=len(dom)))
                    for d, (_, dom) in zip(decs, rules_domain)]
    xs = all_assignments(schema, chance)
    base = np.full((len(xs), len(schema)), np.nan)
    for r, a in enumerate(xs):
        for n, v in zip(chance, a):
            base[r, schema.index(n)] = v
    policies = list(itertools.product(*rule_choices))
    X = np.tile(base, (len(policies), 1))  # block p holds every chance assignment under policy p
    for p, policy in enumerate(policies):
        block = X[p * len(xs):(p + 1) * len(xs)]
        for d, (known, dom), rule in zip(decs, rules_domain, policy):
            table = dict(zip(dom, rule))
            for r in range(len(block)):
                block[r, schema.index(d)] = table[tuple(int(block[r, schema.index(n)]) for n in known)]
    L = circuit.log_likelihood(X, backend="reference")
    U = circuit.meu(X, backend="reference")
    eu = (np.exp(L) * U).reshape(len(policies), len(xs)).sum(axis=1)
    return float(eu.max())


def n_policies(circuit: Circuit) -> int:
    schema = circuit.schema
    total = 1
    for d in circuit.decisions:
        known = [v.name for v in schema if v.role != "utility" and schema.precedes(v.name, d)]
        total *= schema[d].k ** int(np.prod([schema[n].k for n in known]))
    return total
