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
    """Probability density of the time to absorption, at times `t`.

    Parameters
    ----------
    t : float or array_like of float
        Times; any shape. Negative times have density 0.

    Returns
    -------
    numpy.ndarray
        The density at each time, with the shape of `t` (a 0-d array for a scalar).

    Raises
    ------
    ParameterError
        If the graph is discrete (use :meth:`pmf`), if `t` holds NaN or infinite values,
        if the largest exit rate times the largest time exceeds ``1e8`` (the number of
        uniformisation steps grows with it), if a parameterised graph has no weights yet
        (see :meth:`update_weights`), or if the weights give no distribution.

    See Also
    --------
    cdf, sample, moments

    Notes
    -----
    The density ``f(t) = alpha exp(S t) s`` (``s = -S 1``, the exit rates) is computed by
    uniformisation on the sparse graph, accurate to about ``1e-12`` absolute; the number
    of terms follows from the largest exit rate and the largest time in `t`.

    Examples
    --------
    Two exponential stages with rate 1 give the Erlang(2, 1) distribution,
    ``f(t) = t exp(-t)``:

    >>> import numpy as np
    >>> from phasic import Graph
    >>> g = Graph(state_length=1)
    >>> s1, s2, done = (g.find_or_create_vertex([i]) for i in (1, 2, 3))
    >>> g.add_edge(0, s1, 1.0)
    >>> g.add_edge(s1, s2, 1.0)
    >>> g.add_edge(s2, done, 1.0)
    >>> t = np.array([0.5, 1.0, 2.0])
    >>> np.round(g.pdf(t), 6)
    array([0.303265, 0.367879, 0.270671])
    >>> bool(np.allclose(g.pdf(t), t * np.exp(-t), atol=1e-10))
    True
    """
    if self._discrete:
        raise ParameterError("pdf() is for continuous graphs; use pmf() on a discrete graph")
    return _cph(self, t)[0]


def cdf(self, t):
    """Cumulative distribution function ``P(Y <= t)`` of the time to absorption.

    Parameters
    ----------
    t : float or array_like
        Times (continuous graph) or jump counts (discrete graph, integer-valued); any
        shape. Negative values give 0.

    Returns
    -------
    numpy.ndarray
        ``P(Y <= t)`` for each entry, with the shape of `t`, clipped to [0, 1].

    Raises
    ------
    ParameterError
        If `t` holds NaN or infinite values, if a discrete graph gets non-integer jump
        counts or counts beyond ``1e8``, if a continuous graph's largest exit rate times the
        largest time exceeds ``1e8``, if a parameterised graph has no weights yet, or if
        the weights give no distribution.

    See Also
    --------
    pdf, pmf

    Notes
    -----
    Continuous: ``F(t) = 1 - alpha exp(S t) 1`` by uniformisation. Discrete:
    ``F(k) = 1 - alpha T^k 1`` by the forward algorithm.

    Examples
    --------
    Erlang(2, 1), two exponential stages with rate 1: ``F(t) = 1 - (1 + t) exp(-t)``:

    >>> import numpy as np
    >>> from phasic import Graph
    >>> g = Graph(state_length=1)
    >>> s1, s2, done = (g.find_or_create_vertex([i]) for i in (1, 2, 3))
    >>> g.add_edge(0, s1, 1.0)
    >>> g.add_edge(s1, s2, 1.0)
    >>> g.add_edge(s2, done, 1.0)
    >>> np.round(g.cdf([0.5, 1.0, 2.0]), 6)
    array([0.090204, 0.264241, 0.593994])

    A discrete graph leaving its state with probability 1/4 per jump is geometric,
    ``F(k) = 1 - (3/4)^k``:

    >>> from phasic import Graph
    >>> g = Graph(state_length=1, discrete=True)
    >>> s, done = g.find_or_create_vertex([1]), g.find_or_create_vertex([2])
    >>> g.add_edge(0, s, 1.0)
    >>> g.add_edge(s, done, 0.25)
    >>> np.round(g.cdf([1, 2, 3]), 6)
    array([0.25    , 0.4375  , 0.578125])
    """
    return _dph(self, t)[1] if self._discrete else _cph(self, t)[1]


