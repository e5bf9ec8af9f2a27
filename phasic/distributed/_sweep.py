"""Parameter sweeps: chunks of parameter vectors replayed on workers from the stored trace."""

from __future__ import annotations

import collections
import hashlib
import json
import math
import os
import socket
import threading

import numpy as np

from phasic.exceptions import DistributedError, ParameterError, PhasicError

__all__ = ["sweep", "graph_store_key", "load_counts"]

WHATS = ("moments", "expectation", "variance", "pdf", "cdf")
_CONTENT_SCHEMA = "phasic-graph-content/1"

# Per-process cache of graphs with their trace attached, keyed by (store root, graph key):
# a worker loads a graph and its trace once, not once per chunk.
_CACHE_SIZE = 8
_CACHE = collections.OrderedDict()
_LOCK = threading.Lock()
_LOADS = collections.Counter()


def load_counts():
    """``{(root, graph key): loads}`` of this process (how often a graph+trace was read)."""
    with _LOCK:
        return dict(_LOADS)


def _load(root, gkey):
    """The graph ``gkey`` from the store at ``root`` with its stored trace attached."""
    from phasic import traces
    from phasic.graph import Graph
    from phasic.store import Store

    store = Store(root)
    found = store.get("graphs", gkey)
    if found is None:
        raise ParameterError(
            f"graph {gkey!r} is not in the store at {str(root)!r}; build it first with "
            "phasic.distributed.build([...]) (or Graph(..., cache=True)) using the same cache directory"
        )
    g = Graph.from_arrays(*found)
    if not traces.attach_trace(g, store):  # replay the stored trace, don't record it again
        traces.ensure_trace(g, store=store)
    return g


def _worker_graph(root, gkey):
    ck = (str(root), gkey)
    with _LOCK:
        g = _CACHE.get(ck)
        if g is None:
            g = _load(root, gkey)
            _LOADS[ck] += 1
            _CACHE[ck] = g
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
        else:
            _CACHE.move_to_end(ck)
    return g


def _evaluate(root, gkey, thetas, what, k, rewards, times):
    from phasic.batch import evaluate_batch

    g = _worker_graph(root, gkey)
    return np.asarray(evaluate_batch(g, thetas, what=what, k=k, rewards=rewards, times=times), dtype=np.float64)


def chunk_task(root, gkey, thetas, what, k, rewards, times):
    """Evaluate one chunk on a worker: ``("ok", array)`` or ``("error", info)``.

    Errors of the inputs (a theta giving a negative rate, ...) come back as values, so Dask
    does not retry them; store and network errors raise and are retried.
    """
    try:
        return "ok", _evaluate(root, gkey, thetas, what, k, rewards, times)
    except (OSError, MemoryError):
        raise
    except Exception as exc:
        if not isinstance(exc, (PhasicError, ValueError, ArithmeticError)):
            raise
        return "error", {
            "error_type": type(exc).__name__,
            "message": str(exc),
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }


def _block(thetas, root, gkey, what, k, rewards, times):
    """``dask.array.map_blocks`` body: evaluate a block, raising on errors."""
    return _evaluate(root, gkey, thetas, what, k, rewards, times)


