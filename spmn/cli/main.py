"""The ``spmn`` command line; ``spmn COMMAND --help`` documents each command.

Failures print one line on stderr and exit 1 (``--debug`` shows the traceback). ``--json``
prints machine-readable results.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import DataError, SpmnError


def _emit(args, obj: dict, text: str) -> None:
    print(json.dumps(obj, indent=1, default=_jsonable) if args.json else text)


def _jsonable(x: Any):
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"not JSON serializable: {type(x).__name__}")


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise DataError(f"expected comma-separated names, got {text!r}")
    return names


def read_data(path: str) -> dict[str, np.ndarray]:
    """Columns of a CSV/TSV (any line ending), npz or parquet (pyarrow) file."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"data file {path} does not exist")
    if p.suffix == ".npz":
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    if p.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise DataError("reading parquet needs pyarrow (pip install pyarrow)") from None
        t = pq.read_table(p)
        return {n: t.column(n).to_numpy() for n in t.column_names}
    from ..data import read_table

    return read_table(p)


# ---------------------------------------------------------------------------- commands
def cmd_demo(args) -> int:
    from .demo import format_demo, run_demo

    res = run_demo(args.transitions, args.gamma, args.seed, args.out, progress=not args.json)
    _emit(args, {"transitions": res.n_transitions, "regions": res.n_regions,
                 "v_start": res.v_start, "v_star_start": res.v_star_start,
                 "max_error": res.max_error, "greedy_true_start": res.greedy_true_start,
                 "values": res.values, "policy": res.policy, "model": res.model_path,
                 "plot": res.plot_path, "timings": res.timings}, format_demo(res))
    return 0


def cmd_learn(args) -> int:
    from ..io import save
    from ..worldmodels.tabular.model import WorldModel

    data = read_data(args.data)
    model = WorldModel(_names(args.states), _names(args.actions), args.reward, args.terminated,
                       structure=args.structure, split_p=args.split_p,
                       progress=not args.json).fit(data)
    save(model, args.output)
    _emit(args, {"model": args.output, "regions": model.n_regions_,
                 "transitions": model.n_transitions_,
                 "explain": model.explain().parents},
          f"learned a world model with {model.n_regions_} regions from "
          f"{model.n_transitions_:,} transitions; saved to {args.output}\n{model.explain()}")
    return 0


def parse_partial_order(text: str) -> list[list[str]]:
    """``"A;B,C;D"`` -> ``[["A"], ["B", "C"], ["D"]]``."""
    sets = [[n.strip() for n in part.split(",") if n.strip()] for part in text.split(";")]
    if not text.strip() or any(not s for s in sets):
        raise DataError(f"malformed partial order {text!r}: expected sets separated by ';' "
                        "with names separated by ',' (e.g. \"A;B,C;D\")")
    return sets


def cmd_learn_decisions(args) -> int:
    from ..io import save
    from ..learn import learn_spmn

    order = parse_partial_order(args.partial_order)
    data = read_data(args.data)
    c = learn_spmn(data, order, _names(args.decisions), args.utility, seed=args.seed,
                   progress=not args.json)
    save(c, args.output)
    meu, pol = c.meu(), c.policy()
    _emit(args, {"model": args.output, "meu": meu, "policy": {c.decisions[0]: pol},
                 "summary": c.summary().to_dict()},
          f"learned an SPMN: MEU = {meu:.6g}, first decision {c.decisions[0]} = {pol}; "
          f"saved to {args.output}\n{c.summary()}")
    return 0


def _circuit_of(model: Any):
    """The circuit of any model kind: the model itself, its ``circuit_`` or its inner world
    model's (so a new kind needs no edit here)."""
    if hasattr(model, "meu") and hasattr(model, "schema"):
        return model
    if getattr(model, "circuit_", None) is not None:
        return model.circuit_
    inner = getattr(model, "world_model_", None)
    if inner is not None:
        return _circuit_of(inner)
    raise DataError(f"a {type(model).__name__} holds no circuit to show")