def pmf(self, k):
    """Probability mass function ``P(Y = k)`` of a discrete graph's absorption time.

    ``Y`` counts the jumps from the first transient state to absorption: a state entered
    from the start and left at the first jump gives ``Y = 1``.

    Parameters
    ----------
    k : int or array_like of int
        Jump counts; any shape. Integer-valued floats are accepted; negative counts have
        probability 0.

    Returns
    -------
    numpy.ndarray
        ``P(Y = k)`` for each entry, with the shape of `k`.

    Raises
    ------
    ParameterError
        If the graph is continuous (use :meth:`pdf`), if `k` holds non-integers or counts
        beyond ``1e8``, if a parameterised graph has no weights yet, or if the weights
        give no distribution (for example out-probabilities summing over 1).

    See Also
    --------
    cdf, moments

    Notes
    -----
    ``P(Y = k) = alpha T^(k-1) t`` with sub-transition matrix ``T`` and exit
    probabilities ``t = 1 - T 1``, computed by the forward algorithm on the sparse graph.
    ``P(Y = 0)`` is the initial probability mass not placed on any state.

    Examples
    --------
    A state left with probability ``p = 1/4`` at each jump (the rest is the implicit
    self-loop) gives the geometric distribution ``P(Y = k) = (1 - p)^(k-1) p``:

    >>> import numpy as np
    >>> from phasic import Graph
    >>> g = Graph(state_length=1, discrete=True)
    >>> s, done = g.find_or_create_vertex([1]), g.find_or_create_vertex([2])
    >>> g.add_edge(0, s, 1.0)
    >>> g.add_edge(s, done, 0.25)
    >>> np.round(g.pmf([0, 1, 2, 3]), 6)
    array([0.      , 0.25    , 0.1875  , 0.140625])
    """
    if not self._discrete:
        raise ParameterError("pmf() is for discrete graphs (Graph(..., discrete=True)); use pdf()")
    return _dph(self, k)[0]


def sample(self, n: int, seed=None, rewards=None) -> np.ndarray:
    """Draw `n` absorption times by simulating the chain.

    Parameters
    ----------
    n : int
        Number of draws, 0 to ``1e9`` (draw larger numbers in batches).
    seed : int, optional
        Seed of the generator; the same seed gives the same draws. Default: a fresh
        seed from the operating system's entropy.
    rewards : array_like of float, shape (V,), optional
        One finite reward per vertex: each draw is then the reward-weighted time
        ``sum_v r_v * (time in v)`` (discrete: the summed rewards of the visited states).

    Returns
    -------
    numpy.ndarray
        Shape ``(n,)``, float64: times (continuous) or jump counts (discrete).

    Raises
    ------
    ParameterError
        If `n` is not a non-negative integer or exceeds ``1e9``, if `seed` is not an
        integer, if `rewards` has the wrong shape or a non-finite entry, if the chain
        can reach a class of states it never leaves (the walk would not end), if a
        parameterised graph has no weights yet, or if the weights give no distribution.

    See Also
    --------
    pdf, pmf, moments

    Examples
    --------
    Draws from an exponential distribution with rate 2 are positive and have mean
    ``1/2``; a seed makes them reproducible:

    >>> import numpy as np
    >>> from phasic import Graph
    >>> g = Graph(state_length=1)
    >>> a, b = g.find_or_create_vertex([1]), g.find_or_create_vertex([2])
    >>> g.add_edge(0, a, 1.0)
    >>> g.add_edge(a, b, 2.0)
    >>> x = g.sample(200_000, seed=1)
    >>> x.shape
    (200000,)
    >>> bool(np.all(x > 0))
    True
    >>> bool(abs(x.mean() - 0.5) < 0.01)
    True
    >>> bool(np.array_equal(x, g.sample(200_000, seed=1)))
    True
    """
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
