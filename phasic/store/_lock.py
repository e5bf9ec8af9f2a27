"""Build-once across processes for :meth:`phasic.store.Store.get_or_create`.

Builders of one key are serialised with an ``O_EXCL`` lock file ``.<name>.lock`` next to
the entry, holding ``{"pid", "host", "time", "token"}``.  The holder touches it from a
heartbeat thread while it builds and removes it (only while it is still its own) when done.

A waiter polls for the entry with exponential back-off (sleeping 0.01 s, doubling up to
1 s, with jitter) and takes the lock over when it is stale:

* on the holder's host, when its pid is gone, or is alive but belongs to a process that
  started after the lock was written (the pid was reused), or when the lock was not
  touched for ``stale_lock_seconds`` although its pid is alive (a live holder's heartbeat
  touches it every quarter of that: a leftover or forged lock naming a live process);
* from another host, when the lock was not touched for ``stale_lock_seconds`` (the
  holder's heartbeat stopped: it died or its node did);
* always, when its ``time`` lies in the future (beyond :data:`CLOCK_SLACK` seconds), and
  when it is not a regular file (a FIFO, device, directory or symbolic link: never opened
  for reading, so it cannot block a reader).

Lock files are read like entries: ``lstat`` first, opened with ``O_NOFOLLOW | O_NONBLOCK``,
regular files only, at most :data:`MAX_LOCK_BYTES` bytes.

A stale lock is renamed before it is removed, so only one waiter wins the takeover.  A live
holder is waited for up to ``lock_timeout`` seconds in all (``Store.lock_timeout`` when set,
else ``$PHASIC_CACHE_LOCK_TIMEOUT``, else :data:`LOCK_TIMEOUT`).

Nothing here spins or raises because of the file system: when no lock can be created (a
read-only, full or foreign store), a stale lock cannot be removed (a read-only mount,
another user's lock in a sticky directory), the wait for a live holder times out, or the
entry cannot be written, the entry is built in memory and returned, with one
:class:`phasic.exceptions.CacheWarning` naming the file and the cause, and nothing is
stored.  Errors of the build itself and bad arrays or attributes still raise.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import threading
import time
import warnings

from phasic.exceptions import CacheWarning, ParameterError, StoreError, user_stacklevel
from phasic.store._layout import _hostname, _token

__all__ = ["get_or_create", "lock_is_stale", "lock_timeout", "owner_is_gone", "read_small_json", "LOCK_TIMEOUT"]

#: Default bound (seconds) on the wait for another process that builds the same entry.  Long
#: enough for the big builds a store is for (state spaces of 10^5-10^6 vertices take
#: minutes), so a second worker normally gets the stored entry instead of building it again;
#: short enough that a hung holder costs a job minutes, not its whole time limit.  After
#: the wait the waiter builds the entry itself, in memory.
LOCK_TIMEOUT = 600.0
_MAX_DELAY = 1.0
#: A lock (or staging owner record) is read up to this many bytes; its JSON is ~150 bytes.
MAX_LOCK_BYTES = 4096
#: A lock whose ``time`` is more than this many seconds in the future is stale (forged or damaged).
CLOCK_SLACK = 300.0


def lock_timeout(store):
    """Seconds a waiter waits for a live holder: ``store.lock_timeout``, ``$PHASIC_CACHE_LOCK_TIMEOUT``
    or :data:`LOCK_TIMEOUT`."""
    value = shown = getattr(store, "lock_timeout", None)
    name = "lock_timeout"
    if value is None:
        raw = os.environ.get("PHASIC_CACHE_LOCK_TIMEOUT")
        if not raw:
            return LOCK_TIMEOUT
        name, shown = "PHASIC_CACHE_LOCK_TIMEOUT", raw
        try:
            value = float(raw)
        except ValueError:
            value = raw
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        raise ParameterError(
            f"{name}={shown!r} is not a number of seconds >= 0 (how long to wait for another process "
            f"building the same store entry; default {LOCK_TIMEOUT:g})"
        )
    return float(value)


def read_small_json(path):
    """``(lstat, dict)`` of a small JSON record (a lock file, an import's owner record).

    The file is opened only when its ``lstat`` shows a regular file, with ``O_NOFOLLOW |
    O_NONBLOCK``, and at most :data:`MAX_LOCK_BYTES` are read: a FIFO or a link to a device
    never blocks or floods the reader.  The dict is empty when the file is not regular, not
    readable or not a JSON object; the stat is None when the path is gone.
    """
    import stat

    try:
        st = os.lstat(path)
    except OSError:
        return None, {}
    if not stat.S_ISREG(st.st_mode):
        return st, {}
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return st, {}
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return st, {}
        data = os.read(fd, MAX_LOCK_BYTES + 1)
    except OSError:
        return st, {}
    finally:
        os.close(fd)
    if len(data) > MAX_LOCK_BYTES:
        return st, {}
    try:
        info = json.loads(data or b"{}")
    except ValueError:
        return st, {}
    return st, info if isinstance(info, dict) else {}


def _read_info(lock):
    return read_small_json(lock)[1]


def _boot_time():
    with open("/proc/stat") as fh:
        for line in fh:
            if line.startswith("btime "):
                return float(line.split()[1])
    raise OSError("no btime in /proc/stat")


def _process_start(pid):
    """Start time (epoch seconds) of process ``pid`` on this host, or None when unknown."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return _boot_time() + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    return True


def owner_is_gone(info):
    """Whether the process a lock or staging record ``info`` names (``pid``, ``host``, ``time``)
    is known to be gone: on this host, its pid is dead or was reused (the process with that pid
    started after ``time``).  False when it is alive or cannot be judged (another host, no pid).
    """
    pid = info.get("pid")
    if info.get("host") != _hostname() or type(pid) is not int or pid <= 0:
        return False
    if not _pid_alive(pid):
        return True
    started, written = _process_start(pid), info.get("time")
    return started is not None and isinstance(written, (int, float)) and started > written + 2.0


def lock_is_stale(lock, stale_seconds):
    """Whether the lock file ``lock`` (a Path) belongs to a dead or silent builder.

    Stale: not a regular file; its ``time`` in the future (beyond :data:`CLOCK_SLACK`); on
    the host that wrote it, its pid gone or reused (:func:`owner_is_gone`); anywhere, not
    touched for ``stale_seconds`` (a live holder's heartbeat touches it four times as often).
    """
    import stat

    st, info = read_small_json(lock)
    if st is None:  # gone, or not even stat-able: not ours to judge
        return False
    if not stat.S_ISREG(st.st_mode):
        return True
    now = time.time()
    written = info.get("time")
    if isinstance(written, (int, float)) and not isinstance(written, bool) and written > now + CLOCK_SLACK:
        return True
    if owner_is_gone(info):
        return True
    return now - st.st_mtime > stale_seconds


def _heartbeat(lock, stop, stale_seconds):
    while not stop.wait(max(0.05, stale_seconds / 4)):
        with contextlib.suppress(OSError, NotImplementedError):
            os.utime(lock, follow_symlinks=False)


def _release(lock, token):
    """Remove ``lock`` if it is still ours (a waiter may have taken over a silent holder's lock)."""
    if _read_info(lock).get("token") == token:
        with contextlib.suppress(OSError):
            os.unlink(lock)


def _holder(lock):
    info = _read_info(lock)
    if not info:
        return "a process that left no readable record"
    age = ""
    if isinstance(info.get("time"), (int, float)):
        age = f", since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(info['time']))}"
    return f"pid {info.get('pid')} on host {info.get('host')}{age}"


def _cause(exc):
    return exc.strerror or str(exc) if isinstance(exc, OSError) else str(exc)


def _what(kind, key, attrs):
    if kind == "graphs" and attrs.get("callback"):
        return f"the graph of {attrs['callback']}"
    return f"the {kind[:-1]} {key[:12]}..."


def _warn(kind, key, attrs, why):
    warnings.warn(f"phasic: {_what(kind, key, attrs)} was built but not cached: {why}", CacheWarning, user_stacklevel())


def _in_memory(kind, key, build, why):
    """Build without storing; ``why`` is the cause (the warning follows a successful build)."""
    from phasic.store._write import prepare_entry

    arrays, attrs = prepare_entry(key, *build())
    _warn(kind, key, attrs, why)
    return arrays, attrs


def get_or_create(store, kind, key, build, status="missing"):
    """See :meth:`phasic.store.Store.get_or_create`; called after a first read of the entry
    missed with ``status`` (see :meth:`phasic.store.Store._lookup`), which gave any warning:
    later reads of the entry here are quiet.  A ``"newer"`` entry is never replaced."""
    from phasic.store._write import make_dirs, prepare_entry, share_file, write_entry

    timeout = lock_timeout(store)
    path = store.path(kind, key)
    if status == "newer":
        return _build_only(key, build)
    lock = path.parent / f".{path.name}.lock"
    stale = store.stale_lock_seconds
    deadline = time.monotonic() + timeout
    delay = 0.01
    try:
        make_dirs(path.parent)
    except OSError as exc:
        return _in_memory(kind, key, build, f"cannot create the directory of its lock {str(lock)!r}: {_cause(exc)}")
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            found, status, _ = store._lookup(kind, key, warn=False)
            if found is not None:
                return found
            if status == "newer":
                return _in_memory(kind, key, build, _NEWER.format(path=str(path)))
            if lock_is_stale(lock, stale):
                holder = _holder(lock)
                try:  # rename first: only one waiter wins
                    old = lock.with_name(f"{lock.name}.stale.{_token(4)}")
                    os.rename(lock, old)
                except FileNotFoundError:
                    pass  # another waiter took it over
                except OSError as exc:
                    return _in_memory(
                        kind,
                        key,
                        build,
                        f"the stale lock {str(lock)!r} (left by {holder}, which "
                        f"is gone) cannot be removed: {_cause(exc)}",
                    )
                else:
                    with contextlib.suppress(OSError):
                        os.unlink(old)
                if time.monotonic() < deadline:
                    continue
            left = deadline - time.monotonic()
            if left <= 0:
                return _in_memory(
                    kind,
                    key,
                    build,
                    f"waited {timeout:g} s for the lock {str(lock)!r} held by "
                    f"{_holder(lock)} (set PHASIC_CACHE_LOCK_TIMEOUT to wait longer)",
                )
            time.sleep(min(left, delay * random.uniform(0.75, 1.25)))
            delay = min(delay * 2, _MAX_DELAY)
            continue
        except OSError as exc:  # read-only, full, foreign or vanished directory
            return _in_memory(kind, key, build, f"cannot create the lock {str(lock)!r}: {_cause(exc)}")
        token = _token(8)
        try:
            share_file(fd, path.parent)
            data = json.dumps({"pid": os.getpid(), "host": _hostname(), "time": time.time(), "token": token})
            view = memoryview(data.encode())
            while view:
                view = view[os.write(fd, view) :]
        except BaseException as exc:  # a full disk (the empty file fitted, its content does not), or an
            os.close(fd)  # interrupt, MemoryError, ...: never leave an empty lock behind
            with contextlib.suppress(OSError):
                os.unlink(lock)
            if not isinstance(exc, OSError):
                raise
            return _in_memory(kind, key, build, f"cannot write the lock {str(lock)!r}: {_cause(exc)}")
        stop = threading.Event()
        try:
            os.close(fd)
            beat = threading.Thread(target=_heartbeat, args=(lock, stop, stale), daemon=True)
            beat.start()
            found, status, _ = store._lookup(kind, key, warn=False)
            if found is not None:
                return found
            if status == "newer":
                return _in_memory(kind, key, build, _NEWER.format(path=str(path)))
            arrays, attrs = prepare_entry(key, *build())
            try:
                write_entry(store, kind, key, arrays, attrs)
            except StoreError as exc:
                _warn(kind, key, attrs, str(exc))
            return arrays, attrs
        finally:
            stop.set()
            _release(lock, token)


_NEWER = "{path} was written by a newer phasic (a newer store format); it is left alone: upgrade phasic to use it"


def _build_only(key, build):
    """Build without storing or warning (the read that found a newer entry warned)."""
    from phasic.store._write import prepare_entry

    return prepare_entry(key, *build())
