"""World-model benchmark: recurrent-template Bellman passes and WorldModel learning, in one run.

Every table compares spmn with a peer measured in the same process, on the same data:

1. Bellman-update throughput. Random sparse MDPs (``random_mdp``, A = 4, 8 successor draws per
   row) compiled exactly by ``compile_mdp``; one ``Template.bellman`` sweep per backend against
   pymdptoolbox's Bellman operator (``MDP._bellmanOperator``, the body of its value-iteration
   loop) on the same P and R. Throughput = interface states x actions per second. Compile time
   (excluded from the sweep) and pymdptoolbox's constructor time are reported beside it.
2. Time to an exact solution: ``Template.policy_iteration`` against pymdptoolbox's
   ``PolicyIteration`` (γ = 0.95) on the same MDPs; max |V - V_exact| with V_exact from
   ``spmn.reference.TabularMDP.policy_iteration``. Setup (our compile, pymdptoolbox's
   constructor) is excluded from the solve time and reported apart.
3. WorldModel fit time on FrozenLake-v1 4x4 slippery (random-policy logs) and Taxi-v4 (state
   factored into row, col, passenger, destination), against the certainty-equivalent tabular
   model (transition and reward counts, numpy), with the greedy policies' true values.
4. Anchors: the finite-horizon value of FrozenLake (H = 300, undiscounted) from the compiled
   template against the exact 0.822947 and the published RSPMN's 0.818.
5. FrozenLake data-size table at γ = 0.95: 10k, 30k, 100k, 300k transitions of a uniformly random
   policy (several seeds, medians; the sizes are prefixes of one log per seed), against the
   certainty-equivalent model; writes benchmarks/frozenlake_error_vs_data.png.

    PYTHONPATH=. python benchmarks/bench_world_model.py            # full run (~10 min on 2 cores)
    PYTHONPATH=. python benchmarks/bench_world_model.py --quick    # small sizes, one repeat
    PYTHONPATH=. python benchmarks/bench_world_model.py --repeats 5 --markdown /tmp/wm.md
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
import warnings

import numpy as np
import scipy.sparse as sp

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from _common import Report, fmt_rate, fmt_ratio, fmt_s, machine, once, per_call  # noqa: E402

from spmn import kernels  # noqa: E402
from spmn.reference import TabularMDP, random_mdp  # noqa: E402
from spmn.worldmodels.tabular.compile_mdp import compile_mdp  # noqa: E402
from spmn.worldmodels.tabular.model import WorldModel  # noqa: E402

GAMMA = 0.95
FL_V_STAR = 0.1804715784          # FrozenLake 4x4 slippery, γ = 0.95, V*(start)
TAXI_V_STAR = 6.3274643149        # Taxi-v4, γ = 0.99, start-distribution value
FL_H300 = 0.822947                # exact undiscounted finite-horizon value at H = 300
FL_HINF = 0.823529                # ... and as H -> ∞
RSPMN_H300 = 0.818                # published RSPMN MEU after 300 undiscounted iterations
RSPMN_LEARN = "2,000 to 18,700 s" # published RSPMN learning time on its larger domains
PLOT = os.path.join(HERE, "frozenlake_error_vs_data.png")


# ---------------------------------------------------------------------------- helpers
def backends(args) -> list[str]:
    have = kernels.available()
    if args.backends:
        return [b for b in args.backends if b in have]
    return [b for b in have if b != "reference"] or have


def guarded(fn, *a, **kw):
    """Run fn; on an exception return the exception (a backend may be mid-edit)."""
    try:
        return fn(*a, **kw)
    except Exception as e:  # noqa: BLE001
        return e


def err_cell(e: Exception) -> str:
    return f"error: {type(e).__name__}: {str(e)[:60]}"


def ce_model(logs: dict) -> tuple[TabularMDP, int]:
    """Certainty-equivalent tabular MDP of the logs over the observed state codes, plus one
    absorbing end state (index n) that every ``terminated`` transition enters. Unseen (s, a):
    self-loop with reward 0. Returns (model, n)."""
    s, a, r, sn, t = (np.asarray(logs[k]) for k in ("s", "a", "r", "s_next", "terminated"))
    n = int(max(s.max(), sn.max())) + 1
    A = int(a.max()) + 1
    m = n + 1
    dst = np.where(t, n, sn)
    key = (a * m + s) * m + dst
    N = np.bincount(key, minlength=A * m * m).reshape(A, m, m).astype(np.float64)
    Rs = np.bincount(key, weights=r, minlength=A * m * m).reshape(A, m, m)
    tot = N.sum(axis=2, keepdims=True)
    P = np.where(tot > 0, N / np.maximum(tot, 1.0), np.eye(m)[None])
    R = np.where(N > 0, Rs / np.maximum(N, 1.0), 0.0)
    return TabularMDP(P, R, terminal=[n]), n


def true_value(mdp: TabularMDP, policy_states: np.ndarray, gamma: float) -> float:
    return float(mdp.start @ mdp.policy_evaluation(policy_states, gamma).values)


def taxi_columns(logs: dict):
    """Taxi's state code (row, col, passenger, destination) unravelled into four columns."""
    def decode(code):
        code = np.asarray(code)
        return code // 100, (code // 20) % 5, (code // 4) % 5, code % 4
    names = ["row", "col", "passenger", "destination"]
    cols = dict(zip(names, decode(logs["s"])))
    cols.update({f"{k}_next": v for k, v in zip(names, decode(logs["s_next"]))})
    cols.update(a=logs["a"], r=logs["r"], terminated=logs["terminated"])
    return names, cols, decode


