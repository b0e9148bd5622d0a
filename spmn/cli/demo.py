"""The main job: from logged FrozenLake transitions to a verified exact policy.

``spmn demo``: log a uniformly random policy on FrozenLake-v1 4x4 slippery, learn the world
model, print what it learned, solve it exactly, print the value map and policy arrows beside the
exact V* and π* of the true MDP with the largest error, save the model and write a PNG plot
(matplotlib, the ``plot`` extra; without it the plot is skipped and the output says so).
The FrozenLake map is embedded (no Gymnasium needed).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..reference import TabularMDP
from ..worldmodels.tabular.model import WorldModel

#: FrozenLake 4x4 (Gymnasium's default map): S start, F frozen, H hole, G goal.
FROZENLAKE_4X4 = ("SFFF", "FHFH", "FFFH", "HFFG")
ARROWS = "←↓→↑"
#: Why the plot was skipped when matplotlib cannot be imported.
PLOT_SKIPPED = 'matplotlib is not installed; pip install "spmn[plot]" to get the plot'


def frozenlake_mdp(desc=FROZENLAKE_4X4, slippery: bool = True) -> TabularMDP:
    """FrozenLake's dynamics built here (same as Gymnasium's): a slippery move goes to the
    intended direction or either perpendicular one with probability 1/3 each; reward 1 on
    reaching G; holes and the goal end the episode (time limit 100 steps)."""
    rows, cols = len(desc), len(desc[0])
    S, A = rows * cols, 4
    P = np.zeros((A, S, S))
    R = np.zeros((A, S, S))
    moves = {0: (0, -1), 1: (1, 0), 2: (0, 1), 3: (-1, 0)}
    terminal = np.array([desc[s // cols][s % cols] in "HG" for s in range(S)])
    for s in range(S):
        r, c = divmod(s, cols)
        for a in range(A):
            dirs = [(a - 1) % 4, a, (a + 1) % 4] if slippery else [a]
            for d in dirs:
                dr, dc = moves[d]
                nr, nc = min(max(r + dr, 0), rows - 1), min(max(c + dc, 0), cols - 1)
                t = nr * cols + nc
                P[a, s, t] += 1.0 / len(dirs)
                R[a, s, t] = 1.0 if desc[nr][nc] == "G" else 0.0
    start = np.array([desc[s // cols][s % cols] == "S" for s in range(S)], float)
    return TabularMDP(P, R, terminal=terminal, start=start, max_episode_steps=100)


@dataclass
class DemoResult:
    n_transitions: int
    n_regions: int
    v_start: float
    v_star_start: float
    greedy_true_start: float
    max_error: float
    values: np.ndarray
    policy: np.ndarray
    v_star: np.ndarray
    pi_star: np.ndarray
    explanation: str
    timings: dict = field(default_factory=dict)
    model_path: str | None = None
    plot_path: str | None = None
    plot_skipped: str | None = None


def run_demo(n_transitions: int = 100_000, gamma: float = 0.95, seed: int = 0,
             out_dir: str | Path | None = ".", progress: bool = True) -> DemoResult:
    """Learn FrozenLake from random logs and check the solution against the true MDP."""
    from ..io import save

    mdp = frozenlake_mdp()
    t0 = time.perf_counter()
    logs = mdp.sample_transitions(n_transitions, seed=seed)
    t1 = time.perf_counter()
    model = WorldModel("s", "a", "r", "terminated", progress=progress).fit(logs)
    t2 = time.perf_counter()
    sol = model.solve(gamma)
    t3 = time.perf_counter()
    exact = mdp.policy_iteration(gamma)
    states = np.arange(mdp.n_states)
    values, policy = sol.value(states), sol.policy(states)
    start = int(np.argmax(mdp.start))
    greedy_true = mdp.policy_evaluation(policy, gamma).values
    res = DemoResult(n_transitions, model.n_regions_, float(values[start]),
                     float(exact.values[start]), float(greedy_true[start]),
                     float(np.abs(values - exact.values).max()), values, policy, exact.values,
                     exact.policy, str(model.explain()),
                     {"log": t1 - t0, "fit": t2 - t1, "solve": t3 - t2})
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        res.model_path = str(save(model, out / "frozenlake_model.json"))
        res.plot_path, res.plot_skipped = _plot(res, mdp, out / "frozenlake_values.png")
    return res


def _plot(res: DemoResult, mdp: TabularMDP, path: Path) -> tuple[str | None, str | None]:
    """``(plot path, None)``, or ``(None, why it was skipped)``: the plot is optional."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return None, PLOT_SKIPPED
    from ..plots import value_map

    try:
        value_map(res.values, res.policy, (4, 4), terminal=mdp.terminal, reference=res.v_star,
                  reference_policy=res.pi_star, title="learned world model", path=path)
    except Exception as exc:  # the learned model is saved already: report, do not fail
        return None, f"plotting failed ({type(exc).__name__}: {exc})"
    return str(path), None


def grid_text(values: np.ndarray, policy: np.ndarray, terminal: np.ndarray,
              desc=FROZENLAKE_4X4) -> list[str]:
    """Rows like ``0.181← 0.156↑ ...`` with holes/goal shown by their map letter."""
    lines = []
    cols = len(desc[0])
    for r in range(len(desc)):
        cells = []
        for c in range(cols):
            s = r * cols + c
            tag = desc[r][c] if terminal[s] else ARROWS[int(policy[s])]
            cells.append(f"{values[s]:.3f}{tag}")
        lines.append(" ".join(cells))
    return lines


def format_demo(res: DemoResult) -> str:
    mdp = frozenlake_mdp()
    lines = ["spmn demo: FrozenLake-v1 4x4 slippery, world model learned from "
             f"{res.n_transitions:,} logged transitions of a uniformly random policy", "",
             res.explanation, "",
             f"{'learned model: V and greedy policy':<32}   {'true MDP: V* and π*':<32}"]
    left = grid_text(res.values, res.policy, mdp.terminal)
    right = grid_text(res.v_star, res.pi_star, mdp.terminal)
    lines += [f"{a:<32}   {b:<32}" for a, b in zip(left, right)]
    lines += ["",
              f"regions (interface states): {res.n_regions}",
              f"V(start): model {res.v_start:.6f}, exact V* {res.v_star_start:.6f}, "
              f"error {abs(res.v_start - res.v_star_start):.2e}",
              f"largest |V - V*| over states: {res.max_error:.2e}",
              f"greedy policy's true value at start: {res.greedy_true_start:.6f} "
              f"({100 * res.greedy_true_start / res.v_star_start:.2f}% of V*)",
              "time: " + ", ".join(f"{k} {v:.2f}s" for k, v in res.timings.items())]
    if res.model_path:
        lines.append(f"model saved to {res.model_path}")
    if res.plot_path:
        lines.append(f"plot written to {res.plot_path}")
    if res.plot_skipped:
        lines.append(f"plot skipped: {res.plot_skipped}")
    return "\n".join(lines)
