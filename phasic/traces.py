"""Elimination traces: recording, structure keys and the trace cache.

A trace is the elimination of a graph recorded once as a flat op program over the edge
weights (see csrc/elim.hpp). It depends only on the graph's *structure* (CSR indptr and
targets): not on states, rates or coefficients, which enter as inputs. Its key is the
sha256 of that structure, so every graph of the same shape shares one trace entry.

``hierarchical=True`` also records each cyclic strongly connected component (SCC) on its
own, keyed by the component's local structure, and composes the graph's trace from them
in topological order: components shared between graphs (common sub-models) are taken from
the store instead of being eliminated again.  Storing pays only when recording costs more
than loading: a component (or a whole-graph trace over 4 MB) is stored only if recording it
took at least twice the estimated load time (``SCC_STORE_GAIN``, ``load_estimate``).

Replay of a continuous graph's trace runs through a *replay plan* compiled from it once
(``phasic._core.ReplayPlan``, csrc/replay_plan.hpp): the same arithmetic, bit for bit,
laid out for speed. Plans live with the graph, not in the store.

A trace read from the store is checked (:func:`check_trace`: lengths, opcodes, every
operand's range, SSA order) against the graph or component it is used for before anything
replays or splices it; an entry that fails is moved to ``<root>/corrupt/`` with a warning
and recorded again. A trace that cannot be written (read-only store, full disk, the
store's directories removed underneath) gives one :class:`~phasic.exceptions.CacheWarning`
and stays in memory.
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings

import numpy as np

from phasic import _core
from phasic._csr import closed_classes, of
from phasic.exceptions import CacheWarning, GraphConstructionError, TraceError, user_stacklevel

#: Bumped when what a structure records changes (3: components re-ordered from their
#: centre, out-probabilities as w * (1/lambda)).
TRACE_FORMAT = 3
#: Components smaller than this are recorded in place rather than stored on their own:
#: an HDF5 entry costs milliseconds to read or write, recording a small component costs
#: microseconds (docs/traces.md, benchmarks/bench_traces.py).
HIERARCHICAL_MIN_SCC = 50
#: A component's trace is stored only if recording it took at least this many times the
#: estimated cost of loading it back, ``LOAD_S_FIXED + LOAD_S_PER_BYTE * bytes`` (open,
#: read and SHA-256 check of an indexed entry from the page cache; rounded up from the
#: measurements in docs/traces.md, "Per-op costs"). A dense component records about as
#: fast as it loads, so most are not worth a write; a whole graph records several times
#: slower than it loads, and is.
SCC_STORE_GAIN = 2.0
LOAD_S_FIXED = 2e-4
LOAD_S_PER_BYTE = 1.2e-9
#: A whole-graph trace up to this size is always stored by ``hierarchical=True`` (writing it
#: costs milliseconds); a larger one only if composing it took ``SCC_STORE_GAIN`` times the
#: estimated load. :func:`ensure_trace` (explicit precomputation) always stores.
GRAPH_STORE_ALWAYS_BYTES = 4 << 20
#: Operand and program fields are int32 in memory and on disk (loaded as views, no
#: conversion); the per-vertex and per-SCC fields are int64 in memory, stored narrowed.
_OP_FIELDS = ("a", "b", "c", "xi", "xj", "xs", "xinit")
_INT_FIELDS = _OP_FIELDS + ("order", "scc_ptr", "seg_ptr", "xseg_ptr")


def _structure_key(kind: str, indptr, target) -> str:
    h = hashlib.sha256(f"phasic-trace-v{TRACE_FORMAT}:{kind}:".encode())
    h.update(np.ascontiguousarray(indptr, np.int64).tobytes())
    h.update(b"|")
    h.update(np.ascontiguousarray(target, np.int64).tobytes())
    return h.hexdigest()


def trace_key(g) -> str:
    """Key of `g`'s trace: the hash of its structure (edges), not of its weights."""
    g = of(g)
    g.flush()
    return _structure_key("graph", g.indptr, g.target)


def _store(store=None):
    if store is not None:
        return store
    from phasic.store import Store

    return Store()