# ---------------------------------------------------------------------------- parts 1 and 2
def mdp_cases(args, rep: Report):
    import mdptoolbox.mdp as tb

    bks = backends(args)
    rep.text(f"\nbackends: {bks} (available: {kernels.available()})")
    rows1, rows2 = [], []
    for S in args.sizes:
        mdp = random_mdp(S, 4, min(1.0, args.successors / S), args.seed, sparse=True)
        R = mdp.expected_reward
        P_tool = [sp.csr_matrix(m) for m in mdp.P]
        succ = float(np.mean([np.diff(sp.csr_array(m).indptr).mean() for m in mdp.P]))
        t_comp, T = once(lambda: compile_mdp(mdp))
        flat = T.circuit.compile()
        t_tb_setup, proto = once(lambda: tb.PolicyIteration(P_tool, R.T, GAMMA))
        exact = mdp.policy_iteration(GAMMA)
        V = np.random.default_rng(args.seed).random(S) / (1 - GAMMA)
        pol_tb, TV_tb = proto._bellmanOperator(V)
        t_tb, _ = per_call(lambda: proto._bellmanOperator(V), args.repeats, args.min_time)
        rate_tb = S * 4 / t_tb
        print(f"  S={S}: compile {t_comp:.2f} s ({flat.n_nodes} nodes), toolbox setup "
              f"{t_tb_setup:.2f} s", flush=True)
        for b in bks:
            T.backend = b
            out = guarded(T.bellman, V, GAMMA)
            if isinstance(out, Exception):
                rows1.append([S, f"{succ:.1f}", flat.n_nodes, fmt_s(t_comp), b, err_cell(out),
                              "", "", fmt_s(t_tb), fmt_rate(rate_tb), "", ""])
                continue
            diff = float(np.abs(out[0] - np.asarray(TV_tb).ravel()).max())
            same = bool(np.array_equal(out[1], np.asarray(pol_tb).ravel()))
            t_ours, _ = per_call(lambda: T.bellman(V, GAMMA), args.repeats, args.min_time)
            k = kernels.get(b)
            bound = np.ascontiguousarray(GAMMA * V)
            qidx = T._q_idx.ravel()
            t_1th, _ = per_call(lambda: k.node_values(flat, T._empty, bound, qidx, threads=1),
                                args.repeats, args.min_time)
            rate = S * 4 / t_ours
            rows1.append([S, f"{succ:.1f}", flat.n_nodes, fmt_s(t_comp), b, fmt_s(t_ours),
                          fmt_rate(rate), fmt_s(t_1th), fmt_s(t_tb), fmt_rate(rate_tb),
                          fmt_ratio(rate / rate_tb), f"{diff:.1e}{'' if same else ' (policy differs)'}"])
            print("  " + " | ".join(map(str, rows1[-1])), flush=True)
        # part 2: exact solution (at S >= --heavy: one run each, first backend only)
        heavy = S >= args.heavy
        tb_reps = args.toolbox_repeats or (1 if heavy else args.repeats)
        our_reps = 1 if heavy else args.repeats
        times, m = [], None
        for _ in range(tb_reps):
            m = copy.deepcopy(proto)
            dt, _ = once(m.run)
            times.append(dt)
        t_tpi = statistics.median(times)
        err_tb = float(np.abs(np.asarray(m.V, float).ravel() - exact.values).max())
        for b in (bks[:1] if heavy else bks):
            T.backend = b

            def ours():
                T._system_cache.clear()  # no reuse of the previous run's last policy system
                return T.policy_iteration(GAMMA)
            out = guarded(T.bellman, V, GAMMA)  # warm-up (kernel preparation is cached)
            if isinstance(out, Exception):
                rows2.append([S, b, err_cell(out), "", "", fmt_s(t_comp), fmt_s(t_tb_setup),
                              f"{fmt_s(t_tpi)}", m.iter, f"{err_tb:.1e}", "", ""])
                continue
            t_pi, sol = per_call(ours, our_reps)
            err = float(np.abs(sol.values - exact.values).max())
            rows2.append([S, b, fmt_s(t_pi) + (f" (×{our_reps})" if our_reps < args.repeats else ""),
                          sol.iterations, f"{err:.1e}", fmt_s(t_comp),
                          fmt_s(t_tb_setup), f"{fmt_s(t_tpi)} (×{tb_reps})", m.iter, f"{err_tb:.1e}",
                          fmt_ratio(t_tpi / t_pi), fmt_ratio((t_tpi + t_tb_setup) / (t_pi + t_comp))])
            print("  " + " | ".join(map(str, rows2[-1])), flush=True)
        T = proto = P_tool = None  # free the large template before the next size
    rep.table(
        "1. Bellman-update throughput (one exact sweep; A = 4; interface states × actions per second)",
        ["S", "succ./row", "template nodes", "compile", "backend", "ours s/sweep", "ours S·A/s",
         "(diag) kernel 1 thread", "pymdptoolbox s/update", "pymdptoolbox S·A/s",
         "ratio ours/peer", "max|TV−TV_peer|"], rows1,
        "ours = `Template.bellman(V, γ)` (one `node_values` pass of the compiled template + argmax); "
        "peer = `mdptoolbox.mdp.MDP._bellmanOperator(V)` (Q = R + γ P V per action, max; the body "
        "of its value-iteration loop). Ratio > 1: ours faster. '(diag) kernel 1 thread' = the "
        "backend's `node_values` pass alone with `threads=1` (what a sweep costs without the "
        "default threading of a one-row batch). Compile time excluded from the sweep.")
    rep.table(
        f"2. Time to an exact solution (policy iteration, γ = {GAMMA})",
        ["S", "backend", "ours solve", "ours it.", "ours max|V−V_exact|", "ours compile",
         "pymdptoolbox setup", "pymdptoolbox solve", "peer it.", "peer max|V−V_exact|",
         "ratio solve peer/ours", "ratio incl. setup"], rows2,
        "ours = `Template.policy_iteration` (sparse LU per evaluation, one Bellman pass per "
        "improvement); peer = `mdptoolbox.mdp.PolicyIteration(P, R, γ).run()` (dense "
        "`numpy.linalg.solve` per evaluation) timed on a deep copy of one constructed object, so "
        "its constructor (input checks) is excluded like our compile; both reported. V_exact = "
        "`TabularMDP.policy_iteration`. (×k) = runs when fewer than --repeats: at S >= "
        f"{args.heavy:,} each solver runs once and ours on the first backend only (the sparse LU "
        "dominates and does not depend on the backend).")


