"""The graph key: the callback's code (:mod:`._code`), its parameters, IPV, options and
``model``/``indexer`` objects (:mod:`._values`) as canonical JSON, and its SHA-256."""

from __future__ import annotations

import numbers

import numpy as np  # a hard dependency, already imported by phasic

from phasic.callbacks import normalize_ipv
from phasic.exceptions import UnhashableError
from phasic.keys._code import callback_material, top_callback_text
from phasic.keys._source import _dumps, _jstr
from phasic.keys._values import _object_text, _value_text, encode_value, sha256

__all__ = [
    "callback_attrs",
    "FORMAT_VERSION",
    "KEY_SCHEMA",
    "GRAPH_OPTIONS",
    "KEY_OPTION_DEFAULTS",
    "split_graph_kwargs",
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


def _ipv_text(ipv):
    """``_value_text(normalize_ipv(ipv, for_key=True), "the IPV", {})``, directly for the usual shapes."""
    if type(ipv) is list and ipv:
        first = ipv[0]
        if type(first) is int:  # a bare state
            if all(type(x) is int for x in ipv):
                return (
                    '["list",[["list",[["list",['
                    + ",".join([f'["int","{x}"]' for x in ipv])
                    + ']],["float","0x1.0000000000000p+0"]]]]]'
                )
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
                parts.append(
                    '["list",[["list",['
                    + ",".join([f'["int","{x}"]' for x in state])
                    + f']],["float","{float(prob).hex()}"]]]'
                )
            else:
                return '["list",[' + ",".join(parts) + "]]"
    return _value_text(normalize_ipv(ipv, for_key=True), "the IPV", {})


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
        "ipv": encode_value(normalize_ipv(ipv, for_key=True), _where="the IPV"),
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
    ::

        def coalescent(state, theta=1.0):
            n = state[0]
            return [] if n <= 1 else [[[n - 1], n * (n - 1) / 2 * theta]]
        key, material = graph_key(coalescent, {"theta": 2.0}, ipv=[10])
        len(key)
        # 64
    """
    params, ipv, model, indexer, options = _key_inputs(callback, params, ipv, model, indexer, options)
    callback_text = top_callback_text(callback)
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


def callback_attrs(callback, material):
    """The attributes that name a graph entry's model: ``key_material``, ``callback`` (the
    qualified name) and ``callback_module`` (the module of the function under any decorators),
    as ``phasic cache list`` shows them."""
    inner = callback
    while getattr(inner, "__wrapped__", None) is not None and inner.__wrapped__ is not inner:
        inner = inner.__wrapped__
    return {
        "key_material": material,
        "callback": getattr(callback, "__qualname__", None) or repr(callback),
        "callback_module": getattr(inner, "__module__", None) or getattr(callback, "__module__", None),
    }
