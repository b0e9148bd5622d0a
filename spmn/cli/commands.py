"""The ``spmn`` commands: one ``cmd_*`` function per command, called with the parsed
arguments of :func:`spmn.cli.main.build_parser`; each prints text or ``--json`` and returns
the exit status. Errors are raised (``SpmnError`` and friends) and reported by ``main``."""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CoverageWarning, DataError

#: What ``--partial-order`` must hold, said in its help and in its errors.
PARTIAL_ORDER_RULE = ("information sets earliest first, separated by ';', names in a set by "
                      "','; list every column of DATA once, each decision in a set of "
                      "decisions only, and the utility after the last decision (usually the "
                      "last set)")


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


def parse_partial_order(text: str) -> list[list[str]]:
    """``"A;B,C;D"`` -> ``[["A"], ["B", "C"], ["D"]]``."""
    sets = [[n.strip() for n in part.split(",") if n.strip()] for part in text.split(";")]
    if not text.strip() or any(not s for s in sets):
        raise DataError(f"malformed partial order {text!r}: expected sets separated by ';' "
                        "with names separated by ',' (e.g. \"A;B,C;D\")")
    return sets


def check_partial_order(order: list[list[str]], text: str, decisions: list[str],
                        utility: str) -> None:
    """A ``DataError`` naming the decision or utility that ``order`` leaves out."""
    listed = {n for s in order for n in s}
    missing = [(r, n) for r, n in [*(("decision", d) for d in decisions), ("utility", utility)]
               if n not in listed]
    if not missing:
        return
    role, name = missing[0]
    hint = f' (e.g. --partial-order "{text};{utility}")' if missing == [("utility", utility)] \
        else ""
    raise DataError(f"--partial-order {text!r} does not list the {role} {name!r}{hint}: "
                    f"{PARTIAL_ORDER_RULE}")


# ---------------------------------------------------------------------------- commands
def cmd_demo(args) -> int:
    from .demo import format_demo, run_demo

    res = run_demo(args.transitions, args.gamma, args.seed, args.out, progress=not args.json)
    _emit(args, {"transitions": res.n_transitions, "regions": res.n_regions,
                 "v_start": res.v_start, "v_star_start": res.v_star_start,
                 "max_error": res.max_error, "greedy_true_start": res.greedy_true_start,
                 "values": res.values, "policy": res.policy, "model": res.model_path,
                 "plot": res.plot_path, "plot_skipped": res.plot_skipped,
                 "timings": res.timings}, format_demo(res))
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


