"""The content-addressed HDF5 store of graphs and traces.

Layout
------
``<root>/<kind>/<key[:2]>/<key[2:]>.h5`` with ``kind`` one of ``"graphs"`` and
``"traces"`` and ``key`` the 64-hex-digit SHA-256 of the entry's key material
(see :mod:`phasic.keys`).  ``root`` is ``$PHASIC_CACHE_DIR`` or
``~/.phasic_cache``.  Corrupt entries are moved to ``<root>/corrupt/``.

Entry format (version 2)
------------------------
One HDF5 file; every array is a dataset (a ``/`` in its name makes groups, e.g.
``edges/indptr``); the root group's attributes hold ``format``, ``key``,
``key_material`` (canonical JSON), ``phasic_version``, ``created`` (ISO 8601,
UTC), ``callback`` (when the caller gives it), ``checksum`` (SHA-256 over the
datasets' names, dtypes, shapes and bytes in sorted name order) and every
attribute the caller passes (str/int/float/bool/None).  No pickles.

Format 2 adds an index in the file's HDF5 userblock (described in
:mod:`phasic.store._entry`): the attributes as JSON, where each dataset's bytes
lie, and a SHA-256 of the whole file, so that a hit is one read of the file, one
SHA-256 pass and no h5py at all.  Entries with compressed datasets carry the
same head and SHA-256 (magic ``phasic-store-h2``, an index of the attributes
only) and are read with h5py once the SHA-256 passed.  Keys did not change.

What is trusted
---------------
Nothing is parsed before the whole-file SHA-256 passed, and that SHA-256 covers
every byte: arrays, attributes (``discrete``, ``key``, ...) and index.  Only
regular files are read (a FIFO, device or symbolic link at an entry path is a
bad entry, moved aside without being opened).  h5py reads only files whose
structure the store writes: no external raw storage, virtual datasets, soft or
external links, unknown filters or odd dtypes, and no dataset claiming bytes the
file cannot hold.  Graph entries are also checked as graphs
(:func:`phasic._csr.graph_problem`).  Entries of format 1 (and older
unindexed ones) have no checksum over their attributes: they are never parsed,
a hit on them is a miss whose rebuild replaces them, and :meth:`Store.verify`
lists them as ``legacy``.  An entry this user may not read (``PermissionError``)
is a miss with a :class:`phasic.exceptions.CacheWarning` and is never moved
aside.  A checksum shows integrity, not authenticity: see ``docs/store.md``.

Speed and compression
---------------------
Measured hit times and the compression trade-off are in ``docs/store.md``; in short,
graphs are stored in the compact lossless form of :mod:`phasic._csr` without a
compression filter (``Store(compression="gzip")`` or ``$PHASIC_CACHE_COMPRESSION=gzip``
adds gzip level 1 + shuffle to datasets of at least 64 KiB, read back through h5py).

Concurrency and durability
--------------------------
* An entry is built as an HDF5 image in memory (h5py's ``core`` driver), then
  written with plain ``os.write`` to a temporary file in the entry's directory
  (``.<name>.tmp.*``), fsynced and renamed over the final name with
  :func:`os.replace`; readers never see a partial entry, and a failing disk
  gives a clean ``OSError`` instead of an HDF5 library in an error state.
  Temporary files older than :data:`STALE_TEMP_SECONDS` are removed by
  :meth:`Store.put` (in that directory) and :meth:`Store.verify` (everywhere).
* :meth:`Store.get_or_create` serialises builders of one key with an
  ``O_EXCL`` lock file ``.<name>.lock`` next to the entry; the holder touches
  it while building, waiters poll for the entry with back-off and take the lock
  over when its holder died (same host: pid gone or reused; another host: not
  touched for ``stale_lock_seconds``).  A live holder is waited for up to
  ``lock_timeout``; past it, or when no lock can be made or a dead one removed,
  or the entry cannot be written, the entry is built in memory with one
  ``CacheWarning`` and not stored (:mod:`phasic.store._lock`).
* HDF5's own file locking is switched off (``HDF5_USE_FILE_LOCKING=FALSE`` is
  set when this module is imported, and ``locking=False`` is passed to h5py):
  entries are immutable once renamed into place, so it protects nothing here,
  and on NFS/Lustre it fails with "unable to lock file" errors or hangs.
* Least-recently-used eviction uses the file's *mtime* (atime is unreliable
  under ``noatime``/``relatime``).  :meth:`Store.get` sets it only when it is
  more than :data:`TOUCH_SECONDS` (a minute) old, so the LRU order has a
  resolution of a minute and a hit does not write metadata every time (which
  costs on network file systems).  Written and touched files get an mtime
  :data:`phasic.store._entry.MTIME_BACKDATE` seconds in the past (see the
  memory layer in :mod:`phasic.store._entry`).
* Verified entries are kept in an in-process memory layer (default 64 MiB,
  ``$PHASIC_CACHE_MEMORY_MB``, 0 = off) that is used only while the file's
  device, inode, size, mtime and ctime are unchanged; a replaced, removed or
  rewritten file is read (and verified) again.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from pathlib import Path

# Set before h5py opens any file; see the module docstring.
os.environ["HDF5_USE_FILE_LOCKING"] = "FALSE"

from phasic.exceptions import CacheWarning, ParameterError
from phasic.store._entry import MEMORY, MTIME_BACKDATE, checksum_arrays
from phasic.store._layout import (
    _ENTRY_FILE_RE,
    _MB,
    _SUBDIR_RE,
    _TEMP_RE,
    KINDS,
    MEMORY_MB,
    PROVENANCE_ATTRS,
    STALE_TEMP_SECONDS,
    STORE_ATTRS,
    STORE_FORMAT,
    TOUCH_SECONDS,
    ImportReport,
    VerifyReport,
    _inspect,
    _is_key,
    _token,
    _unreadable,
    default_root,
    phasic_version,
)

__all__ = [
    "Store",
    "VerifyReport",
    "ImportReport",
    "default_root",
    "read_store",
    "KINDS",
    "STORE_ATTRS",
    "checksum_arrays",
    "STORE_FORMAT",
    "PROVENANCE_ATTRS",
    "phasic_version",
]


_READ_STORES = {}


def read_store():
    """A ``Store()`` to read hits from, made once per root and memory setting.

    A hit costs a fraction of a millisecond (docs/store.md), so it reads only the environment
    variables that matter to a read; a miss writes through a fresh ``Store()`` that checks them
    all (size limit, compression).
    """
    env = os.environ
    setting = (env.get("PHASIC_CACHE_DIR"), env.get("HOME"), env.get("PHASIC_CACHE_MEMORY_MB"))
    store = _READ_STORES.get(setting)
    if store is None:
        store = Store()  # raises for bad settings, every time: nothing is remembered then
        if len(_READ_STORES) >= 8:
            _READ_STORES.clear()
        _READ_STORES[setting] = store
    return store


class Store:
    """Content-addressed HDF5 store (see the module docstring).

    Parameters
    ----------
    root : str or path-like, optional
        The store root; default ``$PHASIC_CACHE_DIR`` or ``~/.phasic_cache``.
        Nothing is created until something is written.
    max_size_mb : float, optional
        Size limit over all kinds; default ``$PHASIC_CACHE_MAX_MB`` (unset:
        no limit).  After each write the least recently used entries are
        evicted until the store fits.
    compression : {"none", "gzip", "lzf"}, optional
        Filter for datasets of at least 64 KiB (with shuffle); default
        ``$PHASIC_CACHE_COMPRESSION`` or ``"none"`` (see the module docstring).
    stale_lock_seconds : float
        How long a build lock of another host may go untouched before waiters take it over.
    lock_timeout : float, optional
        How long, in seconds, to wait in all for another live process building the same
        entry before building it here in memory (with a ``CacheWarning``, not stored);
        default ``$PHASIC_CACHE_LOCK_TIMEOUT`` or 600 (see :mod:`phasic.store._lock`).
    memory_mb : float, optional
        Budget of the process-wide memory layer this store's reads may fill;
        default ``$PHASIC_CACHE_MEMORY_MB`` or 64; 0 turns it off (this
        store then neither fills nor uses it).

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> s = Store(tempfile.mkdtemp())
    >>> key = "ab" * 32
    >>> _ = s.put("graphs", key, {"x/y": np.arange(3)}, {"note": "hi"})
    >>> arrays, attrs = s.get("graphs", key)
    >>> arrays["x/y"].tolist(), attrs["note"]
    ([0, 1, 2], 'hi')
    """

    def __init__(
        self, root=None, max_size_mb=None, compression=None, stale_lock_seconds=120.0, memory_mb=None, lock_timeout=None
    ):
        self.root = Path(root).expanduser() if root is not None else default_root()
        if max_size_mb is None and os.environ.get("PHASIC_CACHE_MAX_MB"):
            raw = os.environ["PHASIC_CACHE_MAX_MB"]
            try:
                max_size_mb = float(raw)
            except ValueError:
                raise ParameterError(
                    f"PHASIC_CACHE_MAX_MB={raw!r} is not a number; set it to a size in MB or unset it"
                ) from None
        if max_size_mb is not None and not max_size_mb > 0:
            raise ParameterError(f"max_size_mb={max_size_mb!r} must be a positive number of MB (or None: no limit)")
        if compression is None:
            compression = os.environ.get("PHASIC_CACHE_COMPRESSION") or "none"
        if compression not in ("gzip", "lzf", "none"):
            raise ParameterError(
                f"compression={compression!r} (or $PHASIC_CACHE_COMPRESSION) is not one of 'none', 'gzip', 'lzf'"
            )
        if memory_mb is None:
            raw = os.environ.get("PHASIC_CACHE_MEMORY_MB")
            memory_mb = MEMORY_MB
            if raw:
                try:
                    memory_mb = float(raw)
                except ValueError:
                    memory_mb = -1.0
                if not memory_mb >= 0:
                    raise ParameterError(
                        f"PHASIC_CACHE_MEMORY_MB={raw!r} is not a size in MB; set it to a number >= 0 "
                        "(0 turns the in-process memory layer off) or unset it"
                    )
        elif isinstance(memory_mb, bool) or not isinstance(memory_mb, (int, float)) or not memory_mb >= 0:
            raise ParameterError(f"memory_mb={memory_mb!r} must be a number of MB >= 0 (0: no memory layer)")
        self.max_size_mb = max_size_mb
        self.compression = compression
        self.stale_lock_seconds = float(stale_lock_seconds)
        self.memory_mb = float(memory_mb)
        self.lock_timeout = lock_timeout
        if lock_timeout is not None:
            from phasic.store._lock import lock_timeout as _checked

            _checked(self)  # a bad value is refused here, naming it

    def __repr__(self):
        return f"Store({str(self.root)!r})"

    # ------------------------------------------------------------------ paths
    def _file(self, kind, key):
        """The entry's path as a str (validated like :meth:`path`, without building Path objects)."""
        if kind not in KINDS:
            raise ParameterError(f"store kind {kind!r} is not one of {KINDS}")
        if not _is_key(key):
            raise ParameterError(f"store key {key!r} is not 64 lowercase hex digits (a sha256 hexdigest)")
        return f"{os.fspath(self.root)}{os.sep}{kind}{os.sep}{key[:2]}{os.sep}{key[2:]}.h5"

    def path(self, kind, key):
        """Path of the entry ``key`` of ``kind`` (``<root>/<kind>/<key[:2]>/<key[2:]>.h5``)."""
        if kind not in KINDS:
            raise ParameterError(f"store kind {kind!r} is not one of {KINDS}")
        if not _is_key(key):
            raise ParameterError(f"store key {key!r} is not 64 lowercase hex digits (a sha256 hexdigest)")
        return self.root / kind / key[:2] / f"{key[2:]}.h5"

    def _kinds(self, kind):
        if kind is None:
            return KINDS
        kinds = (kind,) if isinstance(kind, str) else tuple(kind)
        for k in kinds:
            if k not in KINDS:
                raise ParameterError(f"store kind {k!r} is not one of {KINDS}")
        return kinds

    def _entry_paths(self, kind, any_type=False):
        """``(key, path)`` of every entry file of ``kind``; never creates anything.

        ``any_type=True`` also lists FIFOs, devices, sockets and symbolic links at entry
        names (bad entries that :meth:`verify` and :meth:`clear` remove); never directories.
        """
        base = self.root / kind
        try:
            subdirs = sorted(os.scandir(base), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            return []
        out = []
        for sub in subdirs:
            if not (_SUBDIR_RE.match(sub.name) and sub.is_dir(follow_symlinks=False)):
                continue
            with contextlib.suppress(FileNotFoundError):
                for entry in sorted(os.scandir(sub.path), key=lambda e: e.name):
                    if _ENTRY_FILE_RE.match(entry.name) and (
                        entry.is_file(follow_symlinks=False) or any_type and not entry.is_dir(follow_symlinks=False)
                    ):
                        out.append((sub.name + entry.name[:-3], Path(entry.path)))
        return out

    # ------------------------------------------------------------------ read
    def contains(self, kind, key):
        """Whether an entry file exists (not verified; :meth:`get` verifies)."""
        return self.path(kind, key).is_file()

    def _kind(self, kind):
        if kind not in KINDS:
            raise ParameterError(f"store kind {kind!r} is not one of {KINDS}")
        return kind

    def entries(self, kind):
        """Sorted keys of the entries of ``kind``."""
        return [key for key, _ in self._entry_paths(self._kind(kind))]

    def stats(self, kind):
        """``{'cache_dir', 'num_entries', 'total_bytes', 'total_size_mb'}`` of one kind (creates nothing)."""
        kind = self._kind(kind)
        total = n = 0
        for _, path in self._entry_paths(kind):
            with contextlib.suppress(FileNotFoundError):
                total += path.stat().st_size
                n += 1
        return {
            "cache_dir": str(self.root / kind),
            "num_entries": n,
            "total_bytes": total,
            "total_size_mb": total / _MB,
        }

    def get(self, kind, key):
        """Read and verify an entry.

        Returns
        -------
        (dict, dict) or None
            ``(arrays, attrs)``, or None for a miss: the entry is missing; it failed
            verification (a warning names the file, which is moved to ``<root>/corrupt/``;
            the caller rebuilds); it is a format-1 entry (``legacy``: a silent miss, a
            rebuild replaces it); it is of a newer store format (a warning says to
            upgrade; it is left alone); or this user cannot read it (a warning; it is left
            alone, never moved).  The arrays belong to the caller (never shared with the
            memory layer or other callers).
        """
        return self._lookup(kind, key)[0]

    def _lookup(self, kind, key, warn=True):
        """``(found, status, stat)``: what :meth:`get` returns, the entry's status (``"ok"``,
        ``"missing"``, ``"bad"`` (moved aside), ``"legacy"``, ``"newer"``, ``"unreadable"``) and the
        stat of the file that was read (None when missing).  ``warn=False``: no warning for
        newer and unreadable entries (a caller that already warned once)."""
        path = self._file(kind, key)
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None, "missing", None
        except OSError as exc:
            if warn:
                _unreadable(path, exc, 4)
            return None, "unreadable", None
        if self.memory_mb:
            found = MEMORY.get(st, key)
            if found is not None:
                self._touch(path, st, key)
                return found, "ok", st
        try:
            arrays, attrs, st, status, detail = _inspect(path, key, kind)
        except (FileNotFoundError, NotADirectoryError):
            return None, "missing", None
        except OSError as exc:  # PermissionError (another user's entry), EIO, EMFILE: not the entry's fault
            if warn:
                _unreadable(path, exc, 4)
            return None, "unreadable", st
        if status != "ok":
            if status == "newer":
                if warn:
                    warnings.warn(
                        f"phasic store: ignoring {path}: {detail}; upgrade phasic to use it (it is "
                        "left alone; what it holds is built here and not stored)",
                        CacheWarning,
                        3,
                    )
            elif status == "bad":
                self._quarantine(kind, key, Path(path), st, detail, 4)
            return None, status, st  # "legacy": a miss; get_or_create rebuilds and replaces it
        MEMORY.put(st, key, arrays, attrs, self.memory_mb * _MB)
        self._touch(path, st, key)
        return (arrays, attrs), "ok", st

    @staticmethod
    def _touch(path, st, key):
        """LRU: set the mtime of an entry last set more than TOUCH_SECONDS ago (read-only caches skip it)."""
        now = time.time()
        if now - st.st_mtime <= TOUCH_SECONDS:
            return
        stamp = int((now - MTIME_BACKDATE) * 1e9)
        try:
            os.utime(path, ns=(stamp, stamp))
            MEMORY.restamp(st, os.stat(path), key)
        except OSError:
            pass

    def discard(self, kind, key, reason, st):
        """Move an entry its reader found unusable to ``<root>/corrupt/``, with a warning naming
        the file and ``reason`` (a caller that could not use what :meth:`get` returned).

        ``st`` is the ``os.stat`` of the file that was read (taken before the read): the file is
        moved only while the path still holds that inode, so a good entry a writer put in place
        meanwhile is left alone."""
        self._quarantine(kind, key, Path(self._file(kind, key)), st, reason, 3)

    def _quarantine(self, kind, key, path, st, reason, stacklevel=3):
        """Move the bad entry whose stat is ``st`` to ``<root>/corrupt/`` (or remove it) and warn;
        nothing happens when the path no longer holds that file."""
        try:
            now = os.lstat(path)
        except OSError:
            return  # gone: another process moved or replaced it
        if st is None or (now.st_ino, now.st_dev) != (st.st_ino, st.st_dev):
            return  # a writer replaced it meanwhile (with a good entry, or one the next read checks)
        dest = self.root / "corrupt" / f"{kind}-{key}-{time.strftime('%Y%m%dT%H%M%S')}-{_token(4)}.h5"
        action = f"moved to {dest}"
        try:
            from phasic.store._write import make_dirs

            make_dirs(dest.parent)
            os.rename(path, dest)
            moved = os.lstat(dest)
            if (moved.st_ino, moved.st_dev) != (st.st_ino, st.st_dev):
                # a writer replaced the bad file with a good one meanwhile: put it back
                with contextlib.suppress(OSError):
                    os.link(dest, path, follow_symlinks=False)
                with contextlib.suppress(OSError):
                    os.unlink(dest)
                return
        except FileNotFoundError:
            action = "already removed by another process"
        except OSError:
            try:
                os.unlink(path)
                action = "removed"
            except OSError as exc:
                action = f"could not be moved or removed ({exc})"
        warnings.warn(
            f"phasic store: corrupt entry {path} ({reason}); {action}; it will be rebuilt", CacheWarning, stacklevel
        )

    # ------------------------------------------------------------------ write
    def put(self, kind, key, arrays, attrs=None):
        """Write an entry atomically (replacing any entry of that key).

        Parameters
        ----------
        kind : {"graphs", "traces"}
        key : str
            64 hex digits.
        arrays : dict of str to numpy.ndarray
            Dataset name (``/`` makes groups) to array (bool, int, float, complex, bytes).
        attrs : dict, optional
            str/int/float/bool/None values; ``key_material`` and ``callback``
            become the store's attributes of those names.

        Returns
        -------
        pathlib.Path
            The entry's path.

        Raises
        ------
        StoreError
            If the entry cannot be written (disk full, permissions); other
            entries are untouched and no temporary file is left.
        """
        return self._put(kind, key, arrays, attrs)[0]

    def _put(self, kind, key, arrays, attrs=None):
        from phasic.store._write import put_entry

        return put_entry(self, kind, key, arrays, attrs)

    def _clean_temps(self, directory, max_age=STALE_TEMP_SECONDS, everything=False):
        """Remove stale temp files, dead lock files and anything but a regular file at a temp or
        lock name (a FIFO or link there is never opened) in one directory; ``everything``
        removes every temp and lock file (``clear``)."""
        removed = []
        now = time.time()
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            for entry in os.scandir(directory):
                if not _TEMP_RE.match(entry.name) or entry.is_dir(follow_symlinks=False):
                    continue
                try:
                    if everything or not entry.is_file(follow_symlinks=False):
                        pass
                    elif entry.name.endswith(".lock"):
                        if not self._lock_is_stale(Path(entry.path)):
                            continue
                    elif now - entry.stat(follow_symlinks=False).st_mtime < max_age:
                        continue
                    os.unlink(entry.path)
                    removed.append(entry.path)
                except OSError:
                    pass
        return removed

    # ------------------------------------------------------------------ maintenance
    def clear(self, kind=None):
        """Remove every entry of ``kind`` (default: all kinds; also non-regular files at entry
        paths and staging folders of killed imports); returns how many entries."""
        from phasic.store._maintenance import clear

        return clear(self, kind)

    def verify(self, kind=None):
        """Check every entry (its SHA-256, then its HDF5 part with the safe h5py reader, and
        graph entries as graphs); move bad ones (also FIFOs, devices and symlinks at entry
        paths) aside and remove stale temporary files and the staging folders of killed
        imports.  Entries of a newer store format (``newer``), format-1 entries (``legacy``)
        and entries this user may not read (``unreadable``) are listed and left alone.

        Returns
        -------
        VerifyReport
            Falsy when any entry was bad.
        """
        from phasic.store._maintenance import verify

        return verify(self, kind)

    def evict(self, max_size_mb, keep=()):
        """Remove least recently used entries (by mtime) until all kinds fit in ``max_size_mb``.

        Returns
        -------
        list of pathlib.Path
            The removed entries, oldest first.
        """
        from phasic.store._maintenance import evict

        return evict(self, max_size_mb, keep)

    # ------------------------------------------------------------------ build once
    def _lock_is_stale(self, lock):
        from phasic.store._lock import lock_is_stale

        return lock_is_stale(lock, self.stale_lock_seconds)

    def get_or_create(self, kind, key, build, *, after_miss=None):
        """Return an entry, building and storing it when missing, at most once across processes.

        Parameters
        ----------
        kind : {"graphs", "traces"}
        key : str
        build : callable
            ``build() -> (arrays, attrs)``; called when the entry is missing and this
            process holds the build lock, or, with one ``CacheWarning`` and nothing
            stored, when no lock can be had (a read-only, full or foreign store, a stale
            lock that cannot be removed, a live holder past ``lock_timeout``) or the
            entry cannot be written (see :mod:`phasic.store._lock`).  An entry of a newer
            store format is never replaced: the entry is built here, in memory, and the one
            warning says to upgrade phasic.

        Returns
        -------
        (dict, dict)
            ``(arrays, attrs)`` as :meth:`get` returns them.
        after_miss : str, optional
            The status of a lookup this caller has just made that found nothing (it warned
            already, if it had to): the entry is not read again before the lock.
        """
        status = after_miss
        if status is None:
            found, status, _ = self._lookup(kind, key)
            if found is not None:
                return found
        from phasic.store._lock import get_or_create

        return get_or_create(self, kind, key, build, status)

    # ------------------------------------------------------------------ archives
    def export(self, tar_path, kinds=KINDS):
        """Write the verified entries of ``kinds`` to a ``.tar.gz`` (members ``<kind>/xx/yyyy.h5``).

        Parameters
        ----------
        tar_path : str or path-like
            The archive to write (replaced atomically); must be a new or regular file
            (a FIFO, device or symbolic link there raises UnsafeArchiveError).
        kinds : sequence of {"graphs", "traces"}

        Returns
        -------
        int
            Number of entries written (entries that fail verification are
            moved aside with a warning and left out).
        """
        from phasic.store._maintenance import export

        return export(self, tar_path, kinds)

    def import_archive(self, tar_path):
        """Merge a cache archive (from :meth:`export` or ``tar -czf x.tar.gz graphs/ traces/``).

        Every member is checked before anything is merged: no absolute paths,
        no ``..``, no links or devices, only ``graphs|traces/xx/yyyy.h5`` files
        (and their directories) whose content verifies as :meth:`verify` checks it
        (graph entries must be valid graphs) and whose stored key matches the
        name.  Format-1 and newer-format members are left out (``ignored``).
        Leftover temporary/lock files of a live cache are skipped.  Good entries
        already in the store are kept.  Staging folders of killed imports are removed.

        Returns
        -------
        ImportReport
            Counts, and the provenance (``callback``, ``user``, ``host``,
            ``phasic_version``, ``created`` when recorded) of every imported entry.

        Raises
        ------
        UnsafeArchiveError
            Naming the first offending member; nothing is imported.
        StoreError
            If the file is missing or not a tar archive.
        """
        from phasic.store._maintenance import import_archive

        return import_archive(self, tar_path)
