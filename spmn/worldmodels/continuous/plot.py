"""A picture of the continuous world model: its regions over two chosen state variables (the
others fixed) with the greedy policy drawn on them. Needs matplotlib (``pip install
"spmn[plot]"``); imported only when called."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ...errors import DataError


def plot_regions(model: Any, solution: Any, x: str, y: str, *,
                 fixed: Mapping[str, float] | None = None, resolution: int = 300,
                 t: int = 0, ax: Any = None, path: str | None = None):
    """Regions of the slice through the state space over ``x`` and ``y`` (the other state
    variables at ``fixed``, default the middle of their logged range), coloured by the greedy
    action, region edges drawn, over the logged range. Returns the matplotlib Axes; ``path``
    saves the figure."""
    import matplotlib

    if ax is None and path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    names = list(model.states)
    for v in (x, y):
        if v not in names:
            raise DataError(f"{v!r} is not a state variable of the model: {names}")
    fixed = dict(fixed or {})
    unknown = set(fixed) - set(names)
    if unknown:
        raise DataError(f"fixed= names {sorted(unknown)} are not state variables {names}")
    i, j = names.index(x), names.index(y)
    gx = np.linspace(model.low_[i], model.high_[i], resolution)
    gy = np.linspace(model.low_[j], model.high_[j], resolution)
    GX, GY = np.meshgrid(gx, gy)
    X = np.empty((GX.size, len(names)))
    for c, nm in enumerate(names):
        X[:, c] = fixed.get(nm, 0.5 * (model.low_[c] + model.high_[c]))
    X[:, i], X[:, j] = GX.ravel(), GY.ravel()
    k = model.tree_.route(X).reshape(GX.shape)
    pol = solution.region_policy[t] if solution.horizon is not None else solution.region_policy
    act = pol[k]
    n_act = model.action_table_.shape[0]
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 5))
    cmap = plt.get_cmap("viridis", n_act)
    mesh = ax.pcolormesh(GX, GY, act, cmap=cmap, vmin=-0.5, vmax=n_act - 0.5, shading="auto")
    edge = np.zeros(k.shape, bool)
    edge[:, 1:] |= k[:, 1:] != k[:, :-1]
    edge[1:, :] |= k[1:, :] != k[:-1, :]
    ax.contour(GX, GY, edge.astype(float), levels=[0.5], colors="white", linewidths=0.4)
    bar = plt.colorbar(mesh, ax=ax, ticks=range(n_act))
    labels = model.action_values(np.arange(n_act))
    bar.set_ticklabels([f"{v:g}" if np.ndim(v) == 0 else str(list(v)) for v in labels])
    bar.set_label("greedy action (" + ", ".join(model.actions) + ")")
    others = ", ".join(f"{nm}={X[0, c]:.3g}" for c, nm in enumerate(names) if c not in (i, j))
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(f"{len(np.unique(k))} of {model.n_regions_} regions in this slice"
                 + (f" ({others})" if others else ""))
    if path is not None:
        ax.figure.savefig(path, dpi=120, bbox_inches="tight")
    return ax
