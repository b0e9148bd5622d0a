"""RDDL domains (IPPC 2011 and others from rddlrepository) as logged data and as simulators.

:class:`RDDLDomain` (:mod:`spmn.envs.rddl_domain`) loads one instance through pyRDDLGym and
grounds it: one column per ground state fluent and per ground action fluent (pyRDDLGym's names,
e.g. ``robot-at___x3__y1``), each holding integer codes: a boolean is 0/1, an enum or bounded int
is the index into ``domain.values[name]``. A fluent that cannot be grounded into finitely many
values (real-valued, an int without finite bounds in the instance's invariants or preconditions)
raises a DataError naming it.

:func:`log_transitions` rolls out pyRDDLGym's own simulator (``backend="pyrddlgym"``, the ground
truth) or the adapter's compiled CPFs (``backend="compiled"``, exact distributions sampled in
parallel lanes, many times faster) and returns Gymnasium-style columns ``f``, ``f_next``, action
columns, ``r``, ``terminated`` and ``truncated``. :func:`evaluate_policy` is the Monte Carlo value
of a policy from the initial state. :mod:`spmn.envs.rddl_exact` compiles the reachable state space
into an exact :class:`~spmn.reference.TabularMDP`.

Reward convention (pyRDDLGym's, RDDL's): the reward of step t is the reward expression evaluated
on the state s_t the action a_t is taken in (and on the primed fluents of s_{t+1} where the
expression names them), so it is R(s, a) for the IPPC domains.

pyRDDLGym and rddlrepository are optional (``pip install 'spmn[rddl]'``), imported lazily.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from spmn.envs.rddl_domain import MAX_ACTIONS, RDDLDomain
from spmn.errors import DataError

__all__ = ["MAX_ACTIONS", "MonteCarloValue", "RDDLDomain", "evaluate_policy", "log_transitions",
           "validate_columns"]

BACKENDS = ("pyrddlgym", "compiled")


@dataclass(frozen=True)
class MonteCarloValue:
    """Mean discounted return over ``n_episodes`` episodes of ``horizon`` steps and its standard error."""

    mean: float
    stderr: float
    n_episodes: int
    horizon: int
    returns: np.ndarray


# ---------------------------------------------------------------------- validation
def validate_columns(domain: RDDLDomain, logs: Mapping[str, Any], *, allow_extra: bool = False
                     ) -> dict[str, np.ndarray]:
    """Check logged columns against the instance; return them normalised (int64 codes, float64 r,
    bool flags). DataError naming the first column that is missing, unknown, of another length, or
    holds a value outside its fluent's codes."""
    if not isinstance(logs, Mapping):
        raise DataError(f"logs must be a mapping of column name -> array, got {type(logs).__name__}")
    missing = [c for c in domain.columns if c not in logs]
    if missing:
        raise DataError(f"column {missing[0]!r} of {domain.instance_name} is missing from the logs "
                        f"({len(missing)} missing)")
    extra = [c for c in logs if c not in domain.columns]
    if extra and not allow_extra:
        raise DataError(f"column {extra[0]!r} is not a fluent of {domain.instance_name} "
                        "(logs of another instance?)")
    n = None
    out: dict[str, np.ndarray] = {}
    for c in domain.columns:
        col = np.asarray(logs[c])
        if col.ndim != 1:
            raise DataError(f"column {c!r} must be 1-D, got shape {col.shape}")
        if n is None:
            n = len(col)
        elif len(col) != n:
            raise DataError(f"column {c!r} has {len(col)} rows, the others {n}")
        if c == "r":
            try:
                col = col.astype(np.float64)
            except (TypeError, ValueError):
                raise DataError("column 'r' must be numeric") from None
            if not np.all(np.isfinite(col)):
                raise DataError("column 'r' holds NaN or infinite rewards")
        elif c in ("terminated", "truncated"):
            if col.dtype != bool and not np.all(np.isin(col, (0, 1))):
                raise DataError(f"column {c!r} must be boolean")
            col = col.astype(bool)
        else:
            fluent = c[:-5] if c.endswith("_next") and c[:-5] in domain.values else c
            vals = domain.values[fluent]
            if col.dtype.kind in "OUS":
                names = [str(v) for v in vals]
                bad = [x for x in col.tolist() if str(x) not in names]
                if bad:
                    raise DataError(f"column {c!r}: value {bad[0]!r} is not one of {vals}")
                col = np.array([names.index(str(x)) for x in col.tolist()], dtype=np.int64)
            else:
                try:
                    f = col.astype(np.float64)
                except (TypeError, ValueError):
                    raise DataError(f"column {c!r} must hold integer codes") from None
                bad = ~np.isfinite(f) | (f != np.round(f)) | (f < 0) | (f >= len(vals))
                if bad.any():
                    raise DataError(f"column {c!r}: value {col[np.argmax(bad)]!r} is not a code in "
                                    f"[0, {len(vals)}) of {fluent} (values {vals})")
                col = f.astype(np.int64)
        out[c] = col
    return out


