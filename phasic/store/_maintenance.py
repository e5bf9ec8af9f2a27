"""Store maintenance: ``clear``, ``verify``, ``evict``, and cache archives (``export``,
``import_archive``), the bodies of the :class:`phasic.store.Store` methods of those names.

Kept apart from :mod:`phasic.store` so that importing the store for a cache
hit does not load (or compile) code only maintenance commands use.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import time
import warnings
from pathlib import Path

from phasic.exceptions import StoreError, UnsafeArchiveError
from phasic.store._layout import (
    _MB,
    _SUBDIR_RE,
    KINDS,
    PROVENANCE_ATTRS,
    STALE_TEMP_SECONDS,
    ImportReport,
    VerifyReport,
    _hostname,
    _inspect,
    _LazyRe,
    _new_temp,
    _token,
    _unreadable,
)

__all__ = ["clear", "verify", "evict", "export", "import_archive"]

_STAGING_RE = _LazyRe(r"^\.import-[^/]+$")
_OWNER = "owner.json"


def _checked_entries(store, kind):
    """``(key, path, stat, data, attrs, status, detail)`` of every entry of ``kind``, fully
    checked (see :func:`phasic.store._inspect`); ``data`` is the verified file content (one
    read: what was checked is what an archive holds).  ``status`` ``"unreadable"`` when this
    user cannot read it (``detail`` says why).  Non-regular files at entry names come out ``"bad"``."""
    for key, path in store._entry_paths(kind, any_type=True):
        try:
            _, attrs, st, status, detail, data = _inspect(os.fspath(path), key, kind, deep=True, raw=True)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            yield key, path, None, None, None, "unreadable", exc
            continue
        yield key, path, st, data, attrs, status, detail


def _subdirs(store, kind):
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for sub in os.scandir(store.root / kind):
            if _SUBDIR_RE.match(sub.name):
                yield sub.path


def _staging_is_stale(path):
    """Whether an ``.import-*`` staging folder belongs to a dead or long-silent import (its owner
    record is read like a lock file, and judged by the same rule: pid gone or reused)."""
    from phasic.store._lock import owner_is_gone, read_small_json

    owner = os.path.join(path, _OWNER)
    _, info = read_small_json(owner)
    if owner_is_gone(info):
        return True
    newest = 0.0
    for p in (path, owner):
        with contextlib.suppress(OSError):
            newest = max(newest, os.lstat(p).st_mtime)
    if info.get("host") == _hostname() and type(info.get("pid")) is int:  # a live import on this host
        return time.time() - newest > 86400.0
    return time.time() - newest > STALE_TEMP_SECONDS


def clean_staging(store):
    """Remove the ``<root>/.import-*`` folders of killed imports; returns their paths."""
    import shutil

    removed = []
    with contextlib.suppress(FileNotFoundError, NotADirectoryError, PermissionError):
        for entry in os.scandir(store.root):
            if not (_STAGING_RE.match(entry.name) and entry.is_dir(follow_symlinks=False)):
                continue
            if _staging_is_stale(entry.path):
                shutil.rmtree(entry.path, ignore_errors=True)
                if not os.path.lexists(entry.path):
                    removed.append(entry.path)
    return removed


def clear(store, kind=None):
    """See :meth:`phasic.store.Store.clear`."""
    n = 0
    for k in store._kinds(kind):
        for _, path in store._entry_paths(k, any_type=True):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                n += 1
        for sub in list(_subdirs(store, k)):
            store._clean_temps(sub, everything=True)  # lock and temp files too (of any type)
            with contextlib.suppress(OSError):
                os.rmdir(sub)
    clean_staging(store)
    return n


def verify(store, kind=None):
    """See :meth:`phasic.store.Store.verify`."""
    report = VerifyReport()
    report.removed_temp += clean_staging(store)
    for k in store._kinds(kind):
        for sub in _subdirs(store, k):
            report.removed_temp += store._clean_temps(sub)
        for key, path, st, _, _, status, detail in _checked_entries(store, k):
            report.checked += 1
            if status == "ok":
                report.ok += 1
            elif status == "newer":
                report.newer.append(str(path))
            elif status == "legacy":
                report.legacy.append(str(path))
            elif status == "unreadable":
                report.unreadable.append((str(path), detail.strerror or str(detail)))
            else:
                report.bad.append((str(path), detail))
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    store._quarantine(k, key, path, st, detail)
    return report


def evict(store, max_size_mb, keep=()):
    """See :meth:`phasic.store.Store.evict`."""
    keep = {Path(p) for p in keep}
    items = []
    for k in KINDS:
        for _, path in store._entry_paths(k):
            with contextlib.suppress(FileNotFoundError):
                st = path.stat()
                items.append((st.st_mtime_ns, st.st_size, path))
    total = sum(size for _, size, _ in items)
    limit = float(max_size_mb) * _MB
    removed = []
    for _, size, path in sorted(items, key=lambda t: (t[0], str(t[2]))):
        if total <= limit:
            break
        if path in keep:
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
        total -= size
    return removed


def _refuse_special(tar_path):
    """Raise UnsafeArchiveError unless ``tar_path`` is missing or a regular file (not a link)."""
    try:
        st = os.lstat(tar_path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StoreError(f"cannot write the archive {str(tar_path)!r}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(st.st_mode):
        from phasic.store._entry import _kind_of

        raise UnsafeArchiveError(
            f"refusing to write the archive to {str(tar_path)!r}: it is {_kind_of(st.st_mode)}, not a regular file; "
            "give the path of a new or regular file"
        )


def export(store, tar_path, kinds):
    """See :meth:`phasic.store.Store.export`."""
    import io
    import tarfile

    kinds = store._kinds(kinds)
    tar_path = Path(tar_path).expanduser()
    _refuse_special(tar_path)
    n = 0
    try:
        tmp = _new_temp(tar_path)
    except OSError as exc:
        raise StoreError(f"cannot write the archive {str(tar_path)!r}: {exc.strerror or exc}") from exc
    try:
        with tarfile.open(tmp, "w:gz") as tar:
            for kind in kinds:
                for key, path, st, data, _, status, detail in _checked_entries(store, kind):
                    if status == "bad":
                        store._quarantine(kind, key, path, st, detail)
                        continue
                    if status == "unreadable":
                        _unreadable(path, detail, 4)
                        continue
                    if status != "ok":
                        continue  # legacy and newer entries stay out of archives
                    info = tarfile.TarInfo(f"{kind}/{key[:2]}/{key[2:]}.h5")
                    info.size, info.mtime, info.mode = data.nbytes, int(st.st_mtime), 0o644
                    tar.addfile(info, io.BytesIO(data))  # the verified bytes themselves
                    n += 1
        _refuse_special(tar_path)  # (created meanwhile)
        os.replace(tmp, tar_path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, StoreError):
            raise StoreError(f"cannot write the archive {str(tar_path)!r}: {exc}") from exc
        raise
    return n


def _provenance(kind, key, path, attrs):
    out = {"kind": kind, "key": key, "path": str(path)}
    out.update((name, attrs[name]) for name in PROVENANCE_ATTRS if attrs.get(name) is not None)
    return out


def import_archive(store, tar_path):
    """See :meth:`phasic.store.Store.import_archive`."""
    import shutil
    import tarfile

    from phasic.store._write import make_dirs, share_file

    tar_path = Path(tar_path).expanduser()
    try:
        tar = tarfile.open(tar_path, "r:*")
    except FileNotFoundError:
        raise StoreError(f"archive {str(tar_path)!r} does not exist") from None
    except (tarfile.TarError, OSError) as exc:
        raise StoreError(f"{str(tar_path)!r} is not a readable tar archive ({exc})") from None
    report = ImportReport()
    with tar:
        try:
            wanted = [(m, kind, key) for m in tar.getmembers() for kind, key in _check_member(m)]
        except UnsafeArchiveError:
            raise
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise StoreError(f"{str(tar_path)!r} is a damaged tar archive ({exc})") from None
        clean_staging(store)
        staging = store.root / f".import-{_token(16)}"
        try:
            make_dirs(staging)
            with open(staging / _OWNER, "w") as fh:
                json.dump({"host": _hostname(), "pid": os.getpid(), "time": time.time()}, fh)
            staged = []
            for i, (member, kind, key) in enumerate(wanted):
                dest = staging / f"{i}.h5"
                src = tar.extractfile(member)
                with src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out)
                _, attrs, _, status, detail = _inspect(os.fspath(dest), key, kind, deep=True)
                if status in ("legacy", "newer"):
                    report.ignored.append((member.name, detail))
                    continue
                if status != "ok":
                    raise UnsafeArchiveError(
                        f"archive member {member.name!r} is not a valid store entry ({detail}); "
                        "nothing was imported. Re-export the cache with 'phasic cache export'"
                    )
                staged.append((dest, kind, key, attrs))
            for dest, kind, key, attrs in staged:
                target = store.path(kind, key)
                if os.path.lexists(target):
                    try:
                        status = _inspect(os.fspath(target), key, kind)[3]
                    except FileNotFoundError:
                        status = "missing"
                    except OSError as exc:
                        _unreadable(target, exc)
                        status = "ok"  # another user's entry: leave it alone
                    if status in ("ok", "newer"):
                        report.skipped += 1
                        continue
                make_dirs(target.parent)  # the shared-group rule, as for an entry written here
                fd = os.open(dest, os.O_RDONLY)
                try:
                    share_file(fd, target.parent)
                finally:
                    os.close(fd)
                os.replace(dest, target)
                report.imported += 1
                report.provenance.append(_provenance(kind, key, target, attrs))
        except (OSError, tarfile.TarError, EOFError) as exc:
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"cannot import {str(tar_path)!r} into {str(store.root)!r}: {exc}") from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return report


_MEMBER_RE = _LazyRe(r"^(graphs|traces)/([0-9a-f]{2})/([0-9a-f]{62})\.h5$")
_MEMBER_DIR_RE = _LazyRe(r"^((graphs|traces)(/[0-9a-f]{2})?)?$")
_MEMBER_JUNK_RE = _LazyRe(r"^(graphs|traces)/[0-9a-f]{2}/\.[^/]*\.(tmp|lock)(\.[^/]*)?$")


def _check_member(member):
    """``[(kind, key)]`` for an entry member, ``[]`` for a harmless one; raises for anything else."""
    name = member.name
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise UnsafeArchiveError(f"archive member {name!r} has an absolute path; refusing to import the archive")
    if ".." in parts:
        raise UnsafeArchiveError(f"archive member {name!r} contains '..'; refusing to import the archive")
    if member.issym() or member.islnk():
        raise UnsafeArchiveError(
            f"archive member {name!r} is a link (to {member.linkname!r}); refusing to import the archive"
        )
    if not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(
            f"archive member {name!r} is a device, FIFO or other special file; refusing to import the archive"
        )
    norm = "/".join(p for p in parts if p not in ("", "."))
    if member.isdir():
        if _MEMBER_DIR_RE.match(norm):
            return []
        raise UnsafeArchiveError(
            f"archive member {name!r} is not a store directory (graphs/, traces/ or their xx/ subdirectories); "
            "refusing to import the archive"
        )
    if _MEMBER_JUNK_RE.match(norm):
        return []
    m = _MEMBER_RE.match(norm)
    if not m:
        raise UnsafeArchiveError(
            f"archive member {name!r} is not a store entry (expected graphs/xx/<62 hex>.h5 or traces/...); "
            "refusing to import the archive"
        )
    return [(m.group(1), m.group(2) + m.group(3))]
