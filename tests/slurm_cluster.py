"""Pytest plugin: a real single-node Slurm cluster with job accounting.

Register it in ``tests/conftest.py`` with ``pytest_plugins = ["tests.slurm_cluster"]``
(or run ``pytest -p tests.slurm_cluster``); a test then asks for the session-scoped
``slurm`` fixture and is marked ``@pytest.mark.slurm``.

The fixture installs the system packages if they are missing
(``scripts/install_system_deps.sh``, needs root), starts munged, MariaDB,
slurmdbd, slurmctld and slurmd in a private state directory
(``scripts/slurm_up.sh``), sets ``SLURM_CONF`` in ``os.environ`` for the session
(so dask-jobqueue and snakemake, which call sbatch/squeue/sacct/scancel from
``PATH`` and inherit the environment, reach this cluster), and stops exactly the
daemons it started at the end (``scripts/slurm_down.sh``). Where Slurm cannot be
started the tests using it are skipped with the reason and the failing daemon's
log tail; with ``PHASIC_REQUIRE_SLURM=1`` they fail instead.

State directories of earlier sessions whose pytest process died without
tearing down are cleaned up (only their own daemons are stopped).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts"
STATE_PREFIX = "phasic-slurm-"
TERMINAL_STATES = (
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
)
_JOBCOMP_FIELD = re.compile(r"(\w+)=(.*?)(?=\s+\w+=|\s*$)")


class SlurmCluster:
    """Handle on a running test Slurm instance.

    Attributes
    ----------
    statedir : pathlib.Path
        Directory holding configs, logs, spool and database of the instance.
    partition : str
        Name of the (default) partition.
    cluster : str
        ``ClusterName`` registered in slurmdbd.
    node : str
        The only node (``hostname -s``).
    cpus : int
        CPUs the node advertises.
    conf : pathlib.Path
        The instance's ``slurm.conf``.
    env : dict of str to str
        Environment variables that Slurm clients need (``SLURM_CONF``).
    jobcomp_path : pathlib.Path
        Job-completion record file (``jobcomp/filetxt``).
    system_conf : pathlib.Path or None
        ``/etc/slurm/slurm.conf`` when the copy there points at this instance
        (needed by clients that drop ``SLURM_CONF``, e.g. the snakemake jobstep
        plugin's inner ``srun``); None otherwise.
    """

    def __init__(self, statedir):
        self.statedir = Path(statedir)
        info = dict(line.split("=", 1) for line in (self.statedir / "info").read_text().splitlines() if "=" in line)
        self.partition = info["partition"]
        self.cluster = info["cluster"]
        self.node = info["node"]
        self.cpus = int(info["cpus"])
        self.conf = Path(info["slurm_conf"])
        self.jobcomp_path = Path(info["jobcomp"])
        self.system_conf = Path(info["system_conf"]) if info.get("system_conf") else None
        self.env = {"SLURM_CONF": str(self.conf)}

    def environ(self):
        """Return ``os.environ`` updated with :attr:`env`, for subprocesses."""
        return {**os.environ, **self.env}

    def run(self, args, timeout=30, check=True, **kwargs):
        """Run a Slurm client command against this instance.

        Parameters
        ----------
        args : list of str
            Command and arguments, e.g. ``["sinfo", "-h"]``.
        timeout : float
            Seconds before the command is killed.
        check : bool
            Raise ``subprocess.CalledProcessError`` on a non-zero exit.

        Returns
        -------
        subprocess.CompletedProcess
            With text ``stdout`` and ``stderr``.
        """
        kwargs.setdefault("cwd", self.statedir)
        return subprocess.run(
            args, env=self.environ(), capture_output=True, text=True, timeout=timeout, check=check, **kwargs
        )

    def sbatch(self, *args, cwd=None, timeout=30):
        """Submit a batch job (``sbatch --parsable ARGS``) and return its job id."""
        out = self.run(["sbatch", "--parsable", *args], cwd=cwd or self.statedir, timeout=timeout).stdout
        return out.strip().split(";")[0]

    def sacct(self, job_id, fields=("JobID", "JobName", "State", "ExitCode", "Partition")):
        """Return the accounting record of the allocation of `job_id` as a dict.

        Empty dict when slurmdbd does not (yet) know the job.
        """
        out = self.run(["sacct", "-n", "-X", "-P", "-j", str(job_id), "-o", ",".join(fields)]).stdout
        for line in out.splitlines():
            values = line.split("|")
            if len(values) == len(fields):
                return dict(zip(fields, values))
        return {}

    def wait_for_job(self, job_id, timeout=60.0):
        """Wait until sacct reports a terminal state for `job_id`; return the record.

        slurmdbd may briefly hold a placeholder record (no partition, name
        ``allocation``) for a job that ended before its start message was
        stored, so this also waits for the partition to be filled in.

        Raises
        ------
        TimeoutError
            After `timeout` seconds, with squeue/sacct output and the slurmctld log tail.
        """
        deadline = time.monotonic() + timeout
        rec = {}
        while time.monotonic() < deadline:
            rec = self.sacct(job_id)
            if rec.get("State", "").split(" ")[0] in TERMINAL_STATES and rec.get("Partition"):
                return rec
            time.sleep(0.2)
        queue = self.run(["squeue", "-a"], check=False).stdout
        raise TimeoutError(
            f"Slurm job {job_id!r} did not finish within {timeout} s; last sacct record "
            f"{rec!r}; squeue:\n{queue}\n{self.log_tail('slurmctld.log')}"
        )

    def jobcomp_records(self):
        """Parse the job-completion file into a list of dicts (one per finished job)."""
        if not self.jobcomp_path.exists():
            return []
        return [
            dict(_JOBCOMP_FIELD.findall(line)) for line in self.jobcomp_path.read_text().splitlines() if line.strip()
        ]

    def completed_job_ids(self, state="COMPLETED"):
        """Job ids in the job-completion record with ``JobState`` `state` (None: any)."""
        return {
            rec["JobId"]
            for rec in self.jobcomp_records()
            if "JobId" in rec and (state is None or rec.get("JobState") == state)
        }

    def log_tail(self, name, lines=30):
        """Return the last `lines` lines of ``log/NAME`` of the instance, labelled."""
        path = self.statedir / "log" / name
        try:
            text = path.read_text(errors="replace").splitlines()[-lines:]
        except OSError as exc:
            return f"(no log {path}: {exc})"
        return f"---- last lines of {path} ----\n" + "\n".join(text)


def _unavailable(reason):
    """Skip (or fail, with PHASIC_REQUIRE_SLURM=1) because Slurm is unavailable."""
    if os.environ.get("PHASIC_REQUIRE_SLURM", "") not in ("", "0"):
        pytest.fail(f"Slurm required (PHASIC_REQUIRE_SLURM set) but unavailable: {reason}", pytrace=False)
    pytest.skip(f"real Slurm unavailable: {reason}")


def _proc_start_time(pid):
    """Start time (clock ticks since boot) of process `pid`, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _reap_stale_instances():
    """Stop instances left by pytest sessions that died without teardown."""
    for owner in Path(tempfile.gettempdir()).glob(f"{STATE_PREFIX}*/owner"):
        try:
            pid, start = owner.read_text().split()
        except (OSError, ValueError):
            continue
        if _proc_start_time(pid) == start:
            continue  # its session is still running
        subprocess.run(
            [str(SCRIPTS / "slurm_down.sh"), str(owner.parent), "--rm"], capture_output=True, timeout=120, check=False
        )


def _run_script(args, timeout, env=None):
    try:
        return subprocess.run(
            args, capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL, check=False
        )
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(args, 124, stdout=exc.stdout or "", stderr=f"timed out after {timeout} s")


def start_cluster(partition="debug"):
    """Install (if needed) and start a test Slurm; return a :class:`SlurmCluster`.

    Calls ``pytest.skip`` (or ``pytest.fail`` with ``PHASIC_REQUIRE_SLURM=1``)
    with the reason and log tails when Slurm cannot run here.
    """
    if os.name != "posix" or not Path("/proc/self").exists():
        _unavailable("needs Linux")
    inst = _run_script([str(SCRIPTS / "install_system_deps.sh")], timeout=900)
    if inst.returncode != 0:
        _unavailable(
            f"scripts/install_system_deps.sh failed (exit {inst.returncode}):\n"
            f"{inst.stdout[-2000:]}{inst.stderr[-3000:]}"
        )
    if os.geteuid() != 0:
        _unavailable(f"needs root to run the Slurm daemons (euid {os.geteuid()}); {inst.stdout.strip()}")
    _reap_stale_instances()
    statedir = Path(tempfile.mkdtemp(prefix=STATE_PREFIX, dir=tempfile.gettempdir()))
    (statedir / "owner").write_text(f"{os.getpid()} {_proc_start_time(os.getpid())}\n")
    env = {**os.environ, "PHASIC_SLURM_TIMEOUT": "60"}
    env.pop("SLURM_CONF", None)
    up = _run_script([str(SCRIPTS / "slurm_up.sh"), str(statedir), partition], timeout=300, env=env)
    if up.returncode != 0:
        stop_cluster(statedir)
        _unavailable(f"scripts/slurm_up.sh failed (exit {up.returncode}):\n{up.stdout[-2000:]}{up.stderr[-6000:]}")
    return SlurmCluster(statedir)


def stop_cluster(statedir):
    """Stop the daemons of the instance in `statedir` and remove the directory."""
    _run_script([str(SCRIPTS / "slurm_down.sh"), str(statedir), "--rm"], timeout=180)


@pytest.fixture(scope="session")
def slurm():
    """A running single-node Slurm with accounting (see :class:`SlurmCluster`).

    ``SLURM_CONF`` is set in ``os.environ`` while the session lasts.
    """
    cluster = start_cluster()
    previous = os.environ.get("SLURM_CONF")
    os.environ.update(cluster.env)
    try:
        yield cluster
    finally:
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        stop_cluster(cluster.statedir)
