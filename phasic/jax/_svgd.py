"""Stein variational gradient descent (Liu & Wang 2016) over a graph's parameters.

Particles live in log-parameter space (rates are positive). Each step evaluates every
particle's log-posterior and gradient in one ``jax.vmap`` call, then moves particle ``i`` along
``phi(x_i) = (1/m) sum_j [k(x_j, x_i) grad log p(x_j) + grad_{x_j} k(x_j, x_i)]`` with an RBF
kernel whose bandwidth follows the median heuristic (:func:`stein_direction`). The move is
preconditioned by the particles themselves (:func:`preconditioned_step`: a damped Newton step
from their covariance and the curvature of the log density across them, divided by each
particle's kernel density), within a trust radius ``step_size sqrt(p)`` that decays like
``1/sqrt(1 + iteration/50)`` (:func:`step_size_at`): the particles travel at most that far
per step and settle geometrically near the posterior, whatever its width.

The update is written once for any array module with numpy's API: this module runs it on
``jax.numpy`` inside ``jit``, :mod:`phasic.inference` on numpy arrays for likelihoods that are
not JAX (Demes models evaluated by the compiled core).
"""

from __future__ import annotations

import numpy as np

from phasic.exceptions import ParameterError


def particle_metric(z, xp=np):
    """The inverse of the particles' covariance (shrunk a tenth towards its diagonal, so it
    stays positive definite with few particles; a pseudo-inverse, so a coordinate all particles
    share, such as a fixed parameter, does not count): the kernel's metric in
    :func:`stein_direction`."""
    m = z.shape[0]
    zc = z - xp.mean(z, axis=0)
    C = zc.T @ zc / max(m - 1, 1)
    return xp.linalg.pinv(0.9 * C + 0.1 * xp.diag(xp.diag(C)))


def stein_direction(z, g, xp=np, metric=None):
    """The SVGD update direction of particles `z` (shape ``(m, p)``) with log-density
    gradients `g` (same shape): ``phi_i = (1/m) sum_j [k(x_j, x_i) g_j + A grad_{x_j} k(x_j, x_i)]``.

    The kernel is RBF in the metric ``A`` (`metric`; default the identity),
    ``k(x, y) = exp(-(x - y)' A (x - y) / h)``, with the median heuristic
    ``h = median_ij (x_i - x_j)' A (x_i - x_j) / log(m + 1)``. With ``A`` the inverse of the
    particles' covariance (:func:`particle_metric`) this is SVGD in whitened coordinates, mapped
    back (the map's ``C`` comes with :func:`preconditioned_step`): affine invariant, so a
    posterior that is narrow in one direction and wide in another is spread over in both.
    `xp` is the array module (numpy, or ``jax.numpy`` under ``jit``). Returns
    ``(phi, density, drive)``: ``density`` is each particle's mean kernel weight
    ``(1/m) sum_j k(x_j, x_i)`` (small where particles are sparse), ``drive`` the mean over
    particles of ``|attraction| + |repulsion|`` (the two terms of phi before they cancel), a
    scale for judging how near ``phi`` is to zero.
    """
    m, p = z.shape
    A = xp.eye(p) if metric is None else metric
    diff = z[:, None, :] - z[None, :, :]  # x_i - x_j
    d2 = xp.sum((diff @ A) * diff, axis=-1)
    h = xp.median(d2) / xp.log(m + 1.0) + 1e-12
    K = xp.exp(-d2 / h)
    attract = (K @ g) / m
    # grad_{x_j} K(x_j, x_i) = 2 A (x_i - x_j) / h K_ij; the A of the whitening cancels it
    repulse = (2.0 / h) * xp.sum(K[:, :, None] * diff, axis=1) / m
    phi = attract + repulse if metric is None else attract + repulse @ A
    drive = xp.mean(xp.linalg.norm(attract, axis=1) + xp.linalg.norm(phi - attract, axis=1))
    return phi, xp.mean(K, axis=1), drive


