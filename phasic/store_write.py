"""Writing one store entry: checks of names, dtypes and attributes, then an atomic write.

The body of :meth:`phasic.store.Store.put`, apart from the store so that a cache hit does
not import it.  The entry image is built in memory (:func:`phasic.store_entry.entry_image`),
written to ``.<name>.tmp.<random>`` in the entry's directory, flushed and fsynced, then
renamed into place; every failure removes the temporary file and raises
:class:`phasic.exceptions.StoreError` naming the path and what to do.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import time

import numpy as np

from phasic.exceptions import ParameterError, StoreError
from phasic.store import (_NAME_RE, _RESERVED, COMPRESS_MIN_BYTES, STORE_FORMAT, _new_temp, checksum_arrays,
                          phasic_version)
from phasic.store_entry import MTIME_BACKDATE, entry_image

__all__ = ["check_arrays", "check_attrs", "write_bytes", "put_entry"]


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
        if os.utime in os.supports_fd:  # backdated mtime: see the memory layer in phasic.store_entry
            stamp = int((time.time() - MTIME_BACKDATE) * 1e9)
            os.utime(fd, ns=(stamp, stamp))
        os.fsync(fd)
    finally:
        os.close(fd)
    if os.path.getsize(tmp) != len(image):
        raise OSError(f"short write ({os.path.getsize(tmp)} of {len(image)} bytes)")


def put_entry(store, kind, key, arrays, attrs=None):
    """Body of :meth:`phasic.store.Store.put`: ``(path, checked arrays, full attrs)``."""
    path = store.path(kind, key)
    arrays = check_arrays(arrays)
    attrs = check_attrs(attrs)
    full = dict(attrs)
    full.update(
        format=STORE_FORMAT,
        key=key,
        key_material=attrs.get("key_material") or "",
        phasic_version=phasic_version(),
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        checksum=checksum_arrays(arrays),
    )
    hint = "free disk space, or point PHASIC_CACHE_DIR (or --cache-dir) at a writable directory with room"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _new_temp(path)
    except OSError as exc:
        raise StoreError(f"cannot write store entry {str(path)!r}: {exc.strerror or exc}; {hint}") from exc
    try:
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
    store._clean_temps(path.parent)
    if store.max_size_mb is not None:
        store.evict(store.max_size_mb, keep=(path,))
    return path, arrays, full
