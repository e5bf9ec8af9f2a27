"""Piecewise-constant time on any parameterised graph: an epoch schedule.

Epoch ``k`` runs from ``breaks[k-1]`` to ``breaks[k]`` (the first from 0, the last to
infinity) with the edge rates of ``thetas[k]``; at a breakpoint an instantaneous map may move
mass between states (a split moves every lineage of a deme into its ancestor; a pulse moves
each lineage with probability ``p``). Within an epoch the transient distribution and the time
spent in each state come from adaptive uniformisation in the compiled core
(``phasic._core.transient``: the rate follows the states that still hold mass, so the cost grows
with the logarithm of largest rate x time, not with the product, and it only adds non-negative
numbers). The last epoch is closed by the graph's elimination trace: ``p_K U r`` with
``U = (-S_K)^-1`` (ALGORITHMS.md section 5), the same replay that computes a
time-homogeneous graph's moments, so one stored trace serves every parameter value.
"""

from __future__ import annotations

from math import comb

import numpy as np

from phasic import _core, _csr
from phasic.distributions import DROP_EPS, MAX_STEPS, initial_mass, propagate
from phasic.exceptions import ParameterError
from phasic.moments import solve, tape_state
from phasic.traces import graph_trace


def _vector(values, name):
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ParameterError(f"{name} must be one-dimensional, got shape {arr.shape!r}")
    if not np.all(np.isfinite(arr)):
        raise ParameterError(f"{name} {values!r} has non-finite entries")
    return arr


def _map_rows(ll, spec, at, vertices):
    """Rows of a breakpoint's state map for `vertices`: ``{v: (targets, probs)}``.

    `spec`: a callable ``state -> [(state, probability), ...]`` (None or ``[]`` keeps the state),
    evaluated only for the vertices that hold mass when the map applies.
    """
    states = ll.states()
    rows = {}
    for v in vertices:
        out = spec(states[v].copy())
        if out is None or len(out) == 0:
            rows[v] = (np.array([v]), np.array([1.0]))
            continue
        targets, probs = [], []
        for item in out:
            try:
                state, prob = item
            except (TypeError, ValueError):
                raise ParameterError(
                    f"the map at t={at!r} returned {item!r} for state {states[v].tolist()}; "
                    "expected (state, probability) pairs"
                ) from None
            z = ll.space.find(np.asarray(state, dtype=np.int32)) if len(state) == states.shape[1] else -1
            if z <= 0:
                raise ParameterError(
                    f"the map at t={at!r} sends state {states[v].tolist()} to {list(state)!r}, which is not "
                    "a state of the graph; the callback must reach every state a map can produce "
                    "(give it an edge there, with a parameter that is 0 in the epochs where it is unused)"
                )
            prob = float(prob)
            if not (prob >= 0.0 and np.isfinite(prob)):
                raise ParameterError(f"the map at t={at!r} gives probability {prob!r} for {states[v].tolist()}")
            targets.append(int(z))
            probs.append(prob)
        total = sum(probs)
        if abs(total - 1.0) > 1e-9:
            raise ParameterError(
                f"the map at t={at!r} gives state {states[v].tolist()} probabilities summing to {total!r}, not 1"
            )
        rows[v] = (np.asarray(targets), np.asarray(probs))
    return rows


def _matrix_map(ll, spec, at):
    V = ll.vertices_length()
    M = np.asarray(spec, dtype=np.float64)
    if M.shape != (V, V):
        raise ParameterError(f"the map at t={at!r} has shape {M.shape!r}; expected ({V}, {V}) (one row per vertex)")
    if not np.all(np.isfinite(M)) or np.any(M < 0):
        raise ParameterError(f"the map at t={at!r} has negative or non-finite entries")
    sums = M[1:].sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > 1e-9)
    if bad.size:
        raise ParameterError(f"row {int(bad[0]) + 1} of the map at t={at!r} sums to {float(sums[bad[0]])!r}, not 1")
    return M


