"""Canonical key material for cached phasic artifacts.

A graph built from a callback is fully determined by the callback's code, the
data that code reads (closure cells, module-level constants, helper functions
from its own module), the keyword parameters it is called with, the initial
probability vector (IPV), the ``model``/``indexer`` objects and a few graph
options.  This module turns all of that into a *canonical, versioned JSON
document* (the key material) and hashes it with SHA-256 to obtain the key that
names the entry in the content-addressed store (:mod:`phasic.store`).

Encoding rules
--------------
* Every value is type-tagged, so ``1``, ``1.0``, ``True`` and ``"1"`` differ:
  ``["int", "1"]``, ``["float", "0x1.0000000000000p+0"]``, ``["bool", true]``,
  ``["str", "1"]``.  Floats are written exactly with :meth:`float.hex`.
* numpy arrays are encoded as dtype, shape and the SHA-256 of their C-ordered
  bytes; numpy scalars keep their dtype.
* dicts are sorted by the canonical encoding of their keys and sets by the
  encoding of their items, so nothing depends on ``PYTHONHASHSEED``.
* Objects with ``to_dict()`` *and* ``from_dict()`` (e.g. :class:`phasic.state_indexing.StateIndexer`)
  are encoded as their class's qualified name plus their ``to_dict()``.
* Functions are encoded by their *normalised source*: ``inspect.getsource`` →
  ``textwrap.dedent`` → ``ast.parse`` → the function node with its decorator
  list and docstring removed → ``ast.dump(..., include_attributes=False)``.
  This ignores comments, blank lines, formatting, decorators (the IPV given via
  :func:`phasic.with_ipv` is keyed separately) and docstrings, but any change
  of the code itself changes the key.  Added to that: default argument values,
  closure cell values, the values of module-level constants named in the code
  (numbers, str, bool, None, tuples/lists/dicts/sets of those, numpy arrays),
  and, recursively and cycle-safe, the normalised source of plain functions
  from the callback's own module that it names.  Functions, classes and
  modules from *other* modules are recorded by qualified name only.
  The AST dump format depends on the Python minor version, so a different
  Python gives different keys (a cache miss, never a wrong hit).

Speed
-----
A cache hit must cost less than rebuilding even a ~50-vertex graph (~0.1 ms),
so the immutable parts of a key are memoised per code object (a code object
never changes while it lives): the normalised AST dump and its JSON text, and
the names of the globals the code reads.  What can change between calls is
read on every call: default values, closure cells, the current values of the
module globals (helper functions are looked up again and re-encoded), the
parameters, IPV and options.  :func:`graph_key` assembles the canonical JSON
text from those parts; the result is identical to
``key_from_material(graph_key_material(...))``, only faster.  SHA-256 comes
from :mod:`hashlib`, or, while hashlib is not yet imported (its OpenSSL load
costs 5-20 ms in a fresh process) and little has been hashed, from the
interpreter's built-in implementation (see :func:`sha256`); both give the
same digest.

Anything that cannot be encoded raises :class:`phasic.exceptions.UnhashableError`
saying why and what to do.

Examples
--------
>>> from phasic.keys import canonical_json
>>> canonical_json({"b": 1.0, "a": 1})
'["dict",[[["str","a"],["int","1"]],[["str","b"],["float","0x1.0000000000000p+0"]]]]'
"""

from __future__ import annotations

import functools
import numbers
import sys
import types

import numpy as np  # a hard dependency, already imported by phasic

from phasic.exceptions import UnhashableError
from phasic.keys_values import (_NONE_TEXT, _named_only, _object_text, _qualname, _value_text,  # noqa: F401
                                canonical_json, encode_value, sha256)
from phasic.keys_source import (_class_source, _dumps, _function_ast, _function_ast_entry,  # noqa: F401
                                _function_ast_uncached, _function_source, _global_names, _jstr, _memo_get,
                                _memo_put)

__all__ = [
    "FORMAT_VERSION",
    "KEY_SCHEMA",
    "GRAPH_OPTIONS",
    "KEY_OPTION_DEFAULTS",
    "split_graph_kwargs",
    "encode_value",
    "canonical_json",
    "callback_material",
    "graph_key_material",
    "graph_key",
    "key_from_material",
]

