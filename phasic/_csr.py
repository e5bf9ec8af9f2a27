"""The low-level graph: validated CSR arrays and what needs only them.

:class:`CSR` is the one object a :class:`phasic.Graph` owns (as tskit's Python classes own
their ``_ll_`` objects): the state table (``_core.StateSpace``), the edges in compressed
sparse row form, the parameterisation (``base + coef . theta``) and what is derived from
them and dropped when they change (the elimination trace, tape values, out-rates, the
compiled replay plan). The modules that compute on a graph (traces, moments, distributions,
rewards, batch, jax) take a ``CSR``; :func:`of` gives the one of a ``Graph``.

Besides the class: out-rates, reachability, closed classes and reward vectors
(:func:`out_rates`, :func:`reachable`, :func:`closed_classes`, :func:`reward_vector`), and the
graph's array form for the store and pickles.

Array form
----------
A graph is stored as plain typed datasets that any HDF5 tool reads. Two lossless
encodings make the files small without a compression filter (filters would force
h5py onto the read path, which costs milliseconds per hit):

* integers are stored in the narrowest type that holds them: ``states`` (lineage counts
  are small), ``edges/indptr`` and ``edges/target``;
* edge rates and parameter coefficient rows are dictionary-coded when that is smaller:
  ``edges/weight`` becomes ``edges/weight_table`` (the distinct float64 values, compared
  bit for bit) plus ``edges/weight_code`` (uint8/uint16 index per edge), and
  ``edges/coef`` (E, p) becomes ``edges/coef_table`` (distinct rows) plus
  ``edges/coef_code``. A state-space model has few distinct rates (they are functions
  of small lineage counts), so this is where most of the size goes.

``unpack`` accepts both forms and returns the plain names with the engine's dtypes.
"""

from __future__ import annotations

from math import isfinite

import numpy as np

from phasic import _core
from phasic.callbacks import plain
from phasic.exceptions import GraphConstructionError, ParameterError

_INT_TYPES = (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.int64)


def narrow_int(a):
    """``a`` in the smallest integer type that holds all its values (exactly)."""
    a = np.asarray(a)
    if a.size == 0:
        return a.astype(np.uint8)
    lo, hi = int(a.min()), int(a.max())
    for dt in _INT_TYPES:
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return a.astype(dt)
    return a


def _dictionary(values):
    """``(table, code)`` for a (E,) or (E, p) float64 array, or None when it does not pay.

    Distinct values are found on the raw bytes, so -0.0, NaN payloads and every bit of
    each float survive the round trip.
    """
    values = np.ascontiguousarray(values, np.float64)
    E = values.shape[0]
    if E < 64:
        return None
    bits = values.reshape(E, -1).view(np.uint64)  # exact: compare raw bit patterns
    order = np.lexsort(bits.T[::-1]) if bits.shape[1] > 1 else np.argsort(bits[:, 0], kind="stable")
    ordered = bits[order]
    starts = np.concatenate(([True], np.any(ordered[1:] != ordered[:-1], axis=1)))
    u = int(starts.sum())
    code = np.empty(E, np.int64)
    code[order] = np.cumsum(starts) - 1
    first = order[starts]
    ctype = np.uint8 if u <= 1 << 8 else np.uint16 if u <= 1 << 16 else None
    if ctype is None:
        return None
    table = values[first]
    if table.nbytes + E * np.dtype(ctype).itemsize >= values.nbytes:
        return None
    return table, code.astype(ctype)


def pack(arrays):
    """The compact form of ``Graph.to_arrays()``'s arrays (see the module docstring)."""
    out = dict(arrays)
    out["states"] = narrow_int(arrays["states"])
    out["edges/indptr"] = narrow_int(arrays["edges/indptr"])
    out["edges/target"] = narrow_int(arrays["edges/target"])
    for name in ("edges/weight", "edges/coef"):
        if name in arrays:
            coded = _dictionary(arrays[name])
            if coded is not None:
                del out[name]
                out[name + "_table"], out[name + "_code"] = coded
    return out


