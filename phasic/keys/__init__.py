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
  (numbers, str, bool, None, tuples/lists/dicts/sets of those, numpy arrays).
* The key follows the callback into **all of the user's code it reaches**,
  transitively and cycle-safe (:mod:`phasic.keys._reach` draws the line: user
  code is any module whose file lies outside the standard library and the site
  directories).  A user function reached as a global, a default, a closure
  cell, a ``module.attr`` (dotted chains included), or an import inside the
  body is encoded like the callback; a user class by its normalised source,
  its methods (followed the same way), its data and its bases; a user module
  by the attributes the code can name (a superset: every name the code
  mentions), or whole when the code looks attributes up by a computed name.
  Installed code is recorded by distribution name and version
  (``["libfunc"|"libmodule"|"libclass", qualname, dist, version]``), the
  standard library by name.  Constructs whose targets are only known at run
  time (``exec``, ``eval``, ``__import__``, ``globals()``, a computed
  ``getattr`` on anything but a module, a ``global`` statement) give one
  :class:`phasic.exceptions.KeyWarning` per callback (see docs/store.md).
  User decorators are keyed with the function they wrap, singledispatch
  functions with every implementation, user classes with a user metaclass,
  instances of user classes by class and attributes, a user module's
  ``__getattr__`` with the module.  A callback reaching only plain functions
  and constants of its own module and the standard library keeps the key it
  had before helpers were followed; one that reads installed code, a class or
  another module of the user's was re-keyed once (docs/store.md).
  The AST dump format depends on the Python minor version, so a different
  Python gives different keys (a cache miss, never a wrong hit).

Speed
-----
A cache hit must cost less than rebuilding even a ~50-vertex graph
(docs/performance.md), so the immutable parts of a key are memoised per code
object (a code object never changes while it lives): the normalised AST dump
and its JSON text, the names the code reads and its imports.  The callback's whole text is reused
while every function, module attribute, class member and closure cell the walk
read is still the same object and nothing it encoded can change in place (a
list or an array constant); otherwise it is encoded afresh.  Parameters, IPV
and options are encoded on every call.  :func:`graph_key` assembles the canonical JSON
text from those parts; the result is identical to
``key_from_material(graph_key_material(...))``, only faster.  SHA-256 comes
from :mod:`hashlib`, or, while hashlib is not yet imported (loading OpenSSL
costs more than a small graph's cache hit) and little has been hashed, from the
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

from phasic.keys._code import callback_material
from phasic.keys._graph import (
    FORMAT_VERSION,
    GRAPH_OPTIONS,
    KEY_OPTION_DEFAULTS,
    KEY_SCHEMA,
    callback_attrs,
    graph_key,
    graph_key_material,
    key_from_material,
    split_graph_kwargs,
)
from phasic.keys._values import canonical_json, encode_value, sha256

__all__ = [
    "FORMAT_VERSION",
    "KEY_SCHEMA",
    "GRAPH_OPTIONS",
    "KEY_OPTION_DEFAULTS",
    "split_graph_kwargs",
    "encode_value",
    "canonical_json",
    "callback_material",
    "callback_attrs",
    "graph_key_material",
    "graph_key",
    "key_from_material",
    "sha256",
]
