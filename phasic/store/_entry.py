"""One store entry on disk: the format-2 HDF5 file with an index, and how it is read fast.

Format 2
--------
An entry is an ordinary HDF5 file, as in format 1: every array is a dataset
(a ``/`` in its name makes groups), every attribute a root attribute, so
h5py, ``h5dump`` or HDFView read it as before.  What is new is the file's
*userblock*, the block of ``U`` bytes (a power of two >= 512) that HDF5
reserves for applications at the start of a file and otherwise ignores:

======  ===================================================================
bytes   content
======  ===================================================================
0-15    magic ``b"phasic-store-v2\\n"``
16-23   ``U``, little-endian
24-31   ``L``, the length of the index, little-endian
32-63   SHA-256 of bytes 16-31 followed by bytes 64 to the end of the file
64-     the index: JSON ``{"attrs": {...}, "arrays": [[name, dtype, shape,
        offset, nbytes], ...]}`` (``L`` bytes), zero padding up to ``U``
U-      the HDF5 file proper
======  ===================================================================

The datasets are contiguous, uncompressed and 16-byte aligned, and ``offset``
is where each one's bytes start in the file.  A hit therefore reads the file
whole (the 64-byte head, then the rest), checks it with one SHA-256 pass over everything after the
digest (index, padding and the whole HDF5 part: any change anywhere is
caught) and takes the arrays as views of the buffer, without h5py: importing
h5py, and an h5py open and read, each cost many times as much as building a
50-vertex graph (docs/store.md).  The writer checks that every offset holds the
array's bytes and that h5py reads the finished file back.  An entry with
compressed datasets cannot be indexed: it gets the head :data:`MAGIC_H5` and
an index holding only the attributes, behind the same whole-file SHA-256, and
its arrays are read with h5py once that SHA-256 passed.

A file whose SHA-256 fails is bad and never parsed (damaged HDF5 metadata can
make the HDF5 library loop forever); a file without a phasic head (format 1)
is ``"legacy"``: no checksum covers its attributes, so it is not read at all.
h5py only sees bytes that passed the SHA-256, through
:func:`_hdf5_datasets`, which refuses everything the store never writes
(external raw storage, virtual datasets, soft/external links, unknown filters,
variable-length or compound dtypes, datasets claiming more bytes than the file
holds).  Only regular files are opened (``O_NOFOLLOW | O_NONBLOCK`` after an
``lstat``): a FIFO or device at an entry path never blocks a reader.

In-process memory layer
-----------------------
Verified entries are also kept in a small in-process LRU (default 64 MiB,
``$PHASIC_CACHE_MEMORY_MB``, 0 turns it off), keyed by the file's device,
inode and entry key and valid only while the file's size, mtime and ctime are
unchanged; a hit costs one ``stat`` plus copying the arrays (callers get their
own copies).  Entries enter it only once their mtime is at least
:data:`MIN_TRUSTED_AGE` seconds old, and the store sets the mtime of the files
it writes or touches :data:`MTIME_BACKDATE` seconds into the past, so that a
later modification cannot leave the mtime unchanged within one tick of a
coarse file-system clock (git's "racy clean" problem).
"""

from __future__ import annotations

import collections
import itertools
import json
import math
import os
import threading
import time

import numpy as np

from phasic.keys import sha256

__all__ = [
    "FORMAT",
    "MAGIC",
    "MAGIC_H5",
    "read_entry",
    "read_head",
    "max_entry_bytes",
    "NotRegularFile",
    "entry_image",
    "checksum_arrays",
    "MemoryLayer",
    "MEMORY",
]

#: The store format this module writes.
FORMAT = 2
MAGIC = b"phasic-store-v2\n"
PREFIX = 64
ALIGNMENT = 16
MIN_USERBLOCK = 512
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: Files written or touched by the store get this mtime offset into the past (seconds).
MTIME_BACKDATE = 2.0
#: A file enters the memory layer only when its mtime is at least this old (seconds).
MIN_TRUSTED_AGE = 1.0
_image_names = itertools.count()
_DTYPES = {}


def _h5py():
    import h5py

    return h5py


def _dtype(text):
    dtype = _DTYPES.get(text)
    if dtype is None:
        dtype = _DTYPES.setdefault(text, np.dtype(text))
    return dtype


