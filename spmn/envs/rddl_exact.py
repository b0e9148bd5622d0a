"""Exact tabular compile of a grounded RDDL instance: the states reachable from the initial state.

Breadth-first search from ``domain.initial_row`` over every valid joint action: the next-state
distribution of (s, a) is the product over state fluents of their CPF distributions (exact, from
:mod:`spmn.envs.rddl_cpf`), enumerated over the outcomes with non-zero probability. States where a
termination condition holds are terminal (absorbing, value 0; the reward of the step entering one
counts, as in pyRDDLGym). The result is a :class:`spmn.reference.TabularMDP` plus the state index <->
fluent code rows mapping, so V* and any policy's exact finite-horizon value from the initial state
follow by backward induction.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from spmn.envs.rddl_domain import RDDLDomain
from spmn.errors import DataError
from spmn.reference import MDPSolution, TabularMDP

MAX_STATES = 200_000
MAX_TRANSITIONS = 50_000_000
DENSE_ENTRIES = 4_000_000  # A * S * S at most this many: P is stored dense, else CSR
CHUNK_OUTCOMES = 2_000_000  # (s, a, s') rows expanded at once


@dataclass
class ExactRDDL:
    """An RDDL instance's reachable state space as a :class:`TabularMDP`.

    ``states`` (S, n_state_fluents) codes with row 0 the initial state; ``actions`` (A,
    n_action_fluents) the joint actions (``domain.joint_actions()``); ``mdp`` starts in state 0;
    ``seconds`` the compile time; ``n_transitions`` the stored (s, a, s') entries.
    """

    domain: RDDLDomain
    mdp: TabularMDP
    states: np.ndarray
    actions: np.ndarray
    n_transitions: int
    seconds: float
    _index: Any = field(default=None, repr=False)
    _P: Any = field(default=None, repr=False)  # the transition arrays given to ``mdp``

    @property
    def n_states(self) -> int:
        return len(self.states)

    @property
    def n_actions(self) -> int:
        return len(self.actions)

    @property
    def initial(self) -> int:
        return 0

    # ------------------------------------------------------------------ mapping
    def state_index(self, state: Mapping[str, Any] | Sequence[Any]) -> int:
        """Index of a state ({fluent: code} or code row); DataError if it is not reachable."""
        row = self.domain.state_row(state)
        i = self._index.find(row)
        if i is None:
            raise DataError(f"state {self.domain.state_dict(row)} is not reachable from the initial state")
        return i

    def state(self, i: int) -> dict[str, int]:
        """State ``i`` as {state fluent: code}."""
        return self.domain.state_dict(self.states[int(i)])

    def action(self, a: int) -> dict[str, int]:
        """Joint action ``a`` as {action fluent: code}."""
        return self.domain.action_dict(self.actions[int(a)])

    # ------------------------------------------------------------------ values
    def _H_gamma(self, horizon: int | None, gamma: float | None) -> tuple[int, float]:
        H = self.domain.horizon if horizon is None else int(horizon)
        g = self.domain.discount if gamma is None else float(gamma)
        if H < 0:
            raise DataError(f"horizon must be >= 0, got {horizon!r}")
        return H, g

    def solve(self, horizon: int | None = None, gamma: float | None = None) -> MDPSolution:
        """Backward induction over ``horizon`` steps (default the instance's horizon and discount)."""
        H, g = self._H_gamma(horizon, gamma)
        return self.mdp.finite_horizon(H, g)

    def optimal_value(self, horizon: int | None = None, gamma: float | None = None) -> float:
        """V*_0(initial state) over ``horizon`` steps."""
        return float(self.solve(horizon, gamma).values[0, 0])

    def _policy_table(self, policy: Any, H: int) -> np.ndarray:
        """policy -> (H, S, A) probabilities."""
        S, A = self.n_states, self.n_actions
        if isinstance(policy, str):
            if policy != "random":
                raise DataError(f"policy must be 'random', a callable or an array, got {policy!r}")
            ok = self.domain.valid_actions(self.states).astype(np.float64)
            if not ok.any(axis=1).all():
                raise DataError("some reachable state allows no joint action")
            return np.broadcast_to(ok / ok.sum(axis=1, keepdims=True), (H, S, A))
        if hasattr(policy, "policy") and hasattr(policy, "value"):  # a solved model
            policy = np.stack([self.domain.policy_indices(policy, self.states, t) for t in range(H)])
        elif callable(policy):
            idx = np.empty((H, S), dtype=np.int64)
            for t in range(H):
                for s in range(S):
                    idx[t, s] = self.domain.action_index(policy(self.state(s), t))
            policy = idx
        pi = np.asarray(policy)
        if pi.shape in ((S,), (H, S)) and np.issubdtype(pi.dtype, np.integer):
            pi = np.broadcast_to(pi, (H, S))
            if pi.size and (pi.min() < 0 or pi.max() >= A):
                raise DataError(f"policy actions must lie in [0, {A})")
            out = np.zeros((H, S, A))
            np.put_along_axis(out, pi[..., None], 1.0, axis=2)
            return out
        if pi.shape in ((S, A), (H, S, A)):
            pi = np.broadcast_to(pi.astype(np.float64), (H, S, A))
            if (pi < 0).any() or np.abs(pi.sum(axis=2) - 1).max(initial=0.0) > 1e-9:
                raise DataError("a stochastic policy needs non-negative rows summing to 1")
            return pi
        raise DataError(f"policy must be 'random', a callable (state, t) -> action, action indices "
                        f"({S},) / ({H}, {S}) or probabilities ({S}, {A}) / ({H}, {S}, {A}); "
                        f"got shape {pi.shape}")

    def policy_values(self, policy: Any, horizon: int | None = None, gamma: float | None = None
                      ) -> np.ndarray:
        """(H+1, S) exact values of ``policy`` with H - t steps to go (``values[H] = 0``).

        ``policy``: "random" (uniform over the valid joint actions), a Solution of a model over
        the domain's fluents (:meth:`~spmn.envs.rddl_domain.RDDLDomain.policy_indices`),
        ``policy(state, t) -> action``
        (as in :func:`spmn.envs.rddl.evaluate_policy`), action indices (S,) or (H, S), or
        probabilities (S, A) or (H, S, A).
        """
        H, g = self._H_gamma(horizon, gamma)
        pi = self._policy_table(policy, H)
        V = np.zeros((H + 1, self.n_states))
        for t in range(H - 1, -1, -1):
            Q = self.mdp.q_values(V[t + 1], g)  # (A, S), 0 on terminal states
            V[t] = np.einsum("sa,as->s", pi[t], Q)
        return V

    def policy_value(self, policy: Any, horizon: int | None = None, gamma: float | None = None) -> float:
        """The exact value of ``policy`` from the initial state over ``horizon`` steps.

        A solved model or a callable is asked only at the (state, step) pairs the policy itself
        reaches from the initial state (forward pass): V_0(s0) depends on no other, so the
        value equals :meth:`policy_values`' ``[0, 0]`` at a fraction of the lookups."""
        H, g = self._H_gamma(horizon, gamma)
        if isinstance(policy, str) or not (callable(policy) or hasattr(policy, "policy")):
            return float(self.policy_values(policy, H, g)[0, 0])
        pi = self._reached_actions(policy, H)
        V = np.zeros(self.n_states)
        for t in range(H - 1, -1, -1):
            Q = self.mdp.q_values(V, g)  # (A, S), 0 on terminal states
            V = Q[pi[t], np.arange(self.n_states)]
        return float(V[0])

    def _reached_actions(self, policy: Any, H: int) -> np.ndarray:
        """(H, S) action indices of ``policy`` at the states it reaches by each step from the
        initial state (0 elsewhere: those entries never reach V_0(s0))."""
        idx = np.zeros((H, self.n_states), np.int64)
        live = np.zeros(1, np.int64)
        for t in range(H):
            live = live[~self.mdp.terminal[live]]
            if live.size == 0:
                break
            if hasattr(policy, "policy") and hasattr(policy, "value"):  # a solved model
                a = self.domain.policy_indices(policy, self.states[live], t)
            else:
                a = np.fromiter((self.domain.action_index(policy(self.state(s), t))
                                 for s in live), np.int64, live.size)
            idx[t, live] = a
            if t + 1 < H:
                live = self._successors(live, a)
        return idx

    def _successors(self, s: np.ndarray, a: np.ndarray) -> np.ndarray:
        """The distinct next states of the (state, action) pairs ``(s[i], a[i])``."""
        P = self._P
        if isinstance(P, np.ndarray):
            return np.unique(np.nonzero(P[a, s])[1])
        out = [P[u][s[a == u]].indices for u in np.unique(a)]
        return np.unique(np.concatenate(out)).astype(np.int64)

    def greedy_policy(self, horizon: int | None = None, gamma: float | None = None
                      ) -> Callable[[Mapping[str, int], int], dict[str, int]]:
        """The optimal finite-horizon policy as ``policy(state, t) -> action`` (for
        :func:`~spmn.envs.rddl.evaluate_policy` and :func:`~spmn.envs.rddl.log_transitions`)."""
        sol = self.solve(horizon, gamma)
        table = sol.policy

        def policy(state: Mapping[str, int], t: int) -> dict[str, int]:
            return self.action(table[min(int(t), len(table) - 1), self.state_index(state)])
        return policy


# ---------------------------------------------------------------------- the compile
class _Keys:
    """Mixed-radix keys of code rows in int64 words (fluents grouped so each word stays < 2^62)."""

    def __init__(self, k: np.ndarray) -> None:
        self.word, self.radix = np.zeros(len(k), dtype=np.int64), np.zeros(len(k), dtype=np.int64)
        w, r = 0, 1
        for j, kj in enumerate(k.tolist()):
            if r * kj >= 1 << 62:
                w, r = w + 1, 1
            self.word[j], self.radix[j] = w, r
            r *= kj
        self.n_words = w + 1
        self.k = k

    def encode(self, rows: np.ndarray) -> np.ndarray:
        out = np.zeros((len(rows), self.n_words), dtype=np.int64)
        for j in range(len(self.k)):
            out[:, self.word[j]] += rows[:, j] * self.radix[j]
        return out

    def decode(self, keys: np.ndarray) -> np.ndarray:
        return np.stack([(keys[:, self.word[j]] // self.radix[j]) % self.k[j]
                         for j in range(len(self.k))], axis=1).astype(np.int64)

    def as_bytes(self, keys: np.ndarray) -> np.ndarray:
        keys = np.ascontiguousarray(keys)
        return keys.view(np.dtype((np.void, 8 * self.n_words))).ravel()


class _Index:
    """State keys -> state numbers, in the order first seen. One-word keys are kept as a sorted
    int64 array (searchsorted lookups); wider keys as a dict of bytes."""

    def __init__(self, keys: _Keys, max_states: int, what: str) -> None:
        self.keys, self.max_states, self.what = keys, int(max_states), what
        self.n = 0
        self.sorted = np.zeros(0, dtype=np.int64)
        self.ids = np.zeros(0, dtype=np.int64)
        self.table: dict[bytes, int] = {}

    def _grow(self, k: int) -> np.ndarray:
        if self.n + k > self.max_states:
            raise DataError(f"{self.what}: more than max_states={self.max_states} states are reachable "
                            "from the initial state; raise max_states or pick a smaller instance")
        ids = self.n + np.arange(k, dtype=np.int64)
        self.n += k
        return ids

    def map(self, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(state number of each key, keys of the states first seen here, in number order)."""
        if self.keys.n_words == 1:
            flat = key[:, 0]
            pos = np.searchsorted(self.sorted, flat)
            found = np.zeros(len(flat), dtype=bool)
            inside = pos < len(self.sorted)
            found[inside] = self.sorted[pos[inside]] == flat[inside]
            out = np.empty(len(flat), dtype=np.int64)
            out[found] = self.ids[pos[found]]
            if found.all():
                return out, key[:0]
            new, first, inv = np.unique(flat[~found], return_index=True, return_inverse=True)
            order = np.argsort(first)  # number new states in the order they first appear
            rank = np.empty(len(new), dtype=np.int64)
            rank[order] = np.arange(len(new))
            ids = self._grow(len(new))
            out[~found] = ids[rank[inv.ravel()]]
            merged = np.concatenate([self.sorted, new])
            srt = np.argsort(merged, kind="stable")
            self.sorted = merged[srt]
            self.ids = np.concatenate([self.ids, ids[rank]])[srt]
            return out, new[order][:, None]
        kb = self.keys.as_bytes(key)
        uniq, first, inv = np.unique(kb, return_index=True, return_inverse=True)
        ids = np.empty(len(uniq), dtype=np.int64)
        fresh = []
        for u, b in enumerate(uniq):
            i = self.table.get(b.tobytes())
            if i is None:
                fresh.append(u)
            else:
                ids[u] = i
        fresh_keys = key[:0]
        if fresh:
            fresh = sorted(fresh, key=lambda u: first[u])
            new_ids = self._grow(len(fresh))
            ids[fresh] = new_ids
            for u, i in zip(fresh, new_ids.tolist()):
                self.table[uniq[u].tobytes()] = i
            fresh_keys = key[first[fresh]]
        return ids[inv.ravel()], fresh_keys

    def find(self, row: np.ndarray) -> int | None:
        key = self.keys.encode(row[None, :])
        if self.keys.n_words == 1:
            pos = int(np.searchsorted(self.sorted, key[0, 0]))
            if pos < len(self.sorted) and self.sorted[pos] == key[0, 0]:
                return int(self.ids[pos])
            return None
        return self.table.get(self.keys.as_bytes(key)[0].tobytes())


def _expand(dists: list[np.ndarray], keys: _Keys, B: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Enumerate the product of per-fluent distributions: (row of the pair, next key, probability)."""
    idx = np.arange(B)
    prob = np.ones(B)
    key = np.zeros((B, keys.n_words), dtype=np.int64)
    det = [j for j, D in enumerate(dists) if np.all(D.max(axis=1) == 1.0)]
    rnd = [j for j in range(len(dists)) if j not in set(det)]
    for j in det:
        key[:, keys.word[j]] += dists[j].argmax(axis=1) * keys.radix[j]
    for j in rnd:
        r, c = np.nonzero(dists[j][idx] > 0)
        prob = prob[r] * dists[j][idx[r], c]
        key = key[r]
        key[:, keys.word[j]] += c * keys.radix[j]
        idx = idx[r]
    return idx, key, prob


def compile_exact(domain: RDDLDomain, *, max_states: int = MAX_STATES, max_actions: int | None = None,
                  max_transitions: int = MAX_TRANSITIONS, batch_pairs: int = 4096) -> ExactRDDL:
    """The exact MDP over the states reachable from the initial state (see the module docstring).

    DataError naming the limit when more than ``max_states`` states are reachable, more than
    ``max_transitions`` (s, a, s') entries would be stored or more than ``max_actions`` joint actions
    exist; also when a reachable state violates a state invariant or forbids a joint action through a
    state-reading precondition (a TabularMDP has one action set for all states).
    """
    t0 = time.perf_counter()
    prog = domain.program
    acts = domain.joint_actions(max_actions)
    A, nS = len(acts), len(domain.state_fluents)
    keys = _Keys(domain.k)
    index = _Index(keys, max_states, domain.instance_name)
    index.map(keys.encode(domain.initial_row[None, :]))
    rows: list[np.ndarray] = [domain.initial_row[None, :]]
    frontier = domain.initial_row[None, :]
    first = 0
    T_a, T_s, T_t, T_p, T_r = [], [], [], [], []
    R = {}  # state index -> (A,) expected reward
    terminal: list[np.ndarray] = []
    n_trans = 0
    while len(frontier):
        env_f = domain.env_from_rows(frontier, None)
        term = prog.terminal(env_f, len(frontier))
        terminal.append(term)
        if prog.invariants:
            ok = prog.holds(prog.invariants, env_f, len(frontier))
            if not ok.all():
                i, r = np.argwhere(~ok)[0]
                raise DataError(f"reachable state {domain.state_dict(frontier[r])} violates state "
                                f"invariant {prog.invariants[i][0]}")
        live = np.flatnonzero(~term)
        new_rows: list[np.ndarray] = []
        step = max(1, batch_pairs // A)
        for c0 in range(0, len(live), step):
            loc = live[c0:c0 + step]
            S_rows = np.repeat(frontier[loc], A, axis=0)
            A_rows = np.tile(acts, (len(loc), 1))
            B = len(S_rows)
            env = domain.env_from_rows(S_rows, A_rows)
            if prog.state_preconditions:
                ok = prog.holds(prog.state_preconditions, env, B)
                if not ok.all():
                    i, r = np.argwhere(~ok)[0]
                    raise DataError(
                        f"action precondition {prog.state_preconditions[i][0]} forbids joint action "
                        f"{domain.action_dict(A_rows[r])} in reachable state "
                        f"{domain.state_dict(S_rows[r])}: the exact compile needs one action set "
                        "for all reachable states")
            dists, env = prog.next_state(env, B)
            if not prog.reward_reads_next:
                rew = prog.reward_values(env, B)
                for li, s_loc in enumerate(loc):
                    R[first + int(s_loc)] = rew[li * A:(li + 1) * A]
            support = np.prod([np.count_nonzero(D, axis=1) for D in dists], axis=0)
            bounds = np.concatenate([[0], np.cumsum(support)])
            cuts = [0]
            for i in range(1, B + 1):  # sub-batches of at most CHUNK_OUTCOMES outcomes
                if bounds[i] - bounds[cuts[-1]] > CHUNK_OUTCOMES and i - 1 > cuts[-1]:
                    cuts.append(i - 1)
            cuts.append(B)
            for lo, hi in zip(cuts[:-1], cuts[1:]):
                sub = [D[lo:hi] for D in dists]
                pidx, key, prob = _expand(sub, keys, hi - lo)
                pidx = pidx + lo
                n_trans += len(prob)
                if n_trans > max_transitions:
                    raise DataError(f"{domain.instance_name}: more than max_transitions="
                                    f"{max_transitions} (s, a, s') entries; pick a smaller instance")
                t_idx, fresh = index.map(key)
                if len(fresh):
                    frows = keys.decode(fresh)
                    rows.append(frows)
                    new_rows.append(frows)
                s_idx = first + loc[pidx // A]
                T_a.append(pidx % A)
                T_s.append(s_idx)
                T_t.append(t_idx)
                T_p.append(prob)
                if prog.reward_reads_next:
                    nxt = keys.decode(key)
                    env_t = {k: v[pidx] for k, v in env.items()}
                    nenv = domain.env_from_rows(nxt, None)
                    env_t.update({f + "'": nenv[f] for f in domain.state_fluents})
                    T_r.append(prog.reward_values(env_t, len(prob)))
        first += len(frontier)
        frontier = np.concatenate(new_rows) if new_rows else np.zeros((0, nS), dtype=np.int64)
    states = np.concatenate(rows)
    S = len(states)
    term = np.concatenate(terminal)
    a = np.concatenate(T_a) if T_a else np.zeros(0, np.int64)
    s = np.concatenate(T_s) if T_s else np.zeros(0, np.int64)
    t = np.concatenate(T_t) if T_t else np.zeros(0, np.int64)
    p = np.concatenate(T_p) if T_p else np.zeros(0)
    if prog.reward_reads_next:
        rr = np.concatenate(T_r) if T_r else np.zeros(0)
        Rm: Any = [sp.csr_array((rr[a == i], (s[a == i], t[a == i])), shape=(S, S)) for i in range(A)]
    else:
        Rm = np.zeros((A, S))
        for si, rew in R.items():
            Rm[:, si] = rew
    if A * S * S <= DENSE_ENTRIES:
        P: Any = np.zeros((A, S, S))
        P[a, s, t] = p  # each (s, a) lists distinct next states
        if prog.reward_reads_next:
            Rm = np.stack([m.toarray() for m in Rm])
    else:
        P = [sp.csr_array((p[a == i], (s[a == i], t[a == i])), shape=(S, S)) for i in range(A)]
    mdp = TabularMDP(P, Rm, terminal=term, start=0, max_episode_steps=domain.horizon)
    mdp.env_id = f"{domain.name}#{domain.instance}"
    out = ExactRDDL(domain, mdp, states, acts.copy(), int(len(p)), time.perf_counter() - t0)
    out._index = index
    out._P = P
    return out

