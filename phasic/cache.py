"""The graph cache and the unified cache API (graphs, traces, JAX compilations).

Graphs built with ``Graph(callback, cache=True, ...)`` are stored in the
content-addressed store (:mod:`phasic.store`) under the key computed by
:func:`phasic.keys.graph_key`; a later call with the same callback code,
parameters, IPV and options loads the graph without calling the callback.
Library, CLI, Dask tasks and Snakemake rules all use the same key function, so
an entry built by one is found by all.

Every ``get_*_stats`` dict carries the uniform keys ``cache_dir``,
``num_entries``, ``total_bytes`` and ``total_size_mb`` (MiB, ``bytes / 2**20``),
has all its keys whether or not the directory exists, and reading stats never
creates a directory.

Examples
--------
::

    from phasic import Graph, with_ipv
    @with_ipv([10])
    def coalescent(state, theta=1.0):
        n = state[0]
        return [] if n <= 1 else [[[n - 1], n * (n - 1) / 2 * theta]]
    g = Graph(coalescent, theta=2.0, cache=True)
    graph_entry_path(coalescent, theta=2.0).exists()
    # True
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

from phasic.exceptions import CacheWarning, StoreError
from phasic.keys import graph_key, split_graph_kwargs
from phasic.store import Store

__all__ = [
    "GraphCache",
    "cached_graph",
    "graph_entry_path",
    "graph_key_for",
    "print_graph_cache_info",
    "get_graph_cache_stats",
    "print_trace_cache_info",
    "get_trace_cache_stats",
    "print_all_cache_info",
    "get_all_cache_stats",
    "clear_caches",
    "clear_model_cache",
]

_RULE = "=" * 70
_MB = 1024 * 1024


def _graph_class():
    from phasic.graph import Graph

    return Graph


_READ_STORES = {}


def _read_store():
    """A ``Store()`` to read hits from, built once per root and memory setting.

    A hit costs a fraction of a millisecond (docs/store.md), so it reads only the
    environment variables that matter to a read; a miss writes through a fresh
    ``Store()`` that checks them all (size limit, compression).
    """
    env = os.environ
    setting = (env.get("PHASIC_CACHE_DIR"), env.get("HOME"), env.get("PHASIC_CACHE_MEMORY_MB"))
    store = _READ_STORES.get(setting)
    if store is None:
        store = Store()  # raises for bad settings, every time: nothing is remembered then
        if len(_READ_STORES) >= 8:
            _READ_STORES.clear()
        _READ_STORES[setting] = store
    return store


def _key_args(kwargs):
    options, params = split_graph_kwargs(kwargs)
    return params, options.get("ipv"), options.get("model"), options.get("indexer"), options


def graph_key_for(callback, **kwargs):
    """``(key, key material)`` of ``Graph(callback, **kwargs)``, without building anything.

    Keyword arguments are split exactly as ``Graph`` splits them
    (:func:`phasic.keys.split_graph_kwargs`).
    """
    params, ipv, model, indexer, options = _key_args(kwargs)
    return graph_key(callback, params, ipv=ipv, model=model, indexer=indexer, options=options)


def graph_entry_path(callback, **kwargs):
    """Path of the store entry ``Graph(callback, cache=True, **kwargs)`` reads or writes.

    Computed from the key alone: nothing is built, read or created.  The root
    is ``$PHASIC_CACHE_DIR`` or ``~/.phasic_cache``.

    Returns
    -------
    pathlib.Path
    """
    key, _ = graph_key_for(callback, **kwargs)
    return Store().path("graphs", key)


def model_attrs(callback, material):
    """The attributes naming a graph entry's model: ``key_material``, ``callback`` (qualname) and
    ``callback_module`` (shown by ``phasic cache list``)."""
    inner = callback
    while getattr(inner, "__wrapped__", None) is not None and inner.__wrapped__ is not inner:
        inner = inner.__wrapped__
    return {
        "key_material": material,
        "callback": getattr(callback, "__qualname__", None) or repr(callback),
        "callback_module": getattr(inner, "__module__", None) or getattr(callback, "__module__", None),
    }


def cached_graph(callback, *, params, ipv, model=None, indexer=None, options, build, store=None):
    """Load a graph from the store, or build and store it (used by ``Graph(..., cache=True)``).

    Parameters
    ----------
    callback : callable
        The state-space callback (keyed by :func:`phasic.keys.graph_key`).
    params : dict
        Callback keyword parameters.
    ipv, model, indexer : optional
        As given to ``Graph``.
    options : dict
        ``Graph`` options (``theta_dim``, ``discrete``, ...).
    build : callable
        ``build() -> Graph``, called only on a miss (at most once across
        processes racing for the same key, see :meth:`Store.get_or_create`).
    store : Store, optional
        Default: ``Store()`` at ``$PHASIC_CACHE_DIR`` or ``~/.phasic_cache``.

    Returns
    -------
    Graph
        If the entry cannot be locked or written (disk full, read-only cache,
        another user's lock that cannot be removed, a builder in another process
        that holds the lock for longer than ``$PHASIC_CACHE_LOCK_TIMEOUT``) the
        graph is built here and returned with a :class:`phasic.exceptions.CacheWarning`
        that names the file and the cause; nothing is stored then.  An entry written
        by a newer phasic is never replaced: the graph is built here, with one
        ``CacheWarning`` saying to upgrade.  A miss reads the entry once and warns at
        most once (an unreadable entry, a newer one).
    """
    Graph = _graph_class()
    key, material = graph_key(callback, params, ipv=ipv, model=model, indexer=indexer, options=options)
    reader = store if store is not None else _read_store()
    found, status, st = reader._lookup("graphs", key)
    if found is not None:
        try:  # the store checked a graph entry's arrays when it read it (graph_arrays.graph_problem)
            return Graph.from_arrays(*found, checked=True)
        except (ValueError, TypeError, KeyError) as exc:  # a valid checksum over something that is no graph
            reader.discard("graphs", key, f"not a graph: {exc}", st)  # (only the file that was read)
            status = "bad"
    if status == "newer":  # never replaced: built here; the read warned once, saying to upgrade
        return build()
    store = store if store is not None else Store()
    built = []
    name = getattr(callback, "__qualname__", None) or repr(callback)

    def _build():
        graph = build()
        built.append(graph)
        arrays, attrs = graph.to_arrays(compact=True)
        attrs = dict(attrs)
        attrs.update(model_attrs(callback, material))
        return arrays, attrs

    from phasic.store._lock import get_or_create

    try:  # after this miss (which gave any warning): no second read before the lock
        arrays, attrs = get_or_create(store, "graphs", key, _build, status)
    except StoreError as exc:
        if not built:
            raise
        warnings.warn(f"phasic: the graph of {name} was built but not cached: {exc}", CacheWarning, 2)
        return built[0]
    return built[0] if built else Graph.from_arrays(arrays, attrs)


class GraphCache:
    """Graphs keyed by callback, parameters and options, in the content-addressed store.

    Parameters
    ----------
    cache_dir : str or path-like, optional
        The store root (holding ``graphs/`` and ``traces/``); a path ending in
        ``graphs`` is taken as that root's ``graphs`` directory.  Default:
        ``$PHASIC_CACHE_DIR`` or ``~/.phasic_cache``.

    Examples
    --------
    ::

        cache = GraphCache("/tmp/my_cache")
        g = cache.get_or_build(coalescent, theta=2)
    """

    def __init__(self, cache_dir=None):
        root = None
        if cache_dir is not None:
            root = Path(cache_dir).expanduser()
            if root.name == "graphs":
                root = root.parent
        self.store = Store(root)

    @property
    def cache_dir(self):
        """The directory holding the graph entries (``<root>/graphs``)."""
        return self.store.root / "graphs"

    def __repr__(self):
        return f"GraphCache({str(self.store.root)!r})"

    def get_or_build(self, callback, **kwargs):
        """Return ``Graph(callback, **kwargs)``, from the cache when present.

        Returns
        -------
        Graph
        """
        Graph = _graph_class()
        params, ipv, model, indexer, options = _key_args(kwargs)
        graph_kwargs = {k: v for k, v in options.items() if k not in ("cache", "graph_cache")}
        return cached_graph(
            callback,
            params=params,
            ipv=ipv,
            model=model,
            indexer=indexer,
            options=options,
            build=lambda: Graph(callback, cache=False, **graph_kwargs, **params),
            store=self.store,
        )

    def save_graph(self, graph, callback, **kwargs):
        """Store ``graph`` as the graph of ``Graph(callback, **kwargs)``; returns the entry's path."""
        key, material = graph_key_for(callback, **kwargs)
        arrays, attrs = graph.to_arrays(compact=True)
        attrs = dict(attrs)
        attrs.update(model_attrs(callback, material))
        return self.store.put("graphs", key, arrays, attrs)

    def load_graph(self, callback, **kwargs):
        """The cached graph of ``Graph(callback, **kwargs)``, or None when not cached."""
        key, _ = graph_key_for(callback, **kwargs)
        found = self.store.get("graphs", key)
        return None if found is None else _graph_class().from_arrays(*found)

    def get_cache_stats(self):
        """Stats of this cache's graphs (see :func:`get_graph_cache_stats`)."""
        return _graph_stats(self.store)

    def clear_graph_cache(self):
        """Remove every cached graph; returns how many were removed."""
        return self.store.clear("graphs")

    def print_cache_info(self, file=None):
        """Print the ``GRAPH CACHE INFO`` frame for this cache."""
        _print_frame("GRAPH CACHE INFO", self.get_cache_stats(), "Cached graphs", "num_graphs", file)


