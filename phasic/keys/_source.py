"""Normalised source of functions and classes for :mod:`phasic.keys`, memoised per code object.

A key encodes a callback by its normalised source: ``inspect.getsource`` ->
``textwrap.dedent`` -> ``ast.parse`` -> the function node without decorators
and docstring -> ``ast.dump(..., include_attributes=False)``.  Getting there
costs more per function than a whole cache hit (docs/performance.md), so the
results are memoised per code object: a
code object is immutable, so its source dump never changes while it lives
(the memo holds the code object, so its id is not reused meanwhile).

:func:`_function_source` finds the source as :func:`inspect.getsource` does
but without inspect's first-call costs (indexing every loaded module by file,
compiling tokenize's regular expressions); where it cannot vouch for the end
of the block it answers None and inspect decides.  Checked against
:func:`inspect.getsource` on ~27,000 functions of the standard library,
numpy, scipy, h5py, jax, dask and phasic: the normalised dumps are identical.
"""

from __future__ import annotations

import json
import os
import types

from phasic.exceptions import UnhashableError

# Canonical JSON text (sorted keys, compact, ASCII); one encoder object, built once.
_dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode
_jstr = json.encoder.encode_basestring_ascii  # what _dumps gives for a str, without the encoder setup


def _qualname(obj):
    return f"{getattr(obj, '__module__', None) or '?'}.{getattr(obj, '__qualname__', getattr(obj, '__name__', '?'))}"


# Per-code-object memos: ``id(code) -> (code, value)``.  The code object is kept
# in the value so its id cannot be reused by another code object while the
# entry lives; a code object is immutable, so what is derived from it never
# goes stale.  Bounded: cleared when it reaches _MEMO_MAX entries.
_AST_CACHE = {}
_NAMES_CACHE = {}
_MEMO_MAX = 4096


def _memo_get(table, code):
    entry = table.get(id(code))
    return entry[1] if entry is not None and entry[0] is code else None


def _memo_put(table, code, value):
    if len(table) >= _MEMO_MAX:
        table.clear()
    table[id(code)] = (code, value)
    return value


def _function_ast(func):
    """The normalised AST dump of ``func``'s definition (memoised per code object)."""
    return _function_ast_entry(func)[0]


def _function_ast_entry(func):
    """``(dump, JSON text of the dump, reach notes)`` of ``func`` (memoised per code object).

    The notes (:func:`phasic.keys._reach.scan`) list the imports inside the function and
    the constructs the key cannot follow, read from the same parse.
    """
    code = getattr(func, "__code__", None)
    if code is not None:
        cached = _memo_get(_AST_CACHE, code)
        if cached is not None:
            return cached
    dump, notes = _function_ast_uncached(func, with_notes=True)
    entry = (dump, _dumps(dump), notes)
    if code is not None:
        _memo_put(_AST_CACHE, code, entry)
    return entry


def _function_ast_uncached(func, with_notes=False):
    """The normalised AST dump of ``func`` (and its reach notes when ``with_notes``)."""
    import ast
    import inspect
    import textwrap

    code = getattr(func, "__code__", None)
    # the code's own name and lines: functools.wraps gives a wrapper the wrapped function's
    # __name__ and __wrapped__, which inspect.getsource(func) would follow
    name = code.co_name if code is not None else getattr(func, "__name__", "?")
    if name == "<lambda>":
        raise UnhashableError(
            f"cannot key the lambda {func!r}: the source of a lambda cannot be isolated reliably; "
            "define the callback with def in a file"
        )
    node = None
    for exact in (False, True):
        try:
            source = inspect.getsource(code if code is not None else func) if exact else _function_source(func)
        except (OSError, TypeError) as exc:
            raise UnhashableError(
                f"cannot key the callback {_qualname(func)}: its source code is not retrievable ({exc}); "
                "define it with def in a file (a module or script), not interactively or with exec"
            ) from None
        if source is None:
            continue
        try:
            tree = ast.parse(textwrap.dedent(source))
        except SyntaxError as exc:
            if not exact:
                continue  # the shortcut cut the block wrongly: ask inspect
            raise UnhashableError(
                f"cannot key the callback {_qualname(func)}: its source could not be parsed ({exc}); "
                "define it with def in a file"
            ) from None
        node = next(
            (n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name),
            None,
        )
        if node is not None and (exact or len(tree.body) == 1):
            break
        node = None
    if node is None:
        raise UnhashableError(
            f"cannot key the callback {_qualname(func)}: no 'def {name}' found in its source; "
            "define it with def in a file"
        )
    node.decorator_list = []
    notes = None
    if with_notes:
        from phasic.keys._reach import scan

        notes = scan(node, getattr(getattr(func, "__code__", None), "co_firstlineno", 1) - 1)
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        if isinstance(body[0].value.value, str) and len(body) > 1:
            node.body = body[1:]
    dump = ast.dump(node, include_attributes=False)
    return (dump, notes) if with_notes else dump