#: Version of the key material (the ``"format"`` field of every key).  Entries
#: of store format 1 and 2 (see :mod:`phasic.store`) are both readable, so the
#: store layout changed without changing any key.
FORMAT_VERSION = 1

#: Name and version of the key-material schema (bump when the encoding changes).
KEY_SCHEMA = "phasic-graph-key/1"

#: ``Graph(...)`` keyword arguments that are options of ``Graph`` itself; every
#: other keyword argument is passed on to the callback as a parameter.
GRAPH_OPTIONS = (
    "ipv",
    "theta_dim",
    "discrete",
    "cache",
    "graph_cache",
    "hierarchical",
    "model",
    "indexer",
    "max_vertices",
    "state_length",
)

#: Options that change the built graph, with the value meaning "not given".
#: Options not listed here and not in :data:`GRAPH_OPTIONS` are caller extras
#: and are keyed as given.
KEY_OPTION_DEFAULTS = {"theta_dim": None, "discrete": False}

# Options that never change the graph's content (caching switches, limits that
# only make a build fail, manual construction) and are left out of the key.
_UNKEYED_OPTIONS = frozenset({"cache", "graph_cache", "hierarchical", "max_vertices", "state_length"})

def split_graph_kwargs(kwargs):
    """Split ``Graph(callback, **kwargs)`` keyword arguments into options and parameters.

    Parameters
    ----------
    kwargs : dict
        Keyword arguments as given to ``Graph``.

    Returns
    -------
    options : dict
        The entries whose names are in :data:`GRAPH_OPTIONS`.
    params : dict
        Everything else: the callback's keyword parameters.

    Examples
    --------
    >>> split_graph_kwargs({"theta": 2.0, "discrete": True})
    ({'discrete': True}, {'theta': 2.0})
    """
    options = {k: v for k, v in kwargs.items() if k in GRAPH_OPTIONS}
    params = {k: v for k, v in kwargs.items() if k not in GRAPH_OPTIONS}
    return options, params


# ------------------------------------------------------------------------ functions



def _text(encoded):
    """``_dumps(encoded)``, with the commonest tiny encodings short-cut."""
    if encoded == ["none"]:
        return _NONE_TEXT
    return _dumps(encoded)

def _unwrap(func):
    seen = set()
    while hasattr(func, "__wrapped__") and id(func) not in seen:
        seen.add(id(func))
        func = func.__wrapped__
    return func


def callback_material(func, *, _visited=None):
    """Encode a function by its normalised source and the data it reads.

    Parameters
    ----------
    func : function
        A plain function defined with ``def`` in a file.  Wrappers exposing
        ``__wrapped__`` (such as :func:`phasic.with_ipv`) are unwrapped.

    Returns
    -------
    list
        The type-tagged encoding (see the module docstring).

    Raises
    ------
    UnhashableError
        For lambdas, functions without retrievable source, and closure or
        global values of unsupported types.
    """
    return _callback(func, {} if _visited is None else _visited, False)