def preconditioned_step(z, g, phi, density, radius, gain=0.5, xp=np):
    """The move of each particle for direction `phi`: ``gain M phi_i / density_i`` with a
    preconditioner ``M = (|H| + C^-1)^-1`` from the particles themselves, shortened to length
    `radius` where it is longer. `g` are the particles' log-density gradients, `density` their
    mean kernel weights (from :func:`stein_direction`).

    Dividing by ``density_i`` leaves the fixed points of SVGD (``phi_i = 0``) as they are; it
    undoes the slowness of particles in sparse regions (the kernel sum attracts them weakly).
    ``C`` is the particles' covariance (in ``C^-1`` shrunk a tenth towards its diagonal, so it
    stays positive definite with few particles) and ``H`` the curvature of the log density
    across them: the regression of the gradients on the positions, ``H = -cov(g, z) C^+``
    (symmetrised, eigenvalues made positive). Particles spread wider than the posterior see
    ``H`` (a Newton step), particles spread narrower see ``C`` (they expand by a fraction of
    their spread per step), and near the posterior, where Stein's identity gives
    ``cov(g, z) = -I`` and ``H = C^-1``, the move is a damped Newton step: the particles settle
    geometrically whatever the posterior's width, and ``phi`` goes to zero. Far from it the
    trust `radius` (decaying with :func:`step_size_at`) sets how fast they travel.
    """
    m = z.shape[0]
    zc = z - xp.mean(z, axis=0)
    gc = g - xp.mean(g, axis=0)
    C = zc.T @ zc / max(m - 1, 1)
    H = -(gc.T @ zc / max(m - 1, 1)) @ xp.linalg.pinv(C)
    Cinv = xp.linalg.pinv(0.9 * C + 0.1 * xp.diag(xp.diag(C)))
    w, V = xp.linalg.eigh(0.5 * (H + H.T))
    # pseudo-inverses: a coordinate the particles share (a fixed parameter) does not move
    M = xp.linalg.pinv((V * xp.abs(w)) @ V.T + Cinv)
    move = gain * (phi @ M) / density[:, None]
    length = xp.linalg.norm(move, axis=1, keepdims=True)
    return move * xp.minimum(1.0, radius / (length + 1e-300))


def step_size_at(step_size, iteration):
    """The step at `iteration` (from 0): ``step_size / sqrt(1 + iteration/50)``, so the
    particles settle instead of jittering."""
    return step_size / np.sqrt(1.0 + iteration / 50.0)


class SVGDResult:
    """Particles of :func:`svgd` and what they estimate.

    Attributes
    ----------
    particles : numpy.ndarray, shape (n_particles, p)
        The final particles, in parameter space (theta).
    trace : list of float
        Per iteration, the mean norm of the particles' update (in log space): it levels off
        near zero as the particles settle.
    """

    def __init__(self, particles, trace, logp_fn, loglik_fn):
        self.particles = np.asarray(particles)
        self.trace = list(trace)
        self._logp = logp_fn
        self._loglik = loglik_fn

    def map_estimate_from_particles(self):
        """The particle with the highest log-posterior (theta)."""
        lp = np.asarray(self._logp(np.log(self.particles)))
        return self.particles[int(np.nanargmax(lp))]

    def log_likelihood(self, theta=None):
        """The log-likelihood of the observations at `theta` (default: the MAP particle)."""
        th = self.map_estimate_from_particles() if theta is None else np.asarray(theta, dtype=np.float64)
        return float(self._loglik(th))

    @property
    def mean(self):
        return self.particles.mean(axis=0)

    @property
    def std(self):
        return self.particles.std(axis=0, ddof=1)