def cmd_solve(args) -> int:
    from ..io import load

    model = load(args.model)
    if not hasattr(model, "solve"):  # a decision circuit: its MEU and first decision
        meu = model.meu()
        _emit(args, {"meu": meu, "policy": {d: model.policy(decision=d) for d in model.decisions[:1]}},
              f"MEU = {meu:.6g}; first decision {model.decisions[0]} = {model.policy()}")
        return 0
    method = {"pi": "policy_iteration", "vi": "value_iteration"}[args.method]
    kw: dict[str, Any] = {"method": method, "tol": args.tol}
    if args.horizon is not None:
        kw["horizon"] = args.horizon
    try:
        sol = model.solve(args.gamma, **kw)
    except TypeError as exc:
        raise DataError(f"a {type(model).__name__} cannot be solved with these options "
                        f"({exc})") from None
    V = np.asarray(sol.values)
    V = V[0] if args.horizon is not None and V.ndim > 1 else V
    head = f"gamma {args.gamma}, {sol.iterations} iterations, residual {sol.residual:.2e}"
    result = getattr(sol, "result", None)
    if result is None:  # no regions: the value's representation as it is
        _emit(args, {"values": V, "iterations": sol.iterations, "residual": sol.residual,
                     "gamma": args.gamma, "horizon": args.horizon},
              f"values:\n{np.array2string(V, precision=8)}\n{head}")
        return 0
    P = result.policy[0] if args.horizon is not None else result.policy
    lines = [f"{'region':>6} {'value':>14} {'action':>7}"]
    lines += [f"{k:>6} {V[k]:>14.8f} {int(P[k]):>7}" for k in range(V.shape[0])]
    lines.append(head)
    _emit(args, {"values": V, "policy": P, "iterations": sol.iterations,
                 "residual": sol.residual, "gamma": args.gamma, "horizon": args.horizon},
          "\n".join(lines))
    return 0


def cmd_verify(args) -> int:
    from .verify import verify

    report = verify(args.env, transitions=args.transitions, gamma=args.gamma, seed=args.seed,
                    tol=args.tol, progress=not args.json)
    _emit(args, report, "\n".join(f"{k}: {v}" for k, v in report.items() if k != "passed")
          + f"\n{'PASSED' if report['passed'] else 'FAILED'} (tolerance {args.tol})")
    if not report["passed"]:
        print(f"spmn verify: error: {report['failure']}", file=sys.stderr)
    return 0 if report["passed"] else 2


def cmd_show(args) -> int:
    from ..io import known_kinds, load

    model = load(args.model)
    circuit = _circuit_of(model)
    is_circuit = circuit is model
    summary = circuit.summary()
    if args.dot:
        circuit.to_dot(args.dot)
    if args.png:
        from ..plots import circuit as draw

        draw(circuit, path=args.png)
    v = circuit.schema
    kind = next((k for k, cls in known_kinds().items() if type(model) is cls),
                type(model).__name__).replace("_", " ")
    text = [f"model: {args.model} ({kind})",
            "variables: " + ", ".join(f"{x.name} ({x.role}, " + (f"k={x.k})" if x.is_discrete
                                                                  else "continuous)") for x in v)]
    if v.partial_order:
        text.append("partial order: " + " < ".join("{" + ", ".join(s) + "}" for s in v.partial_order))
    explanation = model.explain() if hasattr(model, "explain") and not is_circuit else None
    if explanation is not None:
        text.append(str(explanation))
    text.append(str(summary))
    text += [f"DOT written to {args.dot}"] * bool(args.dot) + [f"PNG written to {args.png}"] * bool(args.png)
    _emit(args, {"model": args.model, "kind": kind, "summary": summary.to_dict(),
                 "variables": v.to_dict(),
                 "explain": getattr(explanation, "parents", None)}, "\n".join(text))
    return 0


