"""Distribution functions, sampling and the matrix view, on the low-level graph (:class:`phasic._csr.CSR`;
:class:`phasic.Graph`'s methods document them).

Continuous: adaptive uniformisation on the sparse graph (``csrc/transient.hpp``; ~1e-15
absolute: the rate of each stretch follows the states that still hold mass, so a coalescent's
cost grows with the logarithm of largest rate x time, not with the product). Discrete:
the forward algorithm.
"""

from __future__ import annotations

import numpy as np

from phasic import _core
from phasic._csr import closed_classes, out_rates, positive_subgraph, reachable, reward_vector
from phasic.exceptions import ParameterError


def _check_absorbing(g):
    """Sampling walks until absorption: a reachable class of states that is never left
    (through edges of positive weight) would make it run forever."""
    indptr, target = positive_subgraph(g)
    order, ptr = _core.scc(indptr, target)
    reach = None
    for members in closed_classes(indptr, target, order, ptr):
        reach = reachable(g) if reach is None else reach
        if reach[members].any():
            raise ParameterError(
                f"states {g.states()[members[0]].tolist()} and {members.size - 1} "
                f"others form a class that is reached but never left; the time "
                f"to absorption is infinite"
            )


#: pdf/cdf stop (and refuse) after this many uniformisation steps (a class of states that
#: keeps its mass cycling at a high rate over a long time)
MAX_STEPS = 100_000_000
#: mass below this in a transient state is dropped (adaptive uniformisation, see _cph)
DROP_EPS = 1e-20
#: discrete pmf/cdf refuse jump counts beyond this
MAX_JUMPS = 100_000_000
#: sample() refuses more draws than this in one call (8 bytes each)
MAX_SAMPLES = 1_000_000_000


def _times(t, name="t"):
    arr = np.asarray(t, dtype=np.float64)
    if np.any(np.isnan(arr)):
        raise ParameterError(f"{name} contains NaN: {t!r}")
    if np.any(np.isinf(arr)):
        raise ParameterError(f"{name} contains infinite values: {t!r}")
    return arr


def initial_mass(g, w=None):
    """Mass per vertex at time 0 (the start vertex's out-weights, from `w` or the graph's
    weights; the start vertex holds none)."""
    w = g.w if w is None else w
    p = np.zeros(g.vertices_length())
    lo, hi = g.indptr[0], g.indptr[1]
    np.add.at(p, g.target[lo:hi], w[lo:hi])
    p[0] = 0.0
    return p


def propagate(g, w, lam, p, T, times=(), soj=None, moments=0):
    """Adaptive uniformisation of mass `p` (in place) over time `T` with weights `w` (see
    ``csrc/transient.hpp``): ``(transient mass, absorption density, absorbed mass)`` at
    offsets `times`, the time-power integrals of the transient mass, the counts."""
    tm = np.ascontiguousarray(times, dtype=np.float64)
    trans, flow, absorbed, mom, st = _core.transient(
        g.indptr, g.target, w, lam, p, float(T), tm, soj, moments, DROP_EPS, 200.0, MAX_STEPS
    )
    if st["exceeded"]:
        raise ParameterError(
            f"the distribution up to t={float(T)!r} needs more than {MAX_STEPS:.0e} uniformisation steps: "
            "some states keep their mass moving at a high rate for that long"
        )
    return trans, flow, absorbed, mom, st


def _cph(g, t):
    """pdf and cdf by adaptive uniformisation: one pass over the sorted times; the rate of
    each stretch is the largest out-rate of the states that hold (or can receive) mass then,
    so the cost follows the states still occupied, not the fastest state of the graph."""
    arr = _times(t)
    flat = arr.reshape(-1)
    order = np.argsort(flat, kind="stable")
    ts = np.maximum(flat[order], 0.0)
    lam = out_rates(g)
    p = initial_mass(g)
    defect = max(0.0, 1.0 - float(p.sum()))  # initial mass missing: absorbed at time 0
    T = float(ts[-1]) if ts.size else 0.0
    _, flow, absorbed, _, _ = propagate(g, g.w, lam, p, T, ts)
    pdf = np.empty(flat.size)
    cdf = np.empty(flat.size)
    pdf[order] = flow
    cdf[order] = np.clip(defect + absorbed, 0.0, 1.0)
    neg = flat < 0
    pdf[neg] = 0.0
    cdf[neg] = 0.0
    return pdf.reshape(arr.shape), cdf.reshape(arr.shape)


