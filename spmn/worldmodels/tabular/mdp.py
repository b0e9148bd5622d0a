"""``CompiledMDP``: the reference :class:`~spmn.reference.TabularMDP` with its dense exact solve
compiled (:mod:`spmn.kernels._numba_mdp`), so a small MDP's whole solve costs little more than
reading P once and P_π a few times (S = 500, A = 4: 0.9-1.2 ms in the benchmark, 0.4-0.65 ms
with P in cache, against pymdptoolbox's 13-15 ms policy iteration; ``benchmarks/bench_mdp.py
--small-only``).

The reference stays the oracle (numpy only) and is the fallback for everything this class does
not compile: rewards R[a, s, s'] with dense P, a given ``policy0`` or ``method``. For sparse
(CSR) P (:mod:`spmn.kernels._numba_mdp_sparse`) the reference constructor runs with a compiled
check pass over the CSR rows, and policy iteration from the default start is the reference's
sparse algorithm in one compiled call (π0 = greedy(r), Q of the deflated start, deflated
Richardson evaluations and improvement steps reading P_π's CSR rows in place, sums in scipy's
order); a P_π the reference would solve banded (bandwidth <= 64), fewer than 64 states, a
stalled evaluation or a long run go to the reference. For dense P and R[a, s]:

- construction (float64 arrays, default start and observation) is one compiled call: R copied
  and checked finite, π0 = greedy(r), and one read of P that checks it (non-negative, finite,
  rows summing to 1, a terminal state's row possibly empty) and computes P b0 and P live for
  policy iteration's start. When anything is wrong the reference constructor runs and raises
  its own error (the same message, naming the action and state). Other inputs take the
  reference constructor with the compiled check pass (:meth:`CompiledMDP._check_pass`).
- :meth:`CompiledMDP.policy_iteration` is the reference's algorithm step for step (π0 valued by
  one deflated step, π1 = greedy of its Q from the check pass, exact evaluation by deflated
  Richardson to the stated residual |r_π + γ P_π V - V|∞ <= 1e-12·(1-γ)·max(1, |V|∞),
  improvement with action elimination, the same tie rules), in one compiled call that reads
  P_π's rows in place. An evaluation whose Richardson iteration stalls (a slowly mixing P_π),
  more than ``HISTORY`` policies or no convergence hand over to :meth:`CompiledMDP._steps`,
  the same loop driven from Python, whose stalled evaluations go to the reference's
  ``evaluate_policy`` (GMRES cycles, then LU).

Results agree with the reference to rounding (tests: 1e-12 relative, the same policy and
iterations). The kernels compile on first use (tens of seconds, then cached on disk).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike

from ...errors import SolverError
from ...kernels import _numba_mdp as K
from ...kernels import _numba_mdp_sparse as KS
from ...reference._linsolve import (
    BANDED_MAX_BW,
    KRYLOV_MIN_S,
    RESIDUAL_RTOL,
    evaluate_policy,
    is_exact,
    residual_target,
)
from ...reference.tabular import (
    METHODS,
    ROW_SUM_ATOL,
    TIE_RTOL,
    MDPSolution,
    TabularMDP,
    _check_stochastic,
    check_gamma,
)

MAX_MATVECS = 200  # the reference's deflated_richardson default
HISTORY = 64  # policies the one-call solve remembers (to detect cycles); more: the step driver


class CompiledMDP(TabularMDP):
    """A :class:`~spmn.reference.TabularMDP` whose dense check pass and policy iteration run
    compiled (Numba); same constructor, attributes and results (see the module docstring)."""

    def __init__(self, P: Any, R: Any, terminal: ArrayLike | None = None,
                 start: ArrayLike | None = None, *, max_episode_steps: int = 200,
                 observation: ArrayLike | None = None) -> None:
        # the common case (float64 arrays P (A, S, S) and R (A, S), default start and
        # observation) in one compiled call: a cold call spends more in numpy's small calls
        # than in the pass itself; anything else, or any error, goes the reference's way
        if not (start is None and observation is None and type(P) is np.ndarray
                and type(R) is np.ndarray and P.dtype == np.float64 and R.dtype == np.float64
                and P.ndim == 3 and P.flags.c_contiguous and R.ndim == 2
                and P.shape[1] == P.shape[2] == R.shape[1] > 0 and P.shape[0] == R.shape[0] > 0
                and int(max_episode_steps) >= 1):
            super().__init__(P, R, terminal, start, max_episode_steps=max_episode_steps,
                             observation=observation)
            return
        A, S = R.shape
        flat = P.reshape(A * S, S)
        if terminal is None:
            term, code, n_live, r, Rc, pi0, b0, live, Pb, Pl, st = K.build_no_terminal(
                flat, R, ROW_SUM_ATOL, TIE_RTOL)
        else:
            term = self._parse_terminal(terminal, S)
            code, n_live, r, Rc, pi0, b0, live, Pb, Pl, st = K.build(flat, R, term, ROW_SUM_ATOL,
                                                                     TIE_RTOL)
        if code:
            super().__init__(P, R, terminal, start, max_episode_steps=max_episode_steps,
                             observation=observation)  # raises the reference's error, or
            return  # (a row flagged by rounding alone) is the reference's model
        self.n_actions, self.n_states = A, S
        self.terminal, self._any_terminal = term, n_live < S
        self._Pf, self._R_kind, self._R, self._r = flat, "sa", Rc, r
        self._guess = (pi0, b0, live, Pb, Pl)
        self.start = st
        self.max_episode_steps = int(max_episode_steps)
        self.observation = np.arange(S)
        self.env_id: str | None = None
        self.env_kwargs: dict[str, Any] = {}

    def _check_pass(self, flat: Any, R: Any) -> tuple[np.ndarray, ...] | None:
        A, S = self.n_actions, self.n_states
        if sp.issparse(flat):  # the reference's canonical CSR: one compiled read of its rows
            if KS.csr_check_pass(flat.indptr, flat.indices, flat.data, S, self.terminal,
                                 ROW_SUM_ATOL):
                _check_stochastic(flat, A, S, self.terminal)  # names the offender and raises
            return None  # as the reference: a sparse P keeps no start guess
        if not isinstance(R, np.ndarray) or R.shape != (A, S) or R.dtype.kind not in "fiu":
            return super()._check_pass(flat, R)
        r = R.astype(np.float64)  # a copy; R itself is checked afterwards by _reward
        r[:, self.terminal] = 0.0
        pi0, b0 = np.empty(S, np.int64), np.empty(S)
        K.greedy_rewards(r, TIE_RTOL, pi0, b0)
        live = (~self.terminal).astype(np.float64)
        sums, Pb = np.empty(A * S), np.empty(A * S)
        two = self._any_terminal
        Pl = np.empty(A * S) if two else sums  # P live = P 1 without terminal states
        if K.check_pass(flat, self.terminal, b0, live, two, ROW_SUM_ATOL, sums, Pb, Pl):
            # some row breaks a rule: the reference check names the first offender and raises
            # (should rounding of the compiled sums alone have flagged it, its products are used)
            sums, prods = _check_stochastic(flat, A, S, self.terminal, (b0, live) if two else (b0,))
            Pb, Pl = prods[0], prods[1] if two else sums
        return pi0, b0, live, Pb, Pl

    def policy_iteration(self, gamma: float, policy0: ArrayLike | None = None, method: str = "auto",
                         max_iter: int = 10_000) -> MDPSolution:
        """The reference's :meth:`~spmn.reference.TabularMDP.policy_iteration`, compiled for
        dense P and R[a, s] from the default start with ``method="auto"`` (otherwise the
        reference runs); same values (to rounding), policy, iterations and residual bound."""
        g = check_gamma(gamma)
        if method not in METHODS:
            raise SolverError(f"method={method!r} is not one of {METHODS}")
        if (policy0 is None and method == "auto" and self.is_sparse
                and self.n_states >= KRYLOV_MIN_S):
            return self._sparse_solve(gamma, g, max_iter)
        if policy0 is not None or method != "auto" or self._guess is None or self.is_sparse:
            return super().policy_iteration(gamma, policy0, method, max_iter)
        _, b0, live, Pb, Pl = self._guess
        status, n, V, best, residual = K.solve_all(
            self._Pf, self._r, self.terminal, b0, live, Pb, Pl, g, ROW_SUM_ATOL, TIE_RTOL,
            RESIDUAL_RTOL, int(max_iter), MAX_MATVECS, min(HISTORY, max(1, int(max_iter))))
        if status == 0:
            return MDPSolution(V, best, n, residual, None)
        return self._steps(g, max_iter)  # a stalled evaluation, a long run or no convergence

    def _sparse_solve(self, gamma: float, g: float, max_iter: int) -> MDPSolution:
        """The reference's sparse policy iteration in one compiled call reading the CSR rows of
        P (:func:`~spmn.kernels._numba_mdp_sparse.csr_solve`); a stalled evaluation, a P_π the
        reference solves banded, a long run or no convergence run the reference instead."""
        Pf = self._Pf
        status, n, V, best, residual = KS.csr_solve_all(
            Pf.indptr, Pf.indices, Pf.data, self._r, self.terminal, g, ROW_SUM_ATOL, TIE_RTOL,
            RESIDUAL_RTOL, int(max_iter), MAX_MATVECS, BANDED_MAX_BW,
            min(HISTORY, max(1, int(max_iter))))
        if status == 0:
            return MDPSolution(V, best, n, residual, None)
        return super().policy_iteration(gamma, None, "auto", max_iter)

    def _steps(self, g: float, max_iter: int) -> MDPSolution:
        """The same policy iteration step by step from Python, each step compiled, a stalled
        evaluation handed to the reference's ``evaluate_policy`` (GMRES cycles, then LU)."""
        S, A = self.n_states, self.n_actions
        Pf, r, term = self._Pf, self._r, self.terminal
        _, b0, live, Pb, Pl = self._guess
        U, V, pi, res = np.empty((A, S)), np.empty(S), np.empty(S, np.int64), np.empty(S)
        K.start_policy(r, term, Pb, Pl, b0, live, g, TIE_RTOL, U, V, pi, res)
        new, best, qmax = np.empty(S, np.int64), np.empty(S, np.int64), np.empty(S)
        ar = np.arange(S)
        rel = RESIDUAL_RTOL * (1.0 - g)
        seen: set[bytes] = set()
        for _ in range(int(max_iter)):
            seen.add(pi.tobytes())
            b = r[pi, ar]
            x = V.copy()
            _, rn = K.richardson(Pf, pi, term, b, live, g, x, res, rel, MAX_MATVECS)
            if not rn <= residual_target(b, x, g):  # a slowly mixing P_π: the reference's GMRES, then LU
                Ppi = np.take(Pf, pi * S + ar, axis=0)
                Ppi[term] = 0.0
                x, _, res = evaluate_policy(Ppi, b, g, x, "auto", res, RESIDUAL_RTOL, live)
            if self._any_terminal:
                x[term] = 0.0
            changed = K.improve(Pf, r, term, pi, V, x, res, U, g, ROW_SUM_ATOL, TIE_RTOL,
                                new, best, qmax)
            V = x
            if not changed or new.tobytes() in seen:  # optimal, or cycling among exact ties
                if is_exact(b, V, res, g):
                    break
                new[:] = pi  # stopped on a loose evaluation: refine it from the warm start
            K.policy_residual(U, new, V, res)
            pi, new = new, pi
        else:
            raise SolverError(f"policy_iteration did not stabilise in {max_iter} improvement steps")
        residual = float(np.abs(qmax - V).max())
        return MDPSolution(V, best.copy(), len(seen), residual, None)
