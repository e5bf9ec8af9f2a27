"""Fitting a Demes model to an observed SFS: the log-likelihood, maximum likelihood (with
several starts as Dask tasks, standard errors from the observed or the Godambe information)
and SVGD posterior sampling."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from phasic.exceptions import ParameterError
from phasic.inference import _tasks, _uncertainty
from phasic.inference._likelihood import theta_mle
from phasic.inference._problem import Problem
from phasic.inference._svgd import svgd


def loglik(
    graph,
    options,
    data,
    *,
    samples,
    params=None,
    mutation_rate=None,
    sequence_length=None,
    folded=None,
    state_space=None,
    cache=True,
    popmap=None,
) -> float:
    """Log-likelihood of an observed SFS under a Demes model.

    Parameters
    ----------
    graph : demes.Graph or str
        The model; its values are used for parameters not given in `params`.
    options : str or dict
        The parameters, in moments' Demes options format (see ``phasic.inference._options``).
    data : array_like, str or tskit.TreeSequence
        Observed SFS counts (shape ``(n_1 + 1, ...)`` in the order of `samples`), a
        dadi/moments ``.fs`` file, a tree sequence (object or ``.trees`` file) whose
        populations are named like the demes (tskit computes the site SFS of their samples),
        or a VCF/BCF file (``.vcf``, ``.vcf.gz``, ``.bcf``, with `popmap`): see
        :func:`observed_sfs`.
    samples : dict
        Haploid genome counts per deme.
    params : dict, optional
        Parameter values by name.
    mutation_rate, sequence_length : float, optional
        Both given: Poisson random field with ``theta = mutation_rate x sequence_length`` per
        model time unit; neither: multinomial (theta profiled out).
    folded : bool, optional
        Compare folded spectra (default: as the ``.fs`` file says, else unfolded).
    popmap : dict or str, optional
        VCF data: sample name -> deme, or a file of ``sample deme`` lines.
    """
    prob = Problem(graph, options, data, samples, mutation_rate, sequence_length, folded, state_space, cache, popmap)
    if params is not None and not isinstance(params, dict):
        raise ParameterError(f"params must be a dict of parameter values by name, got {_short(params)}")
    for k in params or {}:
        if k not in prob.names:
            raise ParameterError(f"params name {k!r}, which the options file does not list ({prob.names})")
    return prob.loglik(prob._vector(dict(params or {})))


@dataclass
class FitResult:
    """The result of :func:`fit` (``method="mle"``).

    Attributes
    ----------
    names : list of str
        The parameters, in the order of the options file.
    params : dict
        The estimates.
    stderr : dict
        Their standard errors (from the information named by `uncertainty`).
    loglik : float
        The log-likelihood at the estimates.
    converged : bool
        Whether the optimiser of the best start reported convergence.
    message : str
        The optimiser's message (best start).
    theta : float or None
        The Poisson theta given, or the multinomial MLE of theta.
    evaluations : int
        Likelihood evaluations in all (over the workers too).
    starts : list of tuple
        ``(loglik, converged, params)`` of each start, in the order they were drawn (the first
        from the graph's values).
    uncertainty : str
        ``"hessian"`` or ``"godambe"``.
    covariance : numpy.ndarray
        The covariance of the log-parameters (``stderr`` is ``params x sqrt(diagonal)``).
    """

    names: list
    params: dict
    stderr: dict
    loglik: float
    converged: bool
    message: str
    theta: float | None
    evaluations: int
    graph_dict: dict = field(repr=False)
    starts: list = field(default_factory=list, repr=False)
    uncertainty: str = "hessian"
    covariance: np.ndarray | None = field(default=None, repr=False)

    def to_demes(self):
        """The fitted Demes graph."""
        import demes

        return demes.Graph.fromdict(self.graph_dict)


def _log_bounds(prob):
    out = []
    for p, v in zip(prob.params, prob.p0):
        lo = math.log(p.lower) if p.lower > 0 else math.log(v) - 30.0
        hi = math.log(p.upper) if math.isfinite(p.upper) else math.log(v) + 30.0
        out.append((lo, hi))
    return out


def _objective(prob):
    """``x -> (-log L, -gradient)`` in log space (``x = log theta``): the chain rule makes the
    gradient ``theta dlogL/dtheta``. Values are clipped to the bounds (``exp(log(bound))`` may
    round just outside).

    An infeasible point (a constraint, a graph demes refuses) is scored by a barrier, not a
    wall: the trial point with the coordinate that crossed the boundary set back (else the last
    feasible point evaluated) and the trial point span a segment; bisection finds its last
    feasible point ``x_b`` (feasibility only, no likelihood), and the trial
    point scores ``f(x_b) + c1 d + c2 d^2`` with ``d`` its distance from ``x_b`` and ``c1``
    larger than the slope of ``f`` towards it there, so the line search sees a finite value
    that rises across the boundary and backs off to it. (A flat 1e300 with a zero gradient
    made L-BFGS-B stop at its start and report convergence when its first step reached an
    infeasible corner of the bounds.) A non-finite likelihood at a feasible point still scores
    1e300."""
    lo = np.array([p.lower for p in prob.params])
    hi = np.array([p.upper for p in prob.params])
    last = {}

    def values(x):
        return np.clip(np.exp(x), lo, hi)

    def feasible(x):
        v = values(x)
        if not prob.feasible(v):
            return False
        try:
            prob.demes_graph(v)
        except ParameterError:
            return False
        return True

    def evaluate(x):
        v = values(x)
        ll, g = _tasks.evaluate(prob, v)
        if not np.isfinite(ll):
            return None
        return -ll, -g * v

    def boundary(x):
        """The last feasible point on a segment to `x` (bisection, to 1e-9 in log space). The
        segment starts at `x` with one coordinate set back to the last feasible point
        evaluated, where that is feasible (the coordinate that crossed the boundary: the
        others keep their progress, and the barrier pushes back along that one), else at
        the last feasible point itself."""
        x0 = last["x"]
        for i in np.argsort(-np.abs(x - x0), kind="stable"):
            if x[i] == x0[i]:
                break
            y = x.copy()
            y[i] = x0[i]
            if feasible(y):
                x0 = y
                break
        a, b = 0.0, 1.0  # feasible at a, not at b, along x0 + t (x - x0)
        for _ in range(60):
            m = 0.5 * (a + b)
            if feasible(x0 + m * (x - x0)):
                a = m
            else:
                b = m
            if (b - a) * np.linalg.norm(x - x0) < 1e-9:
                break
        return x0 + a * (x - x0)

    def project(x):
        """`x` where it is feasible, else its :func:`boundary` point (where the barrier's
        minimum lies: the optimiser may stop a hair outside it)."""
        x = np.asarray(x, dtype=np.float64)
        return x if feasible(x) or not last else boundary(x)

    def objective(x):
        x = np.asarray(x, dtype=np.float64)
        if feasible(x) or not last:
            out = evaluate(x)
            if out is None:
                return 1e300, np.zeros(x.size)
            last["x"] = x.copy()
            return out
        xb = boundary(x)
        out = evaluate(xb)
        if out is None:
            return 1e300, np.zeros(x.size)
        fb, gb = out
        step = x - xb
        d = float(np.linalg.norm(step))
        if d == 0.0:
            return fb, gb
        u = step / d
        c1 = max(0.0, -float(gb @ u)) + 1.0
        c2 = 1.0 + 0.01 * abs(fb)
        return fb + c1 * d + c2 * d * d, gb + (c1 + 2.0 * c2 * d) * u

    objective.project = project
    return objective


def _minimise(prob, start, bounds, maxiter):
    from scipy.optimize import minimize

    objective = _objective(prob)
    r = minimize(
        objective,
        np.asarray(start, float),
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": maxiter},
    )
    x = objective.project(r.x)
    fun = float(r.fun) if np.array_equal(x, r.x) else float(objective(x)[0])
    return {"x": np.asarray(x), "fun": fun, "success": bool(r.success), "message": str(r.message)}


def start_task(spec, start, bounds, maxiter):
    """A Dask task: one L-BFGS-B run from `start` with this worker process's Problem."""
    prob = _tasks.worker_problem(spec)
    before = prob.evaluations
    out = _minimise(prob, start, bounds, maxiter)
    out["evaluations"] = prob.evaluations - before
    return out


UNCERTAINTIES = ("hessian", "godambe")


def fit(
    graph,
    options,
    data,
    *,
    samples,
    mutation_rate=None,
    sequence_length=None,
    method="mle",
    starts=1,
    seed=None,
    folded=None,
    state_space=None,
    maxiter=200,
    cache=True,
    client=None,
    uncertainty="hessian",
    bootstrap=None,
    blocks=100,
    popmap=None,
    n_particles=32,
    n_iterations=200,
    prior="loguniform",
    step_size=0.05,
    init="mle",
):
    """Fit a Demes model's parameters to an observed SFS: maximum likelihood or SVGD.

    ``method="mle"``: bounded quasi-Newton (L-BFGS-B) in log-parameter space with the gradient
    of ``Problem.loglik_grad`` (chain rule into log space), from the graph's values and
    ``starts - 1`` random restarts around them (log-normal, sd 0.5, seeded by `seed`); the best
    run is kept. Standard errors from the observed information (central differences of the
    gradient in log space, symmetrised; ``uncertainty="hessian"``), or from the Godambe
    information for linked sites (``uncertainty="godambe"``, with `bootstrap` replicates; see
    ``phasic.inference._uncertainty``), as relative errors times the estimates.

    ``method="svgd"``: Stein variational gradient descent on the posterior under a
    ``"loguniform"`` or ``"uniform"`` prior on the bounds (see ``phasic.inference._svgd``);
    returns a :class:`PosteriorResult`.

    The graph and its trace come from the store (``cache=True``), so every evaluation replays
    one stored trace. Other arguments as in :func:`loglik`.

    Parameters
    ----------
    starts : int
        L-BFGS-B runs (mle).
    seed : int, optional
        Seeds the restarts, the block bootstrap and the SVGD particles.
    client : dask.distributed.Client or "local", optional
        Run the starts (mle) or each SVGD iteration's chunks of particles as Dask tasks: on
        this client, or on a LocalCluster started for the call (``"local"``: one single-threaded
        worker process per core; a script needs the ``if __name__ == "__main__":`` guard).
        Workers build their own Problem from the same arguments and must see the same store.
    uncertainty : {"hessian", "godambe"}
        How standard errors are computed (mle).
    bootstrap : list or int, optional
        For ``uncertainty="godambe"``: a list of bootstrap replicates of the data (SFS arrays or
        ``.fs`` files, each of the model's shape), or, when `data` is a tree sequence, a number
        of block-bootstrap replicates that resample `blocks` equal windows of the sequence with
        replacement (the windows should be long against the extent of linkage).
    blocks : int
        Windows of the tree sequence for ``bootstrap=n``.
    popmap : dict or str, optional
        VCF data: sample name -> deme, or a file of ``sample deme`` lines (as in :func:`loglik`).
    n_particles, n_iterations : int
        SVGD particles and iterations.
    prior : {"loguniform", "uniform"}
        SVGD prior on each parameter's bounds (``"uniform"`` needs finite upper bounds).
    step_size : float
        SVGD step scale in log space (decaying like ``1/sqrt(1 + iteration/50)``).
    init : {"mle", "start"}
        Where the SVGD particles start: drawn from the Laplace approximation at the MLE (an
        L-BFGS-B run first; normal in log space with the inverse observed information as
        covariance, each direction's variance capped at 0.25), or log-normally around the
        graph's values (sd 0.5).

    Returns
    -------
    FitResult or PosteriorResult
        ``FitResult``: ``params``, ``stderr``, ``loglik``, ``converged``, ``theta`` (the Poisson
        theta given, or the multinomial MLE of theta), ``starts``, ``to_demes()``.
        ``PosteriorResult``: ``samples``, ``summary()``, ``map_params``, ``to_demes()``.
    """
    if method not in ("mle", "svgd"):
        raise ParameterError(f"method must be 'mle' or 'svgd', got {method!r}")
    if isinstance(starts, bool) or not isinstance(starts, (int, np.integer)) or starts < 1:
        raise ParameterError(f"starts must be a positive integer, got {starts!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise ParameterError(f"seed must be a non-negative integer or None, got {seed!r}")
    if isinstance(maxiter, bool) or not isinstance(maxiter, (int, np.integer)) or maxiter < 1:
        raise ParameterError(f"maxiter must be a positive integer, got {maxiter!r}")
    if uncertainty not in UNCERTAINTIES:
        raise ParameterError(f"uncertainty must be one of {UNCERTAINTIES}, got {uncertainty!r}")
    if bootstrap is not None and uncertainty != "godambe":
        raise ParameterError(
            f"bootstrap ({_describe(bootstrap)}) is given but uncertainty={uncertainty!r}: the replicates "
            "are used by uncertainty='godambe' only"
        )
    if uncertainty == "godambe" and bootstrap is None:
        raise ParameterError(
            "uncertainty='godambe' needs bootstrap= (a list of replicates, or a number with tree-sequence data)"
        )
    if method == "svgd" and (uncertainty != "hessian" or starts != 1):
        raise ParameterError(
            f"method='svgd' takes neither starts={starts!r} nor uncertainty={uncertainty!r} "
            "(the posterior particles give the uncertainty)"
        )
    prob = Problem(graph, options, data, samples, mutation_rate, sequence_length, folded, state_space, cache, popmap)

    def spec():
        return _tasks.spec_of(
            graph, options, data, samples, mutation_rate, sequence_length, folded, state_space, cache, prob
        )

    if method == "svgd":
        if init not in ("mle", "start"):
            raise ParameterError(f"init must be 'mle' or 'start', got {init!r}")
        center = cov = None
        if init == "mle":
            # the Laplace approximation at the MLE: where the particles start
            bounds = _log_bounds(prob)
            best = _minimise(prob, np.log(prob.p0), bounds, maxiter)
            center = best["x"]
            cov = _uncertainty.inverse(_uncertainty.observed_information(prob, center, bounds))
        return svgd(
            prob,
            spec,
            n_particles=n_particles,
            n_iterations=n_iterations,
            seed=seed,
            prior=prior,
            step_size=step_size,
            client=client,
            center=center,
            cov=cov,
        )

    replicates = None
    if uncertainty == "godambe":  # checked before the optimisation, which takes long
        replicates = _uncertainty.bootstrap_replicates(data, bootstrap, blocks, prob.samples, prob.counts.shape, seed)

    bounds = _log_bounds(prob)
    x0 = np.log(prob.p0)
    blo, bhi = np.array([b[0] for b in bounds]), np.array([b[1] for b in bounds])
    rng = np.random.default_rng(seed)
    start_points = [x0] + [np.clip(x0 + rng.normal(0, 0.5, x0.size), blo, bhi) for _ in range(starts - 1)]

    evaluations = 0
    with _tasks.Connection(client) as conn:
        if conn.client is None:
            before = prob.evaluations
            runs = [_minimise(prob, s, bounds, maxiter) for s in start_points]
            evaluations += prob.evaluations - before
        else:
            [sf] = conn.client.scatter([spec()], broadcast=True, hash=False)
            futures = [conn.client.submit(start_task, sf, s, bounds, maxiter, pure=False) for s in start_points]
            runs = conn.client.gather(futures)
            evaluations += sum(r["evaluations"] for r in runs)

    lo = np.array([p.lower for p in prob.params])
    hi = np.array([p.upper for p in prob.params])
    best = min(runs, key=lambda r: r["fun"])
    values = np.clip(np.exp(best["x"]), lo, hi)
    ll = -float(best["fun"])

    before = prob.evaluations
    H = _uncertainty.observed_information(prob, best["x"], bounds)
    cov = _uncertainty.inverse(H)
    if replicates is not None:
        s = spec()
        scores = []
        for counts, mask in replicates:
            rep = _tasks.build(s, counts, s.mask if mask is None else (s.mask | mask))
            scores.append(_uncertainty.log_gradient(rep, values)[1])
            evaluations += rep.evaluations
        cov, _ = _uncertainty.godambe_covariance(H, np.array(scores))
    evaluations += prob.evaluations - before
    se_log = _uncertainty.log_stderr(cov)
    e = prob.expected(values)
    theta = prob.theta if prob.theta is not None else theta_mle(e, prob.counts, prob.mask, prob.folded)
    return FitResult(
        names=prob.names,
        params=dict(zip(prob.names, values.tolist())),
        stderr=dict(zip(prob.names, (values * se_log).tolist())),
        loglik=ll,
        converged=bool(best["success"]),
        message=str(best["message"]),
        theta=theta,
        evaluations=evaluations,
        graph_dict=prob.graph_dict(values),
        starts=[
            (-float(r["fun"]), bool(r["success"]), dict(zip(prob.names, np.clip(np.exp(r["x"]), lo, hi).tolist())))
            for r in runs
        ],
        uncertainty=uncertainty,
        covariance=cov,
    )


def block_bootstrap(data, samples, n, *, blocks=100, seed=None):
    """`n` block-bootstrap replicates of the SFS of a tree sequence, for ``fit(...,
    uncertainty="godambe", bootstrap=...)``.

    The sequence is cut into `blocks` equal windows; tskit computes the polarised site SFS of
    each window for one sample set per deme of `samples` (``allele_frequency_spectrum(windows=...,
    span_normalise=False, polarised=True)``), and each replicate sums `blocks` windows drawn
    with replacement (seeded by `seed`), so it has the length of the data. This assumes the
    windows are long against the extent of linkage (nearly independent of each other) and
    alike in what they measure (same callable length, mutation and recombination rate).

    Parameters
    ----------
    data : tskit.TreeSequence or str
        A tree sequence or a ``.trees`` file, its populations named like the demes.
    samples : dict
        Haploid genome counts per deme, in the order of the SFS's axes.
    n : int
        Replicates (at least 2).

    Returns
    -------
    list of numpy.ndarray
        The replicates, each of shape ``(n_1 + 1, ...)``.
    """
    from phasic.demography import sfs_shape

    samples = {k: v for k, v in samples.items() if v}
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise ParameterError(f"n must be an integer number of replicates, got {n!r}")
    if _uncertainty._tree_sequence(data) is None:
        raise ParameterError(f"block_bootstrap needs a tree sequence or a .trees file, got {_short(data)}")
    reps = _uncertainty.bootstrap_replicates(data, n, blocks, samples, sfs_shape(samples), seed)
    return [counts for counts, _ in reps]


def _describe(x):
    if isinstance(x, np.ndarray):
        return f"an array of shape {x.shape}"
    if isinstance(x, (list, tuple)):
        return f"a list of {len(x)} replicates"
    return _short(x)


def _short(x):
    r = repr(x)
    return r if len(r) <= 60 else r[:57] + "..."
