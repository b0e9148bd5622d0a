"""``spmn bench``: a quick version of ``benchmarks/`` against the peers that are installed.

Each row: seconds for spmn and for the peer on the same input (median of repeats, one run),
and the speed-up ``peer / spmn``. Peers: pymdptoolbox (value and policy iteration),
python-control (dlqr), the numpy reference evaluator of spmn itself (log-likelihood).
"""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np


def _median_time(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def _row(name, ours, peer, peer_name):
    return {"name": name, "ours": ours, "peer": peer, "peer_name": peer_name,
            "ratio": None if peer is None else peer / ours}


def run(quick: bool = True) -> list[dict[str, Any]]:
    from ..reference import LinearGaussianSystem, random_mdp
    from ..worldmodels.tabular.compile_mdp import compile_mdp

    reps = 3 if quick else 7
    S = 500 if quick else 2000
    rows = []
    mdp = random_mdp(S, 4, density=5.0 / S, seed=0)
    T = compile_mdp(mdp)
    V = np.zeros(S)
    T.bellman(V, 0.95)  # compile the kernels once
    ours = _median_time(lambda: T.bellman(V, 0.95), reps)
    try:
        import mdptoolbox.mdp as mt

        P = np.stack([p.toarray() if hasattr(p, "toarray") else np.asarray(p) for p in mdp.P])
        R = mdp.expected_reward.T.copy()
        vi = mt.ValueIteration(P, R, 0.95, epsilon=1e-6, max_iter=50)
        peer = _median_time(lambda: vi._bellmanOperator(), reps)
        rows.append(_row(f"Bellman sweep, S={S}, A=4 (s)", ours, peer, "pymdptoolbox"))
        ours_pi = _median_time(lambda: T.policy_iteration(0.95), 1)
        peer_pi = _median_time(lambda: mt.PolicyIteration(P, R, 0.95).run(), 1)
        rows.append(_row(f"exact solution (PI), S={S} (s)", ours_pi, peer_pi, "pymdptoolbox"))
    except ImportError:
        rows.append(_row(f"Bellman sweep, S={S}, A=4 (s)", ours, None, "pymdptoolbox missing"))
    A = np.array([[1.0, 0.1], [0.0, 1.0]])
    B = np.array([[0.005], [0.1]])
    sys_ = LinearGaussianSystem(A, B, np.diag([1e-4, 1e-2]))
    ours_lqr = _median_time(lambda: sys_.lqr(np.eye(2), [[0.1]], 1.0), reps)
    try:
        import control

        peer_lqr = _median_time(lambda: control.dlqr(A, B, np.eye(2), [[0.1]]), reps)
        rows.append(_row("LQR double integrator (s)", ours_lqr, peer_lqr, "python-control"))
    except ImportError:
        rows.append(_row("LQR double integrator (s)", ours_lqr, None, "python-control missing"))
    flat = T.circuit.compile()
    X = np.full((2000, flat.n_vars), np.nan)
    X[:, 0] = np.arange(2000) % S
    from .. import kernels

    fast = kernels.get(None)
    fast.log_likelihood(flat, X)
    ours_ll = _median_time(lambda: fast.log_likelihood(flat, X), reps)
    ref = kernels.get("reference")
    Xs = X[:200]
    peer_ll = _median_time(lambda: ref.log_likelihood(flat, Xs), 1) * 10
    rows.append(_row(f"log-likelihood, {flat.n_edges} edges x 2000 rows (s)", ours_ll, peer_ll,
                     "numpy reference"))
    return rows
