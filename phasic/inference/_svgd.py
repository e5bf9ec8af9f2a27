"""Stein variational gradient descent (SVGD) over the parameters of a Demes model.

The likelihood of a Demes model is evaluated by the compiled core, not JAX, so this is the
numpy form of :func:`phasic.jax.svgd` driven by ``Problem.loglik_grad``; the update is the same
code (``stein_direction``, ``preconditioned_step`` and ``step_size_at`` of
``phasic.jax._svgd``): an RBF kernel with the median bandwidth, moves preconditioned by the
particles' covariance and the curvature of the log posterior across them (a damped Newton step
near the posterior, so the particles settle whatever its width), within a trust radius
``step_size sqrt(p)`` decaying like ``1/sqrt(1 + iteration/50)``.

- Particles live in log-parameter space, ``z = log theta``, inside the log bounds: a move that
  crosses a bound is reflected back at it (and clipped, should it cross the other one).
- Priors: ``"loguniform"`` (flat in ``z``; the bounds may be infinite, an improper prior then)
  or ``"uniform"`` (flat in ``theta`` on ``[lower, upper]``, density ``e^z`` in ``z``; the upper
  bounds must be finite). The log posterior of a particle is its log-likelihood plus the log
  prior density of ``z``.
- Each iteration evaluates every particle's log-likelihood and gradient: in this process one
  after another, or with a Dask client as tasks over chunks of particles (one Problem per
  worker process, built on its first chunk and reused).
- Constraints of the options file (``greater_than`` / ``less_than``): the particles start
  inside them (a draw outside is drawn again), and a move that would cross one is halved until
  it does not (the check costs no likelihood evaluation).
- A particle that is infeasible all the same (a graph demes refuses) or whose likelihood is not
  finite has log posterior ``-inf`` and zero gradient; it is pulled back halfway towards the
  nearest particle with a finite log posterior at every iteration instead of moving by the
  Stein update (the feasible set is convex in log space for bounds and constraints, so it soon
  is feasible again), and is left out of the preconditioner and the kernel's metric.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from phasic.exceptions import ParameterError
from phasic.inference import _tasks
from phasic.jax._svgd import particle_metric, preconditioned_step, stein_direction, step_size_at

PRIORS = ("loguniform", "uniform")


@dataclass
class PosteriorResult:
    """The result of :func:`fit` with ``method="svgd"``: particles approximating the posterior.

    Attributes
    ----------
    names : list of str
        The parameters, in the order of the options file.
    samples : numpy.ndarray, shape (n_particles, p)
        The final particles, in the parameters' units.
    trace : list of float
        Per iteration, the mean norm of the particles' Stein update (in log space).
    map_params : dict
        The particle with the highest log posterior.
    loglik : float
        The log-likelihood at `map_params`.
    log_posterior : numpy.ndarray
        Each particle's log posterior (up to a constant) at the last evaluation.
    converged : bool
        Whether the particles settled: the Stein update of the last tenth of the iterations,
        relative to the size of its two terms (attraction by the likelihood, repulsion by the
        kernel), averaged below 0.05 (see `stationarity`), with every particle feasible.
    stationarity : float
        That ratio: near 0 when the two terms balance (the particles are a fixed point of the
        update), near 1 when they still move as a whole.
    prior : str
        ``"loguniform"`` or ``"uniform"``.
    evaluations : int
        Likelihood evaluations in all (over the workers too).
    """

    names: list
    samples: np.ndarray
    trace: list
    map_params: dict
    loglik: float
    log_posterior: np.ndarray = field(repr=False)
    converged: bool
    stationarity: float
    prior: str
    evaluations: int
    message: str = ""
    _graph_median: dict = field(default=None, repr=False)
    _graph_map: dict = field(default=None, repr=False)

    @property
    def mean(self):
        """Posterior means by name."""
        return dict(zip(self.names, self.samples.mean(axis=0).tolist()))

    @property
    def median(self):
        """Posterior medians by name."""
        return dict(zip(self.names, np.median(self.samples, axis=0).tolist()))

    @property
    def sd(self):
        """Posterior standard deviations by name."""
        return dict(zip(self.names, self.samples.std(axis=0, ddof=1).tolist()))

    def summary(self):
        """One row per parameter: ``(name, mean, sd, q05, median, q95)`` over the particles."""
        s = self.samples
        q05, med, q95 = np.quantile(s, [0.05, 0.5, 0.95], axis=0)
        sd = s.std(axis=0, ddof=1) if s.shape[0] > 1 else np.zeros(s.shape[1])
        return [
            (n, float(m), float(d), float(a), float(b), float(c))
            for n, m, d, a, b, c in zip(self.names, s.mean(axis=0), sd, q05, med, q95)
        ]

    def to_demes(self, at="median"):
        """The Demes graph at the posterior median of each parameter (``at="median"``, the
        default: a summary that does not depend on one particle), or at `map_params`
        (``at="map"``)."""
        import demes

        if at == "median":
            return demes.Graph.fromdict(self._graph_median)
        if at == "map":
            return demes.Graph.fromdict(self._graph_map)
        raise ParameterError(f"at must be 'median' or 'map', got {at!r}")


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ParameterError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def log_bounds(prob, prior):
    """The log bounds of the particles (``-inf`` for a lower bound 0), after checking that
    `prior` is proper enough: ``"uniform"`` needs finite upper bounds."""
    if prior not in PRIORS:
        raise ParameterError(f"prior must be one of {PRIORS}, got {prior!r}")
    lo, hi = [], []
    for p in prob.params:
        if prior == "uniform" and not math.isfinite(p.upper):
            raise ParameterError(
                f"prior 'uniform' needs finite bounds: parameter {p.name!r} has upper bound {p.upper!r} "
                "(give upper_bound in the options file, or use prior='loguniform')"
            )
        if p.lower < 0 or not p.lower < p.upper:
            raise ParameterError(f"parameter {p.name!r} has bounds [{p.lower!r}, {p.upper!r}]: need 0 <= lower < upper")
        lo.append(math.log(p.lower) if p.lower > 0 else -np.inf)
        hi.append(math.log(p.upper) if math.isfinite(p.upper) else np.inf)
    return np.array(lo), np.array(hi)


def laplace_covariance(cov, spread, p):
    """`cov` (the inverse observed information in log space) made fit to draw starting
    particles from: symmetric, its eigenvalues between ``1e-12`` and ``spread^2`` (a direction
    the data hardly inform starts spread like the default start); ``spread^2 I`` where it is
    not finite."""
    cov = None if cov is None else np.asarray(cov, dtype=np.float64)
    if cov is None or cov.shape != (p, p) or not np.all(np.isfinite(cov)):
        return np.eye(p) * spread**2
    w, V = np.linalg.eigh(0.5 * (cov + cov.T))
    if np.any(w <= 0):  # not positive definite: not a maximum, or a bound
        return np.eye(p) * spread**2
    return (V * np.clip(w, 1e-12, spread**2)) @ V.T


def reflect(z, lo, hi):
    """`z` reflected back at the bounds it crossed (then clipped, for a move across both)."""
    z = np.where(z > hi, 2 * hi - z, z)
    z = np.where(z < lo, 2 * lo - z, z)
    return np.clip(z, lo, hi)


def _values(z, prob):
    lo = np.array([p.lower for p in prob.params])
    hi = np.array([p.upper for p in prob.params])
    return np.clip(np.exp(z), lo, hi)  # exp(log(bound)) may round just outside it


class _Evaluator:
    """Log-likelihoods and gradients of many particles: in this process, or as Dask tasks over
    chunks of particles."""

    def __init__(self, prob, spec, conn):
        self.prob = prob
        self.conn = conn
        self.spec = spec
        self.evaluations = 0
        self._spec_future = None
        if conn.client is not None:
            [self._spec_future] = conn.client.scatter([spec], broadcast=True, hash=False)

    def __call__(self, values):
        m = values.shape[0]
        if self.conn.client is None:
            before = self.prob.evaluations
            out = [_tasks.evaluate(self.prob, v) for v in values]
            self.evaluations += self.prob.evaluations - before
            return np.array([o[0] for o in out]), np.array([o[1] for o in out]).reshape(m, -1)
        chunks = np.array_split(np.arange(m), min(m, self.conn.threads()))
        futures = [
            self.conn.client.submit(_tasks.evaluate_chunk, self._spec_future, values[idx], pure=False)
            for idx in chunks
            if idx.size
        ]
        lls, grads = np.empty(m), np.empty(values.shape)
        for idx, (ll, g, n) in zip([c for c in chunks if c.size], self.conn.client.gather(futures)):
            lls[idx], grads[idx] = ll, g
            self.evaluations += n
        return lls, grads


def svgd(
    prob,
    spec_factory,
    *,
    n_particles=32,
    n_iterations=200,
    seed=None,
    prior="loguniform",
    step_size=0.05,
    spread=0.5,
    client=None,
    tolerance=0.05,
    center=None,
    cov=None,
):
    """SVGD on `prob` (a :class:`Problem`); see the module docstring. `spec_factory` makes the
    :class:`~phasic.inference._tasks.ProblemSpec` for Dask tasks (called only with a client).

    The particles start drawn from ``N(center, cov)`` in log space (the Laplace approximation
    at the MLE, from :func:`phasic.inference.fit`), or, without `center`, from
    ``N(log p0, spread^2)``."""
    n_particles = _positive_int("n_particles", n_particles)
    if n_particles < 2:
        raise ParameterError(
            f"n_particles must be at least 2 (the particles' spread scales the steps), got {n_particles}"
        )
    n_iterations = _positive_int("n_iterations", n_iterations)
    if not (isinstance(step_size, (int, float)) and math.isfinite(step_size) and step_size > 0):
        raise ParameterError(f"step_size must be a positive number, got {step_size!r}")
    if not (isinstance(spread, (int, float)) and math.isfinite(spread) and spread > 0):
        raise ParameterError(f"spread must be a positive number, got {spread!r}")
    lo, hi = log_bounds(prob, prior)
    p0 = np.asarray(prob.p0, dtype=np.float64)
    if center is None and not prob.feasible(p0):
        raise ParameterError(
            f"the starting values {dict(zip(prob.names, p0.tolist()))} are outside the bounds or "
            "constraints of the options file"
        )
    if center is None:
        center, cov = np.log(p0), np.eye(p0.size) * spread**2
    else:
        center = np.asarray(center, dtype=np.float64)
        cov = laplace_covariance(cov, spread, p0.size)
    chol = np.linalg.cholesky(cov)
    rng = np.random.default_rng(seed)
    # particles start normally distributed in log space around `center`, inside the bounds and
    # constraints (a draw outside them is drawn again, at worst replaced by the centre)
    z = np.empty((n_particles, p0.size))
    for i in range(n_particles):
        for _ in range(100):
            zi = reflect(center + chol @ rng.normal(0.0, 1.0, p0.size), lo, hi)
            if prob.feasible(_values(zi, prob)):
                break
        else:
            zi = center
        z[i] = zi
    uniform = prior == "uniform"

    with _tasks.Connection(client) as conn:
        spec = spec_factory() if conn.client is not None else None
        evaluate = _Evaluator(prob, spec, conn)

        def log_post(z):
            v = _values(z, prob)
            ll, g = evaluate(v)
            gz = g * v  # chain rule: d/dz = theta d/dtheta
            lp = ll.copy()
            if uniform:  # flat in theta: density e^z in z
                lp = lp + z.sum(axis=1)
                gz = gz + 1.0
            bad = ~np.isfinite(lp)
            lp[bad] = -np.inf
            gz[bad] = 0.0
            return lp, gz, ll

        trace, ratios = [], []
        for it in range(n_iterations):
            lp, g, _ = log_post(z)
            ok = np.isfinite(lp)
            if not ok.any():
                raise ParameterError(
                    f"SVGD iteration {it}: no particle has a finite log posterior (all are infeasible "
                    "or their likelihood is not finite); check the bounds, constraints and data"
                )
            metric = particle_metric(z[ok] if ok.sum() > 1 else z, np)
            phi, density, drive = stein_direction(z, g, np, metric)
            trace.append(float(np.mean(np.linalg.norm(phi, axis=1))))
            ratios.append(float(trace[-1] / drive) if drive > 0 else 0.0)
            radius = step_size_at(step_size, it) * math.sqrt(p0.size)
            move = np.zeros_like(z)
            if ok.sum() > 1:  # the preconditioner from the particles with a finite log posterior
                move[ok] = preconditioned_step(z[ok], g[ok], phi[ok], density[ok], radius, xp=np)
            z_new = reflect(z + move, lo, hi)
            for i in np.flatnonzero(ok):  # a move across a constraint is halved until it is not
                t = 1.0
                while not prob.feasible(_values(z_new[i], prob)):
                    t *= 0.5
                    z_new[i] = z[i] + t * (z_new[i] - z[i]) if t > 1e-6 else z[i]
                    if t <= 1e-6:
                        break
            if not ok.all():
                good = np.flatnonzero(ok)
                for i in np.flatnonzero(~ok):  # halfway towards the nearest good particle
                    j = good[np.argmin(np.sum((z[good] - z[i]) ** 2, axis=1))]
                    z_new[i] = 0.5 * (z[i] + z[j])
            z = z_new
        lp, _, ll = log_post(z)

    if not np.isfinite(lp).any():
        raise ParameterError("SVGD ended with no particle with a finite log posterior")
    samples = _values(z, prob)
    best = int(np.nanargmax(np.where(np.isfinite(lp), lp, -np.inf)))
    tail = max(1, n_iterations // 10)
    stationarity = float(np.mean(ratios[-tail:]))
    converged = stationarity < tolerance and bool(np.isfinite(lp).all())
    message = (
        f"stationarity {stationarity:.3g} over the last {tail} iterations "
        f"({'below' if stationarity < tolerance else 'not below'} {tolerance:g})"
    )
    if not np.isfinite(lp).all():
        message += f"; {int((~np.isfinite(lp)).sum())} particles infeasible at the end"
    median = np.median(samples, axis=0)
    return PosteriorResult(
        names=prob.names,
        samples=samples,
        trace=trace,
        map_params=dict(zip(prob.names, samples[best].tolist())),
        loglik=float(ll[best]),
        log_posterior=lp,
        converged=converged,
        stationarity=stationarity,
        prior=prior,
        evaluations=evaluate.evaluations,
        message=message,
        _graph_median=prob.graph_dict(median),
        _graph_map=prob.graph_dict(samples[best]),
    )
