"""``spmn bench``: a quick version of ``benchmarks/`` against the peers that are installed.

Each row: the problem size, seconds for spmn and for the peer on the same input (median of
repeats, or one run), and the speed-up ``ratio = peer / spmn`` (> 1: spmn faster). When the
measured ratio is below 1 the row carries a ``note`` saying the peer won here and why. Peers:
pymdptoolbox (Bellman sweep, policy iteration), python-control (dlqr), the numpy reference
evaluator of spmn itself (log-likelihood).
"""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

#: Why a peer can be faster on each benchmark (shown only when the measured ratio is < 1).
WHY_PEER_WINS = {
    "Bellman sweep": "a sweep walks the compiled circuit node by node (about 1.4 nodes per "
                     "transition) where pymdptoolbox does one matrix-vector product per "
                     "action; the sweep is slower at every size in benchmarks/README.md "
                     "(exact tabular MDP solvers), the exact solve is where spmn competes",
    "policy iteration": "one solve takes a fraction of a second at this size, so fixed costs "
                        "and machine load move the ratio; benchmarks/README.md compares "
                        "S = 100 to 5,000 with repeats",
    "LQR": "a 2-state Riccati equation takes about a millisecond on either side, so scheduling "
           "and BLAS thread wake-ups on a loaded machine swing the ratio several-fold between "
           "runs; benchmarks/README.md (linear-Gaussian) has the learned model's solve "
           "against dlqr",
    "log-likelihood": "the peer is spmn's own numpy oracle, which a built compiled backend "
                      "(cython or numba) beats by far; this timing is noisy or the machine "
                      "loaded",
}


def _median_time(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def _row(name: str, size: str, runs: int, ours: float, peer: float | None, peer_name: str,
         why: str = "") -> dict[str, Any]:
    ratio = None if peer is None else peer / ours
    note = None
    if ratio is not None and ratio < 1.0:
        note = f"{peer_name} is {1.0 / ratio:.1f}x faster on {name} ({size}): {why}"
    return {"name": name, "size": size, "runs": runs, "ours": ours, "peer": peer,
            "peer_name": peer_name, "ratio": ratio, "unit": "s", "note": note}


def run(quick: bool = True) -> list[dict[str, Any]]:
    """The rows (see the module docstring); ``quick``: S = 500 and 3 repeats, else 2000 and 7."""
    from .. import kernels
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
    sweep = f"S={S} A=4, ~5 successors per (s, a), 1 sweep"
    try:
        import mdptoolbox.mdp as mt

        P = np.stack([p.toarray() if hasattr(p, "toarray") else np.asarray(p) for p in mdp.P])
        R = mdp.expected_reward.T.copy()
        vi = mt.ValueIteration(P, R, 0.95, epsilon=1e-6, max_iter=50)
        peer = _median_time(lambda: vi._bellmanOperator(), reps)
        rows.append(_row("Bellman sweep", sweep, reps, ours, peer, "pymdptoolbox",
                         WHY_PEER_WINS["Bellman sweep"]))
        sols: list[Any] = []
        ours_pi = _median_time(lambda: sols.append(T.policy_iteration(0.95)), 1)
        peer_pi = _median_time(lambda: mt.PolicyIteration(P, R, 0.95).run(), 1)
        rows.append(_row("policy iteration", f"S={S} A=4, to convergence "
                         f"({sols[-1].iterations} iterations)", 1, ours_pi, peer_pi,
                         "pymdptoolbox", WHY_PEER_WINS["policy iteration"]))
    except ImportError:
        rows.append(_row("Bellman sweep", sweep, reps, ours, None, "pymdptoolbox missing"))
    A = np.array([[1.0, 0.1], [0.0, 1.0]])
    B = np.array([[0.005], [0.1]])
    sys_ = LinearGaussianSystem(A, B, np.diag([1e-4, 1e-2]))
    ours_lqr = _median_time(lambda: sys_.lqr(np.eye(2), [[0.1]], 1.0), reps)
    lqr = "double integrator: 2 states, 1 input, Riccati"
    try:
        import control

        peer_lqr = _median_time(lambda: control.dlqr(A, B, np.eye(2), [[0.1]]), reps)
        rows.append(_row("LQR", lqr, reps, ours_lqr, peer_lqr, "python-control",
                         WHY_PEER_WINS["LQR"]))
    except ImportError:
        rows.append(_row("LQR", lqr, reps, ours_lqr, None, "python-control missing"))
    flat = T.circuit.compile()
    X = np.full((2000, flat.n_vars), np.nan)
    X[:, 0] = np.arange(2000) % S
    fast = kernels.get(None)
    fast.log_likelihood(flat, X)
    ours_ll = _median_time(lambda: fast.log_likelihood(flat, X), reps)
    ref = kernels.get("reference")
    Xs = X[:200]
    peer_ll = _median_time(lambda: ref.log_likelihood(flat, Xs), 1) * 10
    backend = fast.__name__.rsplit(".", 1)[-1]
    why = WHY_PEER_WINS["log-likelihood"] if backend != "reference" else (
        "no compiled backend is built here (spmn.kernels.available() = "
        f"{kernels.available()}), so both sides run the numpy oracle")
    rows.append(_row("log-likelihood", f"{flat.n_edges:,} edges x 2,000 rows ({backend})", reps,
                     ours_ll, peer_ll, "numpy reference", why))
    return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
    """The text table, a legend, and one line per row where the peer won."""
    def num(x: float | None, fmt: str) -> str:
        return format(x, fmt) if x is not None else "-"

    lines = [f"{'benchmark':<18}{'size':<47}{'runs':>5}{'spmn s':>10}{'peer s':>10}"
             f"{'ratio':>7}  peer"]
    lines += [f"{r['name']:<18}{r['size']:<47}{r['runs']:>5}{num(r['ours'], '.3g'):>10}"
              f"{num(r['peer'], '.3g'):>10}{num(r['ratio'], '.2f'):>7}  {r['peer_name']}"
              for r in rows]
    lines.append("seconds per call, median over the runs (the numpy reference's log-likelihood "
                 "is timed on 200 rows, x 10); ratio = peer / spmn, > 1: spmn faster")
    lines += [f"note: {r['note']}" for r in rows if r.get("note")]
    return "\n".join(lines)
