"""Canonical, type-tagged encoding of values for :mod:`phasic.keys`, and the key hash.

:func:`encode_value` turns a parameter value into nested lists whose compact, key-sorted
JSON (:func:`canonical_json`) is the value's part of a key: exact (floats by ``float.hex``,
arrays by dtype, shape and the SHA-256 of their bytes), independent of dict and set
order and of the hash seed, and tagged with the type so ``1``, ``1.0`` and ``True``
differ.  :func:`_value_text` writes the same text for plain data without building the
lists (the hot path of a cache hit).  Functions inside values are keyed by their
normalised source through :func:`phasic.keys.callback_material`.
"""

from __future__ import annotations

import functools
import numbers
import sys
import types

import numpy as np  # a hard dependency, already imported by phasic

from phasic.exceptions import UnhashableError
from phasic.keys._source import _dumps, _jstr

__all__ = ["sha256", "encode_value", "canonical_json"]


def _named_only(value):
    """Modules, builtins, classes and loggers are recorded by name only."""
    if isinstance(value, (type, types.ModuleType, types.BuiltinFunctionType)):
        return True
    logging = sys.modules.get("logging")  # a Logger exists only if logging was imported
    return logging is not None and isinstance(value, logging.Logger)


#: Bytes hashed with the built-in SHA-256 before :mod:`hashlib` is imported anyway.
BUILTIN_HASH_BUDGET = 1 << 20
_BUILTIN_SHA256 = []
_builtin_hashed = [0]


def sha256(data=b"", size_hint=0):
    """A SHA-256 hash object (same digests as :func:`hashlib.sha256`).

    Importing :mod:`hashlib` loads OpenSSL, which in a fresh process costs
    more than a whole cache hit of a small graph (docs/performance.md).  Until
    hashlib is imported (by anyone), this uses the interpreter's built-in
    SHA-256, which loads at once but hashes several times slower; once
    :data:`BUILTIN_HASH_BUDGET` bytes (about the import's cost in slow
    hashing) have gone through it, or a single input would exceed what is left
    of that budget, it imports hashlib (ski-rental: never more than twice the
    better of the two choices).

    Parameters
    ----------
    data : bytes-like, optional
        First data to hash.
    size_hint : int
        How many more bytes will be hashed with ``update``.

    Returns
    -------
    hash object
        With ``update``, ``digest`` and ``hexdigest``.
    """
    hashlib = sys.modules.get("hashlib")
    if hashlib is None:
        nbytes = size_hint + len(data)
        if _builtin_hashed[0] + nbytes <= BUILTIN_HASH_BUDGET:
            if not _BUILTIN_SHA256:
                try:
                    from _sha256 import sha256 as builtin  # CPython <= 3.11
                except ImportError:
                    try:
                        from _sha2 import sha256 as builtin  # CPython >= 3.12
                    except ImportError:
                        builtin = None
                _BUILTIN_SHA256.append(builtin)
            if _BUILTIN_SHA256[0] is not None:
                _builtin_hashed[0] += nbytes
                return _BUILTIN_SHA256[0](data)
        import hashlib
    return hashlib.sha256(data)


#: ``(is_library, callback_material)``: how a function inside a value is encoded, set by
#: :mod:`phasic.keys._code` when it is imported (it imports this module, so this module
#: cannot import it back); :mod:`phasic.keys` imports both.
_FUNCTION_ENCODER = [None, None]


def register_function_encoder(is_library, callback_material):
    """Set how functions inside values are encoded (called once by :mod:`phasic.keys._code`)."""
    _FUNCTION_ENCODER[:] = [is_library, callback_material]


def _qualname(obj):
    return f"{getattr(obj, '__module__', None) or '?'}.{getattr(obj, '__qualname__', getattr(obj, '__name__', '?'))}"


def _sort_key(encoded):
    return _dumps(encoded)