# ---------------------------------------------------------------------- stats and printing


def _graph_stats(store):
    s = store.stats("graphs")
    return {"num_graphs": s["num_entries"], **s}


def _trace_stats(store):
    s = store.stats("traces")
    return {"total_files": s["num_entries"], "total_mb": s["total_size_mb"], **s}


def _print_frame(title, stats, label, count_key, file=None):
    out = file if file is not None else sys.stdout
    print(_RULE, file=out)
    print(title, file=out)
    print(_RULE, file=out)
    print(f"Cache directory: {stats['cache_dir']}", file=out)
    print(f"{label}: {stats[count_key]}", file=out)
    print(f"Total size: {stats['total_size_mb']:.2f} MB", file=out)


def get_graph_cache_stats():
    """Stats of the graph cache.

    Returns
    -------
    dict
        ``num_graphs``, ``total_size_mb``, ``cache_dir``, ``num_entries``, ``total_bytes``.
    """
    return _graph_stats(Store())


def print_graph_cache_info(file=None):
    """Print the ``GRAPH CACHE INFO`` frame (directory, number of graphs, total size)."""
    _print_frame("GRAPH CACHE INFO", get_graph_cache_stats(), "Cached graphs", "num_graphs", file)


def get_trace_cache_stats():
    """Stats of the trace cache.

    Returns
    -------
    dict
        ``total_files``, ``total_bytes``, ``total_mb``, ``cache_dir``, ``num_entries``, ``total_size_mb``.
    """
    return _trace_stats(Store())


