"""``phasic cache``: ``info``, ``list``, ``clear``, ``verify``, ``export`` and ``import``."""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys

from phasic.cli._common import Parser, usage_error

__all__ = ["register"]

_CLEAR_KINDS = ("graphs", "traces", "jax")


def _cache_info(args):
    from phasic.cache import get_all_cache_stats, print_all_cache_info

    if args.json:
        print(json.dumps(get_all_cache_stats(), indent=2, sort_keys=True))
    else:
        print_all_cache_info()
    return 0


def _jax_dir():
    """The directory JAX is configured to use in this process (see :func:`phasic.jax._cache.jax_cache_dir`).

    A ``jax`` already imported with ``jax_compilation_cache_dir`` set wins; else the directory
    a ``CompilationConfig.apply()`` in this process chose, ``$JAX_COMPILATION_CACHE_DIR``, and
    phasic's default ``~/.jax_cache``, in that order.
    """
    from phasic.jax import _cache as jax_cache

    jax = sys.modules.get("jax")
    configured = getattr(getattr(jax, "config", None), "jax_compilation_cache_dir", None) if jax else None
    if configured and jax_cache._applied_cache_dir is None:
        return jax_cache.jax_cache_dir(configured)
    return jax_cache.jax_cache_dir()


def _clear_targets(kinds):
    """``[(kind, directory, count, bytes, noun)]`` of what clearing `kinds` would remove."""
    from phasic.jax._cache import get_jax_cache_stats
    from phasic.store import Store

    store = Store()
    out = []
    for kind in kinds:
        if kind == "jax":
            directory = _jax_dir()
            stats = get_jax_cache_stats(directory)
            out.append((kind, str(directory), stats["num_files"], stats["total_bytes"], "files"))
        else:
            stats = store.stats(kind)
            out.append((kind, stats["cache_dir"], stats["num_entries"], stats["total_bytes"], "entries"))
    return out


def _cache_clear(args):
    from phasic.cli._list import format_size

    kinds = list(dict.fromkeys(args.kinds))
    for kind in kinds:
        if kind not in (*_CLEAR_KINDS, "all"):
            raise usage_error(
                f"cache clear: invalid choice: {kind!r}; name one or more of graphs, traces, jax, or --all"
            )
    if args.all or "all" in kinds:
        kinds = list(_CLEAR_KINDS)
    if not kinds:
        for kind, directory, n, nbytes, noun in _clear_targets(_CLEAR_KINDS):
            print(f"would remove {n} {kind} {noun} ({format_size(nbytes)}) from {directory}")
        print(
            "phasic: error: nothing was removed: name what to clear: one or more of graphs, traces, jax, "
            "or --all (--dry-run lists without deleting)",
            file=sys.stderr,
        )
        return 2
    if args.dry_run:
        for kind, directory, n, nbytes, noun in _clear_targets(kinds):
            print(f"would remove {n} {kind} {noun} ({format_size(nbytes)}) from {directory}")
        return 0
    from phasic.jax._cache import _refuse_dangerous, clear_jax_cache
    from phasic.store import Store

    store = Store()
    directory = _jax_dir()
    if "jax" in kinds:
        _refuse_dangerous(directory)  # before anything is removed
    for kind in kinds:
        if kind == "jax":
            n = clear_jax_cache(directory)
            print(f"removed {n} jax files from {directory}")
        else:
            n = store.clear(kind)
            print(f"removed {n} {kind} entries from {store.root / kind}")
    return 0


def _cache_list(args):
    from phasic.cli._list import format_listing, jsonable_rows, list_entries
    from phasic.store import KINDS, Store

    store = Store()
    kinds = tuple(dict.fromkeys(args.kind)) if args.kind else KINDS
    rows = list_entries(store, kinds)
    if args.json:
        print(json.dumps(jsonable_rows(rows), indent=2))
    elif rows:
        print(format_listing(rows))
    else:
        print(f"no {' or '.join(kinds)} entries in {store.root}")
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
    for path in report.legacy:
        print(
            f"LEGACY {path}: format-1 entry, its attributes are not checksummed; never read "
            "(the next hit rebuilds and replaces it)"
        )
    for path in report.newer:
        print(f"NEWER {path}: written by a newer phasic; left alone")
    for path, reason in report.unreadable:
        print(f"UNREADABLE {path}: {reason} (another user's entry; left alone)")
    return 0 if not report.bad else 1