def cmd_bench(args) -> int:
    from .quickbench import run

    rows = run(quick=not args.full)
    _emit(args, {"rows": rows}, "\n".join(
        [f"{'benchmark':<44}{'spmn':>12}{'peer':>12}{'ratio':>8}  peer"] +
        [f"{r['name']:<44}{r['ours']:>12.4g}{(r['peer'] if r['peer'] is not None else float('nan')):>12.4g}"
         f"{(r['ratio'] if r['ratio'] is not None else float('nan')):>8.1f}  {r['peer_name']}"
         for r in rows]))
    return 0


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spmn", description="Exact, interpretable world models "
                                "and decision circuits (sum-product-max networks).")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def add(name, func, help_, desc=None, json_=True):
        sp = sub.add_parser(name, help=help_, description=desc or help_)
        if json_:
            sp.add_argument("--json", action="store_true", help="machine-readable output")
        sp.set_defaults(func=func)
        return sp

    d = add("demo", cmd_demo, "learn FrozenLake from random logs, solve it exactly, verify",
            "Log a uniformly random policy on FrozenLake 4x4 slippery, learn the world model, "
            "print what it learned, solve it exactly and compare with the true MDP; save the "
            "model and a PNG plot.")
    d.add_argument("--transitions", type=int, default=100_000, help="logged transitions")
    d.add_argument("--gamma", type=float, default=0.95)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--out", default="spmn-demo", help="folder for the model and the plot")

    le = add("learn", cmd_learn, "learn a world model from logged transitions",
             "Learn p(s', r | s, a) from DATA (CSV/TSV/npz/parquet) with columns for the states, "
             "actions, reward, <state>_next and (optionally) the terminated flag.")
    le.add_argument("data")
    le.add_argument("--states", required=True, help="comma-separated state columns")
    le.add_argument("--actions", required=True, help="comma-separated action columns")
    le.add_argument("--reward", required=True)
    le.add_argument("--terminated", default=None)
    le.add_argument("--structure", choices=["learn", "full"], default="learn")
    le.add_argument("--split-p", type=float, default=1e-3, help="G-test level of a region split")
    le.add_argument("-o", "--output", required=True, help="model file (JSON)")

    ld = add("learn-decisions", cmd_learn_decisions, "learn an SPMN for a one-shot decision problem",
             "Learn a sum-product-max network from decision data with LearnSPMN.")
    ld.add_argument("data")
    ld.add_argument("--partial-order", required=True, help='information sets, e.g. "A;B,C;D"')
    ld.add_argument("--decisions", required=True, help="comma-separated decision columns")
    ld.add_argument("--utility", required=True)
    ld.add_argument("--seed", type=int, default=0)
    ld.add_argument("-o", "--output", required=True)

    so = add("solve", cmd_solve, "solve a saved model: values and policy",
             "Solve a saved world model exactly (values and policy per region), or print a "
             "decision circuit's MEU and first decision.")
    so.add_argument("model")
    so.add_argument("--gamma", type=float, default=0.95)
    so.add_argument("--horizon", type=int, default=None)
    so.add_argument("--method", choices=["pi", "vi"], default="pi")
    so.add_argument("--tol", type=float, default=1e-8)

    ve = add("verify", cmd_verify, "learn from generated logs and compare with the exact solution",
             "ENV: a Gymnasium toy-text id (FrozenLake-v1, FrozenLake8x8-v1, Taxi-v4, "
             "CliffWalking-v1, ...), random-mdp:S,A,seed, or lqr:double-integrator. Exit 2 when "
             "the error exceeds --tol.")
    ve.add_argument("env")
    ve.add_argument("--transitions", type=int, default=100_000)
    ve.add_argument("--gamma", type=float, default=0.95)
    ve.add_argument("--seed", type=int, default=0)
    ve.add_argument("--tol", type=float, default=0.01)

    sh = add("show", cmd_show, "summarize a saved model",
             "Print a saved model's variables, partial order, what it learned and its circuit.")
    sh.add_argument("model", help="model file written by spmn.save (JSON)")
    sh.add_argument("--dot", metavar="FILE", help="write the circuit as Graphviz DOT")
    sh.add_argument("--png", metavar="FILE", help="draw the circuit (matplotlib)")

    be = add("bench", cmd_bench, "quick benchmarks against the peers that are installed",
             "A quick version of benchmarks/: our figure, the peer's and the ratio.")
    be.add_argument("--full", action="store_true", help="larger sizes")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (SpmnError, OSError, ValueError, TypeError) as exc:
        if args.debug:
            raise
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"spmn {args.command}: error: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
