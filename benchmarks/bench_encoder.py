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
    python benchmarks/bench_encoder.py --tasks                # MiniGrid and grid tasks (below)

``--tasks``: pixel tasks beyond FrozenLake, with the default encoder (``n_codes="auto"``) and
the aliasing test: MiniGrid Empty 6x6 and DoorKey 5x5 (fully observable RGB frames, 4 px
tiles, random actions from exploring starts; the greedy policy is run in the real MiniGrid env
and set beside V* from our value iteration and BFS over the true grid states), the 37-state
grid of issue 19 (noisy grey frames) and a 144-state grid (more states than the default upper
limit of 128 codes, where the AliasingWarning must fire). Columns: frames, codes found (the
encoder's / after refinement and merging), fit s, solve s, value vs V*, warnings.
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


def run_task(name: str, seed: int) -> dict:
    """One pixel task of ``--tasks``: default EncodedWorldModel, greedy policy vs V*."""
    import warnings

    from spmn.envs.pixels import gridworld
    from spmn.errors import AliasingWarning

    if name.startswith("MiniGrid"):
        from spmn.envs.minigrid import MiniGridTask

        env_id, n = {"MiniGrid Empty 6x6": ("MiniGrid-Empty-6x6-v0", 10_000),
                     "MiniGrid DoorKey 5x5": ("MiniGrid-DoorKey-5x5-v0", 20_000)}[name]
        task = MiniGridTask(env_id, tile_size=4, seed=seed)
        log, states = task.sample(n, seed=seed), task.n_states
    else:
        desc = {"grid 37 states": ["SFFFFFF", "FWFFWFF", "FFFWFFF", "FFFFFFF", "FWFFFFF",
                                   "FFFFWFG"],
                "grid 144 states": ["S" + "F" * 11] + ["F" * 12] * 10 + ["F" * 11 + "G"]}[name]
        task = PixelMDP(gridworld(desc), GridRenderer(desc, cell=4), Corruption(noise=0.1))
        log = task.sample(30_000, seed=seed)
        states = int((~task.mdp.terminal).sum()) + int(sum(r.count("G") for r in desc))
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AliasingWarning)
        m = EncodedWorldModel(progress=False).fit(
            log["frames"], log["actions"], log["rewards"], log["next_frames"], log["terminated"],
            seed=seed)
    t_fit = time.perf_counter() - t0
    t1 = time.perf_counter()
    m.solve(GAMMA)
    t_solve = time.perf_counter() - t1
    if name.startswith("MiniGrid"):
        value = task.rollout(m.policy, GAMMA)["return"]   # the real env
    else:
        value = task.policy_value(m.policy, GAMMA, views=16, seed=seed + 1)
    vstar = task.optimal_value(GAMMA)
    warned = sorted({("dynamics" if "different futures" in str(w.message) else
                      "end mixing" if "end_code_mixing" in str(w.message) else "upper limit")
                     for w in caught if issubclass(w.category, AliasingWarning)})
    dg = m.diagnostics_
    return {"task": name, "states": states, "frames": 2 * log["frames"].shape[0],
            "frame_shape": "x".join(map(str, log["frames"].shape[1:])),
            "encoder_codes": dg["encoder_codes"], "codes": dg["codes_used"],
            "splits": dg["refine_splits"], "fit_s": t_fit, "solve_s": t_solve,
            "value": value, "v_star": vstar, "value_share": value / vstar,
            "warnings": ", ".join(warned) or "none"}


def tasks_table(rows: list[dict]) -> str:
    head = ("| task | states | frames (shape) | codes found (encoder / final) | splits | fit (s) | "
            "solve (s) | value | V* | value / V* | AliasingWarning |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
    return head + "".join(
        f"| {r['task']} | {r['states']} | {r['frames']:,} ({r['frame_shape']}) | "
        f"{r['encoder_codes']} / {r['codes']} | {r['splits']} | {r['fit_s']:.1f} | "
        f"{r['solve_s']:.2f} | {r['value']:.4f} | {r['v_star']:.4f} | {r['value_share']:.4f} | "
        f"{r['warnings']} |\n" for r in rows)


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
    ap.add_argument("--tasks", action="store_true",
                    help="MiniGrid Empty/DoorKey and the 37/144-state grids with the default "
                         "encoder (n_codes='auto', aliasing test) instead of the FrozenLake table")
    args = ap.parse_args(argv)
    if args.tasks:
        rows = []
        for name in ("MiniGrid Empty 6x6", "MiniGrid DoorKey 5x5", "grid 37 states",
                     "grid 144 states"):
            rows.append(run_task(name, args.seed))
            print(json.dumps(rows[-1]), flush=True)
        table = tasks_table(rows) + (f"\nseed {args.seed}, γ = {GAMMA}; {platform.machine()}, "
                                     f"{os.cpu_count()} cores, python "
                                     f"{platform.python_version()}, numpy {np.__version__}.\n")
        return _report(args, table, rows)
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
    return _report(args, table, rows)


def _report(args, table: str, rows: list) -> int:
    """Print the table; write it (``--markdown``) and the rows (``--json``) when asked."""
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
