"""Reward transformation (Roikjer et al. 2022, Alg. 2; DPH integer rewards, section 2.9)."""

from __future__ import annotations

import numpy as np

from phasic.exceptions import ParameterError

#: a discrete reward transform adds a state per unit of reward; more than this is refused
MAX_DISCRETE_STATES = 10_000_000


def reward_transform(self, rewards):
    """A new graph whose time to absorption is this graph's reward-weighted time.

    If ``Y = sum_v r_v * (time spent in vertex v)``, the returned graph's time to absorption
    has the distribution of ``Y``, so every method (:meth:`pdf`, :meth:`cdf`,
    :meth:`sample`, :meth:`moments`, ...) applies to the reward-weighted time.

    Parameters
    ----------
    rewards : array_like of float, shape (V,)
        One reward per vertex (``V = vertices_length()``), finite and ``>= 0``; the
        starting vertex's reward is ignored. A discrete graph needs integer rewards.

    Returns
    -------
    Graph
        A new graph; this one is not changed. Vertices with reward 0 are gone (a discrete
        graph gains a vertex per extra unit of reward), so vertex indices differ.

    Raises
    ------
    ParameterError
        If `rewards` has the wrong shape, a negative or non-finite entry, non-integer
        entries on a discrete graph, or discrete rewards summing over ``1e7`` (one state
        per unit of reward); also if a parameterised graph has no weights yet (see
        :meth:`update_weights`) or the weights give no distribution.

    See Also
    --------
    moments : moments of the reward-weighted time without a new graph.

    Notes
    -----
    Continuous (Roikjer et al. 2022, Algorithm 2): a vertex with reward ``r > 0`` keeps
    its edges with the out-rates divided by ``r``; a vertex with reward 0 is removed and
    its parents are linked to its children with the embedded chain's probabilities.
    Discrete: a vertex with reward ``k`` becomes a chain of ``k`` visits (``k = 0``: it is
    removed in the same way).

    Examples
    --------
    The total branch length of Kingman's coalescent from 3 genes is the time weighted
    by the number of lineages, ``L = 3 T3 + 2 T2`` with ``T3 ~ Exp(3)``, ``T2 ~ Exp(1)``:
    ``E[L] = 1 + 2 = 3`` and ``Var(L) = 9/9 + 4 = 5``:

    >>> from phasic import Graph, with_ipv
    >>> @with_ipv([3])
    ... def kingman(state):
    ...     n = state[0]
    ...     return [] if n <= 1 else [[[n - 1], n * (n - 1) / 2]]
    >>> g = Graph(kingman)
    >>> lengths = g.reward_transform(g.states()[:, 0])
    >>> round(lengths.expectation(), 6), round(lengths.variance(), 6)
    (3.0, 5.0)
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
