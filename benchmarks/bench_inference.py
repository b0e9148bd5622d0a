"""Throughput of the inference kernels: spmn-cython, spmn-numba, SPFlow 0.0.48, the torch
SPFlow 1.x, plain numpy; and the latency of small calls.

    python benchmarks/bench_inference.py [--rows 1000,10000,100000] [--threads 2]
        [--spflow-python /work/venv-spflow/bin/python]
        [--spflow1-python /work/venv-spflow1/bin/python] [--quick]
    python benchmarks/bench_inference.py --curve [--plot benchmarks/latency_curve.png]
    python benchmarks/bench_inference.py --one-row     # the one-row latencies only

``--curve``: rows/s of ``circuit.log_likelihood`` (the user's call: validation included) at
batches of 1 to 100,000 rows on circuits of 83, ~3k and 36k edges, for both compiled backends
and the reference backend, default threads; then the median latency of one-row
``log_likelihood``, ``meu`` and ``policy`` calls (``_bench_circuits.small_spn``,
``small_spmn``) over thousands of calls. The small circuits are learned once and kept in the
``--cache`` folder (spmn.io), so later runs time the same circuits; the 1-min load average is
printed at the start, after the curve, beside each one-row line and at the end.

Circuits: an SPN learned by SPFlow (LearnSPN, ``learn_parametric``) on 20,000 x 20 categorical
rows, converted to spmn; a random layered circuit of 9,605 nodes / 36,092 edges (and the same
with utility leaves for MEU). Metric: edges x rows / second of the steady state (median of
repeats); the first call in the process is reported apart, and so is the peak memory the call
allocates (tracemalloc: numpy buffers incl. the Cython work arrays; for Numba, whose work arrays
are allocated inside the compiled code, the size of those arrays is added). SPFlow runs in its
own venv through a subprocess (``_spflow_side.py``). Also reported: Cython's first-call latency
in a fresh process and Numba's compile time (empty cache) and cached first call.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _bench_circuits import (  # noqa: E402
    NumpyLayers,
    from_exchange,
    layered_circuit,
    random_rows,
    small_spmn,
    small_spn,
    to_exchange,
)
from _common import per_call  # noqa: E402

from spmn import kernels  # noqa: E402
from spmn.kernels._common import prepare  # noqa: E402


def measure(fn, reps: int):
    """(first-call seconds, steady median seconds, peak traced bytes of the first call)."""
    tracemalloc.start()
    t = time.perf_counter()
    fn()
    first = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return first, float(np.median(times)) if times else first, peak


def numba_work_bytes(flat, rows, threads, cu=True, down=False):
    """Bytes of the work arrays Numba's run() allocates (not seen by tracemalloc)."""
    R = prepare(flat).chunk
    # L (or the fast path's p), U, the scaled pass's exponents (not for MPE), rows, MPE marks
    per = (flat.n_nodes * R * 8 * (1 + cu + (not down)) + (flat.n_vars + 7) * R * 8
           + flat.n_vars * R * 4  # the int32 codes of the chunk
           + flat.n_nodes * R * down)
    return threads * per


def spflow(python, exchange_path, rows, command="bench"):
    """SPFlow's timings ({rows: {...}}) from ``_spflow_side.py command`` in its own venv."""
    if not python or not os.path.exists(python) or not rows:
        return {}
    proc = subprocess.run([python, os.path.join(HERE, "_spflow_side.py"), command, exchange_path,
                           *map(str, rows)], capture_output=True, text=True, check=False)
    if proc.returncode:
        print("SPFlow failed:", proc.stderr[-2000:], file=sys.stderr)
        return {}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def learned_spn(python, cache):
    path = os.path.join(cache, "spflow_spn.json")
    if not os.path.exists(path):
        subprocess.run([python, os.path.join(HERE, "_spflow_side.py"), "learn", path], check=True)
    with open(path) as fh:
        return from_exchange(json.load(fh)), path


