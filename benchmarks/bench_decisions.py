"""The six classic decision problems: learned MEU against the exact one, in units of noise.

For every problem of ``shared/data/decisions/problems.json`` and both partial orders (the
correct one and the one used in earlier published work) this learns an SPMN with
``spmn.learn_spmn`` and reports its MEU, ``z = (MEU - exact) / sd`` where ``sd`` is the
sampling noise of an MEU estimated from the 100,000 rows (bootstrap of the plug-in estimator,
and optionally of the learner itself), the node count, the learning time, and whether the
learned policy takes an optimal decision at every information state on the optimal path.

The exact tables are not shipped, only their exact MEU, so "optimal" is judged from data: for
each decision context the value of every decision (plug-in, by counting) and the bootstrap sd
of its gap to the best one; the learned decision passes when it is the best or within 3 sd of
it (a tie the data cannot resolve), and at the root its value must also lie within 3 sd of
``meu_exact``. A context where no row takes the learned decision cannot be judged from data
and is reported as such (it happens only in contexts of a handful of rows).

    python benchmarks/bench_decisions.py [--boot 200] [--learner-boot 10] [--markdown out.md]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from spmn.data import read_table, schema_from_spec  # noqa: E402
from spmn.learn import empirical_meu, learn_spmn  # noqa: E402

_SHARED = os.path.join(os.path.dirname(HERE), "..", "shared", "data", "decisions")
#: The six problems: the shared folder when present, else the gzipped copy shipped in tests/data.
DATA = os.environ.get("SPMN_DECISIONS_DIR") or (
    _SHARED if os.path.isfile(os.path.join(_SHARED, "problems.json"))
    else os.path.join(os.path.dirname(HERE), "tests", "data", "decisions"))
ORDERS = {"correct": ("partial_order", "meu_exact"),
          "published": ("partial_order_published", "meu_exact_under_published_order")}


def problems(directory: str = DATA) -> dict[str, Any]:
    with open(os.path.join(directory, "problems.json")) as fh:
        return json.load(fh)


def load(spec: dict, order_key: str = "partial_order", directory: str = DATA):
    """(data in schema order, schema) of one problem under one partial order."""
    schema, maps = schema_from_spec(spec, spec[order_key])
    path = os.path.join(directory, spec["file"])
    if not os.path.exists(path):
        path += ".gz"
    return read_table(path, schema, values=maps), schema


def bootstrap_values(X: np.ndarray, schema, B: int, seed: int) -> list[dict]:
    """Plug-in values of every decision prefix for ``B`` Poisson(1) bootstrap replicates."""
    W = np.random.default_rng(seed).poisson(1.0, (B, X.shape[0])).astype(np.float64)
    return [r[2] for r in empirical_meu(X, schema, W, return_values=True)]


def learner_sd(X: np.ndarray, schema, B: int, seed: int, **hyper) -> float:
    """sd of the learned MEU over ``B`` relearns on rows resampled with replacement."""
    rng = np.random.default_rng(seed)
    meus = [learn_spmn(X[rng.integers(0, X.shape[0], X.shape[0])], schema=schema, seed=b,
                       allow_constant=True, **hyper).meu() for b in range(B)]
    return float(np.std(meus, ddof=1))


def policy_checks(circuit, X: np.ndarray, schema, boot: list[dict], exact: float) -> list[dict]:
    """The learned decision at every information state on the optimal path, against the
    plug-in values of all decisions there (module docstring)."""
    meu, names, values = empirical_meu(X, schema, return_values=True)
    decisions = {v.name for v in schema.decisions}
    sd_meu = float(np.std([b[()] for b in boot], ddof=1))
    checks: list[dict] = []

    def walk(prefix: tuple[int, ...]) -> None:
        i = len(prefix)
        if i == len(names):
            return
        name = names[i]
        kids = sorted(k for k in values if len(k) == i + 1 and k[:i] == prefix)
        if name not in decisions:
            for k in kids:
                walk(k)
            return
        ev = np.full(len(schema), np.nan)
        for n, c in zip(names[:i], prefix):
            ev[schema.index(n)] = c
        learned = int(circuit.policy(ev, decision=name))
        q = {k[-1]: values[k] for k in kids}
        best = max(q, key=q.get)
        gaps = [b.get(prefix + (best,), np.nan) - b.get(prefix + (learned,), np.nan) for b in boot]
        finite = np.asarray(gaps)[np.isfinite(gaps)]
        sd = float(np.std(finite, ddof=1)) if finite.size > 1 else 0.0
        gap = q[best] - q.get(learned, -np.inf)
        ok: bool | None = learned == best or gap <= 3 * sd
        if learned not in q:  # no row takes it here: the data cannot judge it (None)
            ok = None
        if i == 0:  # nothing observed before it: its value must reach the exact MEU
            ok = bool(ok) and abs(q.get(learned, -np.inf) - exact) <= 3 * sd_meu
        checks.append({"context": dict(zip(names[:i], prefix)), "decision": name,
                       "learned": learned, "best": best, "gap": gap, "sd": sd, "ok": ok})
        if prefix + (learned,) in values:
            walk(prefix + (learned,))

    walk(())
    return checks


def evaluate(name: str, spec: dict, order: str = "correct", *, boot: int = 200,
             learner_boot: int = 0, seed: int = 0, directory: str = DATA, **hyper) -> dict:
    """One row of the table: MEU, exact, noise sd, z, nodes, time, policy check."""
    order_key, exact_key = ORDERS[order]
    X, schema = load(spec, order_key, directory)
    t = time.perf_counter()
    circuit = learn_spmn(X, schema=schema, seed=seed, **hyper)
    seconds = time.perf_counter() - t
    meu = circuit.meu()
    reps = bootstrap_values(X, schema, boot, seed + 1)
    sd = float(np.std([r[()] for r in reps], ddof=1))
    row = {"problem": name, "order": order, "meu": meu, "exact": spec[exact_key], "sd": sd,
           "z": (meu - spec[exact_key]) / sd, "nodes": len(circuit.nodes), "seconds": seconds,
           "plug_in": empirical_meu(X, schema)}
    if learner_boot:
        row["sd_learner"] = learner_sd(X, schema, learner_boot, seed + 2, **hyper)
    checks = policy_checks(circuit, X, schema, reps, spec[exact_key])
    row["checks"] = checks
    row["policy_ok"] = all(c["ok"] is not False for c in checks)
    first = checks[0]
    row["root"] = (f"{first['decision']}={first['learned']}" if not first["context"]
                   else f"{first['decision']} by {'/'.join(first['context'])}")
    return row


def table(rows: list[dict]) -> str:
    head = ("| problem | order | learned MEU | exact MEU | noise sd | z | nodes | learn s | "
            "root decision | policy on optimal path |")
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        sd = f"{r['sd']:.4g}" + (f" ({r['sd_learner']:.4g})" if "sd_learner" in r else "")
        n_ok = sum(c["ok"] is True for c in r["checks"])
        n_na = sum(c["ok"] is None for c in r["checks"])
        na = f", {n_na} without data" if n_na else ""
        lines.append(f"| {r['problem']} | {r['order']} | {r['meu']:.6g} | {r['exact']:.6g} | "
                     f"{sd} | {r['z']:+.2f} | {r['nodes']} | {r['seconds']:.2f} | {r['root']} | "
                     f"{'yes' if r['policy_ok'] else 'NO'} ({n_ok}/{len(r['checks'])}{na}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--problems", nargs="*", default=None)
    ap.add_argument("--boot", type=int, default=200, help="bootstrap replicates (plug-in)")
    ap.add_argument("--learner-boot", type=int, default=0, help="relearns for the learner's sd")
    ap.add_argument("--repeats", type=int, default=3, help="timing repeats (median)")
    ap.add_argument("--markdown", default=None)
    args = ap.parse_args(argv)
    specs = problems(args.data)
    X0, schema0 = load(specs["Export_Textiles"], directory=args.data)
    learn_spmn(X0[:2000], schema=schema0)  # compiles the Numba code before any timing
    rows = []
    for name in args.problems or list(specs):
        for order in ORDERS:
            r = evaluate(name, specs[name], order, boot=args.boot, directory=args.data,
                         learner_boot=args.learner_boot if order == "correct" else 0)
            X, schema = load(specs[name], ORDERS[order][0], args.data)
            times = [r["seconds"]]
            for rep in range(args.repeats - 1):
                t = time.perf_counter()
                learn_spmn(X, schema=schema, seed=0)
                times.append(time.perf_counter() - t)
            r["seconds"] = float(np.median(times))
            rows.append(r)
            print(table([r]).splitlines()[-1], flush=True)
    leak = []
    for name in args.problems or list(specs):
        c = next(r for r in rows if r["problem"] == name and r["order"] == "correct")
        p = next(r for r in rows if r["problem"] == name and r["order"] == "published")
        leak.append(f"| {name} | {p['meu'] - c['meu']:+.5g} | {p['exact'] - c['exact']:+.5g} |")
    text = (table(rows) + "\n\nLeak of the published order (learned, exact): MEU(published) - "
            "MEU(correct)\n\n| problem | learned | exact |\n|---|---|---|\n" + "\n".join(leak))
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(text + "\n")
    bad = [r for r in rows if r["order"] == "correct" and (abs(r["z"]) >= 3 or not r["policy_ok"])]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
