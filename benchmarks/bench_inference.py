"""Throughput of the inference kernels: spmn-cython, spmn-numba, SPFlow 0.0.48, plain numpy.

    python benchmarks/bench_inference.py [--rows 1000,10000,100000] [--threads 2]
        [--spflow-python /work/venv-spflow/bin/python] [--quick]

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
    to_exchange,
)

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
    return first, float(np.median(times)), peak


def numba_work_bytes(flat, rows, threads, cu=True, down=False):
    """Bytes of the work arrays Numba's run() allocates (not seen by tracemalloc)."""
    R = prepare(flat).chunk
    # L (or the fast path's p), U, the scaled pass's exponents (not for MPE), rows, MPE marks
    per = (flat.n_nodes * R * 8 * (1 + cu + (not down)) + (flat.n_vars + 7) * R * 8
           + flat.n_nodes * R * down)
    return threads * per


def spflow(python, exchange_path, rows):
    if not python or not os.path.exists(python):
        return {}
    proc = subprocess.run([python, os.path.join(HERE, "_spflow_side.py"), "bench", exchange_path,
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", default="1000,10000,100000")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--spflow-python", default="/work/venv-spflow/bin/python")
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "spmn-bench"))
    ap.add_argument("--quick", action="store_true", help="fewer repeats, no fresh processes")
    args = ap.parse_args()
    os.makedirs(args.cache, exist_ok=True)
    batches = [int(r) for r in args.rows.split(",")]
    T = args.threads
    built = [b for b in ("cython", "numba") if b in kernels.available()]

    spn, spn_path = learned_spn(args.spflow_python, args.cache)
    layered = layered_circuit()
    lay_path = os.path.join(args.cache, "layered.json")
    with open(lay_path, "w") as fh:
        json.dump(to_exchange(layered), fh)
    circuits = [("SPFlow-learned SPN", spn, spn_path, batches),
                ("random layered", layered, lay_path, [b for b in batches if b <= 10_000])]
    rows_out = []
    for cname, circuit, path, spflow_batches in circuits:
        flat = circuit.compile()
        E = flat.n_edges
        sp = spflow(args.spflow_python, path, spflow_batches)
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
            if str(rows) in sp:
                r = sp[str(rows)]
                rows_out.append((cname, flat, rows, "SPFlow 0.0.48", "log-likelihood",
                                 r["first_s"], r["steady_s"], r["peak_bytes"]))
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
    if not args.quick:
        print("\nFresh-process latencies (seconds):")
        for k, v in fresh_process_latencies(T).items():
            print(f"  {k:45s} {v if v is None else round(v, 3)}")


def print_table(rows_out, T) -> None:
    spflow_rate = {(c, r): f.n_edges * r / s for c, f, r, impl, p, _, s, _ in rows_out
                   if impl.startswith("SPFlow")}
    print(f"\nthreads={T}; rate = edges x rows / s (steady); ratio = rate / SPFlow's rate")
    head = (f"{'circuit':19s} {'nodes/edges':>12s} {'rows':>7s} {'impl':15s} {'pass':15s} "
            f"{'first s':>8s} {'steady s':>9s} {'rate':>9s} {'peak MB':>8s} {'vs SPFlow':>9s}")
    print(head)
    print("-" * len(head))
    for c, f, r, impl, p, first, steady, peak in rows_out:
        rate = f.n_edges * r / steady
        ref = spflow_rate.get((c, r))
        ratio = f"{rate / ref:8.1f}x" if ref and p == "log-likelihood" else f"{'':9s}"
        print(f"{c:19s} {f'{f.n_nodes}/{f.n_edges}':>12s} {r:7d} {impl:15s} {p:15s} "
              f"{first:8.4f} {steady:9.4f} {rate:9.2e} {peak / 2**20:8.1f} {ratio}")


if __name__ == "__main__":
    main()
