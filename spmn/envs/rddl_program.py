"""All grounded expressions of one RDDL instance, compiled once: next-state distributions, the
reward and the constraints, evaluated over batches of (state, action) rows (see
:mod:`spmn.envs.rddl_cpf` for the expression compiler)."""
from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from spmn.envs.rddl_cpf import (
    ROW_SUM_ATOL,
    ExprCompiler,
    Node,
    deterministic,
    expectation,
    pairs,
    sample,
)
from spmn.errors import DataError


class GroundProgram:
    """Every grounded expression of one instance, compiled once.

    ``domain`` supplies ``model``, ``init_values``, ``state_fluents`` (ground names in column order),
    ``k`` (values per fluent), ``lo`` (value of code 0: 0 for bool and enum, the lower bound for int),
    ``hidden_fluents`` (interm and derived ground names) and ``cpf_order`` (lifted CPF names in
    pyRDDLGym's evaluation order). The constraints are compiled at once; the CPFs and the reward on
    first use, so that a CPF the adapter cannot enumerate fails only the exact paths.
    """

    def __init__(self, domain: Any) -> None:
        self.domain = domain
        self._comp = ExprCompiler(domain.model, domain.init_values)
        model = domain.model

        def numbered(exprs: list, what: str) -> list[tuple[int, Node, set[str]]]:
            return [(i, *self._comp.compile(e, None, f"{what} {i}")) for i, e in enumerate(exprs)]
        self.terminations = numbered(model.terminations, "termination")
        self.invariants = numbered(model.invariants, "state invariant")
        preconditions = numbered(model.preconditions, "action precondition")
        state_names = set(domain.state_fluents) | set(domain.hidden_fluents)
        self.state_preconditions = [c for c in preconditions if c[2] & state_names]
        self.action_preconditions = [c for c in preconditions if not c[2] & state_names]
        self._compiled = False

    def _compile_cpfs(self) -> None:
        if self._compiled:
            return
        domain, model, comp = self.domain, self.domain.model, self._comp
        col = {f: j for j, f in enumerate(domain.state_fluents)}
        cpfs: list[tuple[str, int | None, Node]] = []  # (ground name, state column or None, node)
        reads: list[set[str]] = []
        for lifted in domain.cpf_order:
            params, expr = model.cpfs[lifted]
            names = [p for p, _ in params]
            objs = [model.type_to_objects[t] for _, t in params]
            for combo in itertools.product(*objs):
                gname = model.ground_var(lifted, list(combo))
                node, refs = comp.compile(expr, dict(zip(names, combo)), f"CPF {gname}")
                state = gname[:-1] if gname.endswith("'") else None
                cpfs.append((gname, col.get(state) if state is not None else None, node))
                reads.append(refs)
        reward, rrefs = comp.compile(model.reward, None, "reward")
        later: set[str] = set()
        by_cpf = []  # per CPF: is its value read by a later CPF (a synchronous arc)?
        for i in range(len(cpfs) - 1, -1, -1):
            by_cpf.append(cpfs[i][0] in later)
            later |= reads[i]
        self._cpfs, self._reward = cpfs, reward
        self.read_by_cpf = by_cpf[::-1]
        self.read_by_reward = [g in rrefs for g, _, _ in cpfs]
        self._reward_reads_next = any(r.endswith("'") for r in rrefs)
        self._compiled = True

    @property
    def cpfs(self) -> list[tuple[str, int | None, Node]]:
        """(ground CPF name, state column or None for interm/derived, compiled node), in order."""
        self._compile_cpfs()
        return self._cpfs

    @property
    def reward(self) -> Node:
        self._compile_cpfs()
        return self._reward

    @property
    def reward_reads_next(self) -> bool:
        """True when the reward expression names next-state (primed) fluents: R(s, a, s')."""
        self._compile_cpfs()
        return self._reward_reads_next

    # ------------------------------------------------------------------ helpers
    def _dist(self, node: Node, env: dict, B: int, j: int, gname: str) -> np.ndarray:
        """(B, K) probabilities of state column j's next value."""
        K, lo = self.domain.k[j], self.domain.lo[j]
        D = np.zeros((B, K))
        rows = np.arange(B)
        for v, p in pairs(node, env):
            v = np.broadcast_to(np.asarray(v), (B,))
            p = np.broadcast_to(np.asarray(p, dtype=np.float64), (B,))
            if v.dtype.kind == "f":
                if not np.all((v == np.round(v)) | (p == 0)):
                    bad = v[(v != np.round(v)) & (p != 0)][0]
                    raise DataError(f"CPF {gname}: value {bad!r} is not one of the fluent's "
                                    f"{K} values")
                v = np.round(v)
            code = v.astype(np.int64) - lo
            bad = (code < 0) | (code >= K)
            if np.any(bad & (p != 0)):
                raise DataError(f"CPF {gname}: value {v[bad & (p != 0)][0]!r} is outside the "
                                f"fluent's range {self.domain.values[self.domain.state_fluents[j]]}")
            D[rows, np.where(bad, 0, code)] += np.where(bad, 0.0, p)
        if D.min(initial=0.0) < -ROW_SUM_ATOL or np.abs(D.sum(axis=1) - 1.0).max(initial=0.0) > ROW_SUM_ATOL:
            r = int(np.argmax((D < -ROW_SUM_ATOL).any(axis=1) | (np.abs(D.sum(axis=1) - 1) > ROW_SUM_ATOL)))
            raise DataError(f"CPF {gname}: its distribution {D[r].tolist()} is not a probability "
                            "vector (a Bernoulli or Discrete probability outside [0, 1]?)")
        return D

    def _value(self, j: int, codes: np.ndarray) -> np.ndarray:
        kind = self.domain.kinds[j]
        if kind == "bool":
            return codes.astype(bool)
        return codes.astype(np.int64) + self.domain.lo[j]

    # ------------------------------------------------------------------ batch evaluation
    def next_state(self, env: dict, B: int, rng: np.random.Generator | None = None
                   ) -> tuple[list[np.ndarray], dict]:
        """Per state column the (B, K) next-value distribution (exact, ``rng=None``), or with an
        ``rng`` sampled next codes as one-hot rows. Returns (distributions, env with primed values
        of the fluents read later)."""
        env = dict(env)
        dists: list[np.ndarray | None] = [None] * len(self.domain.state_fluents)
        with np.errstate(all="ignore"):
            for (gname, j, node), by_cpf, by_reward in zip(self.cpfs, self.read_by_cpf,
                                                            self.read_by_reward):
                if j is None:  # interm / derived fluent: deterministic or sampled
                    if rng is None:
                        env[gname] = deterministic(node, env, B, f"interm fluent {gname}")
                    else:
                        env[gname] = sample(node, env, B, rng)
                    continue
                D = self._dist(node, env, B, j, gname)
                if rng is not None:
                    u = rng.random(B)
                    codes = (u[:, None] >= np.cumsum(D, axis=1)[:, :-1]).sum(axis=1)
                    D = np.zeros_like(D)
                    D[np.arange(B), codes] = 1.0
                if by_cpf or (by_reward and rng is not None):
                    codes = D.argmax(axis=1)
                    if rng is None and not np.all(D[np.arange(B), codes] == 1.0):
                        raise DataError(f"CPF {gname} is random and read by a later CPF or the "
                                        "reward (a synchronous arc): the exact compile supports "
                                        "only deterministic synchronous dependencies")
                    env[gname] = self._value(j, codes)
                dists[j] = D
        return dists, env  # type: ignore[return-value]

    def reward_values(self, env: dict, B: int, rng: np.random.Generator | None = None) -> np.ndarray:
        with np.errstate(all="ignore"):
            if rng is None or self.reward[0] != "r":
                return expectation(self.reward, env, B)
            return np.asarray(sample(self.reward, env, B, rng), dtype=np.float64)

    def holds(self, exprs: list, env: dict, B: int) -> np.ndarray:
        """(n_exprs, B) bool: which of the numbered constraints hold in each row."""
        out = np.ones((len(exprs), B), dtype=bool)
        with np.errstate(all="ignore"):
            for r, (i, node, _) in enumerate(exprs):
                out[r] = deterministic(node, env, B, f"constraint {i}").astype(bool)
        return out

    def terminal(self, env: dict, B: int) -> np.ndarray:
        """Rows where some termination condition holds."""
        if not self.terminations:
            return np.zeros(B, dtype=bool)
        return self.holds(self.terminations, env, B).any(axis=0)