# ---------------------------------------------------------------------- rollouts
def _seeds(seed: Any) -> tuple[int, np.random.Generator]:
    ss = np.random.SeedSequence(seed if not isinstance(seed, np.random.Generator)
                                else int(seed.integers(2**63)))
    env_ss, pol_ss = ss.spawn(2)
    return int(env_ss.generate_state(1, np.uint64)[0] >> np.uint64(1)), np.random.default_rng(pol_ss)


def _chooser(domain: RDDLDomain, policy: Any, rng: np.random.Generator
             ) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """(state rows (L, n), steps (L,)) -> joint action rows (L, m)."""
    acts = domain.joint_actions()
    if isinstance(policy, str):
        if policy != "random":
            raise DataError(f"policy must be 'random' or a callable (state, t) -> action, got {policy!r}")
        state_dep = bool(domain.program.state_preconditions)

        def random_policy(S: np.ndarray, T: np.ndarray) -> np.ndarray:
            if not state_dep:
                return acts[rng.integers(len(acts), size=len(S))]
            ok = domain.valid_actions(S)
            if not ok.any(axis=1).all():
                bad = int(np.argmin(ok.any(axis=1)))
                raise DataError(f"state {domain.state_dict(S[bad])} allows no joint action")
            u = rng.random(len(S)) * ok.sum(axis=1)
            return acts[np.argmax(np.cumsum(ok, axis=1) > u[:, None], axis=1)]
        return random_policy
    if hasattr(policy, "policy") and hasattr(policy, "value"):  # a solved model, batched
        def solved(S: np.ndarray, T: np.ndarray) -> np.ndarray:
            out = np.empty((len(S), len(domain.action_fluents)), dtype=np.int64)
            for t in np.unique(T).tolist():
                at = np.flatnonzero(T == t)
                out[at] = acts[domain.policy_indices(policy, S[at], t)]
            return out
        return solved
    if not callable(policy):
        raise DataError(f"policy must be 'random', a solved model's Solution or a callable "
                        f"(state, t) -> action, got {policy!r}")

    def call(S: np.ndarray, T: np.ndarray) -> np.ndarray:
        out = np.empty((len(S), len(domain.action_fluents)), dtype=np.int64)
        for i, (s, t) in enumerate(zip(S, T)):
            a = policy(domain.state_dict(s), int(t))
            out[i] = acts[domain.action_index(a)]
        return out
    return call


