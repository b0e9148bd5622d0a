"""How much data do I need? Error of the learned tabular world model against the number of
logged transitions (uniformly random policy), FrozenLake 4x4 slippery and Taxi-v4, γ = 0.95.

For each size (prefixes of one log per seed) it reports, medians over seeds: the states never
logged, max |V - V*| over the logged states, the greedy policy's true value as a fraction of
V* at the start distribution, the (region, action) pairs of the greedy policy logged fewer than
``min_count`` = 30 times, and whether ``solve`` warned (``CoverageWarning``). The peer is the
exact MDP itself (V*, π* by policy iteration). Writes benchmarks/error_vs_data.png.

    PYTHONPATH=. python benchmarks/bench_data_needed.py           # ~3 min on 2 cores
    PYTHONPATH=. python benchmarks/bench_data_needed.py --quick
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from spmn.errors import CoverageWarning  # noqa: E402
from spmn.reference import TabularMDP  # noqa: E402
from spmn.worldmodels.tabular import coverage  # noqa: E402
from spmn.worldmodels.tabular.model import WorldModel  # noqa: E402

GAMMA = 0.95
PLOT = os.path.join(HERE, "error_vs_data.png")


def one(mdp: TabularMDP, exact, logs: dict, n: int) -> dict:
    cut = {k: v[:n] for k, v in logs.items()}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = WorldModel("s", "a", "r", "terminated", progress=False).fit(cut)
        sol = model.solve(GAMMA)
    cov = [w for w in caught if issubclass(w.category, CoverageWarning)]  # solve's own warning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CoverageWarning)  # never-logged states: counted below
        states = mdp.observation  # MDP state -> observation (absorbing copies of ends)
        V, pol = sol.value(states), sol.policy(states)
    seen = np.isin(states, np.unique(cut["s"]))  # logged as a source: the model has data
    never = np.setdiff1d(np.unique(states), np.r_[cut["s"], cut["s_next"]]).size
    greedy = float(mdp.start @ mdp.policy_evaluation(pol, GAMMA).values)
    v_star = float(mdp.start @ exact.values)
    thin = coverage.policy_coverage(model, sol.result.policy, 30).thin_states
    return {"unseen": never, "err": float(np.abs(V - exact.values)[seen].max()),
            "frac": greedy / v_star, "thin": thin, "warned": bool(cov)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    envs = {"FrozenLake-v1": [3_000, 10_000, 30_000, 100_000, 300_000],
            "Taxi-v4": [10_000, 30_000, 100_000, 300_000, 1_000_000]}
    if args.quick:
        envs = {k: v[:3] for k, v in envs.items()}
        args.seeds = 1
    curves = {}
    print(f"γ = {GAMMA}; uniformly random logging policy; medians over {args.seeds} seeds")
    for env, sizes in envs.items():
        mdp = TabularMDP.from_gymnasium(env)
        exact = mdp.policy_iteration(GAMMA)
        rows = {n: [] for n in sizes}
        t0 = time.perf_counter()
        for seed in range(args.seeds):
            logs = mdp.sample_transitions(max(sizes), seed=seed)
            for n in sizes:
                rows[n].append(one(mdp, exact, logs, n))
        print(f"\n{env}: {int(mdp.observation.max()) + 1} states, {mdp.n_actions} actions "
              f"({time.perf_counter() - t0:.0f} s)")
        print(f"| transitions | states never logged | max abs(V - V*) over states logged as sources | "
              f"greedy value / V* | states where the greedy action was logged < 30 times | solve warned |")
        print("|---:|---:|---:|---:|---:|:---:|")
        med = []
        for n in sizes:
            r = rows[n]
            m = {k: statistics.median(x[k] for x in r) for k in ("unseen", "err", "frac", "thin")}
            warned = sum(x["warned"] for x in r)
            med.append(m["err"])
            print(f"| {n:,} | {m['unseen']:.0f} | {m['err']:.3g} | {m['frac']:.3f} | "
                  f"{m['thin']:.0f} | {warned}/{len(r)} |")
        curves[env] = (sizes, med)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("\nno plot: matplotlib is not installed (pip install 'spmn[plot]')")
        return
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for env, (sizes, err) in curves.items():
        ax.loglog(sizes, np.maximum(err, 1e-16), "o-", label=env)
    ax.set_xlabel("logged transitions (random policy)")
    ax.set_ylabel("max |V − V*| over logged states")
    ax.set_title(f"error against the amount of data (γ = {GAMMA})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(PLOT, dpi=120)
    print(f"\nwrote {PLOT}")


if __name__ == "__main__":
    main()
