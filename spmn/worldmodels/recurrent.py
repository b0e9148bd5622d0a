"""Recurrent SPMN templates: exact Bellman updates as batched passes of a compiled circuit.

A :class:`Template` is a valid SPMN over one time step (state, action, reward, next state)
whose *interface roots* ``ir_k`` (max nodes over the action, one per region of the state space,
sharing one scope) are mapped one-to-one to the latent :class:`~spmn.circuit.nodes.Interface` leaves
``l_k`` (slot ``k``). A Bellman update is one pass of the compiled template with the latent
leaves bound to ``U(l_k) = γ V_{t+1}(ir_k)`` (and ``L(l_k) = 0``); the new values are read at
the interface roots:

    V_t(k) = max_a Q_t(k, a),   Q_t(k, a) = U(child a of ir_k | l = γ V_{t+1})

which, for a template compiled from a tabular MDP, is exactly
``max_a Σ_s' P(s'|s,a) (R(s,a,s') + γ V(s'))``. Transitions that end the episode lead to no
interface leaf (value 0). Tatavarti, Doshi and Hayes (ICAPS 2021) define RSPMNs; DESIGN.md fixes
the semantics used here (discount and terminal states are first-class).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from .. import kernels
from ..circuit import nodes as N
from ..circuit.circuit import Circuit
from ..errors import SolverError, ValidationError
from ..flat import (
    K_INTERFACE,
    K_MAX,
    K_PRODUCT,
    K_SUM,
    K_UTILITY_DISCRETE,
    K_UTILITY_HISTOGRAM,
)
from ..kernels.reference import first_near_max
from ..schema import Schema, Variable


@dataclass(frozen=True, eq=False)
class RecurrentSolution:
    """Values and policy over the interface states (regions) of a template.

    ``values`` (K,) and ``policy`` (K,) (joint action index, ties -> lowest), ``q`` (K, A);
    for a finite horizon ``values`` is (H+1, K) with ``values[t]`` the optimal return with
    H - t steps to go, ``policy`` (H, K) and ``q`` (H, K, A). ``residual`` is |T V - V|∞ of the returned values.
    """

    values: np.ndarray
    policy: np.ndarray
    q: np.ndarray
    iterations: int
    residual: float
    gamma: float
    horizon: int | None = None
    method: str = ""
    residuals: tuple[float, ...] = ()


def check_gamma(gamma: float, horizon: int | None) -> float:
    g = float(gamma)
    if horizon is None and not 0.0 <= g < 1.0:
        raise SolverError(f"discount gamma={gamma!r} must lie in [0, 1) without a horizon; "
                          "give horizon=H for gamma = 1")
    if horizon is not None and not 0.0 <= g <= 1.0:
        raise SolverError(f"discount gamma={gamma!r} must lie in [0, 1]")
    return g


def _action_leaves(ir: N.Node) -> list[N.Node]:
    """Joint-action branches of an interface root: children of nested max nodes, in the
    order of the joint action code (first decision most significant)."""
    out = [ir]
    while all(isinstance(n, N.Max) for n in out):
        out = [c for n in out for c in n.children]
    return out


class Template:
    """A one-step SPMN plus its interface: ``interface_roots[k]`` is bound to slot ``k``.

    ``backend`` picks the kernels of every Bellman pass (None: the fastest built).
    """

    def __init__(self, circuit: Circuit, interface_roots: Sequence[N.Node], *,
                 state_vars: Sequence[str] = (), next_vars: Sequence[str] = (),
                 backend: str | None = None) -> None:
        self.circuit = circuit
        self.interface_roots = tuple(interface_roots)
        self.state_vars = tuple(state_vars)
        self.next_vars = tuple(next_vars)
        self.backend = backend
        self.check()
        flat = circuit.compile()
        pos = {id(n): i for i, n in enumerate(flat.node_map)}
        self._ir_idx = np.array([pos[id(n)] for n in self.interface_roots], np.int64)
        branches = [_action_leaves(n) for n in self.interface_roots]
        self.n_actions = len(branches[0])
        self._q_idx = np.array([[pos[id(c)] for c in b] for b in branches], np.int64)
        self._empty = np.full((1, len(circuit.schema)), np.nan)
        self._system_cache: dict[bytes, tuple[sp.csr_array, np.ndarray]] = {}

    # ------------------------------------------------------------------ structure
    @property
    def n_states(self) -> int:
        """Number of interface states K (regions of the state space)."""
        return len(self.interface_roots)

    @property
    def decisions(self) -> tuple[str, ...]:
        return self.circuit.decisions

    def check(self) -> None:
        """Soundness (RSPMN conditions): a valid SPMN template; interface roots are max nodes of
        the template sharing one scope and one joint-action layout; every interface leaf's slot
        names an interface root; no interface leaf lies above a max node."""
        if not self.circuit._valid:  # a Circuit validates itself when built
            self.circuit.validate()
        roots = self.interface_roots
        if not roots:
            raise ValidationError("a template needs at least one interface root", rule="interface")
        members = {id(n) for n in self.circuit.nodes}
        scope0 = None
        for k, ir in enumerate(roots):
            name = f"interface root {k} ({N.describe(ir)})"
            if id(ir) not in members:
                raise ValidationError(f"{name} is not a node of the template", node=name, rule="interface")
            if not isinstance(ir, N.Max):
                raise ValidationError(f"{name} must be a max node over the action", node=name,
                                      rule="interface")
            sc = self.circuit.scope(ir)
            if scope0 is None:
                scope0, n0 = sc, len(_action_leaves(ir))
            elif sc != scope0 or len(_action_leaves(ir)) != n0:
                raise ValidationError(f"{name}: interface roots must share one scope and action "
                                      "layout", node=name, rule="interface")
        if len(self.state_vars) != len(self.next_vars):
            raise ValidationError("state_vars and next_vars must pair up one to one", rule="interface")
        for name in (*self.state_vars, *self.next_vars):
            self.circuit.schema.index(name)
        n_slots = self.circuit.compile().n_interface
        if n_slots > len(roots):
            raise ValidationError(f"interface leaves use {n_slots} slots but the template has "
                                  f"{len(roots)} interface roots", rule="interface")

    # ------------------------------------------------------------------ Bellman passes
    def q_values(self, values: np.ndarray, gamma: float) -> np.ndarray:
        """Q(k, a) = U of ir_k's branch a with the latent leaves bound to γ·values (one pass)."""
        flat = self.circuit.compile()
        bound = np.ascontiguousarray(gamma * np.asarray(values, dtype=np.float64)[:flat.n_interface])
        _, U = kernels.get(self.backend).node_values(flat, self._empty, bound, self._q_idx.ravel())
        return U[0].reshape(self.n_states, self.n_actions)

    def bellman(self, values: np.ndarray, gamma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One exact Bellman update: (T V, greedy policy, Q). Ties (within the kernels' tie
        tolerance, see :data:`spmn.kernels.reference.TIE_RTOL`) go to the lowest action."""
        Q = self.q_values(values, gamma)
        pol = first_near_max(Q.T)
        return Q[np.arange(self.n_states), pol], pol, Q

    def finite_horizon(self, horizon: int, gamma: float = 1.0) -> RecurrentSolution:
        """Backward induction: H passes from V_H = 0."""
        gamma = check_gamma(gamma, horizon)
        if int(horizon) != horizon or horizon < 0:
            raise SolverError(f"horizon must be a non-negative integer, got {horizon!r}")
        H, K = int(horizon), self.n_states
        V = np.zeros((H + 1, K))
        pol = np.zeros((H, K), np.int64)
        Q = np.zeros((H, K, self.n_actions))
        for t in range(H - 1, -1, -1):
            V[t], pol[t], Q[t] = self.bellman(V[t + 1], gamma)
        res = 0.0 if H == 0 else float(np.abs(self.bellman(V[1], gamma)[0] - V[0]).max())
        return RecurrentSolution(V, pol, Q, H, res, gamma, H, "finite_horizon")

    def value_iteration(self, gamma: float, tol: float = 1e-8, max_iter: int = 1_000_000,
                        values0: np.ndarray | None = None) -> RecurrentSolution:
        """Value iteration with a proven stopping rule (bounds in the style of MacQueen/Porteus).

        With d = T V - V, c = γ/(1-γ), lo = min(min d, 0), hi = max(max d, 0), every state has
        T V + c·lo <= V* <= T V + c·hi (valid for sub-stochastic templates, where episodes may
        end). We stop when c·(hi - lo)/2 < tol and return the midpoint T V + c·(hi + lo)/2, so
        |V - V*|∞ < tol is guaranteed.
        """
        gamma = check_gamma(gamma, None)
        if tol <= 0:
            raise SolverError(f"tol must be > 0, got {tol!r}")
        V = np.zeros(self.n_states) if values0 is None else np.array(values0, dtype=np.float64)
        c = gamma / (1.0 - gamma)
        residuals = []
        for it in range(1, max_iter + 1):
            TV, pol, Q = self.bellman(V, gamma)
            d = TV - V
            lo, hi = min(float(d.min()), 0.0), max(float(d.max()), 0.0)
            residuals.append(float(np.abs(d).max()))
            V = TV
            if c * (hi - lo) / 2.0 < tol:
                # closed states (no latent leaf below) are exact already: do not shift them
                V = np.where(self._closed(), TV, TV + c * (hi + lo) / 2.0)
                break
        else:
            raise SolverError(f"value iteration did not reach tol={tol} in {max_iter} sweeps")
        TV, pol, Q = self.bellman(V, gamma)
        return RecurrentSolution(V, pol, Q, it, float(np.abs(TV - V).max()), gamma, None,
                                 "value_iteration", tuple(residuals))

    def _closed(self) -> np.ndarray:
        """Interface states with no latent leaf below them (their value is exact at once)."""
        if not hasattr(self, "_closed_mask"):
            flat = self.circuit.compile()
            n = flat.n_nodes
            parent = np.repeat(np.arange(n), np.diff(flat.child_ptr))
            G = sp.csr_array((np.ones(parent.size), (parent, flat.child_idx)), shape=(n, n))
            has = flat.kind == K_INTERFACE
            while True:
                more = has | (G @ has.astype(np.float64) > 0)
                if np.array_equal(more, has):
                    break
                has = more
            self._closed_mask = ~has[self._ir_idx]
        return self._closed_mask

    def policy_system(self, policy: np.ndarray) -> tuple[sp.csr_array, np.ndarray]:
        """(M, r) with U(ir_k) = r_k + Σ_j M[k, j] x_j when the latent leaves hold x and ir_k
        takes action ``policy[k]``: the policy's exact linear system over interface states.

        Computed from the template's structure with empty evidence (every L = 0, so sums
        weigh by their weights): coefficient paths are propagated down from the chosen branches
        level by level as sparse products, which costs O(depth x edges).
        """
        key = np.asarray(policy, np.int64).tobytes()
        if key in self._system_cache:
            return self._system_cache[key]
        flat = self.circuit.compile()
        n, K = flat.n_nodes, self.n_states
        pol = np.asarray(policy, np.int64)
        kind = flat.kind
        parent = np.repeat(np.arange(n), np.diff(flat.child_ptr))
        coef = np.where(kind[parent] == K_SUM, np.exp(flat.log_weight), 1.0)
        keep = (kind[parent] == K_SUM) | (kind[parent] == K_PRODUCT)
        # edge matrix without max edges: coefficient of child c in U(parent)
        C = sp.csr_array((coef[keep], (parent[keep], flat.child_idx[keep])), shape=(n, n))
        start = self._q_idx[np.arange(K), pol]
        X = sp.csr_array((np.ones(K), (np.arange(K), start)), shape=(K, n))
        # base values of the leaves with empty evidence: utility means and interface slots
        leaf_u = np.zeros(n)
        util = np.flatnonzero((kind == K_UTILITY_DISCRETE) | (kind == K_UTILITY_HISTOGRAM))
        leaf_u[util] = flat.params[flat.param_ptr[util] + 1]
        slot_of = np.full(n, -1, np.int64)
        iface = np.flatnonzero(kind == K_INTERFACE)
        slot_of[iface] = flat.params[flat.param_ptr[iface]].astype(np.int64)
        is_slot = slot_of >= 0
        B = sp.csr_array((np.ones(is_slot.sum()), (np.flatnonzero(is_slot), slot_of[is_slot])),
                         shape=(n, max(K, flat.n_interface)))
        M = sp.csr_array((K, B.shape[1]))
        r = np.zeros(K)
        if (kind[start] == K_MAX).any():
            raise SolverError("nested decisions below an interface root's branches are not "
                              "supported by the exact linear solve; use value iteration")
        while X.nnz:
            M = M + X @ B
            r += X @ leaf_u
            X = X @ C
        M = sp.csr_array(M[:, :K])
        self._system_cache = {key: (M, r)}
        return M, r

    def policy_evaluation(self, policy: np.ndarray, gamma: float,
                          values0: np.ndarray | None = None) -> np.ndarray:
        """Exact V_π from V = r_π + γ M_π V (the linear solver of :mod:`spmn.reference`:
        banded or sparse LU, or restarted GMRES to 1e-12 for large sparse systems)."""
        from ..reference._linsolve import solve_policy_system

        gamma = check_gamma(gamma, None)
        M, r = self.policy_system(policy)
        V, _, _ = solve_policy_system(sp.csr_array(M), r, gamma, x0=values0)
        V = np.asarray(V, dtype=np.float64)
        if not np.all(np.isfinite(V)):
            raise SolverError("policy evaluation failed: singular system")
        return V

    def policy_iteration(self, gamma: float, max_iter: int = 10_000) -> RecurrentSolution:
        """Howard's policy iteration: exact evaluation by a sparse solve, greedy improvement by
        one Bellman pass; stops when the policy is stable (keeping the old action on ties)."""
        gamma = check_gamma(gamma, None)
        pol = self.bellman(np.zeros(self.n_states), gamma)[1]
        V = None
        for it in range(1, max_iter + 1):
            V = self.policy_evaluation(pol, gamma, V)
            TV, greedy, Q = self.bellman(V, gamma)
            scale = max(1.0, float(np.abs(Q).max()))
            keep = Q[np.arange(self.n_states), pol] >= TV - 1e-12 * scale
            new = np.where(keep, pol, greedy)
            if np.array_equal(new, pol):
                break
            pol = new
        else:
            raise SolverError(f"policy iteration did not converge in {max_iter} steps")
        return RecurrentSolution(V, greedy, Q, it, float(np.abs(TV - V).max()), gamma, None,
                                 "policy_iteration")

    def solve(self, gamma: float, horizon: int | None = None, method: str = "policy_iteration",
              tol: float = 1e-8) -> RecurrentSolution:
        if horizon is not None:
            return self.finite_horizon(horizon, gamma)
        if method in ("policy_iteration", "pi"):
            return self.policy_iteration(gamma)
        if method in ("value_iteration", "vi"):
            return self.value_iteration(gamma, tol)
        raise SolverError(f"unknown method {method!r}; use 'policy_iteration' or 'value_iteration'")

    # ------------------------------------------------------------------ unrolling
    def unroll(self, horizon: int, gamma: float = 1.0) -> Circuit:
        """The template unrolled over ``horizon`` steps as one ordinary, validated SPMN.

        Variables ``<s>_t`` (t = 0..H), ``<a>_t`` and ``<r>_t`` (t < H), partial order
        ``{s_0} < {a_0} < {r_0, s_1} < {a_1} < ...``; step t's next-state leaves become the
        state ``s_{t+1}``, each latent leaf ``l_j`` of step t becomes a copy of ``ir_j`` at step
        t+1 (dropped at the last step: V_H = 0), utilities are scaled by γ^t. Its MEU given
        ``s_0`` equals :meth:`finite_horizon` ``(H, γ)``'s value of s_0's region.
        """
        gamma = check_gamma(gamma, horizon)
        if gamma <= 0.0 or int(horizon) != horizon or horizon < 1:
            raise SolverError("unroll needs horizon >= 1 and gamma > 0")
        if not self.state_vars:
            raise SolverError("unroll needs the template's state_vars/next_vars pairing")
        H = int(horizon)
        schema = self.circuit.schema
        nxt = dict(zip(self.next_vars, self.state_vars))
        step_vars = [v for v in schema if v.name not in self.state_vars and v.name not in nxt]

        def rename(name: str, t: int) -> str:
            return f"{nxt[name]}_{t + 1}" if name in nxt else f"{name}_{t}"

        variables: list[Variable] = [_renamed(schema[s], f"{s}_0") for s in self.state_vars]
        order: list[list[str]] = [[f"{s}_0" for s in self.state_vars]]
        for t in range(H):
            variables += [_renamed(v, rename(v.name, t)) for v in step_vars]
            variables += [_renamed(schema[s], f"{s}_{t + 1}") for s in self.state_vars]
            for group in schema.partial_order[1:]:
                order.append([rename(x, t) for x in group])
        order = _merge_chance_sets(order, {v.name: v.role for v in variables})
        ends = self._episode_ends()
        below: dict[int, N.Node] | None = None
        pads: list[N.Node | None] = [None] * (H + 1)
        for t in range(H - 1, 0, -1):
            pads[t] = _pad([*step_vars, *(schema[x] for x in self.next_vars)], self.next_vars,
                           lambda name, t=t: rename(name, t), pads[t + 1])
        for t in range(H - 1, -1, -1):
            roots = [self.circuit.root] if t == 0 else list(self.interface_roots)
            copies = _clone(self.circuit.nodes, roots, lambda name, t=t: rename(name, t),
                            gamma ** t, below, ends, pads[t + 1])
            below = {k: copies[id(ir)] for k, ir in enumerate(self.interface_roots)} if t else None
            if t == 0:
                root = copies[id(self.circuit.root)]
        return Circuit(root, Schema(variables, order))

    def _episode_ends(self) -> set[int]:
        """Outcome products without a latent leaf (the episode ends there): products right
        below a sum or max node whose scope holds every next-state variable and no decision."""
        schema = self.circuit.schema
        nxt = {schema.index(x) for x in self.next_vars}
        dec = {schema.index(d) for d in self.decisions}
        out: set[int] = set()
        for nd in self.circuit.nodes:
            if isinstance(nd, (N.Sum, N.Max)):
                for c in nd.children:
                    sc = self.circuit.scope(c)
                    if isinstance(c, N.Product) and nxt <= sc and not sc & dec and not any(isinstance(g, N.Interface) for g in c.children):
                        out.add(id(c))
        return out


def _renamed(v: Variable, name: str) -> Variable:
    return Variable(name, v.kind, v.k, v.labels, v.role)


def _merge_chance_sets(order: list[list[str]], roles: dict[str, str]) -> list[list[str]]:
    """Join consecutive non-decision information sets (they are known together)."""
    out: list[list[str]] = []
    for group in order:
        is_dec = any(roles[x] == "decision" for x in group)
        if out and not is_dec and not any(roles[x] == "decision" for x in out[-1]):
            out[-1] = out[-1] + group
        else:
            out.append(list(group))
    return out


def _pad(step_vars: list[Variable], next_vars: Sequence[str], rename, later: N.Node | None) -> N.Node:
    """The rest of an ended episode from step t on: every action, zero reward, uniform
    states (it only completes the scopes; its utility is 0)."""
    kids: list[N.Node] = []
    for v in step_vars:
        if v.role == "utility":
            kids.append(N.Utility.constant(rename(v.name), 0.0))
        elif v.role == "chance" or v.name in next_vars:
            if not v.is_discrete:
                raise SolverError(f"cannot unroll past an episode end with continuous {v.name!r}")
            kids.append(N.Categorical(rename(v.name), np.full(v.k, 1.0 / v.k)))
    if later is not None:
        kids.append(later)
    node: N.Node = N.Product(kids, label="episode over")
    for v in reversed([v for v in step_vars if v.role == "decision"]):
        node = N.Max(rename(v.name), [node] * v.k)
    return node


def _clone(order: list[N.Node], roots: list[N.Node], rename, scale: float,
           below: dict[int, N.Node] | None, ends: set[int], pad: N.Node | None) -> dict[int, N.Node]:
    """Copy the nodes reachable from ``roots`` with renamed variables and utilities scaled by
    ``scale``; interface leaf j becomes ``below[j]`` (or is dropped when ``below`` is None) and
    episode-end products get ``pad`` (the remaining steps) as an extra child."""
    reach: set[int] = set()
    stack = list(roots)
    while stack:
        nd = stack.pop()
        if id(nd) not in reach:
            reach.add(id(nd))
            stack.extend(nd.children)
    new: dict[int, N.Node | None] = {}
    for nd in order:
        if id(nd) not in reach:
            continue
        if isinstance(nd, N.Interface):
            new[id(nd)] = None if below is None else below[nd.index]
            continue
        kids = [new[id(c)] for c in nd.children]
        if isinstance(nd, N.Product):
            kids = [k for k in kids if k is not None]
            if id(nd) in ends and pad is not None:
                kids.append(pad)
            c = N.Product(kids, label=nd.label)
        elif None in kids:
            raise SolverError(f"{N.describe(nd)}: an interface leaf must sit under a product to unroll")
        elif isinstance(nd, N.Sum):
            c = N.Sum(kids, nd.weights.copy(), label=nd.label)
        elif isinstance(nd, N.Max):
            c = N.Max(rename(nd.var), kids, label=nd.label)
        elif isinstance(nd, N.Utility):
            c = copy.deepcopy(nd)
            if nd.is_histogram:
                c.breaks, c.densities = nd.breaks * scale, nd.densities / scale
            else:
                c.values = nd.values * scale
            c.var = rename(nd.var)
        else:
            c = copy.deepcopy(nd)
            c.var = rename(nd.var)
        new[id(nd)] = c
    return new
