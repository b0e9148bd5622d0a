"""Out-of-core fit of the tabular and factored world models and of learn_spn: rows streamed
from Parquet through dask.

Writes ``--rows`` FrozenLake 8x8 transitions (slippery; random exploration) as
Parquet files of ``--part-rows`` rows each into a temporary folder (generated chunk by chunk,
never all in memory), then fits ``WorldModel("s", "a", "r", "terminated")`` from
``dask.dataframe.read_parquet`` on a ``distributed.LocalCluster`` of 1 and of 2 workers (one
thread each, in the process: its peak RSS is the fit's). Each fit runs in a fresh subprocess so
the peak RSS (``ru_maxrss``) is that fit's alone. The peer is the in-memory fit of the same
rows (``WorldModel.fit`` on a pandas DataFrame read from the same files), run up to
``--peer-rows`` rows; there the two models are compared (same tree, equal count tables).

    python benchmarks/bench_out_of_core.py --rows 20000000 --workers 1,2 --peer-rows 3000000

``--kind factored`` does the same for ``FactoredWorldModel`` on logs of a chain DBN (8 binary
fluents, 2 binary actions: x_i' depends on x_i, x_{i-1} and a_{i mod 2}; reward
x_0 + x_1 + x_2 - 0.1 (a_0 + a_1)), α chosen by the held-out rows (split_p=None), comparing
the trees, leaf counts, reward and solved values with the in-memory fit of the peer's rows.

    python benchmarks/bench_out_of_core.py --kind factored --rows 20000000 --peer-rows 3000000

``--kind spn`` fits ``learn_spn`` (LearnSPN: G-tests, EM clustering on ``cluster_sample``
rows of smallest hash) to 16 discrete columns (cards 2-4) that depend on a latent class of 4
values, from Parquet on the cluster: counts per partition for slices above ``cluster_sample``
rows, smaller slices gathered and learned in memory; the peer is the in-memory ``learn_spn``
of the same rows, and the circuits are compared node by node (and by log-likelihood).

    python benchmarks/bench_out_of_core.py --kind spn --rows 2000000 --part-rows 250000 \
        --peer-rows 2000000

Prints rows/s (transitions fitted per second of wall time), the passes over the data, the
peak RSS and the ratio to the in-memory peer. The machine is shared and loaded: one repeat
per configuration at 20M rows (minutes each), medians of ``--repeats`` below that.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def frozenlake_8x8():
    """(P[a, s, s'], R[a, s, s'], done[a, s, s'], terminal states) read from Gymnasium's table."""
    import gymnasium as gym

    env = gym.make("FrozenLake-v1", map_name="8x8", is_slippery=True).unwrapped
    S, A = env.observation_space.n, env.action_space.n
    P, R, D = np.zeros((A, S, S)), np.zeros((A, S, S)), np.zeros((A, S, S), bool)
    for s in range(S):
        for a in range(A):
            for p, sn, r, done in env.P[s][a]:
                P[a, s, sn] += p
                R[a, s, sn] = r
                D[a, s, sn] = done
    holes_goal = np.array([c in b"HG" for c in env.desc.ravel()])
    return P, R, D, holes_goal


def generate(folder: str, rows: int, part_rows: int, seed: int = 0) -> list[str]:
    """Random-exploration logs of FrozenLake 8x8 (state uniform over the non-terminal states,
    action uniform, next state from the true dynamics) as Parquet files of ``part_rows`` rows,
    chunk by chunk (vectorized; never all in memory)."""
    import pandas as pd

    P, R, D, term_state = frozenlake_8x8()
    A, S = P.shape[:2]
    live = np.flatnonzero(~term_state)
    rng = np.random.default_rng(seed)
    files = []
    for i, start in enumerate(range(0, rows, part_rows)):
        n = min(part_rows, rows - start)
        s = live[rng.integers(live.size, size=n)]
        a = rng.integers(A, size=n)
        sn = np.empty(n, np.int64)
        key = a * S + s
        order = np.argsort(key, kind="stable")
        bounds = np.searchsorted(key[order], np.arange(A * S + 1))
        for k in range(A * S):
            idx = order[bounds[k]:bounds[k + 1]]
            if idx.size:
                sn[idx] = rng.choice(S, size=idx.size, p=P[k // S, k % S])
        df = pd.DataFrame({"s": s.astype(np.int16), "a": a.astype(np.int8),
                           "r": R[a, s, sn], "s_next": sn.astype(np.int16),
                           "terminated": D[a, s, sn]})
        path = os.path.join(folder, f"part{i:05d}.parquet")
        df.to_parquet(path, index=False)
        files.append(path)
    return files


def generate_chain(folder: str, rows: int, part_rows: int, seed: int = 0, d: int = 8,
                   m: int = 2) -> list[str]:
    """Uniform-random logs of the chain DBN of the module docstring as Parquet files of
    ``part_rows`` rows, generated chunk by chunk (never all in memory)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    files = []
    for i, start in enumerate(range(0, rows, part_rows)):
        n = min(part_rows, rows - start)
        S, A = rng.integers(0, 2, (n, d)), rng.integers(0, 2, (n, m))
        nb = np.c_[np.zeros((n, 1), np.int64), S[:, :-1]]
        act = A[:, np.arange(d) % m]
        p1 = np.where(act == 1, 0.85 + 0.1 * S, 0.05 + 0.7 * S + 0.2 * nb)
        Sn = rng.random((n, d)) < p1
        cols = {f"x{j}": S[:, j].astype(np.int8) for j in range(d)}
        cols.update({f"x{j}_next": Sn[:, j].astype(np.int8) for j in range(d)})
        cols.update({f"a{k}": A[:, k].astype(np.int8) for k in range(m)})
        cols["r"] = S[:, :3].sum(axis=1) - 0.1 * A.sum(axis=1)
        path = os.path.join(folder, f"part{i:05d}.parquet")
        pd.DataFrame(cols).to_parquet(path, index=False)
        files.append(path)
    return files


def generate_spn(folder: str, rows: int, part_rows: int, seed: int = 0, d: int = 16
                 ) -> list[str]:
    """16 discrete columns (cards 2, 3, 4, ...) noisy functions of a latent class of 4
    values, as Parquet files of ``part_rows`` rows, generated chunk by chunk."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    files = []
    for i, start in enumerate(range(0, rows, part_rows)):
        n = min(part_rows, rows - start)
        z = rng.integers(0, 4, n)
        cols = {}
        for j in range(d):
            k = 2 + j % 3
            cols[f"x{j}"] = np.where(rng.random(n) < 0.55, (z * (j + 1) + j) % k,
                                     rng.integers(0, k, n)).astype(np.int8)
        path = os.path.join(folder, f"part{i:05d}.parquet")
        pd.DataFrame(cols).to_parquet(path, index=False)
        files.append(path)
    return files


def spn_fingerprint(node) -> list:
    """The circuit in depth-first order: node types, variables, weights and leaf parameters."""
    out, stack = [], [node]
    while stack:
        nd = stack.pop()
        w = getattr(nd, "weights", None)
        out.append((type(nd).__name__, getattr(nd, "var", None),
                    None if w is None else w.tobytes(),
                    nd.params() if hasattr(nd, "params") else None, len(nd.children)))
        stack.extend(reversed(nd.children))
    return out


def spn_child(args, files, base) -> dict:
    """One learn_spn fit in this process (``memory`` or ``dask``), for ``--kind spn``."""
    import dask.dataframe as dd
    import pandas as pd

    from spmn.learn import dask_spn, learn_spn

    passes = [0]
    real = dask_spn.DaskSource._run

    def counting(self, fn, *a):
        passes[0] += 1
        return real(self, fn, *a)

    dask_spn.DaskSource._run = counting
    out = {}
    if args.mode == "memory":
        t0 = time.perf_counter()
        df = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
        c = learn_spn(df, seed=0, progress=False)
        wall = time.perf_counter() - t0
        out["rows"] = len(df)
        n_passes = passes[0]  # 0: the in-memory fit reads its rows once
        if args.compare:
            from distributed import Client, LocalCluster
            with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                              dashboard_address=":0") as cluster, Client(cluster) as client:
                c2 = learn_spn(dd.read_parquet(files), seed=0, progress=False, client=client)
            X = df.iloc[:20000].to_numpy(np.float64)
            out["same_model"] = bool(spn_fingerprint(c.root) == spn_fingerprint(c2.root) and
                                     np.allclose(c.log_likelihood(X), c2.log_likelihood(X),
                                                 rtol=1e-12, atol=0))
    else:
        from distributed import Client, LocalCluster

        with LocalCluster(n_workers=args.n_workers, threads_per_worker=1, processes=False,
                          dashboard_address=":0") as cluster, Client(cluster) as client:
            t0 = time.perf_counter()
            c = learn_spn(dd.read_parquet(files), seed=0, progress=False, client=client)
            wall = time.perf_counter() - t0
        out["rows"] = sum(pd.read_parquet(f, columns=["x0"]).shape[0] for f in files)
    X0 = np.zeros((1, 16))
    out.update(wall=wall, passes=n_passes if args.mode == "memory" else passes[0], regions=len(c.nodes), rss_mb=peak_rss_mb(),
               rss_before_mb=base, value0=float(c.log_likelihood(X0)[0]))
    return out


def factored_model():
    from spmn.worldmodels import FactoredWorldModel

    return FactoredWorldModel([f"x{j}" for j in range(8)], ["a0", "a1"], progress=False)


def same_factored(m1, m2) -> bool:
    """Same trees (splits, numbering), equal leaf counts, the same reward and solved values."""
    same = m1.split_p_ == m2.split_p_ and all(
        np.array_equal(getattr(a, f), getattr(b, f))
        for a, b in zip(m1.trees_, m2.trees_) for f in ("var", "child", "counts", "crit"))
    r1, r2 = m1.reward_, m2.reward_
    same &= r1.cols == r2.cols and all(np.array_equal(a, b) for a, b in zip(r1.tables, r2.tables))
    v1, v2 = m1.solve(0.95).values, m2.solve(0.95).values
    return bool(same and np.allclose(v1, v2, rtol=1e-12, atol=1e-12))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(args) -> dict:
    """One fit in this fresh process: ``dask`` (on a LocalCluster) or ``memory``."""
    import dask.dataframe as dd
    import pandas as pd

    from spmn.worldmodels.factored import dask_fit
    from spmn.worldmodels.tabular import counts
    from spmn.worldmodels.tabular.model import WorldModel

    factored = args.kind == "factored"
    files = sorted(os.path.join(args.folder, f) for f in os.listdir(args.folder))
    files = files[:args.files]
    if args.kind == "spn":
        return spn_child(args, files, peak_rss_mb())
    passes = [0]
    mod = dask_fit if factored else counts
    real = mod.reduce_partitions

    def counting(*a, **k):
        passes[0] += 1
        return real(*a, **k)

    mod.reduce_partitions = counting

    def model():
        if factored:
            return factored_model()
        return WorldModel("s", "a", "r", "terminated", progress=False)

    base = peak_rss_mb()
    if args.mode == "memory":
        t0 = time.perf_counter()
        df = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
        m = model().fit(df)
        wall = time.perf_counter() - t0
        out = {"rows": len(df)}
        if args.compare:
            import dask
            with dask.config.set(scheduler="threads", num_workers=2):
                m2 = model().fit(dd.read_parquet(files))
            if factored:
                same = same_factored(m, m2)
            else:
                same = all(np.array_equal(m.tables_[k], m2.tables_[k]) for k in m.tables_) and \
                    np.array_equal(m.tree_.var, m2.tree_.var)
            out["same_model"] = bool(same)
    else:
        from distributed import Client, LocalCluster

        with LocalCluster(n_workers=args.n_workers, threads_per_worker=1, processes=False,
                          dashboard_address=":0") as cluster, Client(cluster) as client:
            t0 = time.perf_counter()
            m = model().fit(dd.read_parquet(files), client=client)
            wall = time.perf_counter() - t0
        out = {"rows": m.n_transitions_}
    if factored:
        size = sum(t.leaves.size for t in m.trees_)
        value0 = float(m.solve(0.95).value(np.zeros(8, np.int64)))
    else:
        size, value0 = m.n_regions_, float(m.solve(0.95).value(0))
    out.update(wall=wall, passes=passes[0], regions=size, rss_mb=peak_rss_mb(),
               rss_before_mb=base, value0=value0)
    return out


def run_child(folder, files, mode, n_workers=1, compare=False, kind="tabular") -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--folder", folder,
           "--files", str(files), "--mode", mode, "--n-workers", str(n_workers), "--kind", kind]
    if compare:
        cmd.append("--compare")
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode:
        raise RuntimeError(f"child failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20_000_000)
    ap.add_argument("--part-rows", type=int, default=1_000_000)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--peer-rows", type=int, default=3_000_000)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--kind", choices=("tabular", "factored", "spn"), default="tabular",
                    help="the world model fitted (module docstring)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    ap.add_argument("--files", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="dask", help=argparse.SUPPRESS)
    ap.add_argument("--n-workers", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--compare", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    print(f"load average at start: {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="spmn_ooc_") as folder:
        t0 = time.perf_counter()
        make = {"factored": generate_chain, "spn": generate_spn}.get(args.kind, generate)
        files = make(folder, args.rows, args.part_rows)
        size = sum(os.path.getsize(f) for f in files) / 2 ** 20
        what = "rows" if args.kind == "spn" else "transitions"
        print(f"wrote {args.rows:,} {what} in {len(files)} Parquet files ({size:.0f} MB) "
              f"in {time.perf_counter() - t0:.1f} s")
        rows = []
        for w in [int(x) for x in args.workers.split(",")]:
            reps = [run_child(folder, len(files), "dask", w, kind=args.kind)
                    for _ in range(args.repeats)]
            r = sorted(reps, key=lambda d: d["wall"])[len(reps) // 2]
            rows.append((f"spmn dask, {w} worker{'s' * (w > 1)}", r))
        peer_files = max(1, min(len(files), args.peer_rows // args.part_rows))
        reps = [run_child(folder, peer_files, "memory", compare=True, kind=args.kind)
                for _ in range(args.repeats)]
        peer = sorted(reps, key=lambda d: d["wall"])[len(reps) // 2]
        rows.append(("in-memory fit (peer)", peer))
        peer_rate = peer["rows"] / peer["wall"]
        size = {"factored": "leaves", "spn": "nodes"}.get(args.kind, "regions")
        what = "V(s0)" if args.kind != "spn" else "ll(0)"
        print(f"\n{args.kind} world model" if args.kind != "spn" else "\nlearn_spn")
        print(f"{'fit':28s} {'rows':>11s} {'passes':>6s} {size:>7s} {'wall s':>8s} "
              f"{'rows/s':>10s} {'peak RSS MB':>11s} {what:>8s} {'vs peer':>7s}")
        for name, r in rows:
            rate = r["rows"] / r["wall"]
            print(f"{name:28s} {r['rows']:>11,} {r['passes']:>6d} {r['regions']:>7d} "
                  f"{r['wall']:>8.1f} {rate:>10.3g} {r['rss_mb']:>11.0f} {r['value0']:>8.4f} "
                  f"{rate / peer_rate:>6.2f}x")
        print(f"\nin-memory and dask fits of the peer's {peer['rows']:,} rows give the same "
              f"model: {peer['same_model']}")
        print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
