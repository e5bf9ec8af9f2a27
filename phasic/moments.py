"""Moments by replaying the elimination trace (Roikjer et al. 2022, sections 2.4-2.8).

The trace's reward program maps x = r / lambda to U r, with U = (-S)^-1 for a continuous
and U = (I - T)^-1 for a discrete phase-type distribution, for every vertex at once.
Continuous moments replay a plan compiled from the trace (see ``replay_plan``).
The functions take the low-level graph (:class:`phasic._csr.CSR`); :class:`phasic.Graph`'s
methods document them.
"""

from __future__ import annotations

from math import comb, factorial, isfinite

import numpy as np

from phasic import _core
from phasic._csr import out_rates, reward_vector
from phasic.exceptions import ParameterError
from phasic.traces import graph_trace

#: the highest moment computed: 171! is beyond the largest double
MAX_POWER = 170


def tape_state(g):
    """(trace, tape values, 1/lambda per vertex) for the current weights."""
    g.flush()
    if g.val is None:
        out_rates(g)  # no distribution: initial or discrete out-probabilities over 1, stuck states

        tr = graph_trace(g)
        val = _core.evaluate_tape(tr["code"], tr["a"], tr["b"], tr["c"], g.w, tr)
        xinit = tr["xinit"]
        inv = np.where(xinit >= 0, val[np.maximum(xinit, 0)] if val.size else 0.0, 0.0)
        if not (np.all(np.isfinite(val)) and np.all(np.isfinite(inv))):
            where = "" if g.theta is None else f" at theta={g.theta.tolist()!r}"
            raise ParameterError(
                f"elimination gave non-finite values{where}: some vertex has "
                f"total out-rate 0 or cannot reach an absorbing state"
            )
        g.val, g.inv = val, inv
    return g.trace, g.val, g.inv


def replay_plan(g, tr, eager=False):
    """`tr` (g's trace) compiled for replay (phasic._core.ReplayPlan), or None.

    Compiling costs about as much as one evaluation of the plain tape, so by default a
    graph compiles on its second evaluation of the same trace: a graph evaluated once
    (built, weighted, asked for its moments) pays nothing extra. ``eager``: compile now.
    """
    cached = g.plan
    seen = cached is not None and cached[0] is tr
    if seen and cached[1] is not None:
        return cached[1]
    if not (eager or seen) or g.indptr[0] != 0:
        g.plan = (tr, None)
        return None
    hi = int(g.indptr[1])
    plan = _core.ReplayPlan(tr, int(g.target.size), hi, g.target[:hi])
    g.plan = (tr, plan)
    return plan


def solve(g, r):
    """U r for every vertex (r: per-vertex rewards)."""
    tr, val, inv = tape_state(g)
    x = r * inv
    _core.run_program(tr["xi"], tr["xj"], tr["xs"], val, x, False, tr)
    return x


def alpha_dot(g, x):
    lo, hi = g.indptr[0], g.indptr[1]
    return float(np.dot(g.w[lo:hi], x[g.target[lo:hi]]))


def moments(g, power: int = 2, rewards=None):
    """Raw moments ``[E[Y], ..., E[Y^power]]`` of `g` (see :meth:`phasic.Graph.moments`)."""
    if isinstance(power, bool) or not isinstance(power, (int, np.integer)) or power < 1:
        raise ParameterError(f"power must be a positive integer, got {power!r}")
    if power > MAX_POWER:
        raise ParameterError(
            f"power={power!r}: moments beyond {MAX_POWER} overflow (k! alone exceeds the largest double)"
        )
    if not g.discrete:
        # one call into the core: tape evaluation and `power` replays
        g.flush()
        lo, hi = int(g.indptr[0]), int(g.indptr[1])
        if hi > lo and g.w[lo:hi].sum() > 1 + 1e-12:
            tape_state(g)  # raises: the initial probabilities sum over 1
        tr = graph_trace(g)
        r = None if rewards is None else reward_vector(g, rewards)
        # hierarchical graphs are built to be evaluated many times: compile at once
        plan = replay_plan(g, tr, eager=g.hierarchical)
        if plan is not None:
            res = plan.moments(g.w, int(power), r)
        else:
            if r is None:
                r = reward_vector(g, None)
            lo, hi = int(g.indptr[0]), int(g.indptr[1])
            res = _core.cph_moments_batch(
                tr,
                g.w.reshape(1, -1),
                g.target[lo:hi].astype(np.int64),
                np.arange(lo, hi, dtype=np.int64),
                r,
                int(power),
            )[0].tolist()
        if not all(map(isfinite, res)):
            tape_state(g)  # raises the descriptive error for degenerate weights
            raise ParameterError(f"moments are not finite: {res!r}")
        return res
    r = reward_vector(g, rewards)
    if rewards is not None:
        if power > 2:
            raise ParameterError("discrete reward moments are available up to power=2")
        y1 = solve(g, r)
        out = [alpha_dot(g, y1)]
        if power == 2:
            out.append(2 * alpha_dot(g, solve(g, r * y1)) - alpha_dot(g, solve(g, r * r)))
        return out
    # falling factorial moments E[(tau)_j] = j! pi (U - I)^(j-1) U 1 with U - I = U T: every
    # term is a sum of non-negative numbers (an alternating sum over pi U^m 1 loses all
    # digits by power ~20)
    lam = out_rates(g)
    V = g.vertices_length()
    src = np.repeat(np.arange(V), np.diff(g.indptr))

    def step(v):  # T v
        out = (1.0 - lam) * v + np.bincount(src, weights=g.w * v[g.target], minlength=V)
        out[0] = 0.0
        return out

    v = solve(g, r)
    fact = [alpha_dot(g, v)]
    for j in range(2, power + 1):
        v = solve(g, step(v))
        fact.append(float(factorial(j)) * alpha_dot(g, v))
    return [sum(_stirling2(k, j) * fact[j - 1] for j in range(1, k + 1)) for k in range(1, power + 1)]


def _stirling2(n, k):
    return sum((-1) ** i * comb(k, i) * (k - i) ** n for i in range(k + 1)) // factorial(k)


def covariance(g, rewards1, rewards2) -> float:
    """``Cov(Y1, Y2)`` of two reward-weighted times (see :meth:`phasic.Graph.covariance`)."""
    r1 = reward_vector(g, rewards1, "rewards1")
    r2 = reward_vector(g, rewards2, "rewards2")
    y1, y2 = solve(g, r1), solve(g, r2)
    cross = alpha_dot(g, solve(g, r1 * y2)) + alpha_dot(g, solve(g, r2 * y1))
    if g.discrete:
        cross -= alpha_dot(g, solve(g, r1 * r2))
    return cross - alpha_dot(g, y1) * alpha_dot(g, y2)


def expected_sojourn_time(g) -> np.ndarray:
    """Expected time (discrete: steps) spent in each vertex, ``alpha U``."""
    tr, val, inv = tape_state(g)
    a = np.zeros(g.vertices_length())
    lo, hi = g.indptr[0], g.indptr[1]
    np.add.at(a, g.target[lo:hi], g.w[lo:hi])
    _core.run_program(tr["xi"], tr["xj"], tr["xs"], val, a, True, tr)
    return a * inv
