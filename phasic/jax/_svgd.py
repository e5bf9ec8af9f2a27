"""Stein variational gradient descent (Liu & Wang 2016) over a graph's parameters.

Particles live in log-parameter space (rates are positive). Each step evaluates every
particle's log-posterior and gradient in one ``jax.vmap`` call, then moves particle ``i`` by
``phi(x_i) = (1/m) sum_j [k(x_j, x_i) grad log p(x_j) + grad_{x_j} k(x_j, x_i)]`` with an RBF
kernel whose bandwidth follows the median heuristic, scaled per coordinate by an RMSProp
running average of ``phi^2`` shared by the particles (the adaptive step; ``step_size`` sets
its scale, decaying like ``1/sqrt(1 + iteration/50)``).
"""

from __future__ import annotations

import numpy as np

from phasic.exceptions import ParameterError


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
    acc = jnp.zeros(p)

    @jax.jit
    def step(z, acc, lr):
        _, g = batch(z)
        g = jnp.where(jnp.isfinite(g), g, 0.0) * free_j
        diff = z[:, None, :] - z[None, :, :]  # x_i - x_j
        d2 = jnp.sum(diff**2, axis=-1)
        h = jnp.median(d2) / jnp.log(z.shape[0] + 1.0) + 1e-12
        K = jnp.exp(-d2 / h)
        # phi_i = (1/m) sum_j [K_ji g_j + grad_{x_j} K_ji],  grad_{x_j} K(x_j, x_i) = 2 (x_i - x_j) / h K
        phi = (K @ g + (2.0 / h) * jnp.sum(K[:, :, None] * diff, axis=1)) / z.shape[0]
        phi = phi * free_j
        # one RMS scale per coordinate, shared by the particles (a particle whose update is
        # small moves little), and no step beyond 1 in log space
        acc = 0.9 * acc + 0.1 * jnp.mean(phi**2, axis=0)
        z = z + jnp.clip(lr * phi / (jnp.sqrt(acc) + 1e-12), -1.0, 1.0)
        return z, acc, jnp.mean(jnp.linalg.norm(phi, axis=1))

    trace = []
    for it in range(n_iterations):
        # the step decays like 1/sqrt(iteration): the particles settle instead of jittering
        z, acc, norm = step(z, acc, step_size / np.sqrt(1.0 + it / 50.0))
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
