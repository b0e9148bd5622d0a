"""Structure learning: spmn.learn_spn against SPFlow 0.0.48's learn_parametric, same run.

Data sets: synthetic categorical data (20,000 training x 20 variables, cardinalities 2-4, drawn
from a random Bayesian network with up to two parents per variable; 5,000 held-out rows) and
the chance variables of each decision problem in shared/data/decisions (first 80,000 rows to
train, last 20,000 held out). Reported: learning time (median of repeats; spmn's Numba code
warmed up first), node count, held-out mean log-likelihood. SPFlow's unsmoothed categorical
leaves give some held-out rows probability 0 (log-likelihood -inf); those rows are counted and
both models are also compared on the rows where SPFlow is finite.

SPFlow needs numpy < 2, so it runs in its own virtual environment (``--spflow-python``), as a
subprocess executing this same file with ``--spflow-worker``.

    python benchmarks/bench_learn.py [--repeats 5] [--spflow-repeats 1] [--markdown out.md]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(os.path.dirname(HERE), "..", "shared", "data", "decisions")
SPFLOW_PYTHON = "/work/venv-spflow/bin/python"


# ---------------------------------------------------------------------------- data
def random_bayes_net(d: int = 20, seed: int = 2024, kmin: int = 2, kmax: int = 4,
                     max_parents: int = 2, concentration: float = 0.5):
    """(cards, sample(n, seed), log_prob(X)) of a random categorical Bayesian network: variable
    j has up to ``max_parents`` parents among 0..j-1 and Dirichlet(concentration) CPT rows."""
    rng = np.random.default_rng(seed)
    cards = rng.integers(kmin, kmax + 1, d)
    parents = [sorted(rng.choice(j, size=min(j, int(rng.integers(0, max_parents + 1))),
                                 replace=False).tolist()) if j else [] for j in range(d)]
    cpts = []
    for j in range(d):
        shape = [int(cards[p]) for p in parents[j]] + [int(cards[j])]
        rows = int(np.prod(shape[:-1]))
        cpts.append(rng.dirichlet(np.full(cards[j], concentration), size=rows).reshape(shape))

    def probs(X, j):
        if parents[j]:
            return cpts[j][tuple(X[:, p].astype(int) for p in parents[j])]
        return np.broadcast_to(cpts[j], (X.shape[0], cards[j]))

    def sample(n, s):
        r = np.random.default_rng(s)
        X = np.zeros((n, d))
        for j in range(d):
            X[:, j] = (r.random(n)[:, None] > np.cumsum(probs(X, j), axis=1)).sum(1)
        return np.minimum(X, cards - 1)

    def log_prob(X):
        return sum(np.log(probs(X, j)[np.arange(X.shape[0]), X[:, j].astype(int)])
                   for j in range(d))

    return cards, sample, log_prob


def datasets(names=None, data_dir: str = DATA):
    """[(name, train, test, cards, reference held-out LL or None)]."""
    out = []
    cards, sample, log_prob = random_bayes_net()
    test = sample(5000, 2)
    if names is None or "synthetic" in names:
        out.append(("synthetic 20000x20", sample(20000, 1), test, cards,
                    float(log_prob(test).mean())))
    if os.path.isfile(os.path.join(data_dir, "problems.json")):
        sys.path.insert(0, os.path.dirname(HERE))
        from spmn.data import read_table, schema_from_spec
        specs = json.load(open(os.path.join(data_dir, "problems.json")))
        for name, spec in specs.items():
            if names is not None and name not in names:
                continue
            schema, maps = schema_from_spec(spec)
            X = read_table(os.path.join(data_dir, spec["file"]), schema, values=maps)
            idx = [j for j, v in enumerate(schema.variables) if v.role == "chance"]
            c = np.array([schema[j].k for j in idx])
            out.append((f"{name} chance ({len(idx)} vars)", X[:80000][:, idx],
                        X[80000:][:, idx], c, None))
    return out


# ---------------------------------------------------------------------------- spmn
def run_spmn(train, test, cards, repeats: int, seed: int = 0, **hyper) -> dict:
    sys.path.insert(0, os.path.dirname(HERE))
    from spmn import Schema, Variable
    from spmn.learn import learn_spn

    schema = Schema([Variable.discrete(f"x{j}", int(k)) for j, k in enumerate(cards)])
    learn_spn(train[:2000], schema, seed=seed, allow_constant=True, **hyper)  # JIT warm-up
    times, circuit = [], None
    for r in range(repeats):
        t = time.perf_counter()
        circuit = learn_spn(train, schema, seed=seed + r, allow_constant=True, **hyper)
        times.append(time.perf_counter() - t)
    return {"seconds": float(np.median(times)), "times": times, "nodes": len(circuit.nodes),
            "ll": circuit.log_likelihood(test).tolist()}


# ---------------------------------------------------------------------------- SPFlow
def spflow_worker(in_path: str, out_path: str) -> None:
    """Runs inside SPFlow's environment: learn_parametric with Categorical leaves."""
    from spn.algorithms.Inference import log_likelihood
    from spn.algorithms.LearningWrappers import learn_parametric
    from spn.structure.Base import Context, Node, get_nodes_by_type
    from spn.structure.leaves.parametric.Parametric import Categorical

    d = np.load(in_path)
    train, test, cards, repeats = d["train"], d["test"], d["cards"], int(d["repeats"])
    full = np.vstack([train, np.array([[min(v, k - 1) for k in cards]
                                       for v in range(int(cards.max()))], dtype=float)])
    times, spn = [], None
    for r in range(repeats):
        ctx = Context(parametric_types=[Categorical] * train.shape[1]).add_domains(full)
        t = time.perf_counter()
        spn = learn_parametric(train, ctx, min_instances_slice=200,
                               rand_gen=np.random.RandomState(r))
        times.append(time.perf_counter() - t)
    ll = log_likelihood(spn, test).reshape(-1)
    ll = np.where(ll < -1e300, -np.inf, ll)
    with open(out_path, "w") as fh:
        json.dump({"seconds": float(np.median(times)), "times": times,
                   "nodes": len(get_nodes_by_type(spn, Node)),
                   "ll": [x if np.isfinite(x) else None for x in ll.tolist()]}, fh)


