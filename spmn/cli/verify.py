"""``spmn verify ENV``: learn from generated logs, solve, compare with the exact answer.

ENV is a Gymnasium toy-text id (FrozenLake-v1, FrozenLake8x8-v1, Taxi-v4, CliffWalking-v1,
CliffWalkingSlippery-v1; gymnasium needed), ``random-mdp:S,A,seed``, or
``lqr:double-integrator`` (a learned :class:`~spmn.worldmodels.gaussian.model.GaussianWorldModel`). The
report's ``passed`` is False when the learned model's value at the start distribution differs
from the exact one by more than ``tol`` (relative for LQR).
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ..errors import CoverageWarning, DataError
from ..worldmodels.tabular import coverage


def _tabular(env: str):
    from ..reference import TabularMDP, random_mdp

    if env.startswith("random-mdp:"):
        try:
            S, A, seed = (int(x) for x in env.split(":", 1)[1].split(","))
        except ValueError:
            raise DataError(f"expected random-mdp:S,A,seed with integers, got {env!r}") from None
        return random_mdp(S, A, density=min(1.0, 5.0 / S), seed=seed)
    return TabularMDP.from_gymnasium(env)


def verify_tabular(env: str, transitions: int, gamma: float, seed: int, tol: float,
                   progress: bool = True) -> dict[str, Any]:
    from ..worldmodels.tabular.model import WorldModel

    mdp = _tabular(env)
    logs = mdp.sample_transitions(transitions, seed=seed)
    model = WorldModel("s", "a", "r", "terminated", progress=progress).fit(logs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CoverageWarning)
        sol = model.solve(gamma)
    thin = [str(w.message) for w in caught if issubclass(w.category, CoverageWarning)]
    for w in caught:  # re-issue: the user sees it, the report keeps it
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    exact = mdp.policy_iteration(gamma)
    obs = mdp.observation
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CoverageWarning)  # counted in the report instead
        V = sol.value(obs)
        greedy = sol.policy(obs)
    report_cov = coverage.policy_coverage(model, sol.result.policy, model.min_count)
    true_greedy = mdp.policy_evaluation(greedy, gamma).values
    v_model, v_star = float(mdp.start @ V), float(mdp.start @ exact.values)
    seen = np.isin(obs, np.unique(logs["s"]))
    err = abs(v_model - v_star)
    report = {"env": env, "transitions": transitions, "gamma": gamma, "regions": model.n_regions_,
              "v_start_model": v_model, "v_start_exact": v_star, "error_start": err,
              "max_error_seen_states": float(np.abs(V - exact.values)[seen].max()),
              "greedy_true_value": float(mdp.start @ true_greedy),
              "greedy_fraction_of_optimal": float(mdp.start @ true_greedy) / v_star if v_star else 1.0,
              "states_never_logged": int(np.setdiff1d(np.unique(obs), np.r_[logs["s"], logs["s_next"]]).size),
              "thin_greedy_pairs": report_cov.thin_pairs,
              "samples_needed_per_pair": report_cov.needed_per_pair,
              "coverage_warning": thin[0] if thin else None,
              "passed": bool(err <= tol)}
    report["failure"] = None if report["passed"] else (
        f"|V(start) - V*(start)| = {err:.3g} exceeds --tol {tol}")
    return report


def verify_lqr(name: str, transitions: int, gamma: float, seed: int, tol: float) -> dict[str, Any]:
    """Double integrator: learn a :class:`~spmn.worldmodels.gaussian.model.GaussianWorldModel` (one joint
    Gaussian of (x, u, x'), dynamics through the origin) from exciting-input logs (episodes of
    100 steps), solve it exactly (Riccati on the learned conditional Gaussian), compare
    V(x0 = (1, 0)) with the true system's."""
    from ..reference import LinearGaussianSystem
    from ..worldmodels.gaussian.model import GaussianWorldModel, transitions_from_system

    if name != "double-integrator":
        raise DataError(f"unknown LQR system {name!r}; known: double-integrator")
    A = np.array([[1.0, 0.1], [0.0, 1.0]])
    B = np.array([[0.005], [0.1]])
    W = np.diag([1e-4, 1e-2])
    Q, R = np.eye(2), np.array([[0.1]])
    sys_ = LinearGaussianSystem(A, B, W)
    logs = transitions_from_system(sys_, transitions, cost=(Q, R), seed=seed)
    model = GaussianWorldModel(["x0", "x1"], ["u0"], "r", intercept=False).fit(logs)
    dyn = model.linear_dynamics()
    learned = model.solve(gamma)
    true = sys_.lqr(Q, R, gamma)
    x0 = np.array([1.0, 0.0])
    v, v_star = float(learned.cost(x0)), float(true.value(x0))
    rel = abs(v - v_star) / abs(v_star)
    return {"env": f"lqr:{name}", "transitions": transitions, "gamma": gamma,
            "A_error": float(np.abs(dyn.A - A).max()), "B_error": float(np.abs(dyn.B - B).max()),
            "W_error": float(np.abs(dyn.W - W).max()),
            "V_x0_model": v, "V_x0_exact": v_star, "relative_error": rel,
            "gain_model": learned.K.ravel().tolist(), "gain_exact": true.K.ravel().tolist(),
            "passed": bool(rel <= tol),
            "failure": None if rel <= tol else f"relative error {rel:.3g} of V(x0) exceeds --tol {tol}"}


def verify(env: str, *, transitions: int = 100_000, gamma: float = 0.95, seed: int = 0,
           tol: float = 0.01, progress: bool = True) -> dict[str, Any]:
    if transitions < 1:
        raise DataError(f"--transitions must be >= 1, got {transitions}")
    if env.startswith("lqr:"):
        return verify_lqr(env.split(":", 1)[1], transitions, gamma, seed, tol)
    return verify_tabular(env, transitions, gamma, seed, tol, progress)
