"""Classic control from logged transitions: ContinuousWorldModel on CartPole-v1, MountainCar-v0 and
Pendulum-v1 (gymnasium), the learned policy run in the real environment.

Data (what a user must log): uniformly random actions from **resets to random states**, i.e.
the simulator's state set to a point drawn uniformly from a box of the state space, then a
short random rollout (``rollout`` decisions, or until the episode ends). A random policy from
the env's own start states never sees the states a good policy visits (CartPole's random
episodes last ~20 steps near upright; MountainCar's random walk never reaches the goal;
Pendulum's never swings up), so resets are what make the logs rich enough. Each logged action
is held for ``repeat`` env steps (CartPole 3, MountainCar 4, Pendulum 2; rewards summed, the
row ends at an episode end), and the learned policy holds its action as long: a region is
wide compared with one step's motion, and a held action's move is what the regions resolve.
Pendulum's torque is logged on the action grid the model uses (uniform random grid values).

For each task: data size, fit s (regions + leaves + refinement), solve s (landing matrices +
policy iteration), regions, the learned policy's return over 100 real episodes (mean ± se;
episodes from the env's own start states, seeds 0..99), beside the uniformly random policy and
the task's solved threshold. Timings are on a shared machine (medians of ``--repeats``).

    PYTHONPATH=. python benchmarks/bench_classic_control.py               # all three tasks
    PYTHONPATH=. python benchmarks/bench_classic_control.py --seed 0 --seed 1 --seed 2
    PYTHONPATH=. python benchmarks/bench_classic_control.py --env CartPole-v1 --episodes 20
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
sys.path.insert(0, HERE)

from _common import machine

from spmn.errors import CoverageWarning
from spmn.worldmodels.continuous import ContinuousWorldModel

# task: reset box (low, high) of the simulator's state, observation names, model settings
TASKS = {
    # repeat: each logged transition and each decision holds the action for `repeat` env steps
    # (one row = `repeat` steps; the table counts both). A region is wide compared with one
    # step of motion (CartPole: dt = 0.02 s, x moves 0.02 v), so the region model sees a
    # held action's move more clearly than a single step's
    "CartPole-v1": dict(
        box=([-2.4, -1.0, -0.21, -1.5], [2.4, 1.0, 0.21, 1.5]), repeat=3,
        states=["x", "v", "theta", "omega"], n=100_000, rollout=10, gamma=0.995, solved=475.0,
        model=dict(max_regions=2500, split_penalty=0.0, refine_rounds=2, refine_fraction=0.3)),
    "MountainCar-v0": dict(
        box=([-1.2, -0.07], [0.6, 0.07]), repeat=4,
        states=["position", "velocity"], n=100_000, rollout=10, gamma=0.99, solved=-110.0,
        model=dict(max_regions=1000, refine_rounds=1, refine_fraction=0.3)),
    "Pendulum-v1": dict(
        box=([-np.pi, -8.0], [np.pi, 8.0]), repeat=2,
        states=["cos", "sin", "omega"], n=100_000, rollout=10, gamma=0.98, solved=-200.0,
        grid=np.linspace(-2.0, 2.0, 5),
        model=dict(max_regions=1500, refine_rounds=1, refine_fraction=0.3)),
}


def make(env_id: str):
    import gymnasium as gym

    return gym.make(env_id)


def log_transitions(env_id: str, n: int, rollout: int, seed: int) -> dict[str, np.ndarray]:
    """``n`` transitions: resets to uniform random states in the task's box, then random
    actions for up to ``rollout`` steps (module docstring)."""
    task = TASKS[env_id]
    env = make(env_id)
    rng = np.random.default_rng(seed)
    lo, hi = (np.array(b, float) for b in task["box"])
    grid = task.get("grid")
    rows = {k: [] for k in ("s", "a", "r", "s2", "end")}
    env.reset(seed=seed)
    while len(rows["r"]) < n:
        env.reset(seed=int(rng.integers(2**31)))
        env.unwrapped.state = rng.uniform(lo, hi)
        obs = _obs(env)
        for _ in range(rollout):
            a = grid[rng.integers(grid.size)] if grid is not None else int(rng.integers(
                env.action_space.n))
            obs2, r, term, trunc = _step(env, a, grid, task.get("repeat", 1))
            for k, v in zip(rows, (obs, a, r, obs2, term)):
                rows[k].append(v)
            obs = obs2
            if term or trunc:
                break
    S, S2 = np.array(rows["s"][:n], float), np.array(rows["s2"][:n], float)
    out = {nm: S[:, j] for j, nm in enumerate(task["states"])}
    out.update({f"{nm}_next": S2[:, j] for j, nm in enumerate(task["states"])})
    out["a"] = np.array(rows["a"][:n], float)
    out["r"] = np.array(rows["r"][:n], float)
    out["terminated"] = np.array(rows["end"][:n], bool)
    return out


def _step(env, a, grid, repeat: int):
    """``repeat`` env steps with action ``a`` held (rewards summed; ends at an episode end)."""
    total = 0.0
    for _ in range(repeat):
        obs, r, term, trunc, _ = env.step(np.array([a], np.float32) if grid is not None
                                          else int(a))
        total += r
        if term or trunc:
            break
    return obs, total, term, trunc


def _obs(env) -> np.ndarray:
    st = np.asarray(env.unwrapped.state, float)
    if env.spec.id.startswith("Pendulum"):
        return np.array([np.cos(st[0]), np.sin(st[0]), st[1]])
    return st.copy()


def run_policy(env_id: str, act, episodes: int, repeat: int = 1) -> np.ndarray:
    """Undiscounted return of ``act(obs)``, each action held ``repeat`` steps, over
    ``episodes`` real episodes (seeds 0..)."""
    env = make(env_id)
    grid = TASKS[env_id].get("grid")
    out = np.empty(episodes)
    for e in range(episodes):
        obs, _ = env.reset(seed=e)
        total, done = 0.0, False
        while not done:
            a = act(np.asarray(obs, float))
            obs, r, term, trunc = _step(env, a, grid, repeat)
            total += r
            done = term or trunc
        out[e] = total
    return out


def bench(env_id: str, episodes: int, repeats: int, seed: int) -> dict:
    task = TASKS[env_id]
    data = log_transitions(env_id, task["n"], task["rollout"], seed)
    fits, solves, cpu = [], [], []
    for _ in range(repeats):
        c0 = time.process_time()
        t0 = time.perf_counter()
        model = ContinuousWorldModel(task["states"], "a", "r", "terminated",
                                     action_grid=task.get("grid"), refine_gamma=task["gamma"],
                                     progress=False, **task["model"]).fit(data)
        t1 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CoverageWarning)
            sol = model.solve(task["gamma"])
        t2 = time.perf_counter()
        cpu.append(time.process_time() - c0)
        fits.append(t1 - t0)
        solves.append(t2 - t1)
    tree, pol = model.tree_, sol.region_policy
    table = model.action_values(np.arange(model.action_table_.shape[0]))

    def act(obs):
        return table[pol[tree.route(obs[None])[0]]]

    rng = np.random.default_rng(seed)
    grid = task.get("grid")
    n_act = grid.size if grid is not None else make(env_id).action_space.n

    def rand(obs):
        i = int(rng.integers(n_act))
        return grid[i] if grid is not None else i

    ours = run_policy(env_id, act, episodes, task["repeat"])
    base = run_policy(env_id, rand, episodes)  # the uniformly random policy, every step
    goal = None
    if env_id.startswith("MountainCar"):
        goal = float(np.mean(ours > -200))
    return {"env": env_id, "n": task["n"], "steps": task["n"] * task["repeat"],
            "cpu_s": statistics.median(cpu), "fit_s": statistics.median(fits),
            "solve_s": statistics.median(solves), "regions": model.n_regions_,
            "ours": (ours.mean(), ours.std(ddof=1) / np.sqrt(episodes)),
            "random": (base.mean(), base.std(ddof=1) / np.sqrt(episodes)),
            "solved": task["solved"], "goal": goal, "iterations": sol.iterations,
            "residual": sol.residual}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--env", action="append", choices=list(TASKS))
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--seed", type=int, action="append",
                   help="data seed(s) (default 0); one table row per task and seed")
    args = p.parse_args(argv)
    print(machine())
    print(f"{args.episodes} episodes per policy from the env's start states (seeds 0..); "
          f"fit and solve: wall s (median of {args.repeats}), CPU s of both in brackets")
    print("| env | data seed | logged transitions (env steps) | fit s | solve s | regions | "
          "learned policy (mean ± se) | random policy | solved at | goal reached |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for env_id in args.env or list(TASKS):
        for seed in args.seed or [0]:
            b = bench(env_id, args.episodes, args.repeats, seed)
            goal = "" if b["goal"] is None else f"{100 * b['goal']:.0f}%"
            print(f"| {b['env']} | {seed} | {b['n']:,} ({b['steps']:,}) | {b['fit_s']:.1f} | "
                  f"{b['solve_s']:.1f} (CPU {b['cpu_s']:.1f} both) | "
                  f"{b['regions']:,} | {b['ours'][0]:.1f} ± {b['ours'][1]:.1f} | "
                  f"{b['random'][0]:.1f} ± {b['random'][1]:.1f} | {b['solved']:g} | {goal} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