def fresh_process_latencies(threads):
    """Cython import + first call in a new process; Numba compile (empty cache) and cached."""
    code = ("import time, numpy as np; t0 = time.perf_counter(); import sys; "
            f"sys.path.insert(0, {HERE!r}); from _bench_circuits import layered_circuit; "
            "flat = layered_circuit(reps=1).compile(); X = np.zeros((1000, flat.n_vars)); "
            "from spmn.kernels._common import prepare; prepare(flat); "
            "t = time.perf_counter(); import spmn.kernels.{0} as m; "
            f"m.log_likelihood(flat, X, threads={threads}); print(time.perf_counter() - t)")
    out = {}
    for name, env in (("cython first call (import + call)", {}),
                      ("numba first call, empty cache (compile)", {"NUMBA_CACHE_DIR": None}),
                      ("numba first call, cached", {"NUMBA_CACHE_DIR": "same"})):
        mod = "cython" if name.startswith("cython") else "numba"
        e = dict(os.environ)
        if env.get("NUMBA_CACHE_DIR") is None and "NUMBA_CACHE_DIR" in env:
            e["NUMBA_CACHE_DIR"] = out.setdefault("_dir", tempfile.mkdtemp(prefix="spmn-nb-"))
        elif env.get("NUMBA_CACHE_DIR") == "same":
            e["NUMBA_CACHE_DIR"] = out["_dir"]
        proc = subprocess.run([sys.executable, "-c", code.replace("{0}", mod)], env=e,
                              capture_output=True, text=True, check=False)
        out[name] = float(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None
    out.pop("_dir", None)
    return out


PEERS = (("SPFlow 0.0.48", "spflow_python", "bench"),
         ("SPFlow 1.1.0 torch", "spflow1_python", "bench1"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", default="1000,10000,100000")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--spflow-python", default="/work/venv-spflow/bin/python")
    ap.add_argument("--spflow1-python", default="/work/venv-spflow1/bin/python",
                    help="a venv with the torch SPFlow 1.x (spflow 1.1.0, CPU torch)")
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "spmn-bench"))
    ap.add_argument("--quick", action="store_true", help="fewer repeats, no fresh processes")
    ap.add_argument("--curve", action="store_true",
                    help="only the latency / throughput curve and the one-row latencies")
    ap.add_argument("--curve-rows", default="1,10,100,1000,10000,100000")
    ap.add_argument("--plot", default=None, help="write the curve as a PNG here")
    ap.add_argument("--one-row", action="store_true",
                    help="only the one-row latencies, in a process that has run nothing else")
    args = ap.parse_args()
    os.makedirs(args.cache, exist_ok=True)
    batches = [int(r) for r in args.rows.split(",")]
    T = args.threads
    built = [b for b in ("cython", "numba") if b in kernels.available()]
    print(f"load average at start: {os.getloadavg()}")

    if args.one_row:
        one_row_latency(cached(args.cache, "small_spn", small_spn),
                        cached(args.cache, "small_spmn", small_spmn), built, args.quick)
        print(f"load average at end: {os.getloadavg()}")
        return
    small = cached(args.cache, "small_spn", small_spn)
    if args.curve:
        circuits = [("learned SPN, 16 vars", small), ("random layered", layered_circuit())]
        if os.path.exists(args.spflow_python) or os.path.exists(
                os.path.join(args.cache, "spflow_spn.json")):
            circuits.insert(1, ("SPFlow-learned SPN", learned_spn(args.spflow_python,
                                                                   args.cache)[0]))
        else:  # the 3k-edge SPN is learned by SPFlow: without its venv the curve skips it
            print(f"no SPFlow venv at {args.spflow_python} and no cached SPN: the curve "
                  "skips the SPFlow-learned SPN")
        curve(circuits, [int(r) for r in args.curve_rows.split(",")], built, args.plot,
              args.quick)
        print(f"load average after the curve: {os.getloadavg()}")
        one_row_latency(small, cached(args.cache, "small_spmn", small_spmn), built, args.quick)
        print(f"load average at end: {os.getloadavg()}")
        return
    spn, spn_path = learned_spn(args.spflow_python, args.cache)
    small_path = os.path.join(args.cache, "small_spn.json")
    with open(small_path, "w") as fh:
        json.dump(to_exchange(small), fh)
    layered = layered_circuit()
    lay_path = os.path.join(args.cache, "layered.json")
    with open(lay_path, "w") as fh:
        json.dump(to_exchange(layered), fh)
    circuits = [("learned SPN, 16 vars", small, small_path, batches, batches),
                ("SPFlow-learned SPN", spn, spn_path, batches, batches),
                ("random layered", layered, lay_path, [b for b in batches if b <= 10_000],
                 [b for b in batches if b <= 1000])]
    rows_out = []
    agree = []
    for cname, circuit, path, spflow_batches, torch_batches in circuits:
        flat = circuit.compile()
        E = flat.n_edges
        peers = {name: spflow(getattr(args, attr), path,
                              spflow_batches if cmd == "bench" else torch_batches, cmd)
                 for name, attr, cmd in PEERS}
        npl = NumpyLayers(flat)
        for rows in batches:
            X = random_rows(flat, rows, seed=rows)
            reps = 1 if args.quick or rows * E > 4e9 else 3
            for impl in built:
                mod = kernels.get(impl)
                prepare(flat)  # per-circuit tables (cached): not part of a call
                first, steady, peak = measure(
                    lambda: mod.log_likelihood(flat, X, threads=T, progress=False), reps)
                if impl == "numba":
                    peak += numba_work_bytes(flat, rows, T, cu=False)
                rows_out.append((cname, flat, rows, f"spmn-{impl}", "log-likelihood", first,
                                 steady, peak))
            first, steady, peak = measure(lambda: npl.log_likelihood(X), 0 if rows * E > 1e9 else 1)
            rows_out.append((cname, flat, rows, "numpy layers", "log-likelihood", first,
                             steady if rows * E <= 1e9 else first, peak))
            ours = kernels.get(built[0]).log_likelihood(flat, X[:5], threads=1)
            for name, got in peers.items():
                if str(rows) in got:
                    r = got[str(rows)]
                    rows_out.append((cname, flat, rows, name, "log-likelihood",
                                     r["first_s"], r["steady_s"], r["peak_bytes"]))
                    agree.append((cname, rows, r.get("version", name),
                                  float(np.max(np.abs(np.array(r["ll_head"]) - ours)))))
    util = layered_circuit(utility=True).compile()
    for rows in batches:
        X = random_rows(util, rows, seed=rows)
        reps = 1 if args.quick or rows * util.n_edges > 4e9 else 3
        for impl in built:
            mod = kernels.get(impl)
            for pname, fn in (("MPE", lambda: mod.mpe(util, X, threads=T, progress=False)),
                              ("MEU", lambda: mod.meu(util, X, None, threads=T, progress=False))):
                first, steady, peak = measure(fn, reps)
                if impl == "numba":
                    peak += numba_work_bytes(util, rows, T, cu=pname == "MEU", down=pname == "MPE")
                rows_out.append(("layered + utility", util, rows, f"spmn-{impl}", pname, first,
                                 steady, peak))
    print_table(rows_out, T)
    print("\nSame rows on both sides: max |log p(peer) - log p(spmn)| over the first 5 rows")
    for cname, rows, version, err in agree:
        print(f"  {cname:22s} {rows:7d} {version:45s} {err:.1e}")
    if not args.quick:
        print("\nFresh-process latencies (seconds):")
        for k, v in fresh_process_latencies(T).items():
            print(f"  {k:45s} {v if v is None else round(v, 3)}")
    print(f"load average at end: {os.getloadavg()}")