def _to_entry(tr: dict):
    arrays = {"code": tr["code"]}
    for f in _INT_FIELDS:
        v = tr[f]
        if v.dtype != np.int32 and (v.size == 0 or (v.max() < 2**31 and v.min() >= -(2**31))):
            v = v.astype(np.int32)
        arrays[f] = v
    attrs = {"trace_format": TRACE_FORMAT, "n_ops": int(tr["code"].size), "n_program": int(tr["xi"].size)}
    return arrays, attrs


_DTYPES = {"code": np.uint8, **{f: np.int32 if f in _OP_FIELDS else np.int64 for f in _INT_FIELDS}}


def _from_entry(arrays, attrs) -> dict:
    """The trace held by a store entry, in the recorder's dtypes. Raises TraceError for a
    missing field, another format, or an array that is not 1-D integers fitting the dtype
    (narrowing must not wrap a value into range)."""
    fmt = attrs.get("trace_format", -1)
    if isinstance(fmt, bool) or not isinstance(fmt, (int, np.integer)) or int(fmt) != TRACE_FORMAT:
        raise TraceError(f"trace entry has format {fmt!r}, expected {TRACE_FORMAT}")
    tr = {}
    for f, dt in _DTYPES.items():
        if f not in arrays:
            raise TraceError(f"trace entry lacks field {f!r}")
        v = np.asarray(arrays[f])
        if v.ndim != 1 or v.dtype.kind not in "iu":
            raise TraceError(f"trace field {f!r} has shape {v.shape} and dtype {v.dtype}; expected 1-D integers")
        if v.dtype != dt and v.size:
            info = np.iinfo(dt)
            lo, hi = int(v.min()), int(v.max())
            if lo < info.min or hi > info.max:
                bad = lo if lo < info.min else hi
                raise TraceError(f"trace field {f!r} holds {bad}, which does not fit in {np.dtype(dt).name}")
        tr[f] = np.ascontiguousarray(v, dt)
    return tr


def check_trace(tr, n_vertices: int, n_edges: int, local: bool = False):
    """Checks that trace `tr` can be replayed on a graph of `n_vertices` vertices and
    `n_edges` edges without touching memory out of range: dtypes and lengths; every opcode
    known; every operand an earlier op (SSA) or, for a weight, an edge; every program entry
    a vertex and a tape value; ``xinit`` one tape value (or -1) per vertex; ``order`` a
    permutation of the vertices 1..V-1 and the segment pointers non-decreasing from 0 to the
    number of vertices, ops and updates. One linear pass in the core (csrc/elim.hpp
    ``check_trace``, ``check_layout``); ``local``: `tr` is one component's own trace
    (:func:`local_structure`), whose program never reads its dummy vertex 0.

    Returns
    -------
    dict
        `tr` itself (``local``), else `tr` as a ``phasic._core.CheckedTrace``: its arrays
        read-only, and the core's replay entry points skip their per-call checks for it.

    Raises
    ------
    TraceError
        Naming the first bad field, index and value.
    """
    for f, dt in _DTYPES.items():
        v = tr.get(f) if isinstance(tr, dict) else None
        if not isinstance(v, np.ndarray) or v.dtype != dt or v.ndim != 1 or not v.flags.c_contiguous:
            what = "missing" if v is None else f"{type(v).__name__} {getattr(v, 'dtype', '')} {np.shape(v)}"
            raise TraceError(f"trace field {f!r} is {what}; expected a contiguous 1-D {np.dtype(dt).name} array")
    V = int(n_vertices)
    if not local:
        return _core.checked_trace(tr, V, int(n_edges))
    problem = _core.trace_problem(tr, V, int(n_edges), True, True)
    if problem:
        raise TraceError(f"trace does not fit a graph of {V} vertices and {int(n_edges)} edges: {problem}")
    return tr


