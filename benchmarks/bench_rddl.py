"""IPPC 2011 RDDL domains: the factored world model (and the tabular one beside it) learned from
uniform-random logs, its finite-horizon policy valued on the true model.

Per instance: log ``--steps`` uniform-random steps from the initial state (the adapter's compiled
CPFs, exact distributions), fit :class:`spmn.FactoredWorldModel`, solve it for horizon H from the
initial state, and value its greedy policy exactly on the true MDP (``compile_exact``: the states
reachable from the initial state) where that is enumerable, else by Monte Carlo in the simulator
(mean +- standard error). V* and the random policy's value come from the same exact model (or MC
for random); "gap" is (V_learned - V_random) / (V* - V_random). The tabular ``WorldModel`` is fitted
on the same logs and valued the same way where the exact model exists.

Each instance runs in its own process with a time limit (``--timeout``), so one that does not
fit reports why and the rest go on. Results go to ``--out`` (JSON lines); the markdown table
is printed at the end. ``python benchmarks/bench_rddl.py --quick`` runs instance 1 of each domain.
Published RSPMN learning times (Tatavarti, Doshi and Hayes, ICAPS 2021) for comparison:
2,044-18,706 s per domain.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
import traceback
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _common import machine  # noqa: E402

DOMAINS = {  # domain: evaluation horizon H (the reference figures' horizons)
    "CrossingTraffic_MDP_ippc2011": 15,
    "Elevators_MDP_ippc2011": 10,
    "SkillTeaching_MDP_ippc2011": 10,
    "Navigation_MDP_ippc2011": 5,
    "GameOfLife_MDP_ippc2011": 3,
    "SysAdmin_MDP_ippc2011": 10,
}
MC_EPISODES = 1000


def _value(domain, exact, policy, H, seed):
    """(value, standard error or 0 when exact, how)."""
    from spmn.envs.rddl import evaluate_policy
    if exact is not None:
        return exact.policy_value(policy, H, domain.discount), 0.0, "exact"
    mc = evaluate_policy(domain, policy, MC_EPISODES, seed=seed, horizon=H, backend="compiled")
    return mc.mean, mc.stderr, "MC"


def run_one(name: str, instance: int, steps: int, seed: int = 0, groups: str | None = "auto",
            max_nodes: int = 5_000_000) -> dict:
    """Every figure of one instance (module docstring)."""
    warnings.simplefilter("ignore")
    import spmn
    from spmn.envs.rddl import RDDLDomain, log_transitions
    from spmn.envs.rddl_exact import compile_exact
    from spmn.errors import SpmnError

    H = DOMAINS[name]
    d = RDDLDomain(name, instance)
    row = {"domain": name.split("_")[0], "instance": instance, "fluents": len(d.state_fluents),
           "joint_actions": d.n_joint_actions(), "H": H, "steps": steps}
    logs = log_transitions(d, steps, seed=seed, backend="compiled")
    term = "terminated" if logs["terminated"].any() else None
    t0 = time.perf_counter()
    # the domain's variables carry each fluent's values, also those the logs never show
    # groups="auto": one-hot fluents (a robot's or an elevator's position) as one variable
    m = spmn.FactoredWorldModel(d.state_variables(), d.action_variables(), "r", term,
                                progress=False, seed=seed, groups=groups).fit(logs)
    row["fit_s"] = time.perf_counter() - t0
    row["groups"] = 0 if m.groups_ is None else len(m.groups_.groups)
    row["model_vars"] = len(m.state_names_)
    t0 = time.perf_counter()
    try:
        sol = m.solve(gamma=d.discount, horizon=H, start=d.initial_row, max_states=200_000,
                      max_nodes=max_nodes)
    except SpmnError as e:
        row["error"] = f"solve: {type(e).__name__}: {str(e)[:120]}"
        return row
    row["solve_s"] = time.perf_counter() - t0
    row["method"] = sol.method
    row["model_v0"] = float(sol.value(d.initial_row, 0))
    row["parents_mean"] = float(np.mean([len(p) for p in m.parents_.values()]))
    try:  # a flat solution runs the structured solver for its tree: capped at 200k nodes
        if sol.method != "structured":
            sol.max_nodes = 200_000
        tree = sol.value_tree(0)
        row["tree_nodes"], row["tree_vars"] = tree.n_nodes, len(tree.depends_on)
    except SpmnError:
        row["tree_nodes"] = None
    try:
        exact = compile_exact(d)
        row["states"] = exact.n_states
    except SpmnError as e:
        exact, row["states"] = None, f"> limit ({str(e)[:60]})"
    row["v_learned"], row["v_learned_se"], row["how"] = _value(d, exact, sol, H, seed + 1)
    row["v_random"], row["v_random_se"], _ = _value(d, exact, "random", H, seed + 2)
    if exact is not None:
        row["v_star"] = exact.optimal_value(H, d.discount)
        span = row["v_star"] - row["v_random"]
        row["gap"] = (row["v_learned"] - row["v_random"]) / span if span > 1e-9 else None
        # the tabular world model on the same logs, valued the same way
        n_seen, n_act = len(m.seen_states_), d.n_joint_actions()
        if n_seen ** 2 * n_act > 2e8:  # the tabular model's tables are dense in K x A x K
            row["tab_error"] = f"not run: {n_seen:,} logged states, dense K·A·K tables"
        else:
            _tabular(row, d, m, logs, term, exact, H, span, seed)
    return row


def _tabular(row, d, m, logs, term, exact, H, span, seed) -> None:
    """The tabular WorldModel on the same logs (one joint-action column), valued exactly."""
    import spmn
    from spmn.errors import SpmnError
    try:
        t0 = time.perf_counter()
        acts = d.joint_actions()  # one joint-action column, as a tabular user logs it
        key = {r.tobytes(): i for i, r in enumerate(acts)}
        A = np.stack([logs[f] for f in d.action_fluents], axis=1).astype(np.int64)
        tlogs = {**logs, "joint_action": np.array([key[r.tobytes()] for r in A])}
        # learned regions where the G-test splits are cheap, else one region per state
        n_seen = len(m.seen_states_)
        row["tab_structure"] = "learn" if n_seen <= 2000 else "full"
        tab = spmn.WorldModel(d.state_fluents, "joint_action", "r", term, progress=False,
                              structure=row["tab_structure"], seed=seed).fit(tlogs)
        tsol = tab.solve(gamma=d.discount, horizon=H)
        row["tab_s"] = time.perf_counter() - t0
        row["tab_v"] = exact.policy_value(_TabularPolicy(tsol, d), H, d.discount)
        row["tab_gap"] = (row["tab_v"] - row["v_random"]) / span if span > 1e-9 else None
    except (SpmnError, ValueError) as e:
        row["tab_error"] = f"{type(e).__name__}: {str(e)[:80]}"


class _TabularPolicy:
    """The tabular solution's greedy action as ``policy(state, t)``; an unseen state (which the
    tabular model cannot answer) takes the no-op."""

    def __init__(self, sol, domain) -> None:
        self.sol, self.d = sol, domain

    def __call__(self, state, t):
        row = self.d.state_row(state)
        try:
            a = int(np.asarray(self.sol.policy(row[None, :], t)).reshape(-1)[0])
        except Exception:  # noqa: BLE001 - unseen state: the documented no-op fallback
            return self.d.action_defaults
        return self.d.joint_actions()[a]


def _worker(args, q):
    try:
        q.put(run_one(*args))
    except Exception as e:  # noqa: BLE001 - reported in the table
        q.put({"domain": args[0].split("_")[0], "instance": args[1],
               "error": f"{type(e).__name__}: {str(e)[:160]}", "trace": traceback.format_exc()})


def run_limited(args, timeout: float) -> dict:
    q: mp.Queue = mp.get_context("fork").Queue()
    p = mp.get_context("fork").Process(target=_worker, args=(args, q))
    t0 = time.perf_counter()
    p.start()
    p.join(timeout)
    if p.is_alive():
        p.kill()
        p.join()
        return {"domain": args[0].split("_")[0], "instance": args[1],
                "error": f"over the {timeout:.0f} s limit"}
    out = q.get() if not q.empty() else {"domain": args[0].split("_")[0], "instance": args[1],
                                          "error": f"process died (exit {p.exitcode})"}
    out["wall_s"] = time.perf_counter() - t0
    return out


def _f(x, fmt="{:.3f}"):
    return "—" if x is None else (fmt.format(x) if isinstance(x, (int, float)) else str(x))


def markdown_table(head: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(str(x) for x in r) + " |" for r in rows])


def table(rows: list[dict]) -> str:
    head = ["domain", "inst", "fluents (model vars)", "joint a", "H", "fit s", "solve s", "method", "V tree",
            "learned", "V*", "random", "gap", "model V0 err", "tabular gap"]
    out = []
    for r in rows:
        if "error" in r and "fit_s" not in r:
            out.append([r["domain"], r["instance"], r.get("fluents", "—"), r.get("joint_actions", "—"),
                        r.get("H", "—"), "—", "—", r["error"][:60], "", "", "", "", "", "", ""])
            continue
        if "error" in r:
            flu = f"{r['fluents']} ({r['model_vars']})" if r.get("groups") else r["fluents"]
            out.append([r["domain"], r["instance"], flu, r["joint_actions"], r["H"],
                        _f(r["fit_s"], "{:.1f}"), "—", r["error"][:60], "", "", "", "", "", "", ""])
            continue
        learned = _f(r["v_learned"], "{:.3f}") + ("" if r["how"] == "exact" else
                                                  f" ± {r['v_learned_se']:.3f} (MC)")
        rnd = _f(r["v_random"], "{:.3f}") + ("" if r["how"] == "exact" else
                                             f" ± {r['v_random_se']:.3f}")
        err = abs(r["model_v0"] - r["v_learned"]) / max(abs(r["v_learned"]), 1e-12)
        tree = "—" if r.get("tree_nodes") is None else f"{r['tree_nodes']} ({r['tree_vars']} vars)"
        tab = (_f(r.get("tab_gap"), "{:.1%}") + f" ({r.get('tab_structure', 'learn')})"
               if "tab_gap" in r else ("not run" if "not run" in r.get("tab_error", "")
                                       else "fails" if "tab_error" in r else "—"))
        flu = f"{r['fluents']} ({r['model_vars']})" if r.get("groups") else r["fluents"]
        out.append([r["domain"], r["instance"], flu, r["joint_actions"], r["H"],
                    _f(r["fit_s"], "{:.1f}"), _f(r["solve_s"], "{:.1f}"), r["method"], tree,
                    learned, _f(r.get("v_star")), rnd,
                    ("V* not enumerable" if r.get("v_star") is None else "no gap (V* = random)")
                    if r.get("gap") is None else _f(r["gap"], "{:.1%}"),
                    f"{err:.1%}", tab])
    return markdown_table(head, out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--domains", nargs="*", default=list(DOMAINS))
    ap.add_argument("--instances", nargs="*", type=int, default=list(range(1, 11)))
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--quick", action="store_true", help="instance 1 of each domain")
    ap.add_argument("--groups", choices=("auto", "none"), default="auto",
                    help="one-hot state fluents as one categorical variable (default auto)")
    ap.add_argument("--max-nodes", type=int, default=5_000_000,
                    help="the structured solver's cap on value-diagram nodes (default 5,000,000: the solver's own)")
    ap.add_argument("--out", default="rddl_results.jsonl")
    ap.add_argument("--table-from", metavar="JSONL", help="print the table of a finished run")
    a = ap.parse_args(argv)
    if a.table_from:
        with open(a.table_from) as fh:
            print(table([json.loads(line) for line in fh if line.strip()]))
        return
    insts = [1] if a.quick else a.instances
    print(machine())
    rows = []
    for name in a.domains:
        name = name if name in DOMAINS else next(k for k in DOMAINS if k.startswith(name))
        over = 0
        for i in insts:
            if over >= 2:  # two instances over the limit in a row: the larger ones will be too
                r = {"domain": name.split("_")[0], "instance": i,
                     "error": "skipped: two smaller instances ran over the limit"}
                rows.append(r)
                with open(a.out, "a") as fh:
                    fh.write(json.dumps(r) + "\n")
                continue
            r = run_limited((name, i, a.steps, 0, None if a.groups == "none" else "auto",
                             a.max_nodes), a.timeout)
            over = over + 1 if "limit" in r.get("error", "") else 0
            rows.append(r)
            with open(a.out, "a") as fh:
                fh.write(json.dumps({k: v for k, v in r.items() if k != "trace"}) + "\n")
            short = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()
                     if k not in ("trace",)}
            print(short, flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
