"""Callbacks: the initial-distribution protocol (`with_ipv`) and how `Graph` calls them."""

from __future__ import annotations

import functools
import inspect
import numbers
import types

import numpy as np

from phasic.exceptions import GraphConstructionError

#: containers longer than this keep their own (summarised) repr in messages
_PLAIN_MAX = 64


class _BigInt:
    """Stands for a huge integer in a message."""

    def __init__(self, bits):
        self.bits = bits

    def __repr__(self):
        return f"<an integer of {self.bits} bits>"


def plain(x):
    """`x` for an error message: NumPy scalars and arrays, also inside lists and tuples, as
    plain Python numbers and lists, so a state prints as ``[3, 0]``, not
    ``[np.int32(3), 0]``. Large containers are left as they are.

    Examples
    --------
    >>> plain([np.int32(3), 0])
    [3, 0]
    """
    if isinstance(x, np.generic):
        x = x.item()
    if type(x) is int and x.bit_length() > 128:
        return _BigInt(x.bit_length())  # every digit may be too many to print
    if isinstance(x, np.ndarray):
        return x.tolist() if x.size <= _PLAIN_MAX else x
    if isinstance(x, (list, tuple)) and len(x) <= _PLAIN_MAX:
        return type(x)(plain(y) for y in x) if type(x) in (list, tuple) else x
    return x


def _ipv_state(state) -> list:
    """An IPV state as a list (NumPy integers accepted like ints); a bool is refused, naming
    it (``[True]`` is no state ``[1]``)."""
    seq = state.tolist() if isinstance(state, np.ndarray) else list(state)
    for x in seq:
        if isinstance(x, (bool, np.bool_)):
            raise GraphConstructionError(f"IPV state {plain(state)!r} holds the bool {x!r}; states are integer vectors")
    return seq


def _is_int(x):
    return type(x) is int or (isinstance(x, (numbers.Integral, np.integer)) and not isinstance(x, bool))


def _ipv_for_key(ipv):
    """:func:`normalize_ipv` for keys: never raises, integer states, float probabilities."""
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


def normalize_ipv(ipv, *, for_key=False) -> list:
    """The initial distribution as ``[[state, probability], ...]``: the one IPV normaliser.

    ``[10]`` (one start state) means ``[[[10], 1.0]]``; ``[[10, 0]]`` is ambiguous and is
    read as one state unless its items are ``[state, prob]`` pairs.

    Parameters
    ----------
    ipv : list, tuple or numpy.ndarray
        One start state, or ``[state, probability]`` pairs.
    for_key : bool
        The form :mod:`phasic.keys` hashes: states as lists of ``int``, probabilities as
        ``float``, and never an error: an IPV of another shape (or with non-integer state
        entries) is returned unchanged, to be keyed as given (``Graph`` reports it when it
        builds). Default: the form ``Graph`` builds from, checked.

    Raises
    ------
    GraphConstructionError
        (not with ``for_key``) No IPV, an empty one, a bool in a state, a probability that
        is not a number ``>= 0``, or probabilities summing over 1.

    Examples
    --------
    >>> normalize_ipv([10])
    [[[10], 1.0]]
    >>> normalize_ipv([[[2, 0], 0.5], [[1, 1], 0.5]])
    [[[2, 0], 0.5], [[1, 1], 0.5]]
    """
    if for_key:
        return _ipv_for_key(ipv)
    if ipv is None:
        raise GraphConstructionError(
            "no initial distribution: decorate the callback with @with_ipv(...) or pass Graph(callback, ipv=...)"
        )
    if isinstance(ipv, np.ndarray) and ipv.ndim == 1:
        ipv = ipv.tolist()  # np.array([5]): one start state, its entries plain ints
    if not isinstance(ipv, (list, tuple)) or len(ipv) == 0:
        raise GraphConstructionError(
            f"IPV {plain(ipv)!r} must be a start state like [10] or a non-empty list of [state, probability] pairs"
        )
    pairs = all(
        isinstance(x, (list, tuple)) and len(x) == 2 and isinstance(x[0], (list, tuple, np.ndarray)) for x in ipv
    )
    if not pairs:
        return [[_ipv_state(ipv), 1.0]]
    out, total = [], 0.0
    for state, prob in ipv:
        try:
            p = float(prob)
        except (TypeError, ValueError, OverflowError):
            raise GraphConstructionError(
                f"IPV probability {plain(prob)!r} for state {plain(state)!r} is not a number in [0, 1]"
            ) from None
        if not (p >= 0.0) or p == float("inf"):
            raise GraphConstructionError(f"IPV probability {plain(prob)!r} for state {plain(state)!r} must be >= 0")
        total += p
        out.append([_ipv_state(state), p])
    if total > 1.0 + 1e-12:
        raise GraphConstructionError(f"IPV probabilities sum to {total!r} > 1 in {plain(ipv)!r}")
    return out


