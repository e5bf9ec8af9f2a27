"""Moments by replaying the elimination trace (Roikjer et al. 2022, sections 2.4-2.8).

The trace's reward program maps x = r / lambda to U r, with U = (-S)^-1 for a continuous
and U = (I - T)^-1 for a discrete phase-type distribution, for every vertex at once.
Continuous moments replay a plan compiled from the trace (see ``_replay_plan``).
These functions are bound as methods of :class:`phasic.Graph`.
"""

from __future__ import annotations

from math import comb, factorial, isfinite

import numpy as np

from phasic import _core
from phasic.exceptions import ParameterError

#: the highest moment computed: 171! is beyond the largest double
MAX_POWER = 170


def _state(g):
    """(trace, tape values, 1/lambda per vertex) for the current weights."""
    g._flush()
    if g._val is None:
        from phasic.distributions import _lam
        from phasic.traces import graph_trace

        _lam(g)  # no distribution: initial or discrete out-probabilities over 1, stuck states

        tr = graph_trace(g)
        val = _core.evaluate_tape(tr["code"], tr["a"], tr["b"], tr["c"], g._w, tr)
        xinit = tr["xinit"]
        inv = np.where(xinit >= 0, val[np.maximum(xinit, 0)] if val.size else 0.0, 0.0)
        if not (np.all(np.isfinite(val)) and np.all(np.isfinite(inv))):
            where = "" if g._theta is None else f" at theta={g._theta.tolist()!r}"
            raise ParameterError(
                f"elimination gave non-finite values{where}: some vertex has "
                f"total out-rate 0 or cannot reach an absorbing state"
            )
        g._val, g._inv = val, inv
    return g._trace, g._val, g._inv


def _replay_plan(g, tr, eager=False):
    """`tr` (g's trace) compiled for replay (phasic._core.ReplayPlan), or None.

    Compiling costs about as much as one evaluation of the plain tape, so by default a
    graph compiles on its second evaluation of the same trace: a graph evaluated once
    (built, weighted, asked for its moments) pays nothing extra. ``eager``: compile now.
    """
    cached = getattr(g, "_plan", None)
    seen = cached is not None and cached[0] is tr
    if seen and cached[1] is not None:
        return cached[1]
    if not (eager or seen) or g._indptr[0] != 0:
        g._plan = (tr, None)
        return None
    hi = int(g._indptr[1])
    plan = _core.ReplayPlan(tr, int(g._target.size), hi, g._target[:hi])
    g._plan = (tr, plan)
    return plan


def _rewards(g, rewards, name="rewards"):
    V = g.vertices_length()
    if rewards is None:
        r = np.ones(V)
    else:
        r = np.asarray(rewards, dtype=np.float64)
        if r.ndim != 1 or r.size != V:
            raise ParameterError(f"{name} has shape {np.shape(rewards)!r}; expected one value per vertex, shape ({V},)")
        bad = np.flatnonzero(~np.isfinite(r))
        if bad.size:
            raise ParameterError(f"{name}[{bad[0]}] is {r[bad[0]]!r}; rewards must be finite")
        r = r.copy()
    r[0] = 0.0
    return r


def _solve(g, r):
    """U r for every vertex (r: per-vertex rewards)."""
    tr, val, inv = _state(g)
    x = r * inv
    _core.run_program(tr["xi"], tr["xj"], tr["xs"], val, x, False, tr)
    return x


def _alpha_dot(g, x):
    lo, hi = g._indptr[0], g._indptr[1]
    return float(np.dot(g._w[lo:hi], x[g._target[lo:hi]]))


