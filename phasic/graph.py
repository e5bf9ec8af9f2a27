"""`Graph`: a phase-type distribution as a state-space graph, over the compiled core."""

from __future__ import annotations

import functools
import numbers
import re
from math import isfinite

import numpy as np

from phasic import _core
from phasic.callbacks import accepted_extras, callback_ipv, plain, unknown_params
from phasic.exceptions import GraphConstructionError, ParameterError, PhasicError

DEFAULT_MAX_VERTICES = 50_000_000
#: vertices are indexed by int32 (edge targets), so no graph has more
MAX_VERTICES_LIMIT = 2**31 - 1
#: the longest state vector (every vertex stores one; 4 MB each at this length)
MAX_STATE_LENGTH = 1_000_000
#: the largest theta dimension (the coefficient matrix is dense: edges x theta_dim)
MAX_THETA_DIM = 1_000_000


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


def _requires_weights(fn):
    """`fn` as a `Graph` method that refuses a parameterised graph before update_weights."""

    @functools.wraps(fn)
    def method(self, *args, **kwargs):
        self._require_weights(fn.__name__)
        return fn(self, *args, **kwargs)

    return method


_UNPACK = re.compile(r"(too many|not enough) values to unpack(?: \(expected (\d+))?")


def _nonzero_rows(coef):
    """Rows of the (E, p) `coef` with a nonzero entry (column by column for small p: NumPy
    reduces short rows slowly, ~20 ns per row)."""
    if coef.shape[1] > 8:
        return np.any(coef != 0, axis=1)
    rows = np.zeros(coef.shape[0], bool)
    for j in range(coef.shape[1]):
        rows |= coef[:, j] != 0
    return rows


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
        self._discrete = bool(discrete)
        self._hierarchical = bool(hierarchical)
        self._theta = None
        self._trace = None
        self._val = None
        self._lam = None
        self._coo = None
        self._callback_name = None
        if graph_cache is not None:
            cache = bool(graph_cache)
        if callback is None:
            if state_length is None:
                raise TypeError("Graph() needs a callback or state_length= for manual construction")
            self._space = _core.StateSpace(state_length)
            self._set_csr(np.zeros(2, np.int64), np.zeros(0, np.int32), np.zeros(0), None)
            self._theta_dim = theta_dim
            return
        if not callable(callback):
            raise TypeError(f"callback {callback!r} is not callable")
        self._callback_name = getattr(callback, "__qualname__", repr(callback))
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
                f"{self._callback_name!r}, which has no parameter of that name{hint}"
            )
        if cache:
            from phasic.cache import cached_graph

            options = {"theta_dim": theta_dim, "discrete": self._discrete}
            built = cached_graph(
                callback,
                params=params,
                ipv=ipv,
                model=model,
                indexer=indexer,
                options=options,
                build=lambda: Graph(
                    callback,
                    ipv=ipv,
                    theta_dim=theta_dim,
                    discrete=discrete,
                    model=model,
                    indexer=indexer,
                    max_vertices=max_vertices,
                    **params,
                ),
            )
            self.__dict__.update(built.__dict__)
            self._hierarchical = bool(hierarchical)
            return
        ipv_pairs = callback_ipv(callback, ipv)
        if ipv_pairs is None:
            raise GraphConstructionError(
                f"callback {self._callback_name!r} has no initial distribution: decorate it with "
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
        try:
            space, indptr, target, weight, coef = _core.build(
                callback, ipv_pairs, d, call_params, max_vertices, theta_dim, self._discrete
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
                f"the callback {self._callback_name!r} failed with {type(exc).__name__}: {exc}"
                f"{' (' + where + ')' if where else ''}; the IPV {plain(ipv_pairs)!r} has states "
                f"of length {d}: {expects}"
            ) from exc
        self._space = space
        self._set_csr(indptr, target, weight, coef)
        self._theta_dim = None if coef is None else coef.shape[1]

    # ------------------------------------------------------------------ structure
    def _set_csr(self, indptr, target, weight, coef, own=False):
        """Install CSR arrays; ``own``: ``weight`` is a fresh array nobody else holds."""
        self._indptr, self._target = indptr, target
        self._coef = coef
        self._parameterised = False
        if coef is not None:
            param = _nonzero_rows(coef)
            self._base = np.where(param, 0.0, weight)
            self._parameterised = bool(param.any())
        else:
            self._base = weight
        self._w = weight if own and weight.dtype == np.float64 else weight.astype(np.float64, copy=True)
        self._invalidate(structure=True)

    def _invalidate(self, structure=False):
        self._val = None
        self._lam = None
        if structure:
            self._trace = None

    def _flush(self):
        """Turns manually added edges into CSR arrays (stable by source)."""
        if self._coo is None:
            return
        src, tgt, w, coefs = self._coo
        self._coo = None
        V = len(self._space)
        src = np.asarray(src, np.int64)
        order = np.argsort(src, kind="stable")
        indptr = np.zeros(V + 1, np.int64)
        np.cumsum(np.bincount(src, minlength=V), out=indptr[1:])
        target = np.asarray(tgt, np.int32)[order]
        weight = np.asarray(w, np.float64)[order]
        coef = None
        if self._theta_dim:
            coef = np.zeros((len(tgt), self._theta_dim))
            for i, c in enumerate(coefs):
                if c is not None:
                    coef[i] = c
            coef = coef[order]
        theta = self._theta
        self._set_csr(indptr, target, weight, coef)
        if theta is not None:
            self.update_weights(theta)

    def _edit(self):
        if self._coo is None:
            n = np.diff(self._indptr)
            src = np.repeat(np.arange(len(n)), n).tolist()
            coefs = [None] * len(self._target) if self._coef is None else list(self._coef)
            self._coo = (src, self._target.tolist(), self._w.tolist(), coefs)
        return self._coo

    def _require_weights(self, what):
        """Raises unless the weights are known: a graph with coefficient edges needs
        :meth:`update_weights` first (its rates are ``coef . theta``)."""
        self._flush()
        if self._theta is None and self._parameterised:
            raise ParameterError(
                f"Graph.{what}() needs the edge weights, but this graph has parameterised edges "
                f"(theta_dim={self._theta_dim}) and no theta yet: call graph.update_weights(theta) "
                f"first"
            )

    def starting_vertex(self) -> int:
        """Index of the starting vertex (always 0); its out-edges are the IPV."""
        return 0

    def find_vertex(self, state) -> int:
        """Index of the vertex with `state`, or -1."""
        return int(self._space.find(state))

    def find_or_create_vertex(self, state) -> int:
        """Index of the vertex with `state`, created if absent."""
        idx, _ = self._space.find_or_create(state)
        return int(idx)

    def create_vertex(self, state) -> int:
        """Creates a vertex (even if `state` exists; it is then not found by state)."""
        return int(self._space.create_unindexed(state))

    def add_edge(self, source: int, target: int, weight, coefficients=None) -> None:
        """Adds the edge ``source -> target`` with a rate (or probability) or coefficients."""
        V = len(self._space)
        for name, v in (("source", source), ("target", target)):
            if not isinstance(v, (int, np.integer)) or not 0 <= v < V:
                raise GraphConstructionError(f"{name} vertex {plain(v)!r} is not a vertex index in [0, {V})")
        if target == 0:
            raise GraphConstructionError("the starting vertex 0 cannot have in-edges")
        if source == target:
            raise GraphConstructionError(f"self-loop on vertex {plain(source)!r}: self-transitions are implicit")
        try:
            w = float(weight)
        except (TypeError, ValueError):
            raise GraphConstructionError(
                f"edge weight {plain(weight)!r} ({source} -> {target}) is not a number"
            ) from None
        if not np.isfinite(w) or w < 0:
            raise GraphConstructionError(
                f"edge weight {plain(weight)!r} ({source} -> {target}) must be finite and >= 0"
            )
        if coefficients is not None and w != 0:
            raise GraphConstructionError(
                f"edge {source} -> {target}: give a weight ({plain(weight)!r}) or coefficients "
                f"({plain(coefficients)!r}), not both; for a constant part add a second edge with the weight"
            )
        if coefficients is not None:
            c = np.asarray(coefficients, np.float64)
            if c.ndim != 1 or not np.all(np.isfinite(c)):
                raise GraphConstructionError(f"coefficients {plain(coefficients)!r} must be a 1-D finite vector")
            if self._theta_dim is None:
                self._theta_dim = c.size
            elif c.size != self._theta_dim:
                raise GraphConstructionError(
                    f"{c.size} coefficients {plain(coefficients)!r} given, theta has dimension {self._theta_dim}"
                )
            coefficients = c
        src, tgt, ws, coefs = self._edit()
        src.append(int(source))
        tgt.append(int(target))
        ws.append(w)
        coefs.append(coefficients)
        self._invalidate(structure=True)

    def vertices_length(self) -> int:
        return len(self._space)

    def edges_length(self) -> int:
        self._flush()
        return int(self._target.size)

    @property
    def state_length(self) -> int:
        return self._space.state_length

    @property
    def theta_dim(self):
        return self._theta_dim

    @property
    def discrete(self) -> bool:
        return self._discrete

    @property
    def theta(self):
        return None if self._theta is None else self._theta.copy()

    def states(self) -> np.ndarray:
        """``(V, d)`` int32 array; row 0 (zeros) is the starting vertex."""
        return self._space.states()

    def edges(self):
        """CSR arrays ``(indptr int64, target int32, weight float64)`` (current weights)."""
        self._flush()
        return self._indptr.copy(), self._target.copy(), self._w.copy()

    def coefficients(self):
        """``(E, p)`` coefficient matrix of parameterised edges, or None."""
        self._flush()
        return None if self._coef is None else self._coef.copy()

    def update_weights(self, theta) -> None:
        """Re-weights parameterised edges: ``weight = base + coef . theta``; no rebuild."""
        self._flush()
        if self._coef is None:
            raise ParameterError("this graph has no parameterised edges (callback rates are numbers)")
        th = np.asarray(theta, dtype=np.float64).reshape(-1)
        if th.size != self._coef.shape[1]:
            raise ParameterError(f"theta {plain(theta)!r} has length {th.size}, expected {self._coef.shape[1]}")
        if not all(map(isfinite, th.tolist())):
            raise ParameterError(f"theta {plain(theta)!r} has non-finite entries")
        w, e = _core.edge_weights(self._base, self._coef, th)  # one pass, first bad edge e
        if e >= 0:
            u = int(np.searchsorted(self._indptr, e, side="right") - 1)
            st = self._space.states()
            raise ParameterError(
                f"theta {th.tolist()!r} gives edge {st[u].tolist()} -> {st[self._target[e]].tolist()} "
                f"the rate {float(w[e])!r}; rates must be >= 0"
            )
        self._w = w
        self._theta = th
        self._invalidate()

    def __repr__(self):
        kind = "discrete" if self._discrete else "continuous"
        extra = f", theta_dim={self._theta_dim}" if self._theta_dim else ""
        return (
            f"<phasic.Graph {kind}: {self.vertices_length()} vertices, {self.edges_length()} edges, "
            f"state_length={self.state_length}{extra}>"
        )

    # ------------------------------------------------------------------ arrays
    def to_arrays(self, compact=False):
        """``(arrays, attrs)``: the graph as plain typed arrays (used by the store, pickling).

        ``compact=True`` gives the store's lossless small form (narrow integers,
        dictionary-coded rates; see :mod:`phasic.graph_arrays`); ``from_arrays`` reads both.
        """
        self._flush()
        arrays = {
            "states": self.states(),
            "edges/indptr": self._indptr,
            "edges/target": self._target,
            "edges/weight": self._base if self._coef is not None else self._w,
        }
        if self._coef is not None:
            arrays["edges/coef"] = self._coef
        attrs = {"discrete": self._discrete, "theta_dim": int(self._theta_dim or 0), "state_length": self.state_length}
        if compact:
            from phasic.graph_arrays import pack

            arrays = pack(arrays)
        return arrays, attrs

    @classmethod
    def from_arrays(cls, arrays, attrs, checked=False):
        """Inverse of :meth:`to_arrays` (plain or compact arrays).

        Parameters
        ----------
        arrays, attrs : dict
            As :meth:`to_arrays` gives them (or the store reads them).
        checked : bool
            The arrays were already validated by
            :func:`phasic.graph_arrays.check_graph_arrays` (the store does so on every read)
            and are not checked again. Otherwise they are: arrays from outside must not let
            the core read out of bounds or compute with impossible weights.

        Raises
        ------
        GraphConstructionError
            Naming the first thing that makes the arrays no graph.
        """
        from phasic.graph_arrays import check_graph_arrays, unpack

        plain = unpack(arrays) if checked else check_graph_arrays(arrays, attrs)
        g = cls.__new__(cls)
        g._discrete = bool(attrs.get("discrete", False))
        g._hierarchical = False
        g._theta = None
        g._coo = None
        g._trace = None
        g._callback_name = attrs.get("callback")
        g._space = _core.StateSpace.from_states(plain["states"])
        coef = plain.get("edges/coef")
        if coef is not None:
            coef = np.ascontiguousarray(coef, np.float64)
        # weights of parameterised edges stay those stored (the constant part): computations
        # refuse such a graph until update_weights sets them
        weight = plain["edges/weight"]
        g._set_csr(
            plain["edges/indptr"], plain["edges/target"], weight, coef, own=weight is not arrays.get("edges/weight")
        )
        g._theta_dim = None if coef is None else coef.shape[1]
        return g

    def __reduce__(self):
        arrays, attrs = self.to_arrays()
        return (_from_state, (arrays, attrs, self._theta, self._hierarchical))

    def copy(self) -> Graph:
        return _from_state(*self.__reduce__()[1])

    # ------------------------------------------------------------------ computations
    # each needs the weights: a parameterised graph refuses them before update_weights
    from phasic import distributions as _d
    from phasic import moments as _m
    from phasic import rewards as _r

    covariance = _requires_weights(_m.covariance)
    expectation = _requires_weights(_m.expectation)
    expected_sojourn_time = _requires_weights(_m.expected_sojourn_time)
    moments = _requires_weights(_m.moments)
    variance = _requires_weights(_m.variance)
    as_matrices = _requires_weights(_d.as_matrices)
    cdf = _requires_weights(_d.cdf)
    pdf = _requires_weights(_d.pdf)
    pmf = _requires_weights(_d.pmf)
    sample = _requires_weights(_d.sample)
    transient_vertices = _requires_weights(_d.transient_vertices)
    reward_transform = _requires_weights(_r.reward_transform)
    del _d, _m, _r

    def plot(self, ax=None, **kwargs):
        """Draws a small graph with matplotlib; see :func:`phasic.plot.plot_graph`."""
        from phasic.plot import plot_graph

        return plot_graph(self, ax=ax, **kwargs)

    def pmf_from_graph(self, discrete=None, **kwargs):
        """JAX function of ``(theta, times)``; see :func:`phasic.pmf_from_graph`."""
        from phasic.jax._ops import pmf_from_graph

        return pmf_from_graph(self, discrete=discrete, **kwargs)


def _from_state(arrays, attrs, theta, hierarchical):
    g = Graph.from_arrays(arrays, attrs)
    g._hierarchical = hierarchical
    if theta is not None:
        g.update_weights(theta)
    return g
