"""JAX functions of the parameters: `pmf_from_graph` and `moments_from_graph`.

x64: both functions need double precision to match the core to 1e-9 and beyond, so they
call ``jax.config.update("jax_enable_x64", True)`` when created (pass ``enable_x64=False``
to leave JAX's setting alone; values are then float32 and accurate to ~1e-6, or for
uniformisation in ``pmf_from_graph`` to ~3e-7 L t, L t being the largest rate x time).

* ``pmf_from_graph(g)(theta, times)``: densities (continuous) or probabilities
  (discrete) for the parameterised graph ``g`` (rates ``base + coef . theta``). The rates
  are assembled from theta inside JAX and continuous densities come from uniformisation
  on the sparse graph (default; reverse-mode gradients by an adjoint pass) or from dense
  ``alpha expm(S t) s`` (``method="expm"``), so the function is pure JAX: jit-able,
  vmap-able over theta, and differentiable.
* ``moments_from_graph(g, k)(theta)``: the first k moments by trace replay in the compiled
  core (``jax.pure_callback``), with a ``custom_vjp`` whose backward pass replays the trace
  transposed (the adjoint method), so gradients cost about two more replays per moment.
"""

from __future__ import annotations

import math
import threading
from functools import partial
from math import factorial

import numpy as np

from phasic import _core
from phasic._csr import of, reward_vector
from phasic.batch import evaluate_batch
from phasic.exceptions import ForwardModeError, ParameterError
from phasic.moments import alpha_dot, moments, replay_plan, solve, tape_state
from phasic.traces import graph_trace

MAX_DENSE_STATES = 4000


def _structure(graph):
    graph.flush()
    V = graph.vertices_length()
    indptr, target = graph.indptr, graph.target.astype(np.int64)
    src = np.repeat(np.arange(V), np.diff(indptr))
    transient = np.diff(indptr) > 0
    transient[0] = False
    tv = np.flatnonzero(transient)
    pos = np.full(V, -1)
    pos[tv] = np.arange(tv.size)
    coef = graph.coef if graph.coef is not None else np.zeros((target.size, 0))
    return dict(src=src, tgt=target, pos=pos, n=tv.size, base=graph.base, coef=coef)


def _enable_x64(enable):
    import jax

    if enable:
        jax.config.update("jax_enable_x64", True)


_METHODS = ("auto", "uniformization", "expm")
_TAIL = 1e-13  # Poisson mass allowed beyond the last uniformisation step
_AUTO_MAX_JUMPS = 20_000  # method="auto" uses expm when more steps would be needed
_TRACED_MARGIN = 2.0  # traced theta: room for rates up to twice the current ones


def _log_tail(K, x):
    """Upper bound on log P(N > K), N ~ Poisson(x), valid for x < K + 2: beyond K each
    Poisson term is at most x / (K + 2) times the one before, so the tail is at most
    P(N = K + 1) / (1 - x / (K + 2))."""
    if x <= 0:
        return -math.inf
    return (K + 1) * math.log(x) - x - math.lgamma(K + 2) - math.log1p(-x / (K + 2))


