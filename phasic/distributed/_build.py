"""Graph builds and trace recording as Dask tasks (see :mod:`phasic.distributed`)."""

from __future__ import annotations

import hashlib
import os
import socket
import time
import traceback

from phasic.exceptions import DistributedError, ParameterError, StoreError, UnhashableError
from phasic.keys import graph_key, split_graph_kwargs
from phasic.specs import ModelSpec

__all__ = ["build"]

# ----------------------------------------------------------------------------- worker side


def _failure(exc):
    return {
        "ok": False,
        "error_type": type(exc).__name__,
        "message": str(exc),
        "notes": [str(n) for n in getattr(exc, "__notes__", ()) or ()],
        "traceback": "".join(traceback.format_exception(exc)),
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }


def build_task(root, key, material, callback, kwargs, trace=True, verify_key=True):
    """Build one model into the store at ``root`` (runs on a worker).

    Returns a small dict: ``ok``, ``key``, ``trace_key``, ``built`` (False when the graph
    was already stored), ``vertices``, ``edges``, ``seconds``, ``host``, ``pid``; or, when
    the model itself fails (callback error, bad graph), ``ok=False`` with the error's type,
    message and ``__notes__`` (such failures are not retried; store and network errors
    raise and are retried by Dask).  With ``verify_key`` (callbacks pickled by reference) the
    worker recomputes the key from its own copy of the code and refuses to store the graph
    under the client's key when they differ.
    """
    from phasic.graph import Graph
    from phasic.store import Store
    from phasic.traces import ensure_trace

    t0 = time.perf_counter()
    if isinstance(callback, bytes):  # sent by value (see ModelSpec._payload)
        import pickle

        callback = pickle.loads(callback)
    store = Store(root)
    options, params = split_graph_kwargs(kwargs)
    built = []
    try:
        worker_key, worker_material = key, material
        if verify_key:
            try:
                worker_key, worker_material = graph_key(callback, params, options=options)
            except UnhashableError:  # no source here: trust the client's key
                worker_key, worker_material = key, material
        if worker_key != key:
            raise DistributedError(
                f"the model's key on the worker ({worker_key[:16]}...) differs from the client's "
                f"({key[:16]}...): the worker runs different code or data for the callback; install "
                "the same version of its module on the workers"
            )
        from phasic.keys import callback_attrs

        def make():
            g = Graph(callback, **kwargs)
            built.append(g)
            arrays, attrs = g.to_arrays(compact=True)
            attrs = dict(attrs)
            attrs.update(callback_attrs(callback, worker_material))
            return arrays, attrs

        arrays, attrs = store.get_or_create("graphs", key, make)
        g = built[0] if built else Graph.from_arrays(arrays, attrs)
        trace_key = ensure_trace(g, store=store) if trace else None
        for kind, stored in (("graphs", key), ("traces", trace_key)):
            if stored is not None and not store.contains(kind, stored):  # get_or_create warned why
                raise StoreError(
                    f"built but could not store {store.path(kind, stored)} on this worker "
                    "(see its CacheWarning); check that the store is writable and has room"
                )
    except (StoreError, MemoryError):
        raise  # possibly transient: let Dask retry
    except Exception as exc:
        return _failure(exc)
    return {
        "ok": True,
        "key": key,
        "trace_key": trace_key,
        "built": bool(built),
        "vertices": int(g.vertices_length()),
        "edges": int(g.edges_length()),
        "seconds": time.perf_counter() - t0,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "slurm_job": os.environ.get("SLURM_JOB_ID"),
    }


# ----------------------------------------------------------------------------- client side


def _stored(store, key, trace):
    """Info dict when graph (and trace) of ``key`` are already stored, else None."""
    if not store.contains("graphs", key):
        return None
    found = store.get("graphs", key)
    if found is None:
        return None
    from phasic.graph import Graph
    from phasic.traces import trace_key as structure_key

    g = Graph.from_arrays(*found)
    tkey = structure_key(g) if trace else None
    if trace and not store.contains("traces", tkey):
        return None
    return {
        "ok": True,
        "key": key,
        "trace_key": tkey,
        "built": False,
        "vertices": int(g.vertices_length()),
        "edges": int(g.edges_length()),
        "seconds": 0.0,
        "host": None,
        "pid": None,
        "slurm_job": None,
    }


def _error_text(spec, info):
    notes = "; ".join(info.get("notes") or ())
    where = f" ({notes})" if notes else ""
    host = f" on worker {info.get('host')} pid {info.get('pid')}" if info.get("host") else ""
    return f"building {spec.label} failed{host}: {info['error_type']}: {info['message']}{where}"


