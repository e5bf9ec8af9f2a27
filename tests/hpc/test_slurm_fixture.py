"""The real single-node Slurm fixture: batch jobs, accounting, dask-jobqueue.

Needs root (the fixture skips otherwise); see tests/slurm_cluster.py.
"""

import os
import sys
import time

import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(120)]


def test_node_idle_in_default_partition(slurm):
    out = slurm.run(["sinfo", "-h", "-o", "%P %T %N"]).stdout.split()
    assert out == [f"{slurm.partition}*", "idle", slurm.node]
    # the environment carries this instance's config for in-process callers
    assert os.environ["SLURM_CONF"] == str(slurm.conf)
    # the copy at the default path (for clients that drop SLURM_CONF) is this config
    if slurm.system_conf is not None:
        marker, rest = slurm.system_conf.read_text().split("\n", 1)
        assert marker == f"# phasic-slurm-statedir: {slurm.statedir}"
        assert rest == slurm.conf.read_text()


def test_sbatch_job_in_sacct_and_jobcomp(slurm, tmp_path):
    out = tmp_path / "out.txt"
    job = slurm.sbatch(
        "-J", "sq", "-o", str(tmp_path / "%j.log"), "--wrap", f"echo $((6 * 7)) $SLURM_JOB_ID > {out}", cwd=tmp_path
    )
    rec = slurm.wait_for_job(job, timeout=60)
    assert rec == {"JobID": job, "JobName": "sq", "State": "COMPLETED", "ExitCode": "0:0", "Partition": slurm.partition}
    assert out.read_text().split() == ["42", job]
    # job-completion record (written by slurmctld at job end)
    comp = [r for r in slurm.jobcomp_records() if r.get("JobId") == job]
    assert len(comp) == 1
    assert comp[0]["JobState"] == "COMPLETED"
    assert comp[0]["Partition"] == slurm.partition
    assert comp[0]["Name"] == "sq"
    assert job in slurm.completed_job_ids()


def test_failing_job_is_recorded_as_failed(slurm, tmp_path):
    job = slurm.sbatch("-o", str(tmp_path / "%j.log"), "--wrap", "exit 3", cwd=tmp_path)
    rec = slurm.wait_for_job(job, timeout=60)
    assert rec["State"] == "FAILED"
    assert rec["ExitCode"] == "3:0"
    assert job not in slurm.completed_job_ids()
    assert job in slurm.completed_job_ids(state="FAILED")


def _sum_of_squares(n):
    return sum(i * i for i in range(n)), os.environ.get("SLURM_JOB_ID")


def test_dask_jobqueue_slurmcluster(slurm, tmp_path):
    from dask.distributed import Client
    from dask_jobqueue import SLURMCluster

    n = 1000
    with SLURMCluster(
        cores=1,
        memory="500MB",
        queue=slurm.partition,
        walltime="00:05:00",
        processes=1,
        python=sys.executable,
        log_directory=str(tmp_path),
        local_directory=str(tmp_path),
        scheduler_options={"dashboard_address": ":0"},
    ) as cluster:
        cluster.scale(1)
        with Client(cluster) as client:
            client.wait_for_workers(1, timeout=60)
            total, worker_job = client.submit(_sum_of_squares, n, pure=False).result(timeout=30)
            assert total == (n - 1) * n * (2 * n - 1) // 6
            job_ids = {job.job_id for job in cluster.workers.values()}
            assert worker_job in job_ids, (worker_job, job_ids)
            # accounting can lag a few seconds behind the job's start
            deadline = time.monotonic() + 20
            rec = slurm.sacct(worker_job)
            while rec.get("State") != "RUNNING" and time.monotonic() < deadline:
                time.sleep(0.5)
                rec = slurm.sacct(worker_job)
            assert rec.get("State") == "RUNNING", rec
            assert rec["Partition"] == slurm.partition
    # closing the cluster cancels the worker's job; accounting records the end
    rec = slurm.wait_for_job(worker_job, timeout=30)
    assert rec["State"].split()[0] in ("CANCELLED", "COMPLETED"), rec
