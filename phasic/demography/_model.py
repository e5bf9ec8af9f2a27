"""A Demes model on a phasic graph: :func:`from_demes` and :class:`DemographicModel`."""

from __future__ import annotations

import numpy as np

from phasic.demography import _demes, _spaces
from phasic.demography._epochs import Epochs
from phasic.exceptions import ParameterError
from phasic.graph import Graph

STATE_SPACES = ("sfs", "lineages")


class DemographicModel:
    """A Demes model with its graph and epoch schedule (made by :func:`from_demes`).

    Attributes
    ----------
    graph : phasic.Graph
        The parameterised graph (its structure depends on the demes, samples and which
        deme pairs exchange lineages, not on sizes, times or rates).
    epochs : phasic.demography.Epochs
        The schedule: breakpoints, a parameter vector per epoch, the maps at splits and pulses.
    state_space : str
        ``"sfs"`` (block counting per sampled deme) or ``"lineages"`` (lineage counting).
    samples : dict
        Haploid genome counts per sampled deme.
    demes : list of str
        The demes of the state space (one for the one-deme lineage-counting route).
    time_units : str
        The Demes graph's time units; every time and expectation is in them.
    """

    def __init__(self, graph, plan, samples, state_space, demes_graph, shared=None):
        self.graph = graph
        self.plan = plan
        self.samples = dict(samples)
        self.state_space = state_space
        self.demes = list(plan.demes)
        self.time_units = plan.time_units
        self.demes_graph = demes_graph
        # what depends only on the topology (a Topologies entry, shared by its models)
        self._shared = {"rewards": None, "rows": {}} if shared is None else shared
        self._rewards = self._shared["rewards"]
        layout = (plan.n_demes, 1 if state_space == "lineages" else len(_spaces.block_types(plan.sample_sizes)[0]))
        rows = self._shared["rows"]
        maps = [DemesMap(layout, ev, rows.setdefault(repr(ev), {})) if ev else None for ev in plan.events]
        self.epochs = Epochs(graph, plan.breaks, plan.thetas, maps)

    def __repr__(self):
        return (
            f"<DemographicModel samples={self.samples} state_space={self.state_space!r} "
            f"vertices={self.graph.vertices_length()} epochs={len(self.epochs.thetas)}>"
        )

    # the T_MRCA
    def expectation(self) -> float:
        """``E[T_MRCA]`` in the model's time units."""
        return self.epochs.expectation()

    def variance(self) -> float:
        """``Var(T_MRCA)``."""
        return self.epochs.variance()

    def moments(self, power: int = 2):
        """``[E[T_MRCA], ..., E[T_MRCA^power]]``."""
        return self.epochs.moments(power)

    def pdf(self, t):
        """Density of the T_MRCA at times `t`."""
        return self.epochs.pdf(t)

    def cdf(self, t):
        """``P(T_MRCA <= t)``."""
        return self.epochs.cdf(t)

    def expected_sfs(self) -> np.ndarray:
        """The expected site frequency spectrum as branch lengths: entry ``(i, j, ...)`` is the
        expected total length of branches subtending ``i`` sampled genomes of the first sampled
        deme, ``j`` of the second, ... (model time units; multiply by the mutation rate per
        unit time and the sequence length for expected site counts). Shape ``(n_1 + 1, ...)``;
        the corners (no and all samples) are 0."""
        return self.epochs.expected_rewards(self.sfs_rewards()).reshape(sfs_shape(self.samples))

    def sfs_rewards(self):
        """The ``(V, cells)`` rewards whose expected accumulation is the flattened expected SFS
        (per vertex, the branch length it adds to each cell per unit time)."""
        if self._rewards is None:
            plan = self.plan
            states = self.graph.states()
            if self.state_space == "lineages":
                if not plan.single_deme:
                    raise ParameterError(
                        "the SFS of a lineage-counting model is exact only for one sampled deme whose ancestry no "
                        "migration or pulse touches; build the model with state_space='sfs'"
                    )
                W = _spaces.lineage_sfs_weights(plan.sample_sizes[0])
                self._rewards = np.ascontiguousarray(W[:, states[:, 0]].T)
            else:
                self._rewards = _spaces.sfs_rewards(states, plan.n_demes, plan.sample_sizes)
            self._shared["rewards"] = self._rewards
        return self._rewards

    def sfs_gradient(self, weights):
        """``F = sum(weights * expected_sfs())`` and its exact derivatives with respect to the
        epoch schedule (:meth:`phasic.demography.Epochs.reward_gradient`).

        Parameters
        ----------
        weights : array_like or callable
            SFS-shaped weights, or a callable given the expected SFS and returning them (e.g.
            a log-likelihood's gradient there: one forward pass serves both).

        Returns
        -------
        value : float
        dthetas : numpy.ndarray, shape (epochs, theta_dim)
            ``dF/d plan.thetas``.
        dbreaks : numpy.ndarray, shape (epochs - 1,)
            ``dF/d plan.breaks``.
        """
        shape = sfs_shape(self.samples)
        if callable(weights):
            fn = weights

            def flat(e):
                return np.asarray(fn(e.reshape(shape)), dtype=np.float64).reshape(-1)

            return self.epochs.reward_gradient(self.sfs_rewards(), flat)
        return self.epochs.reward_gradient(self.sfs_rewards(), np.asarray(weights, dtype=np.float64).reshape(-1))