# ---------------------------------------------------------------------------- part 3 and 4
def fit_part(args, rep: Report):
    rows, notes = [], []
    fl = TabularMDP.from_gymnasium("FrozenLake-v1", is_slippery=True)
    tx = TabularMDP.from_gymnasium("Taxi-v4")
    cases = [("FrozenLake-v1 4x4 slippery", fl, args.fl_n, 0, 0.95, FL_V_STAR),
             ("Taxi-v4 (row, col, passenger, destination)", tx, args.taxi_n, 1, 0.99, TAXI_V_STAR)]
    for name, mdp, n, seed, gamma, vstar_pub in cases:
        t_sample, logs = once(lambda: mdp.sample_transitions(n, seed=seed))
        if mdp is tx:
            names, cols, decode = taxi_columns(logs)
            states = np.stack(decode(mdp.observation), axis=1)
            make = lambda: WorldModel(names, "a", "r", "terminated", progress=False)  # noqa: E731
        else:
            cols, states = logs, mdp.observation[:, None]
            make = lambda: WorldModel("s", "a", "r", "terminated", progress=False)  # noqa: E731
        t_fit, wm = per_call(lambda: make().fit(cols), args.repeats)
        t_solve, sol = per_call(lambda: wm.solve(gamma), args.repeats)
        v_star = float(mdp.start @ mdp.policy_iteration(gamma).values)
        v_learned = float(mdp.start @ sol.value(states))
        v_true = true_value(mdp, sol.policy(states), gamma)
        t_ce, (ce, _) = per_call(lambda: ce_model(logs), args.repeats)
        t_ce_solve, ce_sol = per_call(lambda: ce.policy_iteration(gamma), args.repeats)
        ce_true = true_value(mdp, ce_sol.policy[mdp.observation], gamma)
        rows.append([name, f"{n:,}", fmt_s(t_sample), wm.n_regions_, fmt_s(t_fit), fmt_s(t_solve),
                     fmt_s(t_ce), fmt_s(t_ce_solve), fmt_ratio(t_fit / t_ce),
                     f"{v_learned:.4f}", f"{v_true:.6f}", f"{ce_true:.6f}", f"{v_star:.10f}"])
        if abs(v_star - vstar_pub) > 1e-8:
            notes.append(f"V* of {name} is {v_star:.10f}, expected {vstar_pub}")
        print("  " + " | ".join(map(str, rows[-1])), flush=True)
    rep.table(
        "3. WorldModel fit time (learned template) vs the certainty-equivalent tabular model",
        ["domain", "transitions", "sampling (not counted)", "regions", "ours fit", "ours solve",
         "peer fit", "peer solve", "fit ratio ours/peer", "ours V(start) learned",
         "ours greedy true V", "peer greedy true V", "V*"], rows,
        "γ = 0.95 (FrozenLake, V* = 0.1804715784) and 0.99 (Taxi, V* = 6.3274643149); V(start) "
        "averages the start distribution. ours = `WorldModel(...).fit(logs)` (region learning by "
        "G-tests + template build + validation), then `.solve(γ)` (policy iteration); peer = "
        "counting P(s'|s,a) and mean R(s,a,s') over observed state codes into a `TabularMDP` "
        "(+ `policy_iteration`). Ratio > 1: ours slower. 'greedy true V' = the greedy policy "
        "evaluated exactly in the true MDP. Published RSPMN: learning its larger domains took "
        f"{RSPMN_LEARN}." + ("\n\n" + "; ".join(notes) if notes else ""))
    return fl


