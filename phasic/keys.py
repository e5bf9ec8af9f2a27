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
import hashlib
import json
import numbers
import sys
import types

from phasic.exceptions import UnhashableError

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

#: Version of the on-disk store format; part of every key.
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

def _named_only(value):
    """Modules, builtins, classes and loggers are recorded by name only."""
    if isinstance(value, (type, types.ModuleType, types.BuiltinFunctionType)):
        return True
    logging = sys.modules.get("logging")  # a Logger exists only if logging was imported
    return logging is not None and isinstance(value, logging.Logger)


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


# --------------------------------------------------------------------------- values


def _qualname(obj):
    return f"{getattr(obj, '__module__', None) or '?'}.{getattr(obj, '__qualname__', getattr(obj, '__name__', '?'))}"


def _sort_key(encoded):
    return json.dumps(encoded, sort_keys=True, separators=(",", ":"))


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
    if _seen is None:
        _seen = {}
    import numpy as np  # numpy is a hard dependency and already imported by phasic

    if value is None:
        return ["none"]
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
        return ["ndarray", arr.dtype.str, list(arr.shape), hashlib.sha256(arr.tobytes()).hexdigest()]
    if isinstance(value, (tuple, list)):
        marker = id(value)
        if marker in _seen:
            raise UnhashableError(f"cannot key {_where}: it contains itself (a recursive {type(value).__name__})")
        _seen[marker] = True
        try:
            items = [encode_value(v, _seen=_seen, _where=_where) for v in value]
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
        if _is_library(value):
            return ["extfunc", _qualname(value)]
        return callback_material(value, _visited=_seen.setdefault("__functions__", {}))
    if isinstance(value, types.MethodType):
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
    return json.dumps(encode_value(value), sort_keys=True, separators=(",", ":"), ensure_ascii=True)


# ------------------------------------------------------------------------ functions


def _function_ast(func):
    """Return the normalised AST dump of ``func``'s definition (memoised per code object)."""
    code = getattr(func, "__code__", None)
    if code is not None:
        cached = _AST_CACHE.get(code)
        if cached is not None:
            return cached
    dump = _function_ast_uncached(func)
    if code is not None:
        if len(_AST_CACHE) >= 4096:
            _AST_CACHE.clear()
        _AST_CACHE[code] = dump
    return dump


# A code object is immutable, so its source dump never changes while it lives; keying the
# cache by the code object (not the file) also keeps the key of the code that actually runs.
_AST_CACHE = {}


def _function_ast_uncached(func):
    import ast
    import inspect
    import textwrap

    name = getattr(func, "__name__", "?")
    if name == "<lambda>":
        raise UnhashableError(
            f"cannot key the lambda {func!r}: the source of a lambda cannot be isolated reliably; "
            "define the callback with def in a file"
        )
    try:
        source = inspect.getsource(func)
    except (OSError, TypeError) as exc:
        raise UnhashableError(
            f"cannot key the callback {_qualname(func)}: its source code is not retrievable ({exc}); "
            "define it with def in a file (a module or script), not interactively or with exec"
        ) from None
    try:
        tree = ast.parse(textwrap.dedent(source))
    except SyntaxError as exc:
        raise UnhashableError(
            f"cannot key the callback {_qualname(func)}: its source could not be parsed ({exc}); "
            "define it with def in a file"
        ) from None
    node = next(
        (n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name), None
    )
    if node is None:
        raise UnhashableError(
            f"cannot key the callback {_qualname(func)}: no 'def {name}' found in its source; "
            "define it with def in a file"
        )
    node.decorator_list = []
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        if isinstance(body[0].value.value, str) and len(body) > 1:
            node.body = body[1:]
    return ast.dump(node, include_attributes=False)