def unpack(arrays):
    """Plain arrays (``states`` int32, ``edges/indptr`` int64, ``edges/target`` int32,
    ``edges/weight`` and ``edges/coef`` float64) from either form."""
    out = dict(arrays)
    for name in ("edges/weight", "edges/coef"):
        table = out.pop(name + "_table", None)
        code = out.pop(name + "_code", None)
        if table is None and code is None:
            continue
        if table is None or code is None or name in out:
            raise ValueError(f"graph arrays hold a broken dictionary coding of {name!r}")
        code = np.asarray(code)
        if code.ndim != 1 or code.dtype.kind != "u" or (code.size and int(code.max()) >= len(table)):
            raise ValueError(f"{name}_code does not index {name}_table")
        # np.take rather than table[code]: the faster gather (docs/performance.md)
        out[name] = np.take(np.asarray(table, np.float64), code, axis=0)
    out["states"] = np.ascontiguousarray(out["states"], np.int32)
    out["edges/indptr"] = np.ascontiguousarray(out["edges/indptr"], np.int64)
    out["edges/target"] = np.ascontiguousarray(out["edges/target"], np.int32)
    return out


#: Dataset names of a graph entry (plain and compact forms).
GRAPH_NAMES = (
    "states",
    "edges/indptr",
    "edges/target",
    "edges/weight",
    "edges/coef",
    "edges/weight_table",
    "edges/weight_code",
    "edges/coef_table",
    "edges/coef_code",
)
#: Attributes ``Graph.to_arrays`` writes.
GRAPH_ATTRS = ("discrete", "theta_dim", "state_length")


def graph_problem(arrays, attrs):
    """Why ``(arrays, attrs)`` read from the store cannot be a graph (None when they can).

    Entries that hold neither a graph dataset (:data:`GRAPH_NAMES`) nor a graph attribute
    (:data:`GRAPH_ATTRS`) are other data kept under ``graphs`` and pass.  The checks are
    those of ``Graph.from_arrays`` (CSR offsets, targets in ``[1, V)``, finite rates
    ``>= 0``, no self-loops, finite coefficients: :func:`check_graph_arrays`), done without
    building the graph.
    """
    if not any(n in arrays for n in GRAPH_NAMES) and not any(a in attrs for a in GRAPH_ATTRS):
        return None
    try:
        check_graph_arrays(arrays, attrs)
    except ValueError as exc:
        return f"invalid graph arrays: {exc}"
    return None


def _int_array(arrays, name, ndim):
    a = np.asarray(arrays[name])
    if a.dtype.kind not in "iu" or a.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-d integer array, got {a.dtype} of shape {a.shape}")
    if a.size and (int(a.min()) < -(2**31) or int(a.max()) >= 2**31):
        raise ValueError(f"{name} holds values outside int32")
    return a


def check_graph_arrays(arrays, attrs):
    """The plain arrays (:func:`unpack`) of ``(arrays, attrs)`` once checked to be a valid
    graph: the one check of graph arrays from outside (the store, pickles, users), used by
    :func:`graph_problem` and ``Graph.from_arrays``. It keeps the core from reading out of
    bounds or computing with impossible weights. The checks are vectorised and the offender
    is located only on failure (their cost: docs/performance.md).

    Raises
    ------
    GraphConstructionError
        (a ValueError) naming the first thing that makes the arrays not a valid graph.
    """
    try:
        return _check_graph_arrays(arrays, attrs)
    except GraphConstructionError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        raise GraphConstructionError(str(exc)) from None


