"""Build-once across processes for :meth:`phasic.store.Store.get_or_create`.

Builders of one key are serialised with an ``O_EXCL`` lock file ``.<name>.lock`` next to
the entry, holding ``{"pid", "host", "time", "token"}``.  The holder touches it from a
heartbeat thread while it builds and removes it (only while it is still its own) when done.

A waiter polls for the entry with exponential back-off (sleeping 0.01 s, doubling up to
1 s, with jitter) and takes the lock over when it is stale:

* on the holder's host, when its pid is gone, or is alive but belongs to a process that
  started after the lock was written (the pid was reused);
* from another host, when the lock was not touched for ``stale_lock_seconds`` (the
  holder's heartbeat stopped: it died or its node did).

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
import sys
import threading
import time
import warnings

from phasic.exceptions import CacheWarning, ParameterError, StoreError
from phasic.store import _hostname, _token

__all__ = ["get_or_create", "lock_is_stale", "lock_timeout", "LOCK_TIMEOUT"]

#: Default bound (seconds) on the wait for another process that builds the same entry.  Long
#: enough for the big builds a store is for (state spaces of 10^5-10^6 vertices take
#: minutes), so a second worker normally gets the stored entry instead of building it again;
#: short enough that a hung holder costs a job minutes, not its whole time limit.  After
#: the wait the waiter builds the entry itself, in memory.
LOCK_TIMEOUT = 600.0
_MAX_DELAY = 1.0
_PHASIC_DIR = os.path.dirname(os.path.abspath(__file__))


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


def _read_info(lock):
    try:
        info = json.loads(lock.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


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


def lock_is_stale(lock, stale_seconds):
    """Whether the lock file ``lock`` (a Path) belongs to a dead or silent builder.

    On the host that wrote it a lock is stale when its pid is gone or was reused (the
    process with that pid started after the lock was written); a live holder there is
    never stale, however long it builds.  A lock from another host (or one without a
    readable pid) is stale when it was not touched for ``stale_seconds``.
    """
    try:
        mtime = lock.stat().st_mtime
    except OSError:  # gone (FileNotFoundError), or not even stat-able: not ours to judge
        return False
    info = _read_info(lock)
    pid = info.get("pid")
    if info.get("host") == _hostname() and isinstance(pid, int) and not isinstance(pid, bool) and pid > 0:
        if not _pid_alive(pid):
            return True
        started, written = _process_start(pid), info.get("time")
        if started is not None and isinstance(written, (int, float)) and started > written + 2.0:
            return True
        return False
    return time.time() - mtime > stale_seconds


def _heartbeat(lock, stop, stale_seconds):
    while not stop.wait(max(0.05, stale_seconds / 4)):
        with contextlib.suppress(OSError):
            os.utime(lock)


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


def _stacklevel():
    """The stack level of the first caller outside phasic (warnings point at the user's line)."""
    frame, level = sys._getframe(2), 2
    while frame is not None and frame.f_code.co_filename.startswith(_PHASIC_DIR):
        frame, level = frame.f_back, level + 1
    return level


def _what(kind, key, attrs):
    if kind == "graphs" and attrs.get("callback"):
        return f"the graph of {attrs['callback']}"
    return f"the {kind[:-1]} {key[:12]}..."


def _warn(kind, key, attrs, why):
    warnings.warn(f"phasic: {_what(kind, key, attrs)} was built but not cached: {why}", CacheWarning,
                  _stacklevel())


def _in_memory(kind, key, build, why):
    """Build without storing; ``why`` is the cause (the warning follows a successful build)."""
    from phasic.store_write import prepare_entry

    arrays, attrs = prepare_entry(key, *build())
    _warn(kind, key, attrs, why)
    return arrays, attrs


def get_or_create(store, kind, key, build):
    """See :meth:`phasic.store.Store.get_or_create` (called after a first miss)."""
    from phasic.store_write import make_dirs, prepare_entry, share_file, write_entry

    timeout = lock_timeout(store)
    path = store.path(kind, key)
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
            found = store.get(kind, key)
            if found is not None:
                return found
            if lock_is_stale(lock, stale):
                holder = _holder(lock)
                try:  # rename first: only one waiter wins
                    old = lock.with_name(f"{lock.name}.stale.{_token(4)}")
                    os.rename(lock, old)
                except FileNotFoundError:
                    pass  # another waiter took it over
                except OSError as exc:
                    return _in_memory(kind, key, build, f"the stale lock {str(lock)!r} (left by {holder}, which "
                                      f"is gone) cannot be removed: {_cause(exc)}")
                else:
                    with contextlib.suppress(OSError):
                        os.unlink(old)
                if time.monotonic() < deadline:
                    continue
            left = deadline - time.monotonic()
            if left <= 0:
                return _in_memory(kind, key, build, f"waited {timeout:g} s for the lock {str(lock)!r} held by "
                                  f"{_holder(lock)} (set PHASIC_CACHE_LOCK_TIMEOUT to wait longer)")
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
                view = view[os.write(fd, view):]
        except OSError as exc:  # a full disk: the empty file fitted, its content does not
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(lock)
            return _in_memory(kind, key, build, f"cannot write the lock {str(lock)!r}: {_cause(exc)}")
        os.close(fd)
        stop = threading.Event()
        try:
            beat = threading.Thread(target=_heartbeat, args=(lock, stop, stale), daemon=True)
            beat.start()
            found = store.get(kind, key)
            if found is not None:
                return found
            arrays, attrs = prepare_entry(key, *build())
            try:
                write_entry(store, kind, key, arrays, attrs)
            except StoreError as exc:
                _warn(kind, key, attrs, str(exc))
            return arrays, attrs
        finally:
            stop.set()
            _release(lock, token)