def _code_names(code):
    """Global names used by ``code`` and the code objects nested in it."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


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
    if _visited is None:
        _visited = {}
    func = _unwrap(func)
    if isinstance(func, functools.partial):
        return encode_value(func, _seen={"__functions__": _visited})
    if isinstance(func, types.MethodType):
        return encode_value(func, _seen={"__functions__": _visited})
    if not isinstance(func, types.FunctionType):
        kind = "built-in function" if isinstance(func, types.BuiltinFunctionType) else type(func).__qualname__
        raise UnhashableError(
            f"cannot key the callback {func!r}: a {kind} has no Python source to key; "
            "use a plain function defined with def in a file"
        )
    name = _qualname(func)
    marker = id(func.__code__)
    if marker in _visited:
        return ["funcref", func.__qualname__]
    _visited[marker] = True
    where = f"callback {name}"
    seen = {"__functions__": _visited}
    material = {
        "name": func.__qualname__,  # not the module: __main__ vs imported must give one key
        "ast": _function_ast(func),
        "defaults": encode_value(func.__defaults__, _seen=seen, _where=f"the defaults of {where}"),
        "kwdefaults": encode_value(func.__kwdefaults__, _seen=seen, _where=f"the keyword defaults of {where}"),
    }
    closure = {}
    for var, cell in zip(func.__code__.co_freevars, func.__closure__ or ()):
        try:
            contents = cell.cell_contents
        except ValueError:
            closure[var] = ["emptycell"]
            continue
        closure[var] = encode_value(contents, _seen=seen, _where=f"the closure variable {var!r} of {where}")
    material["closure"] = closure
    glob = {}
    for gname in sorted(_code_names(func.__code__)):
        if gname in func.__globals__:  # otherwise a builtin or an attribute name
            glob[gname] = _encode_global(gname, func.__globals__[gname], func, _visited)
    material["globals"] = glob
    return ["function", material]


def _is_library(func):
    """True for functions from the standard library or installed packages."""
    module_name = getattr(func, "__module__", None) or ""
    if module_name.split(".")[0] in sys.stdlib_module_names or module_name.split(".")[0] == "builtins":
        return True
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None) or ""
    return "site-packages" in path or "dist-packages" in path


def _encode_global(gname, value, func, visited):
    """Encode the module-level name ``gname`` read by ``func``."""
    where = f"the global {gname!r} used by callback {_qualname(func)}"
    inner = _unwrap(value) if not isinstance(value, type) else value
    if isinstance(inner, types.FunctionType):
        if inner.__module__ == func.__module__ and not _is_library(inner):
            return callback_material(inner, _visited=visited)
        return ["extfunc", _qualname(inner)]
    if isinstance(value, type) and value.__module__ == func.__module__:
        import ast
        import inspect
        import textwrap

        try:
            source = ast.dump(ast.parse(textwrap.dedent(inspect.getsource(value))), include_attributes=False)
        except (OSError, TypeError, SyntaxError):
            source = None
        return ["ownclass", value.__qualname__, source]
    if _named_only(value):
        return ["named", type(value).__name__, _qualname(value) if hasattr(value, "__name__") else None]
    import numpy as np

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
    import numpy as np

    if ipv is None:
        return None
    try:
        items = list(ipv)
    except TypeError:
        return ipv
    if items and all(isinstance(x, (numbers.Integral, np.integer)) and not isinstance(x, bool) for x in items):
        return [[[int(x) for x in items], 1.0]]
    out = []
    for item in items:
        try:
            state, prob = item
            state = list(state)
            if not all(isinstance(x, (numbers.Integral, np.integer)) and not isinstance(x, bool) for x in state):
                return ipv
            out.append([[int(x) for x in state], float(prob)])
        except (TypeError, ValueError):
            return ipv
    return out


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
            import numpy as np

            if isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, bool):
                value = int(value)
        options[name] = value
    return options, extracted


def graph_key_material(callback, params, ipv=None, model=None, indexer=None, options=None):
    """Build the (unencoded-to-text) key material document of a graph.

    See :func:`graph_key` for the parameters.  Returns a dict whose values are
    already type-tagged encodings.
    """
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
    return {
        "schema": KEY_SCHEMA,
        "format": FORMAT_VERSION,
        "callback": callback_material(callback),
        "params": {k: encode_value(v, _where=f"the parameter {k!r}") for k, v in params.items()},
        "ipv": encode_value(normalise_ipv(ipv), _where="the IPV"),
        "model": encode_value(model, _where="model="),
        "indexer": encode_value(indexer, _where="indexer="),
        "options": {k: encode_value(v, _where=f"the option {k!r}") for k, v in options.items()},
    }


def key_from_material(material):
    """Return ``(hex sha256 key, canonical JSON)`` of a material document."""
    text = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest(), text


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
        The canonical JSON the key is the SHA-256 of.

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
    return key_from_material(graph_key_material(callback, params, ipv, model, indexer, options))
