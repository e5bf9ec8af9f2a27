"""Graph builds, trace recording and parameter sweeps as Dask tasks.

::

    from phasic.distributed import build, sweep, ModelSpec
    keys = build([ModelSpec(coalescent, theta=2.0),
                  ModelSpec(two_island_param, ipv=[6, 6])])
    moments = sweep(keys[1], thetas, what="moments", k=2)

:func:`build` submits one task per *distinct* graph key (duplicate specs collapse; models
whose graph and trace are already stored are not submitted at all).  Each task builds the
graph, records its elimination trace and writes both entries to the content-addressed store
(:mod:`phasic.store`, atomic writes), then returns the key.  The Dask key of the task is
``phasic-build-<graph key>-<store tag>``, so identical builds submitted concurrently (by
other clients too) into the same store run once.  :func:`sweep` splits parameter vectors into chunks; workers replay them with
:func:`phasic.batch.evaluate_batch` from the stored trace, loading each graph and trace once
per worker process.  Tasks carry keys, the store root and small arrays; the callback of a
:class:`ModelSpec` is pickled by reference, so it must live in a module the workers can
import.  Client and workers must see the same store directory (a shared file system on a
cluster); it is passed to every task explicitly.

Which Dask client is used
-------------------------
:func:`connect` (used by :func:`build` and :func:`sweep`) takes the first of:

1. the ``client=`` argument;
2. an explicit ``scheduler=`` address or ``cluster=`` kind (the CLI's ``--scheduler`` and
   ``--cluster``);
3. the client of the innermost open :func:`session` block (one cluster for many calls);
4. the current default client (``distributed.get_client()`` inside a task, else
   ``distributed.default_client()``) if one exists;
5. a scheduler address from the environment variable ``PHASIC_SCHEDULER``, else from the
   Dask config key ``phasic.scheduler-address``;
6. a dask-jobqueue ``SLURMCluster`` when ``PHASIC_CLUSTER=slurm`` or the Dask config key
   ``phasic.cluster`` is ``slurm``; it reads the standard ``jobqueue.slurm.*`` config
   (cores, memory, queue, walltime, ...) and is scaled to ``PHASIC_JOBS`` / ``phasic.jobs``
   jobs (default 2);
7. a ``LocalCluster`` with one single-threaded worker process per available core.

A client or cluster that phasic started (5-7, and 2) is closed again when the call ends, or,
for a :func:`session`, when its block ends. A cluster phasic starts prints its dashboard link.
Other Dask config keys: ``phasic.connect-timeout`` (default ``20s``) and
``phasic.worker-timeout`` (default ``300s``: how long to wait for a first worker before
failing instead of hanging).  Scripts that let phasic start a ``LocalCluster`` need the usual
``if __name__ == "__main__":`` guard (worker processes are spawned).

Failures
--------
A worker killed mid-task makes Dask run the task again (``retries=`` more times after
exceptions from the store or the network); the store stays consistent because entries are
written atomically and build locks of dead processes are taken over.  A model whose callback
raises, or whose graph is invalid, is not retried: :class:`phasic.exceptions.DistributedError`
names the spec (callback qualname and arguments), the state the callback raised at (from the
exception's ``__notes__``) and the cause.
"""

from phasic.distributed._build import build
from phasic.distributed._client import Connection, connect, session
from phasic.distributed._sweep import sweep
from phasic.specs import ModelSpec

__all__ = ["ModelSpec", "build", "sweep", "connect", "session", "Connection"]