def _callback(func, visited, text):
    """:func:`callback_material` (``text=False``), or its canonical JSON text (``text=True``).

    Both walk the function in the same order (so nested functions get the same
    ``funcref`` markers); the text form reuses the memoised JSON text of every
    AST dump instead of escaping it again.
    """
    func = _unwrap(func)
    if not isinstance(func, types.FunctionType):
        if isinstance(func, (functools.partial, types.MethodType)):
            encoded = encode_value(func, _seen={"__functions__": visited})
            return _dumps(encoded) if text else encoded
        kind = "built-in function" if isinstance(func, types.BuiltinFunctionType) else type(func).__qualname__
        raise UnhashableError(
            f"cannot key the callback {func!r}: a {kind} has no Python source to key; "
            "use a plain function defined with def in a file"
        )
    code = func.__code__
    marker = id(code)
    if marker in visited:
        ref = ["funcref", func.__qualname__]
        return _dumps(ref) if text else ref
    visited[marker] = True
    ast_dump, ast_json = _function_ast_entry(func)
    where = f"callback {_qualname(func)}"
    seen = {"__functions__": visited}
    encode = _value_text if text else _encode_in
    defaults = encode(func.__defaults__, f"the defaults of {where}", seen)
    kwdefaults = encode(func.__kwdefaults__, f"the keyword defaults of {where}", seen)
    closure = {}
    for var, cell in zip(code.co_freevars, func.__closure__ or ()):
        try:
            contents = cell.cell_contents
        except ValueError:
            closure[var] = _EMPTY_CELL_TEXT if text else ["emptycell"]
            continue
        closure[var] = encode(contents, f"the closure variable {var!r} of {where}", seen)
    glob = {}
    namespace = func.__globals__
    for gname in _global_names(code):
        if gname in namespace:  # otherwise a builtin or an attribute name
            glob[gname] = _encode_global(gname, namespace[gname], func, visited, text)
    if not text:
        material = {
            "name": func.__qualname__,  # not the module: __main__ vs imported must give one key
            "ast": ast_dump,
            "defaults": defaults,
            "kwdefaults": kwdefaults,
            "closure": closure,
            "globals": glob,
        }
        return ["function", material]
    return (
        f'["function",{{"ast":{ast_json},"closure":{_object_text(closure)},"defaults":{defaults},'
        f'"globals":{_object_text(glob)},"kwdefaults":{kwdefaults},"name":{_jstr(func.__qualname__)}}}]'
    )


_EMPTY_CELL_TEXT = '["emptycell"]'
_MISSING = object()
_IMMUTABLE = frozenset({int, float, complex, str, bytes, bool, type(None)})
_TEXT_CACHE = {}


def _top_callback_text(callback):
    """``_callback(callback, {}, True)``, remembered for functions whose text cannot go stale.

    The text of a function with no closure, no keyword-only defaults,
    defaults of immutable scalars only, and whose globals are absent or
    modules, classes or builtins (encoded by name or by their memoised source)
    depends only on the function object, its ``__qualname__``, the identities
    of its ``__code__`` and ``__defaults__`` and of each global's value; those
    are checked on every call, anything else is encoded afresh.
    """
    func = _unwrap(callback)
    if type(func) is not types.FunctionType:
        return _callback(callback, {}, True)
    entry = _memo_get(_TEXT_CACHE, func)
    namespace = func.__globals__
    if (entry is not None and entry[0] == func.__qualname__ and entry[1] is func.__defaults__
            and entry[4] is func.__code__ and func.__kwdefaults__ is None and not func.__closure__
            and all(namespace.get(name, _MISSING) is value for name, value in entry[2])):
        return entry[3]
    text = _callback(callback, {}, True)
    defaults = func.__defaults__
    if func.__kwdefaults__ is None and not func.__closure__ and (
            defaults is None or all(type(d) in _IMMUTABLE for d in defaults)):
        snapshot = tuple((name, namespace.get(name, _MISSING)) for name in _global_names(func.__code__))
        if all(value is _MISSING or _named_only(value) for _, value in snapshot):
            _memo_put(_TEXT_CACHE, func, (func.__qualname__, defaults, snapshot, text, func.__code__))
    return text


def _encode_in(value, where, seen):
    return encode_value(value, _seen=seen, _where=where)


def _is_library(func):
    """True for functions from the standard library or installed packages."""
    module_name = getattr(func, "__module__", None) or ""
    if module_name.split(".")[0] in sys.stdlib_module_names or module_name.split(".")[0] == "builtins":
        return True
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None) or ""
    return "site-packages" in path or "dist-packages" in path


def _encode_global(gname, value, func, visited, text=False):
    """Encode the module-level name ``gname`` read by ``func`` (as JSON text when ``text``)."""
    inner = _unwrap(value) if not isinstance(value, type) else value
    if isinstance(inner, types.FunctionType) and inner.__module__ == func.__module__ and not _is_library(inner):
        return _callback(inner, visited, text)
    encoded = _encode_global_value(gname, value, inner, func, visited)
    return _text(encoded) if text else encoded