def _check_graph_arrays(arrays, attrs):
    for name in ("states", "edges/indptr"):
        if name not in arrays:
            raise ValueError(f"graph arrays need {name!r}, got {sorted(arrays)!r}")
    for name in ("edges/target",):
        if name not in arrays:
            raise ValueError(f"graph arrays need {name!r}")
    for base in ("edges/weight", "edges/coef"):
        for suffix in ("_table", "_code"):
            a = arrays.get(base + suffix)
            if a is not None and (np.asarray(a).dtype.kind != ("u" if suffix == "_code" else "f")):
                raise ValueError(f"{base}{suffix} has dtype {np.asarray(a).dtype}")
    table = arrays.get("edges/weight_table")
    if table is not None and np.ndim(table) != 1:
        raise ValueError("edges/weight_table must be 1-d")
    table = arrays.get("edges/coef_table")
    if table is not None and np.ndim(table) != 2:
        raise ValueError("edges/coef_table must be 2-d")
    if "edges/weight" not in arrays and "edges/weight_table" not in arrays:
        raise ValueError("graph arrays need 'edges/weight' (or its table and code)")
    plain = unpack(arrays)
    states = _int_array(arrays, "states", 2)
    _int_array(arrays, "edges/indptr", 1)
    _int_array(arrays, "edges/target", 1)
    V, d = states.shape
    if V < 1 or d < 1:
        raise ValueError(f"states must have at least one vertex and one column, got shape {states.shape}")
    indptr, target = plain["edges/indptr"], plain["edges/target"]  # int64, int32 (in range)
    weight = np.asarray(plain["edges/weight"])
    if weight.dtype.kind != "f" or weight.ndim != 1:
        raise ValueError(f"edges/weight must be a 1-d float array, got {weight.dtype} of shape {weight.shape}")
    if indptr.shape != (V + 1,) or indptr[0] != 0 or np.diff(indptr).min() < 0:
        raise ValueError(
            f"edges/indptr must be {V + 1} non-decreasing offsets from 0 (one per vertex, "
            f"then the end), got shape {indptr.shape}"
        )
    E = int(indptr[-1])
    if target.shape != (E,) or weight.shape != (E,):
        raise ValueError(
            f"edges/target and edges/weight must hold {E} entries (indptr's end), got {target.shape} and {weight.shape}"
        )
    coef = plain.get("edges/coef")
    if E:
        if target.min() < 1 or target.max() >= V:
            e = int(np.flatnonzero((target < 1) | (target >= V))[0])
            raise ValueError(
                f"edge {e} targets vertex {int(target[e])}, not in [1, {V}) (vertex 0 is the start and has no in-edges)"
            )
        if not (weight.min() >= 0 and np.isfinite(weight.max())):
            e = int(np.flatnonzero(~(np.isfinite(weight) & (weight >= 0)))[0])
            raise ValueError(f"edge {e} has weight {float(weight[e])!r}; weights must be finite and >= 0")
        src = np.repeat(np.arange(V, dtype=np.int32), np.diff(indptr))
        if np.any(src == target):
            e = int(np.flatnonzero(src == target)[0])
            raise ValueError(f"edge {e} is a self-loop on vertex {int(src[e])}")
    if coef is not None:
        coef = np.asarray(coef)
        if coef.dtype.kind != "f" or coef.ndim != 2 or coef.shape[0] != E or not np.isfinite(coef).all():
            raise ValueError(
                f"edges/coef must be a finite ({E}, p) float array, got {coef.dtype} of shape {coef.shape}"
            )
    discrete = attrs.get("discrete", False)
    if not isinstance(discrete, (bool, np.bool_)):
        raise ValueError(f"attribute discrete={discrete!r} is not a bool")
    theta_dim = attrs.get("theta_dim")
    if theta_dim is not None:
        if (
            isinstance(theta_dim, bool)
            or not isinstance(theta_dim, (int, np.integer))
            or theta_dim < 0
            or coef is not None
            and int(theta_dim) != coef.shape[1]
        ):
            raise ValueError(
                f"attribute theta_dim={theta_dim!r} does not match the coefficients "
                f"({None if coef is None else coef.shape[1]})"
            )
    state_length = attrs.get("state_length")
    if state_length is not None and (isinstance(state_length, bool) or state_length != d):
        raise ValueError(f"attribute state_length={state_length!r} does not match the states' {d} columns")
    return plain


