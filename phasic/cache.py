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

    import phasic
    from phasic import Graph, with_ipv
    @with_ipv([10])
    def coalescent(state, theta=1.0):
        n = state[0]
        return [] if n <= 1 else [[[n - 1], n * (n - 1) / 2 * theta]]
    g = Graph(coalescent, theta=2.0, cache=True)
    phasic.specs.ModelSpec(coalescent, theta=2.0).entry_path().exists()
    # True
"""

from __future__ import annotations

import sys
from pathlib import Path

from phasic.graph import Graph
from phasic.keys import callback_attrs, graph_key, split_graph_kwargs
from phasic.store import Store

__all__ = [
    "GraphCache",
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


def _key(callback, kwargs):
    """``(key, material)`` of ``Graph(callback, **kwargs)`` (see :func:`phasic.keys.graph_key`)."""
    options, params = split_graph_kwargs(kwargs)
    return graph_key(callback, params, options=options)


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
        return Graph.cached(callback, store=self.store, **kwargs)

    def save_graph(self, graph, callback, **kwargs):
        """Store ``graph`` as the graph of ``Graph(callback, **kwargs)``; returns the entry's path."""
        key, material = _key(callback, kwargs)
        arrays, attrs = graph.to_arrays(compact=True)
        return self.store.put("graphs", key, arrays, {**attrs, **callback_attrs(callback, material)})

    def load_graph(self, callback, **kwargs):
        """The cached graph of ``Graph(callback, **kwargs)``, or None when not cached."""
        key, _ = _key(callback, kwargs)
        found = self.store.get("graphs", key)
        return None if found is None else Graph.from_arrays(*found)

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


def get_all_cache_stats():
    """Stats of every cache: ``{'jax': ..., 'graph': ..., 'trace': ...}``."""
    from phasic.jax import get_jax_cache_stats  # on use: importing the cache API stays light

    return {"jax": get_jax_cache_stats(), "graph": get_graph_cache_stats(), "trace": get_trace_cache_stats()}


def print_all_cache_info(file=None):
    """Print the JAX, graph and trace cache frames."""
    from phasic.jax import print_jax_cache_info

    print_jax_cache_info(file=file)
    print_graph_cache_info(file=file)
    print_trace_cache_info(file=file)


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
    from phasic.jax import clear_jax_cache

    removed["jax"] = clear_jax_cache()
    if verbose:
        print(f"Cleared {removed['graphs']} graphs, {removed['traces']} traces and {removed['jax']} JAX cache files")
    return removed
