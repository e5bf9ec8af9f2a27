"""Distribution functions, sampling and the matrix view (bound as `Graph` methods).

Continuous: uniformisation on the sparse graph (exact to ~1e-12 absolute; the number of
steps follows from the largest exit rate and the largest time, no tuning knob). Discrete:
the forward algorithm.
"""

from __future__ import annotations

import numpy as np

from phasic import _core
from phasic.exceptions import ParameterError


def _lam(g):
    """Total out-weight per vertex, once per weights; checks what makes no distribution:
    initial probabilities summing over 1, discrete out-probabilities summing over 1, and a
    reachable state that has out-edges but total weight 0 (it would never be left)."""
    g._flush()
    if g._lam is None:
        n = np.diff(g._indptr)
        src = np.repeat(np.arange(n.size), n)
        lam = np.bincount(src, weights=g._w, minlength=n.size).astype(np.float64)
        if lam.size and lam[0] > 1 + 1e-12:
            raise ParameterError(
                f"the initial probabilities (the start vertex's out-weights) sum to {float(lam[0])!r} > 1"
            )
        if g._discrete and np.any(lam[1:] > 1 + 1e-12):
            v = int(np.argmax(lam[1:])) + 1
            raise ParameterError(
                f"discrete graph: out-probabilities of state {g.states()[v].tolist()} sum to {float(lam[v])!r} > 1"
            )
        stuck = (n > 0) & (lam == 0)
        stuck[:1] = False
        if stuck.any():
            hit = np.flatnonzero(stuck & reachable(g))
            if hit.size:
                raise ParameterError(
                    f"state {g.states()[hit[0]].tolist()} is reached but its out-weights are all 0: it is never left"
                )
        g._lam = lam
    return g._lam


def reachable(g):
    """Vertices reachable from the start through edges of positive weight (bool, per vertex)."""
    indptr, target, w = g._indptr, g._target, g._w
    seen = np.zeros(indptr.size - 1, bool)
    seen[0] = True
    frontier = np.zeros(1, np.int64)
    while frontier.size:
        lo, cnt = indptr[frontier], indptr[frontier + 1] - indptr[frontier]
        idx = np.repeat(lo - np.cumsum(cnt) + cnt, cnt) + np.arange(int(cnt.sum()))
        nxt = target[idx[w[idx] > 0]]
        nxt = np.unique(nxt[~seen[nxt]])
        seen[nxt] = True
        frontier = nxt.astype(np.int64)
    return seen


def _check_absorbing(g):
    """Sampling walks until absorption: a reachable class of states that is never left
    (through edges of positive weight) would make it run forever."""
    from phasic import _core

    keep = g._w > 0
    V = g.vertices_length()
    src = np.repeat(np.arange(V), np.diff(g._indptr))[keep]
    tgt = g._target[keep]
    indptr = np.zeros(V + 1, np.int64)
    np.cumsum(np.bincount(src, minlength=V), out=indptr[1:])
    order, ptr = _core.scc(indptr, np.ascontiguousarray(tgt, np.int32))
    sizes = np.diff(ptr)
    comp = np.empty(V, np.int64)
    comp[order] = np.repeat(np.arange(sizes.size), sizes)
    leaving = comp[src] != comp[tgt]
    has_exit = np.bincount(comp[src[leaving]], minlength=sizes.size) > 0
    closed = np.flatnonzero((sizes > 1) & ~has_exit)
    if closed.size:
        reach = reachable(g)
        for c in closed.tolist():
            members = order[ptr[c] : ptr[c + 1]]
            if reach[members].any():
                raise ParameterError(
                    f"states {g.states()[members[0]].tolist()} and {members.size - 1} "
                    f"others form a class that is reached but never left; the time "
                    f"to absorption is infinite"
                )


#: pdf/cdf refuse a largest rate x time beyond this (the steps, and their memory, grow with it)
MAX_RATE_TIME = 1e8
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


