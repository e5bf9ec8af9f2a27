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
    g._flush()
    if g._lam is None:
        n = np.diff(g._indptr)
        src = np.repeat(np.arange(n.size), n)
        lam = np.bincount(src, weights=g._w, minlength=n.size).astype(np.float64)
        if g._discrete and np.any(lam[1:] > 1 + 1e-12):
            v = int(np.argmax(lam[1:])) + 1
            raise ParameterError(f"discrete graph: out-probabilities of state {g.states()[v].tolist()} "
                                 f"sum to {lam[v]!r} > 1")
        g._lam = lam
    return g._lam


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
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise ParameterError(f"n must be a non-negative integer, got {n!r}")
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1, np.uint64)[0])
    r = None
    if rewards is not None:
        from phasic.moments import _rewards

        r = _rewards(self, rewards)
    lam = _lam(self)
    return _core.sample(self._indptr, self._target, self._w, lam, r, self._discrete,
                        int(seed) & 0xFFFFFFFFFFFFFFFF, int(n))


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
