"""What every ``phasic`` subcommand shares: the argument parser class (errors exit with status 2
and one ``phasic: error:`` line) and the error a usage mistake raises."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from phasic.exceptions import ParameterError

__all__ = ["Parser", "atomic_write", "usage_error"]


def atomic_write(path, text):
    """Write `text` to `path` through a temporary file and a rename; ``-`` is standard output."""
    if str(path) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def usage_error(message):
    """The error for a command line that cannot be run as given (printed as one line, status 2)."""
    return ParameterError(message)


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors print the usage and ``phasic: error: ...``, status 2."""

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(2, f"phasic: error: {message}\n")