def _jumps_needed(x):
    """Smallest step count K whose Poisson(x) tail is below _TAIL, rounded up to one of
    eight sizes per doubling (so that nearby x share a compiled function)."""
    lo, hi = int(x), int(x + 20 * math.sqrt(x) + 60)
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if _log_tail(mid, x) <= math.log(_TAIL) else (mid + 1, hi)
    K = max(lo, 1)
    step = 1 << max(K.bit_length() - 4, 3)
    return -(-K // step) * step


def _max_rate_time(K):
    """Largest x = rate * time for which K steps leave a Poisson tail below _TAIL."""
    lo, hi = 0.0, K + 1.0
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _log_tail(K, mid) <= math.log(_TAIL) else (lo, mid)
    return lo


def _steps_for(x):
    """Steps after which Poisson(y) keeps less than _TAIL beyond, for every y <= x (the run-time
    stopping rule; checked against _log_tail in the tests)."""
    return x + 8.0 * x**0.5 + 20.0


def _grouped(rows, cols, n):
    """The edges ``rows[e] -> cols[e]`` grouped by row, so that
    ``total(take(vec) * pack(vals))[i] = sum_{e: rows[e] = i} vals[e] vec[cols[e]]`` and
    ``by_row(u) * take(vec)`` holds ``u[rows[e]] vec[cols[e]]`` (``unpack`` returns edge
    order). Rows are padded to the largest degree D (gathers only, no scatter; stored as
    (D, n), so that each op runs along n) unless a few rows hold most edges; then the edges
    are sorted by row and summed by segments."""
    from types import SimpleNamespace

    import jax
    import jax.numpy as jnp

    E = rows.size
    deg = np.bincount(rows, minlength=n)
    D = max(int(deg.max(initial=0)), 1)
    order = np.argsort(rows, kind="stable")
    if n * D <= 4 * E + n:
        slot = np.full((D, n), E)
        slot[np.arange(E) - np.repeat(np.cumsum(deg) - deg, deg), rows[order]] = order
        col, back = np.append(cols, 0)[slot], np.argsort(slot.ravel(), kind="stable")[:E]
        return SimpleNamespace(
            pack=lambda vals: jnp.append(vals, 0.0)[slot],
            take=lambda vec: vec[col],
            total=lambda x: x.sum(axis=0),
            by_row=lambda u: u[None, :],
            unpack=lambda x: x.reshape(-1)[back],
        )
    row, col, back = rows[order], cols[order], np.argsort(order)
    return SimpleNamespace(
        pack=lambda vals: vals[order],
        take=lambda vec: vec[col],
        total=lambda x: jax.ops.segment_sum(x, row, n, indices_are_sorted=True),
        by_row=lambda u: u[row],
        unpack=lambda x: x[back],
    )


def _poisson_mixture(n, r, c, block=256):
    """``mix(alpha, stay, move, s, x, K)[j] = sum_k Pois(k; x_j) q_k`` with
    ``q_k = alpha P^k s`` and ``P = diag(stay) + move`` (``move[e]`` on the edge ``r[e] -> c[e]``).

    The loop over k runs, at run time, only as far as the largest finite x needs (under vmap:
    the most any batch member needs), and at most to K; the Poisson weights are then applied
    in blocks of k. Reverse-mode derivatives come from the adjoint recursion
    ``a_k = g_k s + P a_{k+1}`` (``g_k = dL/dq_k``), run backwards over the stored
    ``alpha P^k`` (and the forward pass's Poisson weights, where they take no more room); it
    needs only gathers, where JAX's own transpose of the loop would scatter. Its loop body
    updates only a and the P cotangent: the other sums run over blocks of k.
    """
    import jax
    import jax.numpy as jnp
    from jax.scipy.special import gammaln

    into, out_of = _grouped(c, r, n), _grouped(r, c, n)  # (v P)[j] and (P a)[i]

    @jax.custom_batching.custom_vmap
    def last_step(xm):
        return jnp.ceil(_steps_for(xm)).astype(jnp.int32)

    @last_step.def_vmap
    def _(axis_size, in_batched, xm):
        # One count for the whole batch (the loops then stop together): a batched loop bound
        # would make every step select between old and new copies of the stored vectors.
        return last_step(jnp.max(xm)), False

    def steps(x, K):  # the last k needed, at most K
        return jnp.minimum(K, last_step(jnp.max(jnp.where(jnp.isfinite(x), x, 0.0), initial=0.0)))

    def blocks(x, K):
        """Block count, and b -> the (len(x), block) weights Pois(k; x_j), k in block b."""
        nb = -(-(K + 1) // block)
        k = jnp.arange(nb * block, dtype=x.dtype).reshape(nb, block)
        lgam, logx = gammaln(k + 1.0), jnp.log(jnp.where(x > 0, x, 1.0))[:, None]
        pos = (x > 0)[:, None]

        def weights(b):  # with Pois(0; 0) = 1
            kb = k[b]
            logp = jnp.where(pos, kb * logx - x[:, None] - lgam[b], jnp.where(kb == 0, 0.0, -jnp.inf))
            return jnp.exp(logp)

        return nb, weights

    def run(alpha, stay, move, s, x, K, keep):
        packed, m = into.pack(move), steps(x, K)
        nb, weights = blocks(x, K)

        def step(v):
            return v * stay + into.total(into.take(v) * packed)

        # q_k = v_k s for k <= m, 0 beyond (one spare row: the last block reads q_{k+1}).
        # With keep, the loop stores only the v_k (one update per step; V s per block below).
        def body(k, c):
            v, rows = c
            return step(v), rows.at[k].set(v if keep else v @ s)

        rows = jnp.zeros((nb * block + 1, n) if keep else nb * block + 1, alpha.dtype)
        _, Vq = jax.lax.fori_loop(0, m + 1, body, (alpha, rows))

        def q_block(b):
            qb = jax.lax.dynamic_slice_in_dim(Vq, b * block, block + 1)
            return qb @ s if keep else qb

        # the weights are kept for the backward pass when they take no more room than V
        keep_w = keep and x.size * nb * block <= (K + 1) * n
        W = jnp.zeros((nb, x.size, block) if keep_w else (0, 0, 0), x.dtype)

        def mixed(b, c):
            # d Pois(k; x) / dx = Pois(k - 1; x) - Pois(k; x), so d/dx sum_k Pois(k; x) q_k
            # is sum_k Pois(k; x) (q_{k+1} - q_k)
            w, qb = weights(b), q_block(b)
            qd = jnp.stack([qb[:-1], qb[1:] - qb[:-1]], axis=1)
            return c[0] + w @ qd, (c[1].at[b].set(w) if keep_w else c[1])

        out, W = jax.lax.fori_loop(0, m // block + 1, mixed, (jnp.zeros((x.size, 2), x.dtype), W))
        return out[:, 0], out[:, 1], (Vq if keep else None, W)

    @partial(jax.custom_vjp, nondiff_argnums=(5,))
    def mix(alpha, stay, move, s, x, K):
        return run(alpha, stay, move, s, x, K, False)[0]

    def mix_fwd(alpha, stay, move, s, x, K):
        acc, dacc, (V, W) = run(alpha, stay, move, s, x, K, True)
        return acc, (stay, move, s, x, dacc, V, W)

    def mix_bwd(K, res, cot):
        stay, move, s, x, dacc, V, W = res
        packed, m = out_of.pack(move), steps(x, K)
        nb, weights = blocks(x, K)

        def block_g(b, c):  # G[k] = dL/dq_k, and dL/ds = sum_k G[k] v_k
            G, ds = c
            Gb = cot @ (W[b] if W.size else weights(b))
            return G.at[b].set(Gb), ds + Gb @ jax.lax.dynamic_slice_in_dim(V, b * block, block)

        G, ds = jax.lax.fori_loop(0, m // block + 1, block_g, (jnp.zeros((nb, block), x.dtype), jnp.zeros_like(s)))
        G = G.reshape(-1)

        def body(i, carry):  # k = m, ..., 0; a holds dL/dv_{k+1} on entry, dL/dv_k on exit
            a, dstay, dmove = carry
            k = m - i
            g, v, a_c = G[k], V[k], out_of.take(a)
            dstay, dmove = dstay + v * a, dmove + out_of.by_row(v) * a_c
            return g * s + stay * a + out_of.total(a_c * packed), dstay, dmove

        zn = jnp.zeros_like(stay)
        a, dstay, dmove = jax.lax.fori_loop(0, m + 1, body, (zn, zn, jnp.zeros_like(packed)))
        return a, dstay, out_of.unpack(dmove), ds, cot * dacc

    mix.defvjp(mix_fwd, mix_bwd)
    return mix


def pmf_from_graph(graph, discrete=None, *, max_jumps=None, enable_x64=True, method="auto"):
    """A pure JAX function ``f(theta, times)`` of densities (or discrete probabilities).

    Parameters
    ----------
    graph : Graph
        Parameterised graph (edges ``[next_state, [c1, ..., cp]]``); a graph without
        parameters gives a function that ignores theta.
    discrete : bool, optional
        Defaults to ``graph.discrete``. Discrete: ``times`` are jump counts, and
        ``P(tau = k) = alpha T^(k-1) t`` comes from the forward algorithm on the sparse graph
        (any number of states; every kind of derivative); a theta giving a negative
        probability, or out-probabilities summing over 1, gives NaN.
    max_jumps : int, optional
        Discrete: the largest jump count evaluated (default 1000); larger counts give NaN.
        Continuous: the most uniformisation steps a call may take (see below), instead of
        sizing it per call.
    enable_x64 : bool
        Switch JAX to float64 (see the module docstring).

    A concrete theta of the wrong length, with a NaN, or giving some edge a negative weight
    raises ParameterError naming it; a traced one (inside jit/vmap/grad) gives NaN values
    instead, never numbers.
    method : {"auto", "uniformization", "expm"}
        How continuous densities are computed (discrete graphs ignore it).

        * ``"uniformization"``: with ``L`` the largest total out-rate and ``P = I + S / L``
          (a sub-stochastic matrix), ``pdf(t) = sum_k Pois(k; L t) alpha P^k s``. One
          sparse pass over ``k = 0, 1, ...`` serves all times; it stops, at run time, where
          the largest ``L t`` leaves less than 1e-13 of Poisson mass (absolute error below
          ``1e-13 L``), but never after K steps: a time that K steps do not cover gives
          **NaN**, never a truncated value. Derivatives: reverse mode (``grad``, ``vjp``,
          ``jacrev``) at a small multiple of the value's cost (``benchmarks/bench_traces.py``
          prints the ratio), holding K x states floats, and
          ``hessian`` (forward over reverse); plain forward mode (``jvp``, ``jacfwd``)
          raises ForwardModeError: use method="expm" for it.
        * ``"expm"``: ``alpha expm(S t) s``, one dense matrix exponential per time: any rate
          and time, every kind of derivative, but ~n^3 work per time.
        * ``"auto"`` (default): uniformisation when K can be sized (below) and is at most
          20,000, expm otherwise; graphs over 4000 transient states always use
          uniformisation.

        K (static: it fixes array shapes) is chosen per call from what is concrete there:
        ``max_jumps`` if given; else from ``L`` at theta and the largest finite time. Inside
        ``jit``/``vmap``/``grad`` theta is traced: ``L`` is then twice the largest rate at
        the graph's current weights (``update_weights``; exactly the rate for a graph
        without parameters), so a theta whose rates grow more than that gives NaN at the
        largest times; pass ``max_jumps`` to cover more (K steps reach ``L t`` up to about
        ``K - 8 sqrt(K)``; a large K costs gradient memory, little time). Traced ``times``
        (close over data instead) or a parameterised graph never given weights leave
        nothing to size K from: then "auto" uses expm on graphs up to 4000 transient
        states, and otherwise ParameterError asks for ``max_jumps``. In float32 the
        relative error of uniformisation grows like ``3e-7 L t``.

    Examples
    --------
    ::

        f = pmf_from_graph(g)
        jax.grad(lambda th: jnp.log(f(th, data)).sum())(theta)
    """
    graph = of(graph)
    m = {"uniformisation": "uniformization"}.get(method, method)
    if m not in _METHODS:
        raise ParameterError(f"method={method!r} is not one of {', '.join(map(repr, _METHODS))}")
    if max_jumps is not None and (
        isinstance(max_jumps, bool) or not isinstance(max_jumps, (int, np.integer)) or max_jumps < 1
    ):
        raise ParameterError(f"max_jumps must be a positive integer, got {max_jumps!r}")
    _enable_x64(enable_x64)
    import jax
    import jax.numpy as jnp
    from jax.scipy.linalg import expm

    if discrete is not None and not isinstance(discrete, (bool, np.bool_)):
        raise ParameterError(f"discrete must be None, True or False, got {discrete!r}")
    discrete = graph.discrete if discrete is None else bool(discrete)
    st = _structure(graph)
    n = st["n"]
    if n > MAX_DENSE_STATES and m == "expm" and not discrete:
        raise ParameterError(
            f"pmf_from_graph with method='expm' builds dense {n}x{n} matrices; use "
            f"method='uniformization' for graphs over {MAX_DENSE_STATES} transient states"
        )
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

    def weights(theta):
        theta = jnp.asarray(theta, dtype=base.dtype).reshape(-1)
        if theta.shape[0] != p and p:
            raise ParameterError(f"theta has length {theta.shape[0]}, expected {p}")
        return base + coef @ theta if p else base

    def check(theta):
        """A concrete theta: ParameterError naming it and the first bad edge, if any weight
        is negative or NaN (or, discrete, a state's out-probabilities exceed 1)."""
        if isinstance(theta, jax.core.Tracer):
            return
        th = np.asarray(theta, np.float64).reshape(-1)
        if p and th.size != p:
            raise ParameterError(f"theta has length {th.size}, expected {p}")
        if not np.all(np.isfinite(th)):
            raise ParameterError(f"theta {th.tolist()!r} has non-finite entries")
        w = st["base"] + st["coef"] @ th if p else st["base"]
        bad = np.flatnonzero(~((w >= 0) & np.isfinite(w)))
        if bad.size:
            states, e = graph.states(), int(bad[0])
            raise ParameterError(
                f"theta {th.tolist()!r} gives edge {states[src[e]].tolist()} -> "
                f"{states[tgt[e]].tolist()} the weight {float(w[e])!r}; weights "
                f"must be finite and >= 0"
            )
        mass = float(w[a_idx].sum())
        if mass > 1 + 1e-12:
            raise ParameterError(f"theta {th.tolist()!r} makes the initial probabilities sum to {mass!r} > 1")
        if discrete:
            lam = np.bincount(o_r, w[o_idx], minlength=n)
            if np.any(lam > 1 + 1e-12):
                i = int(np.argmax(lam))
                v, states = int(np.flatnonzero(pos == i)[0]), graph.states()
                raise ParameterError(
                    f"theta {th.tolist()!r}: out-probabilities of state "
                    f"{states[v].tolist()} sum to {float(lam[i])!r} > 1"
                )

    def invalid(w, alpha):
        """Traced theta: a negative or NaN weight, or initial probabilities summing over 1,
        describe no distribution (the values become NaN; check() raises for concrete ones)."""
        return jnp.any(~(w >= 0)) | (alpha.sum() > 1 + 1e-12)

    def check_times(times):
        """Concrete times: ParameterError for NaN, infinite, or (discrete) non-integer ones."""
        if isinstance(times, jax.core.Tracer):
            return
        try:
            t = np.asarray(times, np.float64)
        except (TypeError, ValueError):
            raise ParameterError(f"times must be numbers, got {times!r}") from None
        if np.any(~np.isfinite(t)):
            raise ParameterError(f"times contain NaN or infinite values: {times!r}")
        if discrete and np.any(t != np.round(t)):
            raise ParameterError(f"discrete times are jump counts and must be integers, got {times!r}")

    def parts(theta):
        w = weights(theta)
        alpha = jnp.zeros(n, w.dtype).at[a_pos].add(w[a_idx])
        lam = jnp.zeros(n, w.dtype).at[o_r].add(w[o_idx])
        S = jnp.zeros((n, n), w.dtype).at[t_r, t_c].add(w[t_idx])
        s = jnp.zeros(n, w.dtype).at[x_r].add(w[x_idx])
        return alpha, S, lam, s

    if discrete:
        into = _grouped(t_c, t_r, n)  # (v T)[j] = sum of v[i] w over the edges i -> j

        @jax.jit
        def forward(theta, times):
            # the forward algorithm on the sparse graph: v_(k+1) = v_k T with T = diag(1 - lam)
            # + the edge probabilities, P(tau = k + 1) = v_k . s; K steps, differentiable
            # by JAX's own reverse (and forward) mode of the scan
            w = weights(theta)
            alpha = jnp.zeros(n, w.dtype).at[a_pos].add(w[a_idx])
            lam = jnp.zeros(n, w.dtype).at[o_r].add(w[o_idx])
            s = jnp.zeros(n, w.dtype).at[x_r].add(w[x_idx])
            stay, packed = 1.0 - lam, into.pack(w[t_idx])

            def step(v, _):
                return v * stay + into.total(into.take(v) * packed), v @ s

            _, pm = jax.lax.scan(step, alpha, None, length=K)  # pm[j] = P(tau = j + 1)
            pm = jnp.concatenate([jnp.array([1.0 - alpha.sum()], pm.dtype), pm])
            k = jnp.asarray(times).reshape(-1).astype(jnp.int32)
            vals = jnp.where((k >= 0) & (k <= K), pm[jnp.clip(k, 0, K)], jnp.nan)
            vals = jnp.where(k < 0, 0.0, vals)
            # probabilities below 0, or out-probabilities summing over 1: no distribution
            bad = invalid(w, alpha) | jnp.any(lam > 1.0 + 1e-12)
            return jnp.where(bad, jnp.nan, vals).reshape(jnp.shape(times))

        def f_discrete(theta, times):
            check(theta)
            check_times(times)
            return forward(theta, times)

        return f_discrete

    @jax.jit
    def by_expm(theta, times):
        alpha, S, lam, s = parts(theta)
        S = S - jnp.diag(lam)
        times = jnp.asarray(times, dtype=S.dtype)
        tt_ = jnp.maximum(times.reshape(-1), 0.0)
        one = lambda t: alpha @ expm(S * t, max_squarings=64) @ s
        if n * n * tt_.shape[0] <= 20_000_000:
            dens = jax.vmap(one)(tt_)  # batched small matrices
        else:
            dens = jax.lax.map(one, tt_)  # bounded memory for big ones
        dens = jnp.where(invalid(weights(theta), alpha), jnp.nan, dens)
        return jnp.where(times.reshape(-1) < 0, 0.0, dens).reshape(times.shape)

    mix = _poisson_mixture(n, t_r, t_c)

    @partial(jax.jit, static_argnums=2)
    def by_uniformization(theta, times, K):
        w = weights(theta)
        alpha = jnp.zeros(n, w.dtype).at[a_pos].add(w[a_idx])
        out_rate = jnp.zeros(n, w.dtype).at[o_r].add(w[o_idx])
        s = jnp.zeros(n, w.dtype).at[x_r].add(w[x_idx])
        # Every L >= the largest out-rate gives the same (exact) series, so L is held
        # constant for differentiation.
        L = jax.lax.stop_gradient(jnp.max(out_rate, initial=0.0))
        times = jnp.asarray(times, w.dtype)
        flat = times.reshape(-1)
        x = L * jnp.maximum(flat, 0.0)  # 0 when nothing moves: then pdf = alpha . s = 0
        L = jnp.where(L > 0, L, 1.0)
        dens = mix(alpha, 1.0 - out_rate / L, w[t_idx] / L, s, x, K)
        dens = jnp.where(x > _max_rate_time(K), jnp.nan, dens)  # K steps do not reach
        dens = jnp.where(invalid(w, alpha), jnp.nan, dens)
        return jnp.where(flat < 0, 0.0, dens).reshape(times.shape)

    def top_rate(theta):  # the largest total out-rate, on the host
        th = np.asarray(theta, np.float64).reshape(-1)
        if p and th.size != p:
            raise ParameterError(f"theta has length {th.size}, expected {p}")
        w = st["base"] + st["coef"] @ th if p else st["base"]
        return float(np.bincount(o_r, w[o_idx], minlength=n).max(initial=0.0))

    traced_rate = top_rate(()) if not p else None if graph.theta is None else top_rate(graph.theta)
    cap = _AUTO_MAX_JUMPS if n <= MAX_DENSE_STATES else math.inf

    def steps(theta, times):
        """Uniformisation steps for this call, or None for expm."""
        if m == "expm":
            return None
        if max_jumps is not None:
            return int(max_jumps)
        traced = isinstance(theta, jax.core.Tracer)
        rate = traced_rate if traced else top_rate(theta)
        if rate is None or isinstance(times, jax.core.Tracer):
            if m == "auto" and cap < math.inf:
                return None
            raise ParameterError(
                "pmf_from_graph cannot size its uniformisation steps here (times traced, or "
                "theta traced on a graph without current weights): pass max_jumps"
            )
        tt_ = np.asarray(times, np.float64)
        x = rate * max(float(np.max(tt_[np.isfinite(tt_)], initial=0.0)), 0.0) * (1 + 1e-9)
        need = _jumps_needed(x)
        if traced and p:  # room for theta to grow, within the cap
            need = max(need, min(_jumps_needed(_TRACED_MARGIN * x), _AUTO_MAX_JUMPS))
        return None if m == "auto" and need > cap else need

    def f(theta, times):
        check(theta)
        check_times(times)
        theta, times = (a if isinstance(a, jax.Array) else np.asarray(a) for a in (theta, times))
        k = steps(theta, times)
        if k is None:
            return by_expm(theta, times)
        try:
            return by_uniformization(theta, times, k)
        except TypeError as e:  # JAX refuses jvp of the custom_vjp while tracing
            if "forward-mode" not in str(e):
                raise
            raise ForwardModeError(
                "pmf_from_graph with uniformisation has reverse-mode derivatives only: forward "
                "mode (jax.jvp, jax.jacfwd) is not supported; use jax.grad / jax.jacrev "
                "(jax.hessian, forward over reverse, works), or method='expm'"
            ) from e

    return f


# ------------------------------------------------------------------------- moments
def _host_moments(h, theta, k, r):
    if h.coef is not None:
        h.update_weights(np.asarray(theta, np.float64))
    ys, y = [], np.ones_like(r)
    for _ in range(k):
        y = solve(h, r * y)
        ys.append(y)
    m = np.array([factorial(j + 1) * alpha_dot(h, ys[j]) for j in range(k)])
    return m, ys


def _host_value(h, theta, k, r):
    """The first k moments at theta (the graph's compiled replay plan)."""
    if h.coef is not None:
        h.update_weights(np.asarray(theta, np.float64))
    return np.asarray(moments(h, k, r))


def _host_grads(h, thetas, k, r, cots):
    """Rows of d(sum_j cots[row, j] m_j)/dtheta for the rows of thetas (B, p), by adjoint
    replay in the core (ReplayPlan.moments_vjp_theta, one call, the GIL released), or, for a
    graph without a plan, with the plain tape here."""
    thetas = np.ascontiguousarray(thetas, np.float64)
    cots = np.ascontiguousarray(cots, np.float64)
    plan = replay_plan(h, graph_trace(h), eager=True)
    if plan is None:
        return np.array([_tape_grad(h, t, k, r, c) for t, c in zip(thetas, cots)]).reshape(thetas.shape)
    m, grads, negative = plan.moments_vjp_theta(thetas, h.base, h.coef, int(k), r, cots, h.indptr, h.target)
    bad = np.flatnonzero(negative | ~np.all(np.isfinite(m), axis=1))
    if bad.size:  # the graph's own checks name the edge or vertex
        h.update_weights(thetas[bad[0]])
        tape_state(h)
        raise ParameterError(f"theta {thetas[bad[0]].tolist()!r} gives non-finite moments")
    return grads


def _tape_grad(h, theta, k, r, cot):
    m, ys = _host_moments(h, theta, k, r)
    tr, val, inv = tape_state(h)
    V = h.vertices_length()
    lo, hi = int(h.indptr[0]), int(h.indptr[1])
    a = np.zeros(V)
    np.add.at(a, h.target[lo:hi], h.w[lo:hi])
    src = np.repeat(np.arange(V), np.diff(h.indptr))
    tgt = h.target
    dw = np.zeros(h.target.size)
    lam_vec = np.zeros(V)
    for j in range(k, 0, -1):
        c = cot[j - 1] * factorial(j)
        lam_vec = lam_vec + c * a
        mu = lam_vec.copy()
        _core.run_program(tr["xi"], tr["xj"], tr["xs"], val, mu, True, trace=tr)
        mu *= inv  # U^T lambda
        y = ys[j - 1]
        dw[hi:] += mu[src[hi:]] * (y[tgt[hi:]] - y[src[hi:]])
        dw[lo:hi] += c * y[tgt[lo:hi]]
        lam_vec = r * mu
    return dw @ h.coef if h.coef is not None else np.zeros(0)


def moments_from_graph(graph, k=2, rewards=None, *, enable_x64=True, backend="core"):
    """A JAX function ``f(theta) -> (k,)`` of the first k (reward) moments, differentiable.

    backend="core" (default): values and gradients come from trace replay in the compiled
    core (``pure_callback``; under ``vmap`` one callback evaluates the whole batch, blocks of
    8 or 16 thetas side by side, as :func:`phasic.batch.evaluate_batch`). backend="jax": the trace is
    replayed in pure JAX, level by level (:mod:`phasic.jax._replay`): jit-able, vmap-able
    (a batch runs as one replay), reverse-mode differentiable (``jax.grad``/``jacrev``; not
    forward mode), and not tied to the CPU. Its values match the core's to ~1e-15 relative
    (x64). A theta of the wrong length raises ParameterError (backend="jax" takes shape
    (p,) only); with backend="jax" a theta giving a negative or NaN rate yields NaN moments
    (traced code cannot raise). Continuous graphs only.
    """
    graph = of(graph)
    if backend not in ("core", "jax"):
        raise ParameterError(f"backend={backend!r} is not one of 'core', 'jax'")
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ParameterError(f"k must be a positive integer, got {k!r}")
    if graph.discrete:
        raise ParameterError("moments_from_graph supports continuous graphs; use Graph.moments")
    graph.flush()  # edges added by hand are pending until then
    if graph.coef is None:
        raise ParameterError("moments_from_graph needs a parameterised graph")
    _enable_x64(enable_x64)
    import jax
    import jax.numpy as jnp

    h = graph.copy()
    r = reward_vector(h, rewards)
    p = h.coef.shape[1]
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    if backend == "jax":
        from phasic.jax._replay import replay_moments

        return replay_moments(h, int(k), r, dtype)

    lock = threading.Lock()  # h's weights are set per call: one call at a time

    def host_val(theta):  # theta (..., p): leading axes from vmap ("expand_dims")
        th = np.asarray(theta, np.float64)
        rows = th.reshape(-1, p)
        with lock:
            if rows.shape[0] == 1:
                out = _host_value(h, rows[0], k, r)
            else:  # a vmapped batch: one batch replay (evaluate_batch)
                out = evaluate_batch(h, rows, k=k, rewards=r)
        return np.asarray(out, np.float64).reshape(th.shape[:-1] + (k,)).astype(dtype)

    def host_grad(theta, cot):
        th, ct = np.asarray(theta, np.float64), np.asarray(cot, np.float64)
        lead = np.broadcast_shapes(th.shape[:-1], ct.shape[:-1])
        th = np.broadcast_to(th, lead + (p,)).reshape(-1, p)
        ct = np.broadcast_to(ct, lead + (k,)).reshape(-1, k)
        with lock:
            g = _host_grads(h, th, k, r, ct)
        return g.reshape(lead + (p,)).astype(dtype)

    def vector(theta):
        theta = jnp.asarray(theta, dtype)
        if theta.size != p:
            raise ParameterError(f"theta has shape {theta.shape}; expected ({p},)")
        return theta.reshape(p)

    @jax.custom_vjp
    def f(theta):
        theta = vector(theta)
        if not isinstance(theta, jax.core.Tracer):  # eager: errors surface as ParameterError
            return jnp.asarray(host_val(np.asarray(theta)))
        return jax.pure_callback(host_val, jax.ShapeDtypeStruct((k,), dtype), theta, vmap_method="expand_dims")

    def fwd(theta):
        theta = vector(theta)
        return f(theta), theta

    def bwd(theta, cot):
        g = jax.pure_callback(host_grad, jax.ShapeDtypeStruct((p,), dtype), theta, cot, vmap_method="expand_dims")
        return (g,)

    f.defvjp(fwd, bwd)
    return f
