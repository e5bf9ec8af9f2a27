"""Choosing the Dask client (order documented in :mod:`phasic.distributed`), progress
displays and performance reports.  Dask is imported inside the functions only."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import sys
import warnings

from phasic._progress import Progress
from phasic.exceptions import DistributedError, ParameterError

__all__ = ["Connection", "connect", "ENV_SCHEDULER", "ENV_CLUSTER", "ENV_JOBS"]

#: Environment variable with a scheduler address (``tcp://host:8786``).
ENV_SCHEDULER = "PHASIC_SCHEDULER"
#: Environment variable naming a cluster kind to start (``slurm`` or ``local``).
ENV_CLUSTER = "PHASIC_CLUSTER"
#: Environment variable with the number of SLURM jobs to request.
ENV_JOBS = "PHASIC_JOBS"
CLUSTER_KINDS = ("slurm", "local")
_DEFAULT_JOBS = 2


@dataclasses.dataclass
class Connection:
    """The Dask client chosen by :func:`connect`.

    Attributes
    ----------
    client : distributed.Client
    source : str
        Why this client: ``"argument"`` (``client=``), ``"default"`` (the current default
        client), ``"address"`` (a scheduler address), ``"slurm"`` or ``"local"`` (a cluster
        phasic started); a call inside :func:`session` gets the session's connection.
    detail : str
        Where the choice came from, e.g. ``"environment variable PHASIC_SCHEDULER"``.
    cluster : object or None
        The cluster phasic started (closed again by :func:`connect`), else None.
    """

    client: object
    source: str
    detail: str
    cluster: object = None

    @property
    def owned(self):
        """True when phasic created the client (and closes it)."""
        return self.source not in ("argument", "default")


def _config(name, default=None):
    import dask

    return dask.config.get(f"phasic.{name}", default=default)


def _seconds(value, what):
    from dask.utils import parse_timedelta

    try:
        return float(parse_timedelta(value, default="s"))
    except (TypeError, ValueError):
        raise ParameterError(f"{what}={value!r} is not a duration; use seconds or e.g. '30s', '5min'") from None


def _current_client():
    """The client of the running worker task, or the default client, or None."""
    from distributed import default_client, get_client, get_worker

    try:
        get_worker()
    except ValueError:
        pass
    else:
        return get_client()
    try:
        return default_client()
    except ValueError:
        return None


def _check_client(client):
    from distributed import Client

    if not isinstance(client, Client):
        raise ParameterError(f"client={client!r} is not a distributed.Client; pass a Client or None")
    if client.status in ("closed", "closing"):
        raise ParameterError(f"client={client!r} is closed; pass an open Client or None")
    return client


def _connect_address(address, detail):
    from distributed import Client

    if not isinstance(address, str) or not address.strip():
        raise ParameterError(f"scheduler address {address!r} (from {detail}) must be a string like 'tcp://host:8786'")
    timeout = _seconds(_config("connect-timeout", "20s"), "phasic.connect-timeout")
    try:
        return Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise DistributedError(
            f"cannot reach the Dask scheduler at {address!r} (from {detail}): {exc}; start it "
            f"(dask scheduler) or fix the address, or unset {ENV_SCHEDULER} to use local workers"
        ) from exc


def _jobs(jobs):
    raw, where = jobs, "jobs="
    if raw is None:
        raw, where = os.environ.get(ENV_JOBS), ENV_JOBS
    if raw is None:
        raw, where = _config("jobs", _DEFAULT_JOBS), "phasic.jobs"
    try:
        n = int(raw)
    except (TypeError, ValueError):
        n = 0
    if n < 1 or str(raw).strip() != str(n):
        raise ParameterError(f"{where}={raw!r} is not a positive number of SLURM jobs")
    return n


def _start_slurm(jobs, detail):
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError as exc:
        raise DistributedError(
            f"phasic.cluster=slurm (from {detail}) needs dask-jobqueue: pip install dask-jobqueue"
        ) from exc
    n = _jobs(jobs)
    try:
        cluster = SLURMCluster()
    except ValueError as exc:
        raise DistributedError(
            f"cannot start a SLURMCluster (phasic.cluster=slurm from {detail}): {exc}; set "
            "jobqueue.slurm.cores, .memory, .queue and .walltime in Dask's config "
            "(~/.config/dask/jobqueue.yaml or DASK_JOBQUEUE__SLURM__CORES=...)"
        ) from exc
    cluster.scale(jobs=n)
    return cluster


def _unguarded_script_line():
    """``(script, line)`` when this call comes from the top level of the ``__main__`` script
    outside an ``if __name__ == "__main__":`` block, else None.

    Dask starts a local cluster's workers as fresh processes that import the main script
    again; unguarded, each would start a cluster of its own, and the user sees hundreds of
    lines of "Nanny failed to start" instead of the one thing to change.
    """
    import ast

    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    frame = sys._getframe(1)
    while frame is not None and not (
        frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") in ("__main__", "__mp_main__")
    ):
        frame = frame.f_back
    if frame is None or path is None or frame.f_code.co_filename != path:
        return None  # not from a script's top level (a function, an interactive session, -c)
    try:
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read())
    except (OSError, SyntaxError, ValueError):
        return None
    line = frame.f_lineno
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.If)
            and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name)
            and node.test.left.id == "__name__"
            and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in node.test.comparators)
            and node.lineno <= line <= (node.end_lineno or node.lineno)
        ):
            return None
    return path, line


def _start_local():
    from distributed import LocalCluster

    unguarded = _unguarded_script_line()
    if unguarded is not None:
        raise DistributedError(
            f"{unguarded[0]}, line {unguarded[1]}: phasic.distributed starts a local Dask cluster "
            'here, at the top level of the script without an `if __name__ == "__main__":` '
            "guard; its worker processes import the script again and would each start a cluster. "
            'Put the script\'s work under `if __name__ == "__main__":` (or pass client=, or set '
            "PHASIC_SCHEDULER to a running scheduler)"
        )

    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    # the dashboard on a free port (not a busy 8787); its link is printed when the cluster starts
    return LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0")


def wait_for_workers(client, what="the tasks"):
    """Wait until the scheduler has a worker (``phasic.worker-timeout``, default 300 s)."""
    if client.scheduler_info().get("workers"):
        return
    timeout = _seconds(_config("worker-timeout", "300s"), "phasic.worker-timeout")
    try:
        client.wait_for_workers(1, timeout=timeout)
    except TimeoutError:
        address = getattr(client.scheduler, "address", "?")
        raise DistributedError(
            f"no Dask worker joined the scheduler at {address!r} within {timeout:g} s, so {what} "
            "cannot run; start workers (dask worker ADDRESS), check the batch jobs (squeue, their "
            "logs), or raise the Dask config value phasic.worker-timeout"
        ) from None


@contextlib.contextmanager
def connect(client=None, *, scheduler=None, cluster=None, jobs=None):
    """Choose (and, if needed, start) the Dask client for phasic's tasks.

    The order is documented in :mod:`phasic.distributed`.  A client or cluster that phasic
    starts is closed again when the ``with`` block ends.

    Parameters
    ----------
    client : distributed.Client, optional
        Used as is.
    scheduler : str, optional
        Address of a running scheduler (what ``--scheduler`` gives).
    cluster : {"slurm", "local"}, optional
        Start this kind of cluster (what ``--cluster`` gives).
    jobs : int, optional
        Number of SLURM jobs (default ``$PHASIC_JOBS``, Dask config ``phasic.jobs``, 2).

    Yields
    ------
    Connection

    Examples
    --------
    ::

        from phasic.distributed import connect
        with connect() as conn:
            print(conn.source, conn.client.dashboard_link)
    """
    if client is not None:
        if scheduler is not None or cluster is not None:
            raise ParameterError("give either client= or scheduler=/cluster=, not both")
        yield Connection(_check_client(client), "argument", "the client= argument")
        return
    if scheduler is not None and cluster is not None:
        raise ParameterError(f"give either scheduler={scheduler!r} or cluster={cluster!r}, not both")
    address, kind, detail = None, None, None
    if scheduler is not None:
        address, detail = scheduler, "the scheduler= argument"
    elif cluster is not None:
        kind, detail = cluster, "the cluster= argument"
    elif _SESSIONS:
        yield _SESSIONS[-1]  # the session's client: it outlives this call
        return
    else:
        current = _current_client()
        if current is not None:
            yield Connection(current, "default", "the current default Dask client")
            return
        if os.environ.get(ENV_SCHEDULER):
            address, detail = os.environ[ENV_SCHEDULER], f"environment variable {ENV_SCHEDULER}"
        elif _config("scheduler-address"):
            address, detail = _config("scheduler-address"), "Dask config phasic.scheduler-address"
        elif os.environ.get(ENV_CLUSTER):
            kind, detail = os.environ[ENV_CLUSTER], f"environment variable {ENV_CLUSTER}"
        elif _config("cluster"):
            kind, detail = _config("cluster"), "Dask config phasic.cluster"
        else:
            kind, detail = "local", "no client, scheduler or cluster configured"
    if address is not None:
        conn = Connection(_connect_address(address, detail), "address", detail)
    else:
        kind = str(kind).strip().lower()
        if kind not in CLUSTER_KINDS:
            raise ParameterError(f"cluster kind {kind!r} (from {detail}) is not one of {CLUSTER_KINDS}")
        from distributed import Client

        started = _start_slurm(jobs, detail) if kind == "slurm" else _start_local()
        try:
            conn = Connection(Client(started, set_as_default=False), kind, detail, started)
        except BaseException:
            started.close()
            raise
        _announce(conn)
    try:
        yield conn
    finally:
        conn.client.close()
        if conn.cluster is not None:
            conn.cluster.close()


#: the connections of the open :func:`session` blocks, innermost last
_SESSIONS = []


def _announce(conn):
    """Say on stderr which cluster phasic started and where its dashboard is."""
    link = getattr(conn.cluster, "dashboard_link", None) or getattr(conn.client, "dashboard_link", None)
    workers = len(conn.client.scheduler_info().get("workers", {}))
    where = f"; dashboard: {link}" if link else ""
    print(f"phasic: started a {conn.source} Dask cluster ({workers} workers){where}", file=sys.stderr)


@contextlib.contextmanager
def session(client=None, *, scheduler=None, cluster=None, jobs=None):
    """One Dask client for every :func:`build` and :func:`sweep` in the ``with`` block.

    Without a session each call chooses (and, if needed, starts and stops) its own client
    (see :func:`connect`); inside one, calls that are not given ``client=`` use the
    session's, so a cluster phasic starts is started once, its dashboard stays up between
    calls (the link is printed when it starts), and it is closed when the block ends.

    Parameters
    ----------
    client, scheduler, cluster, jobs
        As for :func:`connect`.

    Yields
    ------
    Connection

    Examples
    --------
    ::

        import phasic.distributed as pd
        if __name__ == "__main__":
            with pd.session() as s:          # a LocalCluster unless configured otherwise
                keys = pd.build([pd.ModelSpec(coalescent, theta=2.0)])
                table = pd.sweep(keys[0], thetas)
    """
    with connect(client, scheduler=scheduler, cluster=cluster, jobs=jobs) as conn:
        _SESSIONS.append(conn)
        try:
            yield conn
        finally:
            _SESSIONS.remove(conn)


def wait(client, futures, progress, label):
    """Wait for every future, drawing a progress bar; cancels the rest on KeyboardInterrupt."""
    from distributed import as_completed

    with Progress(label, len(futures), progress) as bar:
        try:
            for _ in as_completed(futures, loop=client.loop):
                bar.update()
        except BaseException:
            client.cancel(futures)
            raise


def _isatty(stream):
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def wait_with_dask_progress(client, futures, progress):
    """Wait for every future, showing Dask's own progress display; cancels the rest on
    KeyboardInterrupt.

    The display is :func:`distributed.progress`: in a Jupyter kernel a widget (when
    ipywidgets is installed) that updates while the call blocks; elsewhere Dask's text bar
    on stdout, drawn until the tasks end (or one of them fails) and then erased, as Dask does.
    ``progress=None`` shows it in a Jupyter kernel or when stdout is a terminal.
    """
    from distributed import as_completed
    from distributed import progress as dask_progress
    from distributed.utils import is_kernel

    notebook = is_kernel()
    if progress is None:
        progress = notebook or _isatty(sys.stdout)
    listener = None
    try:
        if progress and futures:
            # the scheduler's address: phasic's clients are not Dask's default client
            address = client.scheduler.address
            bar = None
            if notebook:
                try:
                    bar = dask_progress(futures, notebook=True, scheduler=address)
                    from IPython.display import display
                except ImportError:  # no ipywidgets: Dask's text bar in the cell's output
                    bar = None
            if bar is not None:
                display(bar.widget)
                # Dask starts a widget's listener on the kernel's own loop, which waits for
                # the cell to end; the client's loop thread draws it while this call blocks.
                listener = asyncio.run_coroutine_threadsafe(bar.listen(), client.loop.asyncio_loop)
            else:
                dask_progress(futures, notebook=False, scheduler=address)  # blocks while it draws
        for _ in as_completed(futures, loop=client.loop):
            pass
    except BaseException:
        client.cancel(futures)
        if listener is not None:
            listener.cancel()
        raise
    if listener is not None:
        with contextlib.suppress(Exception):  # the widget's last state only; the results count
            listener.result(timeout=5)


@contextlib.contextmanager
def report(client, filename):
    """Write Dask's HTML performance report of the block to ``filename`` (None: nothing)."""
    if filename is None:
        yield
        return
    try:
        import bokeh  # noqa: F401  (distributed needs it to draw the report)
    except ImportError:
        raise ParameterError(
            f"performance_report={filename!r} needs the bokeh package: pip install 'bokeh>=3.1'"
        ) from None
    from distributed import performance_report

    path = os.fspath(os.path.abspath(os.path.expanduser(os.fspath(filename))))
    rep = performance_report(filename=path)
    with client.as_current():
        rep.__enter__()
    try:
        yield
    finally:
        try:
            with client.as_current():
                rep.__exit__(None, None, None)
        except Exception as exc:  # the results are worth more than the report
            warnings.warn(f"phasic: could not write the performance report {path!r}: {exc}", RuntimeWarning, 3)
