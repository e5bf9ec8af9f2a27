"""phasic.distributed through dask-jobqueue's SLURMCluster on a real single-node Slurm.

The ``slurm`` fixture (tests/slurm_cluster.py, registered in tests/conftest.py) starts Slurm
with accounting, or skips with the reason where it cannot run here.
"""

import math

import numpy as np
import pytest

from phasic import Graph
from phasic.batch import evaluate_batch
from phasic.store import Store
from phasic.traces import trace_key
from tests import models as dm

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(240)]


def _jobqueue_config(slurm, tmp_path):
    return {
        "jobqueue.slurm.cores": 1,
        "jobqueue.slurm.memory": "500MB",
        "jobqueue.slurm.queue": slurm.partition,
        "jobqueue.slurm.walltime": "00:05:00",
        "jobqueue.slurm.log-directory": str(tmp_path / "logs"),
        "jobqueue.slurm.local-directory": str(tmp_path / "work"),
    }


def test_build_and_sweep_on_slurm(slurm, tmp_path, monkeypatch):
    import dask

    from phasic.distributed import ModelSpec, build, connect, sweep

    # load dask-jobqueue's config defaults first: a dask.config.set block that creates the
    # 'jobqueue' section would otherwise remove them all again when it ends
    pytest.importorskip("dask_jobqueue")

    store = Store(tmp_path / "store")
    monkeypatch.setenv("PHASIC_CACHE_DIR", str(store.root))
    monkeypatch.delenv("PHASIC_SCHEDULER", raising=False)
    monkeypatch.setenv("PHASIC_CLUSTER", "slurm")  # chosen from the environment
    monkeypatch.setenv("PHASIC_JOBS", "1")
    specs = [ModelSpec(dm.two_island_param, ipv=[3, 2]), ModelSpec(dm.coalescent, theta=2.0)]
    with dask.config.set(_jobqueue_config(slurm, tmp_path)):
        info = build(specs, details=True, progress=False)
        jobs = {i["slurm_job"] for i in info}
        assert len(jobs) == 1 and None not in jobs, info  # one job, built inside it
        assert [i["key"] for i in info] == [s.key for s in specs]
        g = Graph(dm.two_island_param, ipv=[3, 2])
        assert store.contains("graphs", specs[0].key) and store.contains("traces", trace_key(g))
        kingman = Graph.from_arrays(*store.get("graphs", specs[1].key))
        mean = sum(1 / (k * (k - 1) / 2 * 2.0) for k in range(2, 11))
        assert math.isclose(kingman.expectation(), mean, rel_tol=1e-12)

        # a sweep through an explicitly requested SLURM cluster of two jobs
        thetas = np.column_stack([np.linspace(0.5, 2.0, 12), np.linspace(0.1, 1.2, 12)])
        with connect(cluster="slurm", jobs=2) as conn:
            assert conn.source == "slurm"
            got = sweep(specs[0].key, thetas, k=2, chunk_size=4, client=conn.client, progress=False)
            workers = conn.client.scheduler_info()["workers"]
            assert workers, "no SLURM worker joined"
        assert conn.client.status == "closed"
    serial = np.concatenate([evaluate_batch(g, thetas[i : i + 4], k=2) for i in range(0, 12, 4)])
    assert np.array_equal(got, serial)

    # the build ran as a Slurm job in the test partition; closing the cluster ended it
    (job,) = jobs
    rec = slurm.wait_for_job(job, timeout=60)
    assert rec["Partition"] == slurm.partition
    assert rec["State"].split()[0] in ("CANCELLED", "COMPLETED"), rec