def with_ipv(ipv):
    """Attaches an initial distribution to a state-space callback.

    Parameters
    ----------
    ipv : list
        One start state (``[10]``) or a list of ``[state, probability]`` pairs.

    The wrapped function keeps ``__wrapped__`` and exposes ``.ipv``; called with an empty
    state it returns the IPV (the reference protocol), otherwise it calls the callback.

    Examples
    --------
    >>> @with_ipv([3])
    ... def kingman(state):
    ...     n = state[0]
    ...     return [] if n <= 1 else [[[n - 1], n * (n - 1) / 2]]
    >>> kingman([])
    [[[3], 1.0]]
    """
    normalized = normalize_ipv(ipv)

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(state, *args, **kwargs):
            if state is None or len(state) == 0:
                return [[list(s), p] for s, p in normalized]
            return fn(state, *args, **kwargs)

        wrapper.ipv = [[list(s), p] for s, p in normalized]
        return wrapper

    return decorate


def callback_ipv(callback, ipv=None):
    """The IPV for `callback`: an explicit `ipv`, its ``.ipv``, or what it returns for []."""
    if ipv is not None:
        return normalize_ipv(ipv)
    attached = getattr(callback, "ipv", None)
    if attached is not None:
        return normalize_ipv(attached)
    # the reference protocol: a callback called with an empty state returns its IPV
    try:
        result = callback([])
    except Exception:
        return None
    if isinstance(result, (list, tuple)) and result:
        try:
            return normalize_ipv(result)
        except GraphConstructionError:
            return None
    return None


#: keyword-able parameter names per callback signature, keyed by the code objects of the
#: callback and of the functions it wraps (an edit gives new code objects, hence a new key)
_SIGNATURES: dict = {}
_SIGNATURES_MAX = 4096


def _signature_key(callback):
    """The code objects that decide `callback`'s signature, or None when it cannot be
    memoised (not a plain function, or one with an explicit ``__signature__``)."""
    key, f = [], callback
    while f is not None:
        if type(f) is not types.FunctionType or "__signature__" in f.__dict__:
            return None
        key.append(f.__code__)
        f = f.__dict__.get("__wrapped__")  # inspect.signature follows functools.wraps
    return tuple(key)


def _keyword_params(callback):
    """``(names, var_kw)``: the names `callback` takes as keywords and whether it has
    ``**kwargs``, or None when its signature is unknown. Memoised per code object
    (``inspect.signature`` costs microseconds, paid on every ``Graph()`` call otherwise)."""
    key = _signature_key(callback)
    if key is not None:
        found = _SIGNATURES.get(key)
        if found is not None:
            return found
    try:
        sig = inspect.signature(callback)
    except (TypeError, ValueError):
        return None
    params = sig.parameters.values()
    found = (
        frozenset(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)),
        any(p.kind is p.VAR_KEYWORD for p in params),
    )
    if key is not None:
        if len(_SIGNATURES) >= _SIGNATURES_MAX:
            _SIGNATURES.clear()
        _SIGNATURES[key] = found
    return found


def unknown_params(callback, params) -> list:
    """Names in `params` that `callback`'s signature cannot take ([] when unknown)."""
    if not params:
        return []
    found = _keyword_params(callback)
    if found is None or found[1]:
        return []
    return [k for k in params if k not in found[0]]


def accepted_extras(callback, extras: dict) -> dict:
    """The subset of `extras` (model=, indexer=) the callback's signature accepts."""
    if not extras:
        return {}
    found = _keyword_params(callback)
    if found is None:
        return {}
    names, var_kw = found
    return {k: v for k, v in extras.items() if v is not None and (k in names or var_kw)}