def anchor_part(args, rep: Report, fl: TabularMDP):
    rows = []
    s0 = int(np.argmax(fl.start))
    t_comp, T = once(lambda: compile_mdp(fl))
    t_ref, ref = per_call(lambda: fl.finite_horizon(300, 1.0), args.repeats)
    v_ref = float(ref.values[0, s0])
    for b in backends(args):
        T.backend = b
        out = guarded(T.bellman, np.zeros(T.n_states), 1.0)  # warm-up
        if isinstance(out, Exception):
            rows.append([b, err_cell(out), "", "", fmt_s(t_ref), f"{v_ref:.6f}", ""])
            continue
        t, sol = per_call(lambda: T.finite_horizon(300, 1.0), args.repeats)
        v = float(sol.values[0, s0])
        rows.append([b, f"{v:.6f}", f"{abs(v - v_ref):.1e}", fmt_s(t), fmt_s(t_ref), f"{v_ref:.6f}",
                     fmt_ratio(t / t_ref)])
        print("  " + " | ".join(map(str, rows[-1])), flush=True)
    rep.table(
        "4. Anchor: FrozenLake 4x4 slippery, H = 300 undiscounted, value of the start state",
        ["backend", "ours V_300(start)", "|ours − reference|", "ours time (300 passes)",
         "reference time", "reference V_300", "time ratio ours/reference"], rows,
        f"ours = `compile_mdp(FrozenLake).finite_horizon(300, 1.0)` (compile {fmt_s(t_comp)}, "
        "excluded); reference = `TabularMDP.finite_horizon` (numpy/scipy sparse backward "
        f"induction). Exact: {FL_H300} at H = 300, {FL_HINF} as H → ∞; the published RSPMN "
        f"reports {RSPMN_H300} after 300 undiscounted iterations of a pure-Python loop.")