def checksum_arrays(arrays):
    """SHA-256 over the arrays' names, dtypes, shapes and bytes, in sorted name order.

    This is the ``checksum`` attribute of every entry (formats 1 and 2),
    verified when an entry is read with h5py.

    Parameters
    ----------
    arrays : dict of str to numpy.ndarray

    Returns
    -------
    str
        64 hex digits.
    """
    arrays = {name: np.asarray(a, order="C") for name, a in arrays.items()}  # (ascontiguousarray makes 0-d 1-d)
    h = sha256(size_hint=sum(a.nbytes for a in arrays.values()))
    for name in sorted(arrays):
        a = arrays[name]
        header = json.dumps([name, a.dtype.str, list(a.shape)]).encode()
        h.update(len(header).to_bytes(8, "little") + header + a.nbytes.to_bytes(8, "little"))
        h.update(a.reshape(-1).view(np.uint8) if a.size else b"")
    return h.hexdigest()


# ----------------------------------------------------------------------------- reading

#: The head of an entry whose HDF5 part is read with h5py (compressed datasets), behind the
#: same whole-file SHA-256 as an indexed entry; its index holds the attributes only.
MAGIC_H5 = b"phasic-store-h2\n"
_MAGIC_STEM = b"phasic-store-"
#: Attribute values an entry may hold.
_ATTR_TYPES = (str, bool, int, float, type(None))
#: HDF5 filters an entry may use: deflate (gzip), shuffle, fletcher32, lzf.
_FILTERS = frozenset({1, 2, 3, 32000})
#: A chunked dataset may expand to at most this many times its stored bytes (deflate's
#: limit is ~1032), plus :data:`_EXPANSION_SLACK` bytes over the whole file.
_MAX_EXPANSION = 1100
_EXPANSION_SLACK = 1 << 20
#: At most this many links are followed in an HDF5 file (a hard-link cycle ends here).
_MAX_LINKS = 10_000


class NotRegularFile(OSError):
    """An entry path holds a FIFO, device, socket, directory or symbolic link."""


