"""A picture of a small graph (matplotlib, imported only here)."""

from __future__ import annotations

import numpy as np

from phasic.exceptions import ParameterError


def plot_graph(g, ax=None, max_vertices=60, labels=True):
    """Draws `g` with vertices in rows by their shortest jump distance from the start.

    Edges are labelled with their current weight. Returns the matplotlib Axes.
    """
    V = g.vertices_length()
    if V > max_vertices:
        raise ParameterError(f"the graph has {V} vertices; plot_graph draws at most max_vertices={max_vertices}")
    import matplotlib.pyplot as plt

    indptr, target, weight = g.edges()
    depth = np.full(V, -1)
    depth[0] = 0
    frontier = [0]
    while frontier:
        nxt = []
        for u in frontier:
            for z in target[indptr[u] : indptr[u + 1]]:
                if depth[z] < 0:
                    depth[z] = depth[u] + 1
                    nxt.append(int(z))
        frontier = nxt
    depth[depth < 0] = depth.max() + 1
    pos = np.zeros((V, 2))
    for d in np.unique(depth):
        members = np.flatnonzero(depth == d)
        pos[members, 0] = np.arange(members.size) - (members.size - 1) / 2
        pos[members, 1] = -d
    if ax is None:
        _, ax = plt.subplots(figsize=(max(4, np.bincount(depth).max() * 1.2), max(3, depth.max() * 1.1)))
    states = g.states()
    for u in range(V):
        for e in range(indptr[u], indptr[u + 1]):
            z = target[e]
            ax.annotate(
                "", xy=pos[z], xytext=pos[u], arrowprops=dict(arrowstyle="->", color="0.4", shrinkA=12, shrinkB=12)
            )
            if labels:
                mid = (pos[u] + pos[z]) / 2
                ax.text(mid[0], mid[1], f"{weight[e]:.3g}", fontsize=7, color="tab:blue")
    absorbing = np.diff(indptr) == 0
    for v in range(V):
        face = "0.85" if v == 0 else ("tab:red" if absorbing[v] else "white")
        ax.scatter(*pos[v], s=500, c=face, edgecolors="k", zorder=3)
        if labels:
            ax.text(
                *pos[v],
                "S" if v == 0 else ",".join(map(str, states[v])),
                ha="center",
                va="center",
                fontsize=7,
                zorder=4,
            )
    ax.set_axis_off()
    return ax
