"""Writing one store entry: checks of names, dtypes and attributes, then an atomic write.

The body of :meth:`phasic.store.Store.put`, apart from the store so that a cache hit does
not import it.  The entry image is built in memory (:func:`phasic.store._entry.entry_image`),
written to ``.<name>.tmp.<random>`` in the entry's directory, flushed and fsynced, then
renamed into place; every failure removes the temporary file and raises
:class:`phasic.exceptions.StoreError` naming the path and what to do.

Every entry records its provenance: ``user`` (the login name, ``"uid <n>"`` when the
user has none), ``host``, ``phasic_version`` and ``created``.

A store shared by a group
-------------------------
Where a directory the store creates something in has the setgid bit (``chmod g+s``, see
``docs/store.md``), the new directory or file gets that directory's group, new
directories get the setgid bit and group read/execute, and files group read; group write
is added to both when that directory is group-writable.  The modes are set with ``chmod``
after creation, so a restrictive umask of one user does not lock the others out.
Elsewhere the umask decides, as usual.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import os
import stat
import time

import numpy as np

from phasic.exceptions import ParameterError, StoreError
from phasic.store._entry import MTIME_BACKDATE, checksum_arrays, entry_image
from phasic.store._layout import (
    _NAME_RE,
    _RESERVED,
    COMPRESS_MIN_BYTES,
    STORE_FORMAT,
    _hostname,
    _new_temp,
    phasic_version,
)

__all__ = [
    "check_arrays",
    "check_attrs",
    "write_bytes",
    "put_entry",
    "prepare_entry",
    "write_entry",
    "make_dirs",
    "share_file",
    "current_user",
]


def check_arrays(arrays):
    if not isinstance(arrays, dict):
        raise ParameterError(f"arrays must be a dict of name -> numpy array, got {type(arrays).__name__}")
    out = {}
    for name, value in arrays.items():
        if not isinstance(name, str) or not _NAME_RE.match(name) or any(p in (".", "..") for p in name.split("/")):
            raise ParameterError(
                f"array name {name!r} is not valid; use letters, digits, '_', '-', '.' and '/' between parts"
            )
        a = np.asarray(value)
        if a.dtype.kind not in "biufcS":
            raise ParameterError(
                f"array {name!r} has dtype {a.dtype!r}; the store holds bool, integer, float, complex "
                "and bytes arrays only (no objects or unicode)"
            )
        out[name] = np.asarray(a.astype(a.dtype.newbyteorder("="), copy=False), order="C")
    for name in out:
        for other in out:
            if other.startswith(name + "/"):
                raise ParameterError(f"array name {name!r} is also the group of {other!r}; rename one of them")
    return out


def check_attrs(attrs):
    out = {}
    for name, value in (attrs or {}).items():
        if not isinstance(name, str) or not name:
            raise ParameterError(f"attribute name {name!r} must be a non-empty str")
        if name in _RESERVED:
            raise ParameterError(f"attribute {name!r} is written by the store itself; use another name")
        if isinstance(value, np.generic):
            value = value.item()
        if value is not None and not isinstance(value, (str, bool, int, float)):
            raise ParameterError(
                f"attribute {name!r}={value!r:.80} has type {type(value).__name__}; "
                "attributes must be str, int, float, bool or None"
            )
        if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
            raise ParameterError(f"attribute {name!r}={value!r} does not fit in 64 bits; store it as a str")
        out[name] = value
    return out


def write_bytes(tmp, image):
    """Write, flush and fsync ``image`` to ``tmp``; every failure is a plain OSError."""
    fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC)
    try:
        view = memoryview(image)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if os.utime in os.supports_fd:  # backdated mtime: see the memory layer in phasic.store._entry
            stamp = int((time.time() - MTIME_BACKDATE) * 1e9)
            os.utime(fd, ns=(stamp, stamp))
        os.fsync(fd)
    finally:
        os.close(fd)
    if os.path.getsize(tmp) != len(image):
        raise OSError(f"short write ({os.path.getsize(tmp)} of {len(image)} bytes)")


def current_user():
    """The login name of this process's user; ``"uid <n>"`` when it has none (a container's
    anonymous uid, no passwd entry)."""
    import getpass

    try:
        name = getpass.getuser()
    except Exception:  # KeyError (3.11) or OSError (3.13) when the uid has no passwd entry
        name = ""
    if not name and hasattr(os, "getuid"):
        name = f"uid {os.getuid()}"
    return name or "unknown"


def _shared(parent_mode):
    """Extra mode bits for a new directory and a new file in a directory of mode ``parent_mode``
    (nothing unless the directory is setgid: see the module docstring)."""
    if not parent_mode & stat.S_ISGID:
        return 0, 0
    write = stat.S_IWGRP if parent_mode & stat.S_IWGRP else 0
    return stat.S_ISGID | stat.S_IRGRP | stat.S_IXGRP | write, stat.S_IRGRP | write


def _follow_group(target, parent_st, extra, is_fd=False):
    """Give ``target`` (a path or an fd) the group of its setgid parent and the ``extra`` mode bits."""
    st = os.fstat(target) if is_fd else os.stat(target)
    if st.st_gid != parent_st.st_gid:  # file systems that ignore setgid directories
        with contextlib.suppress(OSError):
            (os.fchown if is_fd else os.chown)(target, -1, parent_st.st_gid)
    mode = stat.S_IMODE(st.st_mode)
    if mode | extra != mode:
        with contextlib.suppress(OSError):
            (os.fchmod if is_fd else os.chmod)(target, mode | extra)


def make_dirs(directory):
    """``mkdir -p directory``, each new level following the shared-group rule of its parent.

    Raises OSError (read-only, full, not a directory, permission denied).
    """
    directory = os.fspath(directory)
    missing = []
    while not os.path.isdir(directory):
        missing.append(directory)
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    for new in reversed(missing):
        try:
            os.mkdir(new)
        except FileExistsError:
            if not os.path.isdir(new):
                raise NotADirectoryError(errno.ENOTDIR, f"{new!r} exists and is not a directory", new) from None
            continue  # made by another process meanwhile
        parent_st = os.stat(os.path.dirname(new))
        extra = _shared(parent_st.st_mode)[0]
        if extra:
            _follow_group(new, parent_st, extra)


def share_file(fd, directory):
    """Apply the shared-group rule of ``directory`` to the new file open as ``fd``."""
    try:
        parent_st = os.stat(directory)
    except OSError:
        return
    extra = _shared(parent_st.st_mode)[1]
    if extra:
        _follow_group(fd, parent_st, extra, is_fd=True)


def prepare_entry(key, arrays, attrs=None):
    """``(checked arrays, full attrs)``: the caller's attributes plus the store's own
    (format, key, provenance, checksum).  Raises ParameterError for bad arrays or attributes."""
    arrays = check_arrays(arrays)
    attrs = check_attrs(attrs)
    full = dict(attrs)
    full.update(
        format=STORE_FORMAT,
        key=key,
        key_material=attrs.get("key_material") or "",
        phasic_version=phasic_version(),
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        user=current_user(),
        host=_hostname(),
        checksum=checksum_arrays(arrays),
    )
    return arrays, full


def write_entry(store, kind, key, arrays, full):
    """Write a prepared entry atomically; returns its path.

    Raises
    ------
    StoreError
        Naming the path and the cause; the temporary file is removed and every other
        entry (and an older entry of the same key) is untouched.
    """
    path = store.path(kind, key)
    hint = "free disk space, or point PHASIC_CACHE_DIR (or --cache-dir) at a writable directory with room"
    try:
        make_dirs(path.parent)
        tmp = _new_temp(path)
    except OSError as exc:
        raise StoreError(f"cannot write store entry {str(path)!r}: {exc.strerror or exc}; {hint}") from exc
    try:
        parent_st = os.stat(path.parent)
        extra = _shared(parent_st.st_mode)[1]
        if extra:
            _follow_group(os.fspath(tmp), parent_st, extra)
        write_bytes(tmp, entry_image(arrays, full, store.compression, COMPRESS_MIN_BYTES))
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, (OSError, RuntimeError, ValueError)):
            raise StoreError(f"cannot write store entry {str(path)!r}: {exc}; {hint}") from exc
        raise
    with contextlib.suppress(OSError):
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    with contextlib.suppress(OSError):
        store._clean_temps(path.parent)
    if store.max_size_mb is not None:
        with contextlib.suppress(OSError):
            store.evict(store.max_size_mb, keep=(path,))
    return path


def put_entry(store, kind, key, arrays, attrs=None):
    """Body of :meth:`phasic.store.Store.put`: ``(path, checked arrays, full attrs)``."""
    store.path(kind, key)  # bad kind or key first
    arrays, full = prepare_entry(key, arrays, attrs)
    return write_entry(store, kind, key, arrays, full), arrays, full