def _cph(g, t):
    arr = _times(t)
    flat = arr.reshape(-1)
    pos = np.ascontiguousarray(np.maximum(flat, 0.0))
    lam = _lam(g)
    top = float(lam[1:].max(initial=0.0)) * float(pos.max(initial=0.0))
    if top > MAX_RATE_TIME:
        raise ParameterError(
            f"largest rate x largest time = {top:.3g}: uniformisation would need more "
            f"than {MAX_RATE_TIME:.0e} steps (times up to {float(pos.max())!r})"
        )
    pdf, cdf = _core.uniformisation(g._indptr, g._target, g._w, lam, pos)
    neg = flat < 0
    pdf[neg] = 0.0
    cdf[neg] = 0.0
    return pdf.reshape(arr.shape), np.clip(cdf, 0.0, 1.0).reshape(arr.shape)


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
    lam = _lam(g)
    pmf, surv = _core.dph_forward(g._indptr, g._target, g._w, lam, kmax)
    pmf[0] = max(0.0, 1.0 - surv[0])
    idx = np.clip(arr, 0, None)
    p = np.where(arr < 0, 0.0, pmf[idx])
    c = np.where(arr < 0, 0.0, 1.0 - surv[idx])
    return p, c


def pdf(self, t):
    """Density at times `t` (array-like; 0 for t < 0)."""
    if self._discrete:
        raise ParameterError("pdf() is for continuous graphs; use pmf() on a discrete graph")
    return _cph(self, t)[0]


def cdf(self, t):
    """Distribution function at times `t` (continuous) or jump counts `t` (discrete)."""
    return _dph(self, t)[1] if self._discrete else _cph(self, t)[1]


def pmf(self, k):
    """Probability of absorption at jump `k` (discrete graphs)."""
    if not self._discrete:
        raise ParameterError("pmf() is for discrete graphs (Graph(..., discrete=True)); use pdf()")
    return _dph(self, k)[0]


def sample(self, n: int, seed=None, rewards=None) -> np.ndarray:
    """`n` simulated absorption times (reward-weighted if `rewards` is given)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ParameterError(f"n must be a non-negative integer, got {n!r}")
    if n > MAX_SAMPLES:
        raise ParameterError(f"n={int(n)} is more than {MAX_SAMPLES} samples in one call; draw them in batches")
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1, np.uint64)[0])
    elif isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ParameterError(f"seed must be an integer, got {seed!r}")
    _lam(self)
    _check_absorbing(self)
    r = None
    if rewards is not None:
        from phasic.moments import _rewards

        r = _rewards(self, rewards)
    lam = _lam(self)
    return _core.sample(
        self._indptr, self._target, self._w, lam, r, self._discrete, int(seed) & 0xFFFFFFFFFFFFFFFF, int(n)
    )


def transient_vertices(self) -> np.ndarray:
    """Indices of the transient vertices (neither the start nor absorbing), increasing."""
    lam = _lam(self)
    idx = np.flatnonzero(lam > 0)
    return idx[idx > 0]


def as_matrices(self):
    """``(alpha, S)``: initial vector and sub-intensity matrix (discrete: sub-transition
    matrix T) over :meth:`transient_vertices`. Dense: for small graphs."""
    tv = transient_vertices(self)
    V = self.vertices_length()
    if tv.size > 20_000:
        raise ParameterError(f"as_matrices() would build a dense {tv.size}x{tv.size} matrix")
    pos = np.full(V, -1)
    pos[tv] = np.arange(tv.size)
    n = np.diff(self._indptr)
    src = np.repeat(np.arange(V), n)
    alpha = np.zeros(tv.size)
    S = np.zeros((tv.size, tv.size))
    lam = _lam(self)
    for u, z, w in zip(src, self._target, self._w):
        if u == 0:
            if pos[z] >= 0:
                alpha[pos[z]] += w
        elif pos[u] >= 0 and pos[z] >= 0:
            S[pos[u], pos[z]] += w
    d = np.arange(tv.size)
    S[d, d] += (1.0 - lam[tv]) if self._discrete else -lam[tv]
    return alpha, S