def cached(cache: str, name: str, make):
    """The circuit shipped in ``benchmarks/circuits/`` (the 84-node SPN and 100-node SPMN the
    README's figures were taken on, learned before the learners' per-node random streams), else
    ``make()``'s, saved in the cache folder on first use and loaded from there after."""
    from spmn import io

    shipped = os.path.join(os.path.dirname(os.path.abspath(__file__)), "circuits",
                           f"{name}.spmn")  # the circuits the README's figures were taken on
    if os.path.exists(shipped):
        return io.load(shipped)
    path = os.path.join(cache, f"{name}.spmn")
    if os.path.exists(path):
        return io.load(path)
    c = make()
    io.save(c, path)
    return c


def median_call(fn, calls: int) -> float:
    """Median seconds of ``calls`` single calls of ``fn`` (after one warm-up call)."""
    fn()
    times = np.empty(calls)
    for i in range(calls):
        t = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - t
    return float(np.median(times))


def curve(circuits, batches, built, plot, quick) -> None:
    """rows/s of circuit.log_likelihood per batch size, backend and circuit; the reference
    backend up to 2e8 edges x rows per call."""
    impls = [*built, "reference"]
    print("\nlatency / throughput: circuit.log_likelihood(X, backend=...) (validation "
          "included, default threads), median seconds per call")
    head = (f"{'circuit':22s} {'edges':>6s} {'rows':>7s} " +
            " ".join(f"{i + ' s':>12s} {i + ' rows/s':>14s}" for i in impls) +
            f" {'cython/ref':>10s} {'numba/ref':>10s} {'numba/cython':>12s}  1-min load")
    print(head)
    print("-" * len(head))
    points = {}
    for cname, c in circuits:
        flat = c.compile()
        for rows in batches:
            X = random_rows(flat, rows, seed=rows)
            t = {}
            for impl in impls:
                cells = rows * flat.n_edges
                if impl == "reference" and cells > 2e8:
                    continue
                c.log_likelihood(X, backend=impl)  # plan and tables built: not part of a call
                if rows == 1 and impl != "reference":
                    t[impl] = median_call(lambda: c.log_likelihood(X, backend=impl),
                                          300 if quick else 3000)
                else:
                    t[impl], _ = per_call(lambda: c.log_likelihood(X, backend=impl),
                                          repeats=1 if quick or cells > 4e9 else 5,
                                          min_time=0.0 if impl == "reference" else 0.05)
                points.setdefault((cname, flat.n_edges, impl), []).append((rows, rows / t[impl]))
            cells = " ".join(f"{t[i]:12.3e} {rows / t[i]:14.3e}" if i in t else f"{'-':>12s} {'-':>14s}"
                             for i in impls)
            ratio = f"{t['reference'] / t['cython']:10.1f}" if "reference" in t and "cython" in t \
                else f"{'-':>10s}"
            nref = f"{t['reference'] / t['numba']:10.1f}" if "reference" in t and "numba" in t \
                else f"{'-':>10s}"
            nc = f"{t['numba'] / t['cython']:12.2f}" if "numba" in t and "cython" in t else ""
            print(f"{cname:22s} {flat.n_edges:6d} {rows:7d} {cells} {ratio}x {nref}x {nc}"
                  f"  {os.getloadavg()[0]:.2f}", flush=True)
    if plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.5))
        styles = {"cython": "-", "numba": "--", "reference": ":"}
        for (cname, E, impl), pts in points.items():
            r, v = zip(*pts)
            ax.loglog(r, v, styles[impl], marker="o", ms=3, label=f"{impl}, {E} edges")
        ax.set_xlabel("rows per call")
        ax.set_ylabel("rows / s (circuit.log_likelihood)")
        ax.set_title("spmn log-likelihood: throughput by batch size")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, ncol=3)
        fig.tight_layout()
        fig.savefig(plot, dpi=120)
        print(f"plot: {plot}")