# ---------------------------------------------------------------------- the low-level graph
#: ``Graph(max_vertices=)``'s default
DEFAULT_MAX_VERTICES = 50_000_000
#: vertices are indexed by int32 (edge targets), so no graph has more
MAX_VERTICES_LIMIT = 2**31 - 1
#: the longest state vector (every vertex stores one; 4 MB each at this length)
MAX_STATE_LENGTH = 1_000_000
#: the largest theta dimension (the coefficient matrix is dense: edges x theta_dim)
MAX_THETA_DIM = 1_000_000


def nonzero_rows(coef):
    """Rows of the (E, p) `coef` with a nonzero entry (column by column for small p: NumPy
    reduces short rows slowly)."""
    if coef.shape[1] > 8:
        return np.any(coef != 0, axis=1)
    rows = np.zeros(coef.shape[0], bool)
    for j in range(coef.shape[1]):
        rows |= coef[:, j] != 0
    return rows


class CSR:
    """A graph's state table and edges, and what is derived from them.

    Attributes
    ----------
    space : phasic._core.StateSpace
        The states (row 0 is the starting vertex).
    indptr : numpy.ndarray of int64, shape (V + 1,)
        Edge offsets per source vertex (the edges of ``v`` are ``indptr[v]:indptr[v + 1]``).
    target : numpy.ndarray of int32, shape (E,)
        Edge targets.
    w : numpy.ndarray of float64, shape (E,)
        The current edge weights (rates; probabilities for a discrete graph).
    base, coef : numpy.ndarray
        Parameterised graphs: the constant part (E,) and the coefficients (E, p) of
        ``w = base + coef . theta``; ``coef`` is None for a graph of numbers.
    parameterised : bool
        Some edge has a nonzero coefficient (so ``w`` needs a theta).
    theta, theta_dim : numpy.ndarray or None, int or None
        The last theta given to :meth:`update_weights`; its length.
    discrete, hierarchical : bool
        A discrete phase-type graph; traces recorded per strongly connected component.
    callback_name : str or None
        The callback's qualified name, for messages and store entries.
    trace, val, inv, lam, plan, hierarchy_stats
        Derived and cached: the elimination trace (dropped when the edges change), the tape
        values and 1/out-rate per vertex, the out-rates (both dropped when the weights
        change), the compiled replay plan, what a hierarchical trace reused.
    coo
        Edges added by :meth:`add_edge` and not yet merged into the CSR arrays
        (:meth:`flush`).
    """

    __slots__ = (
        "space",
        "indptr",
        "target",
        "w",
        "base",
        "coef",
        "parameterised",
        "theta",
        "theta_dim",
        "discrete",
        "hierarchical",
        "callback_name",
        "trace",
        "val",
        "inv",
        "lam",
        "plan",
        "hierarchy_stats",
        "coo",
    )

    def __init__(
        self, space, indptr, target, weight, coef=None, *, discrete=False, theta_dim=None, own=False, callback_name=None
    ):
        self.space = space
        self.discrete = bool(discrete)
        self.hierarchical = False
        self.theta = None
        self.coo = None
        self.callback_name = callback_name
        self.plan = None
        self.hierarchy_stats = None
        self.set_arrays(indptr, target, weight, coef, own)
        self.theta_dim = theta_dim if coef is None else coef.shape[1]

    @classmethod
    def empty(cls, state_length, discrete=False, theta_dim=None):
        """A graph with only the starting vertex, for manual construction."""
        return cls(
            _core.StateSpace(state_length),
            np.zeros(2, np.int64),
            np.zeros(0, np.int32),
            np.zeros(0),
            None,
            discrete=discrete,
            theta_dim=theta_dim,
        )

    # ------------------------------------------------------------------ structure
    def set_arrays(self, indptr, target, weight, coef, own=False):
        """Install CSR arrays; ``own``: ``weight`` is a fresh array nobody else holds."""
        self.indptr, self.target = indptr, target
        self.coef = coef
        self.parameterised = False
        if coef is not None:
            param = nonzero_rows(coef)
            self.base = np.where(param, 0.0, weight)
            self.parameterised = bool(param.any())
        else:
            self.base = weight
        self.w = weight if own and weight.dtype == np.float64 else weight.astype(np.float64, copy=True)
        self.invalidate(structure=True)

    def invalidate(self, structure=False):
        """Drop what depends on the weights (and with ``structure``, on the edges)."""
        self.val = None
        self.inv = None
        self.lam = None
        if structure:
            self.trace = None

    def flush(self):
        """Merge edges added by :meth:`add_edge` into the CSR arrays (stable by source)."""
        if self.coo is None:
            return
        src, tgt, w, coefs = self.coo
        self.coo = None
        V = len(self.space)
        src = np.asarray(src, np.int64)
        order = np.argsort(src, kind="stable")
        indptr = np.zeros(V + 1, np.int64)
        np.cumsum(np.bincount(src, minlength=V), out=indptr[1:])
        target = np.asarray(tgt, np.int32)[order]
        weight = np.asarray(w, np.float64)[order]
        coef = None
        if self.theta_dim:
            coef = np.zeros((len(tgt), self.theta_dim))
            for i, c in enumerate(coefs):
                if c is not None:
                    coef[i] = c
            coef = coef[order]
        theta = self.theta
        self.set_arrays(indptr, target, weight, coef)
        if theta is not None:
            self.update_weights(theta)

    def _edit(self):
        if self.coo is None:
            n = np.diff(self.indptr)
            src = np.repeat(np.arange(len(n)), n).tolist()
            coefs = [None] * len(self.target) if self.coef is None else list(self.coef)
            self.coo = (src, self.target.tolist(), self.w.tolist(), coefs)
        return self.coo

    def add_edge(self, source, target, weight, coefficients=None):
        """Add ``source -> target`` with a weight or a coefficient vector (checked first)."""
        V = len(self.space)
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
            if self.theta_dim is None:
                self.theta_dim = c.size
            elif c.size != self.theta_dim:
                raise GraphConstructionError(
                    f"{c.size} coefficients {plain(coefficients)!r} given, theta has dimension {self.theta_dim}"
                )
            coefficients = c
        src, tgt, ws, coefs = self._edit()
        src.append(int(source))
        tgt.append(int(target))
        ws.append(w)
        coefs.append(coefficients)
        self.invalidate(structure=True)

    def require_weights(self, what):
        """Raise unless the weights are known: a graph with coefficient edges needs
        :meth:`update_weights` first (its rates are ``coef . theta``)."""
        self.flush()
        if self.theta is None and self.parameterised:
            raise ParameterError(
                f"Graph.{what}() needs the edge weights, but this graph has parameterised edges "
                f"(theta_dim={self.theta_dim}) and no theta yet: call graph.update_weights(theta) "
                f"first"
            )

    def update_weights(self, theta):
        """``w = base + coef . theta`` (checked: finite theta of the right length, rates >= 0)."""
        self.flush()
        if self.coef is None:
            raise ParameterError("this graph has no parameterised edges (callback rates are numbers)")
        th = np.asarray(theta, dtype=np.float64).reshape(-1)
        if th.size != self.coef.shape[1]:
            raise ParameterError(f"theta {plain(theta)!r} has length {th.size}, expected {self.coef.shape[1]}")
        if not all(map(isfinite, th.tolist())):
            raise ParameterError(f"theta {plain(theta)!r} has non-finite entries")
        self.w = self.weights_for(th)
        self.theta = th
        self.invalidate()

    def weights_for(self, th):
        """``base + coef . th`` for a checked float64 `th`, without installing it; a
        ParameterError names the first edge given a negative rate."""
        w, e = _core.edge_weights(self.base, self.coef, th)  # one pass, first bad edge e
        if e >= 0:
            u = int(np.searchsorted(self.indptr, e, side="right") - 1)
            st = self.space.states()
            raise ParameterError(
                f"theta {th.tolist()!r} gives edge {st[u].tolist()} -> {st[self.target[e]].tolist()} "
                f"the rate {float(w[e])!r}; rates must be >= 0"
            )
        return w

    def vertices_length(self):
        return len(self.space)

    def edges_length(self):
        self.flush()
        return int(self.target.size)

    @property
    def state_length(self):
        return self.space.state_length

    def states(self):
        """``(V, d)`` int32 array; row 0 (zeros) is the starting vertex."""
        return self.space.states()

    # ------------------------------------------------------------------ array form
    def to_arrays(self, compact=False):
        """``(arrays, attrs)``: the graph as plain typed arrays (``compact``: :func:`pack`)."""
        self.flush()
        arrays = {
            "states": self.states(),
            "edges/indptr": self.indptr,
            "edges/target": self.target,
            "edges/weight": self.base if self.coef is not None else self.w,
        }
        if self.coef is not None:
            arrays["edges/coef"] = self.coef
        attrs = {"discrete": self.discrete, "theta_dim": int(self.theta_dim or 0), "state_length": self.state_length}
        if compact:
            arrays = pack(arrays)
        return arrays, attrs

    @classmethod
    def from_arrays(cls, arrays, attrs, checked=False):
        """Inverse of :meth:`to_arrays`; ``checked``: the arrays already passed
        :func:`check_graph_arrays` (the store checks every read), else they are checked here."""
        plain_arrays = unpack(arrays) if checked else check_graph_arrays(arrays, attrs)
        coef = plain_arrays.get("edges/coef")
        if coef is not None:
            coef = np.ascontiguousarray(coef, np.float64)
        # weights of parameterised edges stay those stored (the constant part): computations
        # refuse such a graph until update_weights sets them
        weight = plain_arrays["edges/weight"]
        return cls(
            _core.StateSpace.from_states(plain_arrays["states"]),
            plain_arrays["edges/indptr"],
            plain_arrays["edges/target"],
            weight,
            coef,
            discrete=bool(attrs.get("discrete", False)),
            own=weight is not arrays.get("edges/weight"),
            callback_name=attrs.get("callback"),
        )

    def copy(self):
        """An independent copy with the same weights (no derived values)."""
        c = CSR.from_arrays(*self.to_arrays(), checked=True)
        c.hierarchical = self.hierarchical
        c.callback_name = self.callback_name
        if self.theta is not None:
            c.update_weights(self.theta)
        return c


