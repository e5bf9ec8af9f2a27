"""The code a callback runs, as key material: the callback and all user code it reaches.

:func:`callback_material` walks a function's normalised source (:mod:`._source`), the
values it reads and, transitively and cycle-safe, every function, class, instance and
module of the user's it reaches (:mod:`._reach` draws the user/installed line); see the
package docstring for the encoding.  The walk registers itself as :mod:`._values`' encoder
of functions inside values, so imports run one way: ``_code`` → ``_values``, ``_source``,
``_reach``.
"""

from __future__ import annotations

import functools
import sys
import types

import numpy as np  # a hard dependency, already imported by phasic

from phasic.exceptions import KeyWarning, UnhashableError
from phasic.keys import _values
from phasic.keys._reach import Notes, distribution, find_module, module_kind
from phasic.keys._source import (
    _class_source,
    _dumps,
    _function_ast_entry,
    _global_names,
    _jstr,
    _memo_get,
    _memo_put,
)
from phasic.keys._values import (
    _NONE_TEXT,
    _named_only,
    _object_text,
    _qualname,
    _value_text,
    encode_value,
)

__all__ = ["callback_material", "top_callback_text"]


def _text(encoded):
    """``_dumps(encoded)``, with the commonest tiny encodings short-cut."""
    if encoded == ["none"]:
        return _NONE_TEXT
    return _dumps(encoded)


def _defined_in(func):
    """The module a function's code belongs to (its globals'; ``functools.wraps`` copies
    ``__module__`` from the wrapped function, not this)."""
    return func.__globals__.get("__name__") if type(func) is types.FunctionType else getattr(func, "__module__", None)


def _unwrap(func):
    """Follow ``__wrapped__`` through installed wrappers (``with_ipv``, ``functools.lru_cache``, ...).

    A user's own wrapper is kept: its code is part of what runs, and it reaches the wrapped
    function itself (:func:`_callback` keys ``__wrapped__`` of a user function too).
    """
    seen = set()
    while hasattr(func, "__wrapped__") and id(func) not in seen:
        if type(func) is types.FunctionType and module_kind(_defined_in(func)) == "user":
            break
        seen.add(id(func))
        func = func.__wrapped__
    return func


