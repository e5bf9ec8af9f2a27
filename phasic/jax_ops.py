"""JAX functions of the parameters: `pmf_from_graph` and `moments_from_graph`.

x64: both functions need double precision to match the core to 1e-9 and beyond, so they
call ``jax.config.update("jax_enable_x64", True)`` when created (pass ``enable_x64=False``
to leave JAX's setting alone; values are then float32 and accurate to ~1e-6).

* ``pmf_from_graph(g)(theta, times)``: densities (continuous) or probabilities
  (discrete) for the parameterised graph ``g`` (rates ``base + coef . theta``). The
  sub-intensity matrix is assembled from theta inside JAX and the densities are
  ``alpha expm(S t) s``, so the function is pure JAX: jit-able, vmap-able over theta, and
  differentiable. Dense: meant for graphs up to a few thousand transient states.
* ``moments_from_graph(g, k)(theta)``: the first k moments by trace replay in the compiled
  core (``jax.pure_callback``), with a ``custom_vjp`` whose backward pass replays the trace
  transposed (the adjoint method), so gradients cost about two more replays per moment.
"""
from __future__ import annotations

from math import factorial

import numpy as np

from phasic.exceptions import ParameterError

MAX_DENSE_STATES = 4000


def _structure(graph):
    graph._flush()
    V = graph.vertices_length()
    indptr, target = graph._indptr, graph._target.astype(np.int64)
    src = np.repeat(np.arange(V), np.diff(indptr))
    transient = (np.diff(indptr) > 0)
    transient[0] = False
    tv = np.flatnonzero(transient)
    if tv.size > MAX_DENSE_STATES:
        raise ParameterError(f"pmf_from_graph builds dense {tv.size}x{tv.size} matrices; use the "
                             f"core's Graph.pdf for graphs over {MAX_DENSE_STATES} transient states")
    pos = np.full(V, -1)
    pos[tv] = np.arange(tv.size)
    coef = graph._coef if graph._coef is not None else np.zeros((target.size, 0))
    return dict(src=src, tgt=target, pos=pos, n=tv.size, base=graph._base, coef=coef)


def _enable_x64(enable):
    import jax

    if enable:
        jax.config.update("jax_enable_x64", True)


def pmf_from_graph(graph, discrete=None, *, max_jumps=None, enable_x64=True):
    """A pure JAX function ``f(theta, times)`` of densities (or discrete probabilities).

    Parameters
    ----------
    graph : Graph
        Parameterised graph (edges ``[next_state, [c1, ..., cp]]``); a graph without
        parameters gives a function that ignores theta.
    discrete : bool, optional
        Defaults to ``graph.discrete``. Discrete: ``times`` are jump counts.
    max_jumps : int, optional
        Discrete only: the largest jump count evaluated (default 1000); larger counts give NaN.
    enable_x64 : bool
        Switch JAX to float64 (see the module docstring).

    Examples
    --------
    >>> f = pmf_from_graph(g)                                   # doctest: +SKIP
    >>> jax.grad(lambda th: jnp.log(f(th, data)).sum())(theta)  # doctest: +SKIP
    """
    _enable_x64(enable_x64)
    import jax
    import jax.numpy as jnp
    from jax.scipy.linalg import expm

    discrete = graph.discrete if discrete is None else bool(discrete)
    st = _structure(graph)
    n = st["n"]
    src, tgt, pos = st["src"], st["tgt"], st["pos"]
    base, coef = jnp.asarray(st["base"]), jnp.asarray(st["coef"])
    p = st["coef"].shape[1]
    start = src == 0
    tt = (pos[src] >= 0) & (pos[tgt] >= 0)
    out = pos[src] >= 0
    absorb = out & (pos[tgt] < 0)
    a_idx, a_pos = np.flatnonzero(start & (pos[tgt] >= 0)), pos[tgt[start & (pos[tgt] >= 0)]]
    t_idx, t_r, t_c = np.flatnonzero(tt), pos[src[tt]], pos[tgt[tt]]
    o_idx, o_r = np.flatnonzero(out), pos[src[out]]
    x_idx, x_r = np.flatnonzero(absorb), pos[src[absorb]]
    K = 1000 if max_jumps is None else int(max_jumps)

    def parts(theta):
        theta = jnp.asarray(theta, dtype=base.dtype).reshape(-1)
        if theta.shape[0] != p and p:
            raise ParameterError(f"theta has length {theta.shape[0]}, expected {p}")
        w = base + coef @ theta if p else base
        alpha = jnp.zeros(n, w.dtype).at[a_pos].add(w[a_idx])
        lam = jnp.zeros(n, w.dtype).at[o_r].add(w[o_idx])
        S = jnp.zeros((n, n), w.dtype).at[t_r, t_c].add(w[t_idx])
        s = jnp.zeros(n, w.dtype).at[x_r].add(w[x_idx])
        return alpha, S, lam, s

    if not discrete:
        def f(theta, times):
            alpha, S, lam, s = parts(theta)
            S = S - jnp.diag(lam)
            times = jnp.asarray(times, dtype=S.dtype)
            tt_ = jnp.maximum(times.reshape(-1), 0.0)
            one = lambda t: alpha @ expm(S * t) @ s  # noqa: E731
            if n * n * tt_.shape[0] <= 20_000_000:
                dens = jax.vmap(one)(tt_)        # batched small matrices
            else:
                dens = jax.lax.map(one, tt_)     # bounded memory for big ones
            return jnp.where(times.reshape(-1) < 0, 0.0, dens).reshape(times.shape)
    else:
        def f(theta, times):
            alpha, T, lam, s = parts(theta)
            T = T + jnp.diag(1.0 - lam)

            def step(pk, _):
                return pk @ T, pk @ s

            _, pm = jax.lax.scan(step, alpha, None, length=K)  # pm[j] = P(tau = j + 1)
            pm = jnp.concatenate([jnp.array([1.0 - alpha.sum()], pm.dtype), pm])
            k = jnp.asarray(times).reshape(-1).astype(jnp.int32)
            vals = jnp.where((k >= 0) & (k <= K), pm[jnp.clip(k, 0, K)], jnp.nan)
            vals = jnp.where(k < 0, 0.0, vals)
            return vals.reshape(jnp.shape(times))
    return f