def cmd_learn_decisions(args) -> int:
    from ..io import save
    from ..learn import learn_spmn

    order = parse_partial_order(args.partial_order)
    decisions = _names(args.decisions)
    check_partial_order(order, args.partial_order, decisions, args.utility)
    data = read_data(args.data)
    c = learn_spmn(data, order, decisions, args.utility, seed=args.seed,
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


def _tabular_of(sol: Any):
    """The tabular model behind a solution (state names, cardinalities, region tree), if any."""
    m = getattr(sol, "model", None)
    return m if all(hasattr(m, a) for a in ("state_names_", "state_cards_", "tree_")) else None


def per_state(sol: Any, max_states: int) -> tuple[list[dict] | None, int]:
    """Per-state ``{"state", "region", "value", "action", "terminal", "logged"}`` at step 0
    for every state of the tabular model behind ``sol`` (None when there are more than
    ``max_states``), and the number of states. ``logged`` is None when the file does not
    record the logged states; a state never logged is answered by its region (the model's
    documented fallback), so the table marks it instead of warning about it."""
    m = _tabular_of(sol)
    names, cards = list(m.state_names_), [int(k) for k in m.state_cards_]
    n = int(np.prod(cards, dtype=object))
    if n > max_states:
        return None, n
    S = np.stack(np.unravel_index(np.arange(n), cards), axis=1).astype(np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CoverageWarning)
        value = np.atleast_1d(np.asarray(sol.value(S), float))
        action = np.asarray(sol.policy(S)).reshape(n, -1)
    region = m.tree_.route(S)
    terminal, seen = (_rows_in(getattr(m, a, None), cards, n)
                      for a in ("terminal_states_", "seen_states_"))
    terminal = np.zeros(n, bool) if terminal is None else terminal
    logged = None if seen is None else seen | terminal
    anames = list(getattr(m, "action_names_", ["action"]))
    rows = []
    for i in range(n):
        a = int(action[i, 0]) if action.shape[1] == 1 else \
            {nm: int(x) for nm, x in zip(anames, action[i])}
        rows.append({"state": {nm: int(x) for nm, x in zip(names, S[i])},
                     "region": int(region[i]), "value": float(value[i]), "action": a,
                     "terminal": bool(terminal[i]),
                     "logged": None if logged is None else bool(logged[i])})
    return rows, n


def _rows_in(T: Any, cards: list[int], n: int) -> np.ndarray | None:
    """Mask over the ``n`` enumerated states of those listed in the rows of ``T``."""
    if T is None:
        return None
    T = np.asarray(T, np.int64).reshape(-1, len(cards))
    mask = np.zeros(n, bool)
    mask[np.ravel_multi_index(T.T, cards)] = True
    return mask


def _state_text(rows: list[dict], names: list[str]) -> list[str]:
    w = [max(len(nm), 3) for nm in names]
    head = " ".join(f"{nm:>{k}}" for nm, k in zip(names, w))
    lines = [f"{head} {'region':>6} {'value':>14} {'action':>7}"]
    for r in rows:
        a = r["action"]
        act = "end" if r["terminal"] else (str(a) if isinstance(a, int) else
                                           ",".join(f"{k}={v}" for k, v in a.items()))
        st = " ".join(f"{r['state'][nm]:>{k}}" for nm, k in zip(names, w))
        lines.append(f"{st} {r['region']:>6} {r['value']:>14.8f} {act:>7}"
                     + ("  *" if r["logged"] is False else ""))
    unseen = sum(r["logged"] is False for r in rows)
    if unseen:
        lines.append(f"*: {unseen:,} of {len(rows):,} states never logged; each is answered "
                     "by the region it falls in")
    return lines


def cmd_solve(args) -> int:
    from ..io import load

    if args.max_states < 0:
        raise DataError(f"--max-states must be >= 0, got {args.max_states}")
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
    step = " at step 0" if args.horizon is not None else ""
    lines = [f"per region{step}:", f"{'region':>6} {'value':>14} {'action':>7}"]
    lines += [f"{k:>6} {V[k]:>14.8f} {int(P[k]):>7}" for k in range(V.shape[0])]
    doc = {"values": V, "policy": P, "iterations": sol.iterations, "residual": sol.residual,
           "gamma": args.gamma, "horizon": args.horizon}
    tab = _tabular_of(sol)
    if tab is not None:
        names = list(tab.state_names_)
        rows, n = per_state(sol, args.max_states)
        note = None if rows is not None else (
            f"per-state table omitted: {n:,} states exceed --max-states {args.max_states}; "
            f"rerun with --max-states {n} to list them (text or --json)")
        doc.update({"step": 0 if args.horizon is not None else None, "state_names": names,
                    "n_states": n, "states": rows, "states_note": note})
        lines.append("")
        if rows is None:
            lines.append(note)
        else:
            lines.append(f"per state{step}: its region, value and greedy action (end: a "
                         "terminal state, value 0 whatever its region; *: never logged)")
            lines += _state_text(rows, names)
    lines.append(head)
    _emit(args, doc, "\n".join(lines))
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
    diagnostics = getattr(model, "diagnostics_", None)  # an encoded model's code health
    if diagnostics:
        text.append("encoder diagnostics: " + ", ".join(
            f"{k}={v}" for k, v in diagnostics.items() if k != "frames_per_code")
            + (f"\nframes per code: {diagnostics['frames_per_code']}"
               if diagnostics.get("frames_per_code") else ""))
    text.append(str(summary))
    text += [f"DOT written to {args.dot}"] * bool(args.dot) + [f"PNG written to {args.png}"] * bool(args.png)
    _emit(args, {"model": args.model, "kind": kind, "summary": summary.to_dict(),
                 "variables": v.to_dict(),
                 "explain": getattr(explanation, "parents", None),
                 **({"diagnostics": diagnostics} if diagnostics else {})}, "\n".join(text))
    return 0


def cmd_bench(args) -> int:
    from .quickbench import format_rows, run

    rows = run(quick=not args.full)
    _emit(args, {"rows": rows}, format_rows(rows))
    return 0