def moments(self, power: int = 2, rewards=None):
    """Raw moments ``[E[Y], E[Y^2], ..., E[Y^power]]`` of the time to absorption.

    ``Y`` is the time to absorption, or with `rewards` the reward-weighted time
    ``Y = sum_v r_v * (time spent in vertex v)``. Nothing is simulated or integrated
    numerically: the moments come from replaying the graph's elimination trace.

    Parameters
    ----------
    power : int, default 2
        How many moments, 1 to 170 (``171!`` exceeds the largest double).
    rewards : array_like of float, shape (V,), optional
        One finite reward per vertex (``V = vertices_length()``); the starting vertex's
        reward is ignored. Default: every vertex has reward 1. Discrete graphs accept
        rewards only for ``power <= 2``.

    Returns
    -------
    list of float
        ``power`` numbers; element ``k - 1`` is ``E[Y^k]``.

    Raises
    ------
    ParameterError
        If `power` is not an integer in [1, 170], if `rewards` has the wrong shape or a
        non-finite entry, if a discrete graph gets rewards with ``power > 2``, if the graph
        is parameterised and :meth:`update_weights` was not called, or if the weights
        give no distribution (initial probabilities summing over 1, a state that cannot
        reach absorption).

    See Also
    --------
    expectation, variance, covariance, reward_transform

    Notes
    -----
    With initial vector ``alpha``, sub-intensity matrix ``S`` and ``U = (-S)^-1``, a
    continuous phase-type distribution has ``E[Y^k] = k! alpha (U diag(r))^k 1``
    (Roikjer et al. 2022). A discrete one (sub-transition matrix ``T``,
    ``U = (I - T)^-1``) uses the factorial moments ``E[(tau)_j] = j! pi (U - I)^(j-1) U 1``
    and converts them with Stirling numbers of the second kind.

    Examples
    --------
    An exponential distribution with rate 2 has ``E[Y^k] = k! / 2^k``:

    >>> from phasic import Graph
    >>> g = Graph(state_length=1)
    >>> a = g.find_or_create_vertex([1])
    >>> b = g.find_or_create_vertex([2])
    >>> g.add_edge(g.starting_vertex(), a, 1.0)
    >>> g.add_edge(a, b, 2.0)
    >>> [round(m, 6) for m in g.moments(3)]
    [0.5, 0.5, 0.75]
    """
    if isinstance(power, bool) or not isinstance(power, (int, np.integer)) or power < 1:
        raise ParameterError(f"power must be a positive integer, got {power!r}")
    if power > MAX_POWER:
        raise ParameterError(
            f"power={power!r}: moments beyond {MAX_POWER} overflow (k! alone exceeds the largest double)"
        )
    if not self._discrete:
        # one call into the core: tape evaluation and `power` replays
        from phasic.traces import graph_trace

        self._flush()
        lo, hi = int(self._indptr[0]), int(self._indptr[1])
        if hi > lo and self._w[lo:hi].sum() > 1 + 1e-12:
            _state(self)  # raises: the initial probabilities sum over 1
        tr = graph_trace(self)
        r = None if rewards is None else _rewards(self, rewards)
        # hierarchical graphs are built to be evaluated many times: compile at once
        plan = _replay_plan(self, tr, eager=getattr(self, "_hierarchical", False))
        if plan is not None:
            res = plan.moments(self._w, int(power), r)
        else:
            if r is None:
                r = _rewards(self, None)
            lo, hi = int(self._indptr[0]), int(self._indptr[1])
            res = _core.cph_moments_batch(
                tr,
                self._w.reshape(1, -1),
                self._target[lo:hi].astype(np.int64),
                np.arange(lo, hi, dtype=np.int64),
                r,
                int(power),
            )[0].tolist()
        if not all(map(isfinite, res)):
            _state(self)  # raises the descriptive error for degenerate weights
            raise ParameterError(f"moments are not finite: {res!r}")
        return res
    r = _rewards(self, rewards)
    if rewards is not None:
        if power > 2:
            raise ParameterError("discrete reward moments are available up to power=2")
        y1 = _solve(self, r)
        out = [_alpha_dot(self, y1)]
        if power == 2:
            out.append(2 * _alpha_dot(self, _solve(self, r * y1)) - _alpha_dot(self, _solve(self, r * r)))
        return out
    # falling factorial moments E[(tau)_j] = j! pi (U - I)^(j-1) U 1 with U - I = U T: every
    # term is a sum of non-negative numbers (an alternating sum over pi U^m 1 loses all
    # digits by power ~20)
    from phasic.distributions import _lam

    lam = _lam(self)
    V = self.vertices_length()
    src = np.repeat(np.arange(V), np.diff(self._indptr))

    def step(v):  # T v
        out = (1.0 - lam) * v + np.bincount(src, weights=self._w * v[self._target], minlength=V)
        out[0] = 0.0
        return out

    v = _solve(self, r)
    fact = [_alpha_dot(self, v)]
    for j in range(2, power + 1):
        v = _solve(self, step(v))
        fact.append(float(factorial(j)) * _alpha_dot(self, v))
    return [sum(_stirling2(k, j) * fact[j - 1] for j in range(1, k + 1)) for k in range(1, power + 1)]


def _stirling2(n, k):
    return sum((-1) ** i * comb(k, i) * (k - i) ** n for i in range(k + 1)) // factorial(k)


def expectation(self, rewards=None) -> float:
    """Expected time to absorption ``E[Y]`` (reward-weighted with `rewards`).

    Parameters
    ----------
    rewards : array_like of float, shape (V,), optional
        One finite reward per vertex; the starting vertex's reward is ignored. Default:
        every vertex has reward 1, so ``Y`` is the plain time to absorption.

    Returns
    -------
    float
        ``E[Y] = alpha U r`` with ``U = (-S)^-1`` (discrete: ``(I - T)^-1``).

    Raises
    ------
    ParameterError
        If `rewards` has the wrong shape or a non-finite entry, if a parameterised graph
        has no weights yet (see :meth:`update_weights`), or if the weights give no
        distribution.

    See Also
    --------
    moments, variance, expected_sojourn_time

    Examples
    --------
    The time to the most recent common ancestor of ``n`` genes under Kingman's
    coalescent has ``E[T] = 2 (1 - 1/n)``, which is 1.8 for ``n = 10``:

    >>> from phasic import Graph, with_ipv
    >>> @with_ipv([10])
    ... def kingman(state):
    ...     n = state[0]
    ...     return [] if n <= 1 else [[[n - 1], n * (n - 1) / 2]]
    >>> round(Graph(kingman).expectation(), 6)
    1.8

    Rewards weight the time spent in each vertex. With reward ``n`` (the number of
    lineages) ``Y`` is the total branch length, ``E[L] = 2 sum_{i<n} 1/i``:

    >>> g = Graph(kingman)
    >>> lineages = g.states()[:, 0]
    >>> round(g.expectation(lineages), 6) == round(2 * sum(1 / i for i in range(1, 10)), 6)
    True
    """
    return moments(self, 1, rewards)[0]


