"""JAX functions of a parameterised graph, their compilation settings and JAX's compilation cache.

* :func:`pmf_from_graph` — densities (continuous graphs) or probabilities (discrete ones) as a
  jit-able, vmap-able and differentiable function of ``(theta, times)``;
* :func:`moments_from_graph` — the first k moments as a function of ``theta``, by replaying the
  graph's elimination trace (in the compiled core, or on JAX arrays with ``backend="jax"``);
* :func:`svgd` — Stein variational gradient descent on any log-likelihood written in JAX
  (``Graph.svgd`` uses it with the graph's pdf/pmf);
* :class:`CompilationConfig` — XLA optimisation level, platform and the persistent compilation
  cache, applied once per process (also from a Snakemake rule or a Dask worker);
* :func:`get_jax_cache_stats`, :func:`print_jax_cache_info`, :func:`cache_info`,
  :func:`clear_jax_cache` — the compilation cache on disk.

Importing this package does not import jax: the functions import it when they are called.
The modules under it are private: ``_svgd`` over ``_ops`` (the two functions) over ``_replay``
(the trace replayed on JAX arrays), ``_config`` over ``_cache``.
"""

from phasic.jax._cache import (
    cache_info,
    clear_jax_cache,
    get_jax_cache_stats,
    jax_cache_dir,
    print_jax_cache_info,
    sync_jax_cache,
)
from phasic.jax._config import PRESETS, CompilationConfig, CompilationConfigError
from phasic.jax._ops import moments_from_graph, pmf_from_graph
from phasic.jax._svgd import SVGDResult, svgd

__all__ = [
    "pmf_from_graph",
    "moments_from_graph",
    "svgd",
    "SVGDResult",
    "CompilationConfig",
    "CompilationConfigError",
    "PRESETS",
    "cache_info",
    "clear_jax_cache",
    "get_jax_cache_stats",
    "jax_cache_dir",
    "print_jax_cache_info",
    "sync_jax_cache",
]
