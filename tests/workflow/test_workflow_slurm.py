"""The workflow on a real Slurm: `--profile profiles/slurm` unchanged, jobs submitted with sbatch.

Uses the session fixture ``slurm`` (tests/slurm_cluster.py), which skips visibly where Slurm
cannot start.  Only the partition is added on the command line, as a user would; the profile itself sets the
first status check to 1 s after a submission and groups a model's steps into one job.
"""

import json
import os
import re
import subprocess

import numpy as np
import pytest

from tests.models import BIN, REPO, SNAKEFILE, SNAKEMAKE, WORKFLOW_MODELS_PY, job_counts, load_callback, write_config

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.timeout(600),
    pytest.mark.skipif(SNAKEMAKE is None, reason="snakemake is not installed (pip install phasic[workflow])"),
]


def test_workflow_runs_through_slurm(slurm, tmp_path):
    from phasic import Graph

    conf = slurm.system_conf
    if conf is None or not conf.is_file() or str(slurm.statedir) not in conf.read_text().split("\n", 1)[0]:
        # snakemake's jobstep plugin runs `srun` without SLURM_CONF, so it reads /etc/slurm/slurm.conf
        pytest.skip(
            f"/etc/slurm/slurm.conf does not point at this Slurm instance ({slurm.statedir}); "
            "another instance holds it, and the jobs' inner srun would not find the cluster"
        )
    (tmp_path / "models.py").write_text(WORKFLOW_MODELS_PY)
    cache, work = tmp_path / "cache", tmp_path / "work"
    work.mkdir()
    marker = tmp_path / "m_kingman"
    spec = {
        "name": "kingman",
        "file": str(tmp_path / "models.py"),
        "callback": "kingman",
        "params": {"marker": str(marker)},
        "theta_names": ["coal"],
        "theta": [[1.0], [3.0]],
        "times": [0.0, 1.0, 2.0],
    }
    config = write_config(tmp_path / "config.yaml", [spec], resources={"mem_mb": 200, "runtime": 5})
    cmd = [
        "timeout",
        "-s",
        "KILL",
        "420",
        SNAKEMAKE,
        "results/summary.tsv",
        "--snakefile",
        str(SNAKEFILE),
        "--directory",
        str(work),
        "--profile",
        str(REPO / "profiles" / "slurm"),
        "--default-resources",
        f"slurm_partition={slurm.partition}",
        "--configfile",
        str(config),
        "--config",
        f"cache_dir={cache}",
    ]
    env = {**slurm.environ(), "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "PHASIC_CACHE_DIR": str(cache)}
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-5000:] + "\n" + slurm.log_tail("slurmctld.log")

    # every non-local job went through Slurm and completed there
    counts = job_counts(output)
    assert counts["build_graph"] == counts["record_trace"] == counts["evaluate"] == counts["summary"] == 1
    ids = set(re.findall(r"submitted with SLURM jobid (\d+)", output))
    # build_graph, record_trace and evaluate of the model run as one group job (the profile's
    # `groups`); summary is a localrule; the profile's first status check comes after 1 s
    assert len(ids) == 1 and "Group job model" in output, output[-3000:]
    assert ids <= slurm.completed_job_ids(), (ids, slurm.jobcomp_records()[-5:])
    assert marker.read_text()  # the callback ran (on the node)

    # the results equal the library's
    g = Graph(load_callback(tmp_path / "models.py", "kingman"), marker=str(marker))
    lines = (work / "results" / "kingman" / "moments.tsv").read_text().splitlines()
    rows = [line.split("\t") for line in lines[1:]]
    for row, theta in zip(rows, (1.0, 3.0)):
        g.update_weights([theta])
        np.testing.assert_allclose(np.array(row[2:4], dtype=float), g.moments(2), rtol=1e-12)
    pointer = json.loads((work / "results" / "kingman" / "trace.json").read_text())
    assert os.path.isfile(pointer["graph_entry"]) and os.path.isfile(pointer["trace_entry"])
