"""spmn.reference value and policy iteration against pymdptoolbox, in the same run, on random MDPs.

For every case (S states, A actions, discount γ, transition kind) both libraries build their model from
the same arrays and solve it; we report the median wall time over repeats (model construction included),
iterations, and max|V - V_exact| where V_exact solves (I - γ P_π*) V = r_π* by dense LAPACK for the
optimal policy and is checked to have Bellman residual <= 1e-9.

Transition kinds: dense (every successor), sparse (max(10, S/100) random successors per row), banded
(successors s-5..s+5). Rewards R[a, s] ~ U(0, 1).

    python benchmarks/bench_mdp.py            # S = 100, 1000, 5000 (~25 min, nearly all pymdptoolbox)
    python benchmarks/bench_mdp.py --quick    # S = 100, 1000, one repeat
    python benchmarks/bench_mdp.py --markdown benchmarks/README_mdp_table.md
    python benchmarks/bench_mdp.py --small-only   # S = 500, A = 4: one sweep and the full solve

The small section (always run first; ``--small-only`` runs nothing else) times, at S = 500, A = 4,
γ = 0.95 and each transition kind, one Bellman sweep (ours: ``TabularMDP.q_values(V, γ).max(0)``, and with ``--template`` the compiled template's
``Template.bellman``, one kernel pass;
pymdptoolbox: ``MDP._bellmanOperator(V)``, the body of its value-iteration loop) and the full exact
solve (model construction + policy iteration on both sides), medians of many interleaved calls,
with the load average printed beside every row. Each kind gets two solve rows: the numpy reference
``TabularMDP`` and ``spmn.worldmodels.tabular.CompiledMDP`` (dense and sparse P compiled; banded
P runs the reference: its P_π are solved banded), timed with pymdptoolbox in a rotating order (``--flush``: caches emptied
before every solve).
"""
from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
import warnings

import numpy as np
import scipy
import scipy.sparse as sp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from spmn.reference import TabularMDP, random_mdp  # noqa: E402


