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
h5py alone costs ~50-190 ms and an h5py open + read ~0.7-1.3 ms here, many
times the cost of building a 50-vertex graph (~0.1 ms).  The writer checks that every offset holds the
array's bytes and that h5py reads the finished file back; an entry that
cannot be indexed (compressed datasets) is written without the index and
read with h5py, like format-1 entries.

A file whose index is missing (format 1, compressed) or fails its check
(damaged, modified, or a newer format) is read with h5py and judged there;
see :meth:`phasic.store.Store.get`.

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
    "read_indexed",
    "read_hdf5",
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


def _read_all(path):
    """``(buffer, stat)``: the whole file in a fresh, writable uint8 array."""
    fd = os.open(path, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        head = os.read(fd, PREFIX)
        if len(head) < PREFIX or head[:16] != MAGIC:
            return None, st
        buf = np.empty(st.st_size, np.uint8)
        buf[:PREFIX] = np.frombuffer(head, np.uint8)
        view = memoryview(buf)[PREFIX:]
        while view:
            n = os.readv(fd, [view])
            if n <= 0:
                return np.empty(0, np.uint8), st  # shorter than its stat: damaged or being replaced
            view = view[n:]
        return buf, st
    finally:
        os.close(fd)


def read_indexed(path, key):
    """Read and verify a format-2 entry through its index.

    Parameters
    ----------
    path : str
        The entry file.
    key : str
        The key the entry must hold.

    Returns
    -------
    (arrays, attrs, stat, status)
        ``status`` is ``"ok"`` (``arrays`` are views of one private buffer,
        ``attrs`` a dict), ``"plain"`` (no index: format 1 or compressed; read
        it with h5py) or ``"bad"`` (an index that fails its check, or holds
        another key).  ``arrays`` and ``attrs`` are None unless ``"ok"``.

    Raises
    ------
    OSError
        When the file cannot be opened or read (FileNotFoundError: missing).
    """
    buf, st = _read_all(path)
    if buf is None:
        return None, None, st, "plain"
    try:
        arrays, attrs = _parse(buf, key)
    except (ValueError, TypeError, KeyError, IndexError, OverflowError):  # a damaged index
        return None, None, st, "bad"
    return arrays, attrs, st, "ok"


def _parse(buf, key):
    size = buf.size
    head = buf[:PREFIX].tobytes()
    userblock = int.from_bytes(head[16:24], "little")
    length = int.from_bytes(head[24:32], "little")
    if not (MIN_USERBLOCK <= userblock < size and userblock & (userblock - 1) == 0 and PREFIX + length <= userblock):
        raise ValueError("bad index header")
    h = sha256(head[16:32], size_hint=size)
    h.update(memoryview(buf)[PREFIX:])
    if h.digest() != head[32:64]:
        raise ValueError("checksum mismatch")
    index = json.loads(buf[PREFIX:PREFIX + length].tobytes())
    attrs = index["attrs"]
    if attrs.get("key") != key:
        raise ValueError("another key")
    arrays = {}
    for name, dtype, shape, offset, nbytes in index["arrays"]:
        dtype = _dtype(dtype)
        if math.prod(shape) * dtype.itemsize != nbytes:
            raise ValueError("bad array size")
        if nbytes == 0:
            arrays[name] = np.empty(shape, dtype)
        elif userblock <= offset and offset + nbytes <= size:
            arrays[name] = np.ndarray(shape, dtype, buf, offset)  # a view of the private buffer
        else:
            raise ValueError("array outside the file")
    return arrays, attrs


def _py(value, h5py):
    """HDF5 attribute value -> plain Python value."""
    if isinstance(value, h5py.Empty):
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_hdf5(path):
    """``(arrays, attrs)``: every dataset and root attribute of an HDF5 file, read with h5py."""
    h5py = _h5py()
    arrays = {}
    with h5py.File(path, "r", locking=False) as f:
        attrs = {k: _py(v, h5py) for k, v in f.attrs.items()}

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                arrays[name] = obj[()]

        f.visititems(visit)
    for name, value in arrays.items():
        if not isinstance(value, np.ndarray):
            arrays[name] = np.asarray(value)
    return arrays, attrs


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
    """The bytes of an entry file: format 2 with its index when possible.

    Parameters
    ----------
    arrays : dict of str to numpy.ndarray
        Checked, native-byte-order, C-ordered arrays.
    attrs : dict
        Every root attribute (str, int, float, bool or None values),
        including ``format``, ``key`` and ``checksum``.
    compression : {"none", "gzip", "lzf"}
        Filter for datasets of at least ``min_compress_bytes``; an entry with
        a compressed dataset gets no index.

    Returns
    -------
    bytes
    """
    table = [[name, a.dtype.str, list(a.shape), 0, int(a.nbytes)] for name, a in sorted(arrays.items())]
    index = {"attrs": attrs, "arrays": table}
    need = PREFIX + len(json.dumps(index, separators=(",", ":"))) + 24 * len(table)
    userblock = max(MIN_USERBLOCK, 1 << (need - 1).bit_length())
    for _ in range(4):
        image, offsets = _hdf5_image(arrays, attrs, compression, min_compress_bytes, userblock)
        if offsets is None:
            break  # compressed: no index
        if image[:8] == _HDF5_SIGNATURE:  # h5py's core image leaves the userblock out
            body = image
        elif image[userblock:userblock + 8] == _HDF5_SIGNATURE:
            body = image[userblock:]
        else:
            break
        for row in table:
            row[3] = int(offsets[row[0]]) if row[4] else 0
        text = json.dumps(index, separators=(",", ":")).encode()
        if PREFIX + len(text) > userblock:
            userblock = 1 << (PREFIX + len(text) - 1).bit_length()
            continue
        sizes = userblock.to_bytes(8, "little") + len(text).to_bytes(8, "little")
        rest = text + bytes(userblock - PREFIX - len(text)) + body
        h = sha256(sizes, size_hint=len(rest))
        h.update(rest)
        data = MAGIC + sizes + h.digest() + rest
        if _index_holds(data, arrays, table, userblock):
            return data
        break
    return _hdf5_image(arrays, attrs, compression, min_compress_bytes, 0)[0]


#: Datasets up to this size are also read back through h5py when an entry is written.
FULL_READBACK_BYTES = 4 << 20


def _index_holds(data, arrays, table, userblock):
    """Whether every indexed offset holds its array's bytes and h5py reads the file back."""
    import io

    buf = np.frombuffer(data, np.uint8)
    for name, _, _, offset, nbytes in table:
        if nbytes and not np.array_equal(buf[offset:offset + nbytes], arrays[name].reshape(-1).view(np.uint8)):
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
    except Exception:  # noqa: BLE001 - any failure to read back means: write it without the index
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
