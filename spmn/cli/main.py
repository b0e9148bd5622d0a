"""The ``spmn`` command line; ``spmn COMMAND --help`` documents each command and option.

Failures print one line on stderr and exit 1 (``--debug`` shows the traceback). ``--json``
prints machine-readable results. A closed pipe (``spmn solve m.json | head -1``) ends quietly
with status 141, as a tool killed by SIGPIPE does. The commands are in :mod:`.commands`.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from ..errors import SpmnError
from . import commands as cmd
from .commands import PARTIAL_ORDER_RULE, parse_partial_order, read_data

__all__ = ["build_parser", "main", "parse_partial_order", "read_data"]

#: Exit status after a closed pipe: 128 + SIGPIPE, what a shell reports for ``yes | head``.
EXIT_BROKEN_PIPE = 141

ENVS = ("a Gymnasium toy-text id (FrozenLake-v1, FrozenLake8x8-v1, Taxi-v4, CliffWalking-v1, "
        "CliffWalkingSlippery-v1; needs gymnasium), random-mdp:S,A,seed (a random MDP with S "
        "states and A actions), or lqr:double-integrator (a linear-Gaussian system)")


def build_parser() -> argparse.ArgumentParser:
    """The ``spmn`` parser: one subcommand per ``cmd_*`` function, every option with help."""
    p = argparse.ArgumentParser(prog="spmn", description="Exact, interpretable world models "
                                "and decision circuits (sum-product-max networks).")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def add(name, func, help_, desc=None):
        sp = sub.add_parser(name, help=help_, description=desc or help_)
        sp.add_argument("--json", action="store_true",
                        help="print the results as JSON instead of text")
        sp.set_defaults(func=func)
        return sp

    def gamma(sp, extra=""):
        sp.add_argument("--gamma", type=float, default=0.95,
                        help=f"discount factor per step, in [0, 1){extra} (default %(default)s)")

    d = add("demo", cmd.cmd_demo, "learn FrozenLake from random logs, solve it exactly, verify",
            "Log a uniformly random policy on FrozenLake 4x4 slippery, learn the world model, "
            "print what it learned, solve it exactly and compare with the true MDP; save the "
            "model and a PNG plot (the plot needs matplotlib: pip install \"spmn[plot]\").")
    d.add_argument("--transitions", type=int, default=100_000, metavar="N",
                   help="logged transitions of the random policy to learn from "
                        "(default %(default)s; 20000 runs in seconds)")
    gamma(d)
    d.add_argument("--seed", type=int, default=0,
                   help="seed of the random-policy logs (default %(default)s)")
    d.add_argument("--out", default="spmn-demo", metavar="DIR",
                   help="folder for the model (frozenlake_model.json) and the plot "
                        "(frozenlake_values.png) (default %(default)s)")

    le = add("learn", cmd.cmd_learn, "learn a world model from logged transitions",
             "Learn p(s', r | s, a) from DATA (CSV/TSV/npz/parquet) with columns for the states, "
             "actions, reward, <state>_next and (optionally) the terminated flag.")
    le.add_argument("data", help="logged transitions: CSV/TSV with a header row, .npz or "
                                 ".parquet; one column per state, action, the reward, "
                                 "<state>_next per state and optionally the terminated flag")
    le.add_argument("--states", required=True,
                    help="comma-separated state columns (integer codes 0..k-1, k read from "
                         "the data), e.g. s or x,y")
    le.add_argument("--actions", required=True,
                    help="comma-separated action columns (integer codes 0..k-1)")
    le.add_argument("--reward", required=True, help="the reward column (a number per row)")
    le.add_argument("--terminated", default=None, metavar="COLUMN",
                    help="0/1 (or boolean) column, 1 where the episode ended with that "
                         "transition (default: none, no transition ends an episode)")
    le.add_argument("--structure", choices=["learn", "full"], default="learn",
                    help="learn: split regions by G-tests at --split-p; full: one region per "
                         "observed joint state (default %(default)s)")
    le.add_argument("--split-p", type=float, default=1e-3, metavar="P",
                    help="significance level of the G-test that splits a region; smaller "
                         "gives fewer regions (default %(default)s)")
    le.add_argument("-o", "--output", required=True, metavar="MODEL",
                    help="model file to write (JSON, with an .npz beside it for large arrays)")

    ld = add("learn-decisions", cmd.cmd_learn_decisions, "learn an SPMN for a one-shot decision problem",
             "Learn a sum-product-max network from decision data with LearnSPMN. The partial "
             f"order: {PARTIAL_ORDER_RULE}.")
    ld.add_argument("data", help="decision data: CSV/TSV with a header row, .npz or .parquet; "
                                 "one row per observed problem, one column per variable")
    ld.add_argument("--partial-order", required=True, metavar="ORDER",
                    help=f'{PARTIAL_ORDER_RULE}; e.g. "A;D;B,U": A is known when decision D '
                         "is taken, B and the utility U come after it")
    ld.add_argument("--decisions", required=True,
                    help="comma-separated decision columns (integer codes 0..k-1)")
    ld.add_argument("--utility", required=True, metavar="COLUMN",
                    help="the utility column (a number per row, maximized in expectation); "
                         "--partial-order must list it after the last decision")
    ld.add_argument("--seed", type=int, default=0,
                    help="seed of the learner's random steps, so the same data give the same "
                         "circuit (default %(default)s)")
    ld.add_argument("-o", "--output", required=True, metavar="MODEL",
                    help="circuit file to write (JSON)")

    so = add("solve", cmd.cmd_solve, "solve a saved model: values and policy",
             "Solve a saved world model exactly: values and greedy action per region, and per "
             "state (state -> region -> value -> action) for a tabular model with at most "
             "--max-states states; or print a decision circuit's MEU and first decision.")
    so.add_argument("model", help="model file written by spmn learn, spmn learn-decisions or "
                                  "spmn.save (JSON)")
    gamma(so, " without --horizon, [0, 1] with it")
    so.add_argument("--horizon", type=int, default=None, metavar="H",
                    help="solve for H steps to go and print step 0 (default: the infinite "
                         "discounted horizon)")
    so.add_argument("--method", choices=["pi", "vi"], default="pi",
                    help="pi: policy iteration, exact; vi: value iteration to --tol; "
                         "ignored with --horizon (default %(default)s)")
    so.add_argument("--tol", type=float, default=1e-8,
                    help="stopping tolerance of value iteration: the values are within TOL "
                         "of the exact ones (default %(default)s)")
    so.add_argument("--max-states", type=int, default=10_000, metavar="N",
                    help="list every state when a tabular model has at most N (the product "
                         "of its state cardinalities); 0: regions only (default %(default)s)")

    ve = add("verify", cmd.cmd_verify, "learn from generated logs and compare with the exact solution",
             f"ENV: {ENVS}. Exit 2 when the error exceeds --tol.")
    ve.add_argument("env", help=ENVS)
    ve.add_argument("--transitions", type=int, default=100_000, metavar="N",
                    help="transitions to generate and learn from (default %(default)s)")
    gamma(ve)
    ve.add_argument("--seed", type=int, default=0,
                    help="seed of the generated logs (default %(default)s)")
    ve.add_argument("--tol", type=float, default=0.01,
                    help="largest accepted error: |V(start) - V*(start)| for a tabular ENV, "
                         "the relative error of V(x0) for lqr:; exit 2 above it "
                         "(default %(default)s)")

    sh = add("show", cmd.cmd_show, "summarize a saved model",
             "Print a saved model's variables, partial order, what it learned and its circuit.")
    sh.add_argument("model", help="model file written by spmn.save (JSON)")
    sh.add_argument("--dot", metavar="FILE", help="write the circuit as Graphviz DOT to FILE")
    sh.add_argument("--png", metavar="FILE",
                    help="draw the circuit to FILE (needs matplotlib: pip install \"spmn[plot]\")")

    be = add("bench", cmd.cmd_bench, "quick benchmarks against the peers that are installed",
             "A quick version of benchmarks/: per benchmark its size, our seconds, the peer's "
             "and the ratio peer / spmn (> 1: spmn faster), and why where the peer wins.")
    be.add_argument("--full", action="store_true",
                    help="larger sizes and more runs: S=2000 and 7 runs instead of S=500 and 3")
    return p


def _quiet_broken_pipe() -> int:
    """After the reader of stdout went away: point stdout at devnull so that the flush at
    exit cannot fail again (Python docs, "Note on SIGPIPE"), and report 141."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is no real file (a test's capture)
        pass
    finally:
        os.close(devnull)
    return EXIT_BROKEN_PIPE


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit status (0 success, 1 error, 2 verify failed, 141
    the reader of stdout went away)."""
    try:
        return _run(argv)
    except BrokenPipeError:
        return _quiet_broken_pipe()


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        raise
    except (SpmnError, OSError, ValueError, TypeError) as exc:
        if args.debug:
            raise
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"spmn {args.command}: error: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
