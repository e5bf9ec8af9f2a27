"""Reward transformation (Roikjer et al. 2022, Alg. 2; DPH integer rewards, section 2.9)."""

from __future__ import annotations

import numpy as np

from phasic.exceptions import ParameterError

#: a discrete reward transform adds a state per unit of reward; more than this is refused
MAX_DISCRETE_STATES = 10_000_000


def reward_transform(self, rewards):
    """A new graph whose absorption time is the reward-weighted time of this one.

    Continuous: a vertex with reward r > 0 has its out-rates divided by r; a vertex with
    reward 0 is removed, its parents linked to its children with the embedded-chain
    probabilities. Discrete: rewards must be non-negative integers; a vertex with reward k
    becomes a chain of k visits.
    """
    from phasic.distributions import _lam
    from phasic.graph import Graph

    self._flush()
    V = self.vertices_length()
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim != 1 or r.size != V:
        raise ParameterError(f"rewards has shape {np.shape(rewards)!r}; expected ({V},)")
    if not np.all(np.isfinite(r)) or np.any(r < 0):
        raise ParameterError(f"rewards must be finite and >= 0, got {rewards!r}")
    if self._discrete and np.any(r != np.round(r)):
        raise ParameterError("rewards of a discrete graph must be integers")
    if self._discrete and r[1:].sum() > MAX_DISCRETE_STATES:
        raise ParameterError(
            f"discrete rewards summing to {float(r[1:].sum())!r} would expand the graph "
            f"to more than {MAX_DISCRETE_STATES} states (one per unit of reward)"
        )
    lam = _lam(self)
    out = [dict() for _ in range(V)]
    inn = [set() for _ in range(V)]
    n = np.diff(self._indptr)
    src = np.repeat(np.arange(V), n)
    for u, z, w in zip(src.tolist(), self._target.tolist(), self._w.tolist()):
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
                    continue  # a self-transition; continuous: no effect, discrete: implicit
                out[u][z] = out[u].get(z, 0.0) + puv * w / lv
                inn[z].add(u)
        for z in out[v]:
            inn[z].discard(v)
        removed[v] = True
        out[v] = {}
    keep = np.flatnonzero(~removed)
    states = self.states()
    g = Graph(state_length=self.state_length, discrete=self._discrete)
    new = {v: i for i, v in enumerate(keep.tolist())}
    g._space = type(g._space).from_states(states[keep])
    for v in keep.tolist():
        scale = 1.0
        if not self._discrete and v > 0 and transient[v]:
            scale = 1.0 / r[v]
        for z, w in out[v].items():
            if self._discrete and v > 0 and transient[v] and r[v] > 1:
                continue  # added below through the chain
            g.add_edge(new[v], new[z], w * scale)
    if self._discrete:
        for v in keep.tolist():
            k = int(r[v])
            if v == 0 or not transient[v] or k <= 1:
                continue
            # v -> h1 -> ... -> h_{k-1}: the k-th step leaves with v's probabilities
            prev = new[v]
            for _ in range(k - 1):
                h = g.create_vertex(states[v])
                g.add_edge(prev, h, 1.0)
                prev = h
            for z, w in out[v].items():
                g.add_edge(prev, new[z], w)
            # the self-loop of the chain's end returns to the chain's start
            stay = 1.0 - sum(out[v].values())
            if stay > 0:
                g.add_edge(prev, new[v], stay)
    return g
