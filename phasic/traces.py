"""Elimination traces: recording, structure keys and the trace cache."""
from __future__ import annotations

import numpy as np

from phasic import _core
from phasic.exceptions import GraphConstructionError


def _check_closed_classes(g, tr):
    """A cycle of states that can never be left makes every moment infinite."""
    order, ptr = tr["order"], tr["scc_ptr"]
    V = g.vertices_length()
    comp = np.full(V, -1)
    sizes = np.diff(ptr)
    comp[order] = np.repeat(np.arange(sizes.size), sizes)
    n = np.diff(g._indptr)
    src = np.repeat(np.arange(V), n)
    keep = src > 0
    src, tgt = src[keep], g._target[keep]
    leaving = comp[src] != comp[tgt]
    has_exit = np.bincount(comp[src[leaving]], minlength=sizes.size)
    closed = np.flatnonzero((sizes > 1) & (has_exit == 0))
    if closed.size:
        v = order[ptr[closed[0]]]
        raise GraphConstructionError(
            f"states {g.states()[v].tolist()!r} and {int(sizes[closed[0]]) - 1} others form a closed "
            f"class that never reaches an absorbing state; the time to absorption is infinite")


def graph_trace(g):
    """The elimination trace of `g`'s structure (recorded on first use)."""
    if g._trace is None:
        tr = _core.record_trace(g._indptr, g._target)
        _check_closed_classes(g, tr)
        g._trace = tr
    return g._trace