class DemesMap:
    """The state map of a breakpoint's Demes events (splits, admixtures, pulses): called on a
    state it gives ``[(state, p), ...]`` (:func:`phasic.demography._demes.scatter`);
    :meth:`map_rows` does the deterministic case (every event moves all lineages of a deme to
    one other deme: a split) for many vertices at once."""

    def __init__(self, layout, events, row_cache=None):
        self.layout = layout
        self.events = events
        # {vertex: (targets, probs)}, filled by Epochs as states receive mass (shared by the
        # models of one topology with these events)
        self.row_cache = {} if row_cache is None else row_cache
        self.deterministic = all(len(dests) == 1 and dests[0][1] == 1.0 for _, dests in events)

    def __call__(self, state):
        return _demes.scatter(state, self.layout, self.events)

    def map_rows(self, ll, vertices):
        """``{v: (targets, probs)}`` for `vertices`, or None (use the per-state call)."""
        if not self.deterministic:
            return None
        D, B = self.layout
        states = ll.states()[vertices].astype(np.int64)
        blocks = states.reshape(len(vertices), D, B)
        for d, ((to, _),) in self.events:
            blocks[:, to] += blocks[:, d]
            blocks[:, d] = 0
        targets = ll.space.find_many(blocks.reshape(len(vertices), D * B))
        if np.any(targets <= 0):
            return None  # a target outside the graph: the per-state path names it
        one = np.ones(1)
        return {int(v): (np.array([t]), one) for v, t in zip(vertices, targets)}


def _plan_and_spec(g, samples, state_space, growth_tolerance, max_states):
    sampled, _ = _demes._samples(g, samples)
    exact_line = _demes.one_panmictic_ancestry(g, sampled)
    if state_space is None:
        state_space = "lineages" if exact_line else "sfs"
    if state_space not in STATE_SPACES:
        raise ParameterError(f"state_space must be one of {STATE_SPACES}, got {state_space!r}")
    single = state_space == "lineages" and exact_line
    plan = _demes.compile_plan(g, samples, single_deme=single, growth_tolerance=growth_tolerance)
    D = plan.n_demes
    moves = [list(m) for m in plan.moves]
    if state_space == "lineages":
        n = sum(plan.sample_sizes)
        _spaces.check_size(_spaces.count_lineage_states(D, n), D, max_states, f"lineage counting of {n} genomes")
        start = [0] * D
        for d, k in zip(plan.sampled, plan.sample_sizes):
            start[d] += k
        spec = {"callback": _spaces.lineage_counting, "ipv": start, "params": {"n_demes": D, "moves": moves}}
    else:
        B = len(_spaces.block_types(plan.sample_sizes)[0])
        bound = _spaces.count_block_states(D, plan.sample_sizes)
        _spaces.check_size(bound, D * B, max_states, f"block counting of samples {dict(samples)}")
        start = _spaces.block_counting_start(D, plan.sampled, plan.sample_sizes)
        params = {"n_demes": D, "sample_sizes": list(plan.sample_sizes), "moves": moves}
        spec = {"callback": _spaces.block_counting, "ipv": start, "params": params}
    return plan, state_space, spec


def graph_spec(graph, samples, state_space=None, *, max_states=_spaces.MAX_STATES):
    """What :func:`from_demes` builds, without building it: ``{"callback", "module", "ipv",
    "params", "state_space"}`` (the library callback, its module's name, the start state and the
    keyword parameters), so that a model spec of the workflow or of ``phasic graph build`` can
    name the same graph (same graph key) as ``from_demes(..., cache=True)``.

    Examples
    --------
    >>> import demes
    >>> from phasic.demography import graph_spec
    >>> b = demes.Builder(time_units="generations")
    >>> _ = b.add_deme("A", epochs=[dict(start_size=1000)])
    >>> s = graph_spec(b.resolve(), {"A": 3})
    >>> s["module"], s["callback"].__name__, s["ipv"], s["params"]
    ('phasic.demography._spaces', 'lineage_counting', [3], {'n_demes': 1, 'moves': []})
    """
    g = _demes.load(graph)
    _, space, spec = _plan_and_spec(g, samples, state_space, 0.01, max_states)
    return {**spec, "module": spec["callback"].__module__, "state_space": space}


