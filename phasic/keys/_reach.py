"""Where a callback's code reaches, for :mod:`phasic.keys`.

A graph key must change whenever the code a callback runs changes.  That code is the
callback, and everything of the *user's* that it reaches: helpers in the same module or
in other modules, their helpers, module constants, classes and their methods.  This
module draws the line between user code and installed code and reads, from a function's
syntax tree, what the key cannot see from the function object alone:

* :func:`module_kind` -- ``"user"``, ``"stdlib"`` or ``"lib"``.  User code is any module
  whose source file lies outside the standard library and the site directories, so a
  script, a module next to it, a package on ``PYTHONPATH`` and an editable install of the
  user's own package are all user code.  phasic itself counts as installed code.
* :func:`distribution` -- ``(distribution name, version)`` of installed code, read from
  the ``*.dist-info`` directory names beside the package (no metadata files are parsed
  in the common case: importing ``importlib.metadata`` costs many times a whole cache
  hit; docs/performance.md).
* :func:`scan` -- the imports inside a function body and the constructs whose targets
  cannot be known before the function runs (``exec``, ``eval``, ``__import__``, a
  computed ``getattr``, ``globals()``, a ``global`` statement).

Both answers are memoised per process: installed code does not change while a process
runs, and what :func:`scan` reads is memoised with the function's syntax tree per code
object (see :mod:`phasic.keys._source`).
"""

from __future__ import annotations

import os
import sys
from collections import namedtuple

__all__ = ["Notes", "scan", "module_kind", "path_kind", "find_module", "distribution"]

#: What :func:`scan` reads from a function's syntax tree.
#: ``imports``: ``(module, level, names)`` per import statement (``names`` is None for
#: ``import a.b``, which binds ``a``; ``module`` is the module bound for ``import a.b as x``);
#: ``dynamic``: ``(construct, line)`` the key cannot follow; ``getattr_names``: constant
#: attribute names given to ``getattr``/``hasattr``; ``getattr_targets``: names whose
#: attributes are looked up by computed names (followed whole when they are user modules).
Notes = namedtuple("Notes", "imports dynamic getattr_names getattr_targets")

_DYNAMIC_CALLS = {
    "exec": "exec()",
    "eval": "eval()",
    "compile": "compile()",
    "__import__": "__import__()",
    "globals": "globals()",
    "vars": "vars()",
}


def scan(node, line_offset=0):
    """Read the imports and the unfollowable constructs of a function's syntax tree.

    Parameters
    ----------
    node : ast.FunctionDef or ast.AsyncFunctionDef
        The function (nested functions, lambdas and comprehensions are included).
    line_offset : int
        Added to the tree's line numbers to give the file's.

    Returns
    -------
    Notes
    """
    import ast

    imports, dynamic, names, targets = [], [], set(), set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Import):
            for alias in sub.names:
                imports.append((alias.name if alias.asname else alias.name.split(".")[0], 0, None))
                if alias.asname is None and "." in alias.name:
                    imports.append((alias.name, 0, None))  # imported too, reached through the top name
        elif isinstance(sub, ast.ImportFrom):
            imports.append((sub.module or "", sub.level, tuple(a.name for a in sub.names)))
        elif isinstance(sub, ast.Global):
            dynamic.append(
                (f"global {', '.join(sub.names)} (module state changed at run time)", sub.lineno + line_offset)
            )
        elif (
            isinstance(sub, ast.Subscript)
            and isinstance(sub.value, ast.Attribute)
            and sub.value.attr == "modules"
            and isinstance(sub.value.value, ast.Name)
            and sub.value.value.id == "sys"
        ):
            dynamic.append(("sys.modules[...]", sub.lineno + line_offset))
        elif isinstance(sub, ast.Call):
            func = sub.func
            name = func.id if isinstance(func, ast.Name) else None
            if name in ("getattr", "hasattr") and len(sub.args) >= 2:
                attr = sub.args[1]
                if isinstance(attr, ast.Constant) and isinstance(attr.value, str):
                    names.add(attr.value)
                elif isinstance(sub.args[0], ast.Name):
                    targets.add(sub.args[0].id)
                else:
                    dynamic.append(("getattr() with a computed name", sub.lineno + line_offset))
            elif name in _DYNAMIC_CALLS:
                dynamic.append((_DYNAMIC_CALLS[name], sub.lineno + line_offset))
            elif (
                isinstance(func, ast.Attribute)
                and func.attr == "import_module"
                and not (sub.args and isinstance(sub.args[0], ast.Constant))
            ):
                dynamic.append(("import_module() with a computed name", sub.lineno + line_offset))
    return Notes(tuple(imports), tuple(dynamic), tuple(sorted(names)), tuple(sorted(targets)))


