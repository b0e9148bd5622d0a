"""MiniGrid from pixels (``minigrid`` 3.x, optional extra): fully observable RGB frames of the
whole grid at a small tile size, with the true grid state kept beside each frame.

:class:`MiniGridTask` enumerates every grid state reachable from the env's reset (breadth-first,
stepping copies of the real env), records the real env's transitions as a
:class:`~spmn.reference.TabularMDP` over those states and draws one frame per state with the
env's own renderer (``get_frame(highlight=False)``). Logged data then come from that table
(:meth:`sample`, random actions from exploring starts by default), the optimum from value
iteration on it and the shortest path to the goal by breadth-first search (two computations of
our own that must agree), and a frame policy is run in the real env by :meth:`rollout`.

Reward: 1 on reaching the goal, else 0, discounted by γ. MiniGrid's own reward
``1 − 0.9 t / max_steps`` depends on the step count, which no frame shows; discounting plays its
part here. The actions are a subset of MiniGrid's (``ACTIONS``): the useless "done" (and
"drop", which only multiplies key positions) are left out.
"""
from __future__ import annotations

import copy
from collections import deque
from typing import Any, Callable

import numpy as np

from ..errors import DataError, SpmnError
from .pixels import Corruption, PixelMDP

# MiniGrid action ids: 0 left, 1 right, 2 forward, 3 pickup, 4 drop, 5 toggle, 6 done
ACTIONS = {"MiniGrid-Empty-6x6-v0": (0, 1, 2), "MiniGrid-DoorKey-5x5-v0": (0, 1, 2, 3, 5)}
ACTION_NAMES = ("left", "right", "forward", "pickup", "drop", "toggle", "done")


def _make(env_id: str, **kwargs: Any):
    try:
        import gymnasium as gym
        import minigrid  # noqa: F401  (registers the MiniGrid ids)
    except ImportError:
        raise SpmnError("MiniGridTask needs minigrid: pip install 'minigrid>=3,<4'") from None
    try:
        return gym.make(env_id, **kwargs)
    except Exception as exc:  # gymnasium raises several kinds for an unknown id
        raise DataError(f"cannot make MiniGrid env {env_id!r}: {exc}") from None


def state_key(u: Any) -> bytes:
    """The true grid state of an unwrapped MiniGrid env: the grid's object encoding (types,
    colours, door states, keys on the floor), the agent's cell and direction, what it carries."""
    carry = b"-" if u.carrying is None else f"{u.carrying.type}:{u.carrying.color}".encode()
    pos = np.asarray(u.agent_pos, np.int64)
    return u.grid.encode().tobytes() + pos.tobytes() + bytes([int(u.agent_dir)]) + carry


