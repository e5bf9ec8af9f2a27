"""`Graph`: a phase-type distribution as a state-space graph, over the compiled core.

A ``Graph`` owns one low-level object, a :class:`phasic._csr.CSR` (the state table, the
edges, the parameterisation and what is derived from them); its methods are thin,
documented calls into the modules that compute on that object (:mod:`phasic.moments`,
:mod:`phasic.distributions`, :mod:`phasic.rewards`, :mod:`phasic.traces`). Cached
construction (:meth:`Graph.cached`) keys the callback (:mod:`phasic.keys`) and reads or
writes the store (:mod:`phasic.store`).
"""

from __future__ import annotations

import numbers
import re
import warnings

import numpy as np

from phasic import _core
from phasic import distributions as _d
from phasic import moments as _m
from phasic import rewards as _r
from phasic._csr import (
    CSR,
    DEFAULT_MAX_VERTICES,
    MAX_STATE_LENGTH,
    MAX_THETA_DIM,
    MAX_VERTICES_LIMIT,
)
from phasic.callbacks import accepted_extras, callback_ipv, plain, unknown_params
from phasic.exceptions import CacheWarning, GraphConstructionError, ParameterError, PhasicError, StoreError

__all__ = ["Graph", "DEFAULT_MAX_VERTICES", "MAX_STATE_LENGTH", "MAX_THETA_DIM", "MAX_VERTICES_LIMIT"]


def _show_int(v):
    """`v` for a message: the digits, or its size when it has too many to print."""
    return str(v) if v.bit_length() <= 128 else f"an integer of {v.bit_length()} bits"


def check_count(value, name, low, high, why):
    """`value` as an int in ``[low, high]``, or a ParameterError naming it.

    Parameters
    ----------
    value : object
        The user's value (a whole float such as ``1e6`` counts as an int).
    name : str
        The option's name, for the message.
    low, high : int
        The accepted range (inclusive).
    why : str
        Why `high` is the limit, for the message.
    """
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)  # max_vertices=1e6
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ParameterError(f"{name}={plain(value)!r} must be an int")
    v = int(value)
    if v < low:
        raise ParameterError(f"{name} must be >= {low}, got {_show_int(v)}")
    if v > high:
        raise ParameterError(f"{name}={_show_int(v)} is beyond {high}: {why}")
    return v


_UNPACK = re.compile(r"(too many|not enough) values to unpack(?: \(expected (\d+))?")