def make_case(S: int, A: int, kind: str, seed: int):
    """Raw arrays (P for us, P for pymdptoolbox, R[a, s]) of a random MDP."""
    if kind == "dense":
        mdp = random_mdp(S, A, 1.0, seed)
    elif kind == "sparse":
        mdp = random_mdp(S, A, max(10, S // 100) / S, seed, sparse=True)
    elif kind == "banded":
        mdp = random_mdp(S, A, 1.0, seed, bandwidth=5)
    else:
        raise ValueError(kind)
    R = mdp.expected_reward
    if mdp.is_sparse:
        P_ours = list(mdp.P)
        P_tool = [sp.csr_matrix(m) for m in P_ours]
    else:
        P_ours = P_tool = np.asarray(mdp.P)
    return P_ours, P_tool, R


def exact_values(P_ours, R, policy, gamma):
    """Dense LAPACK solve of (I - γ P_π) V = r_π and the Bellman optimality residual of the result."""
    mdp = TabularMDP(P_ours, R)
    S = mdp.n_states
    if mdp.is_sparse:
        Ppi = sp.vstack([P_ours[a][[s]] for s, a in enumerate(policy)]).toarray()
    else:
        Ppi = P_ours[policy, np.arange(S)]
    V = np.linalg.solve(np.eye(S) - gamma * Ppi, R[policy, np.arange(S)])
    residual = float(np.abs(mdp.q_values(V, gamma).max(axis=0) - V).max())
    return V, residual


def timed_pair(ours, theirs, repeats, cap):
    """Interleave our run and pymdptoolbox's (so machine load hits both alike); medians of repeats.
    pymdptoolbox is not repeated once a run takes longer than ``cap`` seconds."""
    t_ours, t_theirs, out_ours, out_theirs = [], [], None, None
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        out_ours = ours()
        t_ours.append(time.perf_counter() - t0)
        if not t_theirs or sum(t_theirs) / len(t_theirs) <= cap:
            gc.collect()
            t0 = time.perf_counter()
            out_theirs = theirs()
            t_theirs.append(time.perf_counter() - t0)
    return statistics.median(t_ours), out_ours, statistics.median(t_theirs), out_theirs, len(t_theirs)


def run_case(S, A, gamma, kind, args):
    import mdptoolbox.mdp as tb

    P_ours, P_tool, R = make_case(S, A, kind, args.seed)

    def tool_pi():
        m = tb.PolicyIteration(P_tool, R.T, gamma)
        m.run()
        return m

    def tool_vi():
        m = tb.ValueIteration(P_tool, R.T, gamma, epsilon=args.toolbox_epsilon)
        m.run()
        return m

    reps, cap = args.repeats, args.toolbox_cap
    t_pi, pi, t_tpi, tpi, n_tpi = timed_pair(lambda: TabularMDP(P_ours, R).policy_iteration(gamma),
                                             tool_pi, reps, cap)
    t_vi, vi, t_tvi, tvi, n_tvi = timed_pair(
        lambda: TabularMDP(P_ours, R).value_iteration(gamma, tol=args.tol), tool_vi, reps, cap)
    V, bellman = exact_values(P_ours, R, pi.policy, gamma)
    if bellman > 1e-9:
        raise RuntimeError(f"exact reference is not optimal (Bellman residual {bellman:.2e})")
    err = lambda v: float(np.abs(np.asarray(v, dtype=float) - V).max())  # noqa: E731
    row = dict(S=S, A=A, gamma=gamma, kind=kind,
               vi=(t_vi, vi.iterations, err(vi.values)), tvi=(t_tvi, tvi.iter, err(tvi.V), n_tvi),
               pi=(t_pi, pi.iterations, err(pi.values)), tpi=(t_tpi, tpi.iter, err(tpi.V), n_tpi),
               same_policy=bool(np.array_equal(pi.policy, np.asarray(tpi.policy))))
    return row


SMALL_HEADER = ("| S | A | γ | P | ours sweep | toolbox sweep | sweep ratio | ours solve (it) | "
                "toolbox PI (it) | solve ratio | ours err | same policy | load |")


_FLUSH = np.zeros(0)


def flush_caches(mb: int = 64) -> None:
    """Write ``mb`` MB so the next call finds nothing of its inputs in the CPU caches."""
    global _FLUSH
    if _FLUSH.size != mb << 17:
        _FLUSH = np.zeros(mb << 17)
    _FLUSH += 1.0


def timed_group(fns, repeats, flush=False):
    """Interleave the calls (so machine load hits all alike), the order rotated every repeat (so
    each call follows each other one as often: a call after a cache-friendly one is not favoured);
    ``flush``: caches emptied before every call. Returns medians of the repeats and last outputs."""
    times, outs = [[] for _ in fns], [None] * len(fns)
    for i in range(repeats):
        for j in range(len(fns)):
            k = (i + j) % len(fns)
            gc.collect()
            if flush:
                flush_caches()
            t0 = time.perf_counter()
            outs[k] = fns[k]()
            times[k].append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times], outs


def small_case(S, A, gamma, kind, args):
    """One sweep and the full exact solve at a small size, ours against pymdptoolbox (ratio > 1:
    ours faster); medians of interleaved repeats (``--small-repeats``)."""
    import mdptoolbox.mdp as tb

    from spmn.worldmodels.tabular import CompiledMDP

    P_ours, P_tool, R = make_case(S, A, kind, args.seed)
    mdp = TabularMDP(P_ours, R)
    V = np.random.default_rng(args.seed).random(S)
    vi = tb.ValueIteration(P_tool, R.T, gamma)
    ours_q = mdp.q_values(V, gamma).max(axis=0)
    theirs_q = np.asarray(vi._bellmanOperator(V)[1]).ravel()
    if not np.allclose(ours_q, theirs_q, rtol=1e-12, atol=1e-12):
        raise RuntimeError("sweeps disagree")
    n = args.small_repeats
    load0 = os.getloadavg()[0]
    t_sw, _, t_tsw, _, _ = timed_pair(lambda: [mdp.q_values(V, gamma).max(axis=0) for _ in range(20)],
                                      lambda: [vi._bellmanOperator(V) for _ in range(20)], n, 1e9)

    def tool_pi():
        m = tb.PolicyIteration(P_tool, R.T, gamma)
        m.run()
        return m

    CompiledMDP(P_ours, R).policy_iteration(gamma)  # loads the compiled kernels (cached on disk)
    # reference (numpy), compiled and pymdptoolbox, interleaved: each repeat runs all three
    (t_pi, t_cpi, t_tpi), (pi, cpi, tpi) = timed_group(
        [lambda: TabularMDP(P_ours, R).policy_iteration(gamma),
         lambda: CompiledMDP(P_ours, R).policy_iteration(gamma), tool_pi], n, args.flush)
    load = f"{load0:.1f}-{os.getloadavg()[0]:.1f}"
    V_ex, _ = exact_values(P_ours, R, pi.policy, gamma)
    same = lambda sol: np.array_equal(sol.policy, np.asarray(tpi.policy))  # noqa: E731
    rows = [f"| {S} | {A} | {gamma} | {kind} | {t_sw / 20 * 1e6:.1f} µs | {t_tsw / 20 * 1e6:.1f} µs "
            f"| {t_tsw / t_sw:.2f}× | {t_pi * 1e3:.2f} ms ({pi.iterations}) | {t_tpi * 1e3:.2f} ms "
            f"({tpi.iter}) | {t_tpi / t_pi:.1f}× | {np.abs(pi.values - V_ex).max():.1e} "
            f"| {same(pi)} | {load} |",
            f"| {S} | {A} | {gamma} | {kind}, compiled{' (= reference)' if kind == 'banded' else ''} "
            f"| | | | {t_cpi * 1e3:.2f} ms ({cpi.iterations}) | {t_tpi * 1e3:.2f} ms "
            f"({tpi.iter}) | {t_tpi / t_cpi:.1f}× | {np.abs(cpi.values - V_ex).max():.1e} "
            f"| {same(cpi)} | {load} |"]
    if kind != "dense" and args.template:  # the compiled template: one kernel pass per sweep
        from spmn import kernels
        from spmn.worldmodels.tabular.compile_mdp import compile_mdp

        t0 = time.perf_counter()
        T = compile_mdp(mdp)
        t_compile = time.perf_counter() - t0
        for be in [b for b in ("cython", "numba") if b in kernels.available()]:
            T.backend = be
            tv, tp = T.bellman(V, gamma)[0], T.policy_iteration(gamma)
            assert np.allclose(tv, ours_q, rtol=1e-12, atol=1e-12)
            t_tsw2, _, t_tsw, _, _ = timed_pair(lambda: [T.bellman(V, gamma) for _ in range(20)],
                                                lambda: [vi._bellmanOperator(V) for _ in range(20)],
                                                n, 1e9)
            t_tpi2, _, t_tpi, _, _ = timed_pair(lambda: T.policy_iteration(gamma), tool_pi, n, 1e9)
            rows.append(f"| {S} | {A} | {gamma} | {kind}, template ({be}, compile "
                        f"{t_compile:.2f} s) | {t_tsw2 / 20 * 1e6:.1f} µs | {t_tsw / 20 * 1e6:.1f} µs "
                        f"| {t_tsw / t_tsw2:.2f}× | {t_tpi2 * 1e3:.2f} ms ({tp.iterations}) | "
                        f"{t_tpi * 1e3:.2f} ms ({tpi.iter}) | {t_tpi / t_tpi2:.1f}× | "
                        f"{np.abs(tp.values - V_ex).max():.1e} | "
                        f"{np.array_equal(tp.policy, np.asarray(tpi.policy))} | "
                        f"{os.getloadavg()[0]:.1f} |")
    return "\n".join(rows)


def small_section(args):
    lines = [f"small section: 1-min load {os.getloadavg()[0]:.1f} at start; "
             f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'default')}; "
             f"medians of {args.small_repeats} interleaved repeats (a sweep timed over 20 calls; "
             f"solves in rotating order{', caches flushed before each' if args.flush else ''})",
             "", SMALL_HEADER, "|" + "---|" * (SMALL_HEADER.count("|") - 1)]
    for line in lines:
        print(line, flush=True)
    for kind in args.kinds:
        lines.append(small_case(args.small_size, 4, 0.95, kind, args))
        print(lines[-1], flush=True)
    lines.append(f"\n1-min load {os.getloadavg()[0]:.1f} at the end of the small section")
    print(lines[-1], flush=True)
    return lines


