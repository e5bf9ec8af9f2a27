"""The one progress display: a line on stderr that the ``phasic`` command and Dask builds and
sweeps redraw while they work (shown only when the stream is a terminal, unless asked)."""

from __future__ import annotations

import sys
import threading
import time

__all__ = ["Progress"]

_SPIN = "|/-\\"
#: redraws per second while a display is open
_RATE = 8.0


class Progress:
    """``with Progress(label, total) as bar: ... bar.update(n)``: a bar of ``done/total``, or a
    spinner with the elapsed time when ``total`` is None.

    Parameters
    ----------
    label : str
        What is being done, printed first.
    total : int, optional
        How many steps make the whole (None: unknown).
    enabled : bool, optional
        Draw at all; default: when `stream` is a terminal. A display of a known total of 0
        steps is never drawn.
    stream : file, optional
        Default: ``sys.stderr``.
    """

    def __init__(self, label, total=None, enabled=None, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.label, self.total, self.done = label, total, 0
        self.enabled = bool(enabled) and total != 0
        self._t0 = time.perf_counter()
        self._stop = threading.Event()
        self._thread = None

    def _line(self):
        elapsed = time.perf_counter() - self._t0
        if self.total:
            width = 30
            filled = int(width * min(self.done, self.total) / self.total)
            return f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {elapsed:.1f}s"
        return f"\r{self.label} {_SPIN[int(elapsed * _RATE) % 4]} {elapsed:.1f}s"

    def _redraw(self):
        while not self._stop.wait(1.0 / _RATE):
            self.stream.write(self._line())
            self.stream.flush()

    def __enter__(self):
        if self.enabled and self._thread is None:
            self._thread = threading.Thread(target=self._redraw, daemon=True)
            self._thread.start()
        return self

    def update(self, n=1):
        """Count `n` more steps done."""
        self.done += n

    def close(self):
        """Stop redrawing and end the line (once)."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self.stream.write(self._line() + "\n")
            self.stream.flush()

    def __exit__(self, *exc):
        self.close()
        return False
