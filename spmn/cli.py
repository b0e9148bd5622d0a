"""The ``spmn`` command line: ``spmn demo``, ``spmn show MODEL``; ``--help`` on each.

Failures print one line on stderr and exit non-zero (``--debug`` shows the traceback).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from .errors import SpmnError


def _cmd_demo(args: argparse.Namespace) -> int:
    from .examples import EXPORT_ECONOMY_P, EXPORT_PROFIT, export_textiles

    circuit = export_textiles()
    schema = circuit.schema
    d = schema["Export_Decision"]
    meu = circuit.meu()
    best = circuit.policy()
    import numpy as np

    X = np.full((d.k, len(schema)), np.nan)
    X[:, schema.index("Export_Decision")] = np.arange(d.k)
    eu = circuit.meu(X)
    if args.json:
        print(json.dumps({"problem": "Export_Textiles", "meu": meu, "policy": {d.name: d.labels[best]},
                          "expected_utility_by_decision": {d.labels[j]: float(eu[j]) for j in range(d.k)},
                          "summary": circuit.summary().to_dict()}, indent=1))
        return 0
    print("spmn demo: the Export Textiles decision problem (Melibari et al. 2016), hand-built")
    print(f"  decide when to export ({', '.join(d.labels)}) before the economy is known;")
    print(f"  P(economy) = {dict(zip(schema['Economical_State'].labels, EXPORT_ECONOMY_P))}")
    print(f"  profit table U[economy][decision] = {EXPORT_PROFIT}")
    print()
    for j in range(d.k):
        mark = "  <- best" if j == best else ""
        print(f"  E[profit | {d.name}={d.labels[j]:<13}] = {eu[j]:>12,.1f}{mark}")
    print(f"\nMEU = {meu:,.1f}   policy: {d.name} = {d.labels[best]}\n")
    print(circuit.summary())
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from .io import load

    model = load(args.model)
    summary = model.summary()
    if args.dot:
        model.to_dot(args.dot)
    if args.json:
        print(json.dumps({"model": args.model, "summary": summary.to_dict(),
                          "variables": model.schema.to_dict()}, indent=1))
    else:
        print(f"model: {args.model}")
        print(f"variables: {', '.join(f'{v.name} ({v.role}, ' + (f'k={v.k}' if v.is_discrete else 'continuous') + ')' for v in model.schema)}")
        if model.schema.partial_order:
            print("partial order: " + " < ".join("{" + ", ".join(s) + "}" for s in model.schema.partial_order))
        print(summary)
        if args.dot:
            print(f"DOT written to {args.dot}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spmn", description="Exact, interpretable world models "
                                "and decision circuits (sum-product-max networks).")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="solve a hand-built decision problem and print MEU, policy, circuit",
                          description="Solve the Export Textiles decision problem exactly: MEU, "
                          "the optimal decision, and the circuit summary.")
    demo.add_argument("--json", action="store_true", help="machine-readable output")
    demo.set_defaults(func=_cmd_demo)
    show = sub.add_parser("show", help="summarize a saved model", description="Print a saved "
                          "model's variables, partial order and circuit summary.")
    show.add_argument("model", help="model file written by spmn.save (JSON)")
    show.add_argument("--dot", metavar="FILE", help="also write the circuit as Graphviz DOT")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(func=_cmd_show)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (SpmnError, OSError) as exc:
        if args.debug:
            raise
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"spmn {args.command}: error: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