# ------------------------------------------------------------------------- moments
def _host_moments(h, theta, k, r):
    from phasic.moments import _alpha_dot, _solve

    if h._coef is not None:
        h.update_weights(np.asarray(theta, np.float64))
    ys, y = [], np.ones_like(r)
    for _ in range(k):
        y = _solve(h, r * y)
        ys.append(y)
    m = np.array([factorial(j + 1) * _alpha_dot(h, ys[j]) for j in range(k)])
    return m, ys


def _host_grad(h, theta, k, r, cot):
    """d(sum_j cot_j m_j)/dtheta by adjoint replay."""
    from phasic import _core
    from phasic.moments import _state

    m, ys = _host_moments(h, theta, k, r)
    tr, val, inv = _state(h)
    V = h.vertices_length()
    lo, hi = int(h._indptr[0]), int(h._indptr[1])
    a = np.zeros(V)
    np.add.at(a, h._target[lo:hi], h._w[lo:hi])
    src = np.repeat(np.arange(V), np.diff(h._indptr))
    tgt = h._target
    dw = np.zeros(h._target.size)
    lam_vec = np.zeros(V)
    for j in range(k, 0, -1):
        c = cot[j - 1] * factorial(j)
        lam_vec = lam_vec + c * a
        mu = lam_vec.copy()
        _core.run_program(tr["xi"], tr["xj"], tr["xs"], val, mu, True)
        mu *= inv  # U^T lambda
        y = ys[j - 1]
        dw[hi:] += mu[src[hi:]] * (y[tgt[hi:]] - y[src[hi:]])
        dw[lo:hi] += c * y[tgt[lo:hi]]
        lam_vec = r * mu
    return dw @ h._coef if h._coef is not None else np.zeros(0)


def moments_from_graph(graph, k=2, rewards=None, *, enable_x64=True):
    """A JAX function ``f(theta) -> (k,)`` of the first k (reward) moments, differentiable.

    Values and gradients come from trace replay in the compiled core (continuous graphs).
    """
    if graph.discrete:
        raise ParameterError("moments_from_graph supports continuous graphs; use Graph.moments")
    if graph._coef is None:
        raise ParameterError("moments_from_graph needs a parameterised graph")
    _enable_x64(enable_x64)
    import jax
    import jax.numpy as jnp

    from phasic.moments import _rewards

    h = graph.copy()
    r = _rewards(h, rewards)
    p = h._coef.shape[1]
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32

    def host_val(theta):
        return _host_moments(h, theta, k, r)[0].astype(dtype)

    def host_grad(theta, cot):
        return _host_grad(h, theta, k, r, np.asarray(cot, np.float64)).astype(dtype)

    @jax.custom_vjp
    def f(theta):
        theta = jnp.asarray(theta, dtype).reshape(p)
        return jax.pure_callback(host_val, jax.ShapeDtypeStruct((k,), dtype), theta,
                                 vmap_method="sequential")

    def fwd(theta):
        theta = jnp.asarray(theta, dtype).reshape(p)
        return f(theta), theta

    def bwd(theta, cot):
        g = jax.pure_callback(host_grad, jax.ShapeDtypeStruct((p,), dtype), theta, cot,
                              vmap_method="sequential")
        return (g,)

    f.defvjp(fwd, bwd)
    return f
