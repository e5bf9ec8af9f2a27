"""What every ``phasic`` subcommand shares: the argument parser class (errors exit with status 2
and one ``phasic: error:`` line) and the error a usage mistake raises."""

from __future__ import annotations

import argparse
import sys

from phasic.exceptions import ParameterError

__all__ = ["Parser", "usage_error"]


def usage_error(message):
    """The error for a command line that cannot be run as given (printed as one line, status 2)."""
    return ParameterError(message)


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors print the usage and ``phasic: error: ...``, status 2."""

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(2, f"phasic: error: {message}\n")