def _rollout_pyrddlgym(domain: RDDLDomain, n: int, choose: Callable, env_seed: int, horizon: int
                       ) -> tuple[np.ndarray, ...]:
    env = domain.make_env()
    env.horizon = horizon  # pyRDDLGym truncates at env.horizon steps
    nS, nA = len(domain.state_fluents), len(domain.action_fluents)
    S, S2 = np.empty((n, nS), dtype=np.int64), np.empty((n, nS), dtype=np.int64)
    A = np.empty((n, nA), dtype=np.int64)
    R, term, trunc, T = np.empty(n), np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, np.int64)
    obs, _ = env.reset(seed=env_seed)
    s = domain.tensors_to_row(obs)
    t = 0
    try:
        for i in range(n):
            a = choose(s[None, :], np.array([t]))[0]
            obs, r, te, tr, _ = env.step(domain.rows_to_tensors(a))
            s2 = domain.tensors_to_row(obs)
            S[i], A[i], S2[i], R[i], term[i], trunc[i], T[i] = s, a, s2, r, te, tr, t
            if te or tr:
                obs, _ = env.reset()
                s, t = domain.tensors_to_row(obs), 0
            else:
                s, t = s2, t + 1
    finally:
        env.close()
    return S, A, S2, R, term, trunc, T


def _rollout_compiled(domain: RDDLDomain, n: int, choose: Callable, rng: np.random.Generator,
                      horizon: int, lanes: int) -> tuple[np.ndarray, ...]:
    """``lanes`` environments stepped together; each lane's steps are contiguous in the output."""
    prog = domain.program
    L = max(1, min(int(lanes), math.ceil(n / horizon)))
    per = math.ceil(math.ceil(n / L) / horizon) * horizon if not prog.terminations else math.ceil(n / L)
    nS, nA = len(domain.state_fluents), len(domain.action_fluents)
    S, S2 = np.empty((per, L, nS), dtype=np.int64), np.empty((per, L, nS), dtype=np.int64)
    A = np.empty((per, L, nA), dtype=np.int64)
    R, term, trunc = np.empty((per, L)), np.zeros((per, L), bool), np.zeros((per, L), bool)
    T = np.zeros((per, L), np.int64)
    s = np.tile(domain.initial_row, (L, 1))
    t = np.zeros(L, np.int64)
    for i in range(per):
        a = choose(s, t)
        env = domain.env_from_rows(s, a)
        dists, env = prog.next_state(env, L, rng)
        s2 = np.stack([D.argmax(axis=1) for D in dists], axis=1)
        R[i] = prog.reward_values(env, L, rng)
        nxt = domain.env_from_rows(s2, None)
        te = prog.terminal(nxt, L)
        tr = (t + 1 >= horizon)
        if prog.invariants:
            tr |= ~prog.holds(prog.invariants, nxt, L).all(axis=0)
        S[i], A[i], S2[i], term[i], trunc[i], T[i] = s, a, s2, te, tr, t
        done = te | tr
        s = np.where(done[:, None], domain.initial_row[None, :], s2)
        t = np.where(done, 0, t + 1)

    def flat(x: np.ndarray) -> np.ndarray:
        return np.swapaxes(x, 0, 1).reshape((per * L,) + x.shape[2:])[:n]
    return tuple(flat(x) for x in (S, A, S2, R, term, trunc, T))


def _episode_returns(R: np.ndarray, T: np.ndarray, done: np.ndarray, gamma: float) -> np.ndarray:
    """Discounted returns of the complete episodes: each starts where T == 0 and ends at the first
    done step before the next start."""
    starts = np.flatnonzero(T == 0)
    ends = np.flatnonzero(done)
    if not len(starts) or not len(ends):
        return np.zeros(0)
    k = np.searchsorted(ends, starts)
    ok = k < len(ends)
    starts, k = starts[ok], k[ok]
    end = ends[k]
    nxt = np.concatenate([starts[1:], [len(T)]])
    complete = end < nxt
    csum = np.concatenate([[0.0], np.cumsum(R * gamma ** T.astype(np.float64))])
    return (csum[end + 1] - csum[starts])[complete]


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise DataError(f"backend must be one of {BACKENDS}, got {backend!r}")


