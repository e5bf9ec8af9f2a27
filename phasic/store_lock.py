"""Build-once across processes for :meth:`phasic.store.Store.get_or_create`.

Builders of one key are serialised with an ``O_EXCL`` lock file ``.<name>.lock`` next to
the entry, holding ``{"pid", "host", "time"}``.  The holder touches it from a heartbeat
thread while it builds; waiters poll for the entry (backing off to 0.25 s) and take the
lock over when it is stale: its holder is a dead process on this host, or it was not
touched for ``stale_lock_seconds`` (a holder on another node that died).  A stale lock is
renamed before it is removed, so only one waiter wins the takeover.  Where no lock can be
created (a read-only or full store) the caller builds anyway and the write reports why it
failed.
"""
from __future__ import annotations

import contextlib
import json
import os
import threading
import time

from phasic.store import _hostname, _token

__all__ = ["get_or_create", "lock_is_stale"]


def lock_is_stale(lock, stale_seconds):
    """Whether the lock file ``lock`` (a Path) belongs to a dead or silent builder."""
    try:
        mtime = lock.stat().st_mtime
        info = json.loads(lock.read_text() or "{}")
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        info = {}
    if info.get("host") == _hostname() and isinstance(info.get("pid"), int):
        try:
            os.kill(info["pid"], 0)
        except ProcessLookupError:
            return True
        except OSError:
            pass
    return time.time() - mtime > stale_seconds


def _heartbeat(lock, stop, stale_seconds):
    while not stop.wait(max(0.05, stale_seconds / 4)):
        with contextlib.suppress(OSError):
            os.utime(lock)


def get_or_create(store, kind, key, build):
    """See :meth:`phasic.store.Store.get_or_create` (called after a first miss)."""
    path = store.path(kind, key)
    lock = path.parent / f".{path.name}.lock"
    stale = store.stale_lock_seconds
    delay = 0.01
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            found = store.get(kind, key)
            if found is not None:
                return found
            if lock_is_stale(lock, stale):
                with contextlib.suppress(OSError):  # rename first: only one waiter wins
                    old = lock.with_name(f"{lock.name}.stale.{_token(4)}")
                    os.rename(lock, old)
                    os.unlink(old)
                continue
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)
            continue
        except OSError:
            # no lock possible (read-only or full store): build here; the write reports the failure
            arrays, attrs = build()
            _, arrays, attrs = store._put(kind, key, arrays, attrs)
            return arrays, attrs
        stop = threading.Event()
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump({"pid": os.getpid(), "host": _hostname(), "time": time.time()}, fh)
            beat = threading.Thread(target=_heartbeat, args=(lock, stop, stale), daemon=True)
            beat.start()
            found = store.get(kind, key)
            if found is not None:
                return found
            arrays, attrs = build()
            _, arrays, attrs = store._put(kind, key, arrays, attrs)
            return arrays, attrs
        finally:
            stop.set()
            with contextlib.suppress(OSError):
                os.unlink(lock)
