"""The store's bottom layer: layout constants, entry and temporary-file names, the two
reports, and reading one entry file as a checked graph or trace (no ``Store`` here: every
module of :mod:`phasic.store` imports this one, and it imports none of them but ``_entry``)."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

from phasic.exceptions import CacheWarning
from phasic.store._entry import FORMAT, read_entry

#: The entry format this phasic writes (it reads this one and format 1).
STORE_FORMAT = FORMAT
#: A hit sets the entry's mtime (for LRU eviction) only when it is older than this (seconds).
TOUCH_SECONDS = 60.0
#: Default size of the in-process memory layer (MiB); ``$PHASIC_CACHE_MEMORY_MB`` overrides it.
MEMORY_MB = 64.0

KINDS = ("graphs", "traces")
#: Attributes the store itself writes on every entry.
STORE_ATTRS = ("format", "key", "key_material", "phasic_version", "created", "user", "host", "callback", "checksum")
_RESERVED = frozenset({"format", "key", "phasic_version", "created", "user", "host", "checksum"})
STALE_TEMP_SECONDS = 600.0
COMPRESS_MIN_BYTES = 64 * 1024


class _LazyRe:
    """A regular expression compiled on first use (keeps ``import phasic.store`` cheap)."""

    __slots__ = ("pattern", "_compiled")

    def __init__(self, pattern):
        self.pattern = pattern
        self._compiled = None

    def match(self, text):
        if self._compiled is None:
            self._compiled = re.compile(self.pattern)
        return self._compiled.match(text)


def _is_key(key):
    """Whether ``key`` is 64 lowercase hex digits (without a regex: this is on every hit's path)."""
    return type(key) is str and len(key) == 64 and not key.strip("0123456789abcdef")


_NAME_RE = _LazyRe(r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*$")
_ENTRY_FILE_RE = _LazyRe(r"^[0-9a-f]{62}\.h5$")
_SUBDIR_RE = _LazyRe(r"^[0-9a-f]{2}$")
_TEMP_RE = _LazyRe(r"^\.[^/]*\.(tmp|lock)(\.[^/]*)?$")
_MB = 1024 * 1024
_VERSION = None


def phasic_version():
    """The installed phasic version (``"unknown"`` when not installed)."""
    global _VERSION
    if _VERSION is None:
        try:
            from importlib.metadata import version

            _VERSION = version("phasic")
        except Exception:  # not installed (e.g. a source checkout on sys.path)
            _VERSION = "unknown"
    return _VERSION


def default_root():
    """The store root: ``$PHASIC_CACHE_DIR`` or ``~/.phasic_cache`` (not created)."""
    env = os.environ.get("PHASIC_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".phasic_cache"


class VerifyReport:
    """Result of :meth:`Store.verify`.

    Attributes
    ----------
    checked : int
        Entries read and checked.
    ok : int
        Entries that verified.
    bad : list of (str, str)
        ``(path, reason)`` of every entry that failed; each was moved aside.
    removed_temp : list of str
        Stale temporary and lock files, and staging folders of killed imports, that were removed.
    newer : list of str
        Entries of a newer store format, left alone (neither ok nor bad).
    legacy : list of str
        Format-1 (and older unindexed) entries: no checksum covers their attributes, so
        they are never read (a hit rebuilds and replaces them); left alone.
    unreadable : list of (str, str)
        ``(path, reason)`` of entries this user may not read (another user's files):
        left alone, never moved aside.
    """

    def __init__(self, checked=0, ok=0, bad=None, removed_temp=None, newer=None, legacy=None, unreadable=None):
        self.checked = checked
        self.ok = ok
        self.bad = [] if bad is None else bad
        self.removed_temp = [] if removed_temp is None else removed_temp
        self.newer = [] if newer is None else newer
        self.legacy = [] if legacy is None else legacy
        self.unreadable = [] if unreadable is None else unreadable

    def __bool__(self):
        return not self.bad

    def __eq__(self, other):
        return isinstance(other, VerifyReport) and vars(self) == vars(other)

    def __repr__(self):
        return "VerifyReport(" + ", ".join(f"{k}={v!r}" for k, v in vars(self).items()) + ")"


class ImportReport:
    """Result of :meth:`Store.import_archive`.

    Attributes
    ----------
    imported : int
        Entries merged into the store.
    skipped : int
        Entries already present (and good), or present but unreadable to this user.
    provenance : list of dict
        One dict per imported entry: ``kind``, ``key``, ``path`` and those of ``callback``,
        ``user``, ``host``, ``phasic_version``, ``created`` the entry records (what it
        *claims*: an archive's checksums show integrity, not who made it).
    ignored : list of (str, str)
        ``(member, reason)`` of entries left out: format-1 entries (never trusted, see
        :class:`VerifyReport`) and entries of a newer store format.
    """

    def __init__(self, imported=0, skipped=0, provenance=None, ignored=None):
        self.imported = imported
        self.skipped = skipped
        self.provenance = [] if provenance is None else provenance
        self.ignored = [] if ignored is None else ignored

    def __eq__(self, other):
        return isinstance(other, ImportReport) and vars(self) == vars(other)

    def __repr__(self):
        return "ImportReport(" + ", ".join(f"{k}={v!r}" for k, v in vars(self).items()) + ")"


#: Entry attributes :meth:`Store.import_archive` reports as provenance.
PROVENANCE_ATTRS = ("callback", "user", "host", "phasic_version", "created")


def _token(nbytes=6):
    return os.urandom(nbytes).hex()


def _hostname():
    import socket

    return socket.gethostname()


def _new_temp(path):
    """Create an empty ``.<name>.tmp.<random>`` next to ``path`` (mode 0666 & ~umask, unlike mkstemp)."""
    while True:
        tmp = path.parent / f".{path.name}.tmp.{_token()}"
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return tmp
        except FileExistsError:
            continue


def _inspect(path, key, kind, deep=False, raw=False):
    """``(arrays, attrs, stat, status, detail)`` of the entry file at ``path`` (see
    :func:`phasic.store._entry.read_entry`; with ``raw``, the verified bytes too); a graph
    entry is also checked as a graph (:func:`phasic._csr.graph_problem`).
    Raises OSError when it cannot be read."""
    out = read_entry(path, key, deep, raw)
    if out[3] == "ok" and kind == "graphs":
        from phasic._csr import graph_problem

        detail = graph_problem(out[0], out[1])
        if detail is not None:
            out = (None, None, out[2], "bad", detail) + ((None,) if raw else ())
    return out


def _unreadable(path, exc, stacklevel=3):
    """Warn that an entry cannot be read (a miss; the entry is left alone)."""
    reason = exc.strerror or str(exc) if isinstance(exc, OSError) else str(exc)
    hint = (
        "another user's entry? ask its owner to make the cache group-readable, or use your own PHASIC_CACHE_DIR"
        if isinstance(exc, PermissionError)
        else "check the file system"
    )
    warnings.warn(
        f"phasic store: cannot read {path} ({reason}); treated as a miss and left alone; {hint}",
        CacheWarning,
        stacklevel,
    )