def _encode_global_value(gname, value, inner, func, visited):
    """Encode a module-level value other than a same-module function."""
    if isinstance(inner, types.FunctionType):
        return ["extfunc", _qualname(inner)]
    where = f"the global {gname!r} used by callback {_qualname(func)}"
    if isinstance(value, type) and value.__module__ == func.__module__:
        return ["ownclass", value.__qualname__, _class_source(value)]
    if _named_only(value):
        return ["named", type(value).__name__, _qualname(value) if hasattr(value, "__name__") else None]
    if isinstance(value, np.ufunc):
        return ["ufunc", value.__name__]
    try:
        return encode_value(value, _seen={"__functions__": visited}, _where=where)
    except UnhashableError as exc:
        raise UnhashableError(
            f"{exc}. A callback may only read module-level constants of supported types; "
            f"pass {gname!r} to it as a keyword parameter instead"
        ) from None


def _callback_ipv(callback):
    """The IPV attached to a callback by ``with_ipv`` (several attribute spellings)."""
    f = callback
    seen = set()
    while f is not None and id(f) not in seen:
        seen.add(id(f))
        for attr in ("ipv", "_ipv", "__ipv__", "_phasic_ipv", "__phasic_ipv__"):
            if attr in getattr(f, "__dict__", {}):
                return f.__dict__[attr]
        f = getattr(f, "__wrapped__", None)
    return None


def _is_int(x):
    return type(x) is int or (isinstance(x, (numbers.Integral, np.integer)) and not isinstance(x, bool))


def normalise_ipv(ipv):
    """Normalise an IPV to ``[[state (list of int), probability (float)], ...]``.

    A bare state (a flat sequence of integers) means that state with
    probability 1.  Anything not shaped like an IPV is returned unchanged
    (it is keyed as given; ``Graph`` reports the malformed IPV).

    Examples
    --------
    >>> normalise_ipv([10])
    [[[10], 1.0]]
    """
    if ipv is None:
        return None
    try:
        items = list(ipv)
    except TypeError:
        return ipv
    if items and all(_is_int(x) for x in items):
        return [[[int(x) for x in items], 1.0]]
    out = []
    for item in items:
        try:
            state, prob = item
            state = list(state)
            if not all(type(x) is int for x in state) and not all(_is_int(x) for x in state):
                return ipv
            out.append([[int(x) for x in state], float(prob)])
        except (TypeError, ValueError):
            return ipv
    return out


def _ipv_text(ipv):
    """``_value_text(normalise_ipv(ipv), "the IPV", {})``, directly for the usual shapes."""
    if type(ipv) is list and ipv:
        first = ipv[0]
        if type(first) is int:  # a bare state
            if all(type(x) is int for x in ipv):
                return '["list",[["list",[["list",[' + ",".join([f'["int","{x}"]' for x in ipv]) + \
                    ']],["float","0x1.0000000000000p+0"]]]]]'
        else:
            parts = []
            for item in ipv:
                if type(item) is not list and type(item) is not tuple or len(item) != 2:
                    break
                state, prob = item
                if type(state) is not list and type(state) is not tuple or not all(type(x) is int for x in state):
                    break
                if type(prob) is not float and type(prob) is not int:
                    break
                parts.append('["list",[["list",[' + ",".join([f'["int","{x}"]' for x in state]) +
                             f']],["float","{float(prob).hex()}"]]]')
            else:
                return '["list",[' + ",".join(parts) + "]]"
    return _value_text(normalise_ipv(ipv), "the IPV", {})


def _normalise_options(options):
    options = dict(options or {})
    extracted = {name: options.pop(name, None) for name in ("ipv", "model", "indexer")}
    for name in _UNKEYED_OPTIONS:
        options.pop(name, None)
    for name, default in KEY_OPTION_DEFAULTS.items():
        value = options.get(name, default)
        if name == "discrete":
            value = bool(value)
        elif name == "theta_dim" and value is not None:
            if isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, bool):
                value = int(value)
        options[name] = value
    return options, extracted


def _key_inputs(callback, params, ipv, model, indexer, options):
    """Validated inputs of a key: ``(params, ipv, model, indexer, options)``."""
    options, extracted = _normalise_options(options)
    ipv = ipv if ipv is not None else extracted["ipv"]
    model = model if model is not None else extracted["model"]
    indexer = indexer if indexer is not None else extracted["indexer"]
    if ipv is None:
        ipv = _callback_ipv(callback)
    if callback is None:
        raise UnhashableError("cannot key a graph without a callback; give the callback function that builds it")
    params = dict(params or {})
    bad = [k for k in params if not isinstance(k, str)]
    if bad:
        raise UnhashableError(f"cannot key parameter name {bad[0]!r}: parameter names must be str")
    return params, ipv, model, indexer, options


