"""Bounded memory on a big batch: a 10-million-row log-likelihood on a ~10k-node circuit.

    python benchmarks/bench_big_batch.py [--rows 10000000] [--threads 2] [--backend cython]
        [--missing 0.1] [--dask-chunk 0]

The evidence is generated block by block into one (rows, 32) float64 array (2.6 GB at 10M
rows); the pass runs over it in one call, which processes chunks of rows with O(nodes x chunk)
work memory per thread and shows a tqdm bar. Printed: wall time, edges x rows / s, the peak
resident memory of the process before and after the pass (``ru_maxrss``) and the largest
extra memory the pass took (peak RSS - RSS before it, sampled by a watcher thread), a check of
a random subset of rows against the numpy reference, and the same figures for Dask
(``--dask-chunk N``: the evidence as a dask.array of N-row blocks, local threaded scheduler).
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _bench_circuits import layered_circuit  # noqa: E402

from spmn import kernels  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakWatcher:
    """Samples the resident set size every 50 ms while a pass runs."""

    def __init__(self) -> None:
        self.peak = rss_mb()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, rss_mb())

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def make_rows(flat, rows: int, missing: float, seed: int, block: int = 1 << 20) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = np.empty((rows, flat.n_vars))
    k = flat.var_card.astype(np.int64)
    for lo in range(0, rows, block):
        hi = min(rows, lo + block)
        X[lo:hi] = rng.integers(0, k, size=(hi - lo, flat.n_vars))
        if missing:
            X[lo:hi][rng.random((hi - lo, flat.n_vars)) < missing] = np.nan
    return X


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--backend", default="cython")
    ap.add_argument("--missing", type=float, default=0.1)
    ap.add_argument("--dask-chunk", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)

    flat = layered_circuit().compile()
    be = kernels.get(a.backend)
    print(f"circuit: {flat.n_nodes} nodes, {flat.n_edges} edges; backend {a.backend}, "
          f"threads {a.threads}; rows {a.rows:,} ({100 * a.missing:.0f}% missing)")
    t = time.perf_counter()
    X = make_rows(flat, a.rows, a.missing, a.seed)
    print(f"evidence: {X.nbytes / 2**30:.2f} GiB, generated in {time.perf_counter() - t:.1f} s")
    be.log_likelihood(flat, X[:1000], threads=a.threads)  # load / warm up
    before = rss_mb()
    with PeakWatcher() as w:
        t = time.perf_counter()
        ll = be.log_likelihood(flat, X, threads=a.threads, progress=True)
        wall = time.perf_counter() - t
    rate = flat.n_edges * a.rows / wall
    print(f"log-likelihood: {wall:.1f} s, {rate:.3g} edges x rows / s; RSS before {before:.0f} MB,"
          f" peak during {w.peak:.0f} MB (+{w.peak - before:.0f} MB: the {ll.nbytes / 2**20:.0f} MB"
          f" output and the work arrays); ru_maxrss "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    rng = np.random.default_rng(a.seed + 1)
    idx = np.sort(rng.choice(a.rows, 2000, replace=False))
    ref = kernels.get("reference").log_likelihood(flat, X[idx])
    err = float(np.max(np.abs(ll[idx] - ref) / np.maximum(1.0, np.abs(ref))))
    print(f"check: 2,000 random rows against the numpy reference, max relative error {err:.1e}")
    assert np.all(np.isfinite(ll)) and err < 1e-12
    if a.dask_chunk:
        import dask.array as da

        from spmn.kernels import dask as dk

        Xd = da.from_array(X, chunks=(a.dask_chunk, flat.n_vars))
        before = rss_mb()
        with PeakWatcher() as w:
            t = time.perf_counter()
            lld = dk.log_likelihood(flat, Xd, backend=a.backend).compute(scheduler="threads")
            wall = time.perf_counter() - t
        print(f"dask ({a.dask_chunk:,}-row blocks, threaded scheduler): {wall:.1f} s, "
              f"{flat.n_edges * a.rows / wall:.3g} edges x rows / s, peak +{w.peak - before:.0f} MB;"
              f" equal to the in-memory result: {bool(np.array_equal(lld, ll))}")


if __name__ == "__main__":
    main()
