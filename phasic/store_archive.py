"""Cache archives: :meth:`phasic.store.Store.export` and :meth:`phasic.store.Store.import_archive`.

Kept apart from :mod:`phasic.store` so that importing the store for a cache
hit does not load (or compile) code only archive commands use.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from phasic.exceptions import StoreError, UnsafeArchiveError
from phasic.store import ImportReport, _check, _LazyRe, _new_temp, _token

__all__ = ["export", "import_archive"]


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
                for key, path in store._entry_paths(kind):
                    try:
                        st = path.stat()
                        _, _, problem = _check(path, key)
                    except FileNotFoundError:
                        continue
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