def _kind_of(mode):
    import stat

    for test, name in (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _open_regular(path):
    """``(fd, stat)`` of the regular file ``path``; never follows a final symlink, never blocks.

    Raises
    ------
    NotRegularFile
        (with the ``lstat`` result as ``.st``) when ``path`` is anything but a regular file.
    """
    st = os.lstat(path)
    if (st.st_mode & 0o170000) != 0o100000:
        exc = NotRegularFile(f"{path} is {_kind_of(st.st_mode)}")
        exc.st = st
        raise exc
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        import errno

        if exc.errno == errno.ELOOP:  # swapped for a symlink between lstat and open
            new = NotRegularFile(f"{path} is a symbolic link")
            new.st = os.lstat(path)  # (FileNotFoundError when it is gone again: a miss)
            raise new from exc
        raise
    st = os.fstat(fd)
    if (st.st_mode & 0o170000) != 0o100000:  # swapped for something else between lstat and open
        os.close(fd)
        exc = NotRegularFile(f"{path} is {_kind_of(st.st_mode)}")
        exc.st = st
        raise exc
    return fd, st


#: Default bound (MiB) on the size of an entry a reader loads (``$PHASIC_CACHE_MAX_ENTRY_MB``).
MAX_ENTRY_MB = 4096.0


def max_entry_bytes():
    """Largest entry file a reader loads: ``$PHASIC_CACHE_MAX_ENTRY_MB`` MiB, default
    :data:`MAX_ENTRY_MB`; a bigger file is a bad entry (never allocated, moved aside)."""
    raw = os.environ.get("PHASIC_CACHE_MAX_ENTRY_MB")
    if raw:
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if not 0 < value < float("inf"):
            from phasic.exceptions import ParameterError

            raise ParameterError(
                f"PHASIC_CACHE_MAX_ENTRY_MB={raw!r} is not a size in MiB > 0 (the largest store "
                f"entry a reader loads; default {MAX_ENTRY_MB:g}); set a number or unset it"
            )
        return int(value * 1024 * 1024)
    return int(MAX_ENTRY_MB * 1024 * 1024)


def _read_all(path):
    """``(buffer, stat, head)``: the whole file in a fresh, writable uint8 array when it starts
    with a phasic magic; otherwise ``(None, stat, head)`` without reading further.

    Raises :class:`_Bad` for a file larger than :func:`max_entry_bytes` (nothing allocated)."""
    fd, st = _open_regular(path)
    try:
        head = os.read(fd, PREFIX)
        if len(head) < PREFIX or not head.startswith(_MAGIC_STEM):
            return None, st, head
        limit = max_entry_bytes()
        if st.st_size > limit:
            exc = _Bad(
                f"{st.st_size} bytes, more than the largest entry a reader loads ({limit >> 20} MiB, "
                "$PHASIC_CACHE_MAX_ENTRY_MB): damaged or not an entry"
            )
            exc.st = st
            raise exc
        buf = np.empty(st.st_size, np.uint8)
        buf[:PREFIX] = np.frombuffer(head, np.uint8)
        view = memoryview(buf)[PREFIX:]
        while view:
            n = os.readv(fd, [view])
            if n <= 0:
                return np.empty(0, np.uint8), st, head  # shorter than its stat: damaged or being replaced
            view = view[n:]
        return buf, st, head
    finally:
        os.close(fd)


def read_entry(path, key, deep=False, raw=False):
    """Read and verify one entry file; h5py sees only bytes that passed the whole-file SHA-256.

    Parameters
    ----------
    path : str
        The entry file.
    key : str
        The key the entry must hold.
    deep : bool
        Also read the HDF5 part of an indexed entry (with the checked h5py reader) and
        check that it, the index and the ``checksum`` attribute agree (verify, export, import).
    raw : bool
        Also return the verified bytes (a uint8 array; None unless ``"ok"``), so that an
        archive holds exactly what was checked without reading the file again.

    Returns
    -------
    (arrays, attrs, stat, status, detail) or (arrays, attrs, stat, status, detail, data)
        ``status`` is ``"ok"``, ``"bad"`` (``detail`` says why), ``"newer"`` (a newer store
        format; ``detail`` says which) or ``"legacy"`` (a format-1 or unindexed entry, whose
        attributes no checksum covers: never parsed, a miss).  ``arrays`` and ``attrs`` are
        None unless ``"ok"``.  ``stat`` is the ``lstat`` of a non-regular file.  A file
        larger than :func:`max_entry_bytes`, or whose index claims arrays larger than the
        file, is ``"bad"`` (nothing that big is allocated).

    Raises
    ------
    OSError
        When the file cannot be opened or read (FileNotFoundError: missing;
        PermissionError: another user's entry).  Never for damaged content.
    """
    out = _read_entry(path, key, deep)
    return out if raw else out[:5]


def _read_entry(path, key, deep):
    try:
        buf, st, head = _read_all(path)
    except NotRegularFile as exc:
        return None, None, exc.st, "bad", f"{_kind_of(exc.st.st_mode)}, not a regular file", None
    except _Bad as exc:
        return None, None, exc.st, "bad", str(exc), None
    try:
        magic = _classify(head)
    except _NotRead as exc:
        return None, None, st, exc.status, str(exc), None
    except _Bad as exc:
        return None, None, st, "bad", str(exc), None
    try:
        arrays, attrs, index_arrays = _parse(buf, key, magic == MAGIC_H5)
    except _NotRead as exc:
        return None, None, st, exc.status, str(exc), None
    except _Bad as exc:
        return None, None, st, "bad", str(exc), None
    if magic == MAGIC_H5 or deep:
        problem, h5_arrays = _cross_check(buf, attrs, arrays if index_arrays else None)
        if problem is not None:
            return None, None, st, "bad", problem, None
        if magic == MAGIC_H5:
            arrays = h5_arrays  # parsed once: the cross-check's own read
    return arrays, attrs, st, "ok", None, buf


class _Bad(ValueError):
    """An entry's content is damaged or not what the store writes (the message says how)."""


class _NotRead(ValueError):
    """An entry that is not read: ``status`` ``"legacy"`` (format 1) or ``"newer"``."""

    def __init__(self, status, text):
        super().__init__(text)
        self.status = status


def _classify(head):
    """The magic of an entry's first :data:`PREFIX` bytes; raises :class:`_NotRead` for a
    format-1 or newer-format entry and :class:`_Bad` for anything else that is no entry."""
    if head[:8] == _HDF5_SIGNATURE:
        raise _NotRead(
            "legacy",
            "a format-1 (or unindexed) entry: no checksum covers its attributes, so it is "
            "not trusted; it is rebuilt on next use",
        )
    if len(head) < PREFIX:
        if head.startswith(_MAGIC_STEM):
            raise _Bad("shorter than its header (truncated)")
        raise _Bad("no store header and no HDF5 signature (damaged or overwritten)")
    magic = head[:16]
    if magic in (MAGIC, MAGIC_H5):
        return magic
    if not magic.startswith(_MAGIC_STEM):
        raise _Bad("no store header and no HDF5 signature (damaged or overwritten)")
    version = magic[len(_MAGIC_STEM) + 1 : -1]
    if magic[len(_MAGIC_STEM) : len(_MAGIC_STEM) + 1] in b"vh" and version.isdigit() and int(version) > FORMAT:
        raise _NotRead("newer", _newer_text(int(version)))
    raise _Bad(f"unknown store header {magic!r}")


def _newer_text(version):
    return f"newer store format {version} (this phasic reads {FORMAT})"


def _head_sizes(head, size):
    """``(userblock, index length)`` of a phasic head, checked against the file ``size``."""
    userblock = int.from_bytes(head[16:24], "little")
    length = int.from_bytes(head[24:32], "little")
    if not (MIN_USERBLOCK <= userblock < size and userblock & (userblock - 1) == 0 and PREFIX + length <= userblock):
        raise _Bad("bad index header (truncated or damaged)")
    return userblock, length


def _index_attrs(text, key):
    """``(index, attrs)`` of an index's JSON ``text``; raises :class:`_Bad` or :class:`_NotRead`."""
    try:
        index = json.loads(text)
    except ValueError:
        raise _Bad("index is not JSON") from None
    if not isinstance(index, dict) or not isinstance(index.get("attrs"), dict):
        raise _Bad("index has no attributes")
    attrs = index["attrs"]
    for name, value in attrs.items():
        if not isinstance(value, _ATTR_TYPES):
            raise _Bad(f"attribute {name!r} has a {type(value).__name__} value")
    if attrs.get("key") != key:
        raise _Bad(f"stored key {attrs.get('key')!r:.80} does not match the file name")
    if not isinstance(attrs.get("checksum"), str):
        raise _Bad("no checksum attribute")
    fmt = attrs.get("format")
    if type(fmt) is int and fmt > FORMAT:
        raise _NotRead("newer", _newer_text(fmt))
    if type(fmt) is not int or fmt < 1:
        raise _Bad(f"format attribute {fmt!r:.40} is not a store format")
    return index, attrs


def _index_rows(index, userblock, size):
    """``[(name, dtype, shape, offset, nbytes)]`` of an index's array table, every row checked
    against the file ``size`` before anything is allocated; raises :class:`_Bad`."""
    table = index.get("arrays")
    if not isinstance(table, list):
        raise _Bad("index has no array table")
    rows, names = [], set()
    for row in table:
        try:
            name, dtype, shape, offset, nbytes = row
        except (TypeError, ValueError):
            raise _Bad(f"index row {row!r:.80} is not [name, dtype, shape, offset, nbytes]") from None
        if not (isinstance(name, str) and _valid_name(name)) or name in names:
            raise _Bad(f"index names an array {name!r:.80} the store does not write")
        dtype = _safe_dtype(dtype)
        if dtype is None:
            raise _Bad(
                f"array {name!r} has dtype {row[1]!r:.40}; the store holds bool, integer, float, "
                "complex and bytes arrays only"
            )
        if (
            not isinstance(shape, list)
            or len(shape) > 32
            or not all(type(n) is int and 0 <= n for n in shape)
            or type(offset) is not int
            or type(nbytes) is not int
        ):
            raise _Bad(f"array {name!r} has a bad shape or offset in the index")
        # every dimension counted at least once: an empty array of shape [0, 2**63] is no
        # smaller a claim than a full one (numpy refuses to allocate either)
        if math.prod(max(n, 1) for n in shape) * dtype.itemsize > size:
            raise _Bad(f"array {name!r} has shape {shape!r:.80}, more than the {size}-byte file can hold")
        if math.prod(shape) * dtype.itemsize != nbytes:
            raise _Bad(f"array {name!r}: its size does not match its shape")
        if nbytes and not (userblock <= offset and offset + nbytes <= size and offset % dtype.alignment == 0):
            raise _Bad(f"array {name!r} lies outside the file's HDF5 part")
        names.add(name)
        rows.append((name, dtype, shape, offset, nbytes))
    return rows


def read_head(fd, size, key):
    """The attributes and array shapes of the entry open as ``fd`` (``size`` bytes) from its head
    and index alone: no SHA-256 check, no h5py (what ``phasic cache list`` shows).

    Returns
    -------
    (status, detail, attrs, shapes)
        ``status`` as :func:`read_entry` gives it (``"ok"``, ``"bad"``, ``"newer"``,
        ``"legacy"``); ``attrs`` (a dict) and ``shapes`` (``{name: shape}``, None for a
        compressed entry, whose index holds no array table) only when ``"ok"``.

    Raises
    ------
    OSError
        When the file cannot be read.
    """
    try:
        head = os.pread(fd, PREFIX, 0)
        magic = _classify(head)
        userblock, length = _head_sizes(head, size)
        text = os.pread(fd, length, PREFIX)
        if len(text) != length:
            raise _Bad("the file ends inside its index")
        index, attrs = _index_attrs(text, key)
        if magic == MAGIC_H5:
            return "ok", None, attrs, None
        return "ok", None, attrs, {row[0]: tuple(row[2]) for row in _index_rows(index, userblock, size)}
    except _NotRead as exc:
        return exc.status, str(exc), None, None
    except _Bad as exc:
        return "bad", str(exc), None, None


def _parse(buf, key, h5):
    """``(arrays, attrs, indexed)`` of a buffer with a phasic head; raises :class:`_Bad`
    (or :class:`_NotRead` for an entry of a newer format)."""
    size = buf.size
    if size < PREFIX:
        raise _Bad("shorter than its header (truncated)")
    head = buf[:PREFIX].tobytes()
    userblock, length = _head_sizes(head, size)
    h = sha256(head[16:32], size_hint=size)
    h.update(memoryview(buf)[PREFIX:])
    if h.digest() != head[32:64]:
        raise _Bad("checksum mismatch (the file's SHA-256 does not match its header: damaged or modified)")
    index, attrs = _index_attrs(buf[PREFIX : PREFIX + length].tobytes(), key)
    if h5:
        return None, attrs, False
    arrays = {}
    for name, dtype, shape, offset, nbytes in _index_rows(index, userblock, size):
        if nbytes == 0:
            arrays[name] = np.empty(shape, dtype)
        else:
            arrays[name] = np.ndarray(shape, dtype, buf, offset)  # a view of the private buffer
    return arrays, attrs, True


def _valid_name(name):
    parts = name.split("/")
    return all(p and p not in (".", "..") and not p.strip(_NAME_CHARS) for p in parts)


_NAME_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-"


def _safe_dtype(text):
    """The numpy dtype of an index's dtype string, or None unless a plain bool/int/float/complex/bytes."""
    if not isinstance(text, str) or len(text) > 16:
        return None
    try:
        dtype = _dtype(text)
    except (TypeError, ValueError):
        return None
    if dtype.kind not in "biufcS" or dtype.fields is not None or dtype.subdtype is not None or dtype.itemsize == 0:
        return None
    return dtype


def _cross_check(buf, attrs, index_arrays):
    """``(problem, arrays)``: why the HDF5 part of a checked buffer disagrees with its index
    (None when it agrees) and the arrays h5py read from it (the only h5py parse of a read)."""
    try:
        h5_arrays, h5_attrs = _read_hdf5_checked(buf)
    except _Bad as exc:
        return str(exc), None
    if h5_attrs != attrs:
        return "the HDF5 attributes differ from the index (" + ", ".join(
            sorted(k for k in set(h5_attrs) | set(attrs) if h5_attrs.get(k, ...) != attrs.get(k, ...))
        )[:200] + ")", None
    if index_arrays is not None:
        if sorted(h5_arrays) != sorted(index_arrays):
            return "the HDF5 datasets differ from the index", None
        if checksum_arrays(index_arrays) != attrs["checksum"]:
            return "checksum mismatch (arrays vs. checksum attribute)", None
    try:
        if checksum_arrays(h5_arrays) != attrs["checksum"]:
            return "checksum mismatch (HDF5 datasets vs. checksum attribute)", None
    except (TypeError, ValueError) as exc:
        return f"a dataset cannot be checksummed ({exc})", None
    return None, h5_arrays


def _py(value, h5py):
    """HDF5 attribute value -> plain Python value."""
    if isinstance(value, h5py.Empty):
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    return value


def _read_hdf5_checked(buf):
    """``(arrays, attrs)`` of the HDF5 file in ``buf`` (bytes or uint8 array), read with h5py
    only after its structure passed :func:`_hdf5_problem`; raises :class:`_Bad`."""
    import io

    h5py = _h5py()
    data = buf.tobytes() if isinstance(buf, np.ndarray) else bytes(buf)
    try:
        with h5py.File(io.BytesIO(data), "r", locking=False) as f:
            datasets = _hdf5_datasets(f, len(data), h5py)
            attrs = {}
            for k in f.attrs:
                value = _py(f.attrs[k], h5py)
                if not isinstance(value, _ATTR_TYPES):
                    raise _Bad(f"attribute {k!r} is not a str, int, float, bool or None")
                attrs[k] = value
            arrays = {}
            for name, ds in datasets:
                value = ds[()]
                arrays[name] = value if isinstance(value, np.ndarray) else np.asarray(value)
    except _Bad:
        raise
    except Exception as exc:
        raise _Bad(f"unreadable HDF5 file ({type(exc).__name__}: {exc})") from None
    return arrays, attrs


def _hdf5_datasets(f, size, h5py):
    """``[(name, dataset)]`` of an open HDF5 file, refusing everything the store never writes:
    soft and external links, named datatypes, external raw storage, virtual and compact
    datasets, unknown filters, odd dtypes and shapes whose bytes the file cannot hold."""
    from h5py import h5d

    out = []
    total = 0
    pending = [("", f)]
    links = 0
    while pending:
        prefix, group = pending.pop()
        for name in group:
            links += 1
            if links > _MAX_LINKS:
                raise _Bad(f"more than {_MAX_LINKS} HDF5 links (a cycle?)")
            full = prefix + name
            link = group.get(name, getlink=True)
            if not isinstance(link, h5py.HardLink):
                raise _Bad(f"{full!r} is a {type(link).__name__} (it would read outside the entry)")
            if not _valid_name(full):
                raise _Bad(f"HDF5 object {full!r:.80} has a name the store does not write")
            obj = group[name]
            if isinstance(obj, h5py.Group):
                if len(full) > 1000:
                    raise _Bad("HDF5 groups nested too deep (a cycle?)")
                pending.append((full + "/", obj))
                continue
            if not isinstance(obj, h5py.Dataset):
                raise _Bad(f"{full!r} is a {type(obj).__name__}, not a dataset")
            dtype = obj.dtype
            vlen = h5py.check_vlen_dtype(dtype) is not None or (
                h5py.check_string_dtype(dtype) is not None and h5py.check_string_dtype(dtype).length is None
            )
            if dtype.kind not in "biufcS" or dtype.fields is not None or dtype.subdtype is not None or vlen:
                raise _Bad(
                    f"dataset {full!r} has dtype {dtype!r:.60}; the store holds bool, integer, float, "
                    "complex and fixed-size bytes arrays only"
                )
            shape = obj.shape
            if shape is None:
                raise _Bad(f"dataset {full!r} has no dataspace")
            dcpl = obj.id.get_create_plist()
            layout = dcpl.get_layout()
            if layout == h5d.VIRTUAL:
                raise _Bad(f"dataset {full!r} is a virtual dataset (it would read other files)")
            if dcpl.get_external_count():
                raise _Bad(f"dataset {full!r} has external raw storage (it would read other files)")
            if layout not in (h5d.CONTIGUOUS, h5d.CHUNKED):
                raise _Bad(f"dataset {full!r} has a layout the store does not write ({layout})")
            for i in range(dcpl.get_nfilters()):
                code = dcpl.get_filter(i)[0]
                if code not in _FILTERS:
                    raise _Bad(f"dataset {full!r} uses HDF5 filter {code}, which the store does not write")
            nbytes = math.prod(shape) * dtype.itemsize
            stored = obj.id.get_storage_size()
            if layout == h5d.CONTIGUOUS:
                offset = obj.id.get_offset() if nbytes else 0
                if nbytes and (stored != nbytes or offset is None or offset + nbytes > size):
                    raise _Bad(f"dataset {full!r} claims {nbytes} bytes the {size}-byte file does not hold")
            elif stored > size or nbytes > _MAX_EXPANSION * stored + _EXPANSION_SLACK:
                raise _Bad(f"dataset {full!r} claims {nbytes} bytes from {stored} stored bytes")
            total += nbytes
            if total > _MAX_EXPANSION * size + _EXPANSION_SLACK:
                raise _Bad(f"datasets claim {total} bytes, more than the {size}-byte file can hold")
            out.append((full, obj))
    return out


# ----------------------------------------------------------------------------- writing


def _hdf5_image(arrays, attrs, compression, min_compress_bytes, userblock):
    """``(image bytes, offsets or None)`` of the HDF5 file built in memory."""
    h5py = _h5py()
    kwargs = {"driver": "core", "backing_store": False, "meta_block_size": 512}  # (default 2048: more slack)
    if userblock:
        kwargs.update(userblock_size=userblock, alignment_threshold=1, alignment_interval=ALIGNMENT)
    with h5py.File(f"phasic-{os.getpid()}-{next(_image_names)}.h5", "w", **kwargs) as f:
        compressed = False
        for name, a in arrays.items():
            kw = {}
            if compression != "none" and a.ndim >= 1 and a.nbytes >= min_compress_bytes:
                kw = {"compression": compression, "shuffle": True, "chunks": True}
                if compression == "gzip":
                    kw["compression_opts"] = 1
                compressed = True
            f.create_dataset(name, data=a, **kw)
        for name, value in attrs.items():
            f.attrs[name] = h5py.Empty("f8") if value is None else value
        f.flush()
        offsets = None
        if userblock and not compressed:
            offsets = {name: f[name].id.get_offset() for name, a in arrays.items() if a.nbytes}
        return f.id.get_file_image(), offsets


def entry_image(arrays, attrs, compression="none", min_compress_bytes=64 * 1024):
    """The bytes of an entry file: format 2, behind a whole-file SHA-256 that covers every byte
    (arrays, attributes, index).

    Parameters
    ----------
    arrays : dict of str to numpy.ndarray
        Checked, native-byte-order, C-ordered arrays.
    attrs : dict
        Every root attribute (str, int, float, bool or None values),
        including ``format``, ``key`` and ``checksum``.
    compression : {"none", "gzip", "lzf"}
        Filter for datasets of at least ``min_compress_bytes``; an entry with
        a compressed dataset gets the head :data:`MAGIC_H5` and an index of its
        attributes only (its arrays are read with h5py once the SHA-256 passed).

    Returns
    -------
    bytes

    Raises
    ------
    RuntimeError
        When no image that reads back identically could be built.
    """
    if compression != "none":
        data = _framed_image(arrays, attrs, compression, min_compress_bytes)
        if data is not None:
            return data
    data = _framed_image(arrays, attrs, "none", min_compress_bytes)
    if data is None:
        raise RuntimeError("could not build an entry image that reads back identically")
    return data


def _framed_image(arrays, attrs, compression, min_compress_bytes):
    """An entry image with its head, or None when it does not read back identically."""
    table = [[name, a.dtype.str, list(a.shape), 0, int(a.nbytes)] for name, a in sorted(arrays.items())]
    index = {"attrs": attrs, "arrays": table}
    need = PREFIX + len(json.dumps(index, separators=(",", ":"))) + 24 * len(table)
    userblock = max(MIN_USERBLOCK, 1 << (need - 1).bit_length())
    for _ in range(4):
        image, offsets = _hdf5_image(arrays, attrs, compression, min_compress_bytes, userblock)
        if image[:8] == _HDF5_SIGNATURE:  # h5py's core image leaves the userblock out
            body = image
        elif image[userblock : userblock + 8] == _HDF5_SIGNATURE:
            body = image[userblock:]
        else:
            return None
        if offsets is None:  # compressed: the index holds the attributes only
            magic, doc = MAGIC_H5, {"attrs": attrs}
        else:
            for row in table:
                row[3] = int(offsets[row[0]]) if row[4] else 0
            magic, doc = MAGIC, index
        text = json.dumps(doc, separators=(",", ":")).encode()
        if PREFIX + len(text) > userblock:
            userblock = 1 << (PREFIX + len(text) - 1).bit_length()
            continue
        sizes = userblock.to_bytes(8, "little") + len(text).to_bytes(8, "little")
        rest = text + bytes(userblock - PREFIX - len(text)) + body
        h = sha256(sizes, size_hint=len(rest))
        h.update(rest)
        data = magic + sizes + h.digest() + rest
        if offsets is None:
            return data if _h5_holds(data, arrays) else None
        return data if _index_holds(data, arrays, table, userblock) else None
    return None


def _h5_holds(data, arrays):
    """Whether the checked h5py reader gives back exactly ``arrays`` from an unindexed image."""
    try:
        got = _read_hdf5_checked(data)[0]
    except _Bad:
        return False
    return sorted(got) == sorted(arrays) and all(
        got[n].dtype == a.dtype
        and got[n].shape == a.shape
        and np.array_equal(got[n], a, equal_nan=a.dtype.kind in "fc")
        for n, a in arrays.items()
    )


#: Datasets up to this size are also read back through h5py when an entry is written.
FULL_READBACK_BYTES = 4 << 20


def _index_holds(data, arrays, table, userblock):
    """Whether every indexed offset holds its array's bytes and h5py reads the file back."""
    import io

    buf = np.frombuffer(data, np.uint8)
    for name, _, _, offset, nbytes in table:
        if nbytes and not np.array_equal(buf[offset : offset + nbytes], arrays[name].reshape(-1).view(np.uint8)):
            return False
    h5py = _h5py()
    try:
        with h5py.File(io.BytesIO(data), "r") as f:
            if f.userblock_size != userblock:
                return False
            for name, a in arrays.items():
                ds = f[name]
                if ds.shape != a.shape or ds.dtype != a.dtype:
                    return False
                if a.nbytes > FULL_READBACK_BYTES:
                    continue  # its bytes were compared at h5py's own offset above; skip a second full read
                if not np.array_equal(ds[()], a, equal_nan=a.dtype.kind in "fc"):
                    return False
    except Exception:
        return False
    return True


# ----------------------------------------------------------------------------- memory layer


def _stamp(st):
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class MemoryLayer:
    """A process-wide LRU of verified entries (see the module docstring).

    Thread-safe; the arrays it keeps are private, read-only copies, and
    :meth:`get` hands out fresh copies.  The byte budget is the one given to
    :meth:`put` by the storing :class:`phasic.store.Store`.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._items = collections.OrderedDict()
        self._bytes = 0

    def _reset_after_fork(self):
        self._lock = threading.Lock()

    def get(self, st, key):
        """``(arrays, attrs)`` copies for the file with stat ``st`` holding ``key``, or None."""
        ident = (st.st_dev, st.st_ino, key)
        with self._lock:
            item = self._items.get(ident)
            if item is None:
                return None
            if item[0] != _stamp(st):
                self._drop(ident)
                return None
            self._items.move_to_end(ident)
        return {name: a.copy() for name, a in item[1].items()}, dict(item[2])

    def put(self, st, key, arrays, attrs, limit_bytes):
        """Remember a verified entry read from the file with stat ``st`` (copies are kept)."""
        nbytes = sum(a.nbytes for a in arrays.values()) + 1024
        if limit_bytes <= 0 or nbytes > limit_bytes / 4 or time.time() - st.st_mtime < MIN_TRUSTED_AGE:
            return
        kept = {name: a.copy() for name, a in arrays.items()}
        for a in kept.values():
            a.flags.writeable = False
        ident = (st.st_dev, st.st_ino, key)
        with self._lock:
            self._drop(ident)
            self._items[ident] = (_stamp(st), kept, dict(attrs), nbytes)
            self._bytes += nbytes
            while self._bytes > limit_bytes and self._items:
                self._drop(next(iter(self._items)))

    def restamp(self, old, new, key):
        """After the store touched a file: carry its entry over from stat ``old`` to ``new``."""
        ident = (old.st_dev, old.st_ino, key)
        with self._lock:
            item = self._items.get(ident)
            if item is not None and item[0] == _stamp(old) and (new.st_dev, new.st_ino) == ident[:2]:
                self._items[ident] = (_stamp(new),) + item[1:]

    def _drop(self, ident):
        item = self._items.pop(ident, None)
        if item is not None:
            self._bytes -= item[3]

    def clear(self):
        """Forget everything."""
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def __len__(self):
        return len(self._items)


#: The process-wide memory layer used by :class:`phasic.store.Store`.
MEMORY = MemoryLayer()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=MEMORY._reset_after_fork)