def log_transitions(domain: RDDLDomain, n_steps: int, policy: str | Callable = "random",
                    seed: Any = None, *, backend: str = "pyrddlgym", lanes: int = 4096
                    ) -> dict[str, np.ndarray]:
    """Log ``n_steps`` transitions; episodes start in the initial state and reset at the instance
    horizon (``truncated``) or on a termination condition (``terminated``).

    ``policy``: "random" (uniform over the valid joint actions of the state: the set the exact model
    enumerates), a Solution of a model over the domain's fluents (batched, through
    :meth:`RDDLDomain.policy_indices`) or ``policy(state, t) -> action`` with ``state`` a {state fluent: code} dict, ``t``
    the step in the episode and the action a {action fluent: code} dict (missing fluents: default)
    or a code row. ``backend``: "pyrddlgym" (its simulator, one step at a time) or "compiled"
    (the adapter's exact CPFs sampled in ``lanes`` parallel episodes; each lane's episodes stay
    contiguous). Deterministic given ``seed``. Returns int64 code columns per state fluent ``f``
    and ``f_next`` and per action fluent, float64 ``r``, bool ``terminated``, ``truncated``.
    """
    _check_backend(backend)
    n = int(n_steps)
    if n < 0:
        raise DataError(f"n_steps must be >= 0, got {n_steps!r}")
    env_seed, rng = _seeds(seed)
    choose = _chooser(domain, policy, rng)
    if backend == "pyrddlgym":
        S, A, S2, R, term, trunc, _ = _rollout_pyrddlgym(domain, n, choose, env_seed, domain.horizon)
    else:
        S, A, S2, R, term, trunc, _ = _rollout_compiled(domain, n, choose, rng, domain.horizon, lanes)
    out: dict[str, np.ndarray] = {}
    for j, f in enumerate(domain.state_fluents):
        out[f] = S[:, j].copy()
    for j, f in enumerate(domain.state_fluents):
        out[f"{f}_next"] = S2[:, j].copy()
    for j, f in enumerate(domain.action_fluents):
        out[f] = A[:, j].copy()
    out["r"] = R.astype(np.float64)
    out["terminated"] = term
    out["truncated"] = trunc
    return out


def evaluate_policy(domain: RDDLDomain, policy: str | Callable, n_episodes: int, seed: Any = None, *,
                    horizon: int | None = None, gamma: float | None = None,
                    backend: str = "pyrddlgym", lanes: int = 4096) -> MonteCarloValue:
    """Monte Carlo value of ``policy`` from the initial state: the mean over ``n_episodes`` of
    Σ_t γ^t r_t over ``horizon`` steps (default the instance's; an episode that terminates earlier
    stops), with its standard error. ``policy`` as in :func:`log_transitions`; γ defaults to the
    instance's discount."""
    _check_backend(backend)
    H = domain.horizon if horizon is None else int(horizon)
    if H < 1:
        raise DataError(f"horizon must be >= 1, got {horizon!r}")
    E = int(n_episodes)
    if E < 2:
        raise DataError(f"n_episodes must be >= 2 for a standard error, got {n_episodes!r}")
    g = domain.discount if gamma is None else float(gamma)
    env_seed, rng = _seeds(seed)
    choose = _chooser(domain, policy, rng)
    if backend == "pyrddlgym":
        # one long rollout of E episodes: episodes are cut at H by truncation or end on termination
        S, A, S2, R, term, trunc, T = _rollout_pyrddlgym(domain, E * H, choose, env_seed, H)
    else:
        S, A, S2, R, term, trunc, T = _rollout_compiled(domain, E * H, choose, rng, H, lanes)
    returns = _episode_returns(R, T, term | trunc, g)[:E]
    if len(returns) < E:
        raise DataError(f"only {len(returns)} complete episodes in {E * H} steps")
    return MonteCarloValue(float(returns.mean()), float(returns.std(ddof=1) / math.sqrt(E)), E, H, returns)
