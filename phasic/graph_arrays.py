"""Compact, lossless array form of a graph for the store (`pack`) and its inverse (`unpack`).

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

import numpy as np

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
    from phasic.exceptions import GraphConstructionError

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
