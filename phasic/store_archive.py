"""Store maintenance: ``clear``, ``verify``, ``evict``, and cache archives (``export``,
``import_archive``), the bodies of the :class:`phasic.store.Store` methods of those names.

Kept apart from :mod:`phasic.store` so that importing the store for a cache
hit does not load (or compile) code only maintenance commands use.
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from pathlib import Path

from phasic.exceptions import StoreError, UnsafeArchiveError
from phasic.store import (_MB, _SUBDIR_RE, KINDS, ImportReport, VerifyReport, _check, _LazyRe, _new_temp,
                          _token)

__all__ = ["clear", "verify", "evict", "export", "import_archive"]


def _checked_entries(store, kind):
    """``(key, path, stat, problem)`` of every entry of ``kind`` (fully checked; None = good)."""
    for key, path in store._entry_paths(kind):
        try:
            st = path.stat()
            _, _, problem = _check(path, key)
        except FileNotFoundError:
            continue
        yield key, path, st, problem


def _subdirs(store, kind):
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for sub in os.scandir(store.root / kind):
            if _SUBDIR_RE.match(sub.name):
                yield sub.path


def clear(store, kind=None):
    """See :meth:`phasic.store.Store.clear`."""
    n = 0
    for k in store._kinds(kind):
        for _, path in store._entry_paths(k):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                n += 1
        for sub in list(_subdirs(store, k)):
            store._clean_temps(sub)
            with contextlib.suppress(OSError):
                os.rmdir(sub)
    return n


def verify(store, kind=None):
    """See :meth:`phasic.store.Store.verify`."""
    report = VerifyReport()
    for k in store._kinds(kind):
        for sub in _subdirs(store, k):
            report.removed_temp += store._clean_temps(sub)
        for key, path, st, problem in _checked_entries(store, k):
            report.checked += 1
            if problem is None:
                report.ok += 1
            elif problem.startswith("newer store format"):
                report.newer.append(str(path))
            else:
                report.bad.append((str(path), problem))
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    store._quarantine(k, key, path, st, problem)
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


def export(store, tar_path, kinds):
    """See :meth:`phasic.store.Store.export`."""
    import tarfile

    kinds = store._kinds(kinds)
    tar_path = Path(tar_path).expanduser()
    n = 0
    try:
        tmp = _new_temp(tar_path)
    except OSError as exc:
        raise StoreError(f"cannot write the archive {str(tar_path)!r}: {exc.strerror or exc}") from exc
    try:
        with tarfile.open(tmp, "w:gz") as tar:
            for kind in kinds:
                for key, path, st, problem in _checked_entries(store, kind):
                    if problem is not None:
                        store._quarantine(kind, key, path, st, problem)
                        continue
                    tar.add(path, arcname=f"{kind}/{key[:2]}/{key[2:]}.h5", recursive=False)
                    n += 1
        os.replace(tmp, tar_path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise StoreError(f"cannot write the archive {str(tar_path)!r}: {exc}") from exc
        raise
    return n


def import_archive(store, tar_path):
    """See :meth:`phasic.store.Store.import_archive`."""
    import shutil
    import tarfile

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
        staging = store.root / f".import-{_token(16)}"
        try:
            staging.mkdir(parents=True)
            staged = []
            for i, (member, kind, key) in enumerate(wanted):
                dest = staging / f"{i}.h5"
                src = tar.extractfile(member)
                with src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out)
                _, _, problem = _check(dest, key)
                if problem is not None:
                    raise UnsafeArchiveError(
                        f"archive member {member.name!r} is not a valid store entry ({problem}); "
                        "nothing was imported. Re-export the cache with 'phasic cache export'"
                    )
                staged.append((dest, kind, key))
            for dest, kind, key in staged:
                target = store.path(kind, key)
                if target.is_file():
                    try:
                        _, _, problem = _check(target, key)
                    except FileNotFoundError:
                        problem = "missing"
                    if problem is None:
                        report.skipped += 1
                        continue
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(dest, target)
                report.imported += 1
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