def _cache_export(args):
    import shutil
    import tempfile

    from phasic.store import KINDS, Store

    kinds = tuple(args.kind) if args.kind else KINDS
    store = Store()
    if args.file != "-":
        n = store.export(args.file, kinds=kinds)
        print(f"Exported {n} entries ({', '.join(kinds)}) to {args.file}")
        return 0
    if sys.stdout.isatty():
        raise usage_error(
            "cache export -: refusing to write a gzip archive to a terminal; redirect it, "
            "e.g. phasic cache export - > cache.tar.gz"
        )
    with tempfile.TemporaryDirectory(prefix="phasic-export-") as tmp:
        path = os.path.join(tmp, "cache.tar.gz")
        n = store.export(path, kinds=kinds)
        sys.stdout.flush()
        with open(path, "rb") as f:
            shutil.copyfileobj(f, sys.stdout.buffer)
        sys.stdout.buffer.flush()
    print(f"Exported {n} entries ({', '.join(kinds)}) to standard output", file=sys.stderr)
    return 0


def _cache_import(args):
    import shutil
    import tempfile

    from phasic.cli._list import provenance_summary
    from phasic.store import Store

    store = Store()
    if args.file == "-":
        with tempfile.TemporaryDirectory(prefix="phasic-import-") as tmp:
            path = os.path.join(tmp, "stdin.tar.gz")
            with open(path, "wb") as f:
                shutil.copyfileobj(sys.stdin.buffer, f)
            report = store.import_archive(path)
    else:
        report = store.import_archive(args.file)
    print(f"Imported {report.imported} entries into {store.root} ({report.skipped} already present)")
    for member, why in report.ignored:
        print(f"Ignored {member}: {why}")
    rows = [
        {"status": "ok", **{f: str(d.get(f) or "-") for f in ("user", "host", "phasic_version", "created")}}
        for d in report.provenance
    ]  # what the entries record
    if rows:
        print("Provenance, as recorded in the entries themselves:")
        print("\n".join(provenance_summary(rows)))
        print(
            "The store checks integrity, not authenticity: these records and the entries' contents are only "
            "as trustworthy as whoever made the archive; import archives only from people you trust."
        )
    return 0


def register(subparsers):
    """Add the ``cache`` group: ``info``, ``list``, ``clear``, ``verify``, ``export``, ``import``."""
    cache = subparsers.add_parser("cache", help="inspect and maintain the graph/trace/JAX caches")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--cache-dir", metavar="DIR", default=argparse.SUPPRESS, help="cache root (also accepted before the command)"
    )
    sub = cache.add_subparsers(dest="cache_command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    add = functools.partial(sub.add_parser, parents=[common])
    p = add("info", help="show the size of every cache")
    p.add_argument("--json", action="store_true", help="print the stats as JSON")
    p.set_defaults(func=_cache_info)
    p = add(
        "clear",
        help="remove the named caches' entries (nothing without a kind or --all)",
        description="Remove the entries of the named caches: graphs and traces from the store, "
        "jax from the directory JAX is configured to use ($JAX_COMPILATION_CACHE_DIR, "
        "else ~/.jax_cache). Without a kind nothing is removed.",
    )
    p.add_argument("kinds", nargs="*", metavar="KIND", help="graphs, traces and/or jax")
    p.add_argument("--all", action="store_true", help="clear graphs, traces and jax")
    p.add_argument("--dry-run", "-n", action="store_true", help="list what would be removed, remove nothing")
    p.set_defaults(func=_cache_clear)
    p = add("list", help="one line per entry: model, parameters, vertices, size, dates, provenance")
    p.add_argument("--kind", action="append", choices=("graphs", "traces"), help="only this kind (repeatable)")
    p.add_argument("--json", action="store_true", help="print a JSON list of objects")
    p.set_defaults(func=_cache_list)
    p = add("verify", help="check every entry; bad ones are moved aside (exit 1 if any)")
    p.set_defaults(func=_cache_verify)
    p = add("export", help="write the entries to a .tar.gz archive")
    p.add_argument("file", help="archive to write, e.g. cache.tar.gz ('-': standard output)")
    p.add_argument("--kind", action="append", choices=("graphs", "traces"), help="only this kind (repeatable)")
    p.set_defaults(func=_cache_export)
    p = add("import", help="merge a .tar.gz archive into the cache (validated first)")
    p.add_argument("file", help="archive to read ('-': standard input)")
    p.set_defaults(func=_cache_import)
    return cache