# --------------------------------------------------------------------- user code or installed


_KIND = {}
_ROOTS = []


def _library_roots():
    """Real paths of the standard library and of every site directory (computed once)."""
    if not _ROOTS:
        import sysconfig

        roots = set()
        paths = sysconfig.get_paths()
        for name in ("stdlib", "platstdlib", "purelib", "platlib"):
            if paths.get(name):
                roots.add(paths[name])
        try:
            import site

            roots.update(site.getsitepackages())
            roots.add(site.getusersitepackages())
        except (AttributeError, ImportError):  # a virtualenv's old site.py
            pass
        stdlib = {os.path.realpath(paths[n]) for n in ("stdlib", "platstdlib") if paths.get(n)}
        _ROOTS.append(
            (
                tuple(sorted({os.path.realpath(r) + os.sep for r in roots if r})),
                tuple(sorted(r + os.sep for r in stdlib)),
            )
        )
    return _ROOTS[0]


def _module_file(module):
    path = getattr(module, "__file__", None)
    if not path:
        spec_path = getattr(module, "__path__", None)  # a namespace package
        path = next(iter(spec_path), None) if spec_path is not None else None
    return path


def module_kind(module_name):
    """``"user"``, ``"stdlib"`` or ``"lib"`` (installed code, phasic included).

    Parameters
    ----------
    module_name : str or None
        A module's ``__name__`` (a function's ``__module__``).

    Examples
    --------
    >>> module_kind("math"), module_kind("numpy"), module_kind("phasic.graph")
    ('stdlib', 'lib', 'lib')
    """
    kind = _KIND.get(module_name)
    if kind is not None:
        return kind
    top = (module_name or "").split(".")[0]
    module = sys.modules.get(module_name)
    path = _module_file(module) if module is not None else None
    if top == "phasic":
        kind = "lib"
    elif path:  # by where its file is: a user's colorsys.py beside the script is user code
        kind = path_kind(path)
    elif top in sys.stdlib_module_names or top == "builtins":
        kind = "stdlib"  # built into the interpreter, or not imported yet
    else:
        kind = "user"  # unknown or without a file: keyed by source (which fails clearly if there is none)
    if module is not None or kind != "user":
        _KIND[module_name] = kind
    return kind


def path_kind(path):
    """:func:`module_kind` of the module whose file (or namespace package folder) is ``path``."""
    real = os.path.realpath(path)
    libs, stdlib = _library_roots()
    parts = real.split(os.sep)
    in_site = "site-packages" in parts or "dist-packages" in parts
    if real.startswith(stdlib) and not in_site:
        return "stdlib"
    return "lib" if in_site or real.startswith(libs) else "user"


def _spec_path(spec):
    if spec.origin not in (None, "built-in", "frozen", "namespace"):
        return spec.origin
    return next(iter(spec.submodule_search_locations or ()), None)


def find_module(name, package=None):
    """``(absolute name, file, kind)`` of a module, importing nothing of installed code.

    Installed code is recognised from its top-level package's location (finding
    ``jax.numpy`` would import ``jax``); user modules are located as the import system
    would (their parent packages may be imported).  Returns None when it cannot be found.
    """
    import importlib.util

    try:
        absolute = importlib.util.resolve_name(name, package) if name.startswith(".") else name
        module = sys.modules.get(absolute)
        if module is not None:
            return absolute, _module_file(module), module_kind(absolute)
        top = absolute.split(".")[0]
        if top == "phasic":
            return absolute, None, "lib"
        loaded = sys.modules.get(top)
        top_path = _module_file(loaded) if loaded is not None else None
        if top_path is None:
            top_spec = importlib.util.find_spec(top)
            if top_spec is None:
                return None
            top_path = _spec_path(top_spec)
        if top_path is None:
            return absolute, None, "stdlib" if top in sys.stdlib_module_names else "user"
        kind = path_kind(top_path)
        if kind != "user" or absolute == top:
            return absolute, top_path, kind
        spec = importlib.util.find_spec(absolute)  # a user package: importing its parents is fine
    except (ImportError, ValueError, AttributeError):
        return None
    if spec is None:
        return None
    path = _spec_path(spec)
    return absolute, path, path_kind(path) if path else "user"