def from_demes(
    graph,
    samples,
    state_space=None,
    cache=False,
    *,
    growth_tolerance=0.01,
    max_states=_spaces.MAX_STATES,
):
    """A Demes model as a phase-type model: the SFS and the T_MRCA under its demography.

    Parameters
    ----------
    graph : demes.Graph, str or pathlib.Path
        A Demes model (an object, a YAML file or YAML text).
    samples : dict
        Haploid genome counts per deme, e.g. ``{"A": 4, "B": 4}`` (taken at time 0).
    state_space : {"sfs", "lineages"}, optional
        ``"sfs"``: block counting per sampled deme (the joint SFS; grows fast with the sample).
        ``"lineages"``: lineage counting (the T_MRCA; and the SFS of one sampled deme whose
        ancestry is one panmictic line). Default: ``"lineages"`` where it gives the exact SFS,
        else ``"sfs"``.
    cache : bool
        Build the graph through the store (``Graph(..., cache=True)``): a later call with the
        same topology and samples loads it and its trace, whatever the sizes, times and rates.
    growth_tolerance : float
        Size changes within an epoch become constant pieces spanning at most a factor
        ``exp(growth_tolerance)`` of size each (see ``phasic.demography._demes``).
    max_states : int
        Refuse (:class:`phasic.exceptions.StateSpaceTooLarge`) a state space that may exceed
        this many states, before building it.

    Returns
    -------
    DemographicModel

    Examples
    --------
    >>> import demes
    >>> from phasic import demography
    >>> b = demes.Builder(time_units="generations")
    >>> _ = b.add_deme("A", epochs=[dict(start_size=1000)])
    >>> m = demography.from_demes(b.resolve(), samples={"A": 4})
    >>> [round(float(x), 6) for x in m.expected_sfs()]   # 4N / i
    [0.0, 4000.0, 2000.0, 1333.333333, 0.0]
    >>> round(m.expectation(), 6)                      # 4N (1 - 1/n)
    3000.0
    """
    g = _demes.load(graph)
    plan, state_space, spec = _plan_and_spec(g, samples, state_space, growth_tolerance, max_states)
    built = _build(spec, plan, cache, max_states)
    return DemographicModel(built, plan, {k: v for k, v in samples.items() if v}, state_space, g)


def _build(spec, plan, cache, max_states):
    built = Graph(spec["callback"], ipv=spec["ipv"], cache=cache, max_vertices=max_states, **spec["params"])
    D = plan.n_demes
    if built.theta_dim != D + len(plan.moves):
        raise ParameterError(f"internal: graph has {built.theta_dim} parameters, the plan {D + len(plan.moves)}")
    if cache:
        # the trace lives in the store next to the graph: a later model of the same topology
        # (any sizes, times, rates) loads both instead of recording the elimination again
        from phasic import traces

        if not traces.attach_trace(built):
            traces.ensure_trace(built)
    return built


class Topologies:
    """:func:`from_demes` for many parameter values of one family of Demes graphs (a fit, a
    sampler, a scan): the graph (with its trace), the SFS rewards and the maps' rows are made
    once per topology and kept in this object, so that a new model costs its epoch plan and
    its propagation only. The models share their graph: do not change its weights.

    Parameters are those of :func:`from_demes`.

    Examples
    --------
    >>> import demes
    >>> from phasic.demography import Topologies
    >>> def graph(N):
    ...     b = demes.Builder(time_units="generations")
    ...     _ = b.add_deme("A", epochs=[dict(start_size=N)])
    ...     return b.resolve()
    >>> t = Topologies({"A": 3})
    >>> a, b = t.model(graph(1000)), t.model(graph(2000))
    >>> a.graph is b.graph, round(b.expectation() / a.expectation(), 12)
    (True, 2.0)
    """

    def __init__(self, samples, state_space=None, cache=False, *, growth_tolerance=0.01, max_states=_spaces.MAX_STATES):
        self.samples = dict(samples)
        self.state_space = state_space
        self.cache = cache
        self.growth_tolerance = growth_tolerance
        self.max_states = max_states
        self._entries = {}

    def model(self, graph):
        """The :class:`DemographicModel` of Demes graph `graph` (as :func:`from_demes` makes it)."""
        g = _demes.load(graph)
        plan, space, spec = _plan_and_spec(g, self.samples, self.state_space, self.growth_tolerance, self.max_states)
        key = (spec["callback"].__name__, repr(spec["params"]), tuple(spec["ipv"]), space)
        entry = self._entries.get(key)
        if entry is None:
            entry = {"graph": _build(spec, plan, self.cache, self.max_states), "rewards": None, "rows": {}}
            self._entries[key] = entry
        samples = {k: v for k, v in self.samples.items() if v}
        return DemographicModel(entry["graph"], plan, samples, space, g, shared=entry)


def sfs_shape(samples):
    """The shape of the expected SFS of `samples`."""
    return tuple(int(n) + 1 for n in samples.values() if n)
