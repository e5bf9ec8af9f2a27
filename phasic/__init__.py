"""phasic: phase-type distributions from state-space graphs, with caching.

Heavy dependencies (JAX, Dask, Snakemake) are imported only by the functions that use them;
the cache API is loaded on first use, and so is every submodule: after ``import phasic``,
``phasic.batch.evaluate_batch`` imports :mod:`phasic.batch` when it is first used.
"""

from phasic.callbacks import with_ipv
from phasic.exceptions import (
    CacheWarning,
    CompilationConfigError,
    CorruptEntryError,
    DistributedError,
    ForwardModeError,
    GraphConstructionError,
    JaxCacheError,
    KeyWarning,
    ParameterError,
    PhasicError,
    PhasicWarning,
    StateSpaceTooLarge,
    StoreError,
    TraceError,
    UnhashableError,
    UnsafeArchiveError,
)
from phasic.graph import Graph

__version__ = "0.1.0"

_LAZY = {
    # graph/trace store and the unified cache API
    "GraphCache": "phasic.cache",
    "print_graph_cache_info": "phasic.cache",
    "get_graph_cache_stats": "phasic.cache",
    "print_trace_cache_info": "phasic.cache",
    "get_trace_cache_stats": "phasic.cache",
    "print_all_cache_info": "phasic.cache",
    "get_all_cache_stats": "phasic.cache",
    "clear_caches": "phasic.cache",
    "clear_model_cache": "phasic.cache",
    # JAX compilation cache
    "print_jax_cache_info": "phasic.jax",
    "get_jax_cache_stats": "phasic.jax",
    "cache_info": "phasic.jax",
    "clear_jax_cache": "phasic.jax",
    # JAX functions
    "pmf_from_graph": "phasic.jax",
    "moments_from_graph": "phasic.jax",
    "CompilationConfig": "phasic.jax",
    # named lineage properties
    # batches of parameter vectors
    "evaluate_batch": "phasic.batch",
    "StateIndexer": "phasic.state_indexing",
    "Property": "phasic.state_indexing",
}

__all__ = [
    "Graph",
    "with_ipv",
    "PhasicError",
    "GraphConstructionError",
    "StateSpaceTooLarge",
    "ParameterError",
    "UnhashableError",
    "StoreError",
    "CorruptEntryError",
    "UnsafeArchiveError",
    "TraceError",
    "DistributedError",
    "ForwardModeError",
    "CompilationConfigError",
    "JaxCacheError",
    "PhasicWarning",
    "CacheWarning",
    "KeyWarning",
    *_LAZY,
]


def __getattr__(name):
    import importlib

    module = _LAZY.get(name)
    if module is None:
        # a public submodule used as phasic.<module>.<name> (phasic.traces, phasic.distributed)
        if name.startswith("_") or not name.isidentifier():
            raise AttributeError(f"module 'phasic' has no attribute {name!r}")
        try:
            value = importlib.import_module(f"phasic.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"phasic.{name}":
                raise  # the submodule exists but needs what is missing: say so
            raise AttributeError(f"module 'phasic' has no attribute {name!r}") from None
    else:
        value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def _submodules():
    import pkgutil

    return {m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")}


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | _submodules())
