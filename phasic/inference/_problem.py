"""One fitting problem: a Demes graph, a moments-style options file, the observed SFS and the
likelihood; the log-likelihood of a parameter vector and its gradient."""

from __future__ import annotations

import numpy as np

from phasic.demography import Topologies, _demes, sfs_shape
from phasic.exceptions import ParameterError
from phasic.inference._data import observed_sfs
from phasic.inference._likelihood import cell_matrix, loglik_gradient, multinomial_loglik, poisson_loglik
from phasic.inference._options import read_options, starting_values, with_values


class Problem:
    """A Demes graph, its options and the data: the log-likelihood of a parameter vector
    (made by :func:`likelihood`). The graph, its trace, the SFS rewards and the maps' rows are
    made once per topology and kept, so every evaluation costs the epoch plan and its
    propagation only.

    Attributes
    ----------
    names : list of str
        The parameters, in the options file's order.
    p0 : list of float
        Their values in the Demes graph (the starting point).
    evaluations : int
        Models evaluated so far (a gradient counts one, plus two per parameter differenced
        on the likelihood).
    """

    def __init__(
        self, graph, options, data, samples, mutation_rate, sequence_length, folded, state_space, cache, popmap=None
    ):
        if not isinstance(samples, dict) or not samples:
            raise ParameterError(f"samples must be a dict of deme -> haploid genomes, e.g. {{'A': 4}}; got {samples!r}")
        for k, n in samples.items():
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
                raise ParameterError(f"samples[{k!r}] = {n!r}; expected a number of haploid genomes (int >= 0)")
        if folded is not None and not isinstance(folded, (bool, np.bool_)):
            raise ParameterError(f"folded must be True, False or None, got {folded!r}")
        g = _demes.load(graph)
        # the simplified form (what a user writes), as moments' options address it: a split
        # time set on the ancestor's end moves its children's start with it when demes resolves
        self.base = g.asdict_simplified()
        self.params, self.constraints = read_options(options)
        self.p0 = starting_values(self.base, self.params, g.asdict())
        self.samples = {k: v for k, v in samples.items() if v}
        self.counts, self.mask, file_folded = observed_sfs(data, sfs_shape(self.samples), self.samples, popmap)
        self.folded = file_folded if folded is None else bool(folded)
        if (mutation_rate is None) != (sequence_length is None):
            raise ParameterError("give both mutation_rate and sequence_length (Poisson), or neither (multinomial)")
        self.theta = (
            None
            if mutation_rate is None
            else _rate("mutation_rate", mutation_rate) * _rate("sequence_length", sequence_length)
        )
        self.state_space = state_space
        self.cache = cache
        self.evaluations = 0
        self._cells = None
        # the graph, its trace, the SFS rewards and the maps' rows, once per topology
        self._topologies = Topologies(self.samples, state_space, cache=cache)

    def graph_dict(self, values):
        return with_values(self.base, self.params, values)

    def demes_graph(self, values):
        """The Demes graph at `values` (a ParameterError names values demes refuses)."""
        import demes

        try:
            return demes.Graph.fromdict(self.graph_dict(values))
        except Exception as exc:  # demes validates times and sizes: a value it refuses
            raise ParameterError(
                f"parameters {dict(zip(self.names, values))} make an invalid Demes graph: {exc}"
            ) from exc

    def model(self, values):
        """The :class:`phasic.demography.DemographicModel` at `values` (from the store)."""
        g = self.demes_graph(values)
        self.evaluations += 1
        return self._topologies.model(g)

    def expected(self, values):
        return self.model(values).expected_sfs()

    @property
    def names(self):
        return [p.name for p in self.params]

    def feasible(self, values):
        for p, v in zip(self.params, values):
            if not (p.lower <= v <= p.upper):
                return False
        for a, b, kind in self.constraints:
            if (kind == "greater_than") != (values[a] > values[b]):
                return False
        return True

    def loglik(self, values):
        e = self.expected(values)
        if self.theta is None:
            return multinomial_loglik(e, self.counts, self.mask, self.folded)
        return poisson_loglik(e, self.counts, self.theta, self.mask, self.folded)

    def __call__(self, values):
        """The log-likelihood at `values` (a sequence in :attr:`names` order, or a dict)."""
        return self.loglik(self._vector(values))

    def gradient(self, values):
        """``(log-likelihood, gradient)`` at `values` (see :meth:`loglik_grad`)."""
        return self.loglik_grad(self._vector(values))

    def batch(self, values):
        """The log-likelihoods of the rows of `values` (shape ``(B, p)``), one after another
        on the shared topology (infeasible rows, and values demes refuses, give -inf)."""
        try:
            arr = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            raise ParameterError(f"values {values!r} must be numbers, shape (B, {len(self.params)})") from None
        if arr.ndim != 2 or arr.shape[1] != len(self.params):
            raise ParameterError(f"values have shape {arr.shape!r}; expected (B, {len(self.params)}) for {self.names}")
        out = np.full(arr.shape[0], -np.inf)
        for i, row in enumerate(arr):
            if self.feasible(row):
                try:
                    out[i] = self.loglik(row)
                except ParameterError:
                    pass
        return out

    def _vector(self, values):
        if isinstance(values, dict):
            v = np.asarray(self.p0, dtype=np.float64).copy()
            for k, x in values.items():
                if k not in self.names:
                    raise ParameterError(f"parameter {k!r} is not in the options file ({self.names})")
                try:
                    v[self.names.index(k)] = float(x)
                except (TypeError, ValueError):
                    raise ParameterError(f"parameter {k!r}: {x!r} is not a number") from None
                if not np.isfinite(v[self.names.index(k)]):
                    raise ParameterError(f"parameter {k!r}: {x!r} is not a finite number")
            return v
        try:
            v = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            v = None
        if v is None or v.shape != (len(self.params),) or not np.all(np.isfinite(v)):
            raise ParameterError(f"values {values!r} must be {len(self.params)} finite numbers for {self.names}")
        return v

    def loglik_grad(self, values):
        """``(log-likelihood, gradient)`` at `values`, the gradient with respect to the
        parameters in their own units (not their logs).

        The model's part is exact: the log-likelihood's gradient with respect to the expected
        SFS is carried back through the epochs in reverse mode
        (:meth:`phasic.demography.DemographicModel.sfs_gradient`) to every epoch's rates and
        every breakpoint. The parameters enter those through the closed-form epoch plan of the
        Demes graph (sizes to pair rates, with exponential pieces; times to breakpoints;
        migration rates), whose derivatives are taken by central differences of the plan
        (relative step 1e-6: errors near 1e-9 relative, and no likelihood evaluation). A
        parameter that changes the plan's structure or its maps (a pulse proportion, a value
        whose step changes the number of growth pieces) is differenced on the likelihood
        instead.
        """
        values = np.asarray(values, dtype=np.float64)
        model = self.model(values)
        out = {}

        def weights(e):
            if self._cells is None:
                self._cells = cell_matrix(e.shape, self.mask, self.folded)
            ll, de = loglik_gradient(e, self.counts, self.theta, self.mask, self.folded, cells=self._cells)
            out["ll"] = ll
            return de

        _, dthetas, dbreaks = model.sfs_gradient(weights)
        ll = out["ll"]
        grad = np.zeros(values.size)
        if not np.isfinite(ll):
            return ll, grad
        plan = model.plan
        for i in range(values.size):
            h = 1e-6 * abs(values[i]) if values[i] != 0 else 1e-9
            side = []
            for sign in (1.0, -1.0):
                v = values.copy()
                v[i] += sign * h
                try:
                    q = _demes.compile_plan(self.demes_graph(v), self.samples, plan.single_deme)
                except ParameterError:
                    q = None
                side.append(q if q is not None and _same_structure(plan, q) else None)
            up, dn = side
            if up is None and dn is None:
                grad[i] = self._likelihood_difference(values, i, h)
                continue
            # central where both sides keep the structure, else one-sided from this plan
            hi_plan, hi_off = (up, 1.0) if up is not None else (plan, 0.0)
            lo_plan, lo_off = (dn, -1.0) if dn is not None else (plan, 0.0)
            span = (hi_off - lo_off) * h
            dth = (np.asarray(hi_plan.thetas) - np.asarray(lo_plan.thetas)) / span
            db = (np.asarray(hi_plan.breaks) - np.asarray(lo_plan.breaks)) / span
            grad[i] = float(np.sum(dthetas * dth) + dbreaks @ db)
        return ll, grad

    def _likelihood_difference(self, values, i, h):
        up, dn = values.copy(), values.copy()
        up[i] += h
        dn[i] -= h
        return (self.loglik(up) - self.loglik(dn)) / (2 * h)


