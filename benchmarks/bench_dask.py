"""Dask benchmark: parameter sweeps and model builds, serial versus ``phasic.distributed``.

Rows
----
sweep           100,000 parameter vectors (coalescence rate, migration rate) over a
                two-island structured coalescent with one-way migration from 2n lineages
                (n = 22: 1,035 vertices).  serial: ``phasic.batch.evaluate_batch`` in this
                process on the whole array; dask: ``sweep`` on a LocalCluster of 2 single-
                threaded worker processes (default chunking, graph and trace already loaded
                on the workers: "warm"; "cold" is the first sweep, loading them).
                Target: ratio >= 1.6 on 2 cores.
task overhead   1,000 one-row chunks over a 10-vertex Kingman coalescent: wall time per task
                of ``sweep(..., chunk_size=1)`` minus the serial per-row cost, next to the
                cost of 1,000 no-op tasks through ``client.map``/``gather`` (Dask's own floor).
no Dask         the same sweep split in halves over 2 plain spawned processes
                (multiprocessing), timed inside them: what this machine allows without Dask.
builds          20 distinct two-island models (numeric rates, both migration directions,
                2k lineages for k = 42, 44, ..., 80: 3,700 to 13,000 vertices; 0.1-0.3 s
                each): serial = the build task
                (graph, trace, both store entries) called in this process one model after
                another; dask = ``build`` on the 2 workers (fresh store each time).
Serial runs with one BLAS thread (``--blas-threads``), as Dask's workers do: the
comparison is one core against two worker processes.
CPU s           CPU seconds of this process (client and, for a LocalCluster, the scheduler)
                plus all worker processes: the work done, which other load on the machine
                does not inflate the way it inflates wall time.
idle bound      workers x CPU s serial / CPU s dask: the serial/dask ratio an otherwise idle
                machine with one core per worker would show (overheads included, no waiting).

Usage::

    python benchmarks/bench_dask.py            # about 2 minutes on 2 cores
    python benchmarks/bench_dask.py --n 1000   # fewer parameter vectors, quick check
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _noop(x):
    return x


def _mp_part(args):
    """Evaluate one half of the sweep in a plain process (the no-Dask reference)."""
    root, key, thetas = args
    sys.path.insert(0, REPO)
    from phasic.batch import evaluate_batch
    from phasic.distributed._sweep import _load

    g = _load(root, key)
    evaluate_batch(g, thetas[:2])
    t0 = time.perf_counter()
    evaluate_batch(g, thetas, k=2)
    return time.perf_counter() - t0


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _cpu_timed(client, fn):
    """(wall s, CPU s of this process + all workers, result) of ``fn()``."""

    def cpu():
        return time.process_time() + sum(client.run(time.process_time).values())

    c0 = cpu()
    wall, out = _timed(fn)
    return wall, cpu() - c0, out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="parameter vectors in the sweep")
    parser.add_argument("--lineages", type=int, default=22, help="lineages per island n (2n in total)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--blas-threads",
        default="1",
        help="BLAS threads of this (serial) process; Dask gives each worker 1 (default 1)",
    )
    args = parser.parse_args(argv)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = args.blas_threads  # read when numpy loads its BLAS, below

    sys.path.insert(0, REPO)  # tests.models: callbacks importable by the workers
    import numpy as np
    from distributed import Client, LocalCluster

    from phasic import Graph
    from phasic.batch import evaluate_batch
    from phasic.distributed import ModelSpec, build, sweep
    from phasic.distributed._build import build_task
    from phasic.store import Store
    from phasic.traces import ensure_trace
    from tests import models as dm

    tmp = tempfile.mkdtemp(prefix="phasic-bench-dask-")
    os.environ["PHASIC_CACHE_DIR"] = os.path.join(tmp, "store")
    rows = []
    try:
        with (
            LocalCluster(
                n_workers=args.workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                scheduler_kwargs={"dashboard_address": ":0"},
            ) as cluster,
            Client(cluster, set_as_default=False) as client,
        ):
            client.wait_for_workers(args.workers)
            # ------------------------------------------------------------------ sweep
            n = args.lineages
            (key,) = build([ModelSpec(dm.one_way_islands_param, ipv=[2 * n, 0])], client=client, progress=False)
            store = Store()
            g = Graph.from_arrays(*store.get("graphs", key))
            ensure_trace(g, store)
            rng = np.random.default_rng(0)
            thetas = np.column_stack([rng.uniform(0.5, 2.0, args.n), rng.uniform(0.05, 2.0, args.n)])
            evaluate_batch(g, thetas[:10])  # records the trace in this process
            t_serial, c_serial, serial = _cpu_timed(client, lambda: evaluate_batch(g, thetas, k=2))
            t_cold, c_cold, cold = _cpu_timed(client, lambda: sweep(key, thetas, k=2, client=client, progress=False))
            t_warm, c_warm, warm = _cpu_timed(client, lambda: sweep(key, thetas, k=2, client=client, progress=False))
            assert np.allclose(cold, serial, rtol=1e-12, atol=0) and np.array_equal(cold, warm)
            label = f"sweep {args.n:,} x {g.vertices_length():,} vertices"
            rows.append((f"{label} (cold)", t_serial, t_cold, c_serial, c_cold))
            rows.append((f"{label} (warm)", t_serial, t_warm, c_serial, c_warm))
            import multiprocessing

            parts = np.array_split(thetas, args.workers)
            with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
                t_mp = max(pool.map(_mp_part, [(str(store.root), key, part) for part in parts]))

            # ------------------------------------------------------------ task overhead
            (small,) = build([ModelSpec(dm.coalescent_param)], client=client, progress=False)
            h = Graph.from_arrays(*store.get("graphs", small))
            tiny = rng.uniform(0.5, 2.0, (1000, 1))
            evaluate_batch(h, tiny[:1])
            t_rows, _ = _timed(lambda: [evaluate_batch(h, tiny[i : i + 1]) for i in range(len(tiny))])
            sweep(small, tiny[:4], chunk_size=1, client=client, progress=False)  # warm up
            t_tasks, _ = _timed(lambda: sweep(small, tiny, chunk_size=1, client=client, progress=False))
            overhead_ms = (t_tasks - t_rows / args.workers) / len(tiny) * 1e3
            client.gather(client.map(_noop, range(-10, 0)))
            t_noop, _ = _timed(lambda: client.gather(client.map(_noop, range(len(tiny)))))
            noop_ms = t_noop / len(tiny) * 1e3

            # ------------------------------------------------------------------ builds
            specs = [ModelSpec(dm.two_island_rates, ipv=[k, k], m=0.5) for k in range(42, 82, 2)]
            for s in specs:
                s.key  # keys are computed up front in both cases
            serial_root = os.path.join(tmp, "serial")
            t_build_serial, c_build_serial, _ = _cpu_timed(
                client, lambda: [build_task(serial_root, s.key, s.material, s.callback, s.kwargs) for s in specs]
            )
            dask_root = os.path.join(tmp, "dask")
            t_build_dask, c_build_dask, _ = _cpu_timed(
                client, lambda: build(specs, client=client, cache_dir=dask_root, progress=False)
            )
            verts = [Graph.from_arrays(*Store(dask_root).get("graphs", s.key)).vertices_length() for s in specs]
            rows.append(
                (
                    f"20 builds ({min(verts)}-{max(verts)} vertices)",
                    t_build_serial,
                    t_build_dask,
                    c_build_serial,
                    c_build_dask,
                )
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    load = os.getloadavg()[0]
    print(
        f"phasic.distributed benchmark: {args.workers} worker processes x 1 thread, "
        f"{os.cpu_count()} CPUs, load average {load:.1f} at the end"
    )
    print(
        f"{'case':<40} {'serial s':>9} {'dask s':>8} {'serial/dask':>12} {'CPU s serial':>13} "
        f"{'CPU s dask':>11} {'idle bound':>11}"
    )
    for name, ts, td, cs, cd in rows:
        bound = args.workers * cs / cd
        print(f"{name:<40} {ts:9.3f} {td:8.3f} {ts / td:12.2f} {cs:13.3f} {cd:11.3f} {bound:11.2f}")
    print(
        f"{'same sweep, ' + str(args.workers) + ' plain processes, no Dask':<40} {t_serial:9.3f} {t_mp:8.3f} "
        f"{t_serial / t_mp:12.2f}   (the machine's parallel ceiling; start-up not counted)"
    )
    print(
        f"{'per-task overhead (1,000 one-row tasks)':<40} {overhead_ms:8.2f} ms per task "
        f"(serial row: {t_rows / len(tiny) * 1e3:.3f} ms)"
    )
    print(f"{'plain Dask, 1,000 no-op tasks':<40} {noop_ms:8.2f} ms per task (the floor set by Dask itself)")


if __name__ == "__main__":
    main()
