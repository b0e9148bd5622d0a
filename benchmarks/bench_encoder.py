"""Encoders from pixels to an exact policy: the numpy fallback (PCA + k-means) and the torch CNN.

Setting "noisy": FrozenLake 4x4 slippery drawn by the dependency-free renderer (6 px per cell,
24x24 grey frames in [0, 1]) with Gaussian pixel noise σ = 0.1. Setting "hard": the same frames
with random shifts of up to 2 px, 4 distractor rectangles (1-3 px, random grey, behind the agent)
and σ = 0.05. Each run logs transitions under a uniform random policy, fits
``EncodedWorldModel(encoder)``, solves it at γ = 0.95 and reports:

* fit time of the encoder alone, and of the whole model (encoding + world model);
* frames encoded per second (20,000 frames, after fitting);
* purity (Σ_code max_state n / n) over every logged frame, before and after each step, with
  FrozenLake's four identical hole frames counted as one state; inverse purity (how much noise
  splits a state over codes: harmless for control), and the codes in use;
* the greedy policy's true value: each live state is rendered 64 times with fresh nuisance,
  the policy's action frequencies form π(a|s), and V^π is solved exactly on the tabular MDP,
  reported as a share of V* = 0.1804715784.

    python benchmarks/bench_encoder.py                        # both encoders, both settings
    python benchmarks/bench_encoder.py --quick                # 20,000 transitions, 300 steps
    python benchmarks/bench_encoder.py --markdown benchmarks/README_encoder_table.md
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from spmn.encoders import (  # noqa: E402
    PCAKMeansEncoder,
    TorchEncoder,
    inverse_purity,
    purity,
)
from spmn.envs import Corruption, GridRenderer, GymRenderer, PixelMDP  # noqa: E402
from spmn.reference import TabularMDP  # noqa: E402
from spmn.worldmodels import EncodedWorldModel  # noqa: E402

GAMMA = 0.95
SETTINGS = {"noisy": Corruption(noise=0.1),
            "hard": Corruption(noise=0.05, shift=2, clutter=4)}


def run_one(env: PixelMDP, log: dict, encoder, seed: int, merge: bool = True) -> dict:
    t0 = time.perf_counter()
    encoder.fit(log["frames"], log["actions"], log["next_frames"], seed=seed)
    t_enc = time.perf_counter() - t0
    m = EncodedWorldModel(encoder, fit_encoder=False, merge=merge)
    m.fit(log["frames"], log["actions"], log["rewards"], log["next_frames"], log["terminated"],
          seed=seed)
    t_fit = time.perf_counter() - t0
    m.solve(GAMMA)
    probe = log["frames"][:20000]
    t1 = time.perf_counter()
    m.encode(probe)
    fps = probe.shape[0] / (time.perf_counter() - t1)
    z = np.concatenate([m.encode(log["frames"]), m.encode(log["next_frames"])])
    y = np.concatenate([log["states"], log["next_states"]])
    cls = env.frame_classes()
    value = env.policy_value(m.policy, GAMMA, views=64, seed=seed + 1)
    vstar = env.optimal_value(GAMMA)
    return {"encoder_fit_s": t_enc, "total_fit_s": t_fit, "frames_per_s": fps,
            "purity": purity(z, y, cls), "inverse_purity": inverse_purity(z, y, cls),
            "codes_used": m.diagnostics_["codes_used"],
            "end_code_mixing": m.diagnostics_["end_code_mixing"],
            "regions": m.world_model_.n_regions_, "value": value, "value_share": value / vstar}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="logged transitions per setting")
    ap.add_argument("--steps", type=int, default=800, help="training steps of the torch CNN")
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--encoders", nargs="+", default=["numpy", "torch"], choices=["numpy", "torch"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--quick", action="store_true", help="20,000 transitions, 300 steps")
    ap.add_argument("--renderer", choices=["grid", "gym"], default="grid",
                    help="grid: the dependency-free renderer (24x24); gym: Gymnasium's rgb_array "
                         "frames shrunk to 32x32 grey (needs pygame)")
    ap.add_argument("--ablations", action="store_true",
                    help="also torch without rebalancing (balance=0) and without code merging")
    ap.add_argument("--markdown", help="write the table to this file")
    ap.add_argument("--json", help="write the raw results to this file")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.steps = 20_000, 300
    mdp = TabularMDP.from_gymnasium("FrozenLake-v1", is_slippery=True)
    renderer = GridRenderer.from_mdp(mdp, cell=6) if args.renderer == "grid" else \
        GymRenderer.from_mdp(mdp, size=(32, 32))
    rows = []
    for setting in args.settings:
        env = PixelMDP(mdp, renderer, SETTINGS[setting])
        log = env.sample(args.n, seed=args.seed)
        runs = [(name, {}, True) for name in args.encoders]
        if args.ablations and "torch" in args.encoders:
            runs += [("torch, balance=0", {"balance": 0.0}, True), ("torch, no merge", {}, False)]
        for name, extra, merge in runs:
            if name == "numpy":
                enc = PCAKMeansEncoder()
            else:
                try:
                    import torch  # noqa: F401
                except ImportError:
                    print("torch is not installed: skipping the torch encoder", file=sys.stderr)
                    continue
                enc = TorchEncoder(steps=args.steps, threads=args.threads, **extra)
            res = {"setting": setting, "encoder": name,
                   **run_one(env, log, enc, args.seed, merge)}
            rows.append(res)
            print(json.dumps(res), flush=True)
    head = ("| setting | encoder | encoder fit (s) | total fit (s) | frames/s | purity | "
            "inverse purity | codes used | regions | value / V* |\n"
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
    body = "".join(
        f"| {r['setting']} | {r['encoder']} | {r['encoder_fit_s']:.1f} | {r['total_fit_s']:.1f} | "
        f"{r['frames_per_s']:,.0f} | {r['purity']:.4f} | {r['inverse_purity']:.3f} | "
        f"{r['codes_used']} | {r['regions']} | {r['value_share']:.4f} |\n" for r in rows)
    tv = getattr(sys.modules.get("torch"), "__version__", "not installed")
    note = (f"\n{args.renderer} renderer, {args.n:,} transitions per setting, seed {args.seed}, "
            f"torch steps {args.steps}, "
            f"torch threads {args.threads or 'default'}; {platform.machine()}, {os.cpu_count()} "
            f"cores, python {platform.python_version()}, numpy {np.__version__}, torch {tv}.\n")
    table = head + body + note
    print(table)
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(table)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
