"""Inspect, clear and copy JAX's persistent compilation cache.

JAX can store compiled XLA executables on disk so that a later process running the same
jitted function with the same shapes, dtypes, XLA flags and jax/jaxlib version loads the
executable instead of compiling it again. This module looks at that directory; it never
imports jax, so it is cheap to call from the command line or a Snakemake rule.

Which directory
---------------
Every function here resolves the directory with :func:`jax_cache_dir`, in this order:

1. the ``cache_dir`` argument, when given;
2. the directory the last :meth:`phasic.jax._config.CompilationConfig.apply` in this
   process told JAX to use;
3. the environment variable ``JAX_COMPILATION_CACHE_DIR`` (JAX reads it too);
4. ``~/.jax_cache``.

Which files
-----------
JAX's cache directory is flat. An entry is a file ``<name>-<sha256>-cache``; when
``jax_compilation_cache_max_size`` is set, JAX also keeps ``<key>-atime`` files and a
``.lockfile``. Only these files (and ``.phasic-tmp-*`` files left by an interrupted
:func:`sync_jax_cache`) are counted, copied or removed. Anything else found in the
directory is left alone, so pointing the cache at the wrong directory cannot destroy data.

Examples
--------
>>> from phasic.jax._cache import get_jax_cache_stats
>>> stats = get_jax_cache_stats("/nonexistent/jax-cache")
>>> stats["num_entries"], stats["total_bytes"]
(0, 0)
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from pathlib import Path

from phasic.exceptions import JaxCacheError

__all__ = [
    "jax_cache_dir",
    "get_jax_cache_stats",
    "cache_info",
    "print_jax_cache_info",
    "clear_jax_cache",
    "sync_jax_cache",
]

DEFAULT_JAX_CACHE_DIR = "~/.jax_cache"
ENV_VAR = "JAX_COMPILATION_CACHE_DIR"

_ENTRY_SUFFIX = "-cache"
_ATIME_SUFFIX = "-atime"
_LOCK_NAME = ".lockfile"
_TMP_PREFIX = ".phasic-tmp-"

# Set by CompilationConfig.apply(); None until then.
_applied_cache_dir: Path | None = None


def _set_applied_cache_dir(path: str | os.PathLike | None) -> None:
    """Record the directory JAX was told to use (called by ``CompilationConfig.apply``)."""
    global _applied_cache_dir
    _applied_cache_dir = None if path is None else _absolute(path)


def _absolute(path: str | os.PathLike) -> Path:
    return Path(os.path.abspath(os.path.expanduser(os.fspath(path))))


def jax_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Return the JAX compilation-cache directory every function of this module uses.

    Parameters
    ----------
    cache_dir : str or os.PathLike, optional
        An explicit directory; it wins over everything else.

    Returns
    -------
    pathlib.Path
        Absolute path (``~`` expanded). The directory is not created and may not exist.

    Raises
    ------
    JaxCacheError
        If `cache_dir` is not a path or is an empty string.

    Notes
    -----
    Order: `cache_dir` > the directory applied by the last
    ``CompilationConfig.apply()`` in this process > ``$JAX_COMPILATION_CACHE_DIR`` >
    ``~/.jax_cache``.

    Examples
    --------
    >>> str(jax_cache_dir("/tmp/my-jax-cache"))
    '/tmp/my-jax-cache'
    """
    if cache_dir is not None:
        if not isinstance(cache_dir, (str, os.PathLike)) or os.fspath(cache_dir) == "":
            raise JaxCacheError(
                f"cache_dir must be a non-empty path (str or os.PathLike), got {cache_dir!r}; "
                "pass a directory or None to use the configured JAX cache directory"
            )
        return _absolute(cache_dir)
    if _applied_cache_dir is not None:
        return _applied_cache_dir
    env = os.environ.get(ENV_VAR)
    if env:
        return _absolute(env)
    return _absolute(DEFAULT_JAX_CACHE_DIR)


def _is_jax_file(name: str) -> bool:
    return name.endswith((_ENTRY_SUFFIX, _ATIME_SUFFIX)) or name == _LOCK_NAME or name.startswith(_TMP_PREFIX)


def _jax_files(directory: Path) -> list[os.DirEntry]:
    """Regular files JAX (or sync_jax_cache) wrote directly in `directory`."""
    try:
        with os.scandir(directory) as it:
            return [e for e in it if e.is_file(follow_symlinks=False) and _is_jax_file(e.name)]
    except (FileNotFoundError, NotADirectoryError):
        return []


def get_jax_cache_stats(cache_dir: str | os.PathLike | None = None) -> dict:
    """Describe the JAX compilation cache without creating or changing anything.

    Parameters
    ----------
    cache_dir : str or os.PathLike, optional
        Directory to inspect; default :func:`jax_cache_dir`.

    Returns
    -------
    dict
        ``cache_dir`` (str, absolute), ``exists`` (bool), ``num_entries`` (int, cached
        compilations, i.e. ``*-cache`` files), ``num_files`` (int, every JAX cache file
        including ``-atime`` and lock files), ``total_bytes`` (int, their total size) and
        ``total_size_mb`` (float, ``total_bytes / 2**20``). All keys are present, with
        zeros, when the directory does not exist.

    Examples
    --------
    >>> get_jax_cache_stats("/nonexistent/jax-cache")["num_files"]
    0
    """
    directory = jax_cache_dir(cache_dir)
    files = _jax_files(directory)
    num_entries = 0
    total = 0
    counted = 0
    for entry in files:
        try:
            size = entry.stat(follow_symlinks=False).st_size
        except FileNotFoundError:  # removed by a concurrent eviction
            continue
        counted += 1
        total += size
        if entry.name.endswith(_ENTRY_SUFFIX) and not entry.name.startswith(_TMP_PREFIX):
            num_entries += 1
    return {
        "cache_dir": str(directory),
        "exists": directory.is_dir(),
        "num_entries": num_entries,
        "num_files": counted,
        "total_bytes": total,
        "total_size_mb": total / 2**20,
    }