class MiniGridTask:
    """A MiniGrid env as a tabular MDP over its reachable grid states, with one RGB frame each.

    ``env_id``: a MiniGrid id (``ACTIONS`` lists the ones set up here; others need ``actions``);
    ``tile_size``: pixels per grid cell of the frames (float32 in [0, 1], (H, W, 3));
    ``seed``: the reset seed, which fixes the layout and the start; ``max_states`` bounds the
    enumeration. Attributes: ``frames_`` (S, H, W, 3), ``mdp`` (start = the reset state),
    ``actions`` (MiniGrid ids of the action codes 0..A−1), ``positions_`` (S, 2) agent cells.
    """

    def __init__(self, env_id: str = "MiniGrid-Empty-6x6-v0", tile_size: int = 4, seed: int = 0,
                 actions: tuple[int, ...] | None = None, max_states: int = 20000) -> None:
        from ..reference import TabularMDP

        if int(tile_size) < 2:
            raise DataError(f"tile_size must be at least 2 pixels, got {tile_size}")
        acts = ACTIONS.get(env_id) if actions is None else tuple(int(a) for a in actions)
        if acts is None:
            raise DataError(f"no default actions for {env_id!r}: pass actions=(...) "
                            f"(MiniGrid ids {dict(enumerate(ACTION_NAMES))})")
        if not acts or any(a < 0 or a > 6 for a in acts):
            raise DataError(f"actions must be MiniGrid action ids 0..6, got {acts}")
        self.env_id, self.tile_size, self.seed = env_id, int(tile_size), int(seed)
        self.actions = acts
        env = _make(env_id)
        try:
            env.reset(seed=self.seed)
            u = env.unwrapped
            keys: dict[bytes, int] = {state_key(u): 0}
            snaps, frames, pos = [copy.deepcopy(u)], [self._frame(u)], [tuple(u.agent_pos)]
            ends = [False]
            nxt, rew = [[0] * len(acts)], [[0.0] * len(acts)]
            queue = deque([0])
            while queue:
                s = queue.popleft()
                row_n, row_r = [], []
                for a in acts:
                    c = copy.deepcopy(snaps[s])
                    c.step_count = 0  # no truncation while enumerating
                    _, r, done, _, _ = c.step(a)
                    k = state_key(c)
                    if k not in keys:
                        if len(keys) >= int(max_states):
                            raise DataError(f"{env_id} has more than max_states={max_states} "
                                            "reachable states")
                        keys[k] = len(snaps)
                        snaps.append(c)
                        frames.append(self._frame(c))
                        pos.append(tuple(c.agent_pos))
                        ends.append(bool(done))
                        nxt.append([keys[k]] * len(acts))   # an end state is absorbing
                        rew.append([0.0] * len(acts))
                        if not done:
                            queue.append(keys[k])
                    row_n.append(keys[k])
                    row_r.append(1.0 if (done and r > 0) else 0.0)
                nxt[s], rew[s] = row_n, row_r
        finally:
            env.close()
        S, A = len(snaps), len(acts)
        self.next_ = np.array(nxt, np.int64)          # (S, A) next state of the real env
        self.reward_ = np.array(rew, np.float64)      # (S, A) 1 on reaching the goal
        ends = np.array(ends, bool)                   # states that end an episode
        P = np.zeros((A, S, S))
        P[np.arange(A)[None, :], np.arange(S)[:, None], self.next_] = 1.0
        self.frames_ = np.stack(frames).astype(np.float32) / 255.0
        self.sprites_ = None
        self.positions_ = np.array(pos, np.int64)
        self.terminal_ = ends
        self.mdp = TabularMDP(P, self.reward_.T, terminal=ends, start=0, max_episode_steps=100)
        self.n_states, self.n_actions = S, A

    def _frame(self, u: Any) -> np.ndarray:
        return np.asarray(u.get_frame(highlight=False, tile_size=self.tile_size), np.uint8)

    @property
    def frame_shape(self) -> tuple[int, ...]:
        return self.frames_.shape[1:]

    def pixels(self, noise: float = 0.0, starts: str = "uniform") -> PixelMDP:
        """A :class:`PixelMDP` over these frames (Gaussian pixel noise ``noise``). ``starts``:
        "uniform" (exploring starts: episodes begin in any live state) or "reset" (the env's)."""
        from ..reference import TabularMDP

        if starts not in ("uniform", "reset"):
            raise DataError(f"starts must be 'uniform' or 'reset', got {starts!r}")
        mdp = self.mdp
        if starts == "uniform":
            mdp = TabularMDP(self.mdp.P, self.reward_.T, terminal=self.terminal_,
                             max_episode_steps=self.mdp.max_episode_steps)
        return PixelMDP(mdp, self, Corruption(noise=noise))

    def sample(self, n: int, seed: int | np.random.Generator | None = None, noise: float = 0.0,
               starts: str = "uniform", policy: Any = "random") -> dict[str, np.ndarray]:
        """Log ``n`` transitions of random actions (``PixelMDP.sample``: frames, actions (codes
        into ``actions``), rewards, next_frames, terminated, truncated, true states)."""
        return self.pixels(noise, starts).sample(n, seed=seed, policy=policy)

    # ------------------------------------------------------------------ the optimum, two ways
    def shortest_path(self) -> int:
        """Fewest steps from the start to the goal, by breadth-first search over the table."""
        dist = np.full(self.n_states, -1, np.int64)
        dist[0] = 0
        queue = deque([0])
        while queue:
            s = queue.popleft()
            if self.terminal_[s]:
                continue
            for a in range(self.n_actions):
                if self.reward_[s, a] > 0:
                    return int(dist[s] + 1)
                t = int(self.next_[s, a])
                if dist[t] < 0:
                    dist[t] = dist[s] + 1
                    queue.append(t)
        raise SpmnError(f"the goal of {self.env_id} cannot be reached from the start")

    def optimal_values(self, gamma: float, tol: float = 1e-12) -> np.ndarray:
        """V* of every state by value iteration on the deterministic table (our own loop)."""
        if not 0.0 <= gamma < 1.0:
            raise DataError(f"gamma must lie in [0, 1), got {gamma!r}")
        V = np.zeros(self.n_states)
        live = ~self.terminal_
        while True:
            Q = self.reward_ + gamma * V[self.next_]
            new = np.where(live, Q.max(1), 0.0)
            if np.abs(new - V).max() <= tol:
                return new
            V = new

    def optimal_value(self, gamma: float) -> float:
        """V*(start); equals γ^(d−1) for the shortest path d (checked)."""
        v = float(self.optimal_values(gamma)[0])
        d = self.shortest_path()
        if abs(v - gamma ** (d - 1)) > 1e-9:
            raise SpmnError(f"value iteration {v} and the shortest path {d} disagree")
        return v

    # ------------------------------------------------------------------ the real env
    def rollout(self, act: Callable[[np.ndarray], Any], gamma: float, max_steps: int = 100,
                ) -> dict[str, Any]:
        """Run the frame policy ``act`` (frames (1, H, W, 3) float32 -> action code) in the real
        MiniGrid env from its reset: discounted return Σ γ^t r_t (r = 1 at the goal), steps,
        whether the goal was reached, and MiniGrid's own reward."""
        env = _make(self.env_id, max_steps=int(max_steps))
        try:
            env.reset(seed=self.seed)
            u = env.unwrapped
            ret, own, reached = 0.0, 0.0, False
            for t in range(int(max_steps)):
                frame = self._frame(u).astype(np.float32)[None] / 255.0
                a = int(np.asarray(act(frame)).reshape(-1)[0])
                if not 0 <= a < self.n_actions:
                    raise DataError(f"the policy returned action {a}; codes are 0..{self.n_actions - 1}")
                _, r, done, trunc, _ = env.step(self.actions[a])
                own += float(r)
                if done and r > 0:
                    ret += gamma ** t
                    reached = True
                if done or trunc:
                    break
            return {"return": ret, "steps": t + 1, "reached": reached, "minigrid_reward": own}
        finally:
            env.close()