def of(graph):
    """The :class:`CSR` of a :class:`phasic.Graph` (a ``CSR`` is returned as it is)."""
    ll = getattr(graph, "_ll", graph)
    if not isinstance(ll, CSR):
        raise TypeError(f"expected a phasic.Graph, got {type(graph).__name__} {graph!r:.80}")
    return ll


# ---------------------------------------------------------------------- what needs only the arrays
def out_rates(g):
    """Total out-weight per vertex, once per weights; checks what makes no distribution:
    initial probabilities summing over 1, discrete out-probabilities summing over 1, and a
    reachable state that has out-edges but total weight 0 (it would never be left)."""
    g.flush()
    if g.lam is None:
        n = np.diff(g.indptr)
        src = np.repeat(np.arange(n.size), n)
        lam = np.bincount(src, weights=g.w, minlength=n.size).astype(np.float64)
        if lam.size and lam[0] > 1 + 1e-12:
            raise ParameterError(
                f"the initial probabilities (the start vertex's out-weights) sum to {float(lam[0])!r} > 1"
            )
        if g.discrete and np.any(lam[1:] > 1 + 1e-12):
            v = int(np.argmax(lam[1:])) + 1
            raise ParameterError(
                f"discrete graph: out-probabilities of state {g.states()[v].tolist()} sum to {float(lam[v])!r} > 1"
            )
        stuck = (n > 0) & (lam == 0)
        stuck[:1] = False
        if stuck.any():
            hit = np.flatnonzero(stuck & reachable(g))
            if hit.size:
                raise ParameterError(
                    f"state {g.states()[hit[0]].tolist()} is reached but its out-weights are all 0: it is never left"
                )
        g.lam = lam
    return g.lam