def callback_material(func, *, _visited=None):
    """Encode a function by its normalised source and everything of the user's it reaches.

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
    walk = _Walk({} if _visited is None else _visited, False)
    walk.nested = bool(_visited)  # a function inside a value a callback reaches (a lambda in a dict)
    return _callback(func, walk)


class _Walk:
    """One walk over the code a callback reaches.

    ``visited`` marks functions (by code object), modules and classes already encoded
    (cycles and repeats become ``funcref``/``moduleref``/``classref``); ``text`` selects
    canonical JSON text instead of nested lists.  The walk also notes what its result
    depends on, for :func:`top_callback_text`: ``attrs`` (object, attribute, value) and
    ``items`` (mapping, name, value) must still be identical, ``sizes`` (mapping, length)
    still hold; ``cacheable`` turns False when a value that can change in place (a list,
    an array, a keyword-default dict) was encoded.
    """

    __slots__ = ("visited", "text", "attrs", "items", "sizes", "cacheable", "nested")

    def __init__(self, visited, text):
        self.nested = False  # True once the top function is being encoded
        self.visited = visited
        self.text = text
        self.attrs = []
        self.items = []
        self.sizes = []
        self.cacheable = True

    def out(self, encoded):
        return _text(encoded) if self.text else encoded

    def holds(self):
        for obj, name, value in self.attrs:
            try:
                if getattr(obj, name) is not value:
                    return False
            except (AttributeError, ValueError):  # an emptied cell
                return False
        for mapping, name, value in self.items:
            if mapping.get(name, _MISSING) is not value:
                return False
        return all(len(mapping) == size for mapping, size in self.sizes)


def _callback(func, walk):
    """:func:`callback_material` (``walk.text`` False), or its canonical JSON text (True).

    Both walk the function in the same order (so nested functions get the same
    ``funcref`` markers); the text form reuses the memoised JSON text of every
    AST dump instead of escaping it again.
    """
    func = _unwrap(func)
    if not isinstance(func, types.FunctionType):
        if isinstance(func, (functools.partial, types.MethodType)):
            walk.cacheable = False
            return walk.out(encode_value(func, _seen={"__functions__": walk.visited}))
        kind = "built-in function" if isinstance(func, types.BuiltinFunctionType) else type(func).__qualname__
        raise UnhashableError(
            f"cannot key the callback {func!r}: a {kind} has no Python source to key; "
            "use a plain function defined with def in a file"
        )
    code = func.__code__
    walk.attrs += (
        (func, "__code__", code),
        (func, "__defaults__", func.__defaults__),
        (func, "__kwdefaults__", func.__kwdefaults__),
        (func, "__qualname__", func.__qualname__),
    )
    marker = id(code)
    if marker in walk.visited:
        return walk.out(["funcref", func.__qualname__])
    walk.visited[marker] = True
    nested, walk.nested = walk.nested, True
    if nested and func.__name__ == "<lambda>":
        ast_dump, ast_json, notes = _lambda_entry(code)  # a lambda a helper module holds
    else:
        ast_dump, ast_json, notes = _function_ast_entry(func)
    where = f"callback {_qualname(func)}"
    names = _reach_names(code, notes)
    seen = {"__functions__": walk.visited}
    defaults = _encode_items(func.__defaults__, f"the defaults of {where}", walk, names, seen)
    if func.__kwdefaults__:
        walk.cacheable = False
    kwdefaults = (_value_text if walk.text else _encode_in)(
        func.__kwdefaults__, f"the keyword defaults of {where}", seen
    )
    closure = {}
    cells = {}
    for var, cell in zip(code.co_freevars, func.__closure__ or ()):
        try:
            contents = cell.cell_contents
        except ValueError:
            walk.cacheable = False
            closure[var] = _EMPTY_CELL_TEXT if walk.text else ["emptycell"]
            continue
        walk.attrs.append((cell, "cell_contents", contents))
        cells[var] = contents
        closure[var] = _encode_ref(contents, f"the closure variable {var!r} of {where}", walk, names, seen)
    glob = {}
    namespace = func.__globals__
    for gname in _global_names(code):
        value = namespace.get(gname, _MISSING)
        walk.items.append((namespace, gname, value))
        if value is not _MISSING:  # otherwise a builtin or an attribute name
            glob[gname] = _encode_ref(
                value, f"the global {gname!r} used by callback {_qualname(func)}", walk, names, seen, gname=gname
            )
    material = {
        "name": func.__qualname__,
        "defaults": defaults,
        "kwdefaults": kwdefaults,
        "closure": closure,
        "globals": glob,
    }
    imports = _encode_imports(func, notes, walk, names, seen)
    if imports:  # absent unless the function imports inside its body (so older keys stay as they were)
        material["imports"] = imports
    whole = _encode_whole_modules(func, notes, cells, walk, seen)
    if whole:
        material["modules"] = whole
    wrapped = func.__dict__.get("__wrapped__", _MISSING)
    if wrapped is not _MISSING:  # a user's wrapper: the wrapped function runs too
        walk.items.append((func.__dict__, "__wrapped__", wrapped))
        material["wrapped"] = _encode_ref(wrapped, f"the function {_qualname(func)} wraps", walk, names, seen)
    for construct, line in notes.dynamic:
        _warn_unfollowable(func, construct, line)
    if not walk.text:
        material["ast"] = ast_dump
        return ["function", material]
    fields = {k: (v if isinstance(v, str) else _object_text(v)) for k, v in material.items()}
    fields["ast"] = ast_json
    fields["name"] = _jstr(func.__qualname__)
    return f'["function",{_object_text(fields)}]'


_EMPTY_CELL_TEXT = '["emptycell"]'
_MISSING = object()
_IMMUTABLE = frozenset({int, float, complex, str, bytes, bool, type(None)})
_TEXT_CACHE = {}
_WARNED = {}


_LAMBDAS = {}
_NO_NOTES = None


def _code_text(code):
    """A deterministic description of a code object: its bytecode, constants and names."""
    consts = [
        _code_text(c)
        if isinstance(c, types.CodeType)
        else f"float:{c.hex()}"
        if type(c) is float
        else f"{type(c).__name__}:{c!r}"
        for c in code.co_consts
    ]
    return repr(
        (
            code.co_code.hex(),
            consts,
            code.co_names,
            code.co_varnames,
            code.co_freevars,
            code.co_cellvars,
            code.co_argcount,
            code.co_kwonlyargcount,
            code.co_flags,
        )
    )


def _lambda_entry(code):
    """``(dump, JSON text, notes)`` of a lambda reached from a callback: its bytecode stands in for
    its syntax tree (a lambda's source cannot be isolated from its line); memoised per code object."""
    entry = _memo_get(_LAMBDAS, code)
    if entry is None:
        dump = "Lambda:" + _code_text(code)
        entry = _memo_put(_LAMBDAS, code, (dump, _dumps(dump), Notes((), (), (), ())))
    return entry


def _stable(value):
    """True for values that cannot change in place (so an identity check vouches for them)."""
    kind = type(value)
    if kind in _IMMUTABLE:
        return True
    return (kind is tuple or kind is frozenset) and all(_stable(v) for v in value)


_NAMES = {}


def _reach_names(code, notes):
    """Attribute names a function may look up on a module it reaches (a superset; memoised per code object)."""
    names = _memo_get(_NAMES, code)
    if names is None:
        names = set(_global_names(code))
        names.update(notes.getattr_names)
        for _, _, imported in notes.imports:
            if imported:
                names.update(imported)
        names = _memo_put(_NAMES, code, frozenset(names))
    return names


def _is_ref(value):
    """Functions, modules, classes and builtins: encoded by what they are, not as data."""
    if isinstance(value, (types.ModuleType, type, types.BuiltinFunctionType, np.ufunc)):
        return True
    return type(_unwrap(value)) is types.FunctionType


def _encode_items(items, where, walk, names, seen):
    """A tuple of defaults: references by :func:`_encode_ref`, data as :func:`encode_value` does."""
    if items is None:
        return _NONE_TEXT if walk.text else ["none"]
    out = [_encode_ref(v, where, walk, names, seen) for v in items]
    return '["tuple",[' + ",".join(out) + "]]" if walk.text else ["tuple", out]


def _named_module(name):
    """What :func:`_named` gives for the module ``name``, without the module object."""
    return ["named", "module", f"?.{name}"]


def _named(value):
    """The encoding of a value recorded by name only (as before: ``["named", kind, qualname]``)."""
    return ["named", type(value).__name__, _qualname(value) if hasattr(value, "__name__") else None]


def _encode_ref(value, where, walk, names, seen, gname=None):
    """Encode a value a function reaches (a global, a default, a closure cell, a module attribute).

    User functions, classes and modules are followed (:func:`_callback`, :func:`_encode_class`,
    :func:`_encode_module`); installed ones are recorded by name with their distribution's
    name and version, the standard library's by name; data is encoded by value.
    """
    registry = getattr(value, "registry", None) if callable(value) and hasattr(value, "dispatch") else None
    if registry is not None and hasattr(registry, "items"):  # functools.singledispatch: every implementation
        walk.sizes.append((registry, len(registry)))
        impls = {_qualname(k): _encode_ref(f, where, walk, names, seen) for k, f in registry.items()}
        return f'["singledispatch",{_object_text(impls)}]' if walk.text else ["singledispatch", impls]
    inner = value if isinstance(value, type) else _unwrap(value)
    if type(inner) is types.FunctionType:
        module = _defined_in(inner)
        kind = module_kind(module)
        if kind == "user":
            return _callback(inner, walk)
        if kind == "stdlib":
            return walk.out(["extfunc", _qualname(inner)])
        return walk.out(["libfunc", _qualname(inner), *distribution(module)])
    if isinstance(value, types.ModuleType):
        kind = module_kind(value.__name__)
        if kind == "user":
            return _encode_module(value, names, walk, seen, whole=False)
        return walk.out(
            _named(value) if kind == "stdlib" else ["libmodule", value.__name__, *distribution(value.__name__)]
        )
    if isinstance(value, type):
        kind = module_kind(value.__module__)
        if kind == "user":
            return _encode_class(value, walk, seen)
        return walk.out(
            _named(value) if kind == "stdlib" else ["libclass", _qualname(value), *distribution(value.__module__)]
        )
    if isinstance(value, types.BuiltinFunctionType):
        module = getattr(value, "__module__", None)
        if module and module_kind(module) == "lib":
            return walk.out(["libfunc", _qualname(value), *distribution(module)])
        return walk.out(_named(value))
    if isinstance(value, np.ufunc):
        return walk.out(["ufunc", value.__name__, *distribution("numpy")])
    if _named_only(value):
        return walk.out(_named(value))
    if not _stable(value):
        walk.cacheable = False
    kind = type(value)
    if (
        not (callable(getattr(value, "to_dict", None)) and callable(getattr(kind, "from_dict", None)))
        and kind.__module__ not in ("builtins", "numpy")
        and module_kind(kind.__module__) == "user"
    ):
        return _encode_instance(value, where, walk, names, seen)
    try:
        return _value_text(value, where, seen) if walk.text else _encode_in(value, where, seen)
    except UnhashableError as exc:
        if gname is None:
            raise
        raise UnhashableError(
            f"{exc}. A callback may only read module-level constants of supported types; "
            f"pass {gname!r} to it as a keyword parameter instead"
        ) from None


def _encode_instance(value, where, walk, names, seen):
    """An instance of a user class: the class (followed) and the instance's attributes."""
    marker = ("instance", id(value))
    if marker in walk.visited:
        return walk.out(["instanceref", _qualname(type(value))])
    walk.visited[marker] = True
    cls = _encode_class(type(value), walk, seen)
    state = getattr(value, "__dict__", None)
    if state is None:  # __slots__
        state = {
            n: getattr(value, n)
            for c in type(value).__mro__
            for n in getattr(c, "__slots__", ())
            if isinstance(n, str) and hasattr(value, n)
        }
    attrs = {str(k): _encode_ref(v, f"{where}.{k}", walk, names, seen) for k, v in sorted(state.items())}
    return f'["instance",{cls},{_object_text(attrs)}]' if walk.text else ["instance", cls, attrs]


def _encode_module(module, names, walk, seen, whole):
    """A user module: the encodings of its attributes that ``names`` names (all of them when ``whole``)."""
    namespace = vars(module)
    if whole:
        attrs = sorted(n for n in namespace if not n.startswith("__"))
        walk.sizes.append((namespace, len(namespace)))
    else:
        attrs = sorted(n for n in names if n in namespace)
        walk.items.extend((namespace, n, _MISSING) for n in names if n not in namespace)
        if "__getattr__" in namespace:  # PEP 562: names it makes up are reached through it
            attrs.append("__getattr__")
    marker = ("module", id(module), whole, tuple(attrs))
    if marker in walk.visited:
        return walk.out(["moduleref", module.__name__])
    walk.visited[marker] = True
    encoded = {}
    for name in attrs:
        value = namespace[name]
        walk.items.append((namespace, name, value))
        where = f"{module.__name__}.{name}"
        try:
            encoded[name] = _encode_ref(value, where, walk, names, seen)
        except UnhashableError as exc:
            # an attribute the code may not even use (the names are a superset): leave it out, say so
            walk.cacheable = False
            encoded[name] = walk.out(["unkeyed", _qualname(type(value))])
            _warn_unfollowable(module, f"{where} ({exc})", None)
    if walk.text:
        return f'["module",{_jstr(module.__name__)},{_object_text(encoded)}]'
    return ["module", module.__name__, encoded]


_SKIPPED_MEMBERS = frozenset(
    {
        "__dict__",
        "__weakref__",
        "__module__",
        "__doc__",
        "__qualname__",
        "__annotations__",
        "__slots__",
        "__firstlineno__",
        "__static_attributes__",
    }
)


def _encode_class(cls, walk, seen):
    """A user class: its normalised source, the encodings of its methods and data, its bases."""
    marker = ("class", id(cls))
    if marker in walk.visited:
        return walk.out(["classref", cls.__qualname__])
    walk.visited[marker] = True
    source = _class_source(cls)
    if source is None:
        _warn_unfollowable(cls, "a class whose source cannot be read", None)
    members = vars(cls)
    walk.sizes.append((members, len(members)))
    encoded = {}
    for name in sorted(members):
        if name in _SKIPPED_MEMBERS:
            continue
        value = members[name]
        walk.items.append((members, name, value))
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if isinstance(value, property):
            parts = [_encode_member(f, walk, seen) for f in (value.fget, value.fset, value.fdel)]
            encoded[name] = ('["property",[' + ",".join(parts) + "]]") if walk.text else ["property", parts]
            continue
        if type(_unwrap(value)) is types.FunctionType:
            if _unwrap(value).__code__.co_filename.startswith("<"):
                continue  # generated from the class body (dataclass __init__, ...): covered by its source
            encoded[name] = _callback(value, walk)
        elif name.startswith("__") and not _is_ref(value):
            continue
        else:
            try:
                encoded[name] = _encode_ref(value, f"{_qualname(cls)}.{name}", walk, frozenset(), seen)
            except UnhashableError:
                walk.cacheable = False
                encoded[name] = walk.out(["unkeyed", _qualname(type(value))])
    bases = [
        _encode_ref(b, f"a base of {_qualname(cls)}", walk, frozenset(), seen) for b in cls.__bases__ if b is not object
    ]
    meta = type(cls)
    if meta is not type and module_kind(meta.__module__) == "user":  # its methods are the class's too
        bases.append(_encode_ref(meta, f"the metaclass of {_qualname(cls)}", walk, frozenset(), seen))
    if walk.text:
        return f'["class",{_jstr(cls.__qualname__)},{_dumps(source)},{_object_text(encoded)},[{",".join(bases)}]]'
    return ["class", cls.__qualname__, source, encoded, bases]


def _encode_member(func, walk, seen):
    if func is None:
        return walk.out(["none"])
    return _encode_ref(func, "a property", walk, frozenset(), seen)


def _encode_imports(func, notes, walk, names, seen):
    """``{import text: encoding}`` of the imports inside a function's body."""
    if not notes.imports:
        return {}
    import importlib

    package = func.__globals__.get("__package__") or (func.__module__ or "").rpartition(".")[0]
    encoded = {}
    for module_name, level, imported in notes.imports:
        text = "." * level + module_name
        located = find_module(text, package if level else None)
        if located is not None and located[2] != "user":
            # installed code is keyed by module name and version, whatever names are taken from it
            # and whether or not it is imported yet (so no import here: jax, ...)
            absolute = located[0]
            encoded[text] = walk.out(
                _named_module(absolute) if located[2] == "stdlib" else ["libmodule", absolute, *distribution(absolute)]
            )
            continue
        try:
            module = importlib.import_module(text, package if level else None)
        except Exception as exc:
            _warn_unfollowable(func, f"import {text} (it failed here: {type(exc).__name__}: {exc})", None)
            encoded[text] = walk.out(["unimportable", text])
            continue
        walk.items.append((sys.modules, module.__name__, module))
        if imported is None:
            encoded[text] = _encode_ref(module, f"the module {text} imported by {_qualname(func)}", walk, names, seen)
            continue
        for name in imported:
            if name == "*":
                encoded[f"{text}:*"] = (
                    _encode_module(module, names, walk, seen, whole=True)
                    if module_kind(module.__name__) == "user"
                    else _encode_ref(module, text, walk, names, seen)
                )
                continue
            value = getattr(module, name, _MISSING)
            if value is _MISSING:
                try:
                    value = importlib.import_module(f"{module.__name__}.{name}")
                except Exception:
                    encoded[f"{text}:{name}"] = walk.out(["unimportable", f"{text}.{name}"])
                    continue
            else:
                walk.items.append((vars(module), name, value))
            encoded[f"{text}:{name}"] = _encode_ref(
                value, f"{name} imported from {text} by {_qualname(func)}", walk, names, seen
            )
    return encoded


def _encode_whole_modules(func, notes, cells, walk, seen):
    """User modules whose attributes a function looks up by computed names: followed whole."""
    encoded = {}
    for target in notes.getattr_targets:
        value = cells.get(target, func.__globals__.get(target, _MISSING))
        if isinstance(value, types.ModuleType):
            if module_kind(value.__name__) == "user":
                encoded[target] = _encode_module(value, frozenset(), walk, seen, whole=True)
        else:  # a local variable or another object: what it holds is only known at run time
            _warn_unfollowable(func, f"getattr({target}, <computed name>)", None)
    return encoded


def _warn_unfollowable(obj, construct, line):
    """Warn once per function (or class) that the key cannot follow ``construct``."""
    token = getattr(obj, "__code__", obj)
    warned = _memo_get(_WARNED, token)
    if warned is not None and construct in warned:
        return
    if warned is None:
        warned = _memo_put(_WARNED, token, set())
    warned.add(construct)
    import warnings

    code = getattr(obj, "__code__", None)
    place = f" ({code.co_filename}:{line})" if code is not None and line else ""
    name = obj.__name__ if isinstance(obj, types.ModuleType) else _qualname(obj)
    warnings.warn(
        f"the graph key of {name} cannot follow {construct}{place}: an edit reached only "
        "through it does not change the key, so a cached graph could be stale; pass what it reaches "
        "as a parameter or import it by name",
        KeyWarning,
        stacklevel=4,
    )


def top_callback_text(callback):
    """``_callback(callback, _Walk({}, True))``, remembered while what it depends on is unchanged.

    The walk notes every function, module attribute, class member and closure cell it
    read; while each is still the same object, and nothing it encoded can change in place,
    the text is reused (a cache hit's key then costs a few identity checks).
    """
    func = _unwrap(callback)
    if type(func) is not types.FunctionType:
        return _callback(callback, _Walk({}, True))
    entry = _memo_get(_TEXT_CACHE, func)
    if entry is not None and entry[0].holds():
        return entry[1]
    walk = _Walk({}, True)
    text = _callback(callback, walk)
    if walk.cacheable:
        _memo_put(_TEXT_CACHE, func, (walk, text))
    return text


def _encode_in(value, where, seen):
    return encode_value(value, _seen=seen, _where=where)


def _is_library(func):
    """True for functions from the standard library or installed packages (phasic included)."""
    return module_kind(_defined_in(func)) != "user"


_values.register_function_encoder(_is_library, callback_material)
