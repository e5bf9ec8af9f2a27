"""The ``phasic`` command.

Each subcommand group is a module of this package with a ``register(subparsers)``
function that adds its subparser and sets ``func`` (``func(args) -> int``) on its leaf
parsers: ``cache`` (:mod:`phasic.cli._cache`), ``graph``/``trace``/``evaluate``
(:mod:`phasic.cli._workflow`) and ``build`` (:mod:`phasic.cli._build`).

Errors print one line ``phasic: error: ...`` to stderr and exit with status 2.
Wherever a command takes a file path, ``-`` means standard output (or input).
Maintenance commands do only what is asked: ``cache clear`` without a kind
(``graphs``, ``traces``, ``jax``) or ``--all`` removes nothing and says what it
would remove.

Examples
--------
::

    phasic --version
    phasic cache info --json
    phasic cache list
    phasic cache clear traces --dry-run
    phasic --cache-dir /scratch/cache cache verify
    phasic cache export cache.tar.gz --kind graphs
    phasic cache import cache.tar.gz
"""

from __future__ import annotations

import argparse
import os
import sys

from phasic.cli import _build, _cache, _fit, _workflow
from phasic.cli._common import Parser, usage_error

__all__ = ["main", "build_parser"]

#: The subcommand groups, in the order ``phasic --help`` lists them.
GROUPS = (_cache, _workflow, _build, _fit)


def _version():
    from phasic import __version__
    from phasic.store import phasic_version

    installed = phasic_version()
    return installed if installed != "unknown" else __version__


class _Version(argparse.Action):
    """``--version``: print ``phasic X.Y.Z`` and exit (the version is looked up only then)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"phasic {_version()}")
        parser.exit(0)


def _check_cache_dir(text, where):
    """The absolute cache root named by `text`; a ParameterError when it cannot be one."""
    if not text or not text.strip():
        raise usage_error(f"{where} {text!r} is empty; give a directory (created when needed)")
    path = os.path.abspath(os.path.expanduser(text))
    probe = path
    while not os.path.lexists(probe):  # the first existing ancestor must be a directory
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if os.path.lexists(probe) and not os.path.isdir(probe):
        from phasic.store._entry import _kind_of

        what = "a regular file" if os.path.isfile(probe) else _kind_of(os.lstat(probe).st_mode)
        if what == "a symbolic link":
            what = "a symbolic link to something that is not a directory"
        why = f"it is {what}" if probe == path else f"its parent {probe!r} is {what}"
        raise usage_error(f"{where} {path!r} is not a directory: {why}; give a directory (created when needed)")
    return path


def build_parser():
    """The argument parser with every available subcommand group."""
    parser = Parser(prog="phasic", description="Phase-type distributions from state-space graphs.")
    parser.add_argument("--version", action=_Version, help="print the phasic version and exit")
    parser.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="cache root holding graphs/ and traces/ (default: $PHASIC_CACHE_DIR or ~/.phasic_cache)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    subparsers.required = True
    for group in GROUPS:
        group.register(subparsers)
    return parser


def main(argv=None):
    """Run the ``phasic`` command; returns (and, as a script, exits with) the status."""
    from phasic.exceptions import PhasicError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.cache_dir is not None:
            os.environ["PHASIC_CACHE_DIR"] = _check_cache_dir(args.cache_dir, "--cache-dir")
        elif os.environ.get("PHASIC_CACHE_DIR"):
            _check_cache_dir(os.environ["PHASIC_CACHE_DIR"], "PHASIC_CACHE_DIR")
        return int(args.func(args) or 0)
    except (PhasicError, OSError) as exc:
        print(f"phasic: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("phasic: interrupted", file=sys.stderr)
        return 130