def _steps(k):
    arr = np.asarray(k)
    if arr.dtype.kind == "f":
        if np.any(~np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ParameterError(f"discrete times must be integers, got {k!r}")
        arr = arr.astype(np.int64)
    elif arr.dtype.kind not in "iu":
        raise ParameterError(f"discrete times must be integers, got {k!r}")
    return arr.astype(np.int64)


def _dph(g, k):
    arr = _steps(k)
    kmax = int(max(arr.max(initial=0), 0))
    if kmax > MAX_JUMPS:
        raise ParameterError(
            f"jump count {kmax} is beyond {MAX_JUMPS} (the forward algorithm steps through every count)"
        )
    lam = out_rates(g)
    pmf, surv = _core.dph_forward(g.indptr, g.target, g.w, lam, kmax)
    pmf[0] = max(0.0, 1.0 - surv[0])
    idx = np.clip(arr, 0, None)
    p = np.where(arr < 0, 0.0, pmf[idx])
    c = np.where(arr < 0, 0.0, 1.0 - surv[idx])
    return p, c


def pdf(g, t):
    """Density of the absorption time of `g` at times `t` (see :meth:`phasic.Graph.pdf`)."""
    if g.discrete:
        raise ParameterError("pdf() is for continuous graphs; use pmf() on a discrete graph")
    return _cph(g, t)[0]


def cdf(g, t):
    """``P(Y <= t)`` of `g` (see :meth:`phasic.Graph.cdf`)."""
    return _dph(g, t)[1] if g.discrete else _cph(g, t)[1]


def pmf(g, k):
    """``P(Y = k)`` of a discrete `g` (see :meth:`phasic.Graph.pmf`)."""
    if not g.discrete:
        raise ParameterError("pmf() is for discrete graphs (Graph(..., discrete=True)); use pdf()")
    return _dph(g, k)[0]


def sample(g, n: int, seed=None, rewards=None) -> np.ndarray:
    """`n` absorption times of `g`, simulated (see :meth:`phasic.Graph.sample`)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ParameterError(f"n must be a non-negative integer, got {n!r}")
    if n > MAX_SAMPLES:
        raise ParameterError(f"n={int(n)} is more than {MAX_SAMPLES} samples in one call; draw them in batches")
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1, np.uint64)[0])
    elif isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ParameterError(f"seed must be an integer, got {seed!r}")
    out_rates(g)
    _check_absorbing(g)
    r = None
    if rewards is not None:
        r = reward_vector(g, rewards)
    lam = out_rates(g)
    return _core.sample(g.indptr, g.target, g.w, lam, r, g.discrete, int(seed) & 0xFFFFFFFFFFFFFFFF, int(n))


def transient_vertices(g) -> np.ndarray:
    """Indices of the transient vertices (neither the start nor absorbing), increasing."""
    lam = out_rates(g)
    idx = np.flatnonzero(lam > 0)
    return idx[idx > 0]


def as_matrices(g):
    """``(alpha, S)``: initial vector and sub-intensity matrix (discrete: sub-transition
    matrix T) over :meth:`transient_vertices`. Dense: for small graphs."""
    tv = transient_vertices(g)
    V = g.vertices_length()
    if tv.size > 20_000:
        raise ParameterError(f"as_matrices() would build a dense {tv.size}x{tv.size} matrix")
    pos = np.full(V, -1)
    pos[tv] = np.arange(tv.size)
    n = np.diff(g.indptr)
    src = np.repeat(np.arange(V), n)
    alpha = np.zeros(tv.size)
    S = np.zeros((tv.size, tv.size))
    lam = out_rates(g)
    for u, z, w in zip(src, g.target, g.w):
        if u == 0:
            if pos[z] >= 0:
                alpha[pos[z]] += w
        elif pos[u] >= 0 and pos[z] >= 0:
            S[pos[u], pos[z]] += w
    d = np.arange(tv.size)
    S[d, d] += (1.0 - lam[tv]) if g.discrete else -lam[tv]
    return alpha, S