class Epochs:
    """An epoch schedule on a parameterised :class:`phasic.Graph`.

    Parameters
    ----------
    graph : phasic.Graph
        A continuous graph with parameterised edges (``theta_dim`` parameters).
    breaks : sequence of float
        The breakpoints ``0 < t_1 < ... < t_{K-1}``, in the graph's time units.
    thetas : sequence of sequence of float
        ``K`` parameter vectors, one per epoch (the first applies from time 0).
    maps : sequence, optional
        ``K - 1`` state maps applied at the breakpoints (None for none): a callable
        ``state -> [(state, probability), ...]`` (return None or ``[]`` to keep a state) or a
        ``(V, V)`` array. Every state a map produces must be a state of the graph. A callable
        is evaluated only for the states that hold mass when it applies; one with a method
        ``map_rows(csr, vertices) -> {v: (targets, probs)}`` (or None) does many at once.

    Examples
    --------
    A bottleneck on a user's callback: a Kingman coalescent whose pair rate is ``theta[0]``,
    10 times faster between times 0.1 and 0.2 (time runs backwards from the sample).

    >>> from phasic import Graph, with_ipv
    >>> from phasic.demography import Epochs
    >>> @with_ipv([5])
    ... def kingman(state):
    ...     n = state[0]
    ...     return [] if n <= 1 else [[[n - 1], [n * (n - 1) / 2]]]
    >>> g = Graph(kingman)
    >>> e = Epochs(g, breaks=[0.1, 0.2], thetas=[[1.0], [10.0], [1.0]])
    >>> round(e.expectation(), 6) < round(2 * (1 - 1 / 5), 6)
    True
    """

    def __init__(self, graph, breaks, thetas, maps=None):
        ll = _csr.of(graph)
        ll.flush()
        if ll.discrete:
            raise ParameterError("epochs are for continuous graphs; this graph is discrete")
        if ll.coef is None:
            raise ParameterError(
                "epochs need a parameterised graph (rates given as coefficient lists, so that each epoch's "
                "theta sets them); this graph's rates are numbers"
            )
        b = _vector(breaks, "breaks")
        if b.size and (b[0] <= 0 or np.any(np.diff(b) <= 0)):
            raise ParameterError(f"breaks {breaks!r} must be positive and strictly increasing")
        th = np.asarray(thetas, dtype=np.float64)
        if th.ndim != 2 or th.shape[0] != b.size + 1:
            raise ParameterError(
                f"thetas has shape {th.shape!r}; expected ({b.size + 1}, {ll.theta_dim}): one parameter vector per "
                f"epoch ({b.size} breaks make {b.size + 1} epochs)"
            )
        if th.shape[1] != ll.theta_dim:
            raise ParameterError(f"thetas have length {th.shape[1]}, the graph has {ll.theta_dim} parameters")
        maps = [None] * b.size if maps is None else list(maps)
        if len(maps) != b.size:
            raise ParameterError(f"{len(maps)} maps for {b.size} breaks; give one per break (None for none)")
        self.graph = graph
        self.breaks = b
        self.thetas = th
        self._ll = ll
        self._weights = [self._epoch_weights(t) for t in th]
        self._maps = [m if m is None or callable(m) else _matrix_map(ll, m, float(t)) for m, t in zip(maps, b)]
        # rows of callable maps, by vertex (a map's own `row_cache` when it has one)
        self._map_cache = [getattr(m, "row_cache", None) if callable(m) else None for m in self._maps]
        self._map_cache = [{} if c is None else c for c in self._map_cache]
        self.stats = {"dropped": 0.0, "steps": 0, "intervals": 0}
        self._last = None
        self._p0 = self._initial()
        self._absorbing = np.diff(ll.indptr) == 0
        self._absorbing[0] = False

    # ------------------------------------------------------------------ parts
    def _epoch_weights(self, theta):
        ll = self._ll
        w = ll.weights_for(theta)
        n = np.diff(ll.indptr)
        lam = np.bincount(np.repeat(np.arange(n.size), n), weights=w, minlength=n.size).astype(np.float64)
        return w, lam

    def _initial(self):
        return initial_mass(self._ll, self._weights[0][0])

    def _apply_map(self, k, p):
        m = self._maps[k]
        if m is None:
            return p
        if not callable(m):
            return p @ m
        cache = self._map_cache[k]
        held = np.flatnonzero(p)
        missing = [int(v) for v in held if v not in cache]
        if missing:
            fast = m.map_rows(self._ll, np.asarray(missing)) if hasattr(m, "map_rows") else None
            cache.update(fast if fast is not None else _map_rows(self._ll, m, float(self.breaks[k]), missing))
        rows = [cache[int(v)] for v in held]
        targets = np.concatenate([r[0] for r in rows])
        mass = np.concatenate([p[v] * r[1] for v, r in zip(held, rows)])
        return np.bincount(targets, weights=mass, minlength=p.size).astype(np.float64)

    def _step(self, k, p, T, times=(), soj=None, moments=0):
        w, lam = self._weights[k]
        _, flow, absorbed, mom, st = propagate(self._ll, w, lam, p, T, times, soj, moments)
        for key in ("dropped", "steps", "intervals"):
            self.stats[key] += st[key]
        return absorbed, flow, mom

    def _last_epoch(self):
        """A copy of the graph's CSR with the last epoch's weights, sharing its trace."""
        if self._last is None:
            tr = graph_trace(self._ll)
            c = self._ll.copy()
            c.trace = tr
            c.update_weights(self.thetas[-1])
            self._last = c
        return self._last

    def _sweep(self, soj=None, moments=0):
        """Propagates the initial distribution through every epoch but the last. Returns the
        distribution at the start of the last epoch (after its map) and the time-power
        integrals of the transient mass up to it."""
        p = self._p0.copy()
        mom = np.zeros(moments)
        start = 0.0
        for k, end in enumerate(self.breaks):
            _, _, m = self._step(k, p, end - start, soj=soj, moments=moments)
            for j in range(moments):  # shift (start + u)^j
                mom[j] += sum(comb(j, i) * start ** (j - i) * m[i] for i in range(j + 1))
            p = self._apply_map(k, p)
            start = end
        return p, mom

    # ------------------------------------------------------------------ results
    def expected_rewards(self, rewards=None):
        """Expected accumulated rewards ``E[int r(X_t) dt]`` under the schedule.

        Parameters
        ----------
        rewards : array_like, optional
            One value per vertex (shape ``(V,)``), or several reward vectors as columns of a
            ``(V, m)`` array; None: the time to absorption.

        Returns
        -------
        float or numpy.ndarray of shape (m,)
        """
        one = rewards is None or np.ndim(rewards) == 1
        R = self._check_rewards(rewards)
        out = self.sojourn() @ R
        return float(out[0]) if one else out

    def _last_sojourn(self, c, p):
        """``p U``: expected time in each vertex from distribution `p` under the last epoch."""
        tr, val, inv = tape_state(c)
        a = p.copy()
        a[0] = 0.0
        a[self._absorbing] = 0.0
        _core.run_program(tr["xi"], tr["xj"], tr["xs"], val, a, True, tr)
        return a * inv

    def sojourn(self):
        """Expected total time in each vertex (shape ``(V,)``; the start vertex 0)."""
        V = self._ll.vertices_length()
        soj = np.zeros(V)
        p, _ = self._sweep(soj=soj)
        soj += self._last_sojourn(self._last_epoch(), p)
        soj[0] = 0.0
        soj[self._absorbing] = 0.0  # time after absorption is not time in a state
        return soj

    def _check_rewards(self, rewards):
        V = self._ll.vertices_length()
        R = np.ones(V) if rewards is None else np.asarray(rewards, dtype=np.float64)
        if R.ndim == 1:
            R = R[:, None]
        if R.ndim != 2 or R.shape[0] != V:
            raise ParameterError(f"rewards have shape {np.shape(rewards)!r}; expected ({V},) or ({V}, m)")
        if not np.all(np.isfinite(R)):
            raise ParameterError("rewards have non-finite entries")
        return R

    def _map_adjoint(self, k, lam, held):
        """``M lam`` on the vertices that held mass when map `k` applied (0 elsewhere: the
        others held none, so their adjoint never multiplies mass)."""
        m = self._maps[k]
        if m is None:
            return lam
        if not callable(m):
            return m @ lam
        cache = self._map_cache[k]
        out = np.zeros_like(lam)
        out[held] = [float(probs @ lam[targets]) for targets, probs in (cache[int(v)] for v in held)]
        return out

    def _edge_flux(self, w, out_rates, p, lam):
        """``p Q lam``: the rate of change of ``p . lam`` under weights `w` (out-rates
        `out_rates`), ``sum_i p_i (sum_e w_e lam_target(e) - out_rate_i lam_i)``."""
        from scipy.sparse import csr_matrix

        ll = self._ll
        V = ll.vertices_length()
        W = csr_matrix((w, ll.target, ll.indptr), shape=(V, V))
        return float(p @ (W @ lam) - (p * out_rates) @ lam)

    def reward_gradient(self, rewards, weights):
        """An expected reward and its exact derivatives with respect to the schedule.

        The value is ``F = weights . E[int r(X_t) dt]`` for the reward columns `rewards`
        (see :meth:`expected_rewards`), e.g. the gradient of a log-likelihood with respect
        to an expected SFS as `weights`. Reverse mode (one adjoint vector for any number of
        parameters): the last epoch by the trace (``dF/dw_e = u_i (h_z - h_i)`` for an edge
        ``i -> z``, with ``u = p_K U`` and ``h = U g``), the others by the reverse of the
        adaptive uniformisation (``phasic._core.transient_reverse``), the maps as the linear
        maps they are (their probabilities are held fixed), and a breakpoint ``b`` between
        epochs ``k`` and ``k + 1`` by ``dF/db = p_b- (Q_k lam_b- + g) - p_b+ (Q_k+1 lam_b+ + g)``.

        Parameters
        ----------
        rewards : array_like, shape (V,) or (V, m)
        weights : array_like of shape (m,), or callable
            A callable is given the expected rewards (shape ``(m,)``) and returns the weights
            (e.g. a log-likelihood's gradient at them), so that one forward pass serves both.

        Returns
        -------
        value : float
        dthetas : numpy.ndarray, shape (K, theta_dim)
            ``dF/dthetas[k]``.
        dbreaks : numpy.ndarray, shape (K - 1,)
            ``dF/dbreaks[b]``.

        Examples
        --------
        >>> from phasic import Graph, with_ipv
        >>> from phasic.demography import Epochs
        >>> @with_ipv([4])
        ... def kingman(state):
        ...     n = state[0]
        ...     return [] if n <= 1 else [[[n - 1], [n * (n - 1) / 2]]]
        >>> e = Epochs(Graph(kingman), breaks=[0.5], thetas=[[1.0], [2.0]])
        >>> value, dthetas, dbreaks = e.reward_gradient(None, [1.0])
        >>> h = 1e-6
        >>> up = Epochs(e.graph, [0.5], [[1.0 + h], [2.0]]).expectation()
        >>> dn = Epochs(e.graph, [0.5], [[1.0 - h], [2.0]]).expectation()
        >>> bool(abs(dthetas[0, 0] - (up - dn) / (2 * h)) < 1e-7)
        True
        """
        ll = self._ll
        R = self._check_rewards(rewards)
        K = self.thetas.shape[0]
        # forward: the distribution at the start and end of every finite epoch
        starts, ends, helds = [], [], []
        p = self._p0.copy()
        soj = np.zeros_like(p)
        prev = 0.0
        for k, end in enumerate(self.breaks):
            starts.append(p.copy())
            self._step(k, p, end - prev, soj=soj)
            ends.append(p.copy())
            helds.append(np.flatnonzero(p))
            p = self._apply_map(k, p)
            prev = end
        # the last epoch, by the trace
        c = self._last_epoch()
        u = self._last_sojourn(c, p)
        soj += u
        soj[0] = 0.0
        soj[self._absorbing] = 0.0
        expected = soj @ R
        wts = weights(expected) if callable(weights) else weights
        wts = np.asarray(wts, dtype=np.float64).reshape(-1)
        if wts.size != R.shape[1] or not np.all(np.isfinite(wts)):
            raise ParameterError(f"weights have shape {wts.shape!r}; expected ({R.shape[1]},), finite")
        value = float(wts @ expected)
        g = R @ wts
        g[0] = 0.0
        g[self._absorbing] = 0.0
        h = solve(c, g)
        h[0] = 0.0
        h[self._absorbing] = 0.0
        wK, lamK = self._weights[K - 1]
        sources = np.repeat(np.arange(ll.vertices_length()), np.diff(ll.indptr))
        dthetas = np.zeros_like(self.thetas)
        dthetas[K - 1] = ll.coef.T @ (u[sources] * (h[ll.target] - h[sources]))
        dbreaks = np.zeros(self.breaks.size)
        lam, p_after, w_after, lam_after = h, p, wK, lamK
        mu_target = float(np.clip(2e6 / max(ll.vertices_length(), 1), 20.0, 200.0))  # (K+1) n doubles kept
        for k in range(K - 2, -1, -1):
            w, lamv = self._weights[k]
            lam_end = self._map_adjoint(k, lam, helds[k])
            dbreaks[k] = (
                self._edge_flux(w, lamv, ends[k], lam_end)
                + float(ends[k] @ g)
                - self._edge_flux(w_after, lam_after, p_after, lam)
                - float(p_after @ g)
            )
            T = float(self.breaks[k] - (self.breaks[k - 1] if k else 0.0))
            lam_io = lam_end.copy()
            gw = np.zeros(w.size)
            _, st = _core.transient_reverse(
                ll.indptr, ll.target, w, lamv, starts[k], T, g, lam_io, gw, DROP_EPS, mu_target, MAX_STEPS
            )
            if st["exceeded"]:
                raise ParameterError(f"epoch {k} needs more than {MAX_STEPS:.0e} uniformisation steps")
            dthetas[k] = ll.coef.T @ gw
            lam, p_after, w_after, lam_after = lam_io, starts[k], w, lamv
        return value, dthetas, dbreaks

    def expectation(self, rewards=None) -> float:
        """``E[T]`` (or the expected accumulated reward, see :meth:`expected_rewards`)."""
        return self.expected_rewards(rewards)

    def moments(self, power: int = 2):
        """Raw moments ``[E[T], ..., E[T^power]]`` of the time to absorption under the schedule.

        ``E[T^m] = m int_0^a t^(m-1) P(T > t) dt + sum_v p_a(v) E[(a + T'_v)^m] - a^m P(T > a)``
        with ``a`` the last breakpoint, ``p_a`` the distribution there and ``T'_v`` the time to
        absorption from ``v`` in the last epoch (``E[T'^i] = i! U^i 1`` by replay).
        """
        if isinstance(power, bool) or not isinstance(power, (int, np.integer)) or power < 1:
            raise ParameterError(f"power must be a positive integer, got {power!r}")
        power = int(power)
        p, mom = self._sweep(moments=power)
        a = float(self.breaks[-1]) if self.breaks.size else 0.0
        c = self._last_epoch()
        V = self._ll.vertices_length()
        ones = np.ones(V)
        ones[0] = 0.0
        absorbing = self._absorbing
        per = [ones.copy()]  # E[T'^0] = 1 for transient vertices
        per[0][absorbing] = 0.0
        x = per[0]
        for i in range(1, power + 1):
            x = i * solve(c, x)
            x[absorbing] = 0.0
            per.append(x)
        alive = float(p[1:][~absorbing[1:]].sum())
        out = []
        for m in range(1, power + 1):
            tail = sum(comb(m, i) * a ** (m - i) * float(p @ per[i]) for i in range(m + 1))
            out.append(m * mom[m - 1] + tail - a**m * alive)
        return out

    def variance(self) -> float:
        """``Var(T)`` under the schedule."""
        m1, m2 = self.moments(2)
        return m2 - m1 * m1

    def _distribution(self, t):
        arr = np.asarray(t, dtype=np.float64)
        flat = arr.reshape(-1)
        if not np.all(np.isfinite(flat)):
            raise ParameterError(f"times must be finite, got {t!r}")
        order = np.argsort(flat, kind="stable")
        ts = flat[order]
        absorbed = np.zeros(ts.size)
        flow = np.zeros(ts.size)
        defect = max(0.0, 1.0 - float(self._p0.sum()))
        pos = ts >= 0
        p = self._p0.copy()
        start = 0.0
        edges = [*self.breaks.tolist(), np.inf]
        lo = int(np.searchsorted(ts, 0.0, side="left"))
        for k, end in enumerate(edges):
            hi = int(np.searchsorted(ts, end, side="left")) if np.isfinite(end) else ts.size
            sel = slice(lo, hi)
            if np.isfinite(end):
                tr, fl, _ = self._step(k, p, end - start, ts[sel] - start)
                p = self._apply_map(k, p)
            else:
                T = float(ts[-1] - start) if hi > lo else 0.0
                tr, fl, _ = self._step(k, p, max(T, 0.0), ts[sel] - start)
            absorbed[sel], flow[sel] = tr, fl
            lo = hi
            start = end
            if lo >= ts.size:
                break
        cdf = np.where(pos, np.clip(defect + absorbed, 0.0, 1.0), 0.0)
        flow[~pos] = 0.0
        out_pdf = np.empty_like(flow)
        out_cdf = np.empty_like(flow)
        out_pdf[order] = flow
        out_cdf[order] = cdf
        return out_pdf.reshape(arr.shape), out_cdf.reshape(arr.shape)

    def pdf(self, t):
        """Density of the time to absorption at times `t` (right-continuous at breakpoints)."""
        return self._distribution(t)[0]

    def cdf(self, t):
        """``P(T <= t)`` at times `t`."""
        return self._distribution(t)[1]
