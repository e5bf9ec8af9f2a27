"""Reward transformation (Roikjer et al. 2022, Alg. 2; DPH integer rewards, section 2.9)."""

from __future__ import annotations

import numpy as np

from phasic._csr import CSR, out_rates
from phasic.exceptions import ParameterError

#: a discrete reward transform adds a state per unit of reward; more than this is refused
MAX_DISCRETE_STATES = 10_000_000


def reward_transform(g, rewards):
    """The low-level graph whose absorption time is `g`'s reward-weighted time (see
    :meth:`phasic.Graph.reward_transform`)."""
    g.flush()
    V = g.vertices_length()
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim != 1 or r.size != V:
        raise ParameterError(f"rewards has shape {np.shape(rewards)!r}; expected ({V},)")
    if not np.all(np.isfinite(r)) or np.any(r < 0):
        raise ParameterError(f"rewards must be finite and >= 0, got {rewards!r}")
    if g.discrete and np.any(r != np.round(r)):
        raise ParameterError("rewards of a discrete graph must be integers")
    if g.discrete and r[1:].sum() > MAX_DISCRETE_STATES:
        raise ParameterError(
            f"discrete rewards summing to {float(r[1:].sum())!r} would expand the graph "
            f"to more than {MAX_DISCRETE_STATES} states (one per unit of reward)"
        )
    lam = out_rates(g)
    out = [dict() for _ in range(V)]
    inn = [set() for _ in range(V)]
    n = np.diff(g.indptr)
    src = np.repeat(np.arange(V), n)
    for u, z, w in zip(src.tolist(), g.target.tolist(), g.w.tolist()):
        out[u][z] = out[u].get(z, 0.0) + w
        inn[z].add(u)
    transient = (lam > 0) & (np.arange(V) > 0)
    removed = np.zeros(V, bool)
    for v in np.flatnonzero(transient & (r == 0)).tolist():
        lv = sum(out[v].values())
        for u in list(inn[v]):
            if removed[u] or v not in out[u]:
                continue
            puv = out[u].pop(v)
            for z, w in out[v].items():
                if z == u:
                    continue  # a g-transition; continuous: no effect, discrete: implicit
                out[u][z] = out[u].get(z, 0.0) + puv * w / lv
                inn[z].add(u)
        for z in out[v]:
            inn[z].discard(v)
        removed[v] = True
        out[v] = {}
    keep = np.flatnonzero(~removed)
    states = g.states()
    res = CSR.empty(g.state_length, g.discrete)
    new = {v: i for i, v in enumerate(keep.tolist())}
    res.space = type(res.space).from_states(states[keep])
    for v in keep.tolist():
        scale = 1.0
        if not g.discrete and v > 0 and transient[v]:
            scale = 1.0 / r[v]
        for z, w in out[v].items():
            if g.discrete and v > 0 and transient[v] and r[v] > 1:
                continue  # added below through the chain
            res.add_edge(new[v], new[z], w * scale)
    if g.discrete:
        for v in keep.tolist():
            k = int(r[v])
            if v == 0 or not transient[v] or k <= 1:
                continue
            # v -> h1 -> ... -> h_{k-1}: the k-th step leaves with v's probabilities
            prev = new[v]
            for _ in range(k - 1):
                h = int(res.space.create_unindexed(states[v]))
                res.add_edge(prev, h, 1.0)
                prev = h
            for z, w in out[v].items():
                res.add_edge(prev, new[z], w)
            # the g-loop of the chain's end returns to the chain's start
            stay = 1.0 - sum(out[v].values())
            if stay > 0:
                res.add_edge(prev, new[v], stay)
    return res