class Graph:
    """A phase-type distribution given by its state-space graph.

    Parameters
    ----------
    callback : callable, optional
        ``callback(state, **params)`` returns ``[[next_state, rate], ...]`` (``[]`` when
        absorbing). A rate may be a list of coefficients ``c``: the rate is then ``c . theta``,
        and moments, distributions and samples need :meth:`update_weights` first (they raise
        ParameterError before it).
    ipv : list, optional
        Initial distribution when the callback has none attached by :func:`with_ipv`.
    theta_dim : int, optional
        Dimension of theta for parameterised edges (else the coefficient lists' length).
    discrete : bool
        Discrete phase-type: weights are probabilities, the missing mass is a self-loop.
    cache : bool
        Load the graph from the content-addressed store, or build and store it
        (``graph_cache=`` is accepted as an alias).
    hierarchical : bool
        Record the elimination per strongly connected component as traces kept in the store,
        so later parameter vectors (and later processes) replay them.
    model, indexer : objects with ``to_dict``, optional
        Passed to the callback when its signature accepts them; part of the cache key.
    max_vertices : int
        Guard against unbounded state spaces.
    state_length : int, optional
        Start an empty graph for manual construction.
    **params
        Passed to the callback; each must be a parameter of it (``theta=`` for coefficient
        edges is refused: use :meth:`update_weights`).

    Examples
    --------
    >>> from phasic import Graph, with_ipv
    >>> @with_ipv([4])
    ... def kingman(state):
    ...     n = state[0]
    ...     return [] if n <= 1 else [[[n - 1], n * (n - 1) / 2]]
    >>> round(Graph(kingman).expectation(), 12)
    1.5
    """

    def __init__(
        self,
        callback=None,
        *,
        ipv=None,
        theta_dim=None,
        discrete=False,
        cache=False,
        graph_cache=None,
        hierarchical=False,
        model=None,
        indexer=None,
        max_vertices=DEFAULT_MAX_VERTICES,
        state_length=None,
        **params,
    ):
        if isinstance(callback, (int, np.integer)) and not isinstance(callback, bool):
            state_length, callback = callback, None
        max_vertices = check_count(
            max_vertices, "max_vertices", 1, MAX_VERTICES_LIMIT, "vertices are indexed by 32-bit integers"
        )
        if state_length is not None:
            state_length = check_count(
                state_length, "state_length", 1, MAX_STATE_LENGTH, "every vertex stores a state vector of this length"
            )
        if theta_dim is not None:
            theta_dim = check_count(
                theta_dim, "theta_dim", 1, MAX_THETA_DIM, "the coefficient matrix is dense (edges x theta_dim)"
            )
        discrete = bool(discrete)
        if graph_cache is not None:
            cache = bool(graph_cache)
        if callback is None:
            if state_length is None:
                raise TypeError("Graph() needs a callback or state_length= for manual construction")
            self._ll = CSR.empty(state_length, discrete, theta_dim)
            self._ll.hierarchical = bool(hierarchical)
            return
        if not callable(callback):
            raise TypeError(f"callback {callback!r} is not callable")
        name = getattr(callback, "__qualname__", repr(callback))
        unknown = unknown_params(callback, params)
        if unknown:
            hint = (
                "; for coefficient edges (rates given as lists of coefficients) build the graph "
                "without theta and call graph.update_weights(theta)"
                if "theta" in unknown
                else ""
            )
            raise ParameterError(
                f"Graph() passes {', '.join(f'{k}=' for k in unknown)} to the callback "
                f"{name!r}, which has no parameter of that name{hint}"
            )
        if cache:
            built = Graph.cached(
                callback,
                ipv=ipv,
                theta_dim=theta_dim,
                discrete=discrete,
                model=model,
                indexer=indexer,
                max_vertices=max_vertices,
                **params,
            )
            self._ll = built._ll
            self._ll.hierarchical = bool(hierarchical)
            return
        ipv_pairs = callback_ipv(callback, ipv)
        if ipv_pairs is None:
            raise GraphConstructionError(
                f"callback {name!r} has no initial distribution: decorate it with "
                f"@phasic.with_ipv(...) or pass Graph(callback, ipv=...)"
            )
        d = len(ipv_pairs[0][0])
        for s, _ in ipv_pairs:
            if len(s) != d:
                raise GraphConstructionError(f"IPV states {plain([s for s, _ in ipv_pairs])!r} differ in length")
        if state_length is not None and d != state_length:
            raise GraphConstructionError(
                f"the IPV {plain(ipv_pairs)!r} has states of length {d}, but state_length={state_length}"
            )
        call_params = dict(params)
        call_params.update(accepted_extras(callback, {"model": model, "indexer": indexer}))
        # a library state space may build itself without a Python call per state (the same
        # graph, made faster: phasic.demography's coalescent spaces); None: the generic build
        fast = getattr(callback, "_phasic_fast_build", None)
        built = fast(ipv_pairs, call_params, max_vertices, theta_dim, discrete) if fast is not None else None
        try:
            space, indptr, target, weight, coef = built or _core.build(
                callback, ipv_pairs, d, call_params, max_vertices, theta_dim, discrete
            )
        except ValueError as exc:
            # a state of the wrong length unpacked inside the callback (`n, = state`)
            unpack = None if isinstance(exc, PhasicError) else _UNPACK.search(str(exc))
            if unpack is None:
                raise
            where = " ".join(getattr(exc, "__notes__", ())).removeprefix("phasic: ")
            expects = (
                f"the callback seems to expect states of length {unpack.group(2)}"
                if unpack.group(2)
                else "does the callback expect another length?"
            )
            raise GraphConstructionError(
                f"the callback {name!r} failed with {type(exc).__name__}: {exc}"
                f"{' (' + where + ')' if where else ''}; the IPV {plain(ipv_pairs)!r} has states "
                f"of length {d}: {expects}"
            ) from exc
        self._ll = CSR(space, indptr, target, weight, coef, discrete=discrete, callback_name=name)
        self._ll.hierarchical = bool(hierarchical)

    @classmethod
    def _wrap(cls, ll):
        """A Graph around the low-level graph `ll` (every construction path ends here or in
        ``__init__``)."""
        g = cls.__new__(cls)
        g._ll = ll
        return g

    @classmethod
    def cached(cls, callback, *, store=None, **kwargs) -> Graph:
        """``Graph(callback, **kwargs)`` from the content-addressed store, built and stored on a miss.

        ``Graph(callback, cache=True, **kwargs)`` calls this. The key
        (:func:`phasic.keys.graph_key`) covers the callback's code and all the user code it
        reaches, the parameters, the IPV and the options, so the library, the ``phasic``
        command, Dask tasks and Snakemake rules find each other's entries.

        Parameters
        ----------
        callback : callable
            The state-space callback.
        store : phasic.store.Store, optional
            Default: the store at ``$PHASIC_CACHE_DIR`` or ``~/.phasic_cache``.
        **kwargs
            As for ``Graph`` (options and callback parameters).

        Returns
        -------
        Graph
            If the entry cannot be locked or written (disk full, read-only cache, another
            user's lock that cannot be removed, a builder in another process that holds the
            lock for longer than ``$PHASIC_CACHE_LOCK_TIMEOUT``) the graph is built here and
            returned with a :class:`phasic.CacheWarning` that names the file and the cause;
            nothing is stored then. An entry written by a newer phasic is never replaced: the
            graph is built here, with one ``CacheWarning`` saying to upgrade.
        """
        from phasic.keys import callback_attrs, graph_key, split_graph_kwargs
        from phasic.store import Store, read_store

        kwargs = {k: v for k, v in kwargs.items() if k not in ("cache", "graph_cache")}
        options, params = split_graph_kwargs(kwargs)
        hierarchical = bool(options.pop("hierarchical", False))
        key, material = graph_key(
            callback,
            params,
            ipv=options.get("ipv"),
            model=options.get("model"),
            indexer=options.get("indexer"),
            options=options,
        )

        def build():
            return cls(callback, **options, **params)

        reader = store if store is not None else read_store()
        found, status, st = reader._lookup("graphs", key)
        graph = None
        if found is not None:
            try:  # the store checked a graph entry's arrays when it read it (_csr.graph_problem)
                graph = cls.from_arrays(*found, checked=True)
            except (ValueError, TypeError, KeyError) as exc:  # a valid checksum over something that is no graph
                reader.discard("graphs", key, f"not a graph: {exc}", st)  # (only the file that was read)
                status = "bad"
        if graph is None and status == "newer":  # never replaced: built here; the read warned, saying to upgrade
            graph = build()
        if graph is None:
            store = store if store is not None else Store()
            built = []

            def _build():
                g = build()
                built.append(g)
                arrays, attrs = g.to_arrays(compact=True)
                return arrays, {**attrs, **callback_attrs(callback, material)}

            try:  # after this miss (which gave any warning): no second read before the lock
                arrays, attrs = store.get_or_create("graphs", key, _build, after_miss=status)
            except StoreError as exc:
                if not built:
                    raise
                name = getattr(callback, "__qualname__", None) or repr(callback)
                warnings.warn(f"phasic: the graph of {name} was built but not cached: {exc}", CacheWarning, 2)
                graph = built[0]
            else:
                graph = built[0] if built else cls.from_arrays(arrays, attrs)
        graph._ll.hierarchical = hierarchical
        return graph

    # ------------------------------------------------------------------ structure
    def starting_vertex(self) -> int:
        """Index of the starting vertex (always 0); its out-edges are the IPV."""
        return 0

    def find_vertex(self, state) -> int:
        """Index of the vertex with `state`, or -1."""
        return int(self._ll.space.find(state))

    def find_or_create_vertex(self, state) -> int:
        """Index of the vertex with `state`, created if absent."""
        idx, _ = self._ll.space.find_or_create(state)
        return int(idx)

    def create_vertex(self, state) -> int:
        """Creates a vertex (even if `state` exists; it is then not found by state)."""
        return int(self._ll.space.create_unindexed(state))

    def add_edge(self, source: int, target: int, weight, coefficients=None) -> None:
        """Adds the edge ``source -> target`` with a rate (or probability) or coefficients.

        Raises
        ------
        GraphConstructionError
            A vertex index out of range, an in-edge of the starting vertex, a self-loop, a
            weight that is not a finite number ``>= 0``, both a weight and coefficients, or
            coefficients of another length than earlier ones.
        """
        self._ll.add_edge(source, target, weight, coefficients)

    def vertices_length(self) -> int:
        """The number of vertices, the starting vertex included."""
        return self._ll.vertices_length()

    def edges_length(self) -> int:
        """The number of edges, the starting vertex's (the IPV) included."""
        return self._ll.edges_length()

    @property
    def state_length(self) -> int:
        """The length of every state vector."""
        return self._ll.state_length

    @property
    def theta_dim(self):
        """The length of theta (None for a graph without parameterised edges)."""
        return self._ll.theta_dim

    @property
    def discrete(self) -> bool:
        """Whether this is a discrete phase-type graph (weights are probabilities)."""
        return self._ll.discrete

    @property
    def theta(self):
        """A copy of the last theta given to :meth:`update_weights`, or None."""
        return None if self._ll.theta is None else self._ll.theta.copy()

    def states(self) -> np.ndarray:
        """``(V, d)`` int32 array; row 0 (zeros) is the starting vertex."""
        return self._ll.states()

    def edges(self):
        """CSR arrays ``(indptr int64, target int32, weight float64)`` (current weights)."""
        ll = self._ll
        ll.flush()
        return ll.indptr.copy(), ll.target.copy(), ll.w.copy()

    def coefficients(self):
        """``(E, p)`` coefficient matrix of parameterised edges, or None."""
        self._ll.flush()
        return None if self._ll.coef is None else self._ll.coef.copy()

    def update_weights(self, theta) -> None:
        """Re-weights parameterised edges: ``weight = base + coef . theta``; no rebuild.

        Raises
        ------
        ParameterError
            The graph has no parameterised edges, or `theta` has the wrong length, a
            non-finite entry, or gives some edge a negative rate (the message names it).
        """
        self._ll.update_weights(theta)

    def __repr__(self):
        kind = "discrete" if self.discrete else "continuous"
        extra = f", theta_dim={self.theta_dim}" if self.theta_dim else ""
        return (
            f"<phasic.Graph {kind}: {self.vertices_length()} vertices, {self.edges_length()} edges, "
            f"state_length={self.state_length}{extra}>"
        )

    # ------------------------------------------------------------------ arrays
    def to_arrays(self, compact=False):
        """``(arrays, attrs)``: the graph as plain typed arrays (used by the store, pickling).

        ``compact=True`` gives the store's lossless small form (narrow integers,
        dictionary-coded rates; see :mod:`phasic._csr`); ``from_arrays`` reads both.
        """
        return self._ll.to_arrays(compact)

    @classmethod
    def from_arrays(cls, arrays, attrs, checked=False):
        """Inverse of :meth:`to_arrays` (plain or compact arrays).

        Parameters
        ----------
        arrays, attrs : dict
            As :meth:`to_arrays` gives them (or the store reads them).
        checked : bool
            The arrays were already validated by :func:`phasic._csr.check_graph_arrays` (the
            store does so on every read) and are not checked again. Otherwise they are:
            arrays from outside must not let the core read out of bounds or compute with
            impossible weights.

        Raises
        ------
        GraphConstructionError
            Naming the first thing that makes the arrays no graph.
        """
        return cls._wrap(CSR.from_arrays(arrays, attrs, checked))

    def __reduce__(self):
        arrays, attrs = self.to_arrays()
        return (_from_state, (arrays, attrs, self._ll.theta, self._ll.hierarchical))

    def copy(self) -> Graph:
        """An independent copy (same structure, weights and theta)."""
        return _from_state(*self.__reduce__()[1])

    # ------------------------------------------------------------------ computations
    # each needs the weights: a parameterised graph refuses them before update_weights
    def moments(self, power: int = 2, rewards=None):
        """Raw moments ``[E[Y], E[Y^2], ..., E[Y^power]]`` of the time to absorption.

        ``Y`` is the time to absorption, or with `rewards` the reward-weighted time
        ``Y = sum_v r_v * (time spent in vertex v)``. Nothing is simulated or integrated
        numerically: the moments come from replaying the graph's elimination trace.

        Parameters
        ----------
        power : int, default 2
            How many moments, 1 to 170 (``171!`` exceeds the largest double).
        rewards : array_like of float, shape (V,), optional
            One finite reward per vertex (``V = vertices_length()``); the starting vertex's
            reward is ignored. Default: every vertex has reward 1. Discrete graphs accept
            rewards only for ``power <= 2``.

        Returns
        -------
        list of float
            ``power`` numbers; element ``k - 1`` is ``E[Y^k]``.

        Raises
        ------
        ParameterError
            If `power` is not an integer in [1, 170], if `rewards` has the wrong shape or a
            non-finite entry, if a discrete graph gets rewards with ``power > 2``, if the graph
            is parameterised and :meth:`update_weights` was not called, or if the weights
            give no distribution (initial probabilities summing over 1, a state that cannot
            reach absorption).

        See Also
        --------
        expectation, variance, covariance, reward_transform

        Notes
        -----
        With initial vector ``alpha``, sub-intensity matrix ``S`` and ``U = (-S)^-1``, a
        continuous phase-type distribution has ``E[Y^k] = k! alpha (U diag(r))^k 1``
        (Roikjer et al. 2022). A discrete one (sub-transition matrix ``T``,
        ``U = (I - T)^-1``) uses the factorial moments ``E[(tau)_j] = j! pi (U - I)^(j-1) U 1``
        and converts them with Stirling numbers of the second kind.

        Examples
        --------
        An exponential distribution with rate 2 has ``E[Y^k] = k! / 2^k``:

        >>> from phasic import Graph
        >>> g = Graph(state_length=1)
        >>> a = g.find_or_create_vertex([1])
        >>> b = g.find_or_create_vertex([2])
        >>> g.add_edge(g.starting_vertex(), a, 1.0)
        >>> g.add_edge(a, b, 2.0)
        >>> [round(m, 6) for m in g.moments(3)]
        [0.5, 0.5, 0.75]
        """
        self._ll.require_weights("moments")
        return _m.moments(self._ll, power, rewards)

    def expectation(self, rewards=None) -> float:
        """Expected time to absorption ``E[Y]`` (reward-weighted with `rewards`).

        Parameters
        ----------
        rewards : array_like of float, shape (V,), optional
            One finite reward per vertex; the starting vertex's reward is ignored. Default:
            every vertex has reward 1, so ``Y`` is the plain time to absorption.

        Returns
        -------
        float
            ``E[Y] = alpha U r`` with ``U = (-S)^-1`` (discrete: ``(I - T)^-1``).

        Raises
        ------
        ParameterError
            If `rewards` has the wrong shape or a non-finite entry, if a parameterised graph
            has no weights yet (see :meth:`update_weights`), or if the weights give no
            distribution.

        See Also
        --------
        moments, variance, expected_sojourn_time

        Examples
        --------
        The time to the most recent common ancestor of ``n`` genes under Kingman's
        coalescent has ``E[T] = 2 (1 - 1/n)``, which is 1.8 for ``n = 10``:

        >>> from phasic import Graph, with_ipv
        >>> @with_ipv([10])
        ... def kingman(state):
        ...     n = state[0]
        ...     return [] if n <= 1 else [[[n - 1], n * (n - 1) / 2]]
        >>> round(Graph(kingman).expectation(), 6)
        1.8

        Rewards weight the time spent in each vertex. With reward ``n`` (the number of
        lineages) ``Y`` is the total branch length, ``E[L] = 2 sum_{i<n} 1/i``:

        >>> g = Graph(kingman)
        >>> lineages = g.states()[:, 0]
        >>> round(g.expectation(lineages), 6) == round(2 * sum(1 / i for i in range(1, 10)), 6)
        True
        """
        self._ll.require_weights("expectation")
        return _m.moments(self._ll, 1, rewards)[0]

    def variance(self, rewards=None) -> float:
        """Variance ``Var[Y]`` of the time to absorption (reward-weighted with `rewards`).

        Parameters
        ----------
        rewards : array_like of float, shape (V,), optional
            One finite reward per vertex; the starting vertex's reward is ignored. Default:
            every vertex has reward 1.

        Returns
        -------
        float
            ``E[Y^2] - E[Y]^2``, from :meth:`moments` with ``power=2``.

        Raises
        ------
        ParameterError
            As :meth:`moments`: bad `rewards`, a parameterised graph without weights, or
            weights that give no distribution.

        See Also
        --------
        moments, expectation, covariance

        Examples
        --------
        A sum of independent exponentials with rates 1 and 3 (a chain of two states) has
        variance ``1/1^2 + 1/3^2 = 10/9``:

        >>> from phasic import Graph
        >>> g = Graph(state_length=1)
        >>> s1, s2, done = (g.find_or_create_vertex([i]) for i in (1, 2, 3))
        >>> g.add_edge(0, s1, 1.0)
        >>> g.add_edge(s1, s2, 1.0)
        >>> g.add_edge(s2, done, 3.0)
        >>> round(g.variance(), 6)
        1.111111
        """
        self._ll.require_weights("variance")
        m1, m2 = _m.moments(self._ll, 2, rewards)
        return m2 - m1 * m1

    def covariance(self, rewards1, rewards2) -> float:
        """Covariance ``Cov(Y1, Y2)`` of two reward-weighted times to absorption.

        ``Y1`` and ``Y2`` accumulate `rewards1` and `rewards2` along the same path through the
        graph (a bivariate phase-type distribution).

        Parameters
        ----------
        rewards1, rewards2 : array_like of float, shape (V,)
            One finite reward per vertex each; the starting vertex's rewards are ignored.

        Returns
        -------
        float
            ``E[Y1 Y2] - E[Y1] E[Y2]``; ``covariance(r, r)`` equals ``variance(r)``.

        Raises
        ------
        ParameterError
            If either reward vector has the wrong shape or a non-finite entry (the message
            names it), if a parameterised graph has no weights yet, or if the weights give no
            distribution.

        See Also
        --------
        variance, expectation

        Notes
        -----
        Continuous: ``E[Y1 Y2] = alpha U diag(r1) U r2 + alpha U diag(r2) U r1`` with
        ``U = (-S)^-1``. Discrete: the same with ``U = (I - T)^-1`` minus
        ``alpha U diag(r1) r2`` (both rewards counted in the same step).

        Examples
        --------
        Kingman's coalescent from 3 genes spends ``T3 ~ Exp(3)`` with 3 lineages and
        ``T2 ~ Exp(1)`` with 2. The total branch length ``L = 3 T3 + 2 T2`` (reward: the
        number of lineages) and the tree height ``H = T3 + T2`` (reward 1) have
        ``Cov(L, H) = 3 Var(T3) + 2 Var(T2) = 3/9 + 2``:

        >>> import numpy as np
        >>> from phasic import Graph, with_ipv
        >>> @with_ipv([3])
        ... def kingman(state):
        ...     n = state[0]
        ...     return [] if n <= 1 else [[[n - 1], n * (n - 1) / 2]]
        >>> g = Graph(kingman)
        >>> lineages = g.states()[:, 0]
        >>> round(g.covariance(lineages, np.ones(g.vertices_length())), 6)
        2.333333
        """
        self._ll.require_weights("covariance")
        return _m.covariance(self._ll, rewards1, rewards2)

    def expected_sojourn_time(self) -> np.ndarray:
        """Expected total time (discrete: number of steps) spent in each vertex, ``alpha U``."""
        self._ll.require_weights("expected_sojourn_time")
        return _m.expected_sojourn_time(self._ll)

    def pdf(self, t):
        """Probability density of the time to absorption, at times `t`.

        Parameters
        ----------
        t : float or array_like of float
            Times; any shape. Negative times have density 0.

        Returns
        -------
        numpy.ndarray
            The density at each time, with the shape of `t` (a 0-d array for a scalar).

        Raises
        ------
        ParameterError
            If the graph is discrete (use :meth:`pmf`), if `t` holds NaN or infinite values,
            if the largest exit rate times the largest time exceeds ``1e8`` (the number of
            uniformisation steps grows with it), if a parameterised graph has no weights yet
            (see :meth:`update_weights`), or if the weights give no distribution.

        See Also
        --------
        cdf, sample, moments

        Notes
        -----
        The density ``f(t) = alpha exp(S t) s`` (``s = -S 1``, the exit rates) is computed by
        uniformisation on the sparse graph, accurate to about ``1e-12`` absolute; the number
        of terms follows from the largest exit rate and the largest time in `t`.

        Examples
        --------
        Two exponential stages with rate 1 give the Erlang(2, 1) distribution,
        ``f(t) = t exp(-t)``:

        >>> import numpy as np
        >>> from phasic import Graph
        >>> g = Graph(state_length=1)
        >>> s1, s2, done = (g.find_or_create_vertex([i]) for i in (1, 2, 3))
        >>> g.add_edge(0, s1, 1.0)
        >>> g.add_edge(s1, s2, 1.0)
        >>> g.add_edge(s2, done, 1.0)
        >>> t = np.array([0.5, 1.0, 2.0])
        >>> np.round(g.pdf(t), 6)
        array([0.303265, 0.367879, 0.270671])
        >>> bool(np.allclose(g.pdf(t), t * np.exp(-t), atol=1e-10))
        True
        """
        self._ll.require_weights("pdf")
        return _d.pdf(self._ll, t)

    def cdf(self, t):
        """Cumulative distribution function ``P(Y <= t)`` of the time to absorption.

        Parameters
        ----------
        t : float or array_like
            Times (continuous graph) or jump counts (discrete graph, integer-valued); any
            shape. Negative values give 0.

        Returns
        -------
        numpy.ndarray
            ``P(Y <= t)`` for each entry, with the shape of `t`, clipped to [0, 1].

        Raises
        ------
        ParameterError
            If `t` holds NaN or infinite values, if a discrete graph gets non-integer jump
            counts or counts beyond ``1e8``, if a continuous graph's largest exit rate times the
            largest time exceeds ``1e8``, if a parameterised graph has no weights yet, or if
            the weights give no distribution.

        See Also
        --------
        pdf, pmf

        Notes
        -----
        Continuous: ``F(t) = 1 - alpha exp(S t) 1`` by uniformisation. Discrete:
        ``F(k) = 1 - alpha T^k 1`` by the forward algorithm.

        Examples
        --------
        Erlang(2, 1), two exponential stages with rate 1: ``F(t) = 1 - (1 + t) exp(-t)``:

        >>> import numpy as np
        >>> from phasic import Graph
        >>> g = Graph(state_length=1)
        >>> s1, s2, done = (g.find_or_create_vertex([i]) for i in (1, 2, 3))
        >>> g.add_edge(0, s1, 1.0)
        >>> g.add_edge(s1, s2, 1.0)
        >>> g.add_edge(s2, done, 1.0)
        >>> np.round(g.cdf([0.5, 1.0, 2.0]), 6)
        array([0.090204, 0.264241, 0.593994])

        A discrete graph leaving its state with probability 1/4 per jump is geometric,
        ``F(k) = 1 - (3/4)^k``:

        >>> from phasic import Graph
        >>> g = Graph(state_length=1, discrete=True)
        >>> s, done = g.find_or_create_vertex([1]), g.find_or_create_vertex([2])
        >>> g.add_edge(0, s, 1.0)
        >>> g.add_edge(s, done, 0.25)
        >>> np.round(g.cdf([1, 2, 3]), 6)
        array([0.25    , 0.4375  , 0.578125])
        """
        self._ll.require_weights("cdf")
        return _d.cdf(self._ll, t)

    def pmf(self, k):
        """Probability mass function ``P(Y = k)`` of a discrete graph's absorption time.

        ``Y`` counts the jumps from the first transient state to absorption: a state entered
        from the start and left at the first jump gives ``Y = 1``.

        Parameters
        ----------
        k : int or array_like of int
            Jump counts; any shape. Integer-valued floats are accepted; negative counts have
            probability 0.

        Returns
        -------
        numpy.ndarray
            ``P(Y = k)`` for each entry, with the shape of `k`.

        Raises
        ------
        ParameterError
            If the graph is continuous (use :meth:`pdf`), if `k` holds non-integers or counts
            beyond ``1e8``, if a parameterised graph has no weights yet, or if the weights
            give no distribution (for example out-probabilities summing over 1).

        See Also
        --------
        cdf, moments

        Notes
        -----
        ``P(Y = k) = alpha T^(k-1) t`` with sub-transition matrix ``T`` and exit
        probabilities ``t = 1 - T 1``, computed by the forward algorithm on the sparse graph.
        ``P(Y = 0)`` is the initial probability mass not placed on any state.

        Examples
        --------
        A state left with probability ``p = 1/4`` at each jump (the rest is the implicit
        self-loop) gives the geometric distribution ``P(Y = k) = (1 - p)^(k-1) p``:

        >>> import numpy as np
        >>> from phasic import Graph
        >>> g = Graph(state_length=1, discrete=True)
        >>> s, done = g.find_or_create_vertex([1]), g.find_or_create_vertex([2])
        >>> g.add_edge(0, s, 1.0)
        >>> g.add_edge(s, done, 0.25)
        >>> np.round(g.pmf([0, 1, 2, 3]), 6)
        array([0.      , 0.25    , 0.1875  , 0.140625])
        """
        self._ll.require_weights("pmf")
        return _d.pmf(self._ll, k)

    def sample(self, n: int, seed=None, rewards=None) -> np.ndarray:
        """Draw `n` absorption times by simulating the chain.

        Parameters
        ----------
        n : int
            Number of draws, 0 to ``1e9`` (draw larger numbers in batches).
        seed : int, optional
            Seed of the generator; the same seed gives the same draws. Default: a fresh
            seed from the operating system's entropy.
        rewards : array_like of float, shape (V,), optional
            One finite reward per vertex: each draw is then the reward-weighted time
            ``sum_v r_v * (time in v)`` (discrete: the summed rewards of the visited states).

        Returns
        -------
        numpy.ndarray
            Shape ``(n,)``, float64: times (continuous) or jump counts (discrete).

        Raises
        ------
        ParameterError
            If `n` is not a non-negative integer or exceeds ``1e9``, if `seed` is not an
            integer, if `rewards` has the wrong shape or a non-finite entry, if the chain
            can reach a class of states it never leaves (the walk would not end), if a
            parameterised graph has no weights yet, or if the weights give no distribution.

        See Also
        --------
        pdf, pmf, moments

        Examples
        --------
        Draws from an exponential distribution with rate 2 are positive and have mean
        ``1/2``; a seed makes them reproducible:

        >>> import numpy as np
        >>> from phasic import Graph
        >>> g = Graph(state_length=1)
        >>> a, b = g.find_or_create_vertex([1]), g.find_or_create_vertex([2])
        >>> g.add_edge(0, a, 1.0)
        >>> g.add_edge(a, b, 2.0)
        >>> x = g.sample(200_000, seed=1)
        >>> x.shape
        (200000,)
        >>> bool(np.all(x > 0))
        True
        >>> bool(abs(x.mean() - 0.5) < 0.01)
        True
        >>> bool(np.array_equal(x, g.sample(200_000, seed=1)))
        True
        """
        self._ll.require_weights("sample")
        return _d.sample(self._ll, n, seed, rewards)

    def transient_vertices(self) -> np.ndarray:
        """Indices of the transient vertices (neither the start nor absorbing), increasing."""
        self._ll.require_weights("transient_vertices")
        return _d.transient_vertices(self._ll)

    def as_matrices(self):
        """``(alpha, S)``: initial vector and sub-intensity matrix (discrete: sub-transition
        matrix T) over :meth:`transient_vertices`. Dense: for small graphs.
        """
        self._ll.require_weights("as_matrices")
        return _d.as_matrices(self._ll)

    def reward_transform(self, rewards) -> Graph:
        """A new graph whose time to absorption is this graph's reward-weighted time.

        If ``Y = sum_v r_v * (time spent in vertex v)``, the returned graph's time to absorption
        has the distribution of ``Y``, so every method (:meth:`pdf`, :meth:`cdf`,
        :meth:`sample`, :meth:`moments`, ...) applies to the reward-weighted time.

        Parameters
        ----------
        rewards : array_like of float, shape (V,)
            One reward per vertex (``V = vertices_length()``), finite and ``>= 0``; the
            starting vertex's reward is ignored. A discrete graph needs integer rewards.

        Returns
        -------
        Graph
            A new graph; this one is not changed. Vertices with reward 0 are gone (a discrete
            graph gains a vertex per extra unit of reward), so vertex indices differ.

        Raises
        ------
        ParameterError
            If `rewards` has the wrong shape, a negative or non-finite entry, non-integer
            entries on a discrete graph, or discrete rewards summing over ``1e7`` (one state
            per unit of reward); also if a parameterised graph has no weights yet (see
            :meth:`update_weights`) or the weights give no distribution.

        See Also
        --------
        moments : moments of the reward-weighted time without a new graph.

        Notes
        -----
        Continuous (Roikjer et al. 2022, Algorithm 2): a vertex with reward ``r > 0`` keeps
        its edges with the out-rates divided by ``r``; a vertex with reward 0 is removed and
        its parents are linked to its children with the embedded chain's probabilities.
        Discrete: a vertex with reward ``k`` becomes a chain of ``k`` visits (``k = 0``: it is
        removed in the same way).

        Examples
        --------
        The total branch length of Kingman's coalescent from 3 genes is the time weighted
        by the number of lineages, ``L = 3 T3 + 2 T2`` with ``T3 ~ Exp(3)``, ``T2 ~ Exp(1)``:
        ``E[L] = 1 + 2 = 3`` and ``Var(L) = 9/9 + 4 = 5``:

        >>> from phasic import Graph, with_ipv
        >>> @with_ipv([3])
        ... def kingman(state):
        ...     n = state[0]
        ...     return [] if n <= 1 else [[[n - 1], n * (n - 1) / 2]]
        >>> g = Graph(kingman)
        >>> lengths = g.reward_transform(g.states()[:, 0])
        >>> round(lengths.expectation(), 6), round(lengths.variance(), 6)
        (3.0, 5.0)
        """
        self._ll.require_weights("reward_transform")
        return Graph._wrap(_r.reward_transform(self._ll, rewards))

    def plot(self, ax=None, **kwargs):
        """Draws a small graph with matplotlib; see :func:`phasic.plot.plot_graph`."""
        from phasic.plot import plot_graph

        return plot_graph(self, ax=ax, **kwargs)

    def svgd(self, observed, n_particles=32, n_iterations=500, prior=None, fixed=(), seed=None, **kwargs):
        """Posterior particles of theta given observations of this graph's variable, by Stein
        variational gradient descent (JAX; see ``phasic.jax._svgd``).

        Parameters
        ----------
        observed : array_like
            Absorption times (continuous graph: the likelihood is the pdf) or jump counts
            (discrete graph: the pmf).
        n_particles, n_iterations : int
            Particles, evaluated together in one vectorised call per iteration, and steps.
        prior : callable, optional
            ``theta -> log prior density`` written in JAX; None: flat in log theta.
        fixed : sequence of (int, float)
            Parameters held at a value.
        seed : int, optional
            Seeds the particles' starting spread around the current theta (or ones).

        Returns
        -------
        phasic.jax._svgd.SVGDResult
            ``particles`` (n_particles, p), ``map_estimate_from_particles()``,
            ``log_likelihood(theta=None)``, ``mean``, ``std``, ``trace``.

        Examples
        --------
        >>> import numpy as np
        >>> from phasic import Graph
        >>> g = Graph(state_length=1, theta_dim=1)
        >>> a, done = g.find_or_create_vertex([1]), g.find_or_create_vertex([2])
        >>> g.add_edge(0, a, 1.0)
        >>> g.add_edge(a, done, 0.0, coefficients=[1.0])   # rate theta[0]
        >>> g.update_weights([1.0])
        >>> x = np.random.default_rng(1).exponential(1 / 3.0, 400)    # rate 3
        >>> post = g.svgd(x, n_particles=16, n_iterations=300, seed=2)
        >>> bool(abs(post.mean[0] - len(x) / x.sum()) < 0.2)
        True
        """
        from phasic.jax._svgd import graph_svgd

        return graph_svgd(
            self,
            observed,
            n_particles=n_particles,
            n_iterations=n_iterations,
            prior=prior,
            fixed=fixed,
            seed=seed,
            **kwargs,
        )

    def pmf_from_graph(self, discrete=None, **kwargs):
        """JAX function of ``(theta, times)``; see :func:`phasic.pmf_from_graph`."""
        from phasic.jax import pmf_from_graph

        return pmf_from_graph(self, discrete=discrete, **kwargs)


def _from_state(arrays, attrs, theta, hierarchical):
    """Unpickle a Graph (the pickle path ``phasic.graph._from_state`` is kept across versions)."""
    g = Graph.from_arrays(arrays, attrs)
    g._ll.hierarchical = hierarchical
    if theta is not None:
        g.update_weights(theta)
    return g