def one_row_latency(spn, dec, built, quick) -> None:
    """Median latency of one-row calls through the circuit API (what a rollout step pays)."""
    x = random_rows(spn.compile(), 1, seed=1)
    e = np.array([[1.0, 0.0, np.nan, np.nan, np.nan, np.nan]])  # observed before the decision
    n = 300 if quick else 3000
    print(f"\none-row latency, median of {n} calls (microseconds); circuits: "
          f"log_likelihood on {spn.summary().n_nodes} nodes, meu / policy on "
          f"{dec.summary().n_nodes} nodes")
    print(f"{'backend':10s} {'log_likelihood':>15s} {'meu':>8s} {'policy':>8s} {'meu()':>8s}")
    for impl in [*built, "reference"]:
        m = n if impl != "reference" else max(30, n // 20)
        ll = median_call(lambda: spn.log_likelihood(x, backend=impl), m)
        meu = median_call(lambda: dec.meu(e, backend=impl), m)
        pol = median_call(lambda: dec.policy(e, backend=impl), m)
        meu0 = median_call(lambda: dec.meu(backend=impl), m)
        print(f"{impl:10s} {ll * 1e6:15.1f} {meu * 1e6:8.1f} {pol * 1e6:8.1f} {meu0 * 1e6:8.1f}"
              f"   (1-min load {os.getloadavg()[0]:.2f})", flush=True)


def print_table(rows_out, T) -> None:
    """The table; the last two columns: our rate over each SPFlow's rate on the same rows."""
    peer_rate = {(impl, c, r): f.n_edges * r / s for c, f, r, impl, p, _, s, _ in rows_out
                 if impl.startswith("SPFlow")}
    cy_time = {(c, r, p): s for c, f, r, impl, p, _, s, _ in rows_out if impl == "spmn-cython"}
    print(f"\nthreads={T}; rate = edges x rows / s (steady); ratio = rate / the peer's rate; "
          "nb/cy = Numba's steady time / Cython's (same rows, same run)")
    head = (f"{'circuit':20s} {'nodes/edges':>12s} {'rows':>7s} {'impl':18s} {'pass':15s} "
            f"{'first s':>8s} {'steady s':>9s} {'rate':>9s} {'peak MB':>8s} {'vs 0.0.48':>9s} "
            f"{'vs torch':>9s} {'nb/cy':>6s}")
    print(head)
    print("-" * len(head))
    for c, f, r, impl, p, first, steady, peak in rows_out:
        rate = f.n_edges * r / steady
        cells = []
        for peer in ("SPFlow 0.0.48", "SPFlow 1.1.0 torch"):
            ref = peer_rate.get((peer, c, r))
            cells.append(f"{rate / ref:8.1f}x" if ref and p == "log-likelihood" else f"{'':9s}")
        cy = cy_time.get((c, r, p)) if impl == "spmn-numba" else None
        nbcy = f"{steady / cy:6.2f}" if cy else ""
        print(f"{c:20s} {f'{f.n_nodes}/{f.n_edges}':>12s} {r:7d} {impl:18s} {p:15s} "
              f"{first:8.4f} {steady:9.4f} {rate:9.2e} {peak / 2**20:8.1f} {' '.join(cells)} "
              f"{nbcy}")


if __name__ == "__main__":
    main()