def encode_value(value, *, _seen=None, _where="value"):
    """Encode a value as a JSON-compatible, type-tagged, canonical structure.

    Parameters
    ----------
    value : object
        None, bool, int, float, complex, str, bytes, tuple, list, dict, set,
        frozenset, numpy arrays and scalars, functions (by normalised source),
        ``functools.partial`` objects, and objects with ``to_dict()`` and
        ``from_dict()``.

    Returns
    -------
    list
        A nested list that :func:`canonical_json` serialises.

    Raises
    ------
    UnhashableError
        If the value (or something inside it) has an unsupported type.

    Examples
    --------
    >>> encode_value(1), encode_value(True), encode_value(0.5)
    (['int', '1'], ['bool', True], ['float', '0x1.0000000000000p-1'])
    """
    kind = type(value)  # exact-type fast paths first: they give what the general chain gives
    if kind is str:
        return ["str", value]
    if kind is int:
        return ["int", str(value)]
    if kind is float:
        return ["float", value.hex()]
    if kind is bool:
        return ["bool", value]
    if value is None:
        return ["none"]
    if _seen is None:
        _seen = {}
    if isinstance(value, bool):
        return ["bool", value]
    if isinstance(value, np.generic):
        if isinstance(value, (np.bool_, np.number)):
            return ["npscalar", value.dtype.str, value.tobytes().hex()]
        raise _unsupported(value, _where)
    if isinstance(value, int):
        return ["int", str(int(value))]
    if isinstance(value, float):
        return ["float", float(value).hex()]
    if isinstance(value, complex):
        return ["complex", value.real.hex(), value.imag.hex()]
    if isinstance(value, str):
        return ["str", value]
    if isinstance(value, (bytes, bytearray)):
        return ["bytes", bytes(value).hex()]
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufcSU":
            raise UnhashableError(
                f"cannot key {_where}: numpy array with dtype {value.dtype!r} is not supported; "
                "use a numeric, bool or string array"
            )
        arr = np.asarray(value, order="C")  # (ascontiguousarray would make 0-d arrays 1-d)
        arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        data = arr.tobytes()
        return ["ndarray", arr.dtype.str, list(arr.shape), sha256(data).hexdigest()]
    if isinstance(value, (tuple, list)):
        marker = id(value)
        if marker in _seen:
            raise UnhashableError(f"cannot key {_where}: it contains itself (a recursive {type(value).__name__})")
        _seen[marker] = True
        try:
            items = [
                ["int", str(v)]
                if type(v) is int
                else ["float", v.hex()]
                if type(v) is float
                else encode_value(v, _seen=_seen, _where=_where)
                for v in value
            ]
        finally:
            del _seen[marker]
        return ["tuple" if isinstance(value, tuple) else "list", items]
    if isinstance(value, dict):
        marker = id(value)
        if marker in _seen:
            raise UnhashableError(f"cannot key {_where}: it contains itself (a recursive dict)")
        _seen[marker] = True
        try:
            pairs = [
                [encode_value(k, _seen=_seen, _where=_where), encode_value(v, _seen=_seen, _where=_where)]
                for k, v in value.items()
            ]
        finally:
            del _seen[marker]
        pairs.sort(key=lambda kv: _sort_key(kv[0]))
        return ["dict", pairs]
    if isinstance(value, (set, frozenset)):
        items = sorted((encode_value(v, _seen=_seen, _where=_where) for v in value), key=_sort_key)
        return ["set", items]
    if isinstance(value, functools.partial):
        return [
            "partial",
            encode_value(value.func, _seen=_seen, _where=_where),
            encode_value(list(value.args), _seen=_seen, _where=_where),
            encode_value(dict(value.keywords), _seen=_seen, _where=_where),
        ]
    if isinstance(value, types.FunctionType):
        is_library, callback_material = _FUNCTION_ENCODER
        if is_library(value):
            return ["extfunc", _qualname(value)]
        return callback_material(value, _visited=_seen.setdefault("__functions__", {}))
    if isinstance(value, types.MethodType):
        callback_material = _FUNCTION_ENCODER[1]
        return [
            "method",
            encode_value(value.__self__, _seen=_seen, _where=_where),
            callback_material(value.__func__, _visited=_seen.setdefault("__functions__", {})),
        ]
    if _named_only(value):
        return ["named", type(value).__name__, getattr(value, "__name__", None) and _qualname(value)]
    to_dict = getattr(value, "to_dict", None)
    from_dict = getattr(type(value), "from_dict", None)
    if callable(to_dict) and callable(from_dict):
        return ["object", type(value).__qualname__, encode_value(to_dict(), _seen=_seen, _where=f"{_where}.to_dict()")]
    if callable(to_dict) or callable(from_dict):
        missing = "from_dict()" if callable(to_dict) else "to_dict()"
        raise UnhashableError(
            f"cannot key {_where}: {type(value).__qualname__} object {value!r} has no {missing}; "
            "give the class to_dict() and from_dict() so it can be keyed and stored"
        )
    raise _unsupported(value, _where)


def _unsupported(value, where):
    if isinstance(value, numbers.Number):
        hint = "convert it to int, float or complex"
    else:
        hint = (
            "pass plain numbers, strings, tuples/lists/dicts or numpy arrays, "
            "or give the class to_dict() and from_dict()"
        )
    return UnhashableError(
        f"cannot key {where}: values of type {_qualname(type(value))} (here {value!r:.80}) are not supported; {hint}"
    )


_TRUE_TEXT = '["bool",true]'
_FALSE_TEXT = '["bool",false]'


def _value_text(value, where, seen):
    """``_dumps(encode_value(value, _seen=seen, _where=where))``, without the intermediate lists.

    Plain Python data (str, int, float, bool, None, and lists, tuples and
    dicts of those) is written directly; anything else goes through
    :func:`encode_value` with the same ``seen`` (cycle markers and visited
    functions), so the text and the errors are the same.
    """
    kind = type(value)
    if kind is str:
        return '["str",' + _jstr(value) + "]"
    if kind is int:
        return '["int","' + str(value) + '"]'
    if kind is float:
        return '["float","' + value.hex() + '"]'
    if value is None:
        return _NONE_TEXT
    if kind is bool:
        return _TRUE_TEXT if value else _FALSE_TEXT
    if kind is list or kind is tuple or kind is dict:
        marker = id(value)
        if marker in seen:
            raise UnhashableError(f"cannot key {where}: it contains itself (a recursive {kind.__name__})")
        seen[marker] = True
        try:
            if kind is dict:
                pairs = [(_value_text(k, where, seen), _value_text(v, where, seen)) for k, v in value.items()]
                pairs.sort(key=_first)
                return '["dict",[' + ",".join(f"[{k},{v}]" for k, v in pairs) + "]]"
            items = ",".join([_value_text(v, where, seen) for v in value])
            return ('["list",[' if kind is list else '["tuple",[') + items + "]]"
        finally:
            del seen[marker]
    return _dumps(encode_value(value, _seen=seen, _where=where))


def _first(pair):
    return pair[0]


def _object_text(texts):
    """JSON object text of ``{name: json text}`` with sorted names (what sort_keys writes)."""
    return "{" + ",".join(f"{_jstr(k)}:{texts[k]}" for k in sorted(texts)) + "}"


def canonical_json(value):
    """Return the canonical JSON text of ``value`` (see :func:`encode_value`).

    Parameters
    ----------
    value : object
        Any value :func:`encode_value` accepts.

    Returns
    -------
    str
        Compact JSON with sorted object keys and ASCII-only characters.
    """
    return _dumps(encode_value(value))


_NONE_TEXT = _dumps(["none"])