def _load_checked(store, key, n_vertices, n_edges, local=False):
    """The stored trace `key`, checked (:func:`check_trace`) against the sizes it will be
    used with; None when missing, or when bad: the entry is then quarantined (moved to
    ``<root>/corrupt/`` with a warning, as for a failed checksum) and the caller records
    the trace again."""
    path = store.path("traces", key)
    try:
        # stat before the read: should a writer replace the file meanwhile, the quarantine
        # sees another inode and puts the new file back
        before = os.stat(path)
    except OSError:
        return None
    found = store.get("traces", key)
    if found is None:
        return None
    try:
        tr = check_trace(_from_entry(*found), n_vertices, n_edges, local)
    except TraceError as exc:
        store._quarantine("traces", key, path, before, f"the trace fails its check: {exc}")
        return None
    return tr


def load_trace(key: str, store=None, graph=None):
    """The stored trace with `key`, or None. With `graph`, the trace is checked against it
    (:func:`check_trace`), and a bad entry is quarantined (with a warning) and None
    returned."""
    st = _store(store)
    if graph is not None:
        graph = of(graph)
        graph.flush()
        return _load_checked(st, key, graph.vertices_length(), int(graph.target.size))
    found = st.get("traces", key)
    if found is None:
        return None
    try:
        return _from_entry(*found)
    except TraceError:
        return None


class _Writer:
    """Stores the traces of one computation. The first write that fails (read-only store,
    full disk, directories removed by a concurrent clear) warns once with a CacheWarning
    naming the store and the cause, and turns the writer off: the traces stay in memory."""

    def __init__(self, store):
        self.store, self.failed = store, False

    def put(self, key, arrays, attrs) -> bool:
        if self.failed:
            return False
        try:
            self.store.put("traces", key, arrays, attrs)
            return True
        except OSError as exc:  # StoreError included
            self.failed = True
            _warn_unstored(self.store, exc)
            return False


def _warn_unstored(store, exc):
    warnings.warn(
        f"phasic: an elimination trace was computed but not stored in {store.root}: {exc}; it is "
        f"kept in memory for this graph (another process or a later run records it again)",
        CacheWarning,
        stacklevel=user_stacklevel(),
    )


def trace_entry_path(g, store=None):
    """Where `g`'s trace lives in the store."""
    g = of(g)
    return _store(store).path("traces", trace_key(g))


def _check_closed_classes(g, tr):
    """A cycle of states that can never be left makes every moment infinite."""
    closed = closed_classes(g.indptr, g.target, tr["order"], tr["scc_ptr"])
    if closed:
        members = closed[0]
        raise GraphConstructionError(
            f"states {g.states()[members[0]].tolist()!r} and {members.size - 1} others form a closed "
            f"class that never reaches an absorbing state; the time to absorption is infinite"
        )


def local_structure(indptr, target, verts):
    """CSR of one SCC on its own: 0 a dummy start, 1..m `verts` (in elimination order),
    then the SCC's external targets in increasing id order (absorbing here)."""
    verts = np.asarray(verts, np.int64)
    counts = indptr[verts + 1] - indptr[verts]
    starts = np.cumsum(counts) - counts  # edge ranges of verts, concatenated
    eidx = np.repeat(indptr[verts] - starts, counts) + np.arange(int(counts.sum()), dtype=np.int64)
    tg = target[eidx].astype(np.int64)
    srt = np.argsort(verts)
    pos = np.searchsorted(verts, tg, sorter=srt)
    pos_c = np.minimum(pos, verts.size - 1)
    inside = (pos < verts.size) & (verts[srt[pos_c]] == tg)
    ext = np.unique(tg[~inside])
    local = np.where(inside, srt[pos_c] + 1, verts.size + 1 + np.searchsorted(ext, tg))
    m, X = verts.size, ext.size
    lp = np.zeros(m + X + 2, np.int64)
    lp[2 : m + 2] = np.cumsum(counts)
    lp[m + 2 :] = lp[m + 1]
    return lp, local.astype(np.int32)


def load_estimate(arrays) -> float:
    """Estimated seconds to load a stored trace entry holding ``arrays``."""
    return LOAD_S_FIXED + LOAD_S_PER_BYTE * sum(a.nbytes for a in arrays.values())


