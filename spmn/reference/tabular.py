"""Exactly solvable tabular MDPs: value iteration with a certified error bound, policy iteration with
exact (linear-solve) evaluation, backward induction, Q-values and Gymnasium-style logged data.

Bellman operator: (T V)(s) = max_a Σ_s' P[a,s,s'] (R[a,s,s'] + γ V(s')), with V(s) = 0 on terminal states.
Terminal states are absorbing with value 0: their own rows of P and R are excluded (ignored), and the
reward of the transition that enters a terminal state is counted.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike

from spmn.errors import DataError, SolverError
from spmn.reference._linsolve import METHODS, RESIDUAL_RTOL, evaluate_policy, is_exact

ROW_SUM_ATOL = 1e-9  # |Σ_s' P[a,s,s'] - 1| allowed
LOOSE_RTOL = 1e-3  # residual goal of policy iteration's first (iterative) evaluation
TIE_RTOL = 1e-12  # actions whose Q is within TIE_RTOL * max(1, |Q|∞) of the best tie -> lowest index
_EPS = np.finfo(np.float64).eps
CHECK_BLOCK = 1 << 16  # entries of P per block of the check pass (512 kB: the block stays in L2)


@dataclass(frozen=True, eq=False)
class MDPSolution:
    """A solver's output.

    ``values`` float64 (S,) and ``policy`` int64 (S,) (ties -> lowest action index); for
    :meth:`TabularMDP.finite_horizon`, ``values`` is (H+1, S) with ``values[t]`` the optimal return with
    H - t steps to go (``values[H] = 0``) and ``policy`` is (H, S). ``iterations`` counts sweeps (value
    iteration), policies evaluated (policy iteration) or linear-solver iterations (policy evaluation);
    ``residual`` is the final Bellman residual |T V - V|∞ (|T_π V - V|∞ for policy evaluation);
    ``q`` holds Q[a, s] of the returned values (None for policy iteration and finite horizons).
    """

    values: np.ndarray
    policy: np.ndarray
    iterations: int
    residual: float
    q: np.ndarray | None = None


def check_gamma(gamma: float, allow_one: bool = False) -> float:
    """Return γ as float; SolverError unless 0 <= γ < 1 (γ = 1 allowed for finite horizons)."""
    try:
        g = float(gamma)
    except (TypeError, ValueError):
        raise SolverError(f"discount gamma={gamma!r} is not a number") from None
    ok = 0.0 <= g <= 1.0 if allow_one else 0.0 <= g < 1.0
    if not ok:
        span = "[0, 1]" if allow_one else "[0, 1) for an infinite horizon"
        raise SolverError(f"discount gamma={gamma!r} is outside {span}")
    return g


def _greedy(Q: np.ndarray, qmax: np.ndarray | None = None) -> np.ndarray:
    """Lowest-index argmax over axis 0 with a relative tie tolerance (``qmax``: Q.max(0) if known)."""
    qmax = Q.max(axis=0) if qmax is None else qmax
    atol = TIE_RTOL * max(1.0, float(np.abs(qmax).max(initial=0.0)))
    return np.argmax(Q >= qmax - atol, axis=0).astype(np.int64)


def _rows_stack(P: Any) -> tuple[Any, int, int]:
    """P -> (flat (A*S, S) dense ndarray or CSR, A, S)."""
    if sp.issparse(P) and P.ndim == 3:
        coo = sp.coo_array(P)
        A, S, S2 = coo.shape
        a, s, t = coo.coords
        flat = sp.csr_array((coo.data.astype(np.float64), (a * S + s, t)), shape=(A * S, S2))
    elif isinstance(P, (list, tuple)) and any(sp.issparse(m) for m in P):
        mats = [sp.csr_array(m, dtype=np.float64) for m in P]
        shapes = {m.shape for m in mats}
        if len(shapes) != 1:
            raise DataError(f"P: the per-action matrices have different shapes {sorted(shapes)}")
        A, (S, S2) = len(mats), mats[0].shape
        flat = sp.csr_array(sp.vstack(mats, format="csr"))
    else:
        try:
            arr = np.asarray(P, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise DataError(f"P must be a float array of shape (A, S, S): {exc}") from None
        if arr.ndim != 3:
            raise DataError(f"P must have shape (A, S, S) (P[a, s, s']), got shape {arr.shape}")
        A, S, S2 = arr.shape
        flat = np.ascontiguousarray(arr).reshape(A * S, S2)
    if S != S2 or A == 0 or S == 0:
        raise DataError(f"P must have shape (A, S, S) with A, S >= 1, got {(A, S, S2)}")
    if sp.issparse(flat):
        flat.sum_duplicates()
        flat.sort_indices()
    return flat, A, S


def _check_stochastic(flat: Any, A: int, S: int, terminal: np.ndarray,
                      vecs: tuple[np.ndarray, ...] = ()) -> tuple[np.ndarray, list[np.ndarray]]:
    """Finite, non-negative rows summing to 1 (terminal rows may be empty), in one cache-friendly pass.

    Returns the row sums P 1 and ``[P @ v for v in vecs]``, computed in the same pass over a dense
    P (each block of P is in the core's cache then); [] for a sparse P (its products are cheap).
    """
    if sp.issparse(flat):
        sums = np.asarray(flat.sum(axis=1)).ravel()
        low = float(flat.data.min(initial=0.0))
        prods = []
    else:
        # 512 kB row blocks, so P is read once from memory: the minimum streams each block into
        # the core's cache (a plain reduction prefetches better than BLAS), then one product with
        # X = [1, vecs...] (S, k) rereads it (cheaper than k matrix-vector products)
        X = np.empty((S, 1 + len(vecs)), order="F")
        X[:, 0] = 1.0
        for j, v in enumerate(vecs, 1):
            X[:, j] = v
        Y = np.empty((A * S, X.shape[1]))
        low, step = 0.0, max(1, CHECK_BLOCK // S)
        for i in range(0, A * S, step):
            blk = flat[i:i + step]
            low = min(low, float(blk.min()))
            np.dot(blk, X, out=Y[i:i + step])
        sums, prods = Y[:, 0], [Y[:, j] for j in range(1, X.shape[1])]
    if not np.all(np.isfinite(sums)):  # any NaN or infinite entry makes its row sum non-finite
        row = int(np.argmax(~np.isfinite(sums)))
        raise DataError(f"P[a={row // S}, s={row % S}, :] contains NaN or infinite entries")
    if low < 0:
        if sp.issparse(flat):
            k = int(np.argmax(flat.data < 0))
            row = int(np.searchsorted(flat.indptr, k, side="right") - 1)
            col, val = int(flat.indices[k]), float(flat.data[k])
        else:
            row, col = (int(i) for i in np.argwhere(flat < 0)[0])
            val = float(flat[row, col])
        raise DataError(f"P[a={row // S}, s={row % S}, s'={col}] = {val} is a negative probability")
    bad = np.abs(sums - 1.0) > ROW_SUM_ATOL
    if bad.any():
        bad &= ~(np.tile(terminal, A) & (sums == 0.0))  # a terminal state's row may be left empty
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(
            f"P[a={row // S}, s={row % S}, :] sums to {sums[row]!r}, not 1 (tolerance {ROW_SUM_ATOL})"
        )
    return sums, prods


def _start_guess(R: Any, A: int, S: int, terminal: np.ndarray) -> tuple[np.ndarray, ...] | None:
    """(π0 = greedy(r), b0 = r_π0, live) for rewards R[a, s] given as a dense (A, S) array (None
    otherwise): what policy iteration starts from, known before P is read (see ``_check_stochastic``).
    Unchecked here (``_reward`` checks R after P)."""
    if not isinstance(R, np.ndarray) or R.shape != (A, S) or R.dtype.kind not in "fiu":
        return None
    r = R.astype(np.float64)  # a copy
    r[:, terminal] = 0.0
    pi = _greedy(r)
    return pi, r[pi, np.arange(S)], (~terminal).astype(np.float64)


def _reward(R: Any, flat: Any, A: int, S: int) -> tuple[np.ndarray, str, Any]:
    """R -> (expected reward r[a, s], kind, stored R) with kind 'sa', 'sas' (dense) or 'sas_sparse'."""
    if sp.issparse(R) or (isinstance(R, (list, tuple)) and any(sp.issparse(m) for m in R)):
        if sp.issparse(R) and R.ndim == 3:
            coo = sp.coo_array(R)
            a, s, t = coo.coords
            Rf = sp.csr_array((coo.data.astype(np.float64), (a * S + s, t)), shape=(A * S, S))
        elif sp.issparse(R):
            raise DataError("R: a sparse reward must be (A, S, S) or a list of A (S, S) matrices")
        else:
            Rf = sp.csr_array(sp.vstack([sp.csr_array(m, dtype=np.float64) for m in R], format="csr"))
        if Rf.shape != (A * S, S):
            raise DataError(f"R has {Rf.shape[0] // max(S, 1)} actions x {Rf.shape[1]} states; "
                            f"expected ({A}, {S}, {S}) to match P")
        Rf.sum_duplicates()
        Rf.sort_indices()
        if not np.all(np.isfinite(Rf.data)):
            raise DataError("R contains NaN or infinite entries")
        prod = Rf.multiply(flat)
        r = np.asarray(prod.sum(axis=1)).reshape(A, S)
        return r, "sas_sparse", Rf
    try:
        arr = np.asarray(R, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"R must be a float array of shape (A, S) or (A, S, S): {exc}") from None
    if not np.all(np.isfinite(arr)):
        raise DataError("R contains NaN or infinite entries")
    if arr.shape == (A, S):
        return arr.copy(), "sa", arr.copy()
    if arr.shape == (A, S, S):
        Rf = arr.reshape(A * S, S)
        if sp.issparse(flat):
            r = np.asarray(flat.multiply(Rf).sum(axis=1)).reshape(A, S)
        else:
            r = np.einsum("ij,ij->i", flat, Rf).reshape(A, S)
        return r, "sas", Rf
    raise DataError(f"R has shape {arr.shape}; expected R[a, s] of shape ({A}, {S}) "
                    f"or R[a, s, s'] of shape ({A}, {S}, {S})")


class TabularMDP:
    """A finite MDP with transitions ``P[a, s, s']`` and rewards ``R[a, s]`` or ``R[a, s, s']``.

    ``terminal``: bool mask (S,) or state indices; terminal states are absorbing with value 0.
    ``start``: distribution (S,) or a single state index; default uniform over non-terminal states.
    ``max_episode_steps``: time limit used by :meth:`sample_transitions`. ``observation`` (S,): the
    state number reported in logged data (identity unless a Gymnasium import added end-state copies).
    """

    def __init__(self, P: Any, R: Any, terminal: ArrayLike | None = None, start: ArrayLike | None = None,
                 *, max_episode_steps: int = 200, observation: ArrayLike | None = None) -> None:
        flat, A, S = _rows_stack(P)
        self.n_actions, self.n_states = A, S
        self.terminal = self._parse_terminal(terminal, S)
        self._any_terminal = bool(self.terminal.any())
        guess = self._check_pass(flat, R)
        self._Pf = flat
        r, self._R_kind, self._R = _reward(R, flat, A, S)
        r[:, self.terminal] = 0.0
        self._r = r
        # policy iteration's start, read off the check pass: π0, b0 = r_π0, live, P b0, P live
        self._guess = guess if self._R_kind == "sa" else None
        self.start = self._parse_start(start, S, self.terminal)
        if int(max_episode_steps) < 1:
            raise DataError(f"max_episode_steps must be >= 1, got {max_episode_steps!r}")
        self.max_episode_steps = int(max_episode_steps)
        obs = np.arange(S) if observation is None else np.asarray(observation, dtype=np.int64)
        if obs.shape != (S,):
            raise DataError(f"observation must have shape ({S},), got {obs.shape}")
        self.observation = obs
        self.env_id: str | None = None
        self.env_kwargs: dict[str, Any] = {}

    # ------------------------------------------------------------------ construction helpers
    def _check_pass(self, flat: Any, R: Any) -> tuple[np.ndarray, ...] | None:
        """Check P (``_check_stochastic``) and, for dense P and R[a, s], return policy iteration's
        start read off the same pass: (π0, b0 = r_π0, live, P b0, P live) (None otherwise).
        R itself is checked afterwards by ``_reward``. Subclasses may compile this pass."""
        A, S = self.n_actions, self.n_states
        guess = _start_guess(R, A, S, self.terminal) if not sp.issparse(flat) else None
        vecs = guess[1:] if guess and self._any_terminal else guess[1:2] if guess else ()
        sums, prods = _check_stochastic(flat, A, S, self.terminal, vecs)
        if guess and not self._any_terminal:
            prods.append(sums)  # P live = P 1
        return (*guess, *prods) if guess else None

    @staticmethod
    def _parse_terminal(terminal: ArrayLike | None, S: int) -> np.ndarray:
        if terminal is None:
            return np.zeros(S, dtype=bool)
        t = np.asarray(terminal)
        if t.dtype == bool:
            if t.shape != (S,):
                raise DataError(f"terminal mask must have shape ({S},), got {t.shape}")
            return t.copy()
        idx = t.astype(np.int64).ravel()
        if idx.size and (idx.min() < 0 or idx.max() >= S):
            raise DataError(f"terminal state indices must lie in [0, {S}), got {idx.tolist()}")
        mask = np.zeros(S, dtype=bool)
        mask[idx] = True
        return mask

    @staticmethod
    def _parse_start(start: ArrayLike | None, S: int, terminal: np.ndarray) -> np.ndarray:
        if start is None:
            if terminal.all():
                raise DataError("every state is terminal: there is no start state")
            return (~terminal) / float((~terminal).sum())
        st = np.asarray(start)
        if st.ndim == 0:
            s0 = int(st)
            if not 0 <= s0 < S:
                raise DataError(f"start state {s0} outside [0, {S})")
            st = np.zeros(S)
            st[s0] = 1.0
        st = st.astype(np.float64)
        if st.shape != (S,) or not np.all(np.isfinite(st)) or (st < 0).any():
            raise DataError(f"start must be a state index or a distribution of shape ({S},) >= 0")
        if abs(st.sum() - 1.0) > ROW_SUM_ATOL:
            raise DataError(f"start distribution sums to {st.sum()!r}, not 1")
        if (st[terminal] > 0).any():
            bad = np.flatnonzero(terminal & (st > 0)).tolist()
            raise DataError(f"start puts mass on terminal states {bad}")
        return st

    @classmethod
    def from_gymnasium(cls, env_id: str, **kwargs: Any) -> "TabularMDP":
        """Read ``env.unwrapped.P`` of a Gymnasium toy-text env (FrozenLake, Taxi, CliffWalking).

        See :func:`spmn.reference.gym_import.mdp_from_gymnasium` for how ``terminated`` is modelled.
        """
        from spmn.reference.gym_import import mdp_from_gymnasium

        return mdp_from_gymnasium(cls, env_id, **kwargs)

    # ------------------------------------------------------------------ views
    @property
    def is_sparse(self) -> bool:
        """True when transitions are stored as CSR."""
        return sp.issparse(self._Pf)

    @property
    def P(self) -> np.ndarray | tuple[sp.csr_array, ...]:
        """Transitions: dense (A, S, S) view, or a tuple of A CSR (S, S) matrices when sparse."""
        A, S = self.n_actions, self.n_states
        if self.is_sparse:
            return tuple(sp.csr_array(self._Pf[a * S:(a + 1) * S]) for a in range(A))
        return self._Pf.reshape(A, S, S)

    @property
    def expected_reward(self) -> np.ndarray:
        """r[a, s] = Σ_s' P[a,s,s'] R[a,s,s'] (0 on terminal states), shape (A, S)."""
        return self._r.copy()

    def start_value(self, values: ArrayLike) -> float:
        """Expected value under the start distribution, Σ_s start(s) V(s)."""
        return float(self.start @ np.asarray(values, dtype=np.float64))

    def __repr__(self) -> str:
        kind = "sparse" if self.is_sparse else "dense"
        src = f", env_id={self.env_id!r}" if self.env_id else ""
        return (f"TabularMDP(n_states={self.n_states}, n_actions={self.n_actions}, {kind}, "
                f"terminal={int(self.terminal.sum())}{src})")

    # ------------------------------------------------------------------ Bellman operators
    def _q(self, V: np.ndarray, gamma: float) -> np.ndarray:
        A, S = self.n_actions, self.n_states
        if self.is_sparse:
            Q = np.asarray(self._Pf @ V).reshape(A, S)
        else:  # one (S, S) product per action: BLAS would thread a long (A*S, S) one, and a
            Q = np.empty((A, S))  # thread team costs more than this memory-bound product gains
            for a in range(A):
                np.dot(self._Pf[a * S:(a + 1) * S], V, out=Q[a])
        Q *= gamma
        Q += self._r
        if self._any_terminal:
            Q[:, self.terminal] = 0.0
        return Q

    def q_values(self, V: ArrayLike, gamma: float) -> np.ndarray:
        """Q[a, s] = Σ_s' P[a,s,s'] (R[a,s,s'] + γ V(s')), V(terminal) taken as 0; shape (A, S)."""
        g = check_gamma(gamma, allow_one=True)
        V = np.array(V, dtype=np.float64)
        if V.shape != (self.n_states,):
            raise DataError(f"V must have shape ({self.n_states},), got {V.shape}")
        V[self.terminal] = 0.0
        return self._q(V, g)

    def _check_policy(self, policy: ArrayLike) -> np.ndarray:
        pi = np.asarray(policy)
        S, A = self.n_states, self.n_actions
        if pi.shape == (S,):
            if not np.issubdtype(pi.dtype, np.integer) and not np.all(pi == np.round(pi)):
                raise DataError("a deterministic policy must hold integer actions")
            pi = pi.astype(np.int64)
            if pi.min() < 0 or pi.max() >= A:
                raise DataError(f"policy actions must lie in [0, {A}), got range [{pi.min()}, {pi.max()}]")
            return pi
        if pi.shape == (S, A):
            pi = pi.astype(np.float64)
            if (pi < 0).any() or np.abs(pi.sum(axis=1) - 1.0).max() > ROW_SUM_ATOL:
                raise DataError("a stochastic policy (S, A) needs non-negative rows summing to 1")
            return pi
        raise DataError(f"policy must have shape ({S},) (actions) or ({S}, {A}) (probabilities), "
                        f"got {pi.shape}")

    def _policy_system(self, pi: np.ndarray) -> tuple[Any, np.ndarray]:
        """(P_π with terminal rows zeroed, r_π) for a deterministic (S,) or stochastic (S, A) policy."""
        S, A = self.n_states, self.n_actions
        live = (~self.terminal).astype(np.float64)
        if pi.ndim == 1:
            rows = pi * S + np.arange(S)
            b = self._r[pi, np.arange(S)]
            if self.is_sparse:
                Ppi = sp.csr_array(self._Pf[rows])
                if self.terminal.any():
                    Ppi = sp.csr_array(sp.diags_array(live) @ Ppi)
            else:
                Ppi = np.take(self._Pf, rows, axis=0)
                if self._any_terminal:
                    Ppi[self.terminal] = 0.0
            return Ppi, b
        b = np.einsum("sa,as->s", pi, self._r)
        w = pi * live[:, None]
        if self.is_sparse:
            Ppi = sum(sp.diags_array(w[:, a]) @ self._Pf[a * S:(a + 1) * S] for a in range(A))
            return sp.csr_array(Ppi), b
        return np.einsum("sa,ast->st", w, self._Pf.reshape(A, S, S)), b

    # ------------------------------------------------------------------ solvers
    def value_iteration(self, gamma: float, tol: float = 1e-8, max_iter: int = 100_000,
                        v0: ArrayLike | None = None) -> MDPSolution:
        """V_{k+1} = T V_k until the MacQueen bounds V_k + γ/(1-γ)·[min, max](V_k - V_{k-1}) ∋ V*
        are tol-tight.

        Returns the midpoint of the bounds, so max|V - V*| < tol holds (rounding included), not merely
        an ε-optimal policy. Raises SolverError if tol is below the floating-point floor or max_iter is hit.
        """
        g = check_gamma(gamma)
        if not tol > 0:
            raise SolverError(f"tol must be > 0, got {tol!r}")
        if int(max_iter) < 1:
            raise SolverError(f"max_iter must be >= 1, got {max_iter!r}")
        c = g / (1.0 - g)
        V = np.zeros(self.n_states) if v0 is None else np.array(v0, dtype=np.float64)
        if V.shape != (self.n_states,):
            raise DataError(f"v0 must have shape ({self.n_states},), got {V.shape}")
        V[self.terminal] = 0.0
        for k in range(1, int(max_iter) + 1):
            Vn = self._q(V, g).max(axis=0)
            d = Vn - V
            lo, hi = float(d.min()), float(d.max())
            V = Vn
            # rounding of one sweep is a few ulps of |V|; it is amplified by 1/(1-γ) like any error
            floor = (c + 1.0) * 16 * _EPS * max(1.0, float(np.abs(V).max()))
            if floor >= tol:
                raise SolverError(f"value_iteration: tol={tol:g} is below the rounding floor {floor:.3g} "
                                  f"at gamma={g}; use a larger tol or policy_iteration")
            if c * (hi - lo) / 2.0 + floor < tol:
                break
        else:
            raise SolverError(f"value_iteration did not reach tol={tol:g} in {max_iter} sweeps "
                              f"(bound {c * (hi - lo) / 2:.3g}); raise max_iter or use policy_iteration")
        V = V + c * (hi + lo) / 2.0
        V[self.terminal] = 0.0
        Q = self._q(V, g)
        residual = float(np.abs(Q.max(axis=0) - V).max())
        return MDPSolution(V, _greedy(Q), k, residual, Q)

    def policy_evaluation(self, policy: ArrayLike, gamma: float, method: str = "auto",
                          v0: ArrayLike | None = None) -> MDPSolution:
        """V_π solving (I - γ P_π) V = r_π exactly; policy (S,) actions or (S, A) probabilities.

        method: 'auto' | 'direct' (LU) | 'banded' | 'iterative' (GMRES/BiCGSTAB, residual-checked).
        The solution's ``policy`` is the evaluated one (its most probable action when stochastic).
        """
        g = check_gamma(gamma)
        if method not in METHODS:
            raise SolverError(f"method={method!r} is not one of {METHODS}")
        pi = self._check_policy(policy)
        Ppi, b = self._policy_system(pi)
        V, iters, res = evaluate_policy(Ppi, b, g, v0, method,
                                        rowsums=(~self.terminal).astype(np.float64))
        V[self.terminal] = 0.0
        residual = float(np.abs(res).max(initial=0.0))
        det = pi if pi.ndim == 1 else np.argmax(pi, axis=1).astype(np.int64)
        return MDPSolution(V, det, iters, residual, self._q(V, g))

    def _q_rows(self, a: np.ndarray, s: np.ndarray, V: np.ndarray, gamma: float) -> np.ndarray:
        """Q[a_k, s_k] = r[a_k, s_k] + γ P[a_k, s_k, :] V for index pairs (terminal states not allowed)."""
        return self._r[a, s] + gamma * np.asarray(self._Pf[a * self.n_states + s] @ V)

    def policy_iteration(self, gamma: float, policy0: ArrayLike | None = None, method: str = "auto",
                         max_iter: int = 10_000) -> MDPSolution:
        """Howard's policy iteration: exact evaluation (I - γ P_π) V = r_π, then greedy improvement.

        Only the first improvement step reads all of P: afterwards, with δ = V_new - V_old and
        stochastic rows, Q_new[a, s] <= U[a, s] + γ max δ bounds every action, and Q is recomputed
        exactly only where that bound comes within the tie tolerance of the current action (action
        elimination), so every decision is exact. An action is switched only when it beats the
        current one by more than the tie tolerance, which guarantees termination; the returned policy
        breaks ties by lowest index. ``iterations`` counts the policies evaluated; ``q`` is None
        (call :meth:`q_values`).
        """
        g = check_gamma(gamma)
        if method not in METHODS:
            raise SolverError(f"method={method!r} is not one of {METHODS}")
        S, A = self.n_states, self.n_actions
        ar, live = np.arange(S), ~self.terminal
        livef = live.astype(np.float64)  # P_π 1: rows sum to 1, terminal rows are zeroed
        if policy0 is not None:
            pi = self._check_policy(policy0)
        else:  # the check pass's start (same r, same rule) when it kept one
            pi = self._guess[0] if self._guess is not None else _greedy(self._r)
        if pi.ndim != 1:
            raise DataError("policy0 must be a deterministic policy of shape (S,)")
        seen: set[bytes] = set()
        V, U, res0 = None, None, None  # U[a, s] >= Q_V[a, s], exact where it matters
        Ppi, b, prev = None, None, None
        precise = False  # the first evaluation only picks the next policy: an iterative solve may stop early
        if policy0 is None:  # π0 = greedy(r) valued by one deflated step, V0 = b0 + γ/(1-γ) mean(b0)
            if self._guess is not None:  # Q(V0) = r + γ (P b0 + m P live), products from the check pass
                _, b, _, Pb, Pl = self._guess
                m = g / (1.0 - g) * float(b.mean())
                V, U = b + m * livef, Pb + m * Pl
                U = U.reshape(A, S)
                U *= g
                U += self._r
                if self._any_terminal:
                    U[:, self.terminal] = 0.0
            else:
                b = self._r[pi, ar]
                V = b + g / (1.0 - g) * float(b.mean()) * livef
                U = self._q(V, g)
            new = _greedy(U)
            res0, pi, precise = U[new, ar] - V, new, True
        for it in range(1, int(max_iter) + 1):
            seen.add(pi.tobytes())
            if prev is not None and not self.is_sparse:  # dense P_π: overwrite only the changed rows
                changed = np.flatnonzero(pi != prev)
                Ppi[changed] = self._Pf[pi[changed] * S + changed]
                if self._any_terminal:
                    Ppi[self.terminal] = 0.0
                b = self._r[pi, ar]
            else:
                Ppi, b = self._policy_system(pi)
            V_new, _, res = evaluate_policy(Ppi, b, g, V, method, res0,
                                            RESIDUAL_RTOL if precise else LOOSE_RTOL, livef)
            precise = True
            if self._any_terminal:
                V_new[self.terminal] = 0.0
            cur = V_new + res  # exact Q[π(s), s] = r_π + γ P_π V
            fresh = U is None  # U is the exact Q of V_new: nothing to recompute below
            if fresh:
                U = self._q(V_new, g)
            else:
                delta = V_new - V
                hi = float(delta.max())
                U += g * (hi + ROW_SUM_ATOL * abs(hi)) + 1e-13 * max(1.0, float(np.abs(U).max()))
                if self._any_terminal:
                    U[:, self.terminal] = 0.0
            U[pi, ar] = cur
            V = V_new
            atol = TIE_RTOL * max(1.0, float(np.abs(U).max()))
            if not fresh:
                cand = (U >= cur - 4 * atol) & live
                cand[pi, ar] = False
                ca, cs = np.nonzero(cand)
                if ca.size > A * S // 4:  # most actions are contenders: one pass over P is cheaper
                    U = self._q(V, g)
                    U[pi, ar] = cur
                elif ca.size:
                    U[ca, cs] = self._q_rows(ca, cs, V, g)
            qmax = U.max(axis=0)
            best = _greedy(U, qmax)
            better = cur < qmax - atol
            new = np.where(better, best, pi)
            if not better.any() or new.tobytes() in seen:  # optimal, or cycling among exact ties
                if is_exact(b, V, res, g):
                    break
                new = pi  # stopped on a loose evaluation: refine it from the warm start
            res0 = U[new, ar] - V  # residual of the next policy at the warm start V (exact entries)
            prev, pi = pi, new
        else:
            raise SolverError(f"policy_iteration did not stabilise in {max_iter} improvement steps")
        residual = float(np.abs(qmax - V).max())
        return MDPSolution(V, best, len(seen), residual, None)

    def finite_horizon(self, H: int, gamma: float = 1.0) -> MDPSolution:
        """Backward induction V_t = max_a r_a + γ P_a V_{t+1}, V_H = 0; values (H+1, S), policy (H, S).

        ``residual`` is 0.0: the recursion is exact (no fixed point is approximated).
        """
        g = check_gamma(gamma, allow_one=True)
        H = int(H)
        if H < 0:
            raise SolverError(f"horizon H must be >= 0, got {H}")
        V = np.zeros((H + 1, self.n_states))
        pol = np.zeros((H, self.n_states), dtype=np.int64)
        for t in range(H - 1, -1, -1):
            Q = self._q(V[t + 1], g)
            pol[t] = _greedy(Q)
            V[t] = Q.max(axis=0)
        return MDPSolution(V, pol, H, 0.0, None)

    # ------------------------------------------------------------------ logged data
    def sample_transitions(self, n: int, policy: str | ArrayLike | Callable[[int], int] = "random",
                           epsilon: float | None = None, seed: int | np.random.Generator | None = None,
                           max_episode_steps: int | None = None) -> dict[str, np.ndarray]:
        """Roll out one environment for n steps and log it like a Gymnasium loop.

        Episodes start from ``start`` and reset after a terminal state (``terminated``) or after
        ``max_episode_steps`` steps (``truncated``; default ``self.max_episode_steps``). policy:
        "random" (uniform), actions (S,), probabilities (S, A) or a callable ``s -> a``; with
        ``epsilon`` the action is replaced by a uniform one with probability ε. Returns arrays
        ``s, a, s_next`` (int64), ``r`` (float64), ``terminated, truncated`` (bool), each of length n.
        """
        from spmn.reference._sampling import rollout

        n = int(n)
        if n < 0:
            raise DataError(f"n must be >= 0, got {n}")
        if epsilon is not None and not 0.0 <= float(epsilon) <= 1.0:
            raise DataError(f"epsilon must lie in [0, 1], got {epsilon!r}")
        T = self.max_episode_steps if max_episode_steps is None else int(max_episode_steps)
        if T < 1:
            raise DataError(f"max_episode_steps must be >= 1, got {max_episode_steps!r}")
        if isinstance(policy, str):
            if policy != "random":
                raise DataError(f"policy must be 'random', an array or a callable, got {policy!r}")
            pi: Any = None
        elif callable(policy):
            pi = policy
        else:
            pi = self._check_policy(policy)
        rng = np.random.default_rng(seed)
        return rollout(self, n, pi, None if epsilon is None else float(epsilon), rng, T)