def print_trace_cache_info(file=None):
    """Print the ``TRACE CACHE INFO`` frame (directory, number of traces, total size)."""
    _print_frame("TRACE CACHE INFO", get_trace_cache_stats(), "Cached traces", "total_files", file)


def _jax_cache_module():
    try:
        from phasic.jax import _cache as jax_cache
    except ModuleNotFoundError as exc:
        if exc.name not in ("phasic.jax._cache",):
            raise
        return None
    return jax_cache


def _jax_fallback_dir():
    env = os.environ.get("JAX_COMPILATION_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".jax_cache"


def _jax_fallback_stats():
    directory = _jax_fallback_dir()
    n = total = 0
    try:
        for entry in os.scandir(directory):
            if entry.is_file(follow_symlinks=False):
                n += 1
                total += entry.stat().st_size
    except (FileNotFoundError, NotADirectoryError):
        pass
    return {
        "cache_dir": str(directory),
        "num_entries": n,
        "num_files": n,
        "total_bytes": total,
        "total_size_mb": total / _MB,
    }


def _jax_stats():
    module = _jax_cache_module()
    return module.get_jax_cache_stats() if module is not None else _jax_fallback_stats()


def get_all_cache_stats():
    """Stats of every cache: ``{'jax': ..., 'graph': ..., 'trace': ...}``."""
    return {"jax": _jax_stats(), "graph": get_graph_cache_stats(), "trace": get_trace_cache_stats()}


def print_all_cache_info(file=None):
    """Print the JAX, graph and trace cache frames."""
    module = _jax_cache_module()
    if module is not None and hasattr(module, "print_jax_cache_info"):
        module.print_jax_cache_info(file=file)
    else:
        _print_frame("JAX CACHE INFO", _jax_fallback_stats(), "Cached files", "num_entries", file)
    print_graph_cache_info(file=file)
    print_trace_cache_info(file=file)


def _clear_jax():
    module = _jax_cache_module()
    if module is not None:
        return module.clear_jax_cache()
    directory = _jax_fallback_dir().resolve()
    if directory == Path(directory.anchor) or directory == Path.home().resolve():
        raise StoreError(
            f"refusing to clear {str(directory)!r}: it is the filesystem root or your home directory, "
            "not a JAX cache; set JAX_COMPILATION_CACHE_DIR"
        )
    n = 0
    try:
        for entry in os.scandir(directory):
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                n += 1
    except (FileNotFoundError, NotADirectoryError):
        pass
    return n


def clear_model_cache():
    """Remove the cached graphs and traces (nothing else under the cache root).

    Returns
    -------
    dict
        ``{'graphs': n, 'traces': n}`` removed.
    """
    store = Store()
    return {"graphs": store.clear("graphs"), "traces": store.clear("traces")}


def clear_caches(verbose=True):
    """Remove cached graphs, traces and JAX compilations.

    Returns
    -------
    dict
        ``{'graphs': n, 'traces': n, 'jax': n}`` removed.
    """
    removed = clear_model_cache()
    removed["jax"] = _clear_jax()
    if verbose:
        print(f"Cleared {removed['graphs']} graphs, {removed['traces']} traces and {removed['jax']} JAX cache files")
    return removed
