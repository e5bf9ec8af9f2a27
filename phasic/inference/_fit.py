"""Fitting a Demes model to an observed SFS: the log-likelihood and maximum likelihood."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from phasic.exceptions import ParameterError
from phasic.inference._likelihood import theta_mle
from phasic.inference._problem import Problem


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
        dadi/moments ``.fs`` file, or a tree sequence (object or ``.trees`` file) whose
        populations are named like the demes (tskit computes the site SFS of their samples).
    samples : dict
        Haploid genome counts per deme.
    params : dict, optional
        Parameter values by name.
    mutation_rate, sequence_length : float, optional
        Both given: Poisson random field with ``theta = mutation_rate x sequence_length`` per
        model time unit; neither: multinomial (theta profiled out).
    folded : bool, optional
        Compare folded spectra (default: as the ``.fs`` file says, else unfolded).
    """
    prob = Problem(graph, options, data, samples, mutation_rate, sequence_length, folded, state_space, cache)
    values = list(prob.p0)
    for k, v in (params or {}).items():
        if k not in prob.names:
            raise ParameterError(f"params name {k!r}, which the options file does not list ({prob.names})")
        values[prob.names.index(k)] = float(v)
    return prob.loglik(values)


@dataclass
class FitResult:
    """The result of :func:`fit` (``method="mle"``)."""

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
):
    """Fit a Demes model's parameters to an observed SFS by maximum likelihood.

    Bounded quasi-Newton (L-BFGS-B) in log-parameter space from the graph's values (and
    ``starts - 1`` random restarts around them, seeded); the graph and its trace come from the
    store (``cache=True``), so every evaluation replays one stored trace. Standard errors from
    the observed information: the inverse Hessian of the negative log-likelihood in log space
    (central differences), as relative errors times the estimates (unsuitable for linked
    sites: see the issue notes). Arguments as in :func:`loglik`.

    Returns
    -------
    FitResult
        ``params``, ``stderr``, ``loglik``, ``converged``, ``theta`` (the Poisson theta given,
        or the multinomial MLE of theta), ``to_demes()``.
    """
    from scipy.optimize import minimize

    if method != "mle":
        raise ParameterError(f"method {method!r} is not available yet (this stage fits by maximum likelihood: 'mle')")
    if isinstance(starts, bool) or not isinstance(starts, int) or starts < 1:
        raise ParameterError(f"starts must be a positive integer, got {starts!r}")
    prob = Problem(graph, options, data, samples, mutation_rate, sequence_length, folded, state_space, cache)
    bounds = _log_bounds(prob)
    x0 = np.log(prob.p0)

    lo = np.array([p.lower for p in prob.params])
    hi = np.array([p.upper for p in prob.params])

    def objective(x):
        v = np.clip(np.exp(x), lo, hi)  # exp(log(bound)) may round just outside the bound
        if not prob.feasible(v):
            return 1e300
        try:
            ll = prob.loglik(v)
        except ParameterError:
            return 1e300
        return -ll if np.isfinite(ll) else 1e300

    rng = np.random.default_rng(seed)
    runs = []
    for s in range(starts):
        start = (
            x0 if s == 0 else np.clip(x0 + rng.normal(0, 0.5, x0.size), [b[0] for b in bounds], [b[1] for b in bounds])
        )
        r = minimize(objective, start, method="L-BFGS-B", bounds=bounds, options={"maxiter": maxiter})
        runs.append(r)
    best = min(runs, key=lambda r: r.fun)
    values = np.clip(np.exp(best.x), lo, hi)
    ll = -float(best.fun)
    # observed information in log space, by central differences
    h = 1e-3
    p = values.size
    H = np.zeros((p, p))
    f0 = best.fun
    for i in range(p):
        for j in range(i, p):
            ei, ej = np.eye(p)[i] * h, np.eye(p)[j] * h
            if i == j:
                H[i, i] = (objective(best.x + ei) - 2 * f0 + objective(best.x - ei)) / h**2
            else:
                H[i, j] = H[j, i] = (
                    objective(best.x + ei + ej)
                    - objective(best.x + ei - ej)
                    - objective(best.x - ei + ej)
                    + objective(best.x - ei - ej)
                ) / (4 * h * h)
    try:
        cov = np.linalg.inv(H)
        se_log = np.sqrt(np.clip(np.diag(cov), 0, None))
    except np.linalg.LinAlgError:
        se_log = np.full(p, np.nan)
    stderr = dict(zip(prob.names, (values * se_log).tolist()))
    e = prob.expected(values)
    theta = prob.theta if prob.theta is not None else theta_mle(e, prob.counts, prob.mask, prob.folded)
    return FitResult(
        names=prob.names,
        params=dict(zip(prob.names, values.tolist())),
        stderr=stderr,
        loglik=ll,
        converged=bool(best.success),
        message=str(best.message),
        theta=theta,
        evaluations=prob.evaluations,
        graph_dict=prob.graph_dict(values),
        starts=[(-float(r.fun), bool(r.success)) for r in runs],
    )