def svgd(
    loglik,
    theta0,
    *,
    n_particles=32,
    n_iterations=500,
    prior=None,
    fixed=(),
    seed=None,
    step_size=0.05,
    spread=0.5,
):
    """SVGD on a JAX log-likelihood of a positive parameter vector.

    Parameters
    ----------
    loglik : callable
        ``theta -> log-likelihood`` written in JAX (differentiable).
    theta0 : array_like
        Where the particles start (log-normal spread ``spread`` around it).
    prior : callable, optional
        ``theta -> log prior density`` in JAX; None: flat in log theta (log-uniform).
    fixed : sequence of (int, float)
        Parameters held at a value.
    """
    import jax
    import jax.numpy as jnp

    th0 = np.asarray(theta0, dtype=np.float64).reshape(-1)
    if th0.size == 0 or np.any(~np.isfinite(th0)) or np.any(th0 <= 0):
        raise ParameterError(f"theta0 must be positive and finite, got {th0.tolist()!r}")
    p = th0.size
    free = np.ones(p, bool)
    fixed_vals = th0.copy()
    for item in fixed:
        try:
            i, v = item
            i = int(i)
        except (TypeError, ValueError):
            raise ParameterError(f"fixed entries must be (index, value) pairs, got {item!r}") from None
        if not 0 <= i < p or not (float(v) > 0):
            raise ParameterError(f"fixed entry {item!r}: index out of range or value not positive")
        free[i] = False
        fixed_vals[i] = float(v)
    for name, value in (("n_particles", n_particles), ("n_iterations", n_iterations)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ParameterError(f"{name} must be a positive integer, got {value!r}")
    if n_particles < 2:
        raise ParameterError(
            f"n_particles must be at least 2 (the particles' spread scales the steps), got {n_particles}"
        )
    free_j = jnp.asarray(free)
    fixed_log = jnp.log(jnp.asarray(fixed_vals))

    def theta_of(z):
        return jnp.exp(jnp.where(free_j, z, fixed_log))

    def logpost(z):
        th = theta_of(z)
        lp = loglik(th)
        if prior is not None:
            lp = lp + prior(th) + jnp.sum(jnp.where(free_j, z, 0.0))  # density of log theta
        return jnp.where(jnp.isfinite(lp), lp, -1e300)

    batch = jax.jit(jax.vmap(jax.value_and_grad(logpost)))
    rng = np.random.default_rng(seed)
    z = np.log(th0)[None, :] + rng.normal(0.0, spread, (n_particles, p)) * free[None, :]
    z = jnp.asarray(np.where(free[None, :], z, np.log(fixed_vals)[None, :]))

    @jax.jit
    def step(z, lr):
        _, g = batch(z)
        g = jnp.where(jnp.isfinite(g), g, 0.0) * free_j
        phi, density, _ = stein_direction(z, g, jnp, particle_metric(z, jnp))
        phi = phi * free_j
        z = z + preconditioned_step(z, g, phi, density, lr * np.sqrt(p), xp=jnp) * free_j
        return z, jnp.mean(jnp.linalg.norm(phi, axis=1))

    trace = []
    for it in range(n_iterations):
        z, norm = step(z, step_size_at(step_size, it))
        trace.append(float(norm))
    particles = np.asarray(theta_of(z))

    def logp_many(zs):
        return np.asarray(batch(jnp.asarray(zs))[0])

    def loglik_one(th):
        return loglik(jnp.asarray(th))

    return SVGDResult(particles, trace, logp_many, loglik_one)


def graph_svgd(graph, observed, pmf_options=None, **kwargs):
    """:func:`svgd` with the likelihood of observations of `graph`'s variable: absorption times
    (pdf) for a continuous graph, jump counts (pmf) for a discrete one.

    The densities come from :func:`phasic.jax.pmf_from_graph` with ``method="expm"`` for a
    continuous graph by default: under ``vmap`` uniformisation sizes its steps for the graph's
    current rates, and particles that wander to faster rates would get NaN (then no gradient).
    `pmf_options` overrides (e.g. ``{"method": "uniformization", "max_jumps": 100000}`` for a
    large graph)."""
    import jax.numpy as jnp

    from phasic.jax._ops import pmf_from_graph

    obs = np.asarray(observed, dtype=np.float64).reshape(-1)
    if obs.size == 0 or not np.all(np.isfinite(obs)):
        raise ParameterError("observed must be a non-empty array of finite values")
    options = {} if graph.discrete else {"method": "expm"}
    options.update(pmf_options or {})
    f = pmf_from_graph(graph, **options)
    x = jnp.asarray(obs)

    def loglik(theta):
        return jnp.sum(jnp.log(f(theta, x)))

    theta0 = graph.theta if graph.theta is not None else np.ones(graph.theta_dim or 1)
    return svgd(loglik, theta0, **kwargs)