_DIST = {}
_SITE_DISTS = {}


def _normalise(name):
    return name.replace("-", "_").replace(".", "_").lower()


def _site_dists(site_dir):
    """``{normalised name: (name, version)}`` of the ``*.dist-info``/``*.egg-info`` in ``site_dir``."""
    table = _SITE_DISTS.get(site_dir)
    if table is None:
        table = {}
        try:
            names = os.listdir(site_dir)
        except OSError:
            names = []
        for entry in names:
            for suffix in (".dist-info", ".egg-info"):
                if entry.endswith(suffix) and "-" in entry:
                    name, _, version = entry[: -len(suffix)].partition("-")
                    table.setdefault(_normalise(name), (name, version.split("-")[0]))
        _SITE_DISTS[site_dir] = table
    return table


def _owner(site_dir, top, rel):
    """The distribution in ``site_dir`` whose ``RECORD`` lists ``rel`` (or whose ``top_level.txt``
    names ``top``, for a plain top-level package)."""
    try:
        names = sorted(os.listdir(site_dir))
    except OSError:
        return None
    for entry in names:
        if not entry.endswith((".dist-info", ".egg-info")):
            continue
        for meta in ("RECORD", "top_level.txt"):
            try:
                with open(os.path.join(site_dir, entry, meta), encoding="utf-8", errors="replace") as fh:
                    text = fh.read(1 << 22)
            except OSError:
                continue
            lines = {line.split(",")[0].strip() for line in text.splitlines()}
            if rel in lines or (meta == "top_level.txt" and "." not in top and top in lines):
                name, _, version = entry.rsplit(".", 1)[0].partition("-")
                return name, version.split("-")[0]
    return None


def distribution(module_name):
    """``(distribution name, version)`` of the installed code ``module_name`` belongs to.

    Parameters
    ----------
    module_name : str
        A module's ``__name__``.

    Returns
    -------
    tuple of str
        The name and version from the ``*.dist-info`` directory of the distribution that
        installed the module's package: found by the package's name, else by the
        distribution's ``top_level.txt`` or ``RECORD``.  A namespace package (``google``)
        is resolved through its first regular sub-package (``google.protobuf``).  For
        phasic, ``("phasic", phasic.__version__)``; where no distribution owns the
        module, its package name and ``__version__`` (or ``"unknown"``).
    """
    parts = (module_name or "?").split(".")
    if parts[0] == "phasic":
        module = sys.modules.get("phasic")
        return ("phasic", str(getattr(module, "__version__", "unknown")))
    # the shortest prefix that is a regular module or package: what a distribution installs
    prefix, path = parts[0], None
    for i in range(1, len(parts) + 1):
        prefix = ".".join(parts[:i])
        found = _DIST.get(prefix)
        if found is not None:
            return found
        path = _regular_file(prefix)
        if path is not None:
            break
    found = None
    if path is not None:
        real = os.path.realpath(path)
        depth = prefix.count(".") + (2 if os.path.basename(real) == "__init__.py" else 1)
        site_dir = real
        for _ in range(depth):
            site_dir = os.path.dirname(site_dir)
        if "." not in prefix:
            found = _site_dists(site_dir).get(_normalise(prefix))
        if found is None:
            rel = os.path.relpath(real, site_dir).replace(os.sep, "/")
            found = _owner(site_dir, prefix, rel)
    if found is None:
        version = getattr(sys.modules.get(prefix), "__version__", None)
        found = (prefix, version if isinstance(version, str) else "unknown")
    _DIST[prefix] = found
    return found


def _regular_file(name):
    """The file of module ``name`` (``__init__.py`` for a package); None for a namespace package."""
    module = sys.modules.get(name)
    path = getattr(module, "__file__", None) if module is not None else None
    if path is None and module is None:
        import importlib.util

        try:  # the parents of ``name`` are namespace packages here: finding it runs no package code
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError, AttributeError):
            spec = None
        path = _spec_path(spec) if spec is not None else None
        if path is not None and os.path.isdir(path):
            path = None
    return path
