"""The learned world model as a simulator: Gymnasium environments and batched rollouts that
draw (s', r, terminated) from the model's p(s', r | s, a).

``to_env(model)`` gives a ``gymnasium.Env``; ``to_env(model, num_envs=N)`` a
``gymnasium.vector.VectorEnv`` whose N copies advance in one batched pass; ``rollout(model,
policy, n_episodes, horizon, seed)`` runs a policy (a solution, a callable or "random") and
returns the trajectories as columns with their returns. Every model kind has its dynamics
(how one batched step is drawn, and why):

- tabular (and encoded, over its codes): inverse-CDF tables, one compiled (numba) pass with a
  numpy twin, bit for bit equal (:mod:`.tabular`);
- factored: each factor's tree leaf, one vectorized pass per factor (:mod:`.factored`);
- Gaussian: the circuit's own sample pass on the kernels' backends (:mod:`.gaussian`);
- continuous: the region tree routes the state, each next-state variable is drawn from its
  (region, action) leaf, one vectorized numpy pass per variable (:mod:`.continuous`).

The models' ``to_env`` and ``rollout`` methods call these functions; this package reads the
fitted models by their attributes and never imports the model classes.
"""
from __future__ import annotations

from typing import Any

from ...errors import DataError
from .continuous import ContinuousDynamics
from .dynamics import InvalidActionError
from .factored import FactoredDynamics
from .gaussian import GaussianDynamics
from .rollout import Rollout
from .rollout import rollout as _rollout
from .tabular import TabularDynamics

__all__ = [
    "ContinuousDynamics",
    "FactoredDynamics",
    "GaussianDynamics",
    "InvalidActionError",
    "Rollout",
    "TabularDynamics",
    "dynamics_for",
    "rollout",
    "to_env",
]


def dynamics_for(model: Any, start: Any = None, start_probs: Any = None,
                 backend: str | None = None):
    """The batched dynamics of a fitted model of any kind (read by its fitted attributes)."""
    if hasattr(model, "dynamics") and hasattr(model, "num_envs"):
        raise DataError("pass a world model, not an environment")
    if hasattr(model, "world_model_") or (hasattr(model, "world_model") and
                                          hasattr(model, "encoder")):
        model._check_fitted()
        return TabularDynamics(model.world_model_, start, start_probs, backend)
    if hasattr(model, "tree_") and hasattr(model, "tables_"):
        return TabularDynamics(model, start, start_probs, backend)
    if hasattr(model, "mdp_") or hasattr(model, "trees_"):
        return FactoredDynamics(model, start, start_probs, backend)
    if hasattr(model, "leaves_") and hasattr(model, "landing_probabilities"):
        return ContinuousDynamics(model, start, start_probs, backend)
    if hasattr(model, "linear_dynamics"):
        return GaussianDynamics(model, start, start_probs, backend)
    if hasattr(model, "states") and hasattr(model, "fit"):
        model._check_fitted()  # raises NotFittedError for a model kind above when unfitted
    raise DataError(f"no simulator for {type(model).__name__}: expected a fitted WorldModel, "
                    "EncodedWorldModel, FactoredWorldModel, GaussianWorldModel or "
                    "ContinuousWorldModel")


def to_env(model: Any, num_envs: int | None = None, *, start: Any = None,
           start_probs: Any = None, max_episode_steps: int | None = None,
           render_mode: str | None = None, seed: int | None = None,
           backend: str | None = None):
    """A Gymnasium env (``num_envs=None``) or vector env of ``num_envs`` copies of ``model``.

    ``start``/``start_probs``: the reset distribution (see the dynamics classes; default: the
    logged states); ``max_episode_steps``: truncation; ``render_mode``: "ansi" or None;
    ``seed``: seeds ``np_random`` now (``reset(seed=)`` does too); ``backend``: the sampler's.
    """
    from .env import ModelEnv, ModelVectorEnv

    dyn = dynamics_for(model, start, start_probs, backend)
    if num_envs is None:
        env = ModelEnv(dyn, max_episode_steps=max_episode_steps, render_mode=render_mode)
    else:
        env = ModelVectorEnv(dyn, num_envs, max_episode_steps=max_episode_steps,
                             render_mode=render_mode)
    if seed is not None:
        import gymnasium as gym

        env._np_random, env._np_random_seed = gym.utils.seeding.np_random(seed)
    return env


def rollout(model: Any, policy: Any = "random", n_episodes: int = 100, horizon: int = 100,
            seed: Any = None, *, gamma: float | None = None, start: Any = None,
            start_probs: Any = None, columns: bool = True, backend: str | None = None) -> Rollout:
    """Episodes of ``policy`` in ``model`` (see :func:`.rollout.rollout`)."""
    return _rollout(dynamics_for(model, start, start_probs, backend), policy, n_episodes,
                    horizon, seed, gamma=gamma, columns=columns)