def reachable(g):
    """Vertices reachable from the start through edges of positive weight (bool, per vertex)."""
    indptr, target, w = g.indptr, g.target, g.w
    seen = np.zeros(indptr.size - 1, bool)
    seen[0] = True
    frontier = np.zeros(1, np.int64)
    while frontier.size:
        lo, cnt = indptr[frontier], indptr[frontier + 1] - indptr[frontier]
        idx = np.repeat(lo - np.cumsum(cnt) + cnt, cnt) + np.arange(int(cnt.sum()))
        nxt = target[idx[w[idx] > 0]]
        nxt = np.unique(nxt[~seen[nxt]])
        seen[nxt] = True
        frontier = nxt.astype(np.int64)
    return seen


def closed_classes(indptr, target, order, ptr):
    """The strongly connected components of more than one vertex that no edge leaves.

    ``order``/``ptr`` are the components of the graph ``(indptr, target)`` as
    ``_core.scc`` gives them (component ``c`` is ``order[ptr[c]:ptr[c + 1]]``; a trace's
    components may leave out the starting vertex, whose edges are then ignored). Such a class
    is never left once entered: the time to absorption from it is infinite.

    Returns
    -------
    list of numpy.ndarray
        The members of each closed class, in component order.
    """
    V = indptr.size - 1
    sizes = np.diff(ptr)
    comp = np.full(V, -1, np.int64)
    comp[order] = np.repeat(np.arange(sizes.size), sizes)
    src = np.repeat(np.arange(V), np.diff(indptr))
    tgt = target
    if order.size < V:  # a trace's components leave out the starting vertex
        inside = (comp[src] >= 0) & (comp[tgt] >= 0)
        src, tgt = src[inside], tgt[inside]
    leaving = comp[src] != comp[tgt]
    has_exit = np.bincount(comp[src[leaving]], minlength=sizes.size) > 0
    return [order[ptr[c] : ptr[c + 1]] for c in np.flatnonzero((sizes > 1) & ~has_exit).tolist()]


def positive_subgraph(g):
    """``(indptr, target)`` of `g`'s edges of positive weight."""
    keep = g.w > 0
    V = g.vertices_length()
    src = np.repeat(np.arange(V), np.diff(g.indptr))[keep]
    indptr = np.zeros(V + 1, np.int64)
    np.cumsum(np.bincount(src, minlength=V), out=indptr[1:])
    return indptr, np.ascontiguousarray(g.target[keep], np.int32)


def reward_vector(g, rewards, name="rewards"):
    """`rewards` as a float64 copy with one finite value per vertex (all ones when None); the
    starting vertex's entry is set to 0. A ParameterError names a wrong shape or value."""
    V = g.vertices_length()
    if rewards is None:
        r = np.ones(V)
    else:
        r = np.asarray(rewards, dtype=np.float64)
        if r.ndim != 1 or r.size != V:
            raise ParameterError(f"{name} has shape {np.shape(rewards)!r}; expected one value per vertex, shape ({V},)")
        bad = np.flatnonzero(~np.isfinite(r))
        if bad.size:
            raise ParameterError(f"{name}[{bad[0]}] is {r[bad[0]]!r}; rewards must be finite")
        r = r.copy()
    r[0] = 0.0
    return r