def graph_store_key(graph, store):
    """Store ``graph`` by the hash of its arrays (if absent) and return that key."""
    from phasic._csr import of
    from phasic.store import checksum_arrays

    arrays, attrs = graph.to_arrays(compact=True)
    attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in attrs.items()}
    material = json.dumps(
        {"schema": _CONTENT_SCHEMA, "checksum": checksum_arrays(arrays), "attrs": attrs},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    key = hashlib.sha256(material.encode()).hexdigest()
    if not store.contains("graphs", key):
        store.put("graphs", key, arrays, dict(attrs, key_material=material, callback=of(graph).callback_name))
    return key


def _check(g, thetas, what, k, rewards, times, chunk_size):
    if what not in WHATS:
        raise ParameterError(f"what={what!r} is not one of {WHATS}")
    if what == "moments" and (not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1):
        raise ParameterError(f"k={k!r} must be a positive integer (the number of moments)")
    p = g.theta_dim
    if not p:
        raise ParameterError(
            "sweep needs a parameterised graph (callback rates given as coefficient lists); "
            "this graph has numeric rates only"
        )
    try:
        th = np.array(thetas, dtype=np.float64)
    except (TypeError, ValueError):
        raise ParameterError(f"thetas {thetas!r:.80} is not a numeric array of shape (N, {p})") from None
    if th.ndim == 1 and p == 1:
        th = th.reshape(-1, 1)
    if th.ndim != 2 or th.shape[1] != p:
        raise ParameterError(f"thetas has shape {th.shape!r}; expected (N, {p}) for this graph")
    bad = np.flatnonzero(~np.all(np.isfinite(th), axis=1))
    if bad.size:
        raise ParameterError(f"thetas row {int(bad[0])} = {th[bad[0]].tolist()!r} has non-finite entries")
    if rewards is not None:
        rewards = np.array(rewards, dtype=np.float64)
        V = g.vertices_length()
        if rewards.shape != (V,) or not np.all(np.isfinite(rewards)):
            raise ParameterError(f"rewards must be {V} finite values (one per vertex), got shape {rewards.shape!r}")
    if what in ("pdf", "cdf"):
        if times is None:
            raise ParameterError(f"what={what!r} needs times= (the time grid)")
        times = np.array(times, dtype=np.float64)
        if times.ndim != 1 or not np.all(np.isfinite(times)) or np.any(times < 0):
            raise ParameterError(f"times must be a 1-D array of finite times >= 0, got {times!r:.80}")
    else:
        times = None
    if chunk_size is not None and (
        not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1 or isinstance(chunk_size, bool)
    ):
        raise ParameterError(f"chunk_size={chunk_size!r} must be a positive integer or None")
    return th, rewards, times


def _width(what, k, times):
    if what == "moments":
        return (k,)
    if what in ("pdf", "cdf"):
        return (len(times),)
    return ()


def sweep(
    key_or_graph,
    thetas,
    what="moments",
    k=2,
    rewards=None,
    times=None,
    chunk_size=None,
    client=None,
    as_dask_array=False,
    cache_dir=None,
    retries=2,
    progress=None,
    performance_report=None,
):
    """Evaluate many parameter vectors on a stored graph, in chunks on Dask workers.

    Each chunk is evaluated by :func:`phasic.batch.evaluate_batch` from the trace in the
    store; a worker loads the graph and its trace once and keeps them for later chunks.

    Parameters
    ----------
    key_or_graph : str or Graph
        A graph key from :func:`build` (the graph must be in the store), or a parameterised
        ``Graph`` (stored first under the hash of its arrays).
    thetas : array (N, p)
        Parameter vectors (rates ``coef . theta``).
    what : {"moments", "expectation", "variance", "pdf", "cdf"}
    k : int
        Number of moments for ``what="moments"``.
    rewards : array (V,), optional
        Per-vertex rewards (moments, expectation, variance).
    times : array, optional
        Time grid for ``pdf``/``cdf``.
    chunk_size : int, optional
        Rows per task (default: about four tasks per worker thread).
    client : distributed.Client, optional
        See :mod:`phasic.distributed` for how a client is chosen when this is None.
    as_dask_array : bool
        Return a lazy ``dask.array`` (computed wherever the caller computes it) instead of
        evaluating now.
    cache_dir : path-like, optional
        Store root shared by client and workers (default ``$PHASIC_CACHE_DIR``).
    retries : int
        Retries of a chunk whose worker died.
    progress : bool, optional
        Show Dask's own progress display (:func:`distributed.progress`) while the chunks run:
        a widget in a Jupyter notebook (when ipywidgets is installed), else Dask's text bar
        on stdout, which Dask erases again when the tasks end.  Default (None): in a notebook
        or when stdout is a terminal; False shows nothing.  The results are the same either
        way.  With ``as_dask_array=True`` nothing runs here, so nothing is shown: wrap the
        caller's compute in ``dask.diagnostics.ProgressBar`` (local scheduler), or call
        :func:`distributed.progress` on the ``persist()``-ed array.
    performance_report : path-like, optional
        Write Dask's HTML performance report there (needs bokeh).

    Returns
    -------
    numpy.ndarray or dask.array.Array
        ``(N, k)`` moments, ``(N,)`` expectation/variance, ``(N, len(times))`` pdf/cdf.

    Raises
    ------
    ParameterError
        Bad inputs (shape of thetas, rewards, times, unknown key), found before any task runs.
    DistributedError
        A chunk failed on a worker; names the graph key, the rows and the cause.

    Examples
    --------
    ::

        m = sweep(keys[0], np.array([[1.0, 0.5], [2.0, 0.5]]), what="moments", k=2)

    With Dask's progress bar (in a terminal; a widget in Jupyter)::

        m = sweep(keys[0], thetas, k=2, progress=True)
        # [########################################] | 100% Completed |  3.2s
    """
    from phasic.graph import Graph
    from phasic.store import Store

    store = Store(cache_dir)
    root = os.path.abspath(store.root)
    if isinstance(key_or_graph, Graph):
        gkey = graph_store_key(key_or_graph, store)
        g = key_or_graph
    elif isinstance(key_or_graph, str):
        store.path("graphs", key_or_graph)  # validates the key's form
        gkey = key_or_graph
        g = _load(root, gkey)  # also makes sure the trace is stored
    else:
        raise ParameterError(f"key_or_graph={key_or_graph!r:.80} must be a graph key (str) or a Graph")
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise ParameterError(f"retries={retries!r} must be a non-negative integer")
    th, rewards, times = _check(g, thetas, what, k, rewards, times, chunk_size)
    if isinstance(key_or_graph, Graph):
        from phasic.traces import ensure_trace

        ensure_trace(g, store=store)
    n, width = th.shape[0], _width(what, k, times)
    if as_dask_array:
        import dask.array as da

        size = chunk_size or max(1, math.ceil(n / (4 * (os.cpu_count() or 1))))
        x = da.from_array(th, chunks=(size, th.shape[1]))
        out_chunks = (x.chunks[0],) + tuple((w,) for w in width)
        return x.map_blocks(
            _block,
            root,
            gkey,
            what,
            k,
            rewards,
            times,
            chunks=out_chunks,
            dtype=np.float64,
            drop_axis=None if width else 1,
            token=f"phasic-sweep-{gkey[:16]}",
        )
    if n == 0:
        return np.empty((0,) + width)
    from dask.base import tokenize

    from phasic.distributed._client import connect, report, wait_for_workers, wait_with_dask_progress

    with connect(client) as conn:
        c = conn.client
        wait_for_workers(c, "the sweep")
        if chunk_size is None:
            threads = sum(c.nthreads().values()) or 1
            chunk_size = max(1, math.ceil(n / (4 * threads)))
        bounds = [(lo, min(lo + chunk_size, n)) for lo in range(0, n, chunk_size)]
        with report(c, performance_report):
            chunks = [th[lo:hi] for lo, hi in bounds]
            keys = [
                f"phasic-sweep-{gkey[:16]}-{tokenize(root, gkey, chunk, what, k, rewards, times)}" for chunk in chunks
            ]
            m = len(chunks)
            futures = c.map(
                chunk_task,
                [root] * m,
                [gkey] * m,
                chunks,
                [what] * m,
                [k] * m,
                [rewards] * m,
                [times] * m,
                key=keys,
                retries=retries,
            )
            wait_with_dask_progress(c, futures, progress)
            for (lo, hi), fut in zip(bounds, futures):
                if fut.status != "finished":
                    try:
                        exc = fut.exception()
                    except Exception as err:  # cancelled or lost
                        exc = err
                    c.cancel(futures)
                    raise DistributedError(
                        f"sweep of graph {gkey} failed on rows {lo}:{hi}: {type(exc).__name__}: {exc}"
                    ) from exc
            results = c.gather(futures)
            del futures
        parts = []
        for (lo, hi), (status, value) in zip(bounds, results):
            if status != "ok":
                raise DistributedError(
                    f"sweep of graph {gkey} failed on rows {lo}:{hi} (worker {value['host']} pid "
                    f"{value['pid']}): {value['error_type']}: {value['message']}"
                )
            parts.append(value)
    return np.concatenate(parts, axis=0)