def _function_source(func):
    """``inspect.getsource(func)`` without its first-call costs, or None when unsure.

    In a fresh process :func:`inspect.getsource` costs several ms:
    :func:`inspect.getmodule` indexes every loaded module by file, and
    :func:`inspect.getblock` compiles :mod:`tokenize`'s regular expressions.
    For a function whose code comes from an existing ``.py`` file this takes
    the file's lines from :mod:`linecache` (revalidated), finds the
    definition line as inspect does, and ends the block at the last line the
    code's instructions cover (see :func:`_block_end`).  None means: use
    inspect (other files, Python < 3.11, a block end it cannot vouch for);
    the caller also uses inspect when the block does not parse to one
    ``def`` of the function's name.
    """
    import linecache

    code = func.__code__
    file = code.co_filename
    if not (file.endswith(".py") and os.path.isfile(file)):
        return None
    linecache.checkcache(file)
    lines = linecache.getlines(file, func.__globals__)
    lnum = code.co_firstlineno - 1
    if not lines or not 0 <= lnum < len(lines):
        return None
    words = lines[lnum].split(None, 2)  # inspect walks back to a def/async def/@ (or lambda) line
    if not words or not (words[0] == "def" or words[0][:1] == "@" or words[:2] == ["async", "def"]):
        return None
    end = _block_end(code, lines, lnum)
    return None if end is None else "".join(lines[lnum:end])


def _last_line(code):
    """The last source line any instruction of ``code`` or its nested code objects covers."""
    last = 0
    for _, end, _, _ in code.co_positions():
        if end is not None and end > last:
            last = end
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            last = max(last, _last_line(const))
    return last


def _block_end(code, lines, lnum):
    """Where the definition starting at ``lines[lnum]`` ends (exclusive), or None when unsure.

    The code's last covered line ends the block exactly as
    :func:`inspect.getblock` ends it (after the last logical line) unless the
    body ends in statements that compile to nothing (``pass``, a lone
    constant, ``if False:`` ...), which shows as a following code line
    indented deeper than the ``def``, or is followed by comment lines that
    getblock may count in (indented deeper than the ``def``), or tabs make
    indentation ambiguous; then this answers None.
    """
    if not hasattr(code, "co_positions"):
        return None
    last = _last_line(code)
    if last <= lnum or last > len(lines):
        return None
    head = lines[lnum]
    indent = len(head) - len(head.lstrip())
    if "\t" in head[:indent]:
        return None
    for line in lines[last:]:
        stripped = line.strip()
        if not stripped:
            continue
        depth = len(line) - len(line.lstrip())
        if "\t" in line[:depth] or depth > indent or stripped.startswith((")", "]", "}")):
            return None
        if not stripped.startswith("#"):
            break
    return last


def _code_names(code):
    """Global names used by ``code`` and the code objects nested in it."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def _global_names(code):
    """``sorted(_code_names(code))`` as a tuple, memoised per code object."""
    names = _memo_get(_NAMES_CACHE, code)
    if names is None:
        names = _memo_put(_NAMES_CACHE, code, tuple(sorted(_code_names(code))))
    return names


_CLASS_CACHE = {}


def _class_source(cls):
    """Normalised AST dump of a class's source, or None (memoised per class object, like code objects)."""
    cached = _memo_get(_CLASS_CACHE, cls)
    if cached is not None:
        return cached[0]
    import ast
    import inspect
    import textwrap

    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        source = None
    else:
        for node in ast.walk(tree):  # docstrings do not count, as for functions
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body
                if (
                    len(body) > 1
                    and isinstance(body[0], ast.Expr)
                    and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)
                ):
                    node.body = body[1:]
        source = ast.dump(tree, include_attributes=False)
    _memo_put(_CLASS_CACHE, cls, (source,))
    return source
