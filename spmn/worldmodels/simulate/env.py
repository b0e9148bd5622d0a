"""Gymnasium environments made from a learned world model: :class:`ModelEnv` (one copy) and
:class:`ModelVectorEnv` (N copies stepped in one batched pass of the model's dynamics).

Both follow Gymnasium's conventions: ``reset(seed=, options=)`` seeds ``np_random``, ``step``
returns ``(obs, reward, terminated, truncated, info)``, an action outside the action space
raises :class:`~.dynamics.InvalidActionError` (a ``gymnasium.error.InvalidAction`` and a
:class:`~spmn.errors.DataError`) naming it. The vector env autoresets on the next step
(``AutoresetMode.NEXT_STEP``, Gymnasium's default): the step after an episode ends ignores that
environment's action and returns its first observation with reward 0.
"""
from __future__ import annotations

from typing import Any

import numpy as np

try:
    import gymnasium as gym
    from gymnasium.vector import AutoresetMode, VectorEnv
    from gymnasium.vector.utils import batch_space
except ImportError as exc:  # pragma: no cover - gymnasium is an optional extra
    raise ImportError("model.to_env() needs gymnasium: pip install 'spmn[gym]'") from exc

from ...errors import DataError
from .dynamics import InvalidActionError


def _limit(max_episode_steps: int | None) -> int | None:
    if max_episode_steps is None:
        return None
    if int(max_episode_steps) != max_episode_steps or max_episode_steps < 1:
        raise DataError(f"max_episode_steps must be an integer >= 1, got {max_episode_steps!r}")
    return int(max_episode_steps)


class ModelEnv(gym.Env):
    """One environment whose steps are drawn from a learned model's p(s', r | s, a).

    ``dynamics``: a :mod:`spmn.worldmodels.simulate` dynamics object (what ``model.to_env()``
    builds); ``max_episode_steps``: truncate episodes after that many steps (None: never);
    ``render_mode``: None or "ansi" (the state, the last action and reward as text).
    """

    def __init__(self, dynamics: Any, *, max_episode_steps: int | None = None,
                 render_mode: str | None = None) -> None:
        self.dynamics = dynamics
        self.metadata = {"render_modes": ["ansi"]}
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise DataError(f"render_mode must be None or one of "
                            f"{self.metadata['render_modes']}, got {render_mode!r}")
        self.render_mode = render_mode
        self.max_episode_steps = _limit(max_episode_steps)
        self.observation_space, self.action_space = dynamics.spaces()
        self._state = dynamics.new_state(1)
        self._t = 0
        self._over = True
        self._last: tuple[Any, float] | None = None

    def _obs(self):
        o = self.dynamics.observe(self._state)[0]
        if isinstance(self.observation_space, gym.spaces.Discrete):
            return int(o)
        return np.asarray(o, dtype=self.observation_space.dtype)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.dynamics.step(self._state, np.zeros(1, np.int64), np.ones(1, np.bool_),
                           self.np_random)
        self._t, self._over, self._last = 0, False, None
        return self._obs(), {}

    def step(self, action: Any):
        if self._over:
            raise DataError("the episode is over (or reset() was never called): call reset()")
        if not self.action_space.contains(action):
            raise InvalidActionError(f"action {action!r} is outside the action space "
                                     f"{self.action_space} of {self.dynamics.action_names}")
        if isinstance(self.action_space, gym.spaces.Discrete):  # checked by contains above
            joint = np.array([int(action)], np.int64)
        else:
            a = np.asarray(action)
            joint = self.dynamics.joint_actions(a.reshape(1, *a.shape) if a.ndim else
                                                a.reshape(1), 1)
        reward, term = self.dynamics.step(self._state, joint, np.zeros(1, np.bool_),
                                          self.np_random)
        self._t += 1
        terminated = bool(term[0])
        truncated = bool(self.max_episode_steps is not None and self._t >= self.max_episode_steps
                         and not terminated)
        self._over = terminated or truncated
        self._last = (action, float(reward[0]))
        return self._obs(), float(reward[0]), terminated, truncated, {}

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        text = f"t={self._t}: {self.dynamics.describe(self._state, 0)}"
        if self._last is not None:
            text += f" <- action {self._last[0]!r}, reward {self._last[1]:.6g}"
        return text + "\n"


class ModelVectorEnv(VectorEnv):
    """``num_envs`` copies of a model's environment, all stepped in one batched pass.

    Observations are (num_envs,) codes for one discrete state variable, (num_envs, d) codes or
    floats otherwise; actions (num_envs,) codes, (num_envs, m) codes or floats. ``seed`` at
    construction or in :meth:`reset` fixes every draw; ``options={"reset_mask": mask}`` resets
    only the masked environments.
    """

    def __init__(self, dynamics: Any, num_envs: int, *, max_episode_steps: int | None = None,
                 render_mode: str | None = None) -> None:
        if int(num_envs) != num_envs or num_envs < 1:
            raise DataError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        self.dynamics = dynamics
        self.num_envs = int(num_envs)
        self.metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP,
                         "render_modes": ["ansi"]}
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise DataError(f"render_mode must be None or one of "
                            f"{self.metadata['render_modes']}, got {render_mode!r}")
        self.render_mode = render_mode
        self.max_episode_steps = _limit(max_episode_steps)
        self.single_observation_space, self.single_action_space = dynamics.spaces()
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._state = dynamics.new_state(self.num_envs)
        self._t = np.zeros(self.num_envs, np.int64)
        self._done = np.ones(self.num_envs, np.bool_)
        self._zero = np.zeros(self.num_envs, np.int64) if dynamics.kind != "gaussian" else \
            np.zeros((self.num_envs, len(dynamics.action_names)))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self._np_random, self._np_random_seed = gym.utils.seeding.np_random(seed)
        mask = np.ones(self.num_envs, np.bool_)
        if options and "reset_mask" in options:
            mask = np.asarray(options["reset_mask"])
            if mask.shape != (self.num_envs,) or mask.dtype != np.bool_:
                raise DataError(f"options['reset_mask'] must be {self.num_envs} booleans, got "
                                f"shape {mask.shape} of {mask.dtype}")
        rng = self.np_random
        if mask.all():
            self.dynamics.step(self._state, self._zero, mask, rng)
        else:  # the others keep their states: step a copy of the masked ones only
            sub = {k: v[mask] for k, v in self._state.items()}
            self.dynamics.step(sub, self._zero[mask], np.ones(int(mask.sum()), np.bool_), rng)
            for k, v in sub.items():
                self._state[k][mask] = v
        self._t[mask] = 0
        self._done[mask] = False
        return self.dynamics.observe(self._state), {}

    def step(self, actions: Any):
        n = self.num_envs
        done = self._done
        a = np.asarray(actions)
        if self.dynamics.kind == "tabular" and len(self.dynamics.action_names) == 1 and \
                a.shape == (n,) and a.dtype.kind in "iu":
            joint = a  # the compiled pass checks the codes (and names a bad one)
        else:
            joint = self.dynamics.joint_actions(a, n)
        reward, term = self.dynamics.step(self._state, joint, done, self.np_random)
        t = self._t
        t += 1
        t[done] = 0
        trunc = np.zeros(n, np.bool_) if self.max_episode_steps is None else \
            (t >= self.max_episode_steps) & ~term
        self._done = term | trunc
        return self.dynamics.observe(self._state), reward, term, trunc, {}

    def render(self) -> tuple[str, ...] | None:
        if self.render_mode != "ansi":
            return None
        return tuple(f"env {i}: {self.dynamics.describe(self._state, i)}"
                     for i in range(self.num_envs))
