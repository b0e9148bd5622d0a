"""Simulator benchmark: environment steps per second of a learned model's vector env beside the
real Gymnasium env's, in one run.

1. FrozenLake-v1 4x4 slippery: the tabular WorldModel learned from 100k random-policy logs, as
   ``model.to_env(num_envs=N)`` (compiled table sampler, numba), against Gymnasium's own
   FrozenLake vectorized with ``make_vec(..., vectorization_mode="sync")`` (Gymnasium has no
   numpy-vectorized FrozenLake), at N = 1, 64, 4,096; and the single env (``model.to_env()``)
   against ``gymnasium.make("FrozenLake-v1")``. Actions are drawn before the timed loop, for both.
2. Batched rollouts of the exact policy in the model (``model.rollout(solution, N, 100)``):
   env steps per second including the policy lookup and the logged columns.
3. CartPole-v1: a linear-Gaussian model fitted to 20k random-policy transitions (an
   approximation of CartPole's dynamics; here only its speed matters), stepped by the circuit's
   sample pass (the fastest kernel backend built), against Gymnasium's numpy-vectorized
   ``CartPoleVectorEnv`` (``vectorization_mode="vector_entry_point"``) and the sync vector env.

Steps per second = N x steps / seconds, the median of ``--repeats`` timed loops (each at least
``--min-time`` seconds) after a warm-up step (numba compiles once).

    PYTHONPATH=. python benchmarks/bench_simulate.py            # ~2 min on 2 cores
    PYTHONPATH=. python benchmarks/bench_simulate.py --quick    # fewer repeats, shorter loops
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import gymnasium as gym  # noqa: E402
from _common import Report, machine  # noqa: E402

from spmn import kernels  # noqa: E402
from spmn.cli.demo import frozenlake_mdp  # noqa: E402
from spmn.worldmodels import GaussianWorldModel, WorldModel  # noqa: E402

SIZES = (1, 64, 4096)


def rate(env, actions: np.ndarray, n: int, repeats: int, min_time: float) -> float:
    """Median env steps per second of ``env.step`` over pre-drawn ``actions`` (cycled)."""
    env.reset(seed=0)
    env.step(actions[0])
    out = []
    for _ in range(repeats):
        k, t0 = 0, time.perf_counter()
        while True:
            env.step(actions[k % len(actions)])
            k += 1
            el = time.perf_counter() - t0
            if el >= min_time and k >= 3:
                break
        out.append(n * k / el)
    return statistics.median(out)


def fmt(x: float) -> str:
    return f"{x:.3g}"


def frozenlake(rep: Report, repeats: int, min_time: float) -> None:
    mdp = frozenlake_mdp()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = WorldModel("s", "a", "r", "terminated", progress=False).fit(
            mdp.sample_transitions(100_000, seed=0))
    rng = np.random.default_rng(0)
    rows = []
    for n in SIZES:
        acts = rng.integers(0, 4, (64, n))
        ours = rate(model.to_env(n, start=[0]), acts, n, repeats, min_time)
        # the real env: Gymnasium's sync vector env (one Python env per copy)
        real = gym.make_vec("FrozenLake-v1", num_envs=n, vectorization_mode="sync",
                            is_slippery=True)
        peer = rate(real, acts, n, repeats, min_time if n < 4096 else min_time / 2)
        real.close()
        rows.append([f"N = {n:,}", fmt(ours), fmt(peer), f"{ours / peer:.0f}x"])
    acts1 = rng.integers(0, 4, 256)
    single = [a.item() for a in acts1]
    ours1 = rate(_AutoReset(model.to_env(start=[0])), single, 1, repeats, min_time)
    env1 = gym.make("FrozenLake-v1", is_slippery=True)
    peer1 = rate(_AutoReset(env1), single, 1, repeats, min_time)
    rows.append(["single env (gym.Env)", fmt(ours1), fmt(peer1), f"{ours1 / peer1:.1f}x"])
    rep.table("FrozenLake-v1 4x4 slippery: env steps per second",
              ["envs", "model.to_env (numba table sampler)",
               "Gymnasium FrozenLake (sync vector env / gym.make)", "ratio"], rows,
              "The model env autoresets on the next step like the sync vector env; the single "
              "envs reset when an episode ends, both through the same helper.")
    sol = model.solve(0.95)
    rows = []
    for n in (64, 4096, 65536):
        t0 = time.perf_counter()
        ro = model.rollout(sol, n, 100, seed=0, start=[0], columns=False)
        el = time.perf_counter() - t0
        t0 = time.perf_counter()
        ro2 = model.rollout(sol, n, 100, seed=0, start=[0])
        el2 = time.perf_counter() - t0
        rows.append([f"{n:,}", f"{ro.lengths.sum() / el:.3g}", f"{ro2.lengths.sum() / el2:.3g}",
                     f"{ro.mean_return:.4f} ± {ro.stderr:.4f}"])
    rep.table("Rollouts of the exact policy in the FrozenLake model (horizon 100, γ = 0.95)",
              ["episodes", "steps/s (returns only)", "steps/s (with logged columns)",
               f"MC return (exact V(0) = {sol.value(0):.4f})"], rows)


class _AutoReset:
    """A single Gymnasium env that resets itself when an episode ends (for the step loop)."""

    def __init__(self, env) -> None:
        self.env = env

    def reset(self, seed=None):
        return self.env.reset(seed=seed)

    def step(self, a):
        out = self.env.step(a)
        if out[2] or out[3]:
            self.env.reset()
        return out


def cartpole(rep: Report, repeats: int, min_time: float) -> None:
    env = gym.make("CartPole-v1")
    rng = np.random.default_rng(0)
    cols: dict[str, list] = {k: [] for k in ("x0", "x1", "x2", "x3", "u", "x0_next", "x1_next",
                                              "x2_next", "x3_next")}
    obs, _ = env.reset(seed=0)
    for _ in range(20_000):
        a = int(rng.integers(0, 2))
        nxt, _, term, trunc, _ = env.step(a)
        for j in range(4):
            cols[f"x{j}"].append(obs[j])
            cols[f"x{j}_next"].append(nxt[j])
        cols["u"].append(float(a))
        obs = env.reset()[0] if term or trunc else nxt
    model = GaussianWorldModel([f"x{j}" for j in range(4)], "u", None,
                               cost=(np.eye(4), [[0.01]]), progress=False).fit(
        {k: np.asarray(v, np.float64) for k, v in cols.items()})
    be = kernels.available()[0]
    rows = []
    for n in SIZES:
        acts_i = rng.integers(0, 2, (64, n))
        ours = rate(model.to_env(n, backend=be, max_episode_steps=200), acts_i[..., None].astype(np.float64), n,
                    repeats, min_time)
        vec = gym.make_vec("CartPole-v1", num_envs=n, vectorization_mode="vector_entry_point")
        peer = rate(vec, acts_i, n, repeats, min_time)
        vec.close()
        sync = gym.make_vec("CartPole-v1", num_envs=n, vectorization_mode="sync")
        peer2 = rate(sync, acts_i, n, repeats, min_time if n < 4096 else min_time / 2)
        sync.close()
        rows.append([f"N = {n:,}", fmt(ours), fmt(peer), f"{ours / peer:.2f}x", fmt(peer2),
                     f"{ours / peer2:.1f}x"])
    rep.table(f"CartPole-v1: env steps per second (linear-Gaussian model, {be} sample pass)",
              ["envs", "model.to_env", "Gymnasium CartPoleVectorEnv (numpy)", "ratio",
               "Gymnasium sync vector env", "ratio"], rows,
              "The model env's step is the circuit's batched sample pass over evidence rows "
              "(x, u, NaN...) plus the quadratic reward, episodes truncated at 200 steps (the linear "
              "model of the pole is unstable under random pushes); CartPole's own vector env is a few "
              "numpy expressions per step, so it is the faster one at large N.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--min-time", type=float, default=0.5)
    ap.add_argument("--markdown", default=None)
    args = ap.parse_args()
    repeats, min_time = (2, 0.2) if args.quick else (args.repeats, args.min_time)
    rep = Report()
    rep.text(f"machine: {machine()}; numba threads: {os.environ.get('NUMBA_NUM_THREADS', 'all')}")
    frozenlake(rep, repeats, min_time)
    cartpole(rep, repeats, min_time)
    if args.markdown:
        rep.write(args.markdown)


if __name__ == "__main__":
    main()