def _material_rest(params, ipv, model, indexer, options):
    """Every field of the key material except ``callback``."""
    return {
        "schema": KEY_SCHEMA,
        "format": FORMAT_VERSION,
        "params": {k: encode_value(v, _where=f"the parameter {k!r}") for k, v in params.items()},
        "ipv": encode_value(normalise_ipv(ipv), _where="the IPV"),
        "model": encode_value(model, _where="model="),
        "indexer": encode_value(indexer, _where="indexer="),
        "options": {k: encode_value(v, _where=f"the option {k!r}") for k, v in options.items()},
    }


def graph_key_material(callback, params, ipv=None, model=None, indexer=None, options=None):
    """Build the (unencoded-to-text) key material document of a graph.

    See :func:`graph_key` for the parameters.  Returns a dict whose values are
    already type-tagged encodings.
    """
    params, ipv, model, indexer, options = _key_inputs(callback, params, ipv, model, indexer, options)
    material = {"callback": callback_material(callback)}
    material.update(_material_rest(params, ipv, model, indexer, options))
    return material


def key_from_material(material):
    """Return ``(hex sha256 key, canonical JSON)`` of a material document."""
    text = _dumps(material)
    return sha256(text.encode("ascii")).hexdigest(), text


def graph_key(callback, params, ipv=None, model=None, indexer=None, options=None):
    """Compute the store key of the graph a callback builds.

    Parameters
    ----------
    callback : function
        The state-space callback (possibly wrapped by ``with_ipv``; its
        ``__wrapped__`` function is keyed and its IPV used when ``ipv`` is None).
    params : dict
        Keyword parameters passed to the callback.
    ipv : list, optional
        Initial probability vector: a state, or a list of ``[state, prob]``.
    model, indexer : object, optional
        Objects with ``to_dict()``/``from_dict()``.
    options : dict, optional
        ``Graph`` options (see :data:`GRAPH_OPTIONS`) and caller extras.
        Caching switches and limits (``cache``, ``graph_cache``,
        ``hierarchical``, ``max_vertices``, ``state_length``) are ignored;
        ``theta_dim`` and ``discrete`` are keyed with their defaults filled in.

    Returns
    -------
    key : str
        64 hex digits.
    material : str
        The canonical JSON the key is the SHA-256 of; identical to
        ``key_from_material(graph_key_material(...))[1]``.

    Raises
    ------
    UnhashableError
        If anything cannot be keyed (lambda, missing source, unsupported type).

    Examples
    --------
    >>> def coalescent(state, theta=1.0):
    ...     n = state[0]
    ...     return [] if n <= 1 else [[[n - 1], n * (n - 1) / 2 * theta]]
    >>> key, material = graph_key(coalescent, {"theta": 2.0}, ipv=[10])  # doctest: +SKIP
    >>> len(key)  # doctest: +SKIP
    64
    """
    params, ipv, model, indexer, options = _key_inputs(callback, params, ipv, model, indexer, options)
    callback_text = _top_callback_text(callback)
    # the fields of _material_rest, encoded in the same order (so the same error comes first)
    params_text = {k: _value_text(v, f"the parameter {k!r}", {}) for k, v in params.items()}
    ipv_text = _ipv_text(ipv)
    model_text = _value_text(model, "model=", {})
    indexer_text = _value_text(indexer, "indexer=", {})
    options_text = {k: _value_text(v, f"the option {k!r}", {}) for k, v in options.items()}
    text = (  # the fields in sorted order, as sort_keys writes them
        f'{{"callback":{callback_text},"format":{FORMAT_VERSION:d},"indexer":{indexer_text},'
        f'"ipv":{ipv_text},"model":{model_text},"options":{_object_text(options_text)},'
        f'"params":{_object_text(params_text)},"schema":{_jstr(KEY_SCHEMA)}}}'
    )
    return sha256(text.encode("ascii")).hexdigest(), text