def _record_hierarchical(g, store, min_size=None, writer=None):
    """Trace of `g` composed from per-SCC traces kept in the store (checked against their
    components before the splice; the composed trace is checked against `g`)."""
    writer = _Writer(store) if writer is None else writer
    min_size = HIERARCHICAL_MIN_SCC if min_size is None else int(min_size)
    order, ptr = _core.scc(g.indptr, g.target)
    sizes = np.diff(ptr)
    provided = {}
    big = np.flatnonzero((sizes > 1) & (sizes >= min_size))
    stats = {
        "components": int((sizes > 1).sum()),
        "cached_components": int(big.size),
        "reused": 0,
        "recorded": 0,
        "stored": 0,
    }
    for k in big.tolist():
        lp, lt = local_structure(g.indptr, g.target, order[ptr[k] : ptr[k + 1]])
        key = _structure_key("scc", lp, lt)
        local = _load_checked(store, key, lp.size - 1, lt.size, local=True)
        if local is None:
            t0 = time.perf_counter()
            local = _core.record_trace(lp, lt, None, True)
            spent = time.perf_counter() - t0
            arrays, attrs = _to_entry(local)
            stats["recorded"] += 1
            if spent >= SCC_STORE_GAIN * load_estimate(arrays):
                attrs["scope"] = "scc"
                stats["stored"] += writer.put(key, arrays, attrs)
        else:
            stats["reused"] += 1
        provided[k] = local
    tr = _core.record_trace(g.indptr, g.target, provided)
    if provided:
        tr = check_trace(tr, g.vertices_length(), g.target.size)
    g.hierarchy_stats = stats
    return tr


def graph_trace(g, store=None, _writer=None):
    """The elimination trace of `g`'s structure.

    Plain graphs record it in memory on first use; ``hierarchical=True`` graphs load it from
    the store (or compose it from stored per-SCC traces) and store what they record, unless
    it is large and was cheaper to record than to load (see GRAPH_STORE_ALWAYS_BYTES).
    ``_writer``: the :class:`_Writer` to store with (:func:`ensure_trace` reads whether it
    failed).
    """
    g = of(g)
    g.flush()
    if g.trace is None:
        if g.hierarchical:
            st = _store(store)
            key = trace_key(g)
            tr = _load_checked(st, key, g.vertices_length(), g.target.size)
            if tr is None:
                writer = _Writer(st) if _writer is None else _writer
                t0 = time.perf_counter()
                tr = _record_hierarchical(g, st, writer=writer)
                spent = time.perf_counter() - t0
                _check_closed_classes(g, tr)
                arrays, attrs = _to_entry(tr)
                nbytes = sum(a.nbytes for a in arrays.values())
                keep = nbytes <= GRAPH_STORE_ALWAYS_BYTES or spent >= SCC_STORE_GAIN * load_estimate(arrays)
                g.hierarchy_stats["graph_stored"] = keep
                if keep:
                    attrs["scope"] = "graph"
                    g.hierarchy_stats["graph_stored"] = writer.put(key, arrays, attrs)
                g.hierarchy_stats["write_failed"] = writer.failed
        else:
            tr = _core.record_trace(g.indptr, g.target)
        _check_closed_classes(g, tr)
        g.trace = tr
    return g.trace


def attach_trace(g, store=None) -> bool:
    """Gives `g` its stored trace (if the store has a valid one): later moments replay it
    instead of recording the elimination. Returns whether a trace was attached."""
    g = of(g)
    g.flush()
    tr = _load_checked(_store(store), trace_key(g), g.vertices_length(), g.target.size)
    if tr is None:
        return False
    _check_closed_classes(g, tr)
    g.trace = tr
    g.val = None
    return True


def ensure_trace(g, store=None) -> str:
    """Records `g`'s trace if the store lacks it, stores it, and returns its key. A store
    that cannot be written gives a CacheWarning; the trace stays with `g` (in memory)."""
    g = of(g)
    st = _store(store)
    key = trace_key(g)
    if not st.contains("traces", key):
        writer = _Writer(st)
        tr = graph_trace(g, st, writer)
        if writer.failed:
            return key  # graph_trace tried to store it just now, and warned
        arrays, attrs = _to_entry(tr)
        attrs["scope"] = "graph"
        try:
            st.get_or_create("traces", key, lambda: (arrays, attrs))
        except OSError as exc:  # StoreError included
            _warn_unstored(st, exc)
    return key
