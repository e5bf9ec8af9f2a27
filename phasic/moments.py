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
    """The first `power` raw moments ``[E[Y], E[Y^2], ...]`` of the (reward-weighted) time.

    Continuous: ``E[Y^k] = k! alpha (U diag r)^k 1``. Discrete: from factorial moments
    ``E[(tau)_j] = j! pi T^(j-1) U^j 1`` (rewards supported for power <= 2).
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
    """Expected (reward-weighted) time to absorption."""
    return moments(self, 1, rewards)[0]


def variance(self, rewards=None) -> float:
    """Variance of the (reward-weighted) time to absorption."""
    m1, m2 = moments(self, 2, rewards)
    return m2 - m1 * m1


def covariance(self, rewards1, rewards2) -> float:
    """``Cov(Y1, Y2)`` of two reward-weighted times (multivariate phase-type)."""
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