def variance(self, rewards=None) -> float:
    """Variance ``Var[Y]`` of the time to absorption (reward-weighted with `rewards`).

    Parameters
    ----------
    rewards : array_like of float, shape (V,), optional
        One finite reward per vertex; the starting vertex's reward is ignored. Default:
        every vertex has reward 1.

    Returns
    -------
    float
        ``E[Y^2] - E[Y]^2``, from :meth:`moments` with ``power=2``.

    Raises
    ------
    ParameterError
        As :meth:`moments`: bad `rewards`, a parameterised graph without weights, or
        weights that give no distribution.

    See Also
    --------
    moments, expectation, covariance

    Examples
    --------
    A sum of independent exponentials with rates 1 and 3 (a chain of two states) has
    variance ``1/1^2 + 1/3^2 = 10/9``:

    >>> from phasic import Graph
    >>> g = Graph(state_length=1)
    >>> s1, s2, done = (g.find_or_create_vertex([i]) for i in (1, 2, 3))
    >>> g.add_edge(0, s1, 1.0)
    >>> g.add_edge(s1, s2, 1.0)
    >>> g.add_edge(s2, done, 3.0)
    >>> round(g.variance(), 6)
    1.111111
    """
    m1, m2 = moments(self, 2, rewards)
    return m2 - m1 * m1


def covariance(self, rewards1, rewards2) -> float:
    """Covariance ``Cov(Y1, Y2)`` of two reward-weighted times to absorption.

    ``Y1`` and ``Y2`` accumulate `rewards1` and `rewards2` along the same path through the
    graph (a bivariate phase-type distribution).

    Parameters
    ----------
    rewards1, rewards2 : array_like of float, shape (V,)
        One finite reward per vertex each; the starting vertex's rewards are ignored.

    Returns
    -------
    float
        ``E[Y1 Y2] - E[Y1] E[Y2]``; ``covariance(r, r)`` equals ``variance(r)``.

    Raises
    ------
    ParameterError
        If either reward vector has the wrong shape or a non-finite entry (the message
        names it), if a parameterised graph has no weights yet, or if the weights give no
        distribution.

    See Also
    --------
    variance, expectation

    Notes
    -----
    Continuous: ``E[Y1 Y2] = alpha U diag(r1) U r2 + alpha U diag(r2) U r1`` with
    ``U = (-S)^-1``. Discrete: the same with ``U = (I - T)^-1`` minus
    ``alpha U diag(r1) r2`` (both rewards counted in the same step).

    Examples
    --------
    Kingman's coalescent from 3 genes spends ``T3 ~ Exp(3)`` with 3 lineages and
    ``T2 ~ Exp(1)`` with 2. The total branch length ``L = 3 T3 + 2 T2`` (reward: the
    number of lineages) and the tree height ``H = T3 + T2`` (reward 1) have
    ``Cov(L, H) = 3 Var(T3) + 2 Var(T2) = 3/9 + 2``:

    >>> import numpy as np
    >>> from phasic import Graph, with_ipv
    >>> @with_ipv([3])
    ... def kingman(state):
    ...     n = state[0]
    ...     return [] if n <= 1 else [[[n - 1], n * (n - 1) / 2]]
    >>> g = Graph(kingman)
    >>> lineages = g.states()[:, 0]
    >>> round(g.covariance(lineages, np.ones(g.vertices_length())), 6)
    2.333333
    """
    r1 = _rewards(self, rewards1, "rewards1")
    r2 = _rewards(self, rewards2, "rewards2")
    y1, y2 = _solve(self, r1), _solve(self, r2)
    cross = _alpha_dot(self, _solve(self, r1 * y2)) + _alpha_dot(self, _solve(self, r2 * y1))
    if self._discrete:
        cross -= _alpha_dot(self, _solve(self, r1 * r2))
    return cross - _alpha_dot(self, y1) * _alpha_dot(self, y2)


def expected_sojourn_time(self) -> np.ndarray:
    """Expected total time (discrete: number of steps) spent in each vertex, ``alpha U``."""
    tr, val, inv = _state(self)
    a = np.zeros(self.vertices_length())
    lo, hi = self._indptr[0], self._indptr[1]
    np.add.at(a, self._target[lo:hi], self._w[lo:hi])
    _core.run_program(tr["xi"], tr["xj"], tr["xs"], val, a, True, tr)
    return a * inv