def run_spflow(python: str, train, test, cards, repeats: int) -> dict | None:
    if not os.path.exists(python):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.json")
        np.savez(src, train=train, test=test, cards=np.asarray(cards), repeats=repeats)
        proc = subprocess.run([python, os.path.abspath(__file__), "--spflow-worker", src, dst],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr[-2000:], file=sys.stderr)
            return None
        with open(dst) as fh:
            res = json.load(fh)
    res["ll"] = [-np.inf if x is None else x for x in res["ll"]]
    return res


# ---------------------------------------------------------------------------- report
def compare(name: str, ours: dict, theirs: dict | None, ref: float | None) -> dict:
    a = np.asarray(ours["ll"])
    row = {"data": name, "spmn_s": ours["seconds"], "spmn_nodes": ours["nodes"],
           "spmn_ll": float(a.mean()), "true_ll": ref}
    if theirs is not None:
        b = np.asarray(theirs["ll"])
        fin = np.isfinite(b)
        row.update(spflow_s=theirs["seconds"], spflow_nodes=theirs["nodes"],
                   spflow_ll=float(b.mean()), spflow_zero_rows=int((~fin).sum()),
                   spflow_ll_finite=float(b[fin].mean()), spmn_ll_same_rows=float(a[fin].mean()),
                   speedup=theirs["seconds"] / ours["seconds"])
    return row


def table(rows: list[dict]) -> str:
    lines = ["| data | spmn s | SPFlow s | speed-up | spmn nodes | SPFlow nodes | spmn LL | "
             "SPFlow LL | SPFlow rows p=0 | LL where SPFlow finite (spmn / SPFlow) |",
             "|" + "---|" * 10]
    for r in rows:
        if "spflow_s" not in r:
            lines.append(f"| {r['data']} | {r['spmn_s']:.3f} | - | - | {r['spmn_nodes']} | - | "
                         f"{r['spmn_ll']:.4f} | - | - | - |")
            continue
        lines.append(f"| {r['data']} | {r['spmn_s']:.3f} | {r['spflow_s']:.2f} | "
                     f"{r['speedup']:.0f}x | {r['spmn_nodes']} | {r['spflow_nodes']} | "
                     f"{r['spmn_ll']:.4f} | {r['spflow_ll']:.4f} | {r['spflow_zero_rows']} | "
                     f"{r['spmn_ll_same_rows']:.4f} / {r['spflow_ll_finite']:.4f} |")
    refs = [f"{r['data']}: true model {r['true_ll']:.4f}" for r in rows if r["true_ll"]]
    return "\n".join(lines) + ("\n\nHeld-out LL of the generating model: " + "; ".join(refs)
                               if refs else "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spflow-worker", nargs=2, metavar=("IN", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--spflow-python", default=SPFLOW_PYTHON)
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--only", nargs="*", default=None, help="'synthetic' and/or problem names")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--spflow-repeats", type=int, default=1)
    ap.add_argument("--markdown", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.spflow_worker:
        spflow_worker(*args.spflow_worker)
        return 0
    rows = []
    for name, train, test, cards, ref in datasets(args.only, args.data):
        ours = run_spmn(train, test, cards, args.repeats)
        theirs = run_spflow(args.spflow_python, train, test, cards, args.spflow_repeats)
        rows.append(compare(name, ours, theirs, ref))
        print(table(rows[-1:]).splitlines()[2], flush=True)
    text = table(rows)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(text + "\n")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
