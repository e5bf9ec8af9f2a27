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
    bits = values.reshape(E, -1).view(np.uint64)      # exact: compare raw bit patterns
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
        out[name] = np.asarray(table, np.float64)[code]
    out["states"] = np.ascontiguousarray(out["states"], np.int32)
    out["edges/indptr"] = np.ascontiguousarray(out["edges/indptr"], np.int64)
    out["edges/target"] = np.ascontiguousarray(out["edges/target"], np.int32)
    return out
