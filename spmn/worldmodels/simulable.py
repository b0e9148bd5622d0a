"""``to_env`` and ``rollout`` for every model kind: one mixin, the work in :mod:`.simulate`
(imported on first use, so a kind never needs gymnasium to load)."""
from __future__ import annotations

from typing import Any


class Simulable:
    """The learned model as a simulator (:mod:`spmn.worldmodels.simulate`)."""

    def to_env(self, num_envs: int | None = None, **kwargs: Any):
        """The learned model as a Gymnasium env drawing from p(s', r | s, a) (``num_envs``: a
        vector env of that many copies); see :func:`spmn.worldmodels.simulate.to_env`."""
        from .simulate import to_env

        return to_env(self, num_envs, **kwargs)

    def rollout(self, policy: Any = "random", n_episodes: int = 100, horizon: int = 100,
                seed: Any = None, **kwargs: Any):
        """Batched episodes of ``policy`` (a solution, a callable or "random") in the model, as
        columns with their returns; see :func:`spmn.worldmodels.simulate.rollout`."""
        from .simulate import rollout

        return rollout(self, policy, n_episodes, horizon, seed, **kwargs)