def _rate(name, x):
    try:
        if isinstance(x, bool):
            raise TypeError
        return float(x)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be a number, got {x!r}") from None


def _same_structure(a, b):
    """Whether two epoch plans differ only in rates and breakpoint times (same epochs, moves
    and maps), so that their difference is a derivative of the schedule."""
    return (
        len(a.breaks) == len(b.breaks)
        and len(a.thetas) == len(b.thetas)
        and list(a.moves) == list(b.moves)
        and repr(a.events) == repr(b.events)
    )


def likelihood(
    graph,
    options,
    data,
    *,
    samples,
    mutation_rate=None,
    sequence_length=None,
    folded=None,
    state_space=None,
    cache=True,
    popmap=None,
):
    """The log-likelihood of an observed SFS under a Demes model, as a reusable object.

    Arguments as in :func:`phasic.inference.loglik`. The result is called with parameter
    values (in the options file's order, or a dict by name); :meth:`Problem.gradient` adds
    the exact gradient, :meth:`Problem.batch` evaluates many vectors. Use it for scans,
    your own optimisers or samplers: the graph and its trace are loaded once.

    Examples
    --------
    >>> import demes, numpy as np
    >>> from phasic import inference
    >>> b = demes.Builder(time_units="generations")
    >>> _ = b.add_deme("A", epochs=[dict(start_size=1000)])
    >>> options = {"parameters": [{"name": "N", "values": [{"demes": {"A": {"epochs": {0: "start_size"}}}}],
    ...                            "lower_bound": 10, "upper_bound": 1e6}]}
    >>> data = np.array([0, 40, 20, 13, 0])
    >>> ll = inference.likelihood(b.resolve(), options, data, samples={"A": 4},
    ...                           mutation_rate=1e-8, sequence_length=1e6, cache=False)
    >>> value, grad = ll.gradient({"N": 1000.0})
    >>> bool(np.isclose(value, ll([1000.0]))), ll.batch([[900.0], [1000.0]]).shape
    (True, (2,))
    """
    return Problem(graph, options, data, samples, mutation_rate, sequence_length, folded, state_space, cache, popmap)
