"""The ``phasic`` command.

Subcommand groups register themselves with a ``register(subparsers)``
function that adds one subparser and sets ``func`` (``func(args) -> int``) on
its leaf parsers.  The ``cache`` group lives here; further groups (``graph``,
``trace``, ``evaluate``) are picked up from the modules named in
:data:`GROUP_MODULES` when they exist, each exposing ``register(subparsers)``.

Errors print one line ``phasic: error: ...`` to stderr and exit with status 2.

Examples
--------
::

    phasic cache info --json
    phasic --cache-dir /scratch/cache cache verify
    phasic cache export cache.tar.gz --kind graphs
    phasic cache import cache.tar.gz
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import sys

__all__ = ["main", "build_parser", "register_cache", "GROUP_MODULES"]

#: Modules providing further subcommand groups via ``register(subparsers)``.
GROUP_MODULES = ("phasic.cli_workflow", "phasic.cli_build")  # graph build, trace record, evaluate; build


def _cache_info(args):
    from phasic.cache import get_all_cache_stats, print_all_cache_info

    if args.json:
        print(json.dumps(get_all_cache_stats(), indent=2, sort_keys=True))
    else:
        print_all_cache_info()
    return 0


def _cache_clear(args):
    from phasic.cache import _clear_jax
    from phasic.store import Store

    store = Store()
    what = args.what
    removed = {}
    if what in ("graphs", "all"):
        removed["graphs"] = store.clear("graphs")
    if what in ("traces", "all"):
        removed["traces"] = store.clear("traces")
    if what in ("jax", "all"):
        removed["jax"] = _clear_jax()
    print("Removed " + ", ".join(f"{n} {kind} entries" for kind, n in removed.items()))
    return 0


def _cache_verify(args):
    from phasic.store import Store

    store = Store()
    report = store.verify()
    print(f"Checked {report.checked} entries in {store.root}: {report.ok} ok, {len(report.bad)} bad")
    for path, reason in report.bad:
        print(f"BAD {path}: {reason} (moved to {store.root / 'corrupt'})")
    for path in report.removed_temp:
        print(f"removed stale temporary file {path}")
    return 0 if not report.bad else 1


def _cache_export(args):
    from phasic.store import KINDS, Store

    kinds = tuple(args.kind) if args.kind else KINDS
    n = Store().export(args.file, kinds=kinds)
    print(f"Exported {n} entries ({', '.join(kinds)}) to {args.file}")
    return 0


def _cache_import(args):
    from phasic.store import Store

    store = Store()
    report = store.import_archive(args.file)
    print(f"Imported {report.imported} entries into {store.root} ({report.skipped} already present)")
    return 0


def register_cache(subparsers):
    """Add the ``cache`` group: ``info``, ``clear``, ``verify``, ``export``, ``import``."""
    cache = subparsers.add_parser("cache", help="inspect and maintain the graph/trace/JAX caches")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--cache-dir", metavar="DIR", default=argparse.SUPPRESS,
                        help="cache root (also accepted before the command)")
    sub = cache.add_subparsers(dest="cache_command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    add = functools.partial(sub.add_parser, parents=[common])
    p = add("info", help="show the size of every cache")
    p.add_argument("--json", action="store_true", help="print the stats as JSON")
    p.set_defaults(func=_cache_info)
    p = add("clear", help="remove cache entries")
    p.add_argument("what", nargs="?", default="all", choices=("graphs", "traces", "jax", "all"))
    p.set_defaults(func=_cache_clear)
    p = add("verify", help="check every entry; bad ones are moved aside (exit 1 if any)")
    p.set_defaults(func=_cache_verify)
    p = add("export", help="write the entries to a .tar.gz archive")
    p.add_argument("file", help="archive to write, e.g. cache.tar.gz")
    p.add_argument("--kind", action="append", choices=("graphs", "traces"), help="only this kind (repeatable)")
    p.set_defaults(func=_cache_export)
    p = add("import", help="merge a .tar.gz archive into the cache (validated first)")
    p.add_argument("file", help="archive to read")
    p.set_defaults(func=_cache_import)
    return cache


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(2, f"phasic: error: {message}\n")


def build_parser():
    """The argument parser with every available subcommand group."""
    parser = _Parser(prog="phasic", description="Phase-type distributions from state-space graphs.")
    parser.add_argument(
        "--cache-dir", metavar="DIR", help="cache root holding graphs/ and traces/ (default: $PHASIC_CACHE_DIR or ~/.phasic_cache)"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    register_cache(subparsers)
    for name in GROUP_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv=None):
    """Run the ``phasic`` command; returns (and, as a script, exits with) the status."""
    from phasic.exceptions import PhasicError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.cache_dir:
        os.environ["PHASIC_CACHE_DIR"] = os.path.abspath(os.path.expanduser(args.cache_dir))
    try:
        return int(args.func(args) or 0)
    except (PhasicError, OSError) as exc:
        print(f"phasic: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("phasic: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