cache_info = get_jax_cache_stats
"""Alias of :func:`get_jax_cache_stats`."""


def print_jax_cache_info(cache_dir: str | os.PathLike | None = None, file=None) -> None:
    """Print a short framed report of the JAX compilation cache.

    Parameters
    ----------
    cache_dir : str or os.PathLike, optional
        Directory to report on; default :func:`jax_cache_dir`.
    file : file-like, optional
        Where to write; default ``sys.stdout``.

    Examples
    --------
    >>> print_jax_cache_info("/nonexistent/jax-cache")  # doctest: +NORMALIZE_WHITESPACE
    ======================================================================
    JAX CACHE INFO
    ======================================================================
    Cache directory: /nonexistent/jax-cache (does not exist)
    Cached compilations: 0
    Total size: 0.00 MB
    """
    stats = get_jax_cache_stats(cache_dir)
    out = sys.stdout if file is None else file
    where = stats["cache_dir"] + ("" if stats["exists"] else " (does not exist)")
    lines = [
        "=" * 70,
        "JAX CACHE INFO",
        "=" * 70,
        f"Cache directory: {where}",
        f"Cached compilations: {stats['num_entries']}",
        f"Total size: {stats['total_size_mb']:.2f} MB",
    ]
    print("\n".join(lines), file=out)


def _refuse_dangerous(directory: Path) -> None:
    home = _absolute("~")
    if directory == Path(directory.anchor) or directory == home:
        raise JaxCacheError(
            f"refusing to clear {str(directory)!r}: it is the filesystem root or your home "
            "directory, not a JAX cache; set JAX_COMPILATION_CACHE_DIR or pass cache_dir"
        )


def clear_jax_cache(cache_dir: str | os.PathLike | None = None) -> int:
    """Delete the JAX compilation-cache files in one directory.

    Only files JAX writes there (``*-cache``, ``*-atime``, ``.lockfile``) and leftover
    ``.phasic-tmp-*`` files are removed; the directory itself, subdirectories and any
    other file stay. Nothing outside the directory is touched.

    Parameters
    ----------
    cache_dir : str or os.PathLike, optional
        Directory to clear; default :func:`jax_cache_dir`.

    Returns
    -------
    int
        Number of files removed (0 when the directory does not exist).

    Raises
    ------
    JaxCacheError
        If the directory is the filesystem root or the home directory.

    Examples
    --------
    >>> clear_jax_cache("/nonexistent/jax-cache")
    0
    """
    directory = jax_cache_dir(cache_dir)
    _refuse_dangerous(directory)
    removed = 0
    for entry in _jax_files(directory):
        try:
            os.unlink(entry.path)
        except FileNotFoundError:
            continue
        removed += 1
    return removed


def sync_jax_cache(src: str | os.PathLike, dst: str | os.PathLike) -> int:
    """Copy JAX cache entries present in `src` but missing from `dst`.

    Each file is written to a temporary name in `dst` and renamed into place, so a JAX
    process reading `dst` at the same time never sees a partial entry. Existing files in
    `dst` are never overwritten (an entry's name is the hash of what it holds).

    Parameters
    ----------
    src, dst : str or os.PathLike
        Source and destination cache directories; `dst` is created when there is
        something to copy. A missing `src` copies nothing.

    Returns
    -------
    int
        Number of entries (``*-cache`` files) copied.

    Raises
    ------
    JaxCacheError
        If `src` and `dst` are the same directory.
    OSError
        If `dst` cannot be created or written.

    Examples
    --------
    >>> sync_jax_cache("/nonexistent/shared-jax-cache", "/tmp/phasic-doctest-jax-cache")
    0
    """
    src_dir, dst_dir = _absolute(src), _absolute(dst)
    if src_dir == dst_dir:
        raise JaxCacheError(f"sync_jax_cache needs two different directories, got {str(src_dir)!r} twice")
    entries = [e for e in _jax_files(src_dir) if e.name.endswith(_ENTRY_SUFFIX) and not e.name.startswith(_TMP_PREFIX)]
    if entries:
        dst_dir.mkdir(parents=True, exist_ok=True)
    copied = 0
    for entry in entries:
        target = dst_dir / entry.name
        if target.exists():
            continue
        tmp = dst_dir / f"{_TMP_PREFIX}{uuid.uuid4().hex}"
        try:
            shutil.copyfile(entry.path, tmp)
            os.replace(tmp, target)
        except FileNotFoundError:  # evicted from src meanwhile
            tmp.unlink(missing_ok=True)
            continue
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        copied += 1
    return copied