def _exception_info(exc):
    info = {
        "error_type": type(exc).__name__,
        "message": str(exc),
        "notes": [str(n) for n in getattr(exc, "__notes__", ()) or ()],
    }
    if isinstance(exc, (ModuleNotFoundError, AttributeError)) or type(exc).__name__ == "KilledWorker":
        hint = (
            "the callback must be importable on the workers (a module-level function in a module on their PYTHONPATH)"
            if not type(exc).__name__ == "KilledWorker"
            else "the worker process died repeatedly while building it (memory? a crash in the callback?)"
        )
        info["message"] = f"{info['message']}; {hint}"
    return info


def build(
    specs, *, client=None, cache_dir=None, retries=2, trace=True, progress=None, performance_report=None, details=False
):
    """Build models as Dask tasks: graph, elimination trace and store entries per distinct key.

    Parameters
    ----------
    specs : ModelSpec or iterable of ModelSpec
    client : distributed.Client, optional
        See :mod:`phasic.distributed` for how a client is chosen when this is None.
    cache_dir : path-like, optional
        Store root shared by client and workers (default ``$PHASIC_CACHE_DIR`` or
        ``~/.phasic_cache``); passed to the tasks explicitly.
    retries : int
        Retries of a task whose worker died or whose store write failed.
    trace : bool
        Also record and store the elimination trace.
    progress : bool, optional
        Progress bar on stderr (default: when stderr is a terminal).
    performance_report : path-like, optional
        Write Dask's HTML performance report of the builds there (needs bokeh).
    details : bool
        Return one info dict per spec (``key``, ``trace_key``, ``built``, ``vertices``,
        ``edges``, ``seconds``) instead of the keys.

    Returns
    -------
    list of str
        The graph key of every spec, in order (duplicates give the same key).

    Raises
    ------
    ParameterError
        ``specs`` holds something that is not a ModelSpec, or ``retries`` is invalid.
    UnhashableError
        A spec cannot be keyed (lambda, callback without source, unsupported parameter).
    DistributedError
        When a model fails: names the spec (callback and arguments), the state the callback
        raised at and the cause; ``.failures`` lists ``(spec, message)`` of every failed
        model and ``.keys`` the keys that were built (their entries stay in the store).

    Examples
    --------
    ::

        keys = build([ModelSpec(coalescent, theta=2.0), ModelSpec(coalescent, theta=3.0)])
    """
    from phasic.distributed._client import connect, report, wait, wait_for_workers
    from phasic.store import Store

    if isinstance(specs, ModelSpec):
        specs = [specs]
    specs = list(specs)
    for i, spec in enumerate(specs):
        if not isinstance(spec, ModelSpec):
            raise ParameterError(f"specs[{i}] = {spec!r} is not a ModelSpec; wrap it as ModelSpec(callback, **kwargs)")
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise ParameterError(f"retries={retries!r} must be a non-negative integer")
    store = Store(cache_dir)
    root = os.path.abspath(store.root)
    # The Dask key is the graph key (identical builds in flight run once, whoever submits
    # them) plus a tag of the store root and the trace flag, so that builds into different
    # stores never stand in for each other.
    tag = hashlib.sha256(f"{root}\0{bool(trace)}".encode()).hexdigest()[:8]
    distinct = {}
    for spec in specs:
        distinct.setdefault(spec.key, spec)
    infos = {}
    todo = {}
    for key, spec in distinct.items():
        found = _stored(store, key, trace)
        if found is not None:
            infos[key] = found
        else:
            todo[key] = spec
    if todo:
        with connect(client) as conn:
            c = conn.client
            wait_for_workers(c, f"the builds of {len(todo)} model(s)")
            with report(c, performance_report):
                futures = {
                    key: c.submit(
                        build_task,
                        root,
                        key,
                        spec.material,
                        spec._payload(),
                        spec.kwargs,
                        trace,
                        spec._by_reference(),
                        key=f"phasic-build-{key}-{tag}",
                        retries=retries,
                    )
                    for key, spec in todo.items()
                }
                wait(c, list(futures.values()), progress, f"phasic build ({len(futures)} models)")
                done = {key: fut for key, fut in futures.items() if fut.status == "finished"}
                infos.update(zip(done, c.gather(list(done.values()))))
                for key, fut in futures.items():
                    if key not in done:
                        try:
                            exc = fut.exception()
                        except Exception as err:  # cancelled, lost
                            exc = err
                        infos[key] = {"ok": False, **_exception_info(exc)}
                del futures
    failures = [(distinct[k], _error_text(distinct[k], info)) for k, info in infos.items() if not info.get("ok")]
    if failures:
        more = f" (and {len(failures) - 1} more failed model(s))" if len(failures) > 1 else ""
        err = DistributedError(failures[0][1] + more)
        err.failures = failures
        err.keys = [k for k, info in infos.items() if info.get("ok")]
        raise err
    if details:
        return [dict(infos[spec.key], label=spec.label) for spec in specs]
    return [spec.key for spec in specs]