HEADER = ("| S | A | γ | P | ours VI s (it) | ours VI err | toolbox VI s (it) | toolbox VI err | VI ratio "
          "| ours PI s (it) | ours PI err | toolbox PI s (it) | toolbox PI err | PI ratio |")


def fmt_row(r):
    def cell(t):
        once = "*" if len(t) > 3 and t[3] == 1 and r["S"] >= 5000 else ""
        return f"{t[0]:.4f}{once} ({t[1]})", f"{t[2]:.1e}"

    vi, tvi, pi, tpi = cell(r["vi"]), cell(r["tvi"]), cell(r["pi"]), cell(r["tpi"])
    flag = "" if r["same_policy"] else " †"
    return (f"| {r['S']} | {r['A']} | {r['gamma']} | {r['kind']} | {vi[0]} | {vi[1]} | {tvi[0]} | {tvi[1]} "
            f"| {r['tvi'][0] / r['vi'][0]:.1f}× | {pi[0]} | {pi[1]} | {tpi[0]} | {tpi[1]}{flag} "
            f"| {r['tpi'][0] / r['pi'][0]:.1f}× |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="S = 100, 1000 and one repeat")
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 5000])
    ap.add_argument("--actions", type=int, nargs="+", default=[4, 10])
    ap.add_argument("--gammas", type=float, nargs="+", default=[0.95, 0.99])
    ap.add_argument("--kinds", nargs="+", default=["dense", "sparse", "banded"],
                    choices=["dense", "sparse", "banded"])
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per solver (median reported)")
    ap.add_argument("--toolbox-cap", type=float, default=15.0,
                    help="pymdptoolbox is timed once when a run exceeds this many seconds")
    ap.add_argument("--tol", type=float, default=1e-8, help="our value_iteration tolerance")
    ap.add_argument("--toolbox-epsilon", type=float, default=0.01,
                    help="pymdptoolbox VI epsilon (its default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--markdown", help="also write the table to this file")
    ap.add_argument("--small-only", action="store_true", help="only the S = 500 section")
    ap.add_argument("--small-size", type=int, default=500)
    ap.add_argument("--small-repeats", type=int, default=15)
    ap.add_argument("--flush", action="store_true",
                    help="small section: empty the CPU caches (a 64 MB write) before every solve")
    ap.add_argument("--template", action="store_true",
                    help="small section: also the compile_mdp template (sparse and banded)")
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes = [s for s in args.sizes if s <= 1000] or [100]
        args.repeats = 1
    warnings.simplefilter("ignore")  # pymdptoolbox's SparseEfficiencyWarning / deprecations
    import mdptoolbox

    info = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
            f"{platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
            f"pymdptoolbox {getattr(mdptoolbox, '__version__', '4.0b3')}; repeats {args.repeats}, "
            f"VI tol {args.tol:g}, "
            f"toolbox VI epsilon {args.toolbox_epsilon:g}")
    print(info, "\n", flush=True)
    small = small_section(args)
    if args.small_only:
        if args.markdown:
            with open(args.markdown, "w") as fh:
                fh.write("\n".join([info, ""] + small) + "\n")
        return small
    lines = [info, "", *small, "", HEADER, "|" + "---|" * (HEADER.count("|") - 1)]
    print("\n" + HEADER + "\n" + "|" + "---|" * (HEADER.count("|") - 1), flush=True)
    rows = []
    for S in args.sizes:
        for A in args.actions:
            for gamma in args.gammas:
                for kind in args.kinds:
                    r = run_case(S, A, gamma, kind, args)
                    rows.append(r)
                    lines.append(fmt_row(r))
                    print(lines[-1], flush=True)
    worst_vi = max(r["vi"][2] for r in rows)
    worst_pi = max(r["pi"][2] for r in rows)
    big = [r["tpi"][0] / r["pi"][0] for r in rows if r["S"] == max(args.sizes)]
    summary = (f"\nours: max|V - V_exact| = {worst_vi:.1e} (VI, tol {args.tol:g}), {worst_pi:.1e} (PI); "
               f"PI speed-up at S = {max(args.sizes)}: min {min(big):.1f}×, "
               f"median {statistics.median(big):.1f}×. "
               "† = pymdptoolbox's PI policy differs from ours; * = pymdptoolbox timed once "
               f"(a run took > {args.toolbox_cap:g} s).")
    lines.append(summary)
    print(summary)
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write("\n".join(lines) + "\n")
    return rows


if __name__ == "__main__":
    main()