# ---------------------------------------------------------------------------- part 5
def data_part(args, rep: Report):
    fl = TabularMDP.from_gymnasium("FrozenLake-v1", is_slippery=True)
    s0 = int(np.argmax(fl.start))
    states = fl.observation[:, None]
    sizes = sorted(args.data_sizes)
    res = {n: [] for n in sizes}
    t_samp = []
    for seed in args.seeds:
        dt, logs = once(lambda: fl.sample_transitions(max(sizes), seed=seed))
        t_samp.append(dt)
        for n in sizes:
            sub = {k: v[:n] for k, v in logs.items()}
            t_fit, wm = once(lambda: WorldModel("s", "a", "r", "terminated", progress=False).fit(sub))
            sol = wm.solve(GAMMA)
            err = abs(float(sol.value([s0])[0]) - FL_V_STAR)
            frac = true_value(fl, sol.policy(states), GAMMA) / FL_V_STAR
            t_ce, (ce, _) = once(lambda: ce_model(sub))
            ce_sol = ce.policy_iteration(GAMMA)
            ce_err = abs(float(ce_sol.values[fl.observation[s0]]) - FL_V_STAR)
            ce_frac = true_value(fl, ce_sol.policy[fl.observation], GAMMA) / FL_V_STAR
            res[n].append(dict(err=err, frac=frac, regions=wm.n_regions_, fit=t_fit,
                               ce_err=ce_err, ce_frac=ce_frac, ce_fit=t_ce))
            print(f"  seed {seed} n={n}: |ΔV| {err:.2e} (peer {ce_err:.2e}), true/V* {frac:.4f} "
                  f"(peer {ce_frac:.4f}), regions {wm.n_regions_}, fit {t_fit:.2f} s", flush=True)
    med = lambda n, k: statistics.median(r[k] for r in res[n])  # noqa: E731
    rng = lambda n, k: (min(r[k] for r in res[n]), max(r[k] for r in res[n]))  # noqa: E731
    rows = []
    for n in sizes:
        lo, hi = rng(n, "err")
        rows.append([f"{n:,}", f"{med(n, 'err'):.2e} ({lo:.1e}–{hi:.1e})", f"{med(n, 'frac'):.4f}",
                     f"{statistics.median(r['regions'] for r in res[n]):g}", fmt_s(med(n, "fit")),
                     f"{med(n, 'ce_err'):.2e}", f"{med(n, 'ce_frac'):.4f}", fmt_s(med(n, "ce_fit")),
                     fmt_ratio(med(n, "err") / med(n, "ce_err")) if med(n, "ce_err") > 0 else "n/a"])
    rep.table(
        f"5. FrozenLake 4x4 slippery from uniformly-random-policy logs, γ = {GAMMA} "
        f"(median over {len(args.seeds)} seeds)",
        ["transitions", "ours |V(start) − V*| (min–max)", "ours greedy true V / V*", "regions",
         "ours fit", "peer |V(start) − V*|", "peer greedy true V / V*", "peer fit",
         "error ratio ours/peer"], rows,
        f"V* = {FL_V_STAR}; seeds {list(args.seeds)}, sizes are prefixes of one "
        f"{max(sizes):,}-transition log per seed (sampling {fmt_s(statistics.median(t_samp))} "
        "per log, not counted). peer = certainty-equivalent tabular model (counts). "
        f"Plot: {os.path.relpath(args.plot, os.path.dirname(HERE))}.")
    if args.plot:
        plot(res, sizes, args)
        rep.text(f"\nwrote {args.plot}")


