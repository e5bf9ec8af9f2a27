"""One fitting problem: a Demes graph, a moments-style options file, the observed SFS and the
likelihood; the log-likelihood of a parameter vector and its gradient."""

from __future__ import annotations

import numpy as np

from phasic.demography import _demes, from_demes, sfs_shape
from phasic.exceptions import ParameterError
from phasic.inference._data import observed_sfs
from phasic.inference._likelihood import multinomial_loglik, poisson_loglik
from phasic.inference._options import read_options, starting_values, with_values


class Problem:
    """A Demes graph, its options and the data: the log-likelihood of a parameter vector."""

    def __init__(self, graph, options, data, samples, mutation_rate, sequence_length, folded, state_space, cache):
        g = _demes.load(graph)
        # the simplified form (what a user writes), as moments' options address it: a split
        # time set on the ancestor's end moves its children's start with it when demes resolves
        self.base = g.asdict_simplified()
        self.params, self.constraints = read_options(options)
        self.p0 = starting_values(self.base, self.params, g.asdict())
        self.samples = {k: v for k, v in samples.items() if v}
        self.counts, self.mask, file_folded = observed_sfs(data, sfs_shape(self.samples), self.samples)
        self.folded = file_folded if folded is None else bool(folded)
        if (mutation_rate is None) != (sequence_length is None):
            raise ParameterError("give both mutation_rate and sequence_length (Poisson), or neither (multinomial)")
        self.theta = None if mutation_rate is None else float(mutation_rate) * float(sequence_length)
        self.state_space = state_space
        self.cache = cache
        self.evaluations = 0

    def graph_dict(self, values):
        return with_values(self.base, self.params, values)

    def expected(self, values):
        import demes

        try:
            g = demes.Graph.fromdict(self.graph_dict(values))
        except Exception as exc:  # demes validates times and sizes: a value it refuses
            raise ParameterError(
                f"parameters {dict(zip(self.names, values))} make an invalid Demes graph: {exc}"
            ) from exc
        self.evaluations += 1
        return from_demes(g, self.samples, self.state_space, cache=self.cache).expected_sfs()

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

    def loglik_grad(self, values):
        """``(log-likelihood, gradient)`` at `values` (the gradient with respect to the
        parameters in their own units, not their logs)."""
        values = np.asarray(values, dtype=np.float64)
        f0 = self.loglik(values)
        g = np.zeros(values.size)
        for i in range(values.size):
            h = 1e-6 * values[i]
            up, dn = values.copy(), values.copy()
            up[i] += h
            dn[i] -= h
            g[i] = (self.loglik(up) - self.loglik(dn)) / (2 * h)
        return f0, g
