"""``compile_mdp``: the exact recurrent template of a tabular MDP.

Variables ``s`` (state), ``a`` (action), ``r`` (reward), ``s_next``; partial order
``{s} < {a} < {r, s_next}``. Template::

    root = Σ_s (1/S) [s = s] ⊗ ir_s                      (deterministic on s)
    ir_s = max_a  U_r = R(s,a) ⊗ Σ_{s'} P(s'|s,a) n_{s'}   (R(s,a,s') equal over the row)
    ir_s = max_a  Σ_{s'} P(s'|s,a) ( U_r = R(s,a,s') ⊗ n_{s'} )   (otherwise)
    ir_s = max_a  U_r = 0                                  (terminal s: value 0)
    n_{s'} = [s_next = s'] ⊗ l_{s'}                        (one per state, shared)

so one Bellman pass gives ``Q(s,a) = Σ_s' P(s'|s,a) (R(s,a,s') + γ V(s'))`` exactly (utilities
add in a product; a sum weighs its children's). Leaves and the products ``n_{s'}`` are shared
(one indicator, latent leaf and ``n`` per state, one utility leaf per distinct reward), so the
template has O(nnz(P)) edges: one per nonzero of P when rewards depend on (s, a) only, three
per nonzero otherwise.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from ...circuit import nodes as N
from ...circuit.circuit import Circuit
from ...errors import SolverError
from ...reference.tabular import evaluate_policy
from ...schema import Schema, Variable
from ..recurrent import Template, check_gamma


class MDPTemplate(Template):
    """The :class:`Template` of a tabular MDP: the same passes, with each policy's linear
    system solved by :func:`spmn.reference.tabular.evaluate_policy` (residual-checked GMRES
    cycles before a dense LU when the system is small and not banded, as the reference's own
    policy iteration does), so a small exact solve is not one LU per policy."""

    def policy_evaluation(self, policy: np.ndarray, gamma: float,
                          values0: np.ndarray | None = None) -> np.ndarray:
        gamma = check_gamma(gamma, None)
        M, r = self.policy_system(policy)
        V, _, _ = evaluate_policy(sp.csr_array(M), r, gamma, values0)
        V = np.asarray(V, dtype=np.float64)
        if not np.all(np.isfinite(V)):
            raise SolverError("policy evaluation failed: singular system")
        return V


def _reward_rows(mdp: Any):
    """A function (a, s) -> (reward of each successor column) from the MDP's stored rewards."""
    kind, R, S = mdp._R_kind, mdp._R, mdp.n_states
    if kind == "sa":
        return lambda a, s, cols: np.full(len(cols), R[a, s])
    if kind == "sas":
        return lambda a, s, cols: R[a * S + s, cols]

    def sparse_row(a: int, s: int, cols: np.ndarray) -> np.ndarray:
        lo, hi = R.indptr[a * S + s], R.indptr[a * S + s + 1]
        table = dict(zip(R.indices[lo:hi].tolist(), R.data[lo:hi].tolist()))
        return np.array([table.get(int(j), 0.0) for j in cols])
    return sparse_row


def compile_mdp(mdp: Any, *, backend: str | None = None) -> MDPTemplate:
    """Exact template of a :class:`spmn.reference.TabularMDP` (P[a, s, s'], R[a, s] or
    R[a, s, s'], terminal states absorbing with value 0)."""
    A, S = int(mdp.n_actions), int(mdp.n_states)
    P = mdp.P
    rows = [sp.csr_array(P[a]) for a in range(A)]
    reward = _reward_rows(mdp)
    terminal = np.asarray(mdp.terminal, bool)
    schema = Schema([Variable.discrete("s", S), Variable.decision("a", A), Variable.utility("r"),
                     Variable.discrete("s_next", S)],
                    partial_order=[["s"], ["a"], ["r", "s_next"]])
    nxt = [N.Categorical("s_next", np.eye(1, S, j).ravel(), label=f"s'={j}") for j in range(S)]
    latent = [N.Interface(j) for j in range(S)]
    utils: dict[float, N.Utility] = {}
    steps: dict[int, N.Product] = {}

    def step(j: int) -> N.Product:
        """n_j = [s_next = j] ⊗ l_j, shared by every row that reaches j."""
        j = int(j)
        if j not in steps:
            steps[j] = N.Product([nxt[j], latent[j]], label=f"n_{j}")
        return steps[j]

    def util(x: float) -> N.Utility:
        x = float(x)
        if x not in utils:
            utils[x] = N.Utility.constant("r", x)
        return utils[x]

    stop = N.Product([util(0.0), N.Categorical("s_next", np.full(S, 1.0 / S))], label="terminal")
    roots = []
    for s in range(S):
        if terminal[s]:
            roots.append(N.Max("a", [stop] * A, label=f"ir_{s} (terminal)"))
            continue
        branches = []
        for a in range(A):
            row = rows[a]
            lo, hi = row.indptr[s], row.indptr[s + 1]
            cols, probs = row.indices[lo:hi], row.data[lo:hi]
            keep = probs > 0
            cols, probs = cols[keep], probs[keep]
            rew = reward(a, s, cols)
            w = probs / probs.sum()
            if rew.size and np.all(rew == rew[0]):  # one reward for the row: factor it out
                succ = N.Sum([step(j) for j in cols], w, label=f"P(.|s={s},a={a})")
                branches.append(N.Product([util(rew[0]), succ], label=f"Q(s={s},a={a})"))
            else:
                kids = [N.Product([util(x), nxt[j], latent[j]]) for j, x in zip(cols, rew)]
                branches.append(N.Sum(kids, w, label=f"P(.|s={s},a={a})"))
        roots.append(N.Max("a", branches, label=f"ir_{s}"))
    top = N.Sum([N.Product([N.Categorical("s", np.eye(1, S, s).ravel()), roots[s]])
                 for s in range(S)], np.full(S, 1.0 / S), label="state")
    return MDPTemplate(Circuit(top, schema), roots, state_vars=["s"], next_vars=["s_next"],
                       backend=backend)
