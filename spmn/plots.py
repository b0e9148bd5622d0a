"""Plots (matplotlib; optional extra ``plot``): value maps with policy arrows,
Bellman residuals, error against data size, and circuit drawings.

Every function returns the matplotlib Figure and writes it to ``path`` when one is given.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .errors import SpmnError

#: FrozenLake / Gymnasium toy-text action order: left, down, right, up.
GRID_ARROWS = {0: (-1, 0), 1: (0, 1), 2: (1, 0), 3: (0, -1)}


def _plt():
    try:
        import os
        import sys

        import matplotlib

        # headless scripts and the CLI draw off-screen; a notebook or a GUI session that has
        # already chosen a backend (or MPLBACKEND) keeps it, so figures display inline there
        if ("matplotlib.pyplot" not in sys.modules and "MPLBACKEND" not in os.environ
                and "ipykernel" not in sys.modules):
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - depends on the extra
        raise SpmnError("plots need matplotlib: pip install 'spmn[plot]'") from None
    return plt


def _save(fig, path):
    if path is not None:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig


def value_map(values: Sequence[float], policy: Sequence[int] | None, shape: tuple[int, int], *,
              terminal: Sequence[bool] | None = None, reference: Sequence[float] | None = None,
              reference_policy: Sequence[int] | None = None, labels: Sequence[str] | None = None,
              title: str = "", path=None):
    """Grid-world value map with the policy's arrows (``reference``: a second panel, e.g. V*)."""
    plt = _plt()
    panels = [(np.asarray(values, float), policy, title or "learned model")]
    if reference is not None:
        panels.append((np.asarray(reference, float), reference_policy, "exact (true MDP)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.0), squeeze=False)
    vmax = max(float(np.max(p[0])) for p in panels)
    vmin = min(float(np.min(p[0])) for p in panels)
    term = np.zeros(len(panels[0][0]), bool) if terminal is None else np.asarray(terminal, bool)
    for ax, (v, pol, name) in zip(axes[0], panels):
        grid = v.reshape(shape)
        im = ax.imshow(grid, cmap="viridis", vmin=vmin, vmax=vmax)
        for s in range(v.size):
            r, c = divmod(s, shape[1])
            text = labels[s] if labels is not None else f"{v[s]:.3f}"
            ax.text(c, r + 0.3, text, ha="center", va="center", fontsize=7, color="white")
            if pol is not None and not term[s]:
                dx, dy = GRID_ARROWS.get(int(pol[s]), (0, 0))
                ax.arrow(c - 0.15 * dx, r - 0.15 * dy - 0.1, 0.3 * dx, 0.3 * dy, head_width=0.12,
                         color="white", length_includes_head=True)
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="value")
    return _save(fig, path)


def residuals(residuals: Sequence[float], *, title: str = "Bellman residual", path=None):
    """|T V - V|∞ per value-iteration sweep, log scale."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.semilogy(np.arange(1, len(residuals) + 1), np.maximum(residuals, 1e-300))
    ax.set_xlabel("sweep")
    ax.set_ylabel("|T V − V|∞")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, path)


def error_vs_data(sizes: Sequence[int], errors: Sequence[float], *, ylabel: str = "|V − V*|",
                  title: str = "error against the amount of data", path=None):
    """Error against the number of logged transitions, log-log."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.loglog(sizes, np.maximum(errors, 1e-16), "o-")
    ax.set_xlabel("transitions")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, path)


def circuit(c, *, max_nodes: int = 150, path=None):
    """Layered drawing (small circuits: every node by depth) or, above ``max_nodes``, the graph
    of node types per layer."""
    plt = _plt()
    g = c.to_networkx()
    root = len(c.nodes) - 1
    depth = {root: 0}
    for i in range(root, -1, -1):  # parents have larger ids
        for j in g.successors(i):
            depth[j] = max(depth.get(j, 0), depth.get(i, 0) + 1)
    colors = {"sum": "tab:blue", "product": "tab:orange", "max": "tab:red", "utility": "tab:green",
              "interface": "tab:purple"}
    fig, ax = plt.subplots(figsize=(10, 6))
    if g.number_of_nodes() <= max_nodes:
        layers: dict[int, list[int]] = {}
        for n, d in depth.items():
            layers.setdefault(d, []).append(n)
        pos = {n: ((k + 1) / (len(ns) + 1), -d) for d, ns in layers.items() for k, n in enumerate(ns)}
        for u, v in g.edges():
            ax.plot([pos[u][0], pos[v][0]], [pos[u][1], pos[v][1]], color="0.7", lw=0.6, zorder=1)
        for n, (x, y) in pos.items():
            kind = g.nodes[n]["kind"]
            ax.scatter([x], [y], s=60, color=colors.get(kind, "0.4"), zorder=2)
        ax.set_title(f"circuit: {g.number_of_nodes()} nodes by depth")
    else:
        kinds = sorted({g.nodes[n]["kind"] for n in g})
        dmax = max(depth.values())
        counts = np.zeros((len(kinds), dmax + 1))
        for n, d in depth.items():
            counts[kinds.index(g.nodes[n]["kind"]), d] += 1
        bottom = np.zeros(dmax + 1)
        for k, row in zip(kinds, counts):
            ax.barh(-np.arange(dmax + 1), row, left=bottom, color=colors.get(k, "0.4"), label=k)
            bottom += row
        ax.legend()
        ax.set_xlabel("nodes")
        ax.set_ylabel("depth")
        ax.set_title(f"circuit: {g.number_of_nodes()} nodes, node types per layer")
    ax.set_xticks([]) if g.number_of_nodes() <= max_nodes else None
    return _save(fig, path)
