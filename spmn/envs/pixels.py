"""Pixel observations of tabular MDPs: renderers, corruptions (noise, shifts, clutter) and a
pixel MDP that logs frames with the true state kept beside each one, for evaluation only.

Two renderers draw one clean frame per state (cached): :class:`GridRenderer`, dependency-free,
for gridworlds given as a map of tiles; :class:`GymRenderer`, Gymnasium's ``rgb_array`` frames
(FrozenLake, CliffWalking, Taxi; needs pygame) shrunk by block averaging. A
:class:`Corruption` then draws per-frame nuisance: ``x = clip(shift(x) + clutter + N(0, σ²))``.
The nuisance is independent across frames, so it carries no information about the dynamics.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import DataError, SpmnError

# grey levels of the dependency-free renderer's tiles (agent drawn on top, except on "hidden")
TILE_LEVEL = {"F": 0.55, "S": 0.62, "H": 0.08, "G": 0.3, "C": 0.2, "W": 0.4}
TILE_RGB = {"F": (0.75, 0.85, 0.95), "S": (0.8, 0.9, 0.75), "H": (0.05, 0.1, 0.3),
            "G": (0.95, 0.8, 0.2), "C": (0.35, 0.25, 0.2), "W": (0.4, 0.4, 0.4)}
CHUNK = 8192


def as_rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    """A numpy Generator from an int seed, a Generator (used as is) or None."""
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _frozenlake_desc(kwargs: dict) -> list[str]:
    desc = kwargs.get("desc")
    if desc is None:
        from gymnasium.envs.toy_text.frozen_lake import MAPS

        desc = MAPS[kwargs.get("map_name") or "4x4"]
    return ["".join(c.decode() if isinstance(c, bytes) else str(c) for c in row) for row in desc]


class GridRenderer:
    """Frames of a gridworld: state ``s`` puts the agent in cell ``(s // cols, s % cols)``.

    ``desc``: rows of tile letters (F floor, S start, H hole, G goal, C cliff, W wall);
    ``cell``: pixels per grid cell; ``hidden``: tiles on which the agent is not drawn (it fell
    in), so those states share one frame, as in Gymnasium's FrozenLake; ``rgb``: 3 colour
    channels instead of one grey level. Frames are float32 in [0, 1], shape (H, W) or (H, W, 3).
    """

    def __init__(self, desc: Sequence[str], cell: int = 6, hidden: str = "H",
                 rgb: bool = False) -> None:
        rows = [str(r) for r in desc]
        if not rows or any(len(r) != len(rows[0]) for r in rows) or not rows[0]:
            raise DataError(f"desc must be equal-length non-empty rows of tiles, got {desc!r}")
        bad = {c for r in rows for c in r} - set(TILE_LEVEL)
        if bad:
            raise DataError(f"unknown tiles {sorted(bad)} in desc; known: {sorted(TILE_LEVEL)}")
        if int(cell) < 3:
            raise DataError(f"cell must be at least 3 pixels, got {cell}")
        self.desc, self.cell, self.hidden, self.rgb = rows, int(cell), str(hidden), bool(rgb)
        self.rows, self.cols = len(rows), len(rows[0])
        self.n_states = self.rows * self.cols
        drawn = [self._draw(s) for s in range(self.n_states)]
        self.frames_ = np.stack([f for f, _ in drawn])
        self.sprites_ = np.stack([m for _, m in drawn])  # the agent's pixels in each frame

    @classmethod
    def from_mdp(cls, mdp: Any, cell: int = 6, rgb: bool = False) -> "GridRenderer":
        """The map of a FrozenLake or CliffWalking :class:`TabularMDP` read from Gymnasium."""
        env_id = getattr(mdp, "env_id", None) or ""
        if env_id.startswith("FrozenLake"):
            kw = dict(mdp.env_kwargs)
            if env_id.startswith("FrozenLake8x8") and kw.get("desc") is None:
                kw["map_name"] = kw.get("map_name") or "8x8"
            return cls(_frozenlake_desc(kw), cell=cell, hidden="H", rgb=rgb)
        if env_id.startswith("CliffWalking"):
            return cls(["F" * 12] * 3 + ["S" + "C" * 10 + "G"], cell=cell, hidden="C", rgb=rgb)
        raise SpmnError(f"GridRenderer draws FrozenLake and CliffWalking maps, not {env_id!r}; "
                        "pass desc= for another gridworld or use GymRenderer")

    @property
    def frame_shape(self) -> tuple[int, ...]:
        return self.frames_.shape[1:]

    def _draw(self, s: int) -> tuple[np.ndarray, np.ndarray]:
        c = self.cell
        ch = 3 if self.rgb else 1
        img = np.zeros((self.rows * c, self.cols * c, ch), np.float32)
        sprite = np.zeros(img.shape[:2], bool)
        for r, row in enumerate(self.desc):
            for q, tile in enumerate(row):
                img[r * c:(r + 1) * c, q * c:(q + 1) * c] = \
                    TILE_RGB[tile] if self.rgb else TILE_LEVEL[tile]
        ar, aq = divmod(s, self.cols)
        if self.desc[ar][aq] not in self.hidden:
            m = max(1, c // 6)  # agent: bright square with a dark core, inside a margin
            y0, x0 = ar * c + m, aq * c + m
            img[y0:y0 + c - 2 * m, x0:x0 + c - 2 * m] = 1.0
            sprite[y0:y0 + c - 2 * m, x0:x0 + c - 2 * m] = True
            core = (c - 2 * m) // 3
            if core:
                y1, x1 = y0 + (c - 2 * m - core) // 2, x0 + (c - 2 * m - core) // 2
                img[y1:y1 + core, x1:x1 + core] = 0.2
        return (img if self.rgb else img[..., 0]), sprite


def gridworld(desc: Sequence[str], slip: float = 0.0, step_reward: float = 0.0,
              max_episode_steps: int = 200) -> Any:
    """A :class:`~spmn.reference.TabularMDP` of a map of tiles, drawn by :class:`GridRenderer`.

    State ``s`` is cell ``(s // cols, s % cols)``; actions 0..3 move left, down, right, up (as
    FrozenLake's), into walls ("W") or off the map they stay put. With probability ``slip`` the
    move goes to one of the two perpendicular directions instead (half each). Reaching "G"
    gives 1 and ends the episode, "H" and "C" end it with 0; every other step gives
    ``step_reward``. Episodes start at "S" (else uniformly on the floor). Wall cells are
    never entered.
    """
    from ..reference import TabularMDP

    rows = [str(r) for r in desc]
    GridRenderer(rows, cell=3)  # the same checks of the map
    if not 0.0 <= float(slip) < 1.0:
        raise DataError(f"slip must lie in [0, 1), got {slip!r}")
    R_, C_ = len(rows), len(rows[0])
    S = R_ * C_
    tile = np.array([c for r in rows for c in r])
    moves = ((0, -1), (1, 0), (0, 1), (-1, 0))
    P = np.zeros((4, S, S))
    R = np.zeros((4, S, S))
    end = np.isin(tile, list("GHC"))
    for s in range(S):
        r, c = divmod(s, C_)
        for a in range(4):
            if end[s] or tile[s] == "W":
                P[a, s, s] = 1.0
                continue
            for b, pb in ((a, 1.0 - slip), ((a + 1) % 4, slip / 2), ((a + 3) % 4, slip / 2)):
                if pb == 0:
                    continue
                rr, cc = r + moves[b][0], c + moves[b][1]
                t = rr * C_ + cc if 0 <= rr < R_ and 0 <= cc < C_ and tile[rr * C_ + cc] != "W" \
                    else s
                P[a, s, t] += pb
                R[a, s, t] = 1.0 if tile[t] == "G" else float(step_reward)
    start = np.flatnonzero(tile == "S")
    floor = ~end & (tile != "W")
    st = (np.eye(S)[start[0]] if start.size else floor / floor.sum())
    return TabularMDP(P, R, terminal=end | (tile == "W"), start=st,
                      max_episode_steps=max_episode_steps)


class GymRenderer:
    """Gymnasium's ``rgb_array`` frame of each state of a toy-text env, shrunk to ``size``.

    The env's state is set directly (``env.unwrapped.s``) with no last action, so a frame
    depends on the state only. ``size=(h, w)`` must divide the native frame after cropping
    (block averages); ``gray`` averages the colour channels. Needs pygame; SDL's dummy video
    driver is used so no window opens.
    """

    def __init__(self, env_id: str, size: tuple[int, int] | None = (32, 32), gray: bool = True,
                 **env_kwargs: Any) -> None:
        import os

        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        try:
            import gymnasium as gym
            import pygame  # noqa: F401
        except ImportError:
            raise SpmnError("GymRenderer needs gymnasium and pygame (pip install pygame); "
                            "GridRenderer needs neither") from None
        env = gym.make(env_id, render_mode="rgb_array", **env_kwargs)
        try:
            u = env.unwrapped
            env.reset(seed=0)
            self.n_states = int(u.observation_space.n)
            raw = []
            for s in range(self.n_states):
                u.s, u.lastaction = s, None
                if hasattr(u, "taxi_orientation"):
                    u.taxi_orientation = 0
                raw.append(np.asarray(env.render(), np.float32) / 255.0)
        finally:
            env.close()
        frames = np.stack(raw)
        if size is not None:
            frames = _block_mean(frames, int(size[0]), int(size[1]))
        if gray:
            frames = frames.mean(axis=-1)
        self.env_id, self.size, self.gray = env_id, size, gray
        self.frames_ = np.ascontiguousarray(frames, np.float32)
        self.sprites_ = None  # the agent's pixels are not known: clutter may cover it

    @classmethod
    def from_mdp(cls, mdp: Any, size: tuple[int, int] | None = (32, 32),
                 gray: bool = True) -> "GymRenderer":
        if not getattr(mdp, "env_id", None):
            raise SpmnError("GymRenderer.from_mdp needs a TabularMDP built by from_gymnasium")
        return cls(mdp.env_id, size=size, gray=gray, **mdp.env_kwargs)

    @property
    def frame_shape(self) -> tuple[int, ...]:
        return self.frames_.shape[1:]


def _block_mean(frames: np.ndarray, h: int, w: int) -> np.ndarray:
    n, H, W, C = frames.shape
    if h < 1 or w < 1 or h > H or w > W:
        raise DataError(f"size {(h, w)} must lie between (1, 1) and the native frame {(H, W)}")
    fh, fw = H // h, W // w
    top, left = (H - fh * h) // 2, (W - fw * w) // 2
    crop = frames[:, top:top + fh * h, left:left + fw * w]
    return crop.reshape(n, h, fh, w, fw, C).mean(axis=(2, 4))


@dataclass(frozen=True)
class Corruption:
    """Per-frame nuisance: Gaussian pixel noise ``noise`` (σ), a random integer translation of
    up to ``shift`` pixels on each axis (edge pixels fill the border), ``clutter`` distractor
    rectangles (sides 1..``clutter_size`` px, random grey level) at random places, behind the
    agent unless ``occlude`` (so the state stays visible in every frame); ``clip`` keeps pixels
    in [0, 1]. All draws are independent across frames."""

    noise: float = 0.0
    shift: int = 0
    clutter: int = 0
    clutter_size: int = 3
    clip: bool = True
    occlude: bool = False

    def __post_init__(self) -> None:
        if not (np.isfinite(self.noise) and self.noise >= 0):
            raise DataError(f"noise must be a finite σ >= 0, got {self.noise!r}")
        if self.shift < 0 or self.clutter < 0 or self.clutter_size < 1:
            raise DataError("shift and clutter must be >= 0 and clutter_size >= 1")

    def apply(self, frames: np.ndarray, seed: int | np.random.Generator | None = None,
              sprites: np.ndarray | None = None) -> np.ndarray:
        """Corrupted copy of ``frames`` (n, H, W[, C]) as float32; ``sprites`` (n, H, W) marks
        the agent's pixels, kept in front of the clutter unless ``occlude``."""
        rng = as_rng(seed)
        x = np.array(frames, np.float32, copy=True)
        n, H, W = x.shape[:3]
        fg = None if sprites is None or self.occlude else np.array(sprites, bool, copy=True)
        if self.shift:
            k = self.shift
            off = rng.integers(-k, k + 1, size=(n, 2))
            pad = [(0, 0), (k, k), (k, k)] + [(0, 0)] * (x.ndim - 3)
            padded = np.pad(x, pad, mode="edge")
            for dy in range(-k, k + 1):
                for dx in range(-k, k + 1):
                    rows = np.flatnonzero((off[:, 0] == dy) & (off[:, 1] == dx))
                    if rows.size:
                        x[rows] = padded[rows, k - dy:k - dy + H, k - dx:k - dx + W]
                        if fg is not None:
                            fg[rows] = np.pad(fg[rows], [(0, 0), (k, k), (k, k)])[
                                :, k - dy:k - dy + H, k - dx:k - dx + W]
        if self.clutter:
            yy, xx = np.arange(H)[None, :, None], np.arange(W)[None, None, :]
            for _ in range(self.clutter):
                hw = rng.integers(1, self.clutter_size + 1, size=(n, 2))
                y0, x0 = rng.integers(0, H, size=n), rng.integers(0, W, size=n)
                level = rng.random(n).astype(np.float32)
                m = ((yy >= y0[:, None, None]) & (yy < (y0 + hw[:, 0])[:, None, None])
                     & (xx >= x0[:, None, None]) & (xx < (x0 + hw[:, 1])[:, None, None]))
                if fg is not None:
                    m &= ~fg
                if x.ndim == 4:
                    m = m[..., None]
                x = np.where(m, level.reshape((n,) + (1,) * (x.ndim - 1)), x)
        if self.noise:
            x += rng.normal(0.0, self.noise, size=x.shape).astype(np.float32)
        if self.clip:
            np.clip(x, 0.0, 1.0, out=x)
        return x


class PixelMDP:
    """A :class:`~spmn.reference.TabularMDP` observed through frames.

    ``renderer`` draws the clean frame of each observation number (``GridRenderer`` of the
    MDP's map by default); ``corruption`` (or the ``noise``/``shift``/``clutter`` shortcuts)
    draws the nuisance. :meth:`sample` logs transitions as a Gymnasium loop would (the frame
    after step t is the frame before step t+1) with the true states beside the frames.
    """

    def __init__(self, mdp: Any, renderer: Any = None, corruption: Corruption | None = None,
                 *, noise: float = 0.0, shift: int = 0, clutter: int = 0) -> None:
        self.mdp = mdp
        self.renderer = GridRenderer.from_mdp(mdp) if renderer is None else renderer
        self.corruption = corruption if corruption is not None else \
            Corruption(noise=noise, shift=shift, clutter=clutter)
        n_obs = int(np.max(mdp.observation)) + 1
        if self.renderer.frames_.shape[0] < n_obs:
            raise DataError(f"the renderer draws {self.renderer.frames_.shape[0]} states but the "
                            f"MDP reports observations up to {n_obs - 1}")

    @property
    def frame_shape(self) -> tuple[int, ...]:
        return self.renderer.frames_.shape[1:]

    def clean(self, states: Sequence[int] | np.ndarray) -> np.ndarray:
        """Uncorrupted frames of observation numbers ``states``."""
        s = np.asarray(states, np.int64)
        if s.size and (s.min() < 0 or s.max() >= self.renderer.frames_.shape[0]):
            raise DataError(f"states must lie in [0, {self.renderer.frames_.shape[0]})")
        return self.renderer.frames_[s]

    def render(self, states: Sequence[int] | np.ndarray,
               seed: int | np.random.Generator | None = None) -> np.ndarray:
        """Corrupted frames of observation numbers ``states`` (float32), in chunks."""
        rng = as_rng(seed)
        s = np.asarray(states, np.int64).ravel()
        out = np.empty((s.size,) + self.frame_shape, np.float32)
        for lo in range(0, s.size, CHUNK):
            part = s[lo:lo + CHUNK]
            sprites = None if self.renderer.sprites_ is None else self.renderer.sprites_[part]
            out[lo:lo + CHUNK] = self.corruption.apply(self.clean(part), rng, sprites)
        return out

    def sample(self, n: int, seed: int | np.random.Generator | None = None,
               policy: Any = "random", epsilon: float | None = None) -> dict[str, np.ndarray]:
        """Log ``n`` transitions: ``frames, actions, rewards, next_frames, terminated,
        truncated`` and, for evaluation only, the true ``states`` and ``next_states``."""
        rng = as_rng(seed)
        log = self.mdp.sample_transitions(n, policy=policy, epsilon=epsilon, seed=rng)
        s, s2 = log["s"], log["s_next"]
        cont = ~(log["terminated"] | log["truncated"])
        cont[-1:] = False
        # one frame per time step: when the episode goes on, the frame after step t is the
        # frame before step t+1 (same noise); episode ends get a frame of their own
        frames = self.render(s, rng)
        nxt = np.empty_like(frames)
        idx = np.flatnonzero(cont)
        nxt[idx] = frames[idx + 1]
        end = np.flatnonzero(~cont)
        nxt[end] = self.render(s2[end], rng)
        return {"frames": frames, "actions": log["a"], "rewards": log["r"], "next_frames": nxt,
                "terminated": log["terminated"], "truncated": log["truncated"],
                "states": s, "next_states": s2}

    def frame_classes(self) -> np.ndarray:
        """Class of each observation number: states whose clean frames are identical (e.g.
        FrozenLake's holes) share a class, numbered by first appearance."""
        flat = self.renderer.frames_.reshape(self.renderer.frames_.shape[0], -1)
        _, first, inv = np.unique(flat, axis=0, return_index=True, return_inverse=True)
        rank = np.empty(first.size, np.int64)
        rank[np.argsort(first)] = np.arange(first.size)
        return rank[inv.ravel()]

    def optimal_value(self, gamma: float) -> float:
        """V* at the start distribution (exact, from the tabular model)."""
        return self.mdp.start_value(self.mdp.value_iteration(gamma, tol=1e-12).values)

    def policy_value(self, act: Callable[[np.ndarray], np.ndarray], gamma: float,
                     views: int = 16, seed: int | np.random.Generator | None = None) -> float:
        """True value at the start distribution of the frame-based policy ``act``.

        Each live state is rendered ``views`` times (with corruption); the policy's action
        frequencies over those frames make a stochastic policy π(a | s), evaluated exactly on
        the tabular MDP: V^π = (I - γ P_π)^{-1} r_π.
        """
        rng = as_rng(seed)
        mdp = self.mdp
        S, A = mdp.n_states, mdp.n_actions
        probs = np.full((S, A), 1.0 / A)
        live = np.flatnonzero(~mdp.terminal)
        obs = np.repeat(mdp.observation[live], views)
        a = np.asarray(act(self.render(obs, rng)), np.int64).reshape(-1)
        if a.shape[0] != obs.shape[0] or (a.size and (a.min() < 0 or a.max() >= A)):
            raise DataError(f"the policy must return one action in [0, {A}) per frame")
        counts = np.zeros((live.size, A))
        np.add.at(counts, (np.repeat(np.arange(live.size), views), a), 1.0)
        probs[live] = counts / views
        return mdp.start_value(mdp.policy_evaluation(probs, gamma).values)