def plot(res, sizes, args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=120)
    styles = (("err", "spmn WorldModel (learned regions)", "C0", "-", dict(ms=5)),
              ("ce_err", "certainty-equivalent tabular (counts)", "C1", "--",
               dict(ms=10, mfc="none", mew=1.5)))
    for key, label, color, ls, mk in styles:
        for n in sizes:
            ys = [max(r[key], 1e-7) for r in res[n]]
            ax.scatter([n] * len(ys), ys, color=color, alpha=0.35, s=14)
        ax.plot(sizes, [max(statistics.median(r[key] for r in res[n]), 1e-7) for n in sizes],
                marker="o", ls=ls, color=color, label=f"{label}, median", **mk)
    e0 = statistics.median(r["err"] for r in res[sizes[0]])
    ax.plot(sizes, [e0 * (sizes[0] / n) ** 0.5 for n in sizes], "k:", lw=1, label="∝ 1/√n")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("logged transitions (uniformly random policy)")
    ax.set_ylabel("|V(start) − V*(start)|")
    ax.set_title(f"FrozenLake-v1 4x4 slippery, γ = {GAMMA}, {len(args.seeds)} seeds")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.plot)
    plt.close(fig)


# ---------------------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs (median reported)")
    ap.add_argument("--toolbox-repeats", type=int, default=0,
                    help="pymdptoolbox PolicyIteration runs (default: --repeats, 1 for S >= 5000)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 5000])
    ap.add_argument("--heavy", type=int, default=5000,
                    help="from this S on, policy iteration runs once, ours on one backend")
    ap.add_argument("--successors", type=int, default=8, help="successor draws per (s, a) row")
    ap.add_argument("--backends", nargs="+", help="default: every built backend but 'reference'")
    ap.add_argument("--min-time", type=float, default=0.2, help="seconds per timed repeat of a sweep")
    ap.add_argument("--fl-n", type=int, default=100_000)
    ap.add_argument("--taxi-n", type=int, default=200_000)
    ap.add_argument("--data-sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000, 300_000])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--parts", nargs="+", default=["mdp", "fit", "anchor", "data"],
                    choices=["mdp", "fit", "anchor", "data"])
    ap.add_argument("--plot", default=PLOT, help="PNG path ('' to skip)")
    ap.add_argument("--markdown", help="also write the tables to this file")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes = [s for s in args.sizes if s <= 1000] or [100]
        args.repeats, args.min_time = 1, 0.05
        args.fl_n, args.taxi_n = min(args.fl_n, 30_000), min(args.taxi_n, 50_000)
        args.data_sizes = [n for n in args.data_sizes if n <= 30_000] or [10_000]
        args.seeds = args.seeds[:2]
    warnings.simplefilter("ignore")  # pymdptoolbox's deprecation / sparse-efficiency warnings
    import mdptoolbox

    rep = Report()
    t0 = time.perf_counter()
    rep.text(f"spmn world-model benchmark: {machine()}; pymdptoolbox "
             f"{getattr(mdptoolbox, '__version__', '4.0b3')}; repeats {args.repeats} (medians)"
             + ("; --quick" if args.quick else ""))
    fl = None
    if "mdp" in args.parts:
        mdp_cases(args, rep)
    if "fit" in args.parts:
        fl = fit_part(args, rep)
    if "anchor" in args.parts:
        anchor_part(args, rep, fl or TabularMDP.from_gymnasium("FrozenLake-v1", is_slippery=True))
    if "data" in args.parts:
        data_part(args, rep)
    rep.text(f"\ntotal wall time {time.perf_counter() - t0:.0f} s")
    if args.markdown:
        rep.write(args.markdown)


if __name__ == "__main__":
    main()
