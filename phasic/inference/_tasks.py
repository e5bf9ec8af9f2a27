"""Fitting problems on Dask workers: a picklable description of a :class:`Problem`, one Problem
per (worker) process for each description, and the Dask client of a call.

A task carries a :class:`ProblemSpec` (the loaded Demes graph, the options as a mapping, the
observed counts with their mask, the samples, the likelihood settings) and the client's store
root; the worker builds the Problem once per process (and thread) and description and reuses it
for every later task (a module-level cache keyed by the description's token). Graphs and traces come
from the shared store, so a worker replays the stored trace instead of recording it again.
"""

from __future__ import annotations

import collections
import hashlib
import os
import pickle
import threading
from dataclasses import dataclass, field

import numpy as np

from phasic.exceptions import ParameterError
from phasic.inference._problem import Problem


@dataclass
class ProblemSpec:
    """What a worker needs to build the same :class:`Problem` as the client."""

    graph: object  # demes.Graph
    options: dict
    counts: np.ndarray
    mask: np.ndarray
    folded: bool
    samples: dict
    mutation_rate: float | None
    sequence_length: float | None
    state_space: str | None
    cache: bool
    root: str | None  # the client's store root (None: no store)
    token: str = field(default="", compare=False)

    def __post_init__(self):
        if not self.token:
            payload = (
                self.graph.asdict(),
                self.options,
                self.counts.tobytes(),
                self.counts.shape,
                self.mask.tobytes(),
                self.folded,
                self.samples,
                self.mutation_rate,
                self.sequence_length,
                self.state_space,
                self.cache,
                self.root,
            )
            self.token = hashlib.sha256(pickle.dumps(payload)).hexdigest()[:32]


def spec_of(graph, options, data, samples, mutation_rate, sequence_length, folded, state_space, cache, prob):
    """The :class:`ProblemSpec` of `prob` (built from these arguments)."""
    from phasic.demography import _demes
    from phasic.inference._options import _load_yaml
    from phasic.store import Store

    root = str(Store().root) if cache else None
    return ProblemSpec(
        graph=_demes.load(graph),
        options=_load_yaml(options, "options file"),
        counts=np.asarray(prob.counts, dtype=np.float64),
        mask=np.asarray(prob.mask, bool),
        folded=bool(prob.folded),
        samples=dict(prob.samples),
        mutation_rate=mutation_rate,
        sequence_length=sequence_length,
        state_space=state_space,
        cache=cache,
        root=root,
    )


def build(spec, counts=None, mask=None):
    """A :class:`Problem` from `spec` (with other observed `counts` and `mask`, e.g. a bootstrap
    replicate, when given)."""
    prob = Problem(
        spec.graph,
        spec.options,
        spec.counts if counts is None else counts,
        spec.samples,
        spec.mutation_rate,
        spec.sequence_length,
        spec.folded,
        spec.state_space,
        spec.cache,
    )
    # the counts came as an array: the mask of a .fs file travels separately
    prob.mask = np.asarray(spec.mask if mask is None else mask, bool)
    return prob


_CACHE = collections.OrderedDict()
_CACHE_SIZE = 16
_LOCK = threading.Lock()


def _use_root(root):
    """Point this process's store at the client's root (a worker process started elsewhere
    may have another ``PHASIC_CACHE_DIR``; a worker thread in the client's process has the same)."""
    if root is not None and os.environ.get("PHASIC_CACHE_DIR") != root:
        os.environ["PHASIC_CACHE_DIR"] = root


def worker_problem(spec):
    """The Problem of `spec` in this process (one per thread: worker threads never share a
    Problem): built on the first call, then reused."""
    _use_root(spec.root)
    key = (spec.token, threading.get_ident())
    with _LOCK:
        prob = _CACHE.get(key)
        if prob is not None:
            _CACHE.move_to_end(key)
            return prob
    prob = build(spec)
    with _LOCK:
        _CACHE[key] = prob
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return prob


def evaluate(prob, values):
    """``(log-likelihood, gradient)`` at `values`: ``(-inf, zeros)`` where the values are
    infeasible (bounds, constraints, a graph demes refuses) or the likelihood is not finite."""
    values = np.asarray(values, dtype=np.float64)
    zero = np.zeros(values.size)
    if not prob.feasible(values):
        return -np.inf, zero
    try:
        ll, g = prob.loglik_grad(values)
    except ParameterError:
        return -np.inf, zero
    g = np.asarray(g, dtype=np.float64)
    if not np.isfinite(ll) or not np.all(np.isfinite(g)):
        return -np.inf, zero
    return float(ll), g


def evaluate_chunk(spec, values):
    """A Dask task: :func:`evaluate` at each row of `values` with this process's Problem;
    returns ``(logliks, gradients, evaluations)``."""
    prob = worker_problem(spec)
    before = prob.evaluations
    out = [evaluate(prob, v) for v in np.atleast_2d(values)]
    lls = np.array([o[0] for o in out])
    grads = np.array([o[1] for o in out]).reshape(len(out), -1)
    return lls, grads, prob.evaluations - before


class Connection:
    """The Dask client of one call: the caller's, or a LocalCluster started for the call
    (``"local"``) and closed at its end."""

    def __init__(self, client):
        self.client = None
        self._cluster = None
        if client is None:
            return
        if isinstance(client, str):
            if client != "local":
                raise ParameterError(f"client must be a dask.distributed.Client or 'local', got {client!r}")
            try:
                from distributed import Client, LocalCluster
            except ImportError:
                raise ParameterError("client='local' needs dask.distributed (pip install distributed)") from None
            try:
                n = len(os.sched_getaffinity(0))
            except AttributeError:  # not Linux
                n = os.cpu_count() or 1
            self._cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0")
            self.client = Client(self._cluster, set_as_default=False)
            return
        if not (hasattr(client, "submit") and hasattr(client, "gather") and hasattr(client, "nthreads")):
            raise ParameterError(f"client must be a dask.distributed.Client or 'local', got {client!r}")
        self.client = client

    def threads(self):
        """The worker threads of the cluster (at least 1)."""
        if self.client is None:
            return 1
        try:
            return max(1, sum(self.client.nthreads().values()))
        except Exception:
            return 1

    def close(self):
        if self._cluster is not None:
            self.client.close()
            self._cluster.close()
            self.client = self._cluster = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
